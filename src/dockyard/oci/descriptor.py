"""Descriptors (media type + digest + size) and platforms, as the OCI spec defines them."""

from __future__ import annotations

import os
from typing import Any

from dockyard.errors import ManifestError
from dockyard.frozen import Frozen
from dockyard.oci import digest as digests

_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


class Platform(Frozen):
    __slots__ = ("architecture", "os", "os_version", "variant")
    os: str
    architecture: str
    variant: str | None
    os_version: str | None

    def __init__(
        self,
        os: str = "linux",
        architecture: str = "amd64",
        variant: str | None = None,
        os_version: str | None = None,
    ) -> None:
        self._set(os=os, architecture=architecture, variant=variant, os_version=os_version)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8`` style, as ``--platform`` takes it."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ManifestError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        machine = os.uname().machine  # platform.machine()'s answer, without its import
        return cls("linux", _ARCH_ALIASES.get(machine, machine))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Platform:
        return cls(
            data.get("os", ""),
            data.get("architecture", ""),
            data.get("variant"),
            data.get("os.version"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, other: Platform) -> bool:
        """Does ``other`` (an index entry) satisfy this wanted platform?"""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant is None or self.variant == (other.variant or _default_variant(other))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _default_variant(p: Platform) -> str | None:
    return {"arm64": "v8"}.get(p.architecture)


class Descriptor(Frozen):
    """A blob by media type, digest and size; ``annotations`` are not compared."""

    __slots__ = ("annotations", "artifact_type", "digest", "media_type", "platform", "size", "urls")
    _uncompared = frozenset({"annotations"})
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str]
    platform: Platform | None
    urls: tuple[str, ...]
    artifact_type: str | None

    def __init__(
        self,
        media_type: str,
        digest: str,
        size: int,
        annotations: dict[str, str] | None = None,
        platform: Platform | None = None,
        urls: tuple[str, ...] = (),
        artifact_type: str | None = None,
    ) -> None:
        annotations = {} if annotations is None else annotations
        self._set(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=annotations,
            platform=platform,
            urls=urls,
            artifact_type=artifact_type,
        )

    @classmethod
    def from_dict(cls, data: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: expected an object")
        try:
            media_type = data["mediaType"]
            digest = digests.validate(data["digest"])
            size = data["size"]
        except KeyError as e:
            raise ManifestError(f"{where}: missing field {e.args[0]!r}") from None
        except Exception as e:
            raise ManifestError(f"{where}: {e}") from None
        if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"{where}: mediaType must be a string and size a count")
        plat = data.get("platform")
        return cls(
            media_type,
            digest,
            size,
            dict(data.get("annotations") or {}),
            Platform.from_dict(plat) if isinstance(plat, dict) else None,
            tuple(data.get("urls") or ()),
            data.get("artifactType"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def of_bytes(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        return cls(media_type, digests.of_bytes(data), len(data), **kw)
