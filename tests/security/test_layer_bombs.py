"""Disk and decompression bombs in layers and ADD archives.

A few hundred bytes of gzipped tar can claim a 1 GiB file: a sparse member stores only
its data regions, and gzip shrinks a run of zeros ~1000 times. Extraction must keep
holes as holes, and stop a layer at the size limits (``$DOCKYARD_MAX_LAYER_SIZE`` for
what it expands to, ``$DOCKYARD_MAX_LAYER_WRITE`` for what it writes) with one clear
line naming the layer, leaving nothing half-extracted behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from dockyard.errors import BuildError, DockyardError, LayerError
from dockyard.layers import apply_layer, open_decompressed
from dockyard.layers.limits import SIZE_VAR, WRITE_VAR, LayerTooLarge
from dockyard.layers.walk import walk_layer

T = 1_600_000_000
GIB = 1 << 30
MIB = 1 << 20
# A 1 GiB file that holds two words: the rest is a hole.
BOMB_REGIONS = [(99_999_744, b"hello".ljust(512, b"\0")), (GIB - 512, b"tail".rjust(512, b"\0"))]
ON_DISK_MAX = 1 * MIB  # what a file with a few words may take on disk, holes kept


def gnu_sparse_member(name: str, size: int, regions: list[tuple[int, bytes]]) -> bytes:
    """An old-GNU sparse member (type ``S``, what ``tar --sparse --format=gnu`` writes):
    a header carrying the map and real size, then only the regions' data."""
    stored = b"".join(data for _, data in regions)
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = tarfile.GNUTYPE_SPARSE, len(stored), 0o644, T
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    assert len(header) == tarfile.BLOCKSIZE and len(regions) <= 4
    for i, (offset, data) in enumerate(regions):
        at = 386 + 24 * i
        header[at : at + 12] = tarfile.itn(offset, 12, tarfile.GNU_FORMAT)
        header[at + 12 : at + 24] = tarfile.itn(len(data), 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % tarfile.calc_chksums(bytes(header))[0]
    return bytes(header) + stored + bytes(-len(stored) % tarfile.BLOCKSIZE)


def pax_sparse_member(name: str, size: int, regions: list[tuple[int, bytes]]) -> bytes:
    """A PAX sparse member, format 1.0 (``tar --sparse --format=posix``): the map is in
    front of the data, the real name and size in the PAX header."""
    mapping = f"{len(regions)}\n" + "".join(f"{o}\n{len(d)}\n" for o, d in regions)
    block = mapping.encode().ljust(-(-len(mapping) // 512) * 512, b"\0")
    payload = block + b"".join(data for _, data in regions)
    info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
    info.size, info.mode, info.mtime = len(payload), 0o644, T
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(size),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(payload))
    return _strip_end(out.getvalue())


def _strip_end(tar: bytes) -> bytes:
    """A tar without its end-of-archive blocks, to be joined with more members."""
    end = len(tar)
    while end >= tarfile.BLOCKSIZE and not any(tar[end - tarfile.BLOCKSIZE : end]):
        end -= tarfile.BLOCKSIZE
    return tar[:end]


def regular_member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, T
    return info.tobuf(tarfile.PAX_FORMAT) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def tar_of(*members: bytes) -> bytes:
    return b"".join(members) + bytes(2 * tarfile.BLOCKSIZE)


SPARSE_KINDS = {"gnu": gnu_sparse_member, "pax": pax_sparse_member}


def bomb_layer(kind: str = "gnu") -> bytes:
    """The gzipped layer of the attack: a small file and a sparse 1 GiB one."""
    tar = tar_of(regular_member("etc/ok", b"fine\n"), SPARSE_KINDS[kind]("big", GIB, BOMB_REGIONS))
    return gzip.compress(tar, mtime=0)


def gzip_of_zeros(
    size: int, *, prefix: bytes = b"", suffix: bytes = b"", fill: bytes = bytes(MIB)
) -> bytes:
    """``prefix``, ``size`` zero bytes (or MiBs of ``fill``) and ``suffix``, gzipped
    without holding them all."""
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [gz.compress(prefix)]
    for _ in range(size // len(fill)):
        out.append(gz.compress(fill))
    out += [gz.compress(fill[: size % len(fill)]), gz.compress(suffix), gz.flush()]
    return b"".join(out)


def zero_member_bomb(size: int) -> bytes:
    """A gzipped layer whose one regular file is ``size`` zeros."""
    info = tarfile.TarInfo("zeros")
    info.size, info.mode, info.mtime = size, 0o644, T
    tail = bytes(-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)
    return gzip_of_zeros(size, prefix=info.tobuf(tarfile.PAX_FORMAT), suffix=tail)


def assert_bomb_file_kept_holes(path: Path) -> None:
    st = path.stat()
    assert st.st_size == GIB
    assert st.st_blocks * 512 <= ON_DISK_MAX, f"{st.st_blocks * 512} bytes on disk"
    with path.open("rb") as f:
        for offset, data in BOMB_REGIONS:
            f.seek(offset)
            assert f.read(len(data)) == data
        f.seek(500_000_000)
        assert f.read(4096) == bytes(4096)


class CountingReader(io.RawIOBase):
    """How many bytes were read from ``stream``: how far a bomb got to expand."""

    def __init__(self, stream):
        self.stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


@pytest.fixture
def limits(monkeypatch):
    """Set the limits for this test (and the CLI processes it starts)."""

    def set_limits(size: str | None = None, write: str | None = None) -> None:
        for var, value in ((SIZE_VAR, size), (WRITE_VAR, write)):
            if value is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, value)

    set_limits()
    return set_limits


# -- holes ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SPARSE_KINDS))
def test_a_tiny_layer_with_a_sparse_1gib_file_writes_holes_not_zeros(kind, tmp_path, limits):
    layer = bomb_layer(kind)
    assert len(layer) < 1024  # the attack: a few hundred bytes
    apply_layer(open_decompressed(io.BytesIO(layer)), tmp_path)
    assert_bomb_file_kept_holes(tmp_path / "big")
    assert (tmp_path / "etc/ok").read_bytes() == b"fine\n"
    assert (tmp_path / "big").stat().st_mode & 0o7777 == 0o644


def test_zeros_in_a_regular_member_stay_holes(tmp_path, limits):
    size = 32 * MIB
    apply_layer(open_decompressed(io.BytesIO(zero_member_bomb(size))), tmp_path)
    st = (tmp_path / "zeros").stat()
    assert st.st_size == size
    assert st.st_blocks * 512 <= ON_DISK_MAX
    assert hashlib.sha256((tmp_path / "zeros").read_bytes()).digest() == (
        hashlib.sha256(bytes(size)).digest()
    )


@pytest.mark.parametrize(
    "regions",
    [
        [(0, b"a" * 600), (512, b"b")],  # overlapping
        [(4096, b"a"), (0, b"b")],  # going back
        [(GIB, b"past the end")],
    ],
)
def test_a_sparse_map_that_overlaps_or_passes_the_end_is_refused(regions, tmp_path, limits):
    layer = tar_of(gnu_sparse_member("f", GIB, regions))
    with pytest.raises(LayerError, match="'f': invalid sparse map"):
        apply_layer(io.BytesIO(layer), tmp_path)


# -- limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SPARSE_KINDS))
def test_a_sparse_file_past_the_size_limit_fails_before_it_is_made(kind, tmp_path, limits):
    limits(size="64M")
    layer = open_decompressed(io.BytesIO(bomb_layer(kind)))
    with pytest.raises(LayerTooLarge) as error:
        apply_layer(layer, tmp_path, name="layer sha256:abc")
    assert str(error.value) == (
        "layer sha256:abc: expands to more than 64 MiB (limit $DOCKYARD_MAX_LAYER_SIZE)"
    )
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("kind", list(SPARSE_KINDS))
def test_reading_a_sparse_bomb_without_extracting_stops_at_the_size_limit(kind, limits):
    """``check``, ``diff`` and ``inspect --layers`` walk layers without writing them: the
    holes of a sparse file count there as they do when it is extracted."""
    limits(size="64M")
    seen = []
    with pytest.raises(LayerTooLarge) as error:
        walk_layer(io.BytesIO(bomb_layer(kind)), seen.append, name="layer sha256:abc")
    assert str(error.value).startswith("layer sha256:abc: expands to more than 64 MiB")
    assert [entry.path for entry in seen] == ["/etc/ok"]  # stopped at the bomb


@pytest.mark.parametrize("where", ["in a file", "after the end of the tar"])
def test_a_decompression_bomb_stops_at_the_size_limit(where, tmp_path, limits):
    """256 MiB of zeros from 256 KiB of gzip, as a file's data or as trailing garbage
    (which is read to the end, so a digest check sees it): expansion stops at the limit."""
    limits(size="16M")
    if where == "in a file":
        blob = zero_member_bomb(256 * MIB)
    else:
        blob = gzip_of_zeros(256 * MIB, prefix=tar_of(regular_member("a", b"a")))
    assert len(blob) < 512 * 1024
    counted = CountingReader(open_decompressed(io.BytesIO(blob)))
    with pytest.raises(LayerTooLarge, match=r"expands to more than 16 MiB"):
        apply_layer(counted, tmp_path)
    assert counted.count <= 18 * MIB


def test_the_write_limit_counts_data_not_holes(tmp_path, limits):
    limits(write="1M")
    (tmp_path / "sparse").mkdir()
    (tmp_path / "dense").mkdir()
    apply_layer(open_decompressed(io.BytesIO(bomb_layer())), tmp_path / "sparse")
    assert_bomb_file_kept_holes(tmp_path / "sparse/big")
    data = os.urandom(2 * MIB)
    with pytest.raises(LayerTooLarge) as error:
        apply_layer(io.BytesIO(tar_of(regular_member("random", data))), tmp_path / "dense")
    assert str(error.value) == "writes more than 1 MiB to disk (limit $DOCKYARD_MAX_LAYER_WRITE)"
    assert (tmp_path / "dense/random").stat().st_size <= MIB  # stopped before the excess


def test_a_bad_limit_value_is_a_clear_error(tmp_path, limits):
    limits(size="lots")
    with pytest.raises(DockyardError, match="DOCKYARD_MAX_LAYER_SIZE='lots': expected a size"):
        apply_layer(io.BytesIO(tar_of(regular_member("a", b"a"))), tmp_path)


# -- export, run, ADD -------------------------------------------------------------------


def store_bomb(root: Path, layer: bytes | None = None) -> tuple[str, str]:
    """A store at ``root`` holding an image of the gzipped ``layer`` (the sparse bomb by
    default); its name and layer digest."""
    from dockyard import reference
    from dockyard.oci import mediatypes as mt
    from dockyard.oci.descriptor import Descriptor
    from dockyard.oci.manifest import build_manifest, dumps
    from dockyard.store import Store

    store = Store(root)
    layer = layer or bomb_layer()
    diff = hashlib.sha256()
    with open_decompressed(io.BytesIO(layer)) as tar:
        while chunk := tar.read(MIB):
            diff.update(chunk)
    diff_id = f"sha256:{diff.hexdigest()}"
    layer_desc = Descriptor(mt.OCI_LAYER_GZIP, store.blobs.write_bytes(layer), len(layer))
    rootfs = {"type": "layers", "diff_ids": [diff_id]}
    config = dumps({"architecture": "amd64", "os": "linux", "rootfs": rootfs})
    manifest = build_manifest(
        Descriptor(mt.OCI_CONFIG, store.blobs.write_bytes(config), len(config)), [layer_desc]
    )
    store.blobs.write_bytes(manifest.raw)
    name = "localhost/bombs/sparse:latest"
    store.tag(reference.parse(name), manifest.descriptor())
    return name, layer_desc.digest


def dockyard(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKYARD_ROOT": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "dockyard.cli.main", *args], capture_output=True, text=True, env=env
    )


def test_export_keeps_holes_and_a_bomb_past_the_limit_leaves_nothing(tmp_path, limits):
    name, digest = store_bomb(tmp_path / "store")
    result = dockyard(tmp_path / "store", "export", name, str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert_bomb_file_kept_holes(tmp_path / "out/big")

    limits(size="64M")
    for existing in (False, True):
        dest = tmp_path / f"refused-{existing}"
        if existing:
            dest.mkdir()
        result = dockyard(tmp_path / "store", "export", name, str(dest))
        assert result.returncode == 1
        assert result.stderr == (
            f"dockyard: error: layer {digest}: expands to more than 64 MiB "
            "(limit $DOCKYARD_MAX_LAYER_SIZE)\n"
        )
        assert dest.exists() == existing  # made and removed, or given and emptied again
        assert not existing or not any(dest.iterdir())


def test_saving_a_decompression_bomb_to_a_docker_archive_stops_at_the_limit(tmp_path, limits):
    """docker-archive stores layers uncompressed: the bomb would be written out whole."""
    name, digest = store_bomb(tmp_path / "store", zero_member_bomb(256 * MIB))
    limits(size="16M")
    out = tmp_path / "out.tar"
    result = dockyard(tmp_path / "store", "save", "-o", str(out), name)
    assert result.returncode == 1
    assert result.stderr == (
        f"dockyard: error: layer {digest}: expands to more than 16 MiB "
        "(limit $DOCKYARD_MAX_LAYER_SIZE)\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["store"]  # no archive, no spool left


@pytest.mark.skipif(os.geteuid() != 0, reason="snapshots need root (whiteout devices)")
def test_a_snapshot_keeps_holes_and_a_bomb_past_the_limit_leaves_nothing(tmp_path, limits):
    from dockyard import reference
    from dockyard.runtime import Snapshots
    from dockyard.store import Store

    name, digest = store_bomb(tmp_path / "store")
    store = Store(tmp_path / "store")
    manifest = store.image_manifest(store.resolve(reference.parse(name)))
    snapshots_root = tmp_path / "store/snapshots"

    limits(size="64M")
    with Snapshots(store) as snapshots, pytest.raises(LayerTooLarge) as error:
        snapshots.prepare(manifest)
    assert str(error.value) == (
        f"layer {digest}: expands to more than 64 MiB (limit $DOCKYARD_MAX_LAYER_SIZE)"
    )
    assert not [p for p in snapshots_root.iterdir() if not p.name.startswith(".")]
    assert not list(snapshots_root.glob(".tmp-*"))

    result = dockyard(tmp_path / "store", "run", "--rm", name, "/bin/true")  # the user's path
    assert result.returncode == 1
    assert result.stderr == f"dockyard: error: {error.value}\n"
    assert not [p for p in snapshots_root.iterdir() if not p.name.startswith(".")]

    limits()
    with Snapshots(store) as snapshots:
        (lower,) = snapshots.prepare(manifest)
        assert_bomb_file_kept_holes(lower / "big")


@pytest.mark.skipif(os.geteuid() != 0, reason="the copier's tests run as root")
def test_add_of_a_sparse_archive_keeps_holes_and_a_bomb_is_stopped(tmp_path, limits):
    from tests.support.copier import run

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "sparse.tar.gz").write_bytes(bomb_layer("pax"))
    # 256 MiB of zeros as xz, which only ADD reads: its own decompressor, the same limit
    xz = lzma.LZMACompressor(preset=0)
    info = tarfile.TarInfo("zeros")
    info.size = 256 * MIB
    chunks = [xz.compress(info.tobuf(tarfile.PAX_FORMAT))]
    chunks += [xz.compress(bytes(MIB)) for _ in range(256)]
    (ctx / "zeros.tar.xz").write_bytes(b"".join([*chunks, xz.compress(bytes(1024)), xz.flush()]))

    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    run("ADD sparse.tar.gz /", rootfs, ctx)
    assert_bomb_file_kept_holes(rootfs / "big")

    limits(size="16M")
    for archive in ("sparse.tar.gz", "zeros.tar.xz"):
        with pytest.raises(BuildError) as error:
            run(f"ADD {archive} /{archive}.d/", rootfs, ctx)
        message = str(error.value)
        assert "\n" not in message
        assert message.endswith("expands to more than 16 MiB (limit $DOCKYARD_MAX_LAYER_SIZE)")


@pytest.mark.skipif(os.geteuid() != 0, reason="builds run as root")
def test_a_dockerfile_add_of_a_bomb_fails_with_one_line_and_leaves_nothing(tmp_path, limits):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "bomb.tar.gz").write_bytes(bomb_layer())
    (ctx / "Dockerfile").write_text("FROM scratch\nADD bomb.tar.gz /\n")
    limits(size="64M")
    result = dockyard(tmp_path / "store", "build", "-t", "localhost/bomb:1", str(ctx))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"dockyard: error: {ctx}/Dockerfile:2: failed to extract archive into /: "
        "expands to more than 64 MiB (limit $DOCKYARD_MAX_LAYER_SIZE)"
    )
    used = sum(p.lstat().st_blocks * 512 for p in (tmp_path / "store").rglob("*"))
    assert used < ON_DISK_MAX  # no half-extracted step left in the store
    assert not [p for p in (tmp_path / "store/snapshots").iterdir() if not p.name.startswith(".")]


# -- headers held in memory -------------------------------------------------------------


def header_block(type_: bytes, size: int, name: str = "h") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = type_, size
    return info.tobuf(tarfile.USTAR_FORMAT)


def endless_gnu_sparse_extensions(count: int) -> bytes:
    """An old-GNU sparse header whose map goes on for ``count`` extension blocks."""
    header = bytearray(gnu_sparse_member("f", GIB, [(0, b"x")])[: tarfile.BLOCKSIZE])
    header[482] = 1  # isextended
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % tarfile.calc_chksums(bytes(header))[0]
    extension = bytearray(tarfile.BLOCKSIZE)
    extension[0:24] = tarfile.itn(1, 12, tarfile.GNU_FORMAT) * 2  # offset 1, 1 byte
    extension[504] = 1  # and another extension follows
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [gz.compress(bytes(header))]
    run = bytes(extension) * 2048  # 1 MiB
    out += [gz.compress(run) for _ in range(count // 2048)]
    return b"".join([*out, gz.flush()])


HEADER_BOMBS = {
    # tarfile reads a PAX header, a GNU long name, a sparse map whole into memory
    "pax header": lambda: gzip_of_zeros(256 * MIB, prefix=header_block(tarfile.XHDTYPE, 256 * MIB)),
    "gnu long name": lambda: gzip_of_zeros(
        256 * MIB, prefix=header_block(tarfile.GNUTYPE_LONGNAME, 256 * MIB, "././@LongLink")
    ),
    "pax sparse map": lambda: gzip_of_zeros(
        256 * MIB,
        prefix=_strip_end(pax_sparse_member("f", GIB, [(0, b"x")]))[: 3 * tarfile.BLOCKSIZE]
        + b"999999999999\n",
        fill=b"1\n" * (MIB // 2),  # a map of 999999999999 regions: a list of ints
    ),
    "gnu sparse extensions": lambda: endless_gnu_sparse_extensions(256 * 2048),
}


@pytest.mark.parametrize("kind", list(HEADER_BOMBS))
def test_a_huge_header_is_refused_before_it_fills_memory(kind, tmp_path, limits):
    blob = HEADER_BOMBS[kind]()
    assert len(blob) < 2 * MIB
    counted = CountingReader(open_decompressed(io.BytesIO(blob)))
    with pytest.raises(LayerError, match="a tar member's headers take more than 16 MiB"):
        apply_layer(counted, tmp_path, name="layer sha256:abc")
    assert counted.count <= 17 * MIB


def test_data_left_unread_by_the_applier_is_not_taken_for_headers(tmp_path, limits):
    """A whiteout, or AUFS's hardlink stash, may carry data: passed over, not refused."""
    big = os.urandom(20 * MIB)
    layer = tar_of(
        regular_member(".wh.gone", big),
        regular_member(".wh..wh.plnk/123.456", big),
        regular_member("kept", b"kept"),
    )
    apply_layer(io.BytesIO(layer), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["kept"]
