"""Secret masking over streams cut anywhere, and the per-source logs built on it."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from dockyard.ci.masking import MASK, SecretMasker, patterns
from dockyard.ci.output import MAX_LINE, OutputLog, saved_lines
from dockyard.ci.results import Events


def stream(secrets: list[str], chunks: list[bytes]) -> bytes:
    masker = SecretMasker(secrets)
    return b"".join(masker.feed(chunk) for chunk in chunks) + masker.flush()


def test_whole_secret_in_one_chunk():
    assert stream(["abcdef"], [b"x abcdef y\n"]) == b"x ******** y\n"


def test_secret_split_across_chunks():
    assert stream(["abcdef"], [b"abc", b"def"]) == MASK
    assert stream(["abcdef"], [b"a", b"b", b"c", b"d", b"e", b"f", b"\n"]) == MASK + b"\n"


def test_every_split_point_of_every_text():
    text = b"pre abcdef mid abcabcdef abcde end abcdef"
    expected = b"pre ******** mid abc******** abcde end ********"
    for cut1, cut2 in itertools.combinations(range(len(text) + 1), 2):
        assert stream(["abcdef"], [text[:cut1], text[cut1:cut2], text[cut2:]]) == expected


def test_random_chunking_never_leaks():
    rng = random.Random(7)
    secrets = ["hunter2", "s3cr3t-t0k3n", "tok"]
    for _ in range(300):
        parts = [
            rng.choice([b"hunter2", b"s3cr3t-t0k3n", b"tok", b"hun", b"x", b"\n", b"s3"])
            for _ in range(20)
        ]
        text = b"".join(parts)
        cuts = sorted(rng.sample(range(len(text) + 1), 4))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        out = stream(secrets, chunks)
        assert out == SecretMasker(secrets).mask(text)
        for secret in secrets[:2]:
            assert secret.encode() not in out
        unmasked = out.replace(MASK, b"M")  # what was next to a short secret stays a word
        assert re.search(rb"(?<!\w)tok(?!\w)", unmasked) is None


def test_a_held_back_prefix_is_released_when_it_is_not_a_secret():
    masker = SecretMasker(["abcdef"])
    assert masker.feed(b"xyz abc") == b"xyz "  # "abc" might start the secret
    assert masker.feed(b"xyz") == b"abcxyz"
    assert masker.flush() == b""
    masker.feed(b"abcde")
    assert masker.flush() == b"abcde"  # the stream ended: it never was the secret


def test_overlapping_secrets_are_masked_as_one_run():
    assert stream(["abcd", "bcde"], [b"xabcdex"]) == b"x" + MASK + b"x"
    assert stream(["aaaa"], [b"aaaaa"]) == MASK
    assert stream(["abcd", "bcde"], [b"xab", b"cdex"]) == b"x" + MASK + b"x"
    assert stream(["abcdef", "cde"], [b"abcde", b"f cde"]) == MASK + b" " + MASK


def test_a_short_secret_is_masked_only_as_a_whole_word():
    text = b"bash: a=1 (a) sets a\nabc a\n"
    expected = b"bash: ********=1 (********) sets ********\nabc ********\n"
    assert SecretMasker(["a"]).mask(text) == expected
    for cut1, cut2 in itertools.combinations(range(len(text) + 1), 2):
        assert stream(["a"], [text[:cut1], text[cut1:cut2], text[cut2:]]) == expected


def test_a_short_secret_is_not_joined_across_a_line_break():
    assert SecretMasker(["ab"]).mask(b"a\nb ab") == b"a\nb " + MASK
    assert stream(["ab"], [b"xa", b"\nb", b"x"]) == b"xa\nbx"


def test_a_secret_inside_another():
    assert stream(["long-secret", "secret"], [b"a secret and a long-secret"]) == (
        b"a ******** and a ********"
    )


def test_multi_line_secrets_are_masked_line_by_line():
    key = "-----BEGIN KEY-----\r\nAAAA\nBBBB\n\n-----END KEY-----\n"
    lines = {b"-----BEGIN KEY-----", b"AAAA", b"BBBB", b"-----END KEY-----"}
    found = patterns([key])
    assert lines <= set(found)  # with the key's encoded forms
    assert not any(b"\n" in p or b"\r" in p or p == b"" for p in found)
    out = stream([key], [b"key: -----BEGIN KEY-----\nAA", b"AA\nBBBB\n-----END KEY-----\n"])
    assert out == b"key: ********\n********\n********\n********\n"


def test_no_secrets_passes_everything_through():
    masker = SecretMasker(["", b""])
    assert masker.feed(b"abc") == b"abc"
    assert masker.flush() == b""


class Lines(Events):
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, bool]] = []

    def line(self, source: str, text: str, *, note: bool = False) -> None:
        self.lines.append((source, text, note))


@pytest.fixture
def events() -> Lines:
    return Lines()


def test_output_log_masks_splits_and_saves(tmp_path, events):
    path = tmp_path / "logs" / "step.log"
    log = OutputLog("step", path, ["abcdef"], events)
    log("stdout", b"one\nsecret: abc")
    log("stderr", b"err line\n")
    log("stdout", b"def\ntwo")
    log.note("exit 0 (abcdef)")
    log.close()
    assert events.lines == [
        ("step", "one", False),
        ("step", "err line", False),
        ("step", "secret: ********", False),
        ("step", "exit 0 (********)", True),
        ("step", "two", False),
    ]
    saved = path.read_bytes()
    assert list(saved_lines(saved)) == [
        "one",
        "err line",
        "secret: ********",
        "--- exit 0 (********)",
        "two",
    ]
    stamped = list(saved_lines(saved, timestamps=True))
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ", line) for line in stamped)
    assert b"abcdef" not in saved


def test_output_log_writes_each_line_as_it_comes(tmp_path, events):
    """Not when the step ends: a reader of the file sees each whole line at once."""
    path = tmp_path / "s.log"
    log = OutputLog("s", path, [], events)
    log("stdout", b"first\nsecond-")
    assert list(saved_lines(path.read_bytes())) == ["first"]
    log.note("a note")
    assert list(saved_lines(path.read_bytes())) == ["first", "--- a note"]
    log.close()


def test_output_log_keeps_streams_apart(tmp_path, events):
    log = OutputLog("s", tmp_path / "s.log", [], events)
    log("stdout", b"out-")
    log("stderr", b"err\n")
    log("stdout", b"line\n")
    log.close()
    assert [text for _, text, _ in events.lines] == ["err", "out-line"]


def test_output_log_cuts_endless_lines(tmp_path, events):
    log = OutputLog("s", tmp_path / "s.log", ["abcdef"], events)
    log("stdout", b"x" * (MAX_LINE + 10))
    log.close()
    assert [len(text) for _, text, _ in events.lines] == [MAX_LINE, 10]
