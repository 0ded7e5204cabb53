"""Our versions of BuildKit's Dockerfile tests on the cache, reproducibility and image
config (moby/buildkit frontend/dockerfile: testCopyRelativeParents,
testCopyParentsMissingDirectory, testMountRWCache, testCacheMountModeNoCache,
testReproducibleIDs, testWorkdirSourceDateEpochReproducible, testUserAdditionalGids,
testDefaultShellAndPath, testDockerfileScratchConfig), on a busybox base, plus the
general rule behind the first: every input of a step is in its cache key."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dockyard.builder import builder as builder_module
from dockyard.builder.builder import BuildOptions, BuildResult, build
from dockyard.errors import BuildError
from dockyard.layers import open_decompressed
from dockyard.store import Store

pytestmark = pytest.mark.e2e


def make_context(path: Path, dockerfile: str, **files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


class Logged:
    """A build log: which steps hit the cache."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def last_step_cached(self) -> bool:
        steps = [i for i, line in enumerate(self.lines) if line.startswith("[")]
        return "  CACHED" in self.lines[steps[-1] + 1 :]


def build_logged(store: Store, options: BuildOptions) -> tuple[BuildResult, Logged]:
    log = Logged()
    return build(store, options, log), log


def file_in_layers(store: Store, result: BuildResult, name: str) -> bytes:
    """The content of ``name`` in the image's top-most layer that has it."""
    for layer in reversed(result.manifest.layers):
        with (
            store.blobs.open(layer.digest, layer.size) as raw,
            open_decompressed(raw) as stream,
            tarfile.open(fileobj=io.BytesIO(stream.read()), mode="r:") as tar,
        ):
            try:
                member = tar.extractfile(name)
            except KeyError:
                continue
            assert member is not None
            return member.read()
    raise AssertionError(f"{name} is in no layer")


def config_of(store: Store, result: BuildResult) -> dict:
    return json.loads(result.config)


