"""``user``: the image does not run as root (uid 0), unless the policy allows it.

No ``User`` in the config is root. A name is looked up in the image's final
``/etc/passwd``; a name that is not there is reported too (its uid cannot be known).
"""

from __future__ import annotations

from dockyard.check.findings import Check
from dockyard.check.image import Layer, OpenedImage
from dockyard.check.latest import LatestFiles
from dockyard.check.policy import UserRule
from dockyard.layers.walk import Entry

PASSWD = "/etc/passwd"


class UserCheck(Check):
    rule = "user"

    def __init__(self, settings: UserRule):
        super().__init__(settings.severity)
        self.settings = settings
        self.passwd = LatestFiles((PASSWD,), 4 << 20)
        self.name = ""

    def start(self, image: OpenedImage) -> None:
        self.name = image.config.user.split(":", 1)[0]

    def wants_layer(self, layer: Layer) -> bool:
        return not self.name.isdigit() and self.name not in ("", "root")

    def entry(self, layer: Layer, entry: Entry) -> None:
        self.passwd.entry(layer, entry)

    def finish(self, image: OpenedImage) -> None:
        name = self.name
        if name in ("", "root") or name.isdigit():
            uid = 0 if name in ("", "root") else int(name)
            if uid == 0 and not self.settings.allow_root:
                how = "no USER: runs as root" if not name else f"USER {name}: runs as root"
                self.report(how)
            return
        version = self.passwd.get(PASSWD)
        if version is not None:
            for line in version.content.decode(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[0] == name:
                    if fields[2].strip() == "0" and not self.settings.allow_root:
                        self.report(f"USER {name} has uid 0: runs as root", version.layer, PASSWD)
                    return
        where = (version.layer, PASSWD) if version else (None, None)
        self.report(f"USER {name} is not in /etc/passwd: its uid cannot be known", *where)
