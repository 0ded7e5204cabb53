"""Secrets on the host: a container's bundle (its ``config.json`` holds the process's
environment, pipeline secrets included) and the files of ``RUN --mount=type=secret``
are never readable by another uid, are gone after the container, and are gone at the
next start after the dockyard that made them was SIGKILLed.

The stores here live in a world-traversable temp dir (not pytest's 0700 one), so only
the modes dockyard gives its own files and dirs keep another uid out.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.runtime import Container, ContainerConfig, Mount, run
from dockyard.runtime.container import BUNDLES_DIR, RUNC_DIR, reap_orphans
from tests.conftest import need
from tests.killing import killed_when_ready

pytestmark = pytest.mark.e2e

OTHER_UID = 65534  # nobody: any uid but ours


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A fresh dir every uid may traverse (0755 up to /), removed afterwards."""
    need("runc")
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    path = Path(tempfile.mkdtemp(prefix="dockyard-secrets-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if (path / "store").exists():
        reap_orphans(path / "store")  # a failed test's orphan must not run on
    shutil.rmtree(path)


@pytest.fixture
def store(open_dir) -> Path:
    root = open_dir / "store"
    root.mkdir(mode=0o755)
    return root


@pytest.fixture
def rootfs(open_dir, busybox_rootfs) -> Path:
    """A private copy of the busybox rootfs (containers add mount stubs to it)."""
    target = open_dir / "rootfs"
    shutil.copytree(busybox_rootfs, target, symlinks=True)
    return target


def secret_value() -> bytes:
    return f"s3cr3t-{uuid.uuid4().hex}".encode()


def readable_by(path: Path, uid: int) -> bool:
    """Whether a process of ``uid`` (no groups of ours) can open ``path`` for reading."""
    pid = os.fork()
    if pid == 0:  # the child: become uid, try, report by exit status
        code = 2
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with open(path, "rb"):
                code = 0
        except PermissionError:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) in (0, 1), f"could not test {path}"
    return os.waitstatus_to_exitcode(status) == 0


def files_holding(root: Path, *secrets: bytes) -> list[Path]:
    """Every regular file under ``root`` that holds one of ``secrets``."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(secret in data for secret in secrets):
                    found.append(path)
    return found


def test_an_env_secret_in_the_bundle_is_never_readable_by_another_uid(store, rootfs):
    """A pipeline secret in the process environment is in runc's config.json, in plain
    text: it was 0644 under 0755 dirs."""
    secret = secret_value()
    config = ContainerConfig(args=["/bin/sh", "-c", "true"], env={"TOKEN": secret.decode()})
    with Container(rootfs, config, root=store) as container:
        holding = files_holding(store / BUNDLES_DIR, secret)
        assert holding == [store / BUNDLES_DIR / container.id / "config.json"]
        for path in [*holding, store / BUNDLES_DIR / container.id / "runc.log"]:
            assert not readable_by(path, OTHER_UID), f"uid {OTHER_UID} can read {path}"
        for directory in (store / BUNDLES_DIR, store / BUNDLES_DIR / container.id):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for name in ("config.json", "runc.log"):
            assert stat.S_IMODE((container.bundle / name).stat().st_mode) == 0o600
        assert container.wait() == 0
    assert files_holding(store, secret) == []  # gone with the container


def test_a_secret_file_is_private_on_the_host_and_gone_after_the_container(store, rootfs):
    """A RUN secret mount's file, staged in the bundle: the container's user reads it,
    no other uid of the host does, and it is deleted with the container."""
    secret = secret_value()
    out = bytearray()
    config = ContainerConfig(
        args=["/bin/sh", "-c", "cat /run/secrets/token; stat -c '%u %g %a' /run/secrets/token"],
        user=str(OTHER_UID),
        mounts=[Mount.file(secret, "/run/secrets/token", uid=OTHER_UID, gid=0, mode=0o440)],
    )
    with Container(rootfs, config, root=store, on_output=lambda _, d: out.extend(d)) as c:
        (staged,) = files_holding(store / BUNDLES_DIR, secret)
        assert staged.is_relative_to(c.bundle)
        # Another uid is kept out by the bundle's 0700, even one the file is for.
        for uid in (OTHER_UID, 1000):
            assert not readable_by(staged, uid), f"uid {uid} can read {staged} on the host"
        assert stat.S_IMODE(staged.parent.stat().st_mode) == 0o700
        assert c.wait() == 0
    assert bytes(out) == secret + f"{OTHER_UID} 0 440\n".encode()
    assert files_holding(store, secret) == []
    assert files_holding(rootfs, secret) == []  # not in the rootfs (a layer) either


def _start_holding_a_secret(rootfs: Path, store: Path, secret: bytes, ready_fd: int) -> None:
    """In a child: start a container with ``secret`` in its environment (its secret
    files are in the same bundle), say so, and wait to be SIGKILLed."""
    config = ContainerConfig(
        args=["/bin/sh", "-c", "exec sleep 1731"], env={"TOKEN": secret.decode()}
    )
    Container(rootfs, config, root=store).start()
    os.write(ready_fd, b"1")
    signal.pause()


def test_a_killed_dockyards_secrets_are_gone_at_the_next_start(store, rootfs, open_dir):
    """SIGKILL cleans nothing up: the bundle, secrets in it, stays. The next dockyard
    process to start a container in the store reaps it first."""
    secret = secret_value()
    with killed_when_ready(_start_holding_a_secret, rootfs, store, secret):
        pass
    assert len(files_holding(store / BUNDLES_DIR, secret)) == 1  # what the crash left
    other = open_dir / "other-rootfs"
    shutil.copytree(rootfs, other, symlinks=True)
    assert run(other, ContainerConfig(args=["/bin/sh", "-c", "true"]), root=store) == 0
    assert files_holding(store, secret) == []
    assert list((store / BUNDLES_DIR).iterdir()) == []
    assert not any(
        e.name.startswith("dockyard-") for e in os.scandir(store / RUNC_DIR)
    )  # the orphaned container was killed and deleted


def test_run_secret_mounts_apply_uid_gid_and_mode(dockyard, busybox_ref, tmp_path):
    """``RUN --mount=type=secret`` as a non-root USER: BuildKit's defaults (root, 0400)
    keep it out; ``uid``, ``gid`` and ``mode`` let it in, and stat shows them."""
    secret = tmp_path / "token"
    secret.write_bytes(secret_value())
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        textwrap.dedent(
            f"""\
            FROM {busybox_ref}
            USER nobody
            RUN --mount=type=secret,id=token (cat /run/secrets/token || echo denied) \\
                > /tmp/default; stat -c '%u %g %a' /run/secrets/token >> /tmp/default
            RUN --mount=type=secret,id=token,uid=65534 cat /run/secrets/token | wc -c > /tmp/by-uid
            RUN --mount=type=secret,id=token,gid=65534,mode=0440 \\
                cat /run/secrets/token | wc -c > /tmp/by-gid; \\
                stat -c '%u %g %a' /run/secrets/token >> /tmp/by-gid
            RUN --mount=type=secret,id=token,mode=04444 stat -c '%a' /run/secrets/token > /tmp/m
            """
        )
    )
    dockyard("build", "-q", "-t", "localhost/t/secret-ids:1", "--secret",
             f"id=token,src={secret}", str(context))  # fmt: skip
    rootfs = tmp_path / "out"
    dockyard("export", "localhost/t/secret-ids:1", str(rootfs))
    length = len(secret.read_bytes())
    assert (rootfs / "tmp/default").read_text() == "denied\n0 0 400\n"
    assert int((rootfs / "tmp/by-uid").read_text()) == length
    assert (rootfs / "tmp/by-gid").read_text().split() == [str(length), "0", "65534", "440"]
    assert (rootfs / "tmp/m").read_text() == "444\n"  # no setuid bit, as BuildKit
