"""An edited COPY rebuilt from its last run's snapshot: the tree a full run writes, or
no rebuild at all where the record cannot vouch for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.builder import copier, incremental
from dockyard.builder.incremental import CopyRecord
from tests.support.copier import context, instruction, needs_root

pytestmark = [needs_root, pytest.mark.usefixtures("settled_files")]

TIME = 1_600_000_000 * 10**9
COPY = "COPY src/ /app/src/"


def describe(root: Path) -> dict[str, tuple]:
    """What a layer packed from ``root`` holds of each entry (times included)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, data)
    return out


def source_tree(ctx: Path) -> Path:
    for i in range(12):
        path = ctx / "src" / f"d{i % 3}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n")
    os.symlink("f0.txt", ctx / "src/d0/link")
    for directory in sorted(ctx.rglob("*"), reverse=True):
        os.utime(directory, ns=(TIME, TIME), follow_symlinks=False)
    return ctx


def full_run(ctx: Path, rootfs: Path, text: str = COPY) -> CopyRecord | None:
    """The COPY run in full into the empty dir ``rootfs`` (its upper dir, as the
    state below is empty); the record it leaves."""
    rootfs.mkdir()
    with copier.plan_copy(instruction(text), context(ctx), None) as plan:
        placement = copier.execute_copy(plan, rootfs, workdir="/")
        return incremental.record(plan, "parent", "shape", placement)


def rebuilt(
    ctx: Path,
    last: CopyRecord,
    donor: Path,
    target: Path,
    lowers: list[Path] | None = None,
    text: str = COPY,
) -> CopyRecord | None:
    """The COPY rebuilt into ``target`` from ``donor`` over the snapshot dirs ``lowers``;
    None if the record cannot vouch."""
    build = context(ctx)
    with copier.plan_copy(instruction(text), build, None) as plan:
        found = incremental.changes(last, plan, "parent", "shape")
        if found is None:
            return None
        target.mkdir()
        root = build.dir.open_fd("", os.O_RDONLY | os.O_DIRECTORY)
        try:
            incremental.rebuild(found, plan, root, donor, target, lowers or [])
        finally:
            os.close(root)
        return found.record


@pytest.mark.parametrize("edit", ["rewrite", "replace", "add", "remove", "chmod", "relink"])
def test_a_rebuild_writes_what_a_full_run_writes(tmp_path, edit):
    ctx = source_tree(tmp_path / "ctx")
    record = full_run(ctx, tmp_path / "last")
    assert record is not None
    if edit == "rewrite":
        (ctx / "src/d1/f1.txt").write_text("edited, longer\n")
    elif edit == "replace":  # as editors save: the directory's times change too
        (ctx / "src/d1/new").write_text("replaced\n")
        (ctx / "src/d1/new").rename(ctx / "src/d1/f1.txt")
    elif edit == "add":
        (ctx / "src/d2/added.txt").write_text("added\n")
    elif edit == "remove":
        (ctx / "src/d2/f2.txt").unlink()
    elif edit == "chmod":
        (ctx / "src/d0/f3.txt").chmod(0o600)
    else:
        (ctx / "src/d0/link").unlink()
        os.symlink("f6.txt", ctx / "src/d0/link")
    again = rebuilt(ctx, record, tmp_path / "last", tmp_path / "rebuilt")
    full_run(ctx, tmp_path / "full")

    # /app is made by the COPY, not copied: its mtime is when (SOURCE_DATE_EPOCH clamps it)
    expected = describe(tmp_path / "full")
    expected["app"] = describe(tmp_path / "last")["app"]
    assert describe(tmp_path / "rebuilt") == expected
    assert again == full_run(ctx, tmp_path / "full-again")  # the next run's record
    same = "app/src/d2/f5.txt"
    assert (tmp_path / "rebuilt" / same).stat().st_ino == (tmp_path / "last" / same).stat().st_ino


@pytest.mark.parametrize("edit", ["new directory", "directory mode", "hardlink"])
def test_what_the_record_cannot_vouch_for_is_no_rebuild(tmp_path, edit):
    ctx = source_tree(tmp_path / "ctx")
    record = full_run(ctx, tmp_path / "last")
    assert record is not None
    if edit == "new directory":
        (ctx / "src/d9").mkdir()
    elif edit == "directory mode":
        (ctx / "src/d1").chmod(0o700)
    else:
        os.link(ctx / "src/d1/f1.txt", ctx / "src/d1/hard")
    assert rebuilt(ctx, record, tmp_path / "last", tmp_path / "rebuilt") is None


def test_another_state_below_or_instruction_is_no_rebuild(tmp_path):
    ctx = source_tree(tmp_path / "ctx")
    record = full_run(ctx, tmp_path / "last")
    assert record is not None
    (ctx / "src/d1/f1.txt").write_text("edited\n")
    with copier.plan_copy(instruction(COPY), context(ctx), None) as plan:
        assert incremental.changes(record, plan, "parent", "shape") is not None
        assert incremental.changes(record, plan, "other parent", "shape") is None
        assert incremental.changes(record, plan, "parent", "other shape") is None


