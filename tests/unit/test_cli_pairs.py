"""The one KEY=VALUE parser behind --build-arg, --label and import --env."""

from __future__ import annotations

import click
import pytest

from dockyard.cli.common import parse_pairs


def test_values_may_hold_equals_signs_and_later_ones_win():
    assert parse_pairs(("A=1", "B=", "C=x=y", "A=2"), "--x") == {"A": "2", "B": "", "C": "x=y"}


def test_a_bare_build_arg_unset_in_the_environment_is_left_out(monkeypatch):
    """Left out, the Dockerfile's ``ARG NAME=default`` stays in force (docker does so)."""
    monkeypatch.delenv("DOCKYARD_TEST_UNSET", raising=False)
    monkeypatch.setenv("DOCKYARD_TEST_SET", "from-env")
    pairs = parse_pairs(
        ("DOCKYARD_TEST_UNSET", "DOCKYARD_TEST_SET"), "--build-arg", bare="environment"
    )
    assert pairs == {"DOCKYARD_TEST_SET": "from-env"}


def test_a_bare_key_is_empty_or_refused_as_the_flag_says():
    assert parse_pairs(("maintainer",), "--label", bare="empty") == {"maintainer": ""}
    with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
        parse_pairs(("PATH",), "--env")
    for bad in ("=v", " A=1"):
        with pytest.raises(click.BadParameter):
            parse_pairs((bad,), "--env", bare="empty")


def test_secret_fields_go_through_the_same_parser(monkeypatch):
    from dockyard.cli.build import _secrets

    monkeypatch.setenv("DOCKYARD_TEST_TOKEN", "t0k")
    assert _secrets(("id=token,env=DOCKYARD_TEST_TOKEN",)) == {"token": b"t0k"}
    with pytest.raises(click.BadParameter, match="'srcfile': expected KEY=VALUE"):
        _secrets(("id=token,srcfile",))  # was silently dropped: src defaulted to ./token


def test_ci_env_and_run_env_go_through_the_same_parser(tmp_path, monkeypatch):
    """A name with a space before it was kept as a variable no program can read."""
    from click.testing import CliRunner

    from dockyard.cli.main import cli
    from dockyard.cli.run import RunOptions, run_config

    (tmp_path / ".dockyard.yml").write_text("steps: [{name: a, image: busybox}]\n")
    root = str(tmp_path / "store")
    refused = CliRunner().invoke(cli, ["--root", root, "ci", "run", "--env", " A=1", str(tmp_path)])
    assert refused.exit_code == 2 and "expected KEY=VALUE" in refused.output
    options = RunOptions((), (" A=1",), None, None, "none", False, False)
    with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
        run_config({"config": {}}, ("sh",), options)
    monkeypatch.setenv("DOCKYARD_TEST_SET", "v")
    options = RunOptions((), ("DOCKYARD_TEST_SET", "B=x=y", "UNSET_HERE"), None, None, "none",
                         False, False)  # fmt: skip
    monkeypatch.delenv("UNSET_HERE", raising=False)
    env = run_config({"config": {}}, ("sh",), options).env
    assert (env["DOCKYARD_TEST_SET"], env["B"]) == ("v", "x=y")
    assert "UNSET_HERE" not in env
