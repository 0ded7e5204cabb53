"""``dockyard ci`` options: secrets from flags, the environment and files."""

from __future__ import annotations

import click
import pytest

from dockyard.cli.ci import _pairs, _secrets


def test_secrets_from_flags_env_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_ENV", "env-value")
    path = tmp_path / "secrets.env"
    path.write_text(
        "# a comment\n\nPLAIN=a=b\nQUOTED=\"with spaces\"\nSINGLE='x'\nOVERRIDDEN=file\n"
    )
    secrets = _secrets(("OVERRIDDEN=flag", "FROM_ENV", "EMPTY="), True, (path,))
    assert secrets == {
        "PLAIN": "a=b",
        "QUOTED": "with spaces",
        "SINGLE": "x",
        "OVERRIDDEN": "flag",
        "FROM_ENV": "env-value",
        "EMPTY": "",
    }


def test_bare_secret_names_need_from_env(monkeypatch):
    monkeypatch.setenv("TOKEN", "t")
    with pytest.raises(click.BadParameter, match="--from-env"):
        _secrets(("TOKEN",), False, ())
    monkeypatch.delenv("TOKEN")
    with pytest.raises(click.BadParameter, match="not set"):
        _secrets(("TOKEN",), True, ())


def test_a_bad_secrets_file_line_is_named(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text("OK=1\nnot a pair\n")
    with pytest.raises(click.BadParameter, match=r"secrets.env:2: expected NAME=VALUE"):
        _secrets((), False, (path,))


def test_env_pairs():
    assert _pairs(("A=1", "B=", "C=x=y"), "--env") == {"A": "1", "B": "", "C": "x=y"}
    with pytest.raises(click.BadParameter):
        _pairs(("A",), "--env")
