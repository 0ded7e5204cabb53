"""The distribution spec's grammar for repository names, tags, digests and upload ids.

Everything a request names is checked here before it becomes part of a path under the
registry's root: a name is lowercase components joined by ``/`` (no ``.``/``..``
component, no leading ``_``), a tag cannot contain ``/``, a digest is ``alg:hex``.
So nothing in a request can reach outside ``--root``.
"""

from __future__ import annotations

import re

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
# Any well-formed digest (an algorithm we do not support is "unsupported", not "invalid").
ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
UPLOAD_RE = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
MAX_NAME_LENGTH = 255


def valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.match(name) is not None


def valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


def valid_digest(digest: str) -> bool:
    return DIGEST_RE.match(digest) is not None


def is_digest_like(reference: str) -> bool:
    """A manifest reference that is meant as a digest (it has a ``:``)."""
    return ":" in reference


def valid_upload_id(upload_id: str) -> bool:
    return UPLOAD_RE.match(upload_id) is not None


def catalog_order(name: str) -> list[str]:
    """The catalog's sort key: component by component (``a`` < ``a/b`` < ``a-b``).

    This is how distribution pages it, and how both backends can list it a level at a
    time.
    """
    return name.split("/")
