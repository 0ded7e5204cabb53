"""The image a stage is building: layers so far plus the config docker writes.

Keeps the config exactly in docker's shape (``config`` with Env, Cmd, Entrypoint,
WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal, Healthcheck, OnBuild,
Shell; ``rootfs.diff_ids``; ``history`` with ``empty_layer`` for metadata steps).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.builder.frontend import commands as ins
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor, Platform

HISTORY_COMMENT = "buildkit.dockerfile.v0"


@dataclass
class ImageState:
    """A stage's image between two instructions."""

    doc: dict[str, Any]  # the whole image config document
    layers: list[Descriptor] = field(default_factory=list)
    base: str | None = None  # the base image's manifest digest ("scratch": None)

    @classmethod
    def scratch(cls, platform: Platform) -> ImageState:
        """``FROM scratch``: BuildKit's empty image, working dir ``/`` (the builder adds
        ``PATH`` to every stage's Env that lacks it)."""
        doc = {
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"WorkingDir": "/"},
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
        doc = copy.deepcopy(config)
        doc.setdefault("config", {})
        doc.setdefault("history", [])
        return cls(doc, list(layers), digest)

    def copy(self) -> ImageState:
        return ImageState(copy.deepcopy(self.doc), list(self.layers), self.base)

    @property
    def config(self) -> dict[str, Any]:
        """The runtime part (``config`` field): Env, Cmd, WorkingDir, User, ..."""
        return self.doc["config"]

    @property
    def diff_ids(self) -> list[str]:
        return self.doc["rootfs"]["diff_ids"]

    @property
    def env(self) -> dict[str, str]:
        out = {}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def set_env(self, key: str, value: str) -> None:
        env = [e for e in self.config.get("Env") or [] if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
        self.config["Env"] = env

    def identity(self) -> str:
        """What a step starting from this state depends on: layers and runtime config by
        content (never times or history), so equal states give equal cache keys."""
        doc = {
            "diff_ids": self.diff_ids,
            "config": self.config,
            "platform": [self.doc.get("os"), self.doc.get("architecture"), self.doc.get("variant")],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def apply_metadata(self, instr: ins.Instruction) -> str | None:
        """Apply an instruction that only changes the config (ENV, CMD, LABEL, USER,
        ...: everything but FROM, RUN, COPY, ADD, WORKDIR's directory and ARG), already
        expanded; return its history text (None: ONBUILD, which docker records in no
        history). Used by builds and by ``container commit --change``."""
        config = self.config
        match instr:
            case ins.Env():
                for pair in instr.pairs:
                    self.set_env(pair.key, pair.value)
            case ins.Label():
                labels = config.setdefault("Labels", {})
                for pair in instr.pairs:
                    labels[pair.key] = pair.value
            case ins.Maintainer():
                self.doc["author"] = instr.maintainer
            case ins.Expose():
                ports = config.setdefault("ExposedPorts", {})
                for port in instr.ports:
                    ports[port] = {}
            case ins.Volume():
                volumes = config.setdefault("Volumes", {})
                for volume in instr.volumes:
                    volumes[volume] = {}
            case ins.User():
                config["User"] = instr.user
            case ins.StopSignal():
                config["StopSignal"] = instr.signal
            case ins.Healthcheck():
                config["Healthcheck"] = _healthcheck(instr)
            case ins.Shell():
                config["Shell"] = list(instr.shell)
            case ins.Cmd() | ins.Entrypoint():
                shell = tuple(config.get("Shell") or ins.DEFAULT_SHELL)
                config[instr.keyword.title()] = instr.config_value(shell)
                return instr.created_by(shell)
            case ins.Onbuild():
                config.setdefault("OnBuild", []).append(instr.expression)
                return None
            case _:
                raise instr.error(f"{instr.keyword} is not supported")
        return instr.created_by()

    def add_history(self, created_by: str, created: str | None, *, empty_layer: bool) -> None:
        """A history entry; ``created`` None (a metadata step): the time of the layers
        around it, filled in by :meth:`finish`."""
        entry: dict[str, Any] = {"created": created} if created else {}
        entry |= {"created_by": created_by, "comment": HISTORY_COMMENT}
        if empty_layer:
            entry["empty_layer"] = True
        self.doc["history"].append(entry)

    def add_layer(self, layer: Descriptor, diff_id: str, created_by: str, created: str) -> None:
        self.layers.append(layer)
        self.diff_ids.append(diff_id)
        self.add_history(created_by, created, empty_layer=False)

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


def _healthcheck(instr: ins.Healthcheck) -> dict[str, Any]:
    check: dict[str, Any] = {"Test": list(instr.test)}
    for key, value in (
        ("Interval", instr.interval),
        ("Timeout", instr.timeout),
        ("StartPeriod", instr.start_period),
        ("StartInterval", instr.start_interval),
        ("Retries", instr.retries),
    ):
        if value:
            check[key] = value
    return check