@pytest.fixture
def later(monkeypatch):
    """Moves the builder's clock on by a day: a rebuild 'tomorrow', without sleeping."""

    class Tomorrow(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(days=1)

    def move() -> None:
        monkeypatch.setattr(builder_module, "datetime", Tomorrow)

    return move


# --- COPY --parents: the part after "/./" is in the key (testCopyRelativeParents) -------

PARENTS_BASE = """\
FROM {busybox} AS base
WORKDIR /test
RUN <<eot
\tset -ex
\tmkdir -p a/b/c/d/e a/b2/c/d/e a/b/c2/d/e a/b/c2/d/e2
\ttouch a/b/c/d/foo a/b/c/d/e/bay a/b2/c/d/e/bar a/b/c2/d/e/baz a/b/c2/d/e2/baz
eot
"""

PARENTS_TARGETS = {
    "middle": ("/test/a/b/./c/d", "[ -d /out/c/d/e ] && [ -f /out/c/d/foo ] && [ ! -d /out/a ]"),
    "end": ("/test/a/b/c/d/.", "[ -d /out/test/a/b/c/d/e ] && [ -f /out/test/a/b/c/d/foo ]"),
    "start": ("./test/a/b/c/d", "[ -d /out/test/a/b/c/d/e ] && [ -f /out/test/a/b/c/d/foo ]"),
    "double": ("/test/a/./b/./c", "[ -d /out/b/c/d/e ] && [ -f /out/b/c/d/foo ]"),
    "wildcard": ("/test/a/./*/c", "[ -d /out/b/c/d/e ] && [ -f /out/b2/c/d/e/bar ]"),
    "doublewildcard": (
        "/test/a/b*/./c/**/e",
        "[ -f /out/c/d/e/bay ] && [ -f /out/c/d/e/bar ]",
    ),
    "afterpivot": ("/test/a/b/./c2*", "[ -d /out ] && [ ! -d /out/a ] && [ -f /out/c2/d/e/baz ]"),
    "nonexistent": ("/test/a/b2*/c", "[ -d /out ] && [ ! -d /out/a ]"),
}


def test_copy_parents_targets_in_one_store_each_get_their_own_files(
    store_root, tmp_path, busybox_ref
):
    """All targets built one after another in one store: each COPY --from --parents
    differs from the others only after the pivot or in a wildcard, and must not reuse
    another's layer (the wildcard ones did, and their checks failed)."""
    lines = [PARENTS_BASE.format(busybox=busybox_ref)]
    for name, (source, check) in PARENTS_TARGETS.items():
        lines.append(
            f"FROM {busybox_ref} AS {name}\n"
            f"COPY --from=base --parents {source} /out/\n"
            f"RUN {check}\n"
        )
    context = make_context(tmp_path / "ctx", "".join(lines))
    store = Store(store_root)
    for name in PARENTS_TARGETS:
        build(store, BuildOptions(context=context, target=name))


# --- every input of a step is in its key ---------------------------------------------

KEY_PREFIX = """\
FROM {busybox} AS src
RUN mkdir -p /s/x && echo 1 > /s/x/A && echo 2 > /s/x/B
FROM {busybox}
"""

RUN_BASE = "RUN echo hi > /tmp/o"
# Each variant changes one input of the last step (or what it starts from) alone.
KEY_CASES: dict[str, tuple[str, list[str]]] = {
    "COPY": (
        "COPY a.txt /dst/",
        [
            "COPY --chown=1:1 a.txt /dst/",
            "COPY --chmod=600 a.txt /dst/",
            "COPY --link a.txt /dst/",
            "COPY --parents a.txt /dst/",
            "COPY b.txt /dst/",
            "COPY a.txt /other/",
            "COPY a.txt b.txt /dst/",
            "WORKDIR /tmp\nCOPY a.txt dst/",
        ],
    ),
    "COPY dir": (
        "COPY dir /dst/",
        ["COPY --exclude=one dir /dst/", "COPY --exclude=two dir /dst/", "COPY dir/ /dst/sub/"],
    ),
    "COPY --from": (
        "COPY --from=src /s/x/A /dst/",
        [
            "COPY --from=src /s/x/B /dst/",
            "COPY --from=src --parents /s/x/./A /dst/",
            "COPY --from=src --parents /s/x/./B /dst/",
            "COPY --from=src --parents /s/./x/A /dst/",
            "COPY --from=src --parents /s/x/./* /dst/",
        ],
    ),
    "ADD": ("ADD a.txt /dst/", ["ADD --chmod=600 a.txt /dst/", "ADD --chown=1:1 a.txt /dst/"]),
    "RUN": (
        RUN_BASE,
        [
            "RUN echo ho > /tmp/o",
            "ENV X=1\n" + RUN_BASE,
            "ARG A=1\n" + RUN_BASE,
            "ARG A=2\n" + RUN_BASE,
            "USER 1\n" + RUN_BASE,
            "WORKDIR /tmp\n" + RUN_BASE,
            'SHELL ["/bin/sh", "-ec"]\n' + RUN_BASE,
            "RUN --network=none echo hi > /tmp/o",
            "RUN --mount=type=tmpfs,target=/t echo hi > /tmp/o",
            "RUN --mount=type=tmpfs,target=/t,size=1m echo hi > /tmp/o",
            "RUN --mount=type=tmpfs,target=/t2 echo hi > /tmp/o",
            "RUN --mount=type=cache,target=/c echo hi > /tmp/o",
            "RUN --mount=type=cache,target=/c,id=other echo hi > /tmp/o",
            "RUN --mount=type=cache,target=/c,mode=0700 echo hi > /tmp/o",
            "RUN --mount=type=cache,target=/c,uid=1 echo hi > /tmp/o",
            "RUN --mount=type=cache,target=/c,gid=1 echo hi > /tmp/o",
            "RUN --mount=type=cache,target=/c,sharing=locked echo hi > /tmp/o",
            "RUN --mount=type=cache,target=/c,ro echo hi > /tmp/o",
            "RUN --mount=type=secret,id=s echo hi > /tmp/o",
            "RUN --mount=type=secret,id=s,uid=1 echo hi > /tmp/o",
            "RUN --mount=type=secret,id=s,gid=1 echo hi > /tmp/o",
            "RUN --mount=type=secret,id=s,mode=0444 echo hi > /tmp/o",
            "RUN --mount=type=secret,id=s,target=/s2 echo hi > /tmp/o",
            "RUN --mount=type=secret,id=s,env=S echo hi > /tmp/o",
            "RUN --mount=type=bind,source=a.txt,target=/m echo hi > /tmp/o",
            "RUN --mount=type=bind,source=b.txt,target=/m echo hi > /tmp/o",
            "RUN --mount=type=bind,source=a.txt,target=/m,rw echo hi > /tmp/o",
            "RUN --mount=type=bind,source=a.txt,target=/m2 echo hi > /tmp/o",
            "RUN --mount=from=src,source=/s/x/A,target=/m echo hi > /tmp/o",
            "RUN --mount=from=src,source=/s/x/B,target=/m echo hi > /tmp/o",
        ],
    ),
    "WORKDIR": ("WORKDIR /w", ["WORKDIR /w2", "USER 1\nWORKDIR /w", "ENV X=1\nWORKDIR /w"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KEY_CASES))
def test_changing_any_one_input_misses_and_changing_none_hits(
    kind, store_root, tmp_path, busybox_ref
):
    base, variants = KEY_CASES[kind]
    context = make_context(
        tmp_path / "ctx",
        "",
        **{"a.txt": "a\n", "b.txt": "b\n", "dir/one": "1\n", "dir/two": "2\n"},
    )
    store = Store(store_root)
    prefix = KEY_PREFIX.format(busybox=busybox_ref)

    def build_tail(tail: str, **options) -> Logged:
        (context / "Dockerfile").write_text(prefix + tail + "\n")
        return build_logged(store, BuildOptions(context=context, **options))[1]

    build_tail(base)
    assert build_tail(base).last_step_cached(), "a build that changes nothing hits"
    for variant in variants:
        assert not build_tail(variant).last_step_cached(), variant
    # Inputs from outside the Dockerfile: the build args and the build context.
    if kind == "RUN":
        build_tail("ARG A\n" + RUN_BASE, build_args={"A": "3"})  # as "ARG A=3" would
        assert not build_tail("ARG A\n" + RUN_BASE, build_args={"A": "4"}).last_step_cached()
    if kind in ("RUN", "WORKDIR", "COPY"):
        epoch = {"SOURCE_DATE_EPOCH": "1673364896"}
        assert not build_tail(base, build_args=epoch).last_step_cached()
        assert build_tail(base, build_args=epoch).last_step_cached()
    if kind == "COPY":
        (context / "a.txt").write_text("changed\n")
        assert not build_tail(base).last_step_cached()
        (context / "a.txt").chmod(0o600)
        assert not build_tail(base).last_step_cached()


# --- RUN --mount=from: keyed by the source's content (testMountRWCache) ---------------


def test_mount_from_a_stage_is_keyed_by_the_source_content(store_root, tmp_path, busybox_ref):
    dockerfile = f"""\
    FROM {busybox_ref} AS build
    COPY cachebust /
    RUN mkdir out && echo foo > out/foo
    FROM {busybox_ref} AS second
    RUN --mount=from=build,src=out,target=/out,rw touch /out/bar && \\
        head -c 100 /dev/urandom | sha256sum > /unique
    FROM scratch
    COPY --from=second /unique /unique
    """
    store = Store(store_root)
    context = make_context(tmp_path / "ctx", dockerfile, cachebust="0")
    first = build(store, BuildOptions(context=context))
    (context / "cachebust").write_text("1")  # the build stage changes, not its out/
    second = build(store, BuildOptions(context=context))
    assert file_in_layers(store, second, "unique") == file_in_layers(store, first, "unique")
    (context / "Dockerfile").write_text(textwrap.dedent(dockerfile).replace("echo foo", "echo bar"))
    third = build(store, BuildOptions(context=context))
    assert file_in_layers(store, third, "unique") != file_in_layers(store, first, "unique")


# --- cache mounts ------------------------------------------------------------------


def test_no_cache_starts_from_an_empty_cache_mount(store_root, tmp_path, busybox_ref):
    """testCacheMountModeNoCache: ``ls -l`` prints a total line plus one per file."""
    context = make_context(
        tmp_path / "ctx",
        f"""\
        FROM {busybox_ref} AS base
        ARG FOO=abc
        RUN --mount=type=cache,target=/cache,mode=0773 touch /cache/$FOO && \\
            ls -l /cache | wc -l > /out
        FROM scratch
        COPY --from=base /out /
        """,
    )
    store = Store(store_root)

    def out(**options) -> bytes:
        result = build(store, BuildOptions(context=context, **options))
        return file_in_layers(store, result, "out").strip()

    assert out() == b"2"
    assert out(no_cache=True, build_args={"FOO": "def"}) == b"2"
    assert out(build_args={"FOO": "ghi"}) == b"3"


@pytest.mark.parametrize("option", ["source=sub", "from=src", "from=src,source=/etc"])
def test_a_cache_mount_seeded_from_a_stage_is_refused_at_its_line(
    option, store_root, tmp_path, busybox_ref
):
    context = make_context(
        tmp_path / "ctx",
        f"FROM {busybox_ref} AS src\nFROM {busybox_ref}\n"
        f"RUN --mount=type=cache,target=/c,{option} true\n",
    )
    with pytest.raises(BuildError, match=r"Dockerfile:3: .*cache.* not supported") as e:
        build(Store(store_root), BuildOptions(context=context))
    assert e.value.line == 3


# --- reproducible image IDs -----------------------------------------------------------


def test_a_fully_cached_rebuild_gives_the_same_digest(store_root, tmp_path, busybox_ref, later):
    """testReproducibleIDs, the second build a day later."""
    context = make_context(
        tmp_path / "ctx",
        f"""\
        FROM {busybox_ref}
        ENV foo=bar
        COPY foo /
        RUN echo bar > bar
        """,
        foo="foo-contents",
    )
    store = Store(store_root)
    first = build(store, BuildOptions(context=context))
    later()
    second = build(store, BuildOptions(context=context))
    assert second.executed == 0
    assert second.digest == first.digest
    history = config_of(store, first)["history"]
    assert all("created" in entry for entry in history)
    assert config_of(store, first)["created"] == history[-1]["created"]


def test_source_date_epoch_build_arg_is_honoured_and_keyed(tmp_path, busybox_ref, later):
    """testWorkdirSourceDateEpochReproducible: two stores (all cache pruned), a day
    apart, give the same image; a store that built without the epoch misses."""
    context = make_context(tmp_path / "ctx", f"FROM {busybox_ref}\nWORKDIR /mydir\n")
    epoch = {"SOURCE_DATE_EPOCH": "1673364896"}
    warm = Store(tmp_path / "warm")
    build(warm, BuildOptions(context=context))
    first = build(Store(tmp_path / "one"), BuildOptions(context=context, build_args=epoch))
    later()
    second = build(Store(tmp_path / "two"), BuildOptions(context=context, build_args=epoch))
    assert second.digest == first.digest
    config = json.loads(first.config)
    assert config["created"] == "2023-01-10T15:34:56Z"
    assert config["history"][-1]["created"] == "2023-01-10T15:34:56Z"
    from_warm = build(warm, BuildOptions(context=context, build_args=epoch))
    assert from_warm.executed == 1
    assert from_warm.digest == first.digest


def test_an_invalid_source_date_epoch_is_an_error(store_root, tmp_path, busybox_ref):
    context = make_context(tmp_path / "ctx", f"FROM {busybox_ref}\n")
    options = BuildOptions(context=context, build_args={"SOURCE_DATE_EPOCH": "yesterday"})
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
        build(Store(store_root), options)


# --- config and runtime ---------------------------------------------------------------


def test_user_additional_gids(store_root, tmp_path, busybox_ref):
    """testUserAdditionalGids: the primary group is always a supplementary group."""
    context = make_context(
        tmp_path / "ctx",
        f"""\
        FROM {busybox_ref}
        RUN echo wheel:x:10:root >> /etc/group && echo daemon:x:1: >> /etc/group && \\
            echo daemon:x:1:1:daemon:/:/bin/false >> /etc/passwd
        SHELL ["/bin/sh", "-euxc"]
        RUN [ "$(id)" = "uid=0(root) gid=0(root) groups=0(root),10(wheel)" ]
        USER 1234
        RUN [ "$(id)" = "uid=1234 gid=0(root) groups=0(root)" ]
        USER 1234:1234
        RUN [ "$(id)" = "uid=1234 gid=1234 groups=1234" ]
        USER daemon
        RUN [ "$(id)" = "uid=1(daemon) gid=1(daemon) groups=1(daemon)" ]
        """,
    )
    build(Store(store_root), BuildOptions(context=context))


def test_scratch_config_has_path_and_workdir(store_root, tmp_path):
    """testDockerfileScratchConfig."""
    context = make_context(tmp_path / "ctx", "FROM scratch\nENV foo=bar\n")
    store = Store(store_root)
    config = config_of(store, build(store, BuildOptions(context=context)))
    assert config["config"]["WorkingDir"] == "/"
    assert config["config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "foo=bar",
    ]
    assert config["rootfs"] == {"type": "layers", "diff_ids": []}
    assert len(config["history"]) == 1
    assert "ENV foo=bar" in config["history"][0]["created_by"]
    assert config["history"][0]["empty_layer"] is True


def test_default_shell_and_path(store_root, tmp_path):
    """testDefaultShellAndPath (linux only: BuildKit sets no PATH on Windows)."""
    context = make_context(
        tmp_path / "ctx", "FROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n"
    )
    store = Store(store_root)
    result = build(store, BuildOptions(context=context))
    config = config_of(store, result)["config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "foo bar"]
    assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert len(result.manifest.layers) == 1
