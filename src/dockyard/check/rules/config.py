"""``config``: forbidden environment names, a required HEALTHCHECK, allowed ports."""

from __future__ import annotations

from fnmatch import fnmatchcase

from dockyard.check.findings import Check
from dockyard.check.image import OpenedImage
from dockyard.check.policy import ConfigRule


class ConfigCheck(Check):
    rule = "config"

    def __init__(self, settings: ConfigRule):
        super().__init__(settings.severity)
        self.settings = settings

    def start(self, image: OpenedImage) -> None:
        config = image.config
        for item in config.env:
            name = item.partition("=")[0]
            for pattern in self.settings.forbidden_env:
                if fnmatchcase(name.upper(), pattern.upper()):
                    self.report(f"environment variable {name} matches forbidden {pattern!r}")
                    break
        if self.settings.require_healthcheck:
            test = config.healthcheck
            if not test or test == ("NONE",):
                self.report("no HEALTHCHECK")
        allowed = self.settings.allowed_ports
        if allowed is not None:
            for port in config.exposed_ports:
                if not any(_covers(rule, port.lower()) for rule in allowed):
                    self.report(f"exposed port {port} is not allowed")


def _covers(rule: str, port: str) -> bool:
    """Whether ``8000-8100/tcp`` (or ``8080/tcp``) covers ``port`` (``8080/tcp``)."""
    number, _, protocol = port.partition("/")
    span, _, rule_protocol = rule.partition("/")
    if (protocol or "tcp") != rule_protocol or not number.isdigit():
        return False
    low, _, high = span.partition("-")
    return int(low) <= int(number) <= int(high or low)