def test_heredocs_and_overlapping_sources_leave_no_record_or_no_rebuild(tmp_path):
    ctx = source_tree(tmp_path / "ctx")
    heredoc = "COPY <<EOF /app/note\nhello\nEOF"
    assert full_run(ctx, tmp_path / "heredoc", heredoc) is None
    record = full_run(ctx, tmp_path / "twice", "COPY src/d0 src/d1 /app/")
    assert record is not None  # both land in /app: the order of writes tells its times
    with copier.plan_copy(instruction("COPY src/d0 src/d1 /app/"), context(ctx), None) as plan:
        assert incremental.changes(record, plan, "parent", "shape") is None
    (ctx / "f0.txt").write_text("lands on src/d0/f0.txt's copy\n")  # into the root: top []
    record = full_run(ctx, tmp_path / "root", "COPY src/d0 f0.txt /")
    assert record is not None
    with copier.plan_copy(instruction("COPY src/d0 f0.txt /"), context(ctx), None) as plan:
        assert incremental.changes(record, plan, "parent", "shape") is None


@pytest.mark.parametrize(
    "doc", [None, {}, {"parent": "p", "shape": "s", "owner": None, "items": [[["a"], {"": 1}]]}]
)
def test_a_damaged_record_is_none(doc):
    assert CopyRecord.from_json(doc) is None


def test_a_record_survives_json():
    record = CopyRecord("p", "s", (1, 2), [(["app", "src"], {"": (0o40755, 1, 2, 3, 4)})])
    assert CopyRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize("below", ["the path", "a symlink on the way", "a file on the way"])
def test_a_file_added_where_the_state_below_may_hold_something_is_unsure(tmp_path, below):
    """The full run would meet what is there (a directory it cannot replace, a symlink
    it resolves): the rebuild leaves it to the full run, and reads nothing outside."""
    ctx = source_tree(tmp_path / "ctx")
    record = full_run(ctx, tmp_path / "last")
    assert record is not None
    (ctx / "src/d2/added.txt").write_text("added\n")
    lower = tmp_path / "lower"
    (lower / "app/src").mkdir(parents=True)
    if below == "the path":
        (lower / "app/src/d2/added.txt").mkdir(parents=True)
    elif below == "a symlink on the way":
        os.symlink("/", lower / "app/src/d2")
    else:
        (lower / "app/src/d2").write_text("a file\n")
    with pytest.raises(incremental.Unsure):
        rebuilt(ctx, record, tmp_path / "last", tmp_path / "rebuilt", [lower])
    empty = tmp_path / "empty"
    (empty / "app/src").mkdir(parents=True)
    assert rebuilt(ctx, record, tmp_path / "last", tmp_path / "again", [empty]) is not None


@pytest.mark.parametrize(
    "text",
    [
        "COPY --chmod=640 --chown=1000:1001 src/ /app/src/",
        "COPY src/d1/f1.txt /app/one.txt",
        "COPY src/d1/f1.txt src/d2/f2.txt /app/",
    ],
)
def test_options_and_single_files_are_rebuilt_as_a_full_run_writes_them(tmp_path, text):
    ctx = source_tree(tmp_path / "ctx")
    record = full_run(ctx, tmp_path / "last", text)
    assert record is not None
    (ctx / "src/d1/f1.txt").write_text("edited, longer\n")
    (ctx / "src/d2/f2.txt").write_text("edited too\n")
    assert rebuilt(ctx, record, tmp_path / "last", tmp_path / "rebuilt", text=text) is not None
    full_run(ctx, tmp_path / "full", text)

    expected = describe(tmp_path / "full")
    expected["app"] = describe(tmp_path / "rebuilt")["app"]  # made now, see above
    assert describe(tmp_path / "rebuilt") == expected


def test_an_entry_the_context_smudged_is_rewritten(tmp_path, monkeypatch):
    """A file changed in the tick the last run's walk saw it (racily clean): its stamp
    vouches for nothing, so the rebuild writes it though the stamp looks the same."""
    from dockyard.builder import context as context_module

    ctx = source_tree(tmp_path / "ctx")
    oldest = min(p.lstat().st_ctime_ns for p in ctx.rglob("*"))
    monkeypatch.setattr(context_module, "file_clock", lambda: oldest)  # the files' own tick
    record = full_run(ctx, tmp_path / "last")
    assert record is not None
    same = "d2/f5.txt"
    assert record.items[0][1][same][4] == context_module.SMUDGED
    with copier.plan_copy(instruction(COPY), context(ctx), None) as plan:
        found = incremental.changes(record, plan, "parent", "shape")
    assert found is not None
    assert same in found.items[0].writes  # as the stamp could not vouch for it
