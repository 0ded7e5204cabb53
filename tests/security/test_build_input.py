"""Bad input to a build gets one line naming the file and line, before any step runs:
never a traceback, never a build that runs to its end only to fail on an option."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "a").write_text("a\n")
    return root


def test_a_dockerfile_that_is_not_utf8_is_a_one_line_error_at_its_line(dockyard, context):
    (context / "Dockerfile").write_bytes(b"FROM scratch\n# caf\xe9\nCOPY a /a\n")
    result = dockyard("build", str(context), check=False)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "Traceback" not in err
    assert err.strip() == (
        f"dockyard: error: {context / 'Dockerfile'}:2: Dockerfile is not valid UTF-8"
    )


@pytest.mark.parametrize("cache_to", ["type=nowhere,dest=x", "Not A Reference!", "type=registry"])
def test_a_bad_cache_to_fails_before_any_step_runs(dockyard, context, cache_to):
    (context / "Dockerfile").write_text("FROM scratch\nCOPY a /a\n")
    result = dockyard("build", "--cache-to", cache_to, str(context), check=False)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "Traceback" not in err
    assert "COPY" not in err  # no step was started, let alone run
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("epoch", ["yesterday", "-1", "1e9"])
def test_a_bad_source_date_epoch_in_the_environment_is_one_line(dockyard, context, epoch):
    (context / "Dockerfile").write_text("FROM scratch\nCOPY a /a\n")
    result = dockyard("build", str(context), check=False, env={"SOURCE_DATE_EPOCH": epoch})
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert "SOURCE_DATE_EPOCH" in err
    assert "COPY" not in err
