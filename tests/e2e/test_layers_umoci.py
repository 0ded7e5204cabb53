"""Our layers against umoci's and the kernel's idea of them.

- flattening umoci's busybox image gives what ``umoci raw unpack`` gives;
- layers we pack unpack with umoci into the tree we packed;
- an overlayfs upper dir packed in overlay mode, on top of its lower layer, gives the
  overlay's merged view, whether we or umoci apply the layers;
- crafted whiteouts and opaque dirs, in awkward orders, apply as umoci applies them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.layers import flatten, pack
from dockyard.layers.compression import CompressingWriter
from dockyard.oci import mediatypes as mt
from tests.conftest import need
from tests.support.trees import assert_same_tree, build_lower, change_merged

pytestmark = pytest.mark.e2e

# -- helpers -----------------------------------------------------------------------------


def write_blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(layout: Path, layers: list[tuple[bytes, str, str]]) -> None:
    """An OCI layout ``<layout>:latest`` of ``(blob, media type, diff_id)`` layers."""
    (layout / "oci-layout").parent.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, _, diff_id in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, **write_blob(layout, json.dumps(config).encode())},
        "layers": [{"mediaType": m, **write_blob(layout, blob)} for blob, m, _ in layers],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                **write_blob(layout, json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))


def packed(source: Path, compression: str | None = "gzip", **kw) -> tuple[bytes, str, str]:
    out = io.BytesIO()
    layer = pack(source, out, compression=compression, **kw)
    return out.getvalue(), layer.media_type, layer.diff_id


def umoci_unpack(layout: Path, rootfs: Path) -> None:
    subprocess.run(
        ["umoci", "raw", "unpack", "--image", f"{layout}:latest", str(rootfs)],
        check=True,
        capture_output=True,
    )


def layout_layers(layout: Path) -> list[Path]:
    """The layer blobs of ``<layout>:latest``, read by hand from index and manifest."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest"
    ]
    blob = lambda digest: layout / "blobs" / Path(*digest.split(":"))  # noqa: E731
    manifest = json.loads(blob(entry["digest"]).read_text())
    return [blob(layer["digest"]) for layer in manifest["layers"]]


def flatten_files(paths: list[Path], rootfs: Path) -> list[str]:
    files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed below
    try:
        return flatten(files, rootfs)
    finally:
        for f in files:
            f.close()


def tar_layer(*entries: tuple[str, bytes, bytes | str | None]) -> tuple[bytes, str, str]:
    """A hand-made gzip layer of ``(name, type, data or link target)`` entries."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mtime = kind, 1_600_000_000
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            data = None
            if kind == tarfile.REGTYPE:
                data = io.BytesIO(payload or b"")
                info.size = len(payload or b"")
            elif isinstance(payload, str):
                info.linkname = payload
            tar.addfile(info, data)
    blob = io.BytesIO()
    with CompressingWriter(blob, "gzip") as writer:
        writer.write(raw.getvalue())
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return blob.getvalue(), mt.OCI_LAYER_GZIP, diff_id


def make_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin/tool").write_bytes(os.urandom(1 << 21))
    (root / "bin/tool").chmod(0o4755)
    os.link(root / "bin/tool", root / "bin/tool-link")
    (root / "etc").mkdir()
    (root / "etc/conf").write_text("a = 1\n")
    os.chown(root / "etc/conf", 1000, 1001)
    os.setxattr(root / "etc/conf", "user.note", b"kept")
    (root / "etc/sym").symlink_to("/etc/conf")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(root / "dev/fifo")
    deep = root / ("long-" * 30)
    deep.mkdir()
    (deep / ("name-" * 40)).write_text("long\n")
    (root / "ünïcode").write_text("u\n")


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (ownership, device nodes, overlay mounts)")
    need("umoci")


# -- tests -------------------------------------------------------------------------------


def test_flatten_busybox_like_umoci(as_root, busybox_layout, tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert flatten_files(layout_layers(busybox_layout), ours) == []
    umoci_unpack(busybox_layout, theirs)
    assert_same_tree(ours, theirs)
    assert (ours / "bin/sh").is_symlink() and (ours / "bin/busybox").stat().st_size > 100_000


@pytest.mark.parametrize("compression", ["gzip", None])
def test_umoci_unpacks_our_layers_into_the_packed_tree(as_root, tmp_path, compression):
    source = tmp_path / "source"
    make_tree(source)
    layout, theirs = tmp_path / "layout", tmp_path / "theirs"
    write_layout(layout, [packed(source, compression)])
    umoci_unpack(layout, theirs)
    assert_same_tree(source, theirs)


@pytest.fixture
def overlay(as_root, tmp_path) -> Iterator[tuple[Path, Path, Path, str]]:
    """``(lower, upper, merged, mount options)``; whatever gets mounted on ``merged`` is
    unmounted at the end."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    lower.mkdir()
    options = f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"
    yield lower, upper, merged, options
    subprocess.run(["umount", str(merged)], capture_output=True)


