"""Did-you-mean suggestions: BuildKit's edit-distance rule (util/suggest)."""

from __future__ import annotations

import pytest

from dockyard.builder.frontend.suggest import closest, did_you_mean, edit_distance


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("mount", "mount", 0),
        ("mont", "mount", 1),  # a deletion
        ("mounts", "mount", 1),  # an insertion
        ("bulid", "build", 2),  # a transposition is two substitutions
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("tmp", "tmpfs", 2),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_closest_takes_the_nearest_option_within_two_edits() -> None:
    assert closest("typ", ["target", "type", "from"]) == "type"
    assert closest("tmp", ["bind", "cache", "tmpfs", "secret", "ssh"]) == "tmpfs"
    assert closest("sorce", ["src", "source"]) == "source"  # 1 beats src's 2
    assert closest("xyz", ["type", "target"]) is None  # 3 edits and more: no guess


def test_closest_keeps_the_first_of_equally_near_options() -> None:
    assert closest("ab", ["ax", "xb"]) == "ax"
    assert closest("ab", ["xb", "ax"]) == "xb"


def test_an_exact_match_means_the_name_was_not_the_problem() -> None:
    # BuildKit stops at an exact match even after a near one: nothing to suggest
    assert closest("rw", ["ro", "rw"]) is None


def test_case_sensitive_by_default() -> None:
    assert closest("Type", ["type"]) == "type"  # one substitution away, not equal
    assert closest("TYPE", ["type"]) is None  # four away


@pytest.mark.parametrize(
    ("value", "suggestion"),
    [
        ("FNTRYPOINT", "ENTRYPOINT"),  # all upper: upper
        ("fntrypoint", "entrypoint"),  # all lower: lower
        ("Fntrypoint", "entrypoint"),  # mixed: lower, as BuildKit's matchCase
        ("entrypoint", None),  # the name itself, any case
        ("EntryPoint", None),
    ],
)
def test_case_insensitive_suggestion_takes_the_value_case(
    value: str, suggestion: str | None
) -> None:
    assert closest(value, ["FROM", "ENTRYPOINT", "ENV"], case_sensitive=False) == suggestion


def test_did_you_mean_appends_the_suggestion_or_nothing() -> None:
    assert did_you_mean("unknown flag: --mont", "mont", ["mount", "network"]) == (
        "unknown flag: --mont (did you mean mount?)"
    )
    assert did_you_mean("unknown flag: --zzzzz", "zzzzz", ["mount"]) == "unknown flag: --zzzzz"
