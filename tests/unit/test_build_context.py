import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dockyard.builder import context as context_module
from dockyard.builder.confined import ConfinedDir, ConfinedFile
from dockyard.builder.context import BuildContext, ContextIndex, racy
from dockyard.builder.frontend.dockerignore import IgnoreMatcher

pytestmark = pytest.mark.usefixtures("settled_files")


@pytest.fixture
def context(tmp_path):
    root = tmp_path / "ctx"
    (root / "src/pkg").mkdir(parents=True)
    (root / "src/main.py").write_text("print('hi')\n")
    (root / "src/pkg/mod.py").write_text("X = 1\n")
    (root / "README").write_text("readme\n")
    (root / "src/link").symlink_to("main.py")
    return root


def hashed_files(monkeypatch) -> list[str]:
    seen: list[str] = []
    original = BuildContext._hash_file

    def counting(self, entry):
        seen.append(entry.path)
        original(self, entry)

    monkeypatch.setattr(BuildContext, "_hash_file", counting)
    return seen


def test_checksum_ignores_times_but_not_content_mode_or_links(context):
    first = BuildContext(context).checksum(["src"])
    os.utime(context / "src/main.py", (1, 1))
    assert BuildContext(context).checksum(["src"]) == first
    (context / "src/main.py").write_text("print('bye')\n")
    changed = BuildContext(context).checksum(["src"])
    assert changed != first
    os.chmod(context / "src/main.py", 0o755)
    assert BuildContext(context).checksum(["src"]) != changed
    (context / "src/link").unlink()
    (context / "src/link").symlink_to("pkg")
    assert BuildContext(context).checksum(["src"]) != changed


def test_checksum_covers_only_selected_paths(context):
    before = BuildContext(context).checksum(["src"])
    (context / "README").write_text("changed\n")
    assert BuildContext(context).checksum(["src"]) == before
    assert BuildContext(context).checksum(["README"]) != BuildContext(context).checksum(["src"])


def test_stat_cache_skips_reading_unchanged_files(context, tmp_path, monkeypatch):
    index = ContextIndex(tmp_path / "store", context)
    seen = hashed_files(monkeypatch)
    first = BuildContext(context, index=index)
    digest = first.checksum([""])
    first.save_index()
    assert sorted(seen) == ["README", "src/main.py", "src/pkg/mod.py"]

    seen.clear()
    second = BuildContext(context, index=index)
    assert second.checksum([""]) == digest
    assert seen == []

    (context / "src/pkg/mod.py").write_text("X = 2\n")
    seen.clear()
    third = BuildContext(context, index=index)
    assert third.checksum([""]) != digest
    assert seen == ["src/pkg/mod.py"]


def test_dockerignore_excludes_and_exceptions(context):
    (context / ".dockerignore").write_text("src/**/*.py\n!src/pkg/mod.py\nREADME\n")
    with ConfinedDir.open(context) as root:
        matcher = IgnoreMatcher.load(root, ConfinedFile(root, "Dockerfile"))
    ctx = BuildContext(context, matcher.excluded, matcher.may_contain)
    assert "README" not in ctx.entries
    assert "src/main.py" not in ctx.entries
    assert "src/pkg/mod.py" in ctx.entries
    assert "src/link" in ctx.entries


def test_missing_context_is_a_build_error(tmp_path):
    from dockyard.errors import BuildError

    with pytest.raises(BuildError, match="not a directory"):
        BuildContext(tmp_path / "nope")


def test_parallel_readers_all_see_the_whole_context(tmp_path):
    """Stages run two at a time and read one context: none may see it half-walked (an
    empty context, a bogus "not found"). Many readers start at once, many times over."""
    root = tmp_path / "ctx"
    for d in range(20):
        (root / f"dir{d}").mkdir(parents=True)
        for f in range(50):
            (root / f"dir{d}" / f"f{f}").write_text(f"{d}/{f}\n")
    expected = 1 + 20 + 20 * 50
    readers = 8
    for _ in range(20):
        ctx = BuildContext(root)
        start = threading.Barrier(readers)

        def read(_: int, ctx: BuildContext = ctx, start: threading.Barrier = start) -> int:
            start.wait()
            return len(ctx.entries)

        with ThreadPoolExecutor(readers) as pool:
            assert list(pool.map(read, range(readers))) == [expected] * readers
        ctx.close()


