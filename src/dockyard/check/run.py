"""Checking one image against a policy: every check, in one streaming pass per layer.

Each layer a check wants is streamed once from the image's home (the store's blob
file, or a registry's response: nothing is pulled or extracted) and each entry goes to
every check that wants that layer. Memory stays bounded by what the checks keep (a few
small files' content, their findings), not by the image.

A finding in a file that a later layer deletes is marked with that layer: deleted
files still ship in the image's blobs, so they are findings all the same.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from dockyard.check.findings import Check, Finding
from dockyard.check.image import Layer, OpenedImage
from dockyard.check.policy import Policy
from dockyard.check.rules import OpenBase, make_checks
from dockyard.layers.walk import OPAQUE, WHITEOUT, Entry, walk_layer


@dataclass
class CheckResult:
    """The findings on one image, in the order of the checks."""

    image: str
    digest: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A finding of a rule whose severity is ``error``."""
        return any(finding.severity == "error" for finding in self.findings)


def check_image(image: OpenedImage, policy: Policy, open_base: OpenBase) -> CheckResult:
    """Run ``policy``'s rules on ``image``; ``open_base`` opens an allowed base by name."""
    checks = make_checks(policy, open_base)
    for check in checks:
        check.start(image)
    deletions = _Deletions(checks)
    for layer in image.layers:
        readers = [check for check in checks if check.wants_layer(layer)]
        if not readers:
            continue
        deletions.seen(layer)

        def visit(entry: Entry, layer: Layer = layer, readers: list[Check] = readers) -> None:
            for check in readers:
                check.entry(layer, entry)
            if entry.kind in (WHITEOUT, OPAQUE):
                deletions.delete(layer, entry)

        with image.source.open_blob(layer.descriptor) as blob:
            reading = walk_layer(
                blob,
                visit,
                name=layer.label,
                diff_id=any(check.wants_diff_id(layer) for check in checks),
            )
        for check in readers:
            check.layer_read(layer, reading)
    for check in checks:
        check.finish(image)
    return CheckResult(
        image.name, image.manifest.digest, [f for check in checks for f in check.findings]
    )


class _Deletions:
    """Marks findings whose path a later layer's whiteout (or opaque dir) deletes."""

    def __init__(self, checks: list[Check]):
        self.checks = checks
        self.marked = 0  # findings already indexed
        self.under: dict[str, list[Finding]] = {}  # a path and its ancestors -> findings

    def seen(self, layer: Layer) -> None:
        """Index the findings so far, before ``layer``'s whiteouts come."""
        findings = [f for check in self.checks for f in check.findings]
        for finding in findings[self.marked :]:
            if finding.path is None or finding.layer is None:
                continue
            path = finding.path
            while True:
                self.under.setdefault(path, []).append(finding)
                if path == "/":
                    break
                path = posixpath.dirname(path)
        self.marked = len(findings)

    def delete(self, layer: Layer, entry: Entry) -> None:
        for finding in self.under.get(entry.path, ()):
            assert finding.layer is not None
            if finding.deleted_in is not None or finding.layer.number >= layer.number:
                continue
            if entry.kind == WHITEOUT or finding.path != entry.path:  # opaque: below only
                finding.deleted_in = layer.number
