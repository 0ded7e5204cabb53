"""Tables and sizes the CLI prints, without click.

The ``dockyard images`` table, which both the click command and the fast path of
:func:`dockyard.cli.main.main` print, and the one size format of every command."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.store import ImageInfo


def images_table(infos: Sequence[ImageInfo], *, quiet: bool, digests: bool) -> list[str]:
    """The lines ``dockyard images`` prints.

    A short image ID each (``quiet``), else a table with a header (a DIGEST column with
    ``digests``)."""
    if quiet:
        return [info.image_id.split(":", 1)[1][:12] for info in infos]
    rows = [("REPOSITORY", "TAG", *(("DIGEST",) if digests else ()), "IMAGE ID", "CREATED", "SIZE")]
    for info in infos:
        rows.append(
            (
                info.ref.name,
                info.ref.tag or "<none>",
                *((info.descriptor.digest,) if digests else ()),
                info.image_id.split(":", 1)[1][:12],
                age(info.created),
                human_bytes(info.size),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def age(created: datetime | None) -> str:
    """How long ago, as docker says it: ``3 days ago``, ``just now``; ``-`` if unknown."""
    if created is None:
        return "-"
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - created).total_seconds()
    for unit, seconds_in in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= seconds_in:
            return f"{int(seconds // seconds_in)} {unit} ago"
    return "just now"


def human_bytes(n: float) -> str:
    """``n`` bytes in decimal units, as docker and skopeo print sizes: ``512 B``, ``1.2 MB``."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
