"""Dockerfiles built by dockyard and by buildah (``bud --layers --runtime runc``) give
the same rootfs and config: both unpacked by umoci, compared file by file."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import need

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# What buildah leaves that BuildKit does not (PITFALLS): empty /etc files, mount points
# (``/mnt`` is the parent of a RUN --mount target below).
BUILDAH_ONLY = {"etc/hosts", "etc/hostname", "etc/resolv.conf", "run", "run/secrets", "mnt"}
IGNORED_LABELS = {"io.buildah.version"}
CONFIG_KEYS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
)

CORPUS = {
    "metadata": """
        FROM {base}
        ARG VERSION=1.0
        ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
        WORKDIR $APP_HOME
        RUN echo "version $VERSION" > version.txt
        LABEL org.example.version=$VERSION org.example.name="demo app"
        EXPOSE 8080 53/udp
        VOLUME /data
        USER nobody
        STOPSIGNAL SIGINT
        ENTRYPOINT ["/bin/sh", "-c"]
        CMD ["cat version.txt"]
    """,
    "whiteouts": """
        FROM {base}
        RUN mkdir -p /w/dir/sub /w/opaque /w/todir && echo a > /w/file && echo b > /w/dir/sub/f \\
            && echo c > /w/opaque/old && echo d > /w/tofile && echo e > /w/todir/x
        RUN rm /w/file && rm -rf /w/dir && rm -rf /w/opaque && mkdir /w/opaque \\
            && echo new > /w/opaque/new && rm /w/tofile && mkdir /w/tofile \\
            && rm -rf /w/todir && echo now-a-file > /w/todir
    """,
    "special_files": """
        FROM {base}
        RUN mkdir -p /s/empty /s/deep/er && echo data > /s/orig && ln /s/orig /s/hard \\
            && ln -s orig /s/soft && ln -s /nowhere /s/dangling && chmod 4755 /s/orig \\
            && touch "/s/$(for i in $(seq 40); do printf 'n\\303\\251e-'; done)"
        RUN ln /s/orig /s/hard-later && chmod 2750 /s/deep
    """,
    "copy": """
        FROM {base}
        COPY --chown=65534:65534 files/ /opt/files/
        COPY --chmod=0640 files/a.txt /opt/single
        COPY files/*.txt /opt/glob/
        USER nobody
        WORKDIR /opt/files
    """,
    "multistage": """
        ARG BASE={base}
        FROM $BASE AS builder
        ARG TARGET=world
        RUN mkdir /out && echo "hello $TARGET" > /out/hello
        FROM $BASE AS unused
        RUN exit 1
        FROM $BASE
        ARG TARGET
        COPY --from=builder /out/hello /hello
        RUN echo "target=$TARGET" > /target
    """,
    "mounts": """
        FROM {base}
        RUN --mount=type=bind,source=files,target=/mnt/files cat /mnt/files/a.txt > /from-bind
        RUN --mount=type=cache,target=/cache echo cached > /cache/x && cat /cache/x > /from-cache
        RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && ls /scratch > /from-tmpfs
        RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /from-secret
    """,
    "user_switch": """
        FROM {base}
        RUN mkdir -m 1777 /shared && mkdir /owned && chown 65534:65534 /owned
        USER nobody
        RUN echo mine > /shared/by-nobody && mkdir /owned/sub && echo x > /owned/sub/f
        USER 0:0
        RUN echo root > /shared/by-root && rm /owned/sub/f
    """,
}
SECRET = "not-in-any-layer\n"


def write_context(tmp_path: Path, dockerfile: str, base: str) -> Path:
    context = tmp_path / "context"
    (context / "files/sub").mkdir(parents=True)
    (context / "files/a.txt").write_text("alpha\n")
    (context / "files/b.txt").write_text("beta\n")
    (context / "files/sub/c.bin").write_bytes(os.urandom(3000))
    (context / "Dockerfile").write_text(textwrap.dedent(dockerfile).format(base=base))
    return context


def tree(root: Path) -> dict[str, tuple]:
    """Type, mode, owner, size, content hash / link target, and hardlink groups."""
    entries: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel in BUILDAH_ONLY:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                detail: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                detail = path.read_bytes()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            else:
                detail = None
            entries[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                detail,
            )
    links = sorted(sorted(group) for group in inodes.values())
    entries["<hardlinks>"] = (0, 0, 0, 0, json.dumps(links))
    return entries


def unpack(layout: Path, tag: str, into: Path) -> dict[str, tuple]:
    subprocess.run(
        ["umoci", "raw", "unpack", "--image", f"{layout}:{tag}", str(into)],
        check=True,
        capture_output=True,
    )
    return tree(into)


def config_of(layout: Path, tag: str) -> dict:
    out = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:{tag}"], check=True, capture_output=True
    ).stdout
    config = json.loads(out).get("config", {})
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if k not in IGNORED_LABELS}
    config["Labels"] = labels or None
    return {k: config.get(k) or None for k in CONFIG_KEYS}


@pytest.fixture(scope="module")
def buildah_dirs(tmp_path_factory):
    need("buildah", "umoci", "skopeo", "runc")
    root = Path("/tmp/dyb-" + os.urandom(3).hex())
    yield root / "root", root / "run"
    subprocess.run(
        ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), "rm", "--all"],
        capture_output=True,
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_same_rootfs_and_config_as_buildah(name, tmp_path, dockyard, busybox_ref, buildah_dirs):
    context = write_context(tmp_path, CORPUS[name], busybox_ref)
    layout = tmp_path / "layout"
    token = tmp_path / "token"
    token.write_text(SECRET)
    secret = f"id=token,src={token}"

    dockyard("build", "-q", "--secret", secret, "-t", f"localhost/corpus/{name}:1", str(context))
    dockyard("copy", f"localhost/corpus/{name}:1", f"oci:{layout}:ours")

    storage = ["--root", str(buildah_dirs[0]), "--runroot", str(buildah_dirs[1])]
    subprocess.run(
        [
            "buildah",
            *storage,
            "bud",
            "--layers",
            "--runtime",
            "runc",
            "--format",
            "docker",
            "--tls-verify=false",
            "--network",
            "host",
            "--secret",
            secret,
            "-t",
            f"corpus-{name}",
            str(context),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["buildah", *storage, "push", f"corpus-{name}", f"oci:{layout}:theirs"],
        check=True,
        capture_output=True,
    )

    ours = unpack(layout, "ours", tmp_path / "ours")
    theirs = unpack(layout, "theirs", tmp_path / "theirs")
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs
    assert config_of(layout, "ours") == config_of(layout, "theirs")


def test_workdir_is_created_for_the_user_as_buildkit_does(tmp_path, dockyard, busybox_ref):
    """buildah creates a WORKDIR only when a RUN needs it; BuildKit (and we) at once,
    owned by the current USER."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {busybox_ref}\nUSER 65534:65534\nWORKDIR /home/app\n"
    )
    dockyard("build", "-q", "-t", "localhost/corpus/workdir:1", str(context))
    dockyard("copy", "localhost/corpus/workdir:1", f"oci:{tmp_path}/layout:ours")
    rootfs = unpack(tmp_path / "layout", "ours", tmp_path / "rootfs")
    assert rootfs["home/app"][:4] == (stat.S_IFDIR, 0o755, 65534, 65534)
