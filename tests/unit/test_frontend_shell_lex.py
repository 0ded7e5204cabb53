"""Variable expansion and word splitting, checked against BuildKit's lexer behaviour."""

from __future__ import annotations

import pytest

from dockyard.builder.frontend.shell_lex import ExpansionError, Lex

ENV = {"PWD": "/home", "SHELL": "bash", "EMPTY": "", "W": "w", "FOO": "xxyy", "SP": "a  b"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", "hello"),
        ("$PWD", "/home"),
        ("${PWD}x", "/homex"),
        ("he$PWD.", "he/home."),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("$", "$"),
        ("$.", "$."),
        ("$1x", "x"),  # positional parameters are never set
        ("$@", ""),
        # unset vs empty: ":-" treats empty as unset, "-" does not
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${UNSET-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${PWD:-def}", "/home"),
        ("${UNSET:+alt}", ""),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${PWD:+alt}", "alt"),
        # nested
        ("${UNSET:-$W}", "w"),
        ("${UNSET:-${PWD:-y}}", "/home"),
        ("${UNSET:-${NOPE:-y}}", "y"),
        ("${PWD:+${SHELL}}", "bash"),
        ("${PWD?}", "/home"),
        ("${EMPTY?}", ""),
        # escapes and quotes
        ("\\$PWD", "$PWD"),
        ("\\\\$PWD", "\\/home"),
        ("'$PWD'", "$PWD"),
        ("'\\$PWD'", "\\$PWD"),
        ('"$PWD"', "/home"),
        ('"he\\$PWD"', "he$PWD"),
        ('"a\\tb"', "a\\tb"),  # only " $ and \ are escapable inside double quotes
        ("a\\tb", "atb"),
        ("he'll'o", "hello"),
        ('"it\'s"', "it's"),
        ("hello\\", "hello"),
        ("${UNSET:-\\$PWD}", "$PWD"),
        # pattern removal and substitution
        ("${FOO#x}", "xyy"),
        ("${FOO##*x}", "yy"),
        ("${FOO%y}", "xxy"),
        ("${FOO%%y*}", "xx"),
        ("${FOO/x/z}", "zxyy"),
        ("${FOO//x/z}", "zzyy"),
        ("${FOO/#x/z}", "xxyy"),  # no anchors: "#x" is a literal pattern
        ("${UNSET#x}", ""),
        ("안녕$SHELL", "안녕bash"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert Lex().expand(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${PWD", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:-x}", "bad substitution"),
        ("${PWD:=x}", "unsupported modifier (:=)"),
        ("${PWD=x}", "unsupported modifier (=)"),
        ("${FOO:#x}", "unsupported modifier (:#)"),
        ("${UNSET?}", "UNSET: is not allowed to be unset"),
        ("${UNSET:?custom $W}", "UNSET: custom w"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("'open", "matching single-quote"),
        ('"open', "matching double-quote"),
        ("${FOO#\\x}", "invalid escape"),
    ],
)
def test_expand_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        Lex().expand(text, ENV)
    assert message in str(info.value)
    assert str(info.value).startswith("failed to process")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("80 443/tcp", ["80", "443/tcp"]),
        ("a$SP", ["aa", "b"]),  # unquoted expansions split
        ('a"$SP"', ["aa  b"]),  # quoted ones do not
        ("a\\ b c", ["a b", "c"]),
        ("  lead  trail  ", ["lead", "trail"]),
        ('""', []),
        ("$UNSET", []),
        ("<<EOF cat", ["<<EOF", "cat"]),
        ("<< EOF", ["<< EOF"]),  # space after << stays with the delimiter
    ],
)
def test_words(text: str, words: list[str]) -> None:
    assert Lex().words(text, ENV) == words


def test_nested_modifier_drops_word_prefix_like_buildkit() -> None:
    # BuildKit reuses one buffer for nested ${...:-...} scans: the word collected before
    # it is lost in word mode (not in plain expansion).
    assert Lex().words("80${UNSET:-81}", {}) == ["81"]
    assert Lex().expand("80${UNSET:-81}", {}) == "8081"


def test_backtick_escape() -> None:
    lex = Lex("`")
    assert lex.expand("C:\\path\\$PWD", ENV) == "C:\\path\\/home"
    assert lex.expand("`$PWD", ENV) == "$PWD"
    assert lex.expand('"a`"b"', ENV) == 'a"b'


def test_matches_and_unmatched() -> None:
    result = Lex().process("${PWD} $UNSET ${EMPTY:-x}", ENV)
    assert result.matched == {"PWD", "EMPTY"}
    assert result.unmatched == {"UNSET"}


def test_flags_for_heredoc_detection() -> None:
    lex = Lex(raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    assert lex.words("""cat <<"EOF" $X ${Y:-z} a\\ b""", {}) == [
        "cat",
        '<<"EOF"',
        "$X",
        "${Y:-z}",
        "a\\ b",
    ]


def test_skip_process_quotes_keeps_quotes() -> None:
    lex = Lex(skip_process_quotes=True)
    assert lex.expand("""say "$W" and '$W' \\$W""", ENV) == """say "w" and 'w' $W"""
