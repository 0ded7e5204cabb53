"""Hostile filesystems: a destination rootfs whose symlinks point out of it, and a
``--from`` source root that tries to make us read host files. Every write must land in
the rootfs (symlinks followed *inside* it, as the container would see them), every read
must come from the source root; a sacrificial directory outside both stays untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.builder import copier
from dockyard.errors import BuildError
from tests.support.copier import instruction, needs_root, owner, run, snapshot

pytestmark = needs_root


@pytest.fixture
def world(tmp_path):
    """ctx and a rootfs three levels down (so ``../../..`` stays in tmp_path), and a
    sacrificial directory beside them with a file each attack would like to hit."""
    ctx = tmp_path / "ctx"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "x").write_text("payload\n")
    (ctx / "dir/f").write_text("payload f\n")
    rootfs = tmp_path / "a/b/c/rootfs"
    (rootfs / "etc").mkdir(parents=True)
    victim = tmp_path / "victim"
    (victim / "y").mkdir(parents=True)
    (victim / "target").write_text("precious\n")
    (victim / "etc").mkdir()
    (victim / "etc/passwd").write_text("victim:x:7:7::/:/bin/sh\n")
    return ctx, rootfs, victim, tmp_path


def _before(tmp_path: Path, victim: Path) -> tuple[dict, list[str]]:
    return snapshot(victim), sorted(os.listdir(tmp_path))


@pytest.mark.parametrize("target", ["/", "../../..", "../../../../../..", "ABS_VICTIM"])
@pytest.mark.parametrize(
    ("line", "written"),
    [
        ("COPY x /app/y", "y"),  # /app/y: y made in whatever /app resolves to
        ("COPY x /app/", "x"),
        ("COPY dir /app/sub/", "sub/f"),
        ("COPY x /app/target", "target"),
        ("COPY --chown=victim x /app/z", None),  # the user lookup is inside too
    ],
)
def test_destination_symlinks_resolve_inside_the_rootfs(world, target, line, written):
    ctx, rootfs, victim, tmp_path = world
    link_target = str(victim) if target == "ABS_VICTIM" else target
    (rootfs / "app").symlink_to(link_target)
    before = _before(tmp_path, victim)
    if written is None:
        with pytest.raises(BuildError, match="unable to find user victim"):
            run(line, rootfs, ctx)
    else:
        run(line, rootfs, ctx)
        base = rootfs / str(victim).lstrip("/") if target == "ABS_VICTIM" else rootfs
        assert (base / written).read_text().startswith("payload")
    assert _before(tmp_path, victim) == before


def test_dangling_and_nested_links_in_the_destination(world):
    ctx, rootfs, victim, tmp_path = world
    (rootfs / "etc/hosts").symlink_to(victim / "target")  # absolute, dangling in the rootfs
    (rootfs / "up").symlink_to("../../../../victim")
    (rootfs / "loop").symlink_to("loop")
    before = _before(tmp_path, victim)
    run("COPY x /etc/hosts", rootfs, ctx)
    assert (rootfs / str(victim / "target").lstrip("/")).read_text() == "payload\n"
    run("COPY dir /up/y/", rootfs, ctx)  # ../../../../victim from / is /victim
    assert (rootfs / "victim/y/f").exists()
    with pytest.raises(BuildError, match="symlinks"):
        run("COPY x /loop/x", rootfs, ctx)
    assert _before(tmp_path, victim) == before


def test_copied_tree_entries_are_never_followed(world):
    """A directory copied over an existing tree whose entries are symlinks out: a file
    replaces the link, a directory refuses to go through it."""
    ctx, rootfs, victim, tmp_path = world
    (rootfs / "d").mkdir()
    (rootfs / "d/f").symlink_to(victim / "target")
    before = _before(tmp_path, victim)
    run("COPY dir /d", rootfs, ctx)
    assert not (rootfs / "d/f").is_symlink() and (rootfs / "d/f").read_text() == "payload f\n"
    (ctx / "dir/sub").mkdir()
    (ctx / "dir/sub/g").write_text("g")
    (rootfs / "d/sub").symlink_to(victim)
    with pytest.raises(BuildError, match="cannot copy to non-directory: /d/sub"):
        run("COPY dir /d", rootfs, ctx)
    assert _before(tmp_path, victim) == before


# -- --from sources --------------------------------------------------------------------


@pytest.fixture
def stage(tmp_path):
    """A source rootfs whose paths lead to host files if followed naively."""
    root = tmp_path / "s/t/stage"
    (root / "real/data").mkdir(parents=True)
    (root / "real/data/file").write_text("stage data\n")
    (root / "etc").mkdir()
    (root / "etc/secret").write_text("stage secret\n")
    os.chown(root / "real/data/file", 1234, 4321)
    (root / "app").symlink_to("/real/data")  # absolute: the stage's own /real/data
    (root / "up").symlink_to("../../../../..")
    return root


def test_from_source_path_follows_symlinks_inside_the_source_root(stage, tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    run("COPY --from=stage /app/file /got", rootfs, source_root=stage)
    assert (rootfs / "got").read_text() == "stage data\n"
    assert owner(rootfs / "got") == (1234, 4321)  # owners kept from a stage
    run("COPY --from=stage /app /dir/", rootfs, source_root=stage)
    assert (rootfs / "dir/file").read_text() == "stage data\n"
    run("COPY --from=stage /up/etc/secret /s2", rootfs, source_root=stage)
    assert (rootfs / "s2").read_text() == "stage secret\n"  # ".." stops at the stage's /


def test_from_source_cannot_read_host_files(stage, tmp_path):
    host = tmp_path / "host-secret"
    host.write_text("HOST SECRET\n")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (stage / "abs").symlink_to(host)  # the stage's <host path>, which does not exist
    (stage / "rel").symlink_to("../../../../host-secret")
    (stage / "real/data/inner").symlink_to(host)
    for source in ("/abs", "/rel", "/up/host-secret"):
        with pytest.raises(BuildError, match="not found"):
            run(f"COPY --from=stage {source} /x", rootfs, source_root=stage)
    with pytest.raises(BuildError, match="lstat /abs: no such file"):
        run("COPY --from=stage /abs* /x", rootfs, source_root=stage)  # a glob match, followed
    run("COPY --from=stage /real /copied", rootfs, source_root=stage)
    assert os.readlink(rootfs / "copied/data/inner") == str(host)  # a link, not its content
    assert b"HOST SECRET" not in b"".join(
        p.read_bytes() for p in rootfs.rglob("*") if p.is_file() and not p.is_symlink()
    )


def test_from_globs_walk_without_following_symlinks(stage, tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (stage / "real/other").symlink_to("/etc")
    with copier.plan_copy(instruction("COPY --from=stage /real/*/file /g/"), None, stage) as plan:
        assert [item.real for item in plan.items] == ["real/data/file"]
        assert plan.key["context"] is None and plan.context_paths == []
        copier.execute_copy(plan, rootfs, workdir="/")
    assert (rootfs / "g/file").read_text() == "stage data\n"
