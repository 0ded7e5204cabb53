"""Hostile pipeline files: whatever bytes a ``.dockyard.yml`` holds, loading it ends in
one ``file:line: problem`` error, never a traceback, and nothing absurd is accepted."""

from __future__ import annotations

import os
import random

import pytest

from dockyard.ci.pipeline import PipelineError, load_pipeline

STEP = "steps:\n  - name: a\n    image: busybox\n"


def error(tmp_path, data: bytes) -> PipelineError:
    path = tmp_path / ".dockyard.yml"
    path.write_bytes(data)
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    assert len(str(info.value).splitlines()) == 1
    return info.value


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (STEP.encode() + b"    commands: [\xff\xfe]\n", 4, "not UTF-8 text (byte 0xff)"),
        (b"\xfe\xffsteps: []", 1, "not UTF-8 text (byte 0xfe)"),
        (STEP.encode() + b"    commands: [a\x00b]\n", 4, "character #x0000 is not allowed in YAML"),
        (b"steps:\n  - name: \x1b[31m\n", 2, "character #x001b is not allowed in YAML"),
        (b"[" * 100_000, 1, "nested deeper than 100 levels"),
        (b"steps:\n" + b"- " * 5000 + b"x", 2, "nested deeper than 100 levels"),
    ],
    ids=["latin-1", "utf-16", "nul", "escape", "deep-flow", "deep-block"],
)
def test_bytes_that_are_not_yaml_text_are_named_by_line(tmp_path, data, line, message):
    problem = error(tmp_path, data)
    assert (problem.line, str(problem)) == (line, f"{tmp_path / '.dockyard.yml'}:{line}: {message}")


def test_random_binary_files_never_raise_anything_else(tmp_path):
    rng = random.Random(10)
    for size in (1, 7, 64, 300, 3000, 100_000):
        for _ in range(20):
            problem = error(tmp_path, rng.randbytes(size))
            assert problem.file == str(tmp_path / ".dockyard.yml")


@pytest.mark.parametrize("timeout", [".nan", ".NaN", ".inf", "-.inf", "+.inf", "-3", "0", "1e999"])
def test_timeouts_that_are_no_duration_are_refused(tmp_path, timeout):
    problem = error(tmp_path, f"{STEP}    timeout: {timeout}\n".encode())
    assert problem.line == 4
    assert str(problem).startswith(f"{tmp_path / '.dockyard.yml'}:4: steps[0].timeout: invalid")


def test_a_timeout_longer_than_a_year_is_refused(tmp_path):
    problem = error(tmp_path, f"{STEP}    timeout: 99999999999999999999\n".encode())
    assert str(problem).endswith("longer than a year")


def test_the_cli_prints_one_line_for_a_binary_pipeline(tmp_path, dockyard):
    (tmp_path / ".dockyard.yml").write_bytes(random.Random(3).randbytes(2000))
    result = dockyard("ci", "run", str(tmp_path), check=False)
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dockyard: error: {tmp_path}/.dockyard.yml:")


def test_a_pipeline_file_linked_out_of_its_repository_is_not_read(tmp_path, dockyard):
    host = tmp_path / "host.yml"  # a sacrificial host file, shaped to be echoed
    host.write_text("steps:\n  - name: HOST-SECRET-VALUE!\n    image: busybox\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".dockyard.yml").symlink_to(host)
    with pytest.raises(PipelineError, match="cannot read: it leads out of its directory"):
        load_pipeline(repo / ".dockyard.yml", within=repo)
    result = dockyard("ci", "run", str(repo), check=False)
    assert result.returncode == 1
    assert b"HOST-SECRET" not in result.stdout + result.stderr
    assert b"leads out of its directory" in result.stderr


def test_a_pipeline_file_linked_inside_its_repository_is_read(tmp_path):
    repo = tmp_path / "repo"
    (repo / "ci").mkdir(parents=True)
    (repo / "ci" / "pipeline.yml").write_text(STEP)
    (repo / ".dockyard.yml").symlink_to("ci/pipeline.yml")
    assert load_pipeline(repo / ".dockyard.yml", within=repo).steps[0].name == "a"


def test_a_fifo_as_pipeline_file_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / ".dockyard.yml")
    for within in (None, tmp_path):
        with pytest.raises(PipelineError, match="not a regular file"):
            load_pipeline(tmp_path / ".dockyard.yml", within=within)
