"""Attacks on what a build reads: its context, its Dockerfile, its ignore file, its bind
mounts. Nothing outside the context (here: a sacrificial "host" directory holding a
victim file) may reach a layer, an error message or a log.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.build.builder import BuildOptions, build
from dockyard.ci.cancel import Cancellation
from dockyard.ci.context import RunContext
from dockyard.ci.images import Images
from dockyard.ci.pipeline import Build, Step
from dockyard.ci.results import SUCCESS, Events
from dockyard.ci.runs import RunDir
from dockyard.ci.steps import run_step
from dockyard.errors import BuildError
from dockyard.layers import open_decompressed
from dockyard.store import Store

MIN_FLIPS = 1000


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A sacrificial host directory with a victim file whose name and content are unique."""
    directory = tmp_path / "host"
    directory.mkdir()
    marker = f"victim-{uuid.uuid4().hex}"
    (directory / marker).write_text(f"{marker.upper()}\n")
    (directory / "Dockerfile").write_text(f"{marker.upper()} is the first line\n")
    return directory


def marker_of(host: Path) -> str:
    return next(p.name for p in host.iterdir() if p.name.startswith("victim-"))


def leaked(store_root: Path, marker: str) -> list[str]:
    """The store files (layer blobs read decompressed, snapshot files) that hold the
    victim's name or content."""
    needles = (marker.encode(), marker.upper().encode())
    found = []
    for directory, _dirs, files in os.walk(store_root):
        for name in files:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b" or data[:4] == b"\x28\xb5\x2f\xfd":
                with path.open("rb") as f, open_decompressed(f) as tar:
                    data = tar.read()
            if any(n in data for n in needles) or marker in name:
                found.append(str(path.relative_to(store_root)))
    return found


class Flipper(threading.Thread):
    """Swaps ``context`` and ``context/sub`` between their real directories and symlinks
    to ``host`` (absolute and relative targets, by turns) until stopped, as a parallel
    pipeline step sharing the workspace can."""

    def __init__(self, context: Path, host: Path):
        super().__init__(daemon=True)
        self.context = context
        self.host = host
        self.flips = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.linked = {context: False, context / "sub": False}

    def real(self, relative: str) -> Path:
        """Where ``relative`` (under the context) is right now, as a real path; call
        with :attr:`lock` held."""
        base = self.context.with_name(self.context.name + ".real")
        base = base if self.linked[self.context] else self.context
        parts = relative.split("/")
        if parts[0] == "sub" and self.linked[self.context / "sub"]:
            parts[0] = "sub.real"
        return base.joinpath(*parts)

    def run(self) -> None:
        chance = random.Random(0)
        while not self.stopped.is_set():
            with self.lock:
                sub = self.context / "sub"
                path = sub if chance.random() < 0.5 and not self.linked[self.context] else None
                self._toggle(path or self.context)

    def _toggle(self, path: Path) -> None:
        stash = path.with_name(path.name + ".real")
        if self.linked[path]:
            path.unlink()
            stash.rename(path)
        else:
            path.rename(stash)
            target = self.host if self.flips % 4 < 2 else os.path.relpath(self.host, path.parent)
            path.symlink_to(target)
        self.linked[path] = not self.linked[path]
        self.flips += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        with self.lock:
            for path in (self.context, self.context / "sub"):
                if self.linked[path]:
                    self._toggle(path)


@pytest.fixture
def flipping(tmp_path: Path, host: Path) -> Iterator[tuple[Path, Flipper]]:
    """A workspace whose context ``ctx`` (COPY . /out/) is being flipped."""
    workspace = tmp_path / "workspace"
    context = workspace / "ctx"
    (context / "sub").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /out/\n")
    (context / "sub" / "a").write_text("a\n")
    flipper = Flipper(context, host)
    yield workspace, flipper
    if flipper.is_alive():
        flipper.stop()


def run_context(store: Store, workspace: Path) -> RunContext:
    """A pipeline run whose workspace is ``workspace`` (what a build step needs)."""
    run = RunDir.create(store.root)
    run.workspace.symlink_to(workspace)  # the run's own path: dockyard's, not the pipeline's
    return RunContext(
        store=store,
        images=Images(store),
        run=run,
        netns=run.netns,
        services=[],
        secrets={},
        events=Events(),
        cancel=Cancellation(),
    )


def test_a_pipeline_build_never_copies_a_host_dir_swapped_in_for_its_context(
    store_root, flipping, host
):
    """A parallel step flips the build step's context dir and a subdir between the real
    directory and a symlink to a host dir thousands of times while builds run: the
    builder reads the context from the fd it opened inside the workspace, so the victim
    never reaches a layer (builds may fail: the context changed under them)."""
    workspace, flipper = flipping
    store = Store(store_root)
    step = Step(name="image", build=Build(context="ctx"))
    succeeded = builds = 0
    flipper.start()
    while flipper.flips < MIN_FLIPS or builds < 150:
        with flipper.lock:  # a new file each time: no build is a cache hit
            flipper.real("n").write_text(f"{builds}\n")
        result = run_step(run_context(store, workspace), step, {}, "key")
        builds += 1
        succeeded += result.status == SUCCESS
    flipper.stop()
    assert leaked(store_root, marker_of(host)) == []
    assert flipper.flips >= MIN_FLIPS
    assert succeeded > 0, "no build got through: the test proved nothing"


def test_default_dockerfile_symlinked_to_a_host_file_is_not_read(store_root, tmp_path, host):
    """``Dockerfile -> /host/Dockerfile``: resolved inside the context, where there is
    none; the host file's first line is in no message."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").symlink_to(host / "Dockerfile")
    with pytest.raises(BuildError) as info:
        build(Store(store_root), BuildOptions(context=context))
    assert marker_of(host).upper() not in str(info.value)
    assert "cannot read Dockerfile" in str(info.value)


def test_pipeline_dockerfile_symlinked_out_of_the_workspace_is_not_read(store_root, tmp_path, host):
    """A build step's ``dockerfile:`` (and its default) resolve inside the workspace:
    the step fails without a word of the host file in its reason or its log."""
    workspace = tmp_path / "workspace"
    (workspace / "ctx").mkdir(parents=True)
    (workspace / "ctx" / "Dockerfile").symlink_to(host / "Dockerfile")
    (workspace / "docker").symlink_to(host)
    store = Store(store_root)
    for build_spec in (Build(context="ctx"), Build(context="ctx", dockerfile="docker/Dockerfile")):
        ctx = run_context(store, workspace)
        result = run_step(ctx, Step(name="image", build=build_spec), {}, "key")
        assert result.status != SUCCESS
        assert "Dockerfile" in result.reason or "cannot open docker" in result.reason
        log = ctx.run.step_log("image").read_text()
        assert marker_of(host).upper() not in result.reason + log


def test_dockerignore_symlinked_to_a_host_file_is_not_read(store_root, tmp_path, host):
    """A ``.dockerignore`` symlink to a host file is not followed out of the context:
    the host file's lines would otherwise be echoed as bad patterns."""
    (host / "ignore").write_text(f"[{marker_of(host).upper()}\n")  # an invalid pattern
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /out/\n")
    (context / ".dockerignore").symlink_to(host / "ignore")
    lines: list[str] = []
    result = build(Store(store_root), BuildOptions(context=context), lines.append)
    assert result.executed == 1
    assert marker_of(host).upper() not in "\n".join(lines)
    assert leaked(store_root, marker_of(host)) == []
