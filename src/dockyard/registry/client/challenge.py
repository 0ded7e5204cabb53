"""Parsing ``WWW-Authenticate`` challenges (RFC 7235).

For example ``Bearer
realm="https://auth.example/token",service="registry",scope="repository:a:pull"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"[\s,]*({_TOKEN})")
# Values are quoted strings or, leniently, anything up to a comma (some realms go unquoted).
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(?:,|$)')
_TOKEN68_RE = re.compile(r"\s+[A-Za-z0-9._~+/-]+=*\s*(?:,|$)")
_ESCAPE_RE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: a lower-case scheme and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Every challenge in one header value, in order; malformed tails are dropped."""
    challenges: list[Challenge] = []
    pos = 0
    while True:
        scheme = _SCHEME_RE.match(header, pos)
        if not scheme:
            return challenges
        pos = scheme.end()
        if token68 := _TOKEN68_RE.match(header, pos):
            pos = token68.end()
        params: dict[str, str] = {}
        while param := _PARAM_RE.match(header, pos):
            quoted, bare = param.group(2), param.group(3)
            value = _ESCAPE_RE.sub(r"\1", quoted) if quoted is not None else bare
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
