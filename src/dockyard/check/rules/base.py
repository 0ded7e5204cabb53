"""``base``: the image starts with the layers of one of the allowed base images.

A base is named as ``dockyard check`` names images (a store reference, ``docker://REF``,
``oci:DIR:TAG``...), pinned by digest or not. Layers match by blob digest, or, where
a layer was compressed again, by diff ID -- which is then computed from the layer's
content while it is read, since the image's config could claim any diff ID.
"""

from __future__ import annotations

from collections.abc import Callable

from dockyard.check.findings import Check
from dockyard.check.image import Layer, OpenedImage
from dockyard.check.policy import BaseRule
from dockyard.layers.walk import LayerReading

OpenBase = Callable[[str], OpenedImage]


class BaseCheck(Check):
    rule = "base"

    def __init__(self, settings: BaseRule, open_base: OpenBase):
        super().__init__(settings.severity)
        self.settings = settings
        self.open_base = open_base
        self.candidates: list[tuple[str, list[Layer]]] = []
        self.verify: dict[int, str] = {}  # layer number -> diff ID its content must have
        self.image_layers: list[Layer] = []

    def start(self, image: OpenedImage) -> None:
        self.image_layers = image.layers
        best: tuple[int, str] = (0, "")
        for name in self.settings.allowed:
            base = self.open_base(name).layers
            same = _common(image.layers, base)
            if same == len(base):
                self.candidates.append((name, base))
            best = max(best, (same, name))
        if not self.candidates:
            allowed = ", ".join(self.settings.allowed)
            layer = image.layers[best[0]] if best[0] < len(image.layers) else None
            self.report(f"does not start with the layers of an allowed base ({allowed})", layer)
            return
        for _, base in self.candidates:  # diff-ID-only matches are verified on reading
            for mine, theirs in zip(image.layers, base, strict=False):
                if mine.descriptor.digest != theirs.descriptor.digest and theirs.diff_id:
                    self.verify[mine.number] = theirs.diff_id

    def wants_layer(self, layer: Layer) -> bool:
        return layer.number in self.verify

    def wants_diff_id(self, layer: Layer) -> bool:
        return layer.number in self.verify

    def layer_read(self, layer: Layer, reading: LayerReading) -> None:
        expected = self.verify.get(layer.number)
        if expected is not None and reading.diff_id != expected:
            self.candidates = [
                (name, base)
                for name, base in self.candidates
                if len(base) < layer.number
                or base[layer.number - 1].descriptor.digest == layer.descriptor.digest
            ]
            if not self.candidates:
                self.report(
                    f"content has diff ID {reading.diff_id}, not the base's {expected}", layer
                )
            self.verify = {} if not self.candidates else self.verify


def _common(image: list[Layer], base: list[Layer]) -> int:
    """How many of the bottom layers match (by blob digest or diff ID)."""
    count = 0
    for mine, theirs in zip(image, base, strict=False):
        same_blob = mine.descriptor.digest == theirs.descriptor.digest
        if not same_blob and not (mine.diff_id and mine.diff_id == theirs.diff_id):
            break
        count += 1
    return count