def test_stat_cache_is_rewritten_only_when_it_changed(context, tmp_path):
    """A build that computed no digest and saw every file of the stat cache again leaves
    it alone (no write on a cached rebuild); one that lost a file rewrites it."""
    index = ContextIndex(tmp_path / "store", context)
    first = BuildContext(context, index=index)
    first.checksum([""])
    first.save_index()
    written = index.path.stat().st_ino

    again = BuildContext(context, index=index)
    again.checksum([""])
    again.save_index()
    assert index.path.stat().st_ino == written  # not replaced

    (context / "README").unlink()
    gone = BuildContext(context, index=index)
    gone.checksum([""])
    gone.save_index()
    assert index.path.stat().st_ino != written
    assert "README" not in index.load(str(context))


def test_a_change_time_in_or_after_the_walk_s_tick_is_racy():
    seen_at = 1_700_000_000_123_456_789
    assert racy(seen_at, seen_at)  # the same tick: a write after the walk may keep it
    assert racy(seen_at + 5, seen_at)
    assert not racy(seen_at - 1, seen_at)
    # whole seconds: a filesystem that rounds (FAT: to two) may stamp a later write so
    assert racy(1_700_000_000 * 10**9, seen_at)
    assert not racy(1_697_000_000 * 10**9, seen_at)
    assert racy(1_700_000_000_123 * 10**6, seen_at)  # milliseconds
    assert not racy(1_700_000_000_122 * 10**6, seen_at)


def test_a_file_rewritten_in_the_tick_the_walk_saw_it_is_read_again(tmp_path, monkeypatch):
    """Git's racily-clean case: a same-size rewrite in the tick of the walk that hashed
    the file may keep its stamp; the stat cache must not vouch for it next time."""
    context = tmp_path / "ctx"
    context.mkdir()
    f = context / "f"
    f.write_text("aaaa")
    index = ContextIndex(tmp_path / "store", context)
    ctime = f.stat().st_ctime_ns
    monkeypatch.setattr(context_module, "file_clock", lambda: ctime)  # the walk's tick
    first = BuildContext(context, index=index)
    first.checksum([""])
    first.save_index()
    kept = index.load(str(context))

    # before Linux 6.13's multigrain times (or on a filesystem without them) this write,
    # in the same tick, keeps size and stamp: only the smudge tells the cache it changed
    f.write_text("bbbb")
    f_ctime = f.stat().st_ctime_ns
    monkeypatch.setattr(context_module, "file_clock", lambda: f_ctime + 10**9)
    second = BuildContext(context, index=index)
    assert second.checksum([""]) == BuildContext(context).checksum([""])
    assert "f" not in kept  # smudged, not kept
    second.save_index()
    assert "f" in index.load(str(context))  # settled: kept


def test_on_a_filesystem_another_clock_stamps_no_stamp_is_trusted(context, tmp_path, monkeypatch):
    """NFS, FUSE, 9p: a server behind our clock can stamp a same-size rewrite as it was."""
    monkeypatch.setattr(context_module.syscalls, "filesystem_type", lambda fd: 0x6969)  # NFS
    index = ContextIndex(tmp_path / "store", context)
    seen = hashed_files(monkeypatch)
    for _ in range(2):
        built = BuildContext(context, index=index)
        built.checksum([""])
        built.save_index()
    assert (
        sorted(seen) == ["README", "README", "src/main.py", "src/main.py"] + ["src/pkg/mod.py"] * 2
    )
    assert index.load(str(context)) == {}


def test_a_stat_cache_saved_before_the_racy_rule_is_not_trusted(context, tmp_path):
    index = ContextIndex(tmp_path / "store", context)
    built = BuildContext(context, index=index)
    built.checksum([""])
    built.save_index()
    doc = json.loads(index.path.read_bytes())
    assert set(doc["files"]) == {"README", "src/main.py", "src/pkg/mod.py"}
    del doc["stamps"]  # as the last version wrote it
    index.markers.write(index.path, json.dumps(doc).encode())
    assert index.load(str(context)) == {}
