"""Image references: ``[host[:port]/]repo/path[:tag][@digest]`` with docker.io defaults.

Follows the grammar of distribution/reference: the first path component is a registry
host when it contains ``.`` or ``:`` or is ``localhost``; a single-component Docker Hub
name gets the ``library/`` prefix; a reference with neither tag nor digest means ``latest``.
"""

from __future__ import annotations

import ipaddress
import re

from dockyard.errors import InvalidReference
from dockyard.frozen import Frozen

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
MAX_NAME_LENGTH = 255


class Reference(Frozen):
    """A parsed image reference. ``tag`` is None when only a digest was given."""

    __slots__ = ("digest", "registry", "repository", "tag")
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __init__(
        self, registry: str, repository: str, tag: str | None = None, digest: str | None = None
    ) -> None:
        self._set(registry=registry, repository=repository, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """``registry/repository`` as docker prints it (``docker.io/library/busybox``)."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        return self.replace(tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return self.replace(digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def api_host(self) -> str:
        """Host to contact for the distribution API (Docker Hub's API lives elsewhere)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.registry)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and 127.0.0.0/8 / ``[::1]`` hosts, with or without a port."""
    hostname = host
    if hostname.startswith("["):
        hostname = hostname[1 : hostname.index("]")]
    elif hostname.count(":") == 1:
        hostname = hostname.split(":", 1)[0]
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse an image reference; raise :class:`InvalidReference` naming what is wrong."""
    original = text
    if not text or text != text.strip():
        raise InvalidReference(f"invalid reference {original!r}: empty or surrounded by spaces")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidReference(f"invalid reference {original!r}: bad digest {digest!r}")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid reference {original!r}: bad tag {tag!r}")
    registry, path = _split_domain(text)
    if not _DOMAIN_RE.match(registry):
        raise InvalidReference(f"invalid reference {original!r}: bad registry host {registry!r}")
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise InvalidReference(
            f"invalid reference {original!r}: repository {path!r} must be lowercase "
            "letters, digits and separators"
        )
    if len(registry) + 1 + len(path) > MAX_NAME_LENGTH:
        raise InvalidReference(f"invalid reference {original!r}: name longer than 255 characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)


def parse_repository(text: str) -> Reference:
    """Parse ``host/repo`` with no tag or digest (for blob and layer plumbing commands)."""
    ref = parse(text, default_tag=False)
    if ref.tag or ref.digest:
        raise InvalidReference(f"invalid repository {text!r}: must not carry a tag or digest")
    return ref


def as_reference(image: str | Reference) -> Reference:
    """``image`` parsed if it is text: what the library's verbs take as an image name."""
    return parse(image) if isinstance(image, str) else image
