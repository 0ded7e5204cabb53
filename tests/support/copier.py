"""Helpers for the copier tests: instructions from Dockerfile text, running a COPY/ADD
into a plain directory standing in for the overlay's merged dir, snapshots of trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.builder import copier
from dockyard.builder.context import BuildContext
from dockyard.builder.frontend.dockerignore import IgnoreMatcher
from dockyard.builder.frontend.parse import parse_instruction
from dockyard.builder.frontend.parser import parse

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="writes 0:0 owners: needs root")


def instruction(text: str, env: dict[str, str] | None = None):
    """The expanded COPY/ADD of ``text`` (line 2 of a Dockerfile called Dockerfile)."""
    df = parse(f"FROM base\n{text}\n", file="Dockerfile")
    return parse_instruction(df.nodes[1], df.escape, "Dockerfile").expand(env or {})


def context(root: Path, ignore: list[str] | None = None) -> BuildContext:
    if not ignore:
        return BuildContext(root)
    matcher = IgnoreMatcher(ignore)
    return BuildContext(root, matcher.excluded, matcher.may_contain)


def run(
    text: str,
    rootfs: Path,
    ctx: Path | BuildContext | None = None,
    *,
    workdir: str = "/",
    source_root: Path | None = None,
    ignore: list[str] | None = None,
    **kw,
) -> copier.CopyPlan:
    """Plan and execute ``text`` into ``rootfs``; return the (closed) plan."""
    if isinstance(ctx, Path):
        ctx = context(ctx, ignore)
    with copier.plan_copy(instruction(text), ctx, source_root) as plan:
        copier.execute_copy(plan, rootfs, workdir=workdir, **kw)
    return plan


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything under ``root``: type, mode, owner, and content or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                detail: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                detail = path.read_bytes()
            else:
                detail = None
            rel = str(path.relative_to(root))
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            out[rel] += (detail, st.st_mtime_ns)
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid
