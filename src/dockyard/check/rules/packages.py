"""``packages``: the Debian and Alpine packages installed, checked against a deny list.

Read from the image's final dpkg ``status`` / ``status.d`` and apk ``installed`` databases; the deny
list has versions."""

from __future__ import annotations

from collections.abc import Iterator

from dockyard.check.findings import Check
from dockyard.check.image import Layer, OpenedImage
from dockyard.check.latest import LatestFiles
from dockyard.check.policy import PackagesRule
from dockyard.check.versions import parse_constraint
from dockyard.layers.walk import FILE, Entry

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d/"  # distroless: one file per package
APK_INSTALLED = "/lib/apk/db/installed"
MAX_DATABASE = 64 << 20


class PackagesCheck(Check):
    rule = "packages"

    def __init__(self, settings: PackagesRule):
        super().__init__(settings.severity)
        self.deny = [parse_constraint(text) for text in settings.deny]
        self.databases = LatestFiles((DPKG_STATUS, APK_INSTALLED), MAX_DATABASE)

    def wants_layer(self, layer: Layer) -> bool:
        return True

    def entry(self, layer: Layer, entry: Entry) -> None:
        new = entry.path not in self.databases.paths
        if entry.kind == FILE and entry.path.startswith(DPKG_STATUS_D) and new:
            self.databases.paths = (*self.databases.paths, entry.path)
        self.databases.entry(layer, entry)

    def finish(self, image: OpenedImage) -> None:
        for path, version in sorted(self.databases.versions.items()):
            parse = parse_apk if path == APK_INSTALLED else parse_dpkg
            for name, installed in parse(version.content):
                for constraint in self.deny:
                    if constraint.matches(name, installed):
                        self.report(
                            f"package {name} {installed} is denied ({constraint})",
                            version.layer,
                            path,
                        )


def parse_dpkg(data: bytes) -> Iterator[tuple[str, str]]:
    """``(name, version)`` of each installed package of a dpkg status file."""
    for paragraph in data.decode(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        status = fields.get("Status", "install ok installed").split()
        if "Package" in fields and "Version" in fields and status[-1:] == ["installed"]:
            yield fields["Package"], fields["Version"]


def parse_apk(data: bytes) -> Iterator[tuple[str, str]]:
    """``(name, version)`` of each package of an apk ``installed`` database."""
    for paragraph in data.decode(errors="replace").split("\n\n"):
        fields = dict(line.split(":", 1) for line in paragraph.splitlines() if line[1:2] == ":")
        if "P" in fields and "V" in fields:
            yield fields["P"], fields["V"]
