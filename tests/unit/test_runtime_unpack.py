"""Extracting a layer as an overlay lower dir: whiteouts kept as overlay whiteouts."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard.errors import LayerError
from dockyard.runtime.unpack import OPAQUE_XATTR, unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need root")


def layer(*entries: tuple[str, str, str | bytes]) -> io.BytesIO:
    """A tar of (kind, name, data-or-link-target) entries, kind in file/dir/sym."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_500_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            else:
                payload = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(payload), 0o644
                tar.addfile(info, io.BytesIO(payload))
    out.seek(0)
    return out


def is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def test_plain_content(tmp_path):
    unpack_layer(
        layer(("dir", "etc", ""), ("file", "etc/motd", "hi"), ("sym", "l", "etc")), tmp_path
    )
    assert (tmp_path / "etc/motd").read_text() == "hi"
    assert os.readlink(tmp_path / "l") == "etc"


def test_whiteout_becomes_a_0_0_character_device(tmp_path):
    unpack_layer(layer(("file", ".wh.gone", ""), ("file", "usr/bin/.wh.tool", "")), tmp_path)
    assert is_whiteout(tmp_path / "gone")
    assert is_whiteout(tmp_path / "usr/bin/tool")
    assert not any(name.startswith(".wh.") for _, _, names in os.walk(tmp_path) for name in names)


def test_opaque_marker_becomes_the_xattr_and_keeps_this_layers_entries(tmp_path):
    unpack_layer(
        layer(("dir", "cache", ""), ("file", "cache/new", "n"), ("file", "cache/.wh..wh..opq", "")),
        tmp_path,
    )
    assert is_opaque(tmp_path / "cache")
    assert (tmp_path / "cache/new").read_text() == "n"
    assert os.listdir(tmp_path / "cache") == ["new"]


def test_own_directory_named_by_a_whiteout_hides_only_the_lower_content(tmp_path):
    unpack_layer(layer(("dir", "d", ""), ("file", "d/mine", "m"), ("file", ".wh.d", "")), tmp_path)
    assert is_opaque(tmp_path / "d")
    assert (tmp_path / "d/mine").exists()


def test_own_file_survives_its_whiteout(tmp_path):
    unpack_layer(layer(("file", "f", "new"), ("file", ".wh.f", "")), tmp_path)
    assert (tmp_path / "f").read_text() == "new"


def test_directory_recreated_after_a_whiteout_is_opaque(tmp_path):
    unpack_layer(layer(("file", ".wh.d", ""), ("dir", "d", ""), ("file", "d/x", "x")), tmp_path)
    assert (tmp_path / "d").is_dir() and is_opaque(tmp_path / "d")
    assert os.listdir(tmp_path / "d") == ["x"]


def test_file_recreated_after_a_whiteout_replaces_it(tmp_path):
    unpack_layer(layer(("file", ".wh.f", ""), ("file", "f", "again")), tmp_path)
    assert (tmp_path / "f").read_text() == "again"


def test_whiteout_under_a_whited_out_name_is_moot(tmp_path):
    unpack_layer(layer(("file", ".wh.a", ""), ("file", "a/.wh.b", "")), tmp_path)
    assert is_whiteout(tmp_path / "a")


def test_layer_xattrs_cannot_forge_overlay_attributes(tmp_path):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        info.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
        tar.addfile(info)
    out.seek(0)
    warnings = unpack_layer(out, tmp_path)
    assert not is_opaque(tmp_path / "d")
    assert any("overlay" in w for w in warnings)


@pytest.mark.parametrize(
    "entries",
    [
        [("file", "../escape", "x")],
        [("sym", "out", "/"), ("file", "out/../../escape", "x")],
    ],
)
def test_hostile_paths_are_refused(tmp_path, entries):
    target = tmp_path / "snap"
    target.mkdir()
    with pytest.raises(LayerError):
        unpack_layer(layer(*entries), target)
    assert sorted(os.listdir(tmp_path)) == ["snap"]


def test_symlinks_resolve_inside_the_snapshot_for_entries_and_whiteouts(tmp_path):
    target = tmp_path / "snap"
    target.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("host file")
    entries = [
        ("sym", "up", "../../../.."),
        ("sym", "abs", str(tmp_path)),
        ("file", "up/.wh.victim", ""),
        ("file", "abs/victim", "overwritten?"),
        ("file", "abs/.wh.other", ""),
    ]
    unpack_layer(layer(*entries), target)
    assert victim.read_text() == "host file"
    assert sorted(os.listdir(tmp_path)) == ["snap", "victim"]
    assert is_whiteout(target / "victim")  # up/ is the snapshot root itself
    assert (target / tmp_path.relative_to("/") / "victim").read_text() == "overwritten?"
