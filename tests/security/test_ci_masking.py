"""Secrets printed by a step in another form than their own still never reach a log.

A step that holds a secret often prints it by accident encoded: an HTTP basic auth
header (base64 of ``user:password``), a URL with the token in its query, a hex dump,
``base64`` output wrapped at 76 columns. Every form listed in
:mod:`dockyard.ci.masking` is masked, whatever the chunking of the stream.
"""

from __future__ import annotations

import base64
import random
import re
import textwrap
from urllib.parse import quote, quote_plus

import pytest

from dockyard.ci.masking import MASK, SecretMasker

SECRET = "s3cr3t/T0ken+with spaces&more=x"


def streamed(secrets: list[str], text: bytes, rng: random.Random) -> bytes:
    """``text`` through a masker, cut into random chunks."""
    cuts = sorted(rng.sample(range(1, len(text)), min(5, len(text) - 1)))
    masker = SecretMasker(secrets)
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return b"".join(masker.feed(chunk) for chunk in chunks) + masker.flush()


def assert_hidden(form: bytes, output: bytes) -> None:
    """No run of ``form`` (line breaks ignored) is left in ``output``."""
    assert MASK in output
    assert form not in output.replace(b"\r", b"").replace(b"\n", b"")


@pytest.mark.parametrize("form", ["std", "std-unpadded", "urlsafe", "urlsafe-unpadded"])
def test_base64_of_the_secret_is_masked(form):
    value = SECRET.encode()
    encoded = {
        "std": base64.b64encode(value),
        "std-unpadded": base64.b64encode(value).rstrip(b"="),
        "urlsafe": base64.urlsafe_b64encode(value),
        "urlsafe-unpadded": base64.urlsafe_b64encode(value).rstrip(b"="),
    }[form]
    rng = random.Random(form)
    for _ in range(50):
        output = streamed([SECRET], b"token: " + encoded + b"\nnext line\n", rng)
        assert_hidden(encoded.rstrip(b"="), output)
        assert output.endswith(b"\nnext line\n")


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "Authorization: x", "ab"])
def test_base64_of_the_secret_inside_a_longer_value_is_masked_at_every_alignment(prefix):
    for alphabet in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = alphabet(prefix.encode() + SECRET.encode() + b"@registry")
        output = streamed([SECRET], b"Authorization: Basic " + encoded + b"\n", random.Random(1))
        # one character at each end may mix bits of the secret with its neighbours'
        skip = -(-len(prefix) * 8 // 6) + 1
        determined = encoded[skip : (len(prefix) + len(SECRET)) * 8 // 6 - 1]
        assert_hidden(determined, output)


def test_hex_of_the_secret_is_masked_in_either_case():
    for encoded in (SECRET.encode().hex(), SECRET.encode().hex().upper()):
        output = streamed([SECRET], f"dump {encoded} end\n".encode(), random.Random(2))
        assert_hidden(encoded.encode(), output)
        assert output == b"dump " + MASK + b" end\n"


@pytest.mark.parametrize(
    "encoded",
    [
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(SECRET, safe="")),
    ],
    ids=["quote", "quote-slash", "quote-plus", "lower-case-escapes"],
)
def test_url_encoded_secret_is_masked(encoded):
    output = streamed([SECRET], f"GET /api?token={encoded}&x=1\n".encode(), random.Random(3))
    assert_hidden(encoded.encode(), output)
    assert output == b"GET /api?token=" + MASK + b"&x=1\n"


@pytest.mark.parametrize("width", [1, 5, 13, 76])
def test_a_secret_split_across_lines_is_masked_on_every_line(width):
    long_secret = "".join(random.Random(width).choices("abcdefghijklmnop0123456789", k=120))
    for value, wrap in (
        (long_secret.encode(), width),  # fold -w WIDTH
        (base64.b64encode(long_secret.encode()), 76),  # base64, wrapping at 76
    ):
        lines = textwrap.wrap(value.decode(), wrap, break_on_hyphens=False)
        for newline in ("\n", "\r\n"):
            text = ("start\n" + newline.join(lines) + newline + "after\n").encode()
            output = streamed([long_secret], text, random.Random(width))
            assert_hidden(value.rstrip(b"="), output)
            assert output.startswith(b"start\n") and output.endswith(b"after\n")
            assert output.count(newline.encode()) == text.count(newline.encode())


def test_many_line_breaks_after_a_secret_prefix_keep_memory_bounded():
    masker = SecretMasker([SECRET])
    released = masker.feed(SECRET[:10].encode())
    for _ in range(10_000):
        released += masker.feed(b"\n" * 100)
        assert len(masker._pending) <= 3 * 200
    assert len(released) > 900_000
