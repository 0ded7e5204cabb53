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

PATTERNS: dict[str, re.Pattern[bytes]] = {
    "private key": re.compile(
        rb"-----BEGIN (?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
        rb"[\r\n]+(?:[A-Za-z0-9-]+: [^\r\n]*[\r\n]+)*[\r\n]*[A-Za-z0-9+/=]{40,}"
    ),
    "AWS access key ID": re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        rb"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
    ),
    "GitHub token": re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})"),
    "GitLab token": re.compile(rb"\bglpat-[A-Za-z0-9_-]{20,}"),
    "Slack token": re.compile(rb"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Stripe secret key": re.compile(rb"\b[sr]k_live_[A-Za-z0-9]{24,}"),
    "npm token": re.compile(rb"\bnpm_[A-Za-z0-9]{36}\b"),
    "Google API key": re.compile(rb"\bAIza[0-9A-Za-z_-]{35}\b"),
    "JSON web token": re.compile(
        rb"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}"
    ),
    "registry login": re.compile(rb"\"auth\"\s*:\s*\"[A-Za-z0-9+/]{12,}={0,2}\""),
}

# A secret-like name, an assignment, then a value (quoted or not) of one token.
ASSIGNMENT = re.compile(
    rb"(?i)(?:secret|token|passw(?:or)?d|api_?key|access_?key|private_?key|credentials?)"
    rb"[A-Za-z0-9_.-]{0,20}[\"']?\s{0,3}(?::=|=|:)\s{0,3}[\"']?([A-Za-z0-9+/=_.~-]{20,200})"
)


def shannon_entropy(value: bytes) -> float:
    """Bits per character of ``value``."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def random_looking(value: bytes) -> bool:
    """Whether ``value`` looks like a generated secret rather than a word or a path:
    hex of 32+ characters with entropy 3+, else mixed letters and digits with entropy
    4+ (a random 20-character base64 string has about 4.1)."""
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
    found = [name for name, pattern in PATTERNS.items() if pattern.search(data)]
    if entropy:
        for match in ASSIGNMENT.finditer(data):
            if random_looking(match[1]):
                found.append("high-entropy string assigned to a secret-like name")
                break
    return found
