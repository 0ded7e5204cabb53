"""Findings, and the base class every rule family's check derives from.

A check sees an image in one pass: :meth:`Check.start` with the manifest and config,
then every entry of every layer it asks for (:meth:`Check.wants_layer`), bottom layer
first, then :meth:`Check.finish`. It reports what it finds with :meth:`Check.report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockyard.check.image import Layer, OpenedImage
from dockyard.layers.walk import Entry, LayerReading


@dataclass
class Finding:
    """One rule broken: where (a layer and a path in it, or the image config) and how."""

    rule: str
    severity: str  # "error" or "warning"
    message: str
    layer: Layer | None = None  # None: the image's manifest or config
    path: str | None = None
    deleted_in: int | None = None  # the layer whose whiteout hides it (it still ships)

    @property
    def where(self) -> str:
        if self.layer is None:
            return "config" if self.path is None else self.path
        place = self.layer.label + (f" {self.path}" if self.path else "")
        if self.deleted_in is not None:
            place += f" (deleted in layer {self.deleted_in}, still shipped)"
        return place

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "layer": self.layer.number if self.layer else None,
            "layer_digest": self.layer.descriptor.digest if self.layer else None,
            "created_by": self.layer.created_by if self.layer else None,
            "path": self.path,
            "deleted_in_layer": self.deleted_in,
        }


class Check:
    """One rule family's check over one image; subclasses override what they need."""

    rule = ""

    def __init__(self, severity: str):
        self.severity = severity
        self.findings: list[Finding] = []

    def report(self, message: str, layer: Layer | None = None, path: str | None = None) -> None:
        self.findings.append(Finding(self.rule, self.severity, message, layer, path))

    def start(self, image: OpenedImage) -> None:
        """Judge the manifest and config, before any layer is read."""

    def wants_layer(self, layer: Layer) -> bool:
        """Whether :meth:`entry` must see this layer's entries."""
        return False

    def wants_diff_id(self, layer: Layer) -> bool:
        """Whether the layer's diff ID must be computed from its content."""
        return False

    def entry(self, layer: Layer, entry: Entry) -> None:
        """One entry of a layer, in tar order."""

    def layer_read(self, layer: Layer, reading: LayerReading) -> None:
        """A layer was read to its end."""

    def finish(self, image: OpenedImage) -> None:
        """Every wanted layer was read."""
