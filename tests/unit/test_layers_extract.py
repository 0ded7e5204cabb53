"""Applying layers onto a rootfs: OCI changeset semantics, and hostile layers.

Hostile layers are made here with tarfile. Every hostile case runs with a sacrificial
directory next to the rootfs, and checks that nothing outside the rootfs was created,
changed or removed (a snapshot of everything around it, before and after).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.errors import LayerError
from dockyard.layers import apply_layer, extract, flatten
from dockyard.layers.compression import CompressingWriter

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")
MTIME = 1_500_000_000

Entry = tuple[tarfile.TarInfo, bytes | None]


# -- building layers -----------------------------------------------------------------


def _info(name: str, kind: bytes, mode: int, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def file(name: str, data: bytes = b"data", mode: int = 0o644, **fields) -> Entry:
    return _info(name, tarfile.REGTYPE, mode, size=len(data), **fields), data


def directory(name: str, mode: int = 0o755, **fields) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode, **fields), None


def symlink(name: str, target: str, **fields) -> Entry:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **fields), None


def hardlink(name: str, target: str, mode: int = 0o644) -> Entry:
    return _info(name, tarfile.LNKTYPE, mode, linkname=target), None


def device(name: str, major: int = 1, minor: int = 3, kind: bytes = tarfile.CHRTYPE) -> Entry:
    return _info(name, kind, 0o666, devmajor=major, devminor=minor), None


def fifo(name: str) -> Entry:
    return _info(name, tarfile.FIFOTYPE, 0o640), None


def layer(*entries: Entry) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


# -- the sandbox -----------------------------------------------------------------------


def snapshot(top: Path, skip: Path) -> dict[str, tuple]:
    """Every path under ``top`` but ``skip``: type, mode, owner, size, mtime, links, data."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                data = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            else:
                data = b""
            state[str(path)] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                st.st_nlink,
                hashlib.sha256(data).hexdigest(),
            )
    return state


@dataclass
class Sandbox:
    """A rootfs three levels below ``top``, and a victim directory beside it."""

    top: Path
    rootfs: Path
    outside: Path
    victim: Path

    def apply(self, *entries: Entry, as_root: bool | None = None) -> list[str]:
        return apply_layer(layer(*entries), self.rootfs, as_root=as_root)


@pytest.fixture
def box(tmp_path) -> Sandbox:
    rootfs = tmp_path / "a/b/c/rootfs"  # "../../.." from the rootfs stays in tmp_path
    rootfs.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"precious")
    victim.chmod(0o600)
    os.utime(victim, (1_000, 1_000))
    sandbox = Sandbox(tmp_path, rootfs, outside, victim)
    before = snapshot(tmp_path, rootfs)
    yield sandbox
    assert snapshot(tmp_path, rootfs) == before, "something outside the rootfs changed"
    assert victim.read_bytes() == b"precious"


