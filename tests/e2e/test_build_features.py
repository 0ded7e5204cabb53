"""Builder features buildah cannot judge (BuildKit's documented behaviour is the
reference): heredocs, secrets, cache export/import, reproducible builds, errors."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.support.builds import context_with

pytestmark = pytest.mark.e2e


def export(dockyard, ref: str, tmp_path: Path) -> Path:
    rootfs = tmp_path / f"rootfs-{uuid.uuid4().hex[:6]}"
    dockyard("export", ref, str(rootfs))
    return rootfs


def test_heredocs_run_and_copy(dockyard, busybox_ref, tmp_path):
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        ARG WHO=builder
        RUN <<EOF
        echo "one $WHO" > /one
        echo two >> /one
        EOF
        RUN <<-'EOT' sh -x
        \techo "quoted $HOME" > /two
        EOT
        COPY <<EOF /etc/made-by
        made by ${{WHO}}
        EOF
        """,
    )
    dockyard("build", "-q", "-t", "localhost/t/heredoc:1", str(context))
    rootfs = export(dockyard, "localhost/t/heredoc:1", tmp_path)
    assert (rootfs / "one").read_text() == "one builder\ntwo\n"
    assert (rootfs / "two").read_text() == "quoted /root\n"
    assert (rootfs / "etc/made-by").read_text() == "made by builder\n"


def test_secret_never_lands_in_a_layer_or_the_cache(dockyard, busybox_ref, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value-" + uuid.uuid4().hex)
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /token-length
        """,
    )
    dockyard(
        "build",
        "-q",
        "-t",
        "localhost/t/secret:1",
        "--secret",
        f"id=token,src={secret}",
        str(context),
    )
    rootfs = export(dockyard, "localhost/t/secret:1", tmp_path)
    assert int((rootfs / "token-length").read_text()) == len(secret.read_text())
    assert not (rootfs / "run/secrets/token").exists()
    value = secret.read_bytes()
    for path in dockyard.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert value not in path.read_bytes(), f"secret found in {path}"
    # The secret's content is not in the cache key: a new value still hits the cache.
    secret.write_text("another value entirely")
    out = dockyard(
        "build", "-t", "localhost/t/secret:1", "--secret", f"id=token,src={secret}", str(context)
    )
    assert b"1 cached" in out.stderr


def test_cache_export_gives_a_fresh_store_all_hits(
    dockyard, docker_registry, busybox_ref, tmp_path
):
    from tests.conftest import Dockyard

    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        COPY data.txt /data.txt
        RUN wc -c /data.txt > /size
        RUN echo done > /done
        """,
        **{"data.txt": "cached across runners\n"},
    )
    cache = f"{docker_registry.host}/t{uuid.uuid4().hex[:6]}/cache:build"
    dockyard("build", "-q", "-t", "localhost/t/cached:1", "--cache-to", cache, str(context))
    first = json.loads(dockyard("inspect", "localhost/t/cached:1").stdout)["Config"]["rootfs"]

    fresh_root = tmp_path / "fresh-store"
    fresh_root.mkdir()
    fresh = Dockyard(fresh_root)
    out = fresh("build", "-t", "localhost/t/cached:1", "--cache-from", cache, str(context))
    assert b"0 steps run, 3 cached" in out.stderr
    assert json.loads(fresh("inspect", "localhost/t/cached:1").stdout)["Config"]["rootfs"] == first
    rootfs = export(fresh, "localhost/t/cached:1", tmp_path)
    assert (rootfs / "done").read_text() == "done\n"


def test_source_date_epoch_makes_builds_reproducible(dockyard, busybox_ref, tmp_path):
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        COPY data.txt /data.txt
        RUN echo hi > /hi
        """,
        **{"data.txt": "same\n"},
    )
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    digests = []
    for _ in range(2):
        dockyard("build", "-q", "--no-cache", "-t", "localhost/t/repro:1", str(context), env=env)
        digests.append(json.loads(dockyard("inspect", "localhost/t/repro:1").stdout)["Digest"])
    assert digests[0] == digests[1]
    config = json.loads(dockyard("inspect", "localhost/t/repro:1").stdout)["Config"]
    assert config["created"] == "2023-11-14T22:13:20Z"


def test_failing_run_names_the_line_and_shows_output(dockyard, busybox_ref, tmp_path):
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        RUN echo fine
        RUN echo "about to fail" && exit 7
        """,
    )
    result = dockyard("build", "-t", "localhost/t/fail:1", str(context), check=False)
    assert result.returncode == 1
    assert f"{context}/Dockerfile:3:".encode() in result.stderr
    assert b"did not complete successfully: exit code: 7" in result.stderr
    assert b"about to fail" in result.stderr
    assert b"Traceback" not in result.stderr
    assert b"localhost/t/fail" not in dockyard("images").stdout


