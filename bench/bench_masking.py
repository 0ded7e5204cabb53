"""Secret masking throughput: a 100k-line log through the streaming masker.

The log is 100,000 lines of build-like output (~80 bytes each, 8 MB), three secrets
given (a token, a password, a 3-line key), one line in 1000 printing a secret in
one of the forms masked. It is fed as a container's pipe would deliver it, in 64 KiB
chunks, and, the worst case, one line per chunk. Prints lines/s for each.

``python bench/bench_masking.py [--repeat N]`` (pure Python, no root needed).
"""

from __future__ import annotations

import argparse
import base64
import random
import time

from dockyard.ci.masking import SecretMasker

LINES = 100_000
SECRETS = [
    "ghp_5bX8v0Qm2LkP9sTzW4yRj7NcA1dEfH3gIuKo",
    "correct horse/battery staple",
    "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "-----END KEY-----\n",
]


def log_lines() -> list[bytes]:
    rng = random.Random(1)
    words = [b"compiling", b"src/module.c", b"ok", b"-O2", b"warning:", b"linking", b"42"]
    token = SECRETS[0].encode()
    forms = [token, base64.b64encode(token), token.hex().encode()]
    lines = []
    for i in range(LINES):
        line = b" ".join(rng.choice(words) for _ in range(9))[:79]
        if i % 1000 == 0:
            line = b"secret: " + forms[(i // 1000) % len(forms)]
        lines.append(line + b"\n")
    return lines


def throughput(chunks: list[bytes]) -> tuple[float, int]:
    """Lines per second through one masker, and how many secrets it masked."""
    masker = SecretMasker(SECRETS)
    started = time.perf_counter()
    out = [masker.feed(chunk) for chunk in chunks]
    out.append(masker.flush())
    elapsed = time.perf_counter() - started
    masked = b"".join(out)
    assert SECRETS[0].encode() not in masked
    return LINES / elapsed, masked.count(b"********")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    lines = log_lines()
    data = b"".join(lines)
    big = [data[i : i + (64 << 10)] for i in range(0, len(data), 64 << 10)]
    for name, chunks in (("64 KiB chunks", big), ("one line per chunk", lines)):
        best, masks = max(throughput(chunks) for _ in range(repeat))
        print(f"{name:20} {best:>12,.0f} lines/s  ({masks} secrets masked)")


if __name__ == "__main__":
    main()
