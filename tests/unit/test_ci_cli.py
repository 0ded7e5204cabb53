"""``dockyard ci`` options: secrets from flags, the environment and files; the default
branch and commit, from git."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import click
import pytest

from dockyard.cli.ci import _git_head, _secrets


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


def test_secret_names_are_checked_as_every_key_value_option_checks_them():
    """One parser (``parse_pairs``): a name with spaces around it is refused, not kept
    as a secret no step can name."""
    with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
        _secrets((" TOKEN=x",), False, ())
    with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
        _secrets(("=x",), False, ())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_default_branch_and_commit_come_from_the_work_tree(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    assert _git_head(tmp_path) == (None, None)  # not a work tree
    git("init", "-q", "-b", "feature/x")
    assert _git_head(tmp_path) == (None, None)  # no commit yet
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "m")
    commit = git("rev-parse", "HEAD")
    assert _git_head(tmp_path) == (commit, "feature/x")
    git("checkout", "-q", "--detach")
    assert _git_head(tmp_path) == (commit, None)  # a detached HEAD is on no branch


PLUGIN_CHECK = """
import os, sys
import pydantic.plugin._loader as loader
from dockyard.cli.ci import _pydantic_plugins_unsought
from dockyard.ci import load_pipeline

with _pydantic_plugins_unsought():
    inside = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    load_pipeline(sys.argv[1])
print(inside, os.environ.get("PYDANTIC_DISABLE_PLUGINS"), loader._plugins)
"""


@pytest.mark.parametrize(("given", "seen"), [(None, "1 None None"), ("x", "x x {}")])
def test_the_pipeline_validator_is_built_without_a_plugin_search(tmp_path, given, seen):
    """No search while the pipeline's validator is built; the environment is as it was after
    (a fresh process: pydantic keeps the plugins it found for the rest of one)."""
    pipeline = tmp_path / ".dockyard.yml"
    pipeline.write_text("steps:\n  - {name: a, image: busybox, commands: [true]}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if given is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = given
    done = subprocess.run(
        [sys.executable, "-c", PLUGIN_CHECK, str(pipeline)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == seen