def test_bad_dockerfile_is_one_line_with_file_and_line(dockyard, tmp_path):
    context = context_with(tmp_path, "FROM scratch\nCOPY\n")
    result = dockyard("build", str(context), check=False)
    assert result.returncode == 1
    assert result.stderr.decode().strip().count("\n") == 0
    assert f"{context}/Dockerfile:2:".encode() in result.stderr


def test_run_mounts_leave_no_mount_points_behind(dockyard, busybox_ref, tmp_path):
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        RUN --mount=type=tmpfs,target=/scratch/tmp --mount=type=cache,target=/var/cache/x \\
            echo ok > /ok
        """,
    )
    dockyard("build", "-q", "-t", "localhost/t/mounts:1", str(context))
    rootfs = export(dockyard, "localhost/t/mounts:1", tmp_path)
    assert (rootfs / "ok").exists()
    assert not (rootfs / "scratch").exists()
    assert not (rootfs / "var/cache/x").exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(dockyard.root) not in mounts


def test_copy_link_layer_is_reused_on_a_changed_base(dockyard, busybox_ref, tmp_path):
    """BuildKit's ``COPY --link``: the layer does not depend on the layers below it, so
    it stays cached (same blob) after the base changed, and a symlink in the base is
    not followed (the layer's directory replaces it)."""
    files = {"app.txt": "linked\n"}
    layers = []
    for base_content in ("one", "two"):
        context = context_with(
            tmp_path,
            f"""\
            FROM {busybox_ref}
            RUN echo {base_content} > /base && mkdir /real && ln -s /real /app
            COPY --link --chown=7:root app.txt /app/
            """,
            **files,
        )
        out = dockyard("build", "-t", f"localhost/t/link-{base_content}:1", str(context))
        inspected = json.loads(dockyard("inspect", f"localhost/t/link-{base_content}:1").stdout)
        layers.append(inspected["Config"]["rootfs"]["diff_ids"])
    assert b"1 steps run, 1 cached" in out.stderr  # the RUN reran, the COPY hit
    assert layers[0][-1] == layers[1][-1]
    assert layers[0][-2] != layers[1][-2]

    rootfs = export(dockyard, "localhost/t/link-two:1", tmp_path)
    assert (rootfs / "base").read_text() == "two\n"
    assert (rootfs / "app").is_dir() and not (rootfs / "app").is_symlink()
    copied = rootfs / "app/app.txt"
    assert copied.read_text() == "linked\n"
    assert (copied.stat().st_uid, copied.stat().st_gid) == (7, 0)
    assert list((rootfs / "real").iterdir()) == []


def test_copy_link_refuses_owner_names(dockyard, busybox_ref, tmp_path):
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        COPY --link --chown=nobody app.txt /app/
        """,
        **{"app.txt": "x\n"},
    )
    out = dockyard("build", "-q", str(context), check=False)
    assert out.returncode == 1
    assert b"Dockerfile:2" in out.stderr and b"--chown=nobody with --link" in out.stderr


def test_copy_from_a_rebuilt_stage_hits_while_the_files_are_the_same(
    dockyard, busybox_ref, tmp_path
):
    """``COPY --from`` is keyed by what it copies, not by the stage's history: a builder
    stage that reran but made the same artifact leaves the final stage cached."""
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref} AS builder
        ARG OUT=artifact
        COPY note.txt /note.txt
        RUN echo $OUT > /out
        FROM {busybox_ref}
        COPY --from=builder /out /out
        RUN cat /out > /copied
        """,
        **{"note.txt": "first\n"},
    )
    dockyard("build", "-q", "-t", "localhost/t/from:1", str(context))
    (context / "note.txt").write_text("second\n")
    out = dockyard("build", "-t", "localhost/t/from:1", str(context))
    assert b"2 steps run, 2 cached" in out.stderr

    out = dockyard("build", "-t", "localhost/t/from:1", "--build-arg", "OUT=other", str(context))
    assert b"3 steps run, 1 cached" in out.stderr  # RUN, then COPY --from and its RUN
    assert (export(dockyard, "localhost/t/from:1", tmp_path) / "copied").read_text() == "other\n"


