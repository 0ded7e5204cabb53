"""``secrets``: private keys, cloud credentials and tokens in any layer's text files.

Every layer is read, so a key a later layer deletes (it still ships in the image's
blobs) is found with the layer that holds it. Two kinds of detector, each reporting
what it matched by name, never the secret itself:

- well-known formats (:data:`PATTERNS`): PEM private keys with a body, AWS access
  key IDs and secret keys, GitHub, GitLab, Slack, Stripe, npm and Google API tokens,
  JWTs and docker ``config.json`` logins;
- high-entropy strings assigned to a secret-like name (``API_TOKEN = "..."``,
  ``password: ...``), as detect-secrets' keyword and entropy plugins do.

A text file is one with no NUL in its first 8 KiB; the first ``max_file_size`` bytes
(1 MiB by default) of each are read. Paths in ``allow`` are not read.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from dockyard.check.findings import Check
from dockyard.check.image import Layer
from dockyard.check.policy import SecretsRule
from dockyard.check.rules.files import matches
from dockyard.layers.walk import FILE, Entry

SNIFF = 8 << 10

# (name, literal, pattern): every match of the pattern starts with the literal, which
# is looked for first (``in``: a C search at GB/s); most text files hold none of them,
# and no regular expression runs over them. A pattern starting with its literal also
# lets the regex engine skip to it.
PATTERNS: tuple[tuple[str, bytes, re.Pattern[bytes]], ...] = tuple(
    (name, literal, re.compile(pattern))
    for name, literal, pattern in (
        (
            "private key",
            b"-----BEGIN ",
            rb"-----BEGIN (?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
            rb"[\r\n]+(?:[A-Za-z0-9-]+: [^\r\n]*[\r\n]+)*[\r\n]*[A-Za-z0-9+/=]{40,}",
        ),
        ("AWS access key ID", b"AKIA", rb"AKIA[0-9A-Z]{16}(?![0-9A-Za-z])"),
        ("AWS access key ID", b"ASIA", rb"ASIA[0-9A-Z]{16}(?![0-9A-Za-z])"),
        ("GitHub token", b"gh", rb"gh[pousr]_[A-Za-z0-9]{36,}"),
        ("GitHub token", b"github_pat_", rb"github_pat_[A-Za-z0-9_]{60,}"),
        ("GitLab token", b"glpat-", rb"glpat-[A-Za-z0-9_-]{20,}"),
        ("Slack token", b"xox", rb"xox[abposr]-[A-Za-z0-9-]{10,}"),
        ("Stripe secret key", b"k_live_", rb"k_live_[A-Za-z0-9]{24,}"),
        ("npm token", b"npm_", rb"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
        ("Google API key", b"AIza", rb"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
        (
            "JSON web token",
            b"eyJ",
            rb"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}",
        ),
        ("registry login", b'"auth"', rb'"auth"\s*:\s*"[A-Za-z0-9+/]{12,}={0,2}"'),
    )
)

# Secret-like names (looked for in the lower-cased text); after one, an assignment and
# a value of one token, quoted or not.
KEYWORDS = (
    b"secret", b"token", b"passw", b"api_key", b"apikey", b"access_key", b"accesskey",
    b"private_key", b"privatekey", b"credential",
)  # fmt: skip
ASSIGNED = re.compile(
    rb"[a-z0-9_.-]{0,20}[\"']?[ \t]{0,3}(?::=|=|:)[ \t]{0,3}[\"']?([a-z0-9+/=_.~-]{20,200})"
)
AWS_SECRET = re.compile(
    rb"aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?([a-z0-9/+]{40})(?![a-z0-9/+])"
)


def shannon_entropy(value: bytes) -> float:
    """Bits per character of ``value``."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def random_looking(value: bytes) -> bool:
    """Whether ``value`` looks like a generated secret rather than a word or a path.

    Hex of 32+ characters with entropy 3+, else mixed letters and digits with entropy 4+ (a random
    20-character base64 string has about 4.1)."""
    text = value.strip(b"=")
    if re.fullmatch(rb"[0-9a-fA-F]{32,}", text):
        return shannon_entropy(text) >= 3.0
    has_digit = any(48 <= c <= 57 for c in text)
    has_upper = any(65 <= c <= 90 for c in text)
    has_lower = any(97 <= c <= 122 for c in text)
    return has_digit and has_upper and has_lower and shannon_entropy(text) >= 4.0


class SecretsCheck(Check):
    rule = "secrets"

    def __init__(self, settings: SecretsRule):
        super().__init__(settings.severity)
        self.settings = settings

    def wants_layer(self, layer: Layer) -> bool:
        return True

    def entry(self, layer: Layer, entry: Entry) -> None:
        if entry.kind != FILE or not entry.size or matches(entry.path, self.settings.allow):
            return
        if b"\0" in entry.head(SNIFF):
            return  # not text
        for what in scan(entry.head(self.settings.max_file_size), self.settings.entropy):
            self.report(what, layer, entry.path)


def scan(data: bytes, entropy: bool = True) -> list[str]:
    """What ``data`` holds: the names of the secrets found in it, each once."""
    found = _known(data)
    lower = data.lower()  # same length: positions carry over to ``data``
    if b"secret" in lower and AWS_SECRET.search(lower):
        found.append("AWS secret access key")
    if entropy and _assigned_random(data, lower):
        found.append("high-entropy string assigned to a secret-like name")
    return found


def _known(data: bytes) -> list[str]:
    found: list[str] = []
    for name, literal, pattern in PATTERNS:
        if name not in found and literal in data and pattern.search(data):
            found.append(name)
    return found


def _assigned_random(data: bytes, lower: bytes) -> bool:
    """A random-looking value assigned to a secret-like name: each keyword's places
    are found by ``find`` and only there is the assignment matched."""
    for keyword in KEYWORDS:
        at = lower.find(keyword)
        while at >= 0:
            match = ASSIGNED.match(lower, at + len(keyword))
            if match and random_looking(data[match.start(1) : match.end(1)]):
                return True
            at = lower.find(keyword, at + len(keyword))
    return False
