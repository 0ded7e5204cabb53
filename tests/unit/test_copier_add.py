"""ADD: local archives extracted (confined to the destination), URLs downloaded."""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import io
import lzma
import os
import tarfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import zstandard

from dockyard.builder import copier
from dockyard.errors import BuildError
from tests.support.copier import context, instruction, mode, needs_root, owner, run
from tests.support.http import serve_in_thread

pytestmark = needs_root

T1 = 1_500_000_000


def tar_bytes(*members: tuple[str, str, object]) -> bytes:
    """A tar of ``(name, kind, data)``: kind ``file`` (bytes), ``dir``, ``sym`` (target),
    ``link`` (hardlink target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = T1
            info.uid, info.gid = 7, 8
            if kind == "file":
                info.mode = 0o4755
                info.size = len(data)  # type: ignore[arg-type]
                tar.addfile(info, io.BytesIO(data))  # type: ignore[arg-type]
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            else:
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            tar.addfile(info)
    return out.getvalue()


SAMPLE = tar_bytes(
    ("top", "dir", None),
    ("top/a", "file", b"A"),
    ("top/hard", "link", "top/a"),
    ("top/sym", "sym", "a"),
)
COMPRESSORS = {
    "tar": lambda b: b,
    "tar.gz": gzip.compress,
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
    "tar.zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.fixture
def ctx(tmp_path) -> Path:
    root = tmp_path / "ctx"
    root.mkdir()
    for suffix, compress in COMPRESSORS.items():
        (root / f"sample.{suffix}").write_bytes(compress(SAMPLE))
    (root / "fake.tar.gz").write_bytes(b"not an archive at all")
    return root


@pytest.fixture
def rootfs(tmp_path) -> Path:
    root = tmp_path / "a/b/rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("app:x:1000:1001::/:/bin/sh\n")
    return root


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_local_archives_are_extracted(ctx, rootfs, suffix):
    run(f"ADD sample.{suffix} /out", rootfs, ctx)  # no slash: still the directory
    top = rootfs / "out/top"
    assert (top / "a").read_bytes() == b"A"
    assert mode(top / "a") == 0o4755 and owner(top / "a") == (7, 8)  # the tar's metadata
    assert mode(top) == 0o750 and top.stat().st_mtime == T1
    assert (top / "hard").stat().st_ino == (top / "a").stat().st_ino
    assert os.readlink(top / "sym") == "a"


def test_not_an_archive_or_unpack_false_or_copy_is_a_plain_copy(ctx, rootfs):
    run("ADD fake.tar.gz /f/", rootfs, ctx)
    assert (rootfs / "f/fake.tar.gz").read_bytes() == b"not an archive at all"
    run("ADD --unpack=false sample.tar.gz /g/", rootfs, ctx)
    run("COPY sample.tar.gz /h/", rootfs, ctx)
    assert (rootfs / "g/sample.tar.gz").read_bytes() == (ctx / "sample.tar.gz").read_bytes()
    assert (rootfs / "h/sample.tar.gz").is_file()


def test_chown_applies_to_extracted_entries_and_keeps_setuid(ctx, rootfs):
    run("ADD --chown=app --chmod=600 sample.tar.xz /o/", rootfs, ctx)
    for path in ("o", "o/top", "o/top/a", "o/top/sym"):
        assert owner(rootfs / path) == (1000, 1001), path
    assert mode(rootfs / "o/top/a") == 0o4755  # --chmod does not apply to archives


def test_hostile_archive_stays_in_the_destination(ctx, rootfs, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    evil = tar_bytes(
        ("esc", "sym", "/"),
        ("esc/x", "file", b"through an absolute link"),
        ("up", "sym", "../../../.."),
        ("up/y", "file", b"through a climbing link"),
        ("abs", "sym", str(victim)),
        ("abs/keep", "file", b"overwrite?"),
    )
    (ctx / "evil.tar").write_bytes(evil)
    run("ADD evil.tar /dst/", rootfs, ctx)
    assert (rootfs / "dst/x").read_bytes() == b"through an absolute link"
    assert (rootfs / "dst/y").read_bytes() == b"through a climbing link"
    assert (rootfs / "dst" / str(victim).lstrip("/") / "keep").read_bytes() == b"overwrite?"
    assert (victim / "keep").read_text() == "precious"
    assert sorted(os.listdir(victim)) == ["keep"]
    (ctx / "climb.tar").write_bytes(tar_bytes(("../../../../../escaped", "file", b"x")))
    with pytest.raises(BuildError, match="escapes the root"):
        run("ADD climb.tar /dst2/", rootfs, ctx)
    assert not (tmp_path / "escaped").exists()


def test_git_sources_and_urls_in_copy_are_refused(ctx):
    for text, message in [
        ("ADD https://github.com/moby/buildkit.git /src", "git repositories is not supported"),
        ("ADD git@github.com:moby/buildkit.git /src", "git repositories is not supported"),
        ("COPY https://example.com/x /x", "source can't be a URL for COPY"),
    ]:
        with pytest.raises(BuildError, match=message) as e:
            copier.plan_copy(instruction(text), context(ctx), None)
        assert e.value.line == 2


# -- URLs ------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    (served / "files").mkdir(parents=True)
    (served / "files/tool.sh").write_text("#!/bin/sh\necho tool\n")
    os.utime(served / "files/tool.sh", (T1, T1))
    (served / "files/bundle.tar.gz").write_bytes(gzip.compress(SAMPLE))
    handler = functools.partial(_Handler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serve_in_thread(httpd)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_download_without_checksum(server, rootfs):
    base, served = server
    text = f"ADD {base}/files/tool.sh /opt/"
    with copier.plan_copy(instruction(text), None, None) as plan:
        digest = "sha256:" + hashlib.sha256((served / "files/tool.sh").read_bytes()).hexdigest()
        assert digest in plan.key["sources"][0]  # downloaded already: the key has the digest
        copier.execute_copy(plan, rootfs, workdir="/")
    tool = rootfs / "opt/tool.sh"
    assert tool.read_text() == "#!/bin/sh\necho tool\n"
    assert mode(tool) == 0o600 and owner(tool) == (0, 0)
    assert tool.stat().st_mtime == T1  # Last-Modified


def test_url_with_good_and_bad_checksum(server, rootfs):
    base, served = server
    good = "sha256:" + hashlib.sha256((served / "files/tool.sh").read_bytes()).hexdigest()
    text = f"ADD --checksum={good} --chmod=755 {base}/files/tool.sh /bin/tool"
    with copier.plan_copy(instruction(text), None, None) as plan:
        assert plan.items[0].download is None  # pinned: no download needed for the key
        assert good in plan.key["sources"][0]
        copier.execute_copy(plan, rootfs, workdir="/")
    assert (rootfs / "bin/tool").read_text().endswith("echo tool\n")
    assert mode(rootfs / "bin/tool") == 0o755
    bad = "sha256:" + "0" * 64
    text = f"ADD --checksum={bad} {base}/files/tool.sh /bin/other"
    mismatch = r"Dockerfile:2: digest mismatch for .*tool.sh"
    with (
        copier.plan_copy(instruction(text), None, None) as plan,
        pytest.raises(BuildError, match=mismatch),
    ):
        copier.execute_copy(plan, rootfs, workdir="/")
    assert not (rootfs / "bin/other").exists()
    with pytest.raises(BuildError, match="invalid checksum digest length"):
        copier.plan_copy(instruction(f"ADD --checksum=sha256:abc {base}/x /y"), None, None)


def test_url_archives_are_not_extracted_unless_asked(server, rootfs):
    base, _ = server
    run(f"ADD {base}/files/bundle.tar.gz /dl/", rootfs)
    assert (rootfs / "dl/bundle.tar.gz").is_file()
    run(f"ADD --unpack=true {base}/files/bundle.tar.gz /ex/", rootfs)
    assert (rootfs / "ex/top/a").read_bytes() == b"A"


def test_url_errors(server, rootfs):
    base, _ = server
    with pytest.raises(BuildError, match="invalid response status 404"):
        copier.plan_copy(instruction(f"ADD {base}/missing /x"), None, None)