def test_a_prune_during_a_build_spares_its_layers(dockyard, busybox_ref, tmp_path):
    """The layers a build writes are named only when it ends; until then they are in
    the build's blob hold, so a prune meanwhile spares them."""
    import subprocess
    import sys

    from dockyard.store import Store

    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        COPY data.txt /data.txt
        RUN --mount=type=bind,target=/ctx while [ ! -e /ctx/go ]; do sleep 0.05; done
        """,
        **{"data.txt": "kept\n"},
    )
    command = ["build", "--progress=plain", "-t", "localhost/t/leased:1", str(context)]
    build = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", *command],
        env={**os.environ, "DOCKYARD_ROOT": str(dockyard.root)},
        stderr=subprocess.PIPE,
    )
    try:
        assert build.stderr is not None
        for line in build.stderr:  # wait until the COPY layer exists and RUN is going
            if b"] RUN" in line:
                break
        Store(dockyard.root).prune(wait=False)  # a build going on does not block it
    finally:
        (context / "go").touch()
        build.communicate(timeout=120)
    assert build.returncode == 0
    assert (export(dockyard, "localhost/t/leased:1", tmp_path) / "data.txt").read_text() == "kept\n"


def _edit_build(dockyard, busybox_ref, tmp_path) -> Path:
    """A context whose COPY of many files is followed by steps that do and do not
    depend on the one file the tests edit."""
    context = context_with(
        tmp_path,
        f"""\
        FROM {busybox_ref}
        WORKDIR /app
        COPY src/ /app/src/
        RUN find /app/src -type f | wc -l > /app/count
        RUN cat /app/src/d1/edited.txt > /app/edited-copy
        COPY big.txt /app/big.txt
        """,
        **{"big.txt": "big\n" * 50_000},
    )
    for i in range(60):
        (context / "src" / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (context / "src" / f"d{i % 3}" / f"f{i}.txt").write_text(f"file {i}\n")
    (context / "src/d1/edited.txt").write_text("before\n")
    return context


def _layers(dockyard, ref: str) -> list[str]:
    return json.loads(dockyard("inspect", ref).stdout)["Config"]["rootfs"]["diff_ids"]


def _snapshot(dockyard, diff_ids: list[str], index: int) -> Path:
    from dockyard.runtime.snapshots import chain_ids

    return dockyard.root / "snapshots" / chain_ids(diff_ids)[index].split(":")[1]


def test_an_edited_copy_shares_unchanged_files_and_later_layers_keep_digests(
    dockyard, busybox_ref, tmp_path
):
    """One file edited under a COPY of many: the new snapshot takes new inodes for the
    edited file only, and of the steps after it only those whose files changed get
    new layers (the issue's "later layers whose content did not change keep their
    digests")."""
    context = _edit_build(dockyard, busybox_ref, tmp_path)
    dockyard("build", "-q", "-t", "localhost/t/edit:1", str(context))
    before = _layers(dockyard, "localhost/t/edit:1")
    (context / "src/d1/edited.txt").write_text("after, longer\n")
    out = dockyard("build", "--progress=plain", "-t", "localhost/t/edit:1", str(context))
    after = _layers(dockyard, "localhost/t/edit:1")

    copy, count, edited_copy, big = range(len(before) - 4, len(before))
    assert after[: copy - 1] == before[: copy - 1]  # the base and WORKDIR hit the cache
    assert after[copy] != before[copy]
    assert after[count] == before[count]  # the same 61 files: the layer is kept
    assert after[edited_copy] != before[edited_copy]  # its file changed
    assert after[big] == before[big]
    assert out.stderr.count(b"its layer is kept") == 2

    old, new = _snapshot(dockyard, before, copy), _snapshot(dockyard, after, copy)
    unchanged = "app/src/d0/f0.txt"
    assert (new / unchanged).stat().st_ino == (old / unchanged).stat().st_ino
    assert (new / "app/src/d1/edited.txt").stat().st_ino != (
        old / "app/src/d1/edited.txt"
    ).stat().st_ino
    assert (old / "app/src/d1/edited.txt").read_text() == "before\n"  # never written
    rootfs = export(dockyard, "localhost/t/edit:1", tmp_path)
    assert (rootfs / "app/edited-copy").read_text() == "after, longer\n"
    assert (rootfs / "app/count").read_text().strip() == "61"


def test_an_edit_keeping_size_and_time_is_copied_not_shared(dockyard, busybox_ref, tmp_path):
    """Sharing compares bytes: an edit that keeps a file's size and mtime (a checkout
    of another version, a restored archive) still lands, in a new inode."""
    context = _edit_build(dockyard, busybox_ref, tmp_path)
    edited = context / "src/d1/edited.txt"
    dockyard("build", "-q", "-t", "localhost/t/same-size:1", str(context))
    before = _layers(dockyard, "localhost/t/same-size:1")
    times = edited.stat()
    edited.write_text("BEFORE\n")
    os.utime(edited, ns=(times.st_atime_ns, times.st_mtime_ns))
    dockyard("build", "-q", "-t", "localhost/t/same-size:1", str(context))
    after = _layers(dockyard, "localhost/t/same-size:1")

    copy = len(before) - 4
    old, new = _snapshot(dockyard, before, copy), _snapshot(dockyard, after, copy)
    assert (new / "app/src/d1/edited.txt").read_text() == "BEFORE\n"
    assert (old / "app/src/d1/edited.txt").read_text() == "before\n"
    assert (new / "app/src/d0/f0.txt").stat().st_ino == (old / "app/src/d0/f0.txt").stat().st_ino
    rootfs = export(dockyard, "localhost/t/same-size:1", tmp_path)
    assert (rootfs / "app/edited-copy").read_text() == "BEFORE\n"


def test_an_incremental_rebuild_equals_a_fresh_build(dockyard, busybox_ref, tmp_path):
    """With SOURCE_DATE_EPOCH, the image an edited rebuild makes (shared inodes, kept
    layers) is the image a fresh store builds from the edited context."""
    from tests.conftest import Dockyard

    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    context = _edit_build(dockyard, busybox_ref, tmp_path)
    dockyard("build", "-q", "-t", "localhost/t/incr:1", str(context), env=env)
    (context / "src/d1/edited.txt").write_text("edited\n")
    (context / "src/d2/new.txt").write_text("new\n")
    (context / "src/d0/f0.txt").unlink()
    dockyard("build", "-q", "-t", "localhost/t/incr:1", str(context), env=env)
    fresh = Dockyard(tmp_path / "fresh-store")
    fresh("build", "-q", "-t", "localhost/t/incr:1", str(context), env=env)

    def digest(tool: Dockyard) -> str:
        return json.loads(tool("inspect", "localhost/t/incr:1").stdout)["Digest"]

    assert digest(dockyard) == digest(fresh)


REBUILT = b"rebuilt from the last run"


def _digest(tool, ref: str) -> str:
    return json.loads(tool("inspect", ref).stdout)["Digest"]


@pytest.mark.parametrize(
    "edit",
    ["in place", "replaced by rename", "added and removed", "new mode", "same size and time"],
)
def test_a_copy_rebuilt_from_its_last_run_is_the_fresh_build(dockyard, busybox_ref, tmp_path, edit):
    """An edited COPY whose state below is unchanged is rebuilt from its last run's
    snapshot (only what changed written): the image is byte for byte the one a fresh
    store builds, whatever the edit did to files and their directories' times."""
    from tests.conftest import Dockyard

    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    context = _edit_build(dockyard, busybox_ref, tmp_path)
    edited = context / "src/d1/edited.txt"
    for i in range(3):  # directory times before the epoch: they reach the layer
        os.utime(context / f"src/d{i}", ns=(10**18, 10**18))
    dockyard("build", "-q", "-t", "localhost/t/rebuilt:1", str(context), env=env)
    if edit == "in place":
        edited.write_text("after, longer\n")
    elif edit == "replaced by rename":
        (context / "src/d1/tmp").write_text("renamed in\n")
        (context / "src/d1/tmp").rename(edited)
    elif edit == "added and removed":
        (context / "src/d2/new.txt").write_text("new\n")
        (context / "src/d0/f0.txt").unlink()
    elif edit == "new mode":
        edited.chmod(0o600)
    else:
        times = edited.stat()
        edited.write_text("BEFORE\n")
        os.utime(edited, ns=(times.st_atime_ns, times.st_mtime_ns))
    out = dockyard(
        "build", "--progress=plain", "-t", "localhost/t/rebuilt:1", str(context), env=env
    )
    assert out.stderr.count(REBUILT) == 1
    fresh = Dockyard(tmp_path / "fresh-store")
    fresh("build", "-q", "-t", "localhost/t/rebuilt:1", str(context), env=env)
    assert _digest(dockyard, "localhost/t/rebuilt:1") == _digest(fresh, "localhost/t/rebuilt:1")
    rootfs = export(dockyard, "localhost/t/rebuilt:1", tmp_path)
    assert (rootfs / "app/edited-copy").read_text() == edited.read_text()


def test_a_copy_is_run_in_full_where_its_last_run_cannot_vouch(dockyard, busybox_ref, tmp_path):
    """A new directory, a state below that changed, a last snapshot pruned: the COPY
    runs in full, and the next edit is rebuilt from that run."""
    context = _edit_build(dockyard, busybox_ref, tmp_path)
    ref = "localhost/t/full:1"
    dockyard("build", "-q", "-t", ref, str(context))
    (context / "src/d9").mkdir()
    (context / "src/d9/f.txt").write_text("in a new directory\n")
    assert REBUILT not in dockyard("build", "--progress=plain", "-t", ref, str(context)).stderr
    (context / "src/d9/f.txt").write_text("edited\n")
    assert REBUILT in dockyard("build", "--progress=plain", "-t", ref, str(context)).stderr
    dockerfile = (context / "Dockerfile").read_text()
    (context / "Dockerfile").write_text(dockerfile.replace("WORKDIR /app", "WORKDIR /app\nENV A=1"))
    (context / "src/d9/f.txt").write_text("edited again\n")
    out = dockyard("build", "--progress=plain", "-t", ref, str(context))
    assert REBUILT not in out.stderr  # the config below changed: another state
    shutil.rmtree(dockyard.root / "snapshots")
    (context / "src/d9/f.txt").write_text("edited once more\n")
    assert REBUILT not in dockyard("build", "--progress=plain", "-t", ref, str(context)).stderr
    rootfs = export(dockyard, ref, tmp_path)
    assert (rootfs / "app/src/d9/f.txt").read_text() == "edited once more\n"


def test_prune_drops_the_build_records_of_what_it_took(dockyard, busybox_ref, tmp_path):
    """Cache and lineage records naming pruned layers go with them; those of a kept
    image stay, so it still rebuilds from the cache."""
    kept = context_with(tmp_path, f"FROM {busybox_ref}\nRUN echo kept > /kept\n")
    dockerfile = f"FROM {busybox_ref}\nCOPY a.txt /a.txt\nRUN echo dropped > /d\n"
    dropped = context_with(tmp_path, dockerfile, **{"a.txt": "a"})
    dockyard("build", "-q", "-t", "localhost/t/kept:1", str(kept))
    dockyard("build", "-q", "-t", "localhost/t/dropped:1", str(dropped))
    records = {
        name: len(list((dockyard.root / "build" / name).iterdir())) for name in ("cache", "lineage")
    }
    dockyard("rmi", "localhost/t/dropped:1")
    out = dockyard("prune").stdout.decode()
    assert " and 4 build records," in out  # a COPY and a RUN: a cache and a lineage record each
    for name, before in records.items():
        assert len(list((dockyard.root / "build" / name).iterdir())) == before - 2
    again = dockyard("build", "-t", "localhost/t/kept:1", str(kept))
    assert b"0 steps run, 1 cached" in again.stderr
    rebuilt = dockyard("build", "-t", "localhost/t/dropped:1", str(dropped))
    assert b"2 steps run, 0 cached" in rebuilt.stderr


def test_prune_ends_what_a_killed_build_left_running(dockyard, busybox_ref, tmp_path):
    """``kill -9`` of a build mid-RUN leaves the container running (runc has a session
    of its own) and its overlay mounted; ``dockyard prune`` ends and removes both."""
    import signal
    import subprocess
    import sys

    from dockyard.mountinfo import mount_points_under
    from tests.support.containers import processes_running

    marker = "sleep 1726"
    context = context_with(tmp_path, f"FROM {busybox_ref}\nRUN echo started; {marker}\n")
    command = ["build", "--progress=plain", "--no-cache", str(context)]
    build = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", *command],
        env={**os.environ, "DOCKYARD_ROOT": str(dockyard.root)},
        stderr=subprocess.PIPE,
    )
    assert build.stderr is not None
    for line in build.stderr:
        if line.strip() == b"started":  # the output, not the instruction echoed
            break
    build.send_signal(signal.SIGKILL)
    build.wait()
    assert processes_running(marker)
    assert mount_points_under(dockyard.root)

    out = dockyard("prune").stdout.decode()
    assert "leftovers of killed processes" in out
    assert processes_running(marker) == []
    assert mount_points_under(dockyard.root) == []
    assert not list((dockyard.root / "bundles").iterdir())
