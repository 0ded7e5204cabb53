"""Go's quoting, durations, numbers and path cleaning, as docker's history uses them."""

from __future__ import annotations

import pytest

from dockyard.builder.frontend import golang


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\tnl\n", '"tab\\tnl\\n"'),
        ("\x00\x7f", '"\\x00\\x7f"'),
        ("héllo ☺", '"héllo ☺"'),
        ("\u00a0", '"\\u00a0"'),  # non-ASCII space is not printable for Go
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_quote(text: str, quoted: str) -> None:
    assert golang.quote(text) == quoted


def test_lists() -> None:
    assert golang.format_list(["/bin/sh", "-c", "a b"]) == "[/bin/sh -c a b]"
    assert golang.format_quoted_list(["/bin/sh", "-c", "a b"]) == '["/bin/sh" "-c" "a b"]'
    assert golang.format_list([]) == "[]"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("30s", 30_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("300ms", 300_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("1ns", 1),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("-2s", -2_000_000_000),
        ("+2s", 2_000_000_000),
        ("1h2m3s4ms", 3_723_004_000_000),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert golang.parse_duration(text) == ns


@pytest.mark.parametrize("bad", ["", "5", "1d", "s", ".s", "1.5.s", "-", "9999999999h"])
def test_parse_duration_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        golang.parse_duration(bad)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (250_000_000, "250ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_004_000_000, "1h2m3.004s"),
        (-1_000_000_000, "-1s"),
    ],
)
def test_format_duration(ns: int, text: str) -> None:
    assert golang.format_duration(ns) == text


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("", "."),
        ("a/b/../c", "a/c"),
        ("//a//b/", "/a/b"),
        ("/../x", "/x"),
        ("../../x", "../../x"),
        ("./", "."),
        ("a/..", "."),
    ],
)
def test_clean_path(path: str, clean: str) -> None:
    assert golang.clean_path(path) == clean


def test_numbers() -> None:
    assert golang.parse_bool("TRUE") is True
    assert golang.parse_bool("0") is False
    with pytest.raises(ValueError):
        golang.parse_bool("yes")
    assert golang.parse_uint("0755", 8) == 0o755
    for bad in ("", "+1", "1_0", "8", "-1"):
        with pytest.raises(ValueError):
            golang.parse_uint(bad, 8)
    with pytest.raises(ValueError):
        golang.parse_uint(str(1 << 32), 10)
