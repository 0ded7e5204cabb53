"""An image being edited: its config document and layers, then its config blob and manifest.

The library's mutate step (go-containerregistry's ``mutate``), as one mutable value:
start from an image's config and layers (:meth:`ImageState.from_image`) or from nothing
(:meth:`ImageState.new`), edit the runtime config (Env, Cmd, Entrypoint, WorkingDir,
User, Labels, ExposedPorts, Volumes, StopSignal, Healthcheck, OnBuild, Shell: the
fields and shapes docker writes), add layers and history entries, then
:meth:`ImageState.finish` gives the config bytes and the manifest to store. Pure
documents: nothing here reads or writes a blob. Builds (``builder.image`` maps
Dockerfile instructions onto these edits), ``container commit`` and ``dockyard import``
all make their images through it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor, Platform


@dataclass
class ImageState:
    """An image between two edits: the whole config document and the layer descriptors."""

    doc: dict[str, Any]  # the whole image config document
    layers: list[Descriptor] = field(default_factory=list)
    base: str | None = None  # the manifest digest of the image it started from (None: none)

    @classmethod
    def new(cls, platform: Platform) -> ImageState:
        """An image with no layers, no history and an empty runtime config."""
        doc: dict[str, Any] = {
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }
        if platform.variant:
            doc["variant"] = platform.variant
        return cls(doc)

    @classmethod
    def from_image(
        cls, config: dict[str, Any], layers: list[Descriptor], digest: str
    ) -> ImageState:
        """The image whose manifest (``digest``) names ``config`` and ``layers``."""
        doc = copy.deepcopy(config)
        doc.setdefault("config", {})
        doc.setdefault("history", [])
        return cls(doc, list(layers), digest)

    def copy(self) -> ImageState:
        """An independent copy (a stage built on another stage starts from one)."""
        return ImageState(copy.deepcopy(self.doc), list(self.layers), self.base)

    # what the image is

    @property
    def config(self) -> dict[str, Any]:
        """The runtime part (``config`` field): Env, Cmd, WorkingDir, User, ..."""
        return self.doc["config"]

    @property
    def diff_ids(self) -> list[str]:
        return self.doc["rootfs"]["diff_ids"]

    @property
    def env(self) -> dict[str, str]:
        """``config.Env`` as a mapping (a later entry for a name wins)."""
        out = {}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    @property
    def workdir(self) -> str:
        """The working directory (``/`` when the config names none)."""
        return self.config.get("WorkingDir") or "/"

    @property
    def user(self) -> str:
        """``config.User`` ("" when unset: root)."""
        return self.config.get("User") or ""

    @property
    def shell(self) -> tuple[str, ...] | None:
        """``config.Shell``, the shell of shell-form commands (None: the default)."""
        shell = self.config.get("Shell")
        return tuple(shell) if shell else None

    @property
    def is_windows(self) -> bool:
        return self.doc.get("os") == "windows"

    def identity(self) -> str:
        """What a step starting from this state depends on, as a sha256 hex digest.

        Layers and runtime config by content, never times or history: equal states give
        equal cache keys.
        """
        doc = {
            "diff_ids": self.diff_ids,
            "config": self.config,
            "platform": [self.doc.get("os"), self.doc.get("architecture"), self.doc.get("variant")],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    # edits of the runtime config

    def set_env(self, key: str, value: str) -> None:
        """Set ``key`` in Env: an earlier entry for it goes, the new one comes last."""
        env = [e for e in self.config.get("Env") or [] if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
        self.config["Env"] = env

    def set_workdir(self, path: str) -> None:
        self.config["WorkingDir"] = path

    def set_user(self, user: str) -> None:
        self.config["User"] = user

    def set_cmd(self, argv: list[str] | None) -> None:
        """Set Cmd; None removes it."""
        self._set("Cmd", argv)

    def set_entrypoint(self, argv: list[str]) -> None:
        self.config["Entrypoint"] = argv

    def set_shell(self, argv: list[str]) -> None:
        self.config["Shell"] = argv

    def set_stop_signal(self, signal: str) -> None:
        self.config["StopSignal"] = signal

    def set_healthcheck(self, check: dict[str, Any]) -> None:
        """Set Healthcheck: ``Test`` and the durations (nanoseconds) and retries given."""
        self.config["Healthcheck"] = check

    def set_author(self, author: str) -> None:
        self.doc["author"] = author

    def add_labels(self, labels: Mapping[str, str]) -> None:
        self.config.setdefault("Labels", {}).update(labels)

    def add_exposed_ports(self, ports: Iterable[str]) -> None:
        """Add ``port/proto`` entries to ExposedPorts."""
        exposed = self.config.setdefault("ExposedPorts", {})
        for port in ports:
            exposed[port] = {}

    def add_volumes(self, paths: Iterable[str]) -> None:
        volumes = self.config.setdefault("Volumes", {})
        for path in paths:
            volumes[path] = {}

    def add_onbuild(self, expression: str) -> None:
        """Add a trigger for the images built on this one."""
        self.config.setdefault("OnBuild", []).append(expression)

    def take_onbuild(self) -> list[str]:
        """Remove the OnBuild triggers and return them (they fire once, in the first child)."""
        return self.config.pop("OnBuild", None) or []

    def _set(self, key: str, value: Any) -> None:
        if value is None:
            self.config.pop(key, None)
        else:
            self.config[key] = value

    # layers and history

    def add_history(
        self,
        created_by: str,
        created: str | None,
        *,
        empty_layer: bool,
        comment: str | None = None,
    ) -> None:
        """Add a history entry.

        ``created`` None (a step that only edits the config): the time of the layers
        around it, filled in by :meth:`finish`.
        """
        entry: dict[str, Any] = {"created": created} if created else {}
        entry["created_by"] = created_by
        if comment is not None:
            entry["comment"] = comment
        if empty_layer:
            entry["empty_layer"] = True
        self.doc["history"].append(entry)

    def add_layer(
        self,
        layer: Descriptor,
        diff_id: str,
        created_by: str,
        created: str,
        comment: str | None = None,
    ) -> None:
        """Add ``layer`` on top, with its history entry.

        ``diff_id`` is the digest of its uncompressed tar.
        """
        self.layers.append(layer)
        self.diff_ids.append(diff_id)
        self.add_history(created_by, created, empty_layer=False, comment=comment)

    def finish(self, now: str, *, fixed: bool = False) -> tuple[bytes, manifests.Manifest]:
        """The config blob and the manifest of this state as a finished image.

        Times as BuildKit's exporter gives them: history entries without one take the
        first new layer's time (or the previous entry's), and the image is as old as its
        last history entry, so a rebuild whose steps all hit the cache gives the same
        digest. ``now`` if there is no time at all, or always if ``fixed`` (the build's
        SOURCE_DATE_EPOCH)."""
        last = _fill_history_times(self.doc["history"])
        self.doc["created"] = now if fixed or last is None else last
        if not self.config:
            self.doc["config"] = {}
        config = manifests.dumps(self.doc)
        manifest = manifests.build_manifest(
            Descriptor.of_bytes(mt.OCI_CONFIG, config), list(self.layers)
        )
        return config, manifest


def _fill_history_times(history: list[dict[str, Any]]) -> str | None:
    """Give the entries without a time one, as BuildKit's ``normalizeLayersAndHistory``:
    those before the first timed entry after a gap take that entry's time, later ones
    the previous entry's. Return the last time (None: no entry has one)."""
    created = None
    gap = False
    for entry in history:
        if entry.get("created"):
            created = entry["created"]
            if gap:
                break
        else:
            gap = True
    gap = False
    for index, entry in enumerate(history):
        if entry.get("created"):
            if gap:
                created = entry["created"]
        else:
            gap = True
            if created is not None:
                history[index] = {"created": created, **entry}
    times = [entry["created"] for entry in history if entry.get("created")]
    return times[-1] if times else None
