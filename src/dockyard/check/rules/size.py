"""``max_size`` (compressed: the layer blobs; uncompressed: their tars) and ``max_layers``."""

from __future__ import annotations

from dockyard.check.findings import Check
from dockyard.check.image import Layer, OpenedImage
from dockyard.check.policy import MaxLayersRule, MaxSizeRule
from dockyard.layers.limits import format_size
from dockyard.layers.walk import LayerReading


class MaxSizeCheck(Check):
    rule = "max_size"

    def __init__(self, settings: MaxSizeRule):
        super().__init__(settings.severity)
        self.settings = settings
        self.uncompressed = 0

    def start(self, image: OpenedImage) -> None:
        limit = self.settings.compressed
        compressed = sum(layer.descriptor.size for layer in image.layers)
        if limit is not None and compressed > limit:
            self.report(f"compressed size {format_size(compressed)} is over {format_size(limit)}")

    def wants_layer(self, layer: Layer) -> bool:
        return self.settings.uncompressed is not None

    def layer_read(self, layer: Layer, reading: LayerReading) -> None:
        self.uncompressed += reading.tar_size

    def finish(self, image: OpenedImage) -> None:
        limit = self.settings.uncompressed
        if limit is not None and self.uncompressed > limit:
            self.report(
                f"uncompressed size {format_size(self.uncompressed)} is over {format_size(limit)}"
            )


class MaxLayersCheck(Check):
    rule = "max_layers"

    def __init__(self, settings: MaxLayersRule):
        super().__init__(settings.severity)
        self.settings = settings

    def start(self, image: OpenedImage) -> None:
        if len(image.layers) > self.settings.max:
            self.report(f"{len(image.layers)} layers, more than {self.settings.max}")