def test_overlay_upper_dir_layer_matches_the_merged_view(overlay, tmp_path):
    lower, upper, merged, options = overlay
    build_lower(lower)
    mount = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], capture_output=True
    )
    if mount.returncode:
        pytest.skip(f"cannot mount overlayfs here: {mount.stderr.decode().strip()}")
    change_merged(merged)
    truth = tmp_path / "truth"
    subprocess.run(["cp", "-a", f"{merged}/.", str(truth)], check=True)
    subprocess.run(["umount", str(merged)], check=True)

    layers = [packed(lower), packed(upper, "zstd", overlay=True)]
    with tarfile.open(fileobj=io.BytesIO(packed(upper, None, overlay=True)[0])) as tar:
        upper_names = tar.getnames()
    assert "usr/bin/.wh.b" in upper_names and "var/.wh.cache" in upper_names
    assert "opt/app/.wh..wh..opq" in upper_names and "home/.wh.user" in upper_names

    ours = tmp_path / "ours"
    flatten([io.BytesIO(blob) for blob, _, _ in layers], ours)
    assert_same_tree(ours, truth, dir_mtimes=False)

    # umoci (0.4) has no zstd: give it the same layers gzip-compressed.
    layout, theirs = tmp_path / "layout", tmp_path / "theirs"
    write_layout(layout, [packed(lower), packed(upper, "gzip", overlay=True)])
    umoci_unpack(layout, theirs)
    assert_same_tree(ours, theirs)


@pytest.mark.parametrize("marker_last", [False, True])
def test_crafted_whiteouts_apply_like_umoci(as_root, tmp_path, marker_last):
    reg, dirt, sym, lnk = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    bottom = tar_layer(
        ("etc/", dirt, None),
        ("etc/a", reg, b"a"),
        ("etc/b", reg, b"b"),
        ("etc/hard", lnk, "etc/a"),
        ("d/", dirt, None),
        ("d/old", reg, b"old"),
        ("d/sub/", dirt, None),
        ("d/sub/old", reg, b"old"),
        ("tree/x/y/z", reg, b"z"),
        ("sym", sym, "etc"),
    )
    opaque = [("d/.wh..wh..opq", reg, b"")]
    additions = [("d/", dirt, None), ("d/new", reg, b"new"), ("d/sub/", dirt, None)]
    additions += [("d/sub/new", reg, b"new2")]
    middle = tar_layer(
        ("etc/.wh.a", reg, b""),
        ("etc/c", reg, b"c"),
        (".wh.tree", reg, b""),
        *(additions + opaque if marker_last else opaque + additions),
    )
    top = tar_layer(
        ("tree/", dirt, None),  # an implicit parent would get the time of unpacking
        ("tree/again", reg, b"back"),
        ("etc/.wh.c", reg, b""),
        ("etc/c", reg, b"same layer keeps it"),
        (".wh.sym", reg, b""),
        ("sym/", dirt, None),
        ("d/sub/.wh.new", reg, b""),
    )
    layers = [bottom, middle, top]
    layout, theirs, ours = tmp_path / "layout", tmp_path / "theirs", tmp_path / "ours"
    write_layout(layout, layers)
    umoci_unpack(layout, theirs)
    flatten([io.BytesIO(blob) for blob, _, _ in layers], ours)
    # With the marker last, umoci empties d/sub after setting its mtime from the entry and
    # so leaves it at the time of unpacking; we keep the entry's.
    assert_same_tree(ours, theirs, dir_mtimes=not marker_last)
    assert (ours / "d/sub").stat().st_mtime == 1_600_000_000
    assert sorted(str(p.relative_to(ours)) for p in ours.rglob("*")) == [
        "d",
        "d/new",
        "d/sub",
        "etc",
        "etc/b",
        "etc/c",
        "etc/hard",
        "sym",
        "tree",
        "tree/again",
    ]
