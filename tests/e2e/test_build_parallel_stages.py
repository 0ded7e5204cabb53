"""Stages that run in parallel share the build's state: our version of BuildKit's
testExcludedFilesOnCopy, run many times in one test, since the race it guards against
(a half-filled context index seen by the second stage: an empty copy, or a bogus
``"/dir1": not found``) showed in one build of five."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from dockyard.builder.builder import BuildOptions, build
from dockyard.layers import open_decompressed
from dockyard.store import Store

pytestmark = pytest.mark.e2e

FILES = 300
ROUNDS = 40


def layer_names(store: Store, layer) -> set[str]:
    with (
        store.blobs.open(layer.digest, layer.size) as raw,
        open_decompressed(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        return {m.name for m in tar}


def test_parallel_stages_copying_from_the_context_see_all_of_it(store_root, tmp_path: Path):
    context = tmp_path / "ctx"
    (context / "dir1").mkdir(parents=True)
    for i in range(FILES):
        (context / "dir1" / f"f{i}").write_text(f"{i}\n")
        (context / "dir1" / f"f{i}.skip").write_text("excluded\n")
    (context / "Dockerfile").write_text(
        "FROM scratch AS a\n"
        "COPY --exclude=*.skip dir1 /dir1\n"
        "FROM scratch AS b\n"
        "COPY dir1 /dir1b\n"
        "FROM scratch\n"
        "COPY --from=a /dir1 /a\n"
        "COPY --from=b /dir1b /b\n"
    )
    store = Store(store_root)
    for _ in range(ROUNDS):  # a new build, a new context index: a stage that saw less misses
        result = build(store, BuildOptions(context=context))
        first, second = (layer_names(store, layer) for layer in result.manifest.layers)
        assert {n for n in first if n.startswith("a/f")} == {f"a/f{i}" for i in range(FILES)}
        assert len([n for n in second if n.startswith("b/f")]) == 2 * FILES
