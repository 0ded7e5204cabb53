"""A typed read view of an image config: the JSON document a manifest's ``config`` names.

:class:`ImageConfig` wraps the parsed document (:func:`dockyard.oci.manifest.parse_config`
checks ``rootfs.diff_ids``) and never changes it: the bytes stay as received, and
writing a config is the builder's (``ImageState``). A config comes from anywhere, so a
field of the wrong type reads as absent (``""``, ``()``, ``{}`` or None) instead of
failing; list items that are not strings read as their ``str()``, so that nothing in
them is skipped unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockyard.frozen import Frozen

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The ``PATH`` of an image that sets none, as docker and BuildKit give it on Linux."""


class HistoryEntry(Frozen):
    """One entry of the config's ``history``: what made a layer (or an empty step)."""

    __slots__ = ("author", "comment", "created", "created_by", "empty_layer")
    created: str
    created_by: str
    author: str
    comment: str
    empty_layer: bool

    def __init__(
        self, created: str, created_by: str, author: str, comment: str, empty_layer: bool
    ) -> None:
        self._set(
            created=created,
            created_by=created_by,
            author=author,
            comment=comment,
            empty_layer=empty_layer,
        )


class ImageConfig(Frozen):
    """Read access to an image config document ``doc`` (kept as given)."""

    __slots__ = ("doc",)
    doc: Mapping[str, Any]

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._set(doc=doc)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        """``rootfs.diff_ids``: the uncompressed layers' digests, bottom first.

        ``()`` if absent or not a list of strings (which ``parse_config`` refuses).
        """
        rootfs = self.doc.get("rootfs")
        ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
        if isinstance(ids, list) and all(isinstance(d, str) for d in ids):
            return tuple(ids)
        return ()

    @property
    def os(self) -> str:
        return _text(self.doc.get("os"))

    @property
    def architecture(self) -> str:
        return _text(self.doc.get("architecture"))

    @property
    def variant(self) -> str | None:
        return _text(self.doc.get("variant")) or None

    @property
    def created(self) -> str | None:
        """The ``created`` timestamp as written (RFC 3339), None if absent."""
        return _text(self.doc.get("created")) or None

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """The ``history`` entries, oldest first; entries that are not objects are left out."""
        history = self.doc.get("history")
        return tuple(
            HistoryEntry(
                created=_text(entry.get("created")),
                created_by=_text(entry.get("created_by")),
                author=_text(entry.get("author")),
                comment=_text(entry.get("comment")),
                empty_layer=bool(entry.get("empty_layer")),
            )
            for entry in (history if isinstance(history, list) else [])
            if isinstance(entry, Mapping)
        )

    # The ``config`` object: how to run the image.

    @property
    def _runtime(self) -> Mapping[str, Any]:
        section = self.doc.get("config")
        return section if isinstance(section, Mapping) else {}

    @property
    def env(self) -> tuple[str, ...]:
        """``Env``: ``KEY=value`` items, in order."""
        return _strings(self._runtime.get("Env"))

    @property
    def entrypoint(self) -> tuple[str, ...]:
        return _strings(self._runtime.get("Entrypoint"))

    @property
    def cmd(self) -> tuple[str, ...]:
        return _strings(self._runtime.get("Cmd"))

    @property
    def user(self) -> str:
        """``User``: ``name``, ``uid``, ``name:group`` or ``uid:gid``; ``""`` for root."""
        return _text(self._runtime.get("User"))

    @property
    def working_dir(self) -> str:
        return _text(self._runtime.get("WorkingDir"))

    @property
    def labels(self) -> dict[str, str]:
        """``Labels`` (a copy); labels whose value is not a string are left out."""
        labels = self._runtime.get("Labels")
        if not isinstance(labels, Mapping):
            return {}
        return {str(k): v for k, v in labels.items() if isinstance(v, str)}

    @property
    def exposed_ports(self) -> tuple[str, ...]:
        """The keys of ``ExposedPorts``, such as ``8080/tcp``."""
        return _keys(self._runtime.get("ExposedPorts"))

    @property
    def volumes(self) -> tuple[str, ...]:
        """The keys of ``Volumes``: paths."""
        return _keys(self._runtime.get("Volumes"))

    @property
    def stop_signal(self) -> str | None:
        """``StopSignal`` as written (``SIGTERM``, ``15``...), None if absent."""
        return _text(self._runtime.get("StopSignal")) or None

    @property
    def healthcheck(self) -> tuple[str, ...]:
        """``Healthcheck.Test`` (``["CMD", ...]``, ``["NONE"]``...); ``()`` if absent."""
        check = self._runtime.get("Healthcheck")
        return _strings(check.get("Test")) if isinstance(check, Mapping) else ()


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _keys(value: object) -> tuple[str, ...]:
    return tuple(str(key) for key in value) if isinstance(value, Mapping) else ()
