"""ADD's remote sources: HTTP(S) downloads as BuildKit's http source makes them.

The file is named after the URL path's last element (``__unnamed__`` without one, as
dockerfile2llb names it), written with mode 0600 and owned by 0:0, its mtime from the
``Last-Modified`` header (the Unix epoch without one). ``--checksum`` pins the content
digest (``sha256:``/``sha384:``/``sha512:``); a mismatch fails the build. Git URLs
(``git@``, ``git://``, ``ssh://``, ``http(s)://….git``) are recognised so that they can
be refused clearly.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dockyard.builder.frontend.records import Record, record

_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_CHUNK = 1 << 20


def is_git(source: str) -> bool:
    """BuildKit's ``isGitSource`` for what ``ADD``/``COPY`` accept.

    ``github.com/…`` without a scheme is a local path, as BuildKit treats it.
    """
    if source.startswith(("git://", "ssh://", "git@")):
        return True
    if source.startswith(("http://", "https://")):
        return urlsplit(source.partition("#")[0]).path.endswith(".git")
    return False


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://")) and not is_git(source)


def file_name(url: str) -> str:
    """dockerfile2llb's name for a downloaded file: ``path.Base`` of the URL path.

    Made safe as BuildKit's ``SafeFileName`` makes it; ``__unnamed__`` without one.
    """
    path = unquote(urlsplit(url).path)
    name = posixpath.basename(path.rstrip("/")) if path.strip("/") else ""
    if not name:
        return "__unnamed__"
    if name.strip() in ("", ".", "..") or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        return "download"
    return name.strip()


def parse_checksum(text: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a ``--checksum``; ValueError as go-digest's ``Parse``."""
    algorithm, colon, encoded = text.partition(":")
    if not colon or not algorithm or not encoded:
        raise ValueError("invalid checksum digest format")
    if algorithm not in _HEX_LENGTHS:
        raise ValueError("unsupported digest algorithm")
    if len(encoded) != _HEX_LENGTHS[algorithm]:
        raise ValueError("invalid checksum digest length")
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise ValueError("invalid checksum digest format")
    return algorithm, encoded


@record
class Download(Record):
    """A URL fetched into ``path``: its sha256 ``digest``, name and mtime."""

    url: str
    path: Path
    digest: str
    name: str
    mtime_ns: int


class DownloadError(Exception):
    """The download failed or its content did not match the pinned checksum."""


def download(url: str, directory: Path, checksum: str = "") -> Download:
    """GET ``url`` into a new file in ``directory``, verifying ``checksum`` if given."""
    import httpx

    want = parse_checksum(checksum) if checksum else None
    fd_path = directory / f"download-{os.urandom(8).hex()}"
    sha256 = hashlib.sha256()
    pinned = hashlib.new(want[0]) if want and want[0] != "sha256" else None
    try:
        with (
            httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0)) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code < 200 or response.status_code >= 400:
                raise DownloadError(f"invalid response status {response.status_code}")
            modified = response.headers.get("last-modified")
            fd = os.open(fd_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    sha256.update(chunk)
                    if pinned is not None:
                        pinned.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as e:
        raise DownloadError(f"failed to load {url}: {e}") from None
    digest = "sha256:" + sha256.hexdigest()
    if want is not None:
        got = digest if pinned is None else f"{want[0]}:{pinned.hexdigest()}"
        if got != f"{want[0]}:{want[1]}":
            fd_path.unlink(missing_ok=True)
            raise DownloadError(f"digest mismatch for {url}: {got} (expected: {checksum})")
    return Download(url, fd_path, digest, file_name(url), _http_time(modified))


def _http_time(value: str | None) -> int:
    """``Last-Modified`` in ns (Go's ``http.ParseTime`` formats); 0 without it."""
    if not value:
        return 0
    import email.utils  # only ADD of a URL needs it: kept off every build's start-up

    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0
    return int(parsed.timestamp()) * 1_000_000_000
