"""A picture of where an image's bytes are: one bar per layer, kept and wasted.

Each bar is split into the bytes the finished image shows (kept) and those it ships for nothing
(wasted). Plain SVG text, so a CI run can attach it; no dependency."""

from __future__ import annotations

from xml.sax.saxutils import escape

from dockyard.check.layers import ImageReport
from dockyard.layers.limits import format_size

WIDTH = 900
LABEL = 360
BAR = 22
GAP = 8
TOP = 40
KEPT_COLOUR = "#4c9a2a"
WASTED_COLOUR = "#d9534f"


def layers_svg(report: ImageReport) -> str:
    """The SVG document for ``report``."""
    scale = max((layer.file_bytes for layer in report.layers), default=0) or 1
    room = WIDTH - LABEL - 20
    height = TOP + len(report.layers) * (BAR + GAP) + 30
    title = (
        f"{report.image}: {format_size(report.total)} in layers, "
        f"{format_size(report.wasted)} wasted, efficiency {report.efficiency:.1%}"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="20" font-size="14">{escape(title)}</text>',
    ]
    for i, layer in enumerate(report.layers):
        y = TOP + i * (BAR + GAP)
        kept = layer.file_bytes - layer.wasted
        kept_width = room * kept / scale
        wasted_width = room * layer.wasted / scale
        made = layer.layer.created_by or layer.layer.descriptor.digest[:19]
        label = f"{layer.layer.number}: {made[:50]}"
        tip = f"kept {format_size(kept)}, wasted {format_size(layer.wasted)}"
        parts += [
            f'<text x="10" y="{y + 15}">{escape(label)}</text>',
            f"<g><title>{escape(tip)}</title>",
            f'<rect x="{LABEL}" y="{y}" width="{kept_width:.1f}" height="{BAR}" '
            f'fill="{KEPT_COLOUR}"/>',
            f'<rect x="{LABEL + kept_width:.1f}" y="{y}" width="{wasted_width:.1f}" '
            f'height="{BAR}" fill="{WASTED_COLOUR}"/></g>',
        ]
    y = TOP + len(report.layers) * (BAR + GAP) + 10
    parts += [
        f'<rect x="10" y="{y}" width="12" height="12" fill="{KEPT_COLOUR}"/>',
        f'<text x="28" y="{y + 11}">kept</text>',
        f'<rect x="80" y="{y}" width="12" height="12" fill="{WASTED_COLOUR}"/>',
        f'<text x="98" y="{y + 11}">wasted (overwritten or deleted later)</text>',
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
