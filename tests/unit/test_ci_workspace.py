"""The run workspace (a copy of the source tree), artifacts, caches and run records."""

from __future__ import annotations

import os

import pytest

from dockyard.ci.caches import cache_dir
from dockyard.ci.runs import ABANDONED, RunDir, run_ids
from dockyard.ci.workspace import collect_artifacts, create_workspace
from dockyard.errors import NotFound


def test_the_workspace_is_a_copy_without_the_store(tmp_path):
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "a.py").write_text("a")
    (source / ".git").mkdir()
    (source / "link").symlink_to("pkg/a.py")
    (source / "escape").symlink_to("/etc")
    os.mkfifo(source / "fifo")
    store = source / ".store"
    (store / "blobs").mkdir(parents=True)
    target = tmp_path / "ws"
    create_workspace(source, target, exclude=[store])
    assert sorted(p.name for p in target.iterdir()) == [".git", "escape", "link", "pkg"]
    assert (target / "pkg" / "a.py").read_text() == "a"
    assert os.readlink(target / "link") == "pkg/a.py"
    assert os.readlink(target / "escape") == "/etc"  # a link, not a copy of /etc
    (target / "pkg" / "a.py").write_text("changed")
    assert (source / "pkg" / "a.py").read_text() == "a"


def test_artifacts_keep_their_paths(tmp_path):
    ws = tmp_path / "ws"
    (ws / "dist" / "sub").mkdir(parents=True)
    (ws / "dist" / "app.tar").write_text("app")
    (ws / "dist" / "sub" / ".hidden").write_text("h")
    (ws / "build.log").write_text("log")
    (ws / "other.txt").write_text("no")
    target = tmp_path / "artifacts"
    copied, problems = collect_artifacts(ws, ["dist/**", "*.log", "missing/*"], target)
    assert (copied, problems) == (["dist", "build.log"], [])
    assert (target / "dist" / "app.tar").read_text() == "app"
    assert (target / "dist" / "sub" / ".hidden").read_text() == "h"
    assert (target / "build.log").read_text() == "log"
    assert not (target / "other.txt").exists()


def test_artifacts_never_follow_links_out_of_the_workspace(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private").write_text("host file")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "out").symlink_to(outside)
    (ws / "file").symlink_to(outside / "private")
    target = tmp_path / "artifacts"
    copied, problems = collect_artifacts(ws, ["out/*", "out", "file"], target)
    assert (copied, problems) == (["out", "file"], [])
    assert os.readlink(target / "out") == str(outside)  # copied as links
    assert os.readlink(target / "file") == str(outside / "private")


def test_cache_dirs_are_per_pipeline_and_path(tmp_path):
    a = cache_dir(tmp_path, "pipeline-1", "/root/.cache")
    assert a.is_dir()
    assert cache_dir(tmp_path, "pipeline-1", "/root/.cache") == a
    assert cache_dir(tmp_path, "pipeline-2", "/root/.cache") != a
    assert cache_dir(tmp_path, "pipeline-1", "/var/cache") != a


def test_run_dirs_and_records(tmp_path):
    first, second = RunDir.create(tmp_path), RunDir.create(tmp_path)
    assert run_ids(tmp_path) == sorted([first.id, second.id])
    first.write_record({"id": first.id, "status": "running", "pid": os.getpid()})
    assert first.read_record()["status"] == "running"
    first.write_record({"id": first.id, "status": "running", "pid": 2**22 + 1})
    assert first.read_record()["status"] == ABANDONED
    assert RunDir.find(tmp_path, second.id) == second
    assert RunDir.find(tmp_path, "last") == max(first, second, key=lambda r: r.id)
    with pytest.raises(NotFound):
        RunDir.find(tmp_path, "nope")
    assert run_ids(tmp_path / "empty") == []


def test_artifacts_are_files_dirs_and_links_only_without_setuid_bits(tmp_path):
    ws = tmp_path / "ws"
    (ws / "dist").mkdir(parents=True)
    (ws / "dist" / "tool").write_text("x")
    os.chmod(ws / "dist" / "tool", 0o4755)
    os.mkfifo(ws / "dist" / "fifo")
    target = tmp_path / "artifacts"
    copied, problems = collect_artifacts(ws, ["dist", "dist/tool"], target)
    assert copied == ["dist"]
    assert problems == ["dist/fifo: not saved: not a file, directory or symlink"]
    saved = os.stat(target / "dist" / "tool")
    assert saved.st_mode & 0o7777 == 0o755
    assert saved.st_mtime_ns == os.stat(ws / "dist" / "tool").st_mtime_ns
    assert not (target / "dist" / "fifo").exists()


def test_artifact_patterns_merge_into_what_earlier_ones_copied(tmp_path):
    ws = tmp_path / "ws"
    (ws / "out" / "a").mkdir(parents=True)
    (ws / "out" / "a" / "x").write_text("x")
    (ws / "out" / "b").write_text("b")
    target = tmp_path / "artifacts"
    copied, problems = collect_artifacts(ws, ["out/a/*", "out", "."], target)
    assert (copied, problems) == (["out/a/x", "out", "."], [])
    assert (target / "out" / "a" / "x").read_text() == "x"
    assert (target / "out" / "b").read_text() == "b"