def tree(root: Path) -> dict[str, str]:
    """A compact view of a rootfs: path -> kind (and data or target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        elif path.is_file():
            out[rel] = path.read_text()
        else:
            out[rel] = "special"
    return out


# -- hostile layers ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/../../x", "./../../../outside/victim", "a/../.."])
def test_dotdot_escapes_are_refused(box, name):
    with pytest.raises(LayerError, match="escapes the root"):
        box.apply(file(name, b"pwned"))


def test_absolute_names_land_inside(box):
    box.apply(file("/abs/x", b"in"), file(str(box.victim), b"pwned"))
    assert (box.rootfs / "abs/x").read_text() == "in"
    assert (box.rootfs / str(box.victim).lstrip("/")).read_text() == "pwned"


@pytest.mark.parametrize("target", ["/", "../../..", "../../../../../../..", "/../.."])
def test_symlink_to_the_top_then_write_through_it(box, target):
    box.apply(symlink("evil", target), file("evil/x", b"through"))
    assert (box.rootfs / "x").read_text() == "through"
    assert os.readlink(box.rootfs / "evil") == target


def test_symlink_to_a_host_path_then_write_through_it(box):
    box.apply(symlink("evil", str(box.outside)), file("evil/victim", b"pwned"))
    assert (box.rootfs / str(box.victim).lstrip("/")).read_text() == "pwned"


def test_chain_of_symlinks_escaping(box):
    outside = os.path.relpath(box.outside, box.rootfs)  # ../../../../outside
    box.apply(
        symlink("one", "two/.."),
        directory("two"),
        symlink("two/three", "../four"),
        symlink("four", outside),
        file("one/two/three/victim", b"pwned"),
    )
    assert (box.rootfs / "outside/victim").read_text() == "pwned"


def test_symlink_loops_are_refused(box):
    with pytest.raises(LayerError, match="symlinks"):
        box.apply(symlink("a", "b"), symlink("b", "a/x"), file("a/y"))


def test_symlink_from_a_lower_layer_is_resolved_inside(box):
    box.apply(directory("etc"), symlink("etc/dir", str(box.outside)))
    box.apply(file("etc/dir/victim", b"pwned"), directory("etc/dir/newdir", mode=0o777))
    inside = box.rootfs / str(box.outside).lstrip("/")
    assert (inside / "victim").read_text() == "pwned"
    assert (inside / "newdir").is_dir()


def test_existing_symlink_is_replaced_not_written_through(box):
    box.apply(symlink("f", str(box.victim)), symlink("d", str(box.outside)))
    box.apply(file("f", b"pwned", mode=0o777), directory("d", mode=0o700))
    assert (box.rootfs / "f").read_text() == "pwned"
    assert not (box.rootfs / "f").is_symlink()
    assert (box.rootfs / "d").is_dir() and not (box.rootfs / "d").is_symlink()
    assert stat.S_IMODE((box.rootfs / "d").stat().st_mode) == 0o700


@pytest.mark.parametrize("target", ["../outside/victim", "a/../../x"])
def test_hardlink_escaping_lexically_is_refused(box, target):
    with pytest.raises(LayerError, match="escapes the root"):
        box.apply(hardlink("h", target, mode=0o777))


def test_hardlink_to_an_absolute_host_path_resolves_inside(box):
    with pytest.raises(LayerError, match="missing"):
        box.apply(hardlink("h", str(box.victim), mode=0o777))
    assert box.victim.stat().st_nlink == 1
    # With a file of that name inside the rootfs, the link goes to it.
    inside = str(box.victim).lstrip("/")
    box.apply(file(inside, b"inside"), hardlink("h", str(box.victim), mode=0o777))
    assert (box.rootfs / "h").read_text() == "inside"
    assert (box.rootfs / "h").stat().st_ino == (box.rootfs / inside).stat().st_ino


def test_hardlink_to_etc_passwd_never_touches_the_host(box):
    before = os.stat("/etc/passwd")
    with pytest.raises(LayerError, match="missing"):
        box.apply(hardlink("passwd", "/etc/passwd", mode=0o777))
    after = os.stat("/etc/passwd")
    assert (after.st_mode, after.st_uid, after.st_nlink) == (
        before.st_mode,
        before.st_uid,
        before.st_nlink,
    )


def test_hardlink_through_a_symlinked_parent_resolves_inside(box):
    with pytest.raises(LayerError, match="missing"):  # no outside/victim inside the rootfs
        box.apply(symlink("up", "../../../.."), hardlink("h", "up/outside/victim"))
    box.apply(file("outside/victim", b"inside"), hardlink("h", "up/outside/victim"))
    assert (box.rootfs / "h").read_text() == "inside"


def test_hardlink_to_a_symlink_pointing_out_links_the_symlink_itself(box):
    box.apply(symlink("s", str(box.victim)), hardlink("h", "s", mode=0o777))
    assert (box.rootfs / "h").is_symlink()
    assert os.readlink(box.rootfs / "h") == str(box.victim)
    # A later entry with that name replaces the link rather than writing through it.
    box.apply(file("h", b"pwned", mode=0o777))
    assert (box.rootfs / "h").read_text() == "pwned"


def test_hardlink_metadata_never_reaches_the_target(box):
    box.apply(file("target", b"t", mode=0o600, uid=0, gid=0))
    box.apply(hardlink("h", "target", mode=0o6777))
    assert stat.S_IMODE((box.rootfs / "target").stat().st_mode) == 0o600
    assert (box.rootfs / "target").stat().st_nlink == 2


def test_hardlink_to_a_directory_is_refused(box):
    with pytest.raises(LayerError, match="directory"):
        box.apply(directory("d"), hardlink("h", "d"))


@pytest.mark.parametrize("name", ["../.wh.victim", "../../../../outside/.wh.victim"])
def test_whiteout_escaping_is_refused(box, name):
    with pytest.raises(LayerError, match="escapes the root"):
        box.apply(file(name, b""))


def test_whiteout_through_a_symlink_deletes_inside_only(box):
    inside = box.rootfs / str(box.victim).lstrip("/")
    box.apply(file(str(box.victim), b"inside copy"), symlink("out", str(box.outside)))
    box.apply(file("out/.wh.victim", b""), file("up/.wh..wh..opq", b""))
    assert not inside.exists()
    box.apply(symlink("top", "../../../.."), file("top/outside/.wh..wh..opq", b""))


@pytest.mark.parametrize("name", [".wh..", ".wh.", "d/.wh..."])
def test_whiteouts_naming_nothing_are_refused(box, name):
    with pytest.raises(LayerError):
        box.apply(directory("d"), file(name, b""))


def test_a_parent_that_is_a_file_is_an_error(box):
    with pytest.raises(LayerError, match="not a directory"):
        box.apply(file("f"), file("f/child"))


def test_device_nodes_without_root_are_skipped(box):
    warnings = box.apply(
        device("dev/null"),
        device("dev/sda", 8, 0, tarfile.BLKTYPE),
        hardlink("dev/null2", "dev/null"),
        fifo("dev/fifo"),
        as_root=False,
    )
    assert not (box.rootfs / "dev/null").exists() and not (box.rootfs / "dev/sda").exists()
    assert not (box.rootfs / "dev/null2").exists()
    assert stat.S_ISFIFO((box.rootfs / "dev/fifo").lstat().st_mode)  # needs no privilege
    assert len(warnings) == 3 and all("dev/" in w for w in warnings)


@needs_root
def test_device_nodes_as_root(box):
    assert box.apply(device("dev/null"), device("dev/sda", 8, 0, tarfile.BLKTYPE)) == []
    null = (box.rootfs / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK((box.rootfs / "dev/sda").lstat().st_mode)


def test_production_path_decides_by_euid(box, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert box.apply(device("null")) == ["null: device node not created (needs root)"]


# -- changeset semantics -------------------------------------------------------------


def test_whiteout_deletes_lower_files_and_trees(box):
    box.apply(file("etc/a"), file("etc/b"), file("var/lib/x/y"), symlink("l", "/etc"))
    box.apply(file("etc/.wh.a", b""), file(".wh.var", b""), file(".wh.l", b""))
    assert tree(box.rootfs) == {"etc": "dir", "etc/b": "data"}


def test_whiteout_missing_target_or_parent_is_fine(box):
    box.apply(file(".wh.nothing", b""), file("no/such/.wh.dir", b""))
    assert tree(box.rootfs) == {}


@pytest.mark.parametrize("whiteout_first", [True, False])
def test_whiteout_does_not_delete_what_the_same_layer_adds(box, whiteout_first):
    box.apply(file("x", b"lower"), file("d/lower"))
    entries = [file("x", b"upper"), file("d/upper", b"u")]
    whiteouts = [file(".wh.x", b""), file(".wh.d", b"")]
    box.apply(*(whiteouts + entries if whiteout_first else entries + whiteouts))
    assert tree(box.rootfs) == {"d": "dir", "d/upper": "u", "x": "upper"}


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_dir_hides_lower_content_only(box, marker_first):
    box.apply(file("d/old"), file("d/sub/old"), file("d/sub/keep", b"lower"), file("other/kept"))
    entries = [
        directory("d", mode=0o750),
        file("d/new", b"n"),
        file("d/sub/new", b"n2"),  # inside a lower subdir, without an entry for it
        file("d/sub/keep", b"upper"),
    ]
    marker = [file("d/.wh..wh..opq", b"")]
    box.apply(*(marker + entries if marker_first else entries + marker))
    assert tree(box.rootfs) == {
        "d": "dir",
        "d/new": "n",
        "d/sub": "dir",
        "d/sub/keep": "upper",
        "d/sub/new": "n2",
        "other": "dir",
        "other/kept": "data",
    }
    assert stat.S_IMODE((box.rootfs / "d").stat().st_mode) == 0o750


def test_opaque_marker_at_the_top_empties_the_lower_root(box):
    box.apply(file("a"), file("b/c"))
    box.apply(file(".wh..wh..opq", b""), file("new", b"n"))
    assert tree(box.rootfs) == {"new": "n"}


def test_aufs_metadata_is_ignored(box):
    box.apply(file(".wh..wh.plnk/123.456", b""), file(".wh..wh.aufs", b""), file("f", b"x"))
    assert tree(box.rootfs) == {"f": "x"}


def test_replacements_between_kinds(box):
    box.apply(directory("dir2file"), file("dir2file/child"), file("file2dir"), file("f2l"))
    box.apply(file("dir2file", b"now a file"), directory("file2dir"), file("file2dir/child"))
    box.apply(directory("file2dir/child"), symlink("f2l", "target"), symlink("l2f", "x"))
    box.apply(file("l2f", b"file"), file("f2l", b"file again"))
    assert tree(box.rootfs) == {
        "dir2file": "now a file",
        "f2l": "file again",
        "file2dir": "dir",
        "file2dir/child": "dir",
        "l2f": "file",
    }


def test_duplicate_entries_last_one_wins(box):
    box.apply(file("f", b"one"), file("f", b"two"), directory("d"), directory("d", mode=0o700))
    assert (box.rootfs / "f").read_text() == "two"
    assert stat.S_IMODE((box.rootfs / "d").stat().st_mode) == 0o700


def test_replacing_a_file_breaks_its_lower_hardlinks(box):
    box.apply(file("a", b"shared"), hardlink("b", "a"))
    box.apply(file("a", b"changed"))
    assert (box.rootfs / "a").read_text() == "changed"
    assert (box.rootfs / "b").read_text() == "shared"


def test_hardlinks_share_an_inode(box):
    box.apply(file("a", b"x"), hardlink("dir/b", "a"), hardlink("./c", "/a"))
    inodes = {(box.rootfs / p).stat().st_ino for p in ("a", "dir/b", "c")}
    assert len(inodes) == 1 and (box.rootfs / "a").stat().st_nlink == 3


def test_hardlink_to_a_lower_layer_file(box):
    box.apply(file("lower", b"l"))
    box.apply(hardlink("upper", "lower"))
    assert (box.rootfs / "upper").stat().st_ino == (box.rootfs / "lower").stat().st_ino


def test_hardlink_to_itself_is_harmless(box):
    box.apply(file("a", b"x"), hardlink("a", "a"))
    assert (box.rootfs / "a").read_text() == "x"


def test_symlinks_are_created_as_is(box):
    box.apply(symlink("abs", "/etc/passwd"), symlink("rel", "../../x"), symlink("d/l", "."))
    assert os.readlink(box.rootfs / "abs") == "/etc/passwd"
    assert os.readlink(box.rootfs / "rel") == "../../x"
    assert os.readlink(box.rootfs / "d/l") == "."


def test_modes_including_special_bits(box):
    box.apply(
        file("suid", mode=0o4755),
        file("sgid", mode=0o2711),
        directory("tmp", mode=0o1777),
        directory("ro", mode=0o555),
        file("ro/inside", b"i", mode=0o400),  # the dir gets its mode after its children
        fifo("pipe"),
    )
    modes = {p: stat.S_IMODE((box.rootfs / p).lstat().st_mode) for p in tree(box.rootfs)}
    assert modes == {
        "suid": 0o4755,
        "sgid": 0o2711,
        "tmp": 0o1777,
        "ro": 0o555,
        "ro/inside": 0o400,
        "pipe": 0o640,
    }
    (box.rootfs / "ro").chmod(0o755)  # let the fixture clean up as non-root


def test_implicit_parents_are_0755(box):
    box.apply(file("x/y/z"))
    assert stat.S_IMODE((box.rootfs / "x/y").stat().st_mode) == 0o755


def test_mtimes_of_files_symlinks_and_dirs(box):
    box.apply(
        directory("d", mtime=1_000),
        file("d/f", mtime=2_000),
        symlink("d/l", "f", mtime=3_000),
        directory("d/sub", mtime=4_000),
        file("d/sub/late", mtime=5_000),  # written after the dir's own entry
    )
    mtimes = {p: (box.rootfs / p).lstat().st_mtime for p in ("d", "d/f", "d/l", "d/sub")}
    assert mtimes == {"d": 1_000, "d/f": 2_000, "d/l": 3_000, "d/sub": 4_000}


def test_root_entry_sets_the_root_metadata(box):
    box.apply(directory("./", mode=0o750, mtime=1_234), file("f"))
    st = box.rootfs.stat()
    assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_mtime == 1_234


def test_root_entry_must_be_a_directory(box):
    with pytest.raises(LayerError, match="root"):
        box.apply(file("./", b"x"))


def test_xattrs_are_applied(box):
    info, data = file("f")
    info.pax_headers = {
        "SCHILY.xattr.user.bin": "\x00\udcffbinary",  # bytes 00 ff as tarfile decodes them
        "SCHILY.xattr.trusted.overlay.opaque": "y",
    }
    dinfo, _ = directory("d")
    dinfo.pax_headers = {"SCHILY.xattr.user.dir": "on dir"}
    warnings = box.apply((info, data), (dinfo, None))
    assert os.getxattr(box.rootfs / "f", "user.bin") == b"\x00\xffbinary"
    assert os.getxattr(box.rootfs / "d", "user.dir") == b"on dir"
    assert "trusted.overlay.opaque" not in os.listxattr(box.rootfs / "f")
    assert warnings == ["f: overlay xattr trusted.overlay.opaque not applied"]


def test_xattrs_that_cannot_be_set_are_warnings(box):
    info, _ = symlink("l", "target")
    info.pax_headers = {"SCHILY.xattr.user.x": "no user xattrs on symlinks"}
    warnings = box.apply((info, None))
    assert len(warnings) == 1 and "user.x" in warnings[0]


@needs_root
def test_ownership_as_root(box):
    box.apply(
        file("f", uid=1234, gid=5678),
        directory("d", uid=42, gid=43),
        symlink("l", "f", uid=7, gid=8),
        file("suid", mode=0o4755, uid=1000, gid=1000),
    )
    owners = {p: (box.rootfs / p).lstat()[4:6] for p in ("f", "d", "l")}
    assert owners == {"f": (1234, 5678), "d": (42, 43), "l": (7, 8)}
    assert stat.S_IMODE((box.rootfs / "suid").stat().st_mode) == 0o4755  # chown came first


def test_ownership_is_left_alone_without_root(box):
    box.apply(file("f", uid=1234, gid=5678), as_root=False)
    assert (box.rootfs / "f").stat()[4:6] == (os.geteuid(), os.getegid())


def test_large_files_stream_through(box):
    data = os.urandom(3 << 20) + b"end"
    box.apply(file("big", data))
    assert (box.rootfs / "big").read_bytes() == data


# -- malformed streams ---------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [b"", b"not a tar at all" * 100, layer(file("f", b"x" * 5000)).getvalue()[:1500]],
    ids=["empty", "garbage", "truncated"],
)
def test_malformed_tars_are_layer_errors(box, stream):
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(stream), box.rootfs)


def test_unknown_entry_types_are_refused(box):
    info, _ = file("odd", b"")
    info.type = b"Z"
    with pytest.raises(LayerError, match="unsupported"):
        box.apply((info, None))


def test_the_stream_is_read_to_its_end(box):
    stream = io.BytesIO(layer(file("f")).getvalue() + bytes(10_240))
    apply_layer(stream, box.rootfs)
    assert stream.tell() == len(stream.getvalue())


def test_walking_and_applying_read_a_layer_alike(box):
    from dockyard.layers.walk import walk_layer

    def walk(stream: io.BytesIO, name: str | None = None) -> object:
        return walk_layer(stream, lambda entry: None, name=name)

    def apply(stream: io.BytesIO, name: str | None = None) -> object:
        return apply_layer(stream, box.rootfs, name=name)

    truncated = layer(file("f", b"x" * 5000)).getvalue()[:1500]
    for read in (walk, apply):
        stream = io.BytesIO(layer(file("f")).getvalue() + bytes(10_240))
        read(stream)
        assert stream.tell() == len(stream.getvalue())
        with pytest.raises(LayerError, match=r"^layer 3: (malformed layer tar: |layer entry 'f')"):
            read(io.BytesIO(truncated), "layer 3")
        with pytest.raises(LayerError, match=r"^malformed layer tar: "):
            read(io.BytesIO(b"not a tar at all" * 100))


# -- flatten -------------------------------------------------------------------------


def test_flatten_mixed_compressions_in_order(box, tmp_path):
    def blob(compression, *entries):
        out = io.BytesIO()
        with CompressingWriter(out, compression) as writer:
            writer.write(layer(*entries).getvalue())
        return io.BytesIO(out.getvalue())

    rootfs = box.rootfs / "new"
    flatten(
        [
            blob("gzip", file("etc/os", b"one"), file("etc/gone")),
            blob("zstd", file("etc/os", b"two"), file("etc/.wh.gone", b"")),
            blob(None, file("etc/extra", b"three")),
        ],
        rootfs,
    )
    assert tree(rootfs) == {"etc": "dir", "etc/extra": "three", "etc/os": "two"}


def test_flatten_names_the_layer_in_its_errors(box):
    bad = io.BytesIO(layer(file("../../escape")).getvalue())
    with pytest.raises(LayerError, match=r"^layer sha256:1: layer entry '../../escape': path"):
        flatten(
            [io.BytesIO(layer(file("ok")).getvalue()), bad],
            box.rootfs,
            names=["l0", "layer sha256:1"],
        )


# -- holes ---------------------------------------------------------------------------

BLOCK = extract.HOLE_BLOCK


@pytest.mark.parametrize(
    ("data", "offset", "runs"),
    [
        (b"", 0, []),
        (b"x" * 100, 0, [(0, 100)]),
        (bytes(BLOCK - 1), 0, [(0, BLOCK - 1)]),  # shorter than a block: written
        (bytes(BLOCK), 0, []),
        (bytes(3 * BLOCK), 0, []),
        (b"x" + bytes(2 * BLOCK), 0, [(0, BLOCK), (2 * BLOCK, 2 * BLOCK + 1)]),
        (bytes(BLOCK) + b"x" + bytes(BLOCK), 0, [(BLOCK, 2 * BLOCK + 1)]),
        # at file offset 10, the first aligned block starts at BLOCK - 10 in data
        (bytes(2 * BLOCK), 10, [(0, BLOCK - 10), (2 * BLOCK - 10, 2 * BLOCK)]),
        (bytes(BLOCK) + b"x", BLOCK, [(BLOCK, BLOCK + 1)]),
    ],
)
def test_nonzero_runs_skip_only_whole_aligned_blocks_of_zeros(data, offset, runs):
    assert list(extract.nonzero_runs(data, offset)) == runs


def test_a_file_with_zero_blocks_reads_back_the_same_and_has_holes(box):
    data = b"head" + bytes(4 * BLOCK) + b"middle" + bytes(3 * extract.CHUNK) + b"end"
    box.apply(file("f", data))
    path = box.rootfs / "f"
    assert path.read_bytes() == data
    assert path.stat().st_blocks * 512 <= 4 * BLOCK  # the blocks holding data, not 3 MiB


def test_a_file_ending_in_zeros_keeps_its_size(box):
    data = b"x" + bytes(2 * extract.CHUNK)
    box.apply(file("f", data), file("empty", b""))
    assert (box.rootfs / "f").stat().st_size == len(data)
    assert (box.rootfs / "f").read_bytes() == data
    assert (box.rootfs / "empty").stat().st_size == 0


def test_data_regions_of_plain_and_sparse_members():
    plain = tarfile.TarInfo("f")
    plain.size = 10
    assert extract.data_regions(plain) == [(0, 10)]
    plain.size = 0
    assert extract.data_regions(plain) == []
    sparse = tarfile.TarInfo("s")
    sparse.size = 1000
    sparse.sparse = [(0, 0), (10, 5), (512, 0), (600, 400), (1000, 0)]
    assert extract.data_regions(sparse) == [(10, 5), (600, 400)]  # empty regions dropped
    for bad in ([(10, 5), (12, 1)], [(600, 10), (10, 5)], [(990, 11)], [(10, -5)]):
        sparse.sparse = bad
        with pytest.raises(LayerError, match="'s': invalid sparse map"):
            extract.data_regions(sparse)


def test_a_nul_in_a_pax_path_is_a_layer_error_not_a_traceback(box):
    info, data = file("x")
    info.pax_headers = {"path": "a\0b"}
    with pytest.raises(LayerError, match=r"^layer entry 'a\\x00b': embedded null byte$"):
        box.apply((info, data))


def test_a_sparse_map_without_its_numbers_is_a_layer_error_not_a_traceback(box):
    info = tarfile.TarInfo("GNUSparseFile.0/f")
    info.size = 1024
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "f",
        "GNU.sparse.realsize": "10",
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"99\n" + bytes(1021)))  # 99 numbers promised, none
    with pytest.raises(LayerError, match=r"^malformed layer tar: "):
        apply_layer(io.BytesIO(out.getvalue()), box.rootfs)
