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

from dockyard.builder.builder import BuildOptions, build
from dockyard.ci.cancel import Cancellation
from dockyard.ci.context import RunContext
from dockyard.ci.images import Images
from dockyard.ci.pipeline import Build, Step
from dockyard.ci.results import SUCCESS, Events
from dockyard.ci.runs import RunDir
from dockyard.ci.steps import run_step
from dockyard.errors import BuildError, DockyardError
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
    """Swaps each of ``paths`` (outermost first) between its real directory and a
    symlink to ``host`` (absolute and relative targets, by turns) until stopped, as a
    parallel pipeline step sharing the workspace can. A path flips only while the
    flipped paths above it are real."""

    def __init__(self, paths: list[Path], host: Path):
        super().__init__(daemon=True)
        self.paths = paths
        self.host = host
        self.flips = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.linked = dict.fromkeys(paths, False)

    def real(self, path: Path) -> Path:
        """Where ``path`` is right now as a real path; call with :attr:`lock` held."""
        for flipped in reversed(self.paths):
            if self.linked[flipped] and (path == flipped or flipped in path.parents):
                path = _stash(flipped) / path.relative_to(flipped)
        return path

    def run(self) -> None:
        chance = random.Random(0)
        while not self.stopped.is_set():
            with self.lock:
                free = [
                    p
                    for p in self.paths
                    if not any(self.linked[q] for q in self.paths if q in p.parents)
                ]
                self._toggle(chance.choice(free))

    def _toggle(self, path: Path) -> None:
        if self.linked[path]:
            path.unlink()
            _stash(path).rename(path)
        else:
            path.rename(_stash(path))
            target = self.host if self.flips % 4 < 2 else os.path.relpath(self.host, path.parent)
            path.symlink_to(target)
        self.linked[path] = not self.linked[path]
        self.flips += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        with self.lock:
            for path in self.paths:
                if self.linked[path]:
                    self._toggle(path)


def _stash(path: Path) -> Path:
    return path.with_name(path.name + ".real")


@pytest.fixture
def flipping(tmp_path: Path, host: Path) -> Iterator[tuple[Path, Flipper]]:
    """A workspace whose context ``ctx`` (COPY . /out/) is being flipped."""
    workspace = tmp_path / "workspace"
    context = workspace / "ctx"
    (context / "sub").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /out/\n")
    (context / "sub" / "a").write_text("a\n")
    flipper = Flipper([context, context / "sub"], host)
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
        netns=run.path / "netns",
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
    while flipper.flips < MIN_FLIPS or builds < 150 or (succeeded < 3 and builds < 600):
        with flipper.lock:  # a new file each time: no build is a cache hit
            flipper.real(workspace / "ctx" / "n").write_text(f"{builds}\n")
        result = run_step(run_context(store, workspace), step, {}, "key")
        builds += 1
        succeeded += result.status == SUCCESS
    flipper.stop()
    assert leaked(store_root, marker_of(host)) == []
    assert flipper.flips >= MIN_FLIPS
    assert succeeded > 0, "no build got through: the test proved nothing"


@pytest.mark.parametrize("name", ["Dockerfile", "dockerfile"])
def test_default_dockerfile_symlinked_to_a_host_file_is_not_read(store_root, tmp_path, host, name):
    """``Dockerfile -> /host/Dockerfile`` (or the lower-case ``dockerfile`` a build falls
    back to): resolved inside the context, where there is none; the host file's first
    line is in no message."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / name).symlink_to(host / "Dockerfile")
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


BUSYBOX = "localhost/fixtures/busybox-build-confine:1"


@pytest.fixture
def busybox(dockyard, busybox_rootfs) -> str:
    """A busybox image in the test's store, imported (no registry needed)."""
    dockyard("import", "--compression", "none", str(busybox_rootfs), BUSYBOX)
    return BUSYBOX


@pytest.mark.e2e
def test_a_bind_mount_source_swapped_for_a_host_symlink_is_never_mounted(
    dockyard, busybox, tmp_path, host
):
    """``RUN --mount=type=bind,source=sub`` while ``sub`` flips between the context's
    directory and a symlink to a host dir: the builder binds what it opened inside the
    context, never a path the container runtime resolves again later."""
    context = tmp_path / "ctx"
    (context / "sub").mkdir(parents=True)
    (context / "Dockerfile").write_text(
        f"FROM {busybox}\nRUN --mount=type=bind,source=sub,target=/m cp -r /m /copied\n"
    )
    flipper = Flipper([context / "sub"], host)  # a CLI build's context is the operator's
    store = Store(dockyard.root)
    succeeded = builds = 0
    flipper.start()
    try:
        while builds < 80 or (succeeded < 3 and builds < 300):
            with flipper.lock:  # new content each time: the RUN step is no cache hit
                flipper.real(context / "sub" / "n").write_text(f"{builds}\n")
            try:
                build(store, BuildOptions(context=context))
                succeeded += 1
            except (DockyardError, OSError):
                pass  # the context changed while it was read: refused (the old code
                # failed with OSError now and then, and leaked at other times)
            builds += 1
    finally:
        flipper.stop()
    assert leaked(dockyard.root, marker_of(host)) == []
    assert flipper.flips >= MIN_FLIPS
    assert succeeded > 0, "no build got through: the test proved nothing"


@pytest.mark.e2e
def test_a_read_write_bind_mount_of_the_context_never_writes_to_it(dockyard, busybox, tmp_path):
    """``rw`` lets a RUN step write to its bind mount, but what it writes is thrown away
    (BuildKit): a Dockerfile must not plant files (a git hook, say) in its context."""
    context = tmp_path / "ctx"
    (context / "sub").mkdir(parents=True)
    (context / "sub" / "f").write_text("f\n")
    (context / "Dockerfile").write_text(
        f"FROM {busybox}\n"
        "RUN --mount=type=bind,target=/c,rw touch /c/planted && echo x >> /c/sub/f\n"
        "RUN --mount=type=bind,source=sub/f,target=/f,rw echo y >> /f\n"
    )
    build(Store(dockyard.root), BuildOptions(context=context))
    assert sorted(p.name for p in context.rglob("*")) == ["Dockerfile", "f", "sub"]
    assert (context / "sub" / "f").read_text() == "f\n"


@pytest.mark.parametrize("form", ["type=local", "oci:"])
@pytest.mark.parametrize("field", ["cache_to", "cache_from"])
def test_a_pipeline_build_cache_names_no_host_directory(store_root, tmp_path, field, form):
    """``cache_to: type=local,dest=/host/dir`` (or ``oci:/host/dir``) would write to
    (``cache_from`` read from) a host path the pipeline chose: refused before the build
    starts."""
    workspace = tmp_path / "workspace"
    (workspace / "ctx").mkdir(parents=True)
    (workspace / "ctx" / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")
    outside = tmp_path / "host-cache"
    spec = f"type=local,dest={outside}" if field == "cache_to" else f"type=local,src={outside}"
    if form == "oci:":
        spec = f"oci:{outside}"
    value = spec if field == "cache_to" else [spec]
    ctx = run_context(Store(store_root), workspace)
    result = run_step(
        ctx, Step(name="image", build=Build(context="ctx", **{field: value})), {}, "k"
    )
    assert result.status != SUCCESS
    assert "may only name a registry" in result.reason
    assert not outside.exists()
    assert "COPY" not in ctx.run.step_log("image").read_text()
