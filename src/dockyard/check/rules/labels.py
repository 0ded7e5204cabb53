"""``labels``: required labels are set, and match their pattern (a regex, searched)."""

from __future__ import annotations

import re

from dockyard.check.findings import Check
from dockyard.check.image import OpenedImage
from dockyard.check.policy import LabelsRule


class LabelsCheck(Check):
    rule = "labels"

    def __init__(self, settings: LabelsRule):
        super().__init__(settings.severity)
        self.settings = settings

    def start(self, image: OpenedImage) -> None:
        labels = image.config.labels
        for name, pattern in self.settings.required.items():
            value = labels.get(name)
            if value is None:
                self.report(f"label {name} is missing")
            elif pattern is not None and not re.search(pattern, value):
                self.report(f"label {name}={value!r} does not match {pattern!r}")
