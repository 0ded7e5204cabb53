"""Packing directories into deterministic layer blobs, and unpacking them back."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import struct
import subprocess
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from dockyard.errors import LayerError
from dockyard.layers import flatten, open_decompressed, pack
from dockyard.oci import mediatypes as mt

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")
# A valid VFS_CAP_REVISION_2 value: effective, permitted cap_net_bind_service.
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def snapshot(root: Path) -> tuple[dict[bytes, tuple], list[list[bytes]]]:
    """Everything a layer carries, per path: type, mode, owner, content or link target or
    device, mtime (seconds), user./security. xattrs; plus the groups of hardlinked paths."""
    entries: dict[bytes, tuple] = {}
    inodes: dict[tuple[int, int], list[bytes]] = defaultdict(list)
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            fmt = stat.S_IFMT(st.st_mode)
            if fmt == stat.S_IFREG:
                content: object = hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes[(st.st_dev, st.st_ino)].append(os.path.relpath(path, base))
            elif fmt == stat.S_IFLNK:
                content = os.readlink(path)
            elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
                content = st.st_rdev
            else:
                content = None
            xattrs = tuple(
                (a, os.getxattr(path, a, follow_symlinks=False))
                for a in sorted(os.listxattr(path, follow_symlinks=False))
                if a.startswith(("user.", "security."))
            )
            entries[os.path.relpath(path, base)] = (
                fmt,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                content,
                st.st_mtime_ns // 1_000_000_000,
                xattrs,
            )
    groups = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return entries, groups


def make_tree(root: Path) -> None:
    """A tree with every kind of entry a layer holds, and the awkward cases."""
    root.mkdir()
    (root / "bin").mkdir()
    big = root / "bin/tool"
    big.write_bytes(os.urandom(3 << 20) + b"tail")  # more than one 1 MiB chunk
    big.chmod(0o4755)
    os.link(big, root / "bin/tool-again")
    # Sort order: "a" < "a-b" < "a.b" < "a/b" bytewise; a depth-first walk gives another.
    (root / "a").mkdir()
    (root / "a/b").write_text("in a\n")
    (root / "a-b").write_text("dash\n")
    (root / "a.b").write_text("dot\n")
    # The first name in sort order carries the data, whatever was created first.
    (root / "zzz").mkdir()
    (root / "zzz/orig").write_text("linked\n")
    (root / "aaa").mkdir()
    os.link(root / "zzz/orig", root / "aaa/link")
    (root / "etc").mkdir()
    (root / "etc/conf").write_text("key = value\n")
    (root / "etc/conf").chmod(0o640)
    os.setxattr(root / "etc/conf", "user.comment", b"\x00\xffbinary")
    (root / "etc/empty").touch()
    for name, mode in (("sticky", 0o1777), ("private", 0o700), ("setgid", 0o2750)):
        (root / name).mkdir()
        (root / name).chmod(mode)
    (root / "private/secret").write_text("s\n")
    (root / "links").mkdir()
    (root / "links/rel").symlink_to("../etc/conf")
    (root / "links/abs").symlink_to("/etc/passwd")
    (root / "links/dangling").symlink_to("nowhere")
    (root / "links/dir").symlink_to("../a")
    (root / "links/long").symlink_to("t" * 150)
    os.mkfifo(root / "fifo")
    long_dir = root / ("d" * 120)
    long_dir.mkdir()
    (long_dir / ("f" * 200)).write_text("long\n")
    (root / "héllo wörld").write_text("utf-8\n")
    Path(os.fsdecode(os.fsencode(root) + b"/caf\xe9")).write_text("latin-1 name\n")
    if ROOT:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.chown(root / "etc/conf", 1234, 5678)
        os.chown(root / "private", 4321, 8765, follow_symlinks=False)
        os.chown(root / "links/rel", 99, 98, follow_symlinks=False)
        os.setxattr(big, "security.capability", CAPABILITY)  # after chown, which clears it
    os.utime(root / "etc/conf", (1_000_000_000, 1_000_000_000))
    os.utime(root / "links/rel", (1_100_000_000, 1_100_000_000), follow_symlinks=False)
    os.utime(root / "private", (1_200_000_000, 1_200_000_000))


def add_socket(path: Path, monkeypatch) -> None:
    monkeypatch.chdir(path.parent)  # AF_UNIX paths are short: bind a relative one
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path.name)


def pack_bytes(src: Path, compression: str | None = "gzip", **kw) -> tuple[bytes, object]:
    out = io.BytesIO()
    packed = pack(src, out, compression=compression, **kw)
    return out.getvalue(), packed


def members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=open_decompressed(io.BytesIO(blob)), mode="r|") as tar:
        return list(tar)


def names(blob: bytes) -> list[str]:
    return [m.name for m in members(blob)]


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "tree"
    make_tree(root)
    add_socket(root / "sock", monkeypatch)
    return root


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_round_trip_gives_back_the_tree(tree, tmp_path, compression):
    blob, _ = pack_bytes(tree, compression)
    out = tmp_path / "out"
    assert flatten([io.BytesIO(blob)], out) == []
    expected, links = snapshot(tree)
    del expected[b"sock"]  # sockets are not layer content
    assert snapshot(out) == (expected, links)
    assert links == [[b"aaa/link", b"zzz/orig"], [b"bin/tool", b"bin/tool-again"]]


@pytest.mark.parametrize(
    ("compression", "media_type"),
    [("gzip", mt.OCI_LAYER_GZIP), ("zstd", mt.OCI_LAYER_ZSTD), (None, mt.OCI_LAYER)],
)
def test_digests_size_and_media_type(tree, compression, media_type):
    blob, packed = pack_bytes(tree, compression)
    tar = open_decompressed(io.BytesIO(blob)).read()
    assert packed.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert packed.size == len(blob)
    assert packed.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert packed.media_type == media_type
    descriptor = packed.descriptor()
    assert (descriptor.digest, descriptor.size, descriptor.media_type) == (
        packed.digest,
        packed.size,
        media_type,
    )
    if compression is None:
        assert packed.diff_id == packed.digest


def test_diff_id_does_not_depend_on_compression(tree):
    diff_ids = {pack_bytes(tree, c)[1].diff_id for c in ("gzip", "zstd", None)}
    assert len(diff_ids) == 1


def test_same_tree_same_bytes_even_copied(tree, tmp_path):
    """Same content in other inodes, created in another order: byte-identical blob."""
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    first, _ = pack_bytes(tree)
    assert pack_bytes(tree)[0] == first
    assert pack_bytes(copy)[0] == first


def test_content_changes_change_the_digest(tree):
    before = pack_bytes(tree)[1]
    (tree / "etc/empty").write_text("x")
    os.utime(tree / "etc/empty", (0, 0))
    after = pack_bytes(tree)[1]
    assert before.digest != after.digest and before.diff_id != after.diff_id


def test_source_date_epoch_clamps_mtimes(tmp_path):
    epoch = 1_600_000_000
    trees = []
    for n, mtime in enumerate((1_700_000_000, 1_750_000_000)):
        root = tmp_path / f"t{n}"
        (root / "dir").mkdir(parents=True)
        (root / "dir/new").write_text("same\n")
        (root / "old").write_text("old\n")
        os.utime(root / "old", (1_000_000_000, 1_000_000_000))  # before the epoch: kept
        for path in (root / "dir/new", root / "dir"):
            os.utime(path, (mtime, mtime))
        trees.append(root)
    unclamped = [pack_bytes(t)[1].digest for t in trees]
    assert unclamped[0] != unclamped[1]
    clamped = [pack_bytes(t, source_date_epoch=epoch) for t in trees]
    assert clamped[0][1].digest == clamped[1][1].digest
    mtimes = {m.name: m.mtime for m in members(clamped[0][0])}
    assert mtimes == {"dir": epoch, "dir/new": epoch, "old": 1_000_000_000}


def test_entries_are_sorted_bytewise(tree):
    listed = [os.fsencode(n) for n in names(pack_bytes(tree)[0])]
    assert listed == sorted(listed)
    assert listed.index(b"a") < listed.index(b"a-b") < listed.index(b"a.b") < listed.index(b"a/b")


def test_headers_are_pax_with_numeric_ids_only(tree):
    blob, _ = pack_bytes(tree, None)
    for member in members(blob):
        assert member.uname == "" and member.gname == ""
        assert not {"atime", "ctime", "uname", "gname"} & set(member.pax_headers)
        assert isinstance(member.mtime, int)
    # Every header, pax ones included, has the POSIX magic and no user or group names.
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        offsets = {o for m in tar for o in (m.offset, m.offset_data - 512)}
    headers = [blob[o : o + 512] for o in sorted(offsets)]
    assert len(headers) > len(members(blob))  # long names and xattrs made pax headers
    assert all(h[257:265] == b"ustar\x0000" and h[265:329] == bytes(64) for h in headers)


def test_directories_end_with_a_slash_and_the_root_is_not_an_entry(tree):
    blob, _ = pack_bytes(tree, None)
    raw_names = [blob[o : o + 100].rstrip(b"\0") for o in range(0, len(blob), 512)]
    assert b"a/" in raw_names and b"bin/" in raw_names
    assert not {"", ".", "./", "/"} & set(names(blob))


def test_hardlinks_point_at_the_first_name_in_sort_order(tree):
    by_name = {m.name: m for m in members(pack_bytes(tree)[0])}
    assert by_name["aaa/link"].isreg() and by_name["aaa/link"].size == len("linked\n")
    assert by_name["zzz/orig"].islnk() and by_name["zzz/orig"].linkname == "aaa/link"
    assert by_name["bin/tool"].isreg()
    assert by_name["bin/tool-again"].islnk() and by_name["bin/tool-again"].linkname == "bin/tool"


def test_special_files(tree):
    by_name = {m.name: m for m in members(pack_bytes(tree)[0])}
    assert "sock" not in by_name
    assert by_name["fifo"].isfifo()
    assert by_name["links/abs"].issym() and by_name["links/abs"].linkname == "/etc/passwd"
    assert by_name["links/long"].linkname == "t" * 150
    assert by_name["d" * 120 + "/" + "f" * 200].isreg()
    assert by_name["bin/tool"].mode == 0o4755 and by_name["sticky"].mode == 0o1777
    if ROOT:
        null = by_name["null"]
        assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
        assert (by_name["etc/conf"].uid, by_name["etc/conf"].gid) == (1234, 5678)


def test_user_and_security_xattrs_travel_as_pax_records(tree):
    by_name = {m.name: m for m in members(pack_bytes(tree)[0])}
    record = by_name["etc/conf"].pax_headers["SCHILY.xattr.user.comment"]
    assert record.encode("utf-8", "surrogateescape") == b"\x00\xffbinary"
    if ROOT:
        cap = by_name["bin/tool"].pax_headers["SCHILY.xattr.security.capability"]
        assert cap.encode("utf-8", "surrogateescape") == CAPABILITY


@needs_root
def test_trusted_xattrs_stay_out(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "f").touch()
    os.setxattr(root / "f", "trusted.secret", b"1")
    os.setxattr(root / "f", "user.kept", b"2")
    (member,) = members(pack_bytes(root)[0])
    assert set(member.pax_headers) == {"SCHILY.xattr.user.kept"}


def test_reserved_whiteout_names_are_refused(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / ".wh.file").touch()
    with pytest.raises(LayerError, match=r"\.wh\.file"):
        pack(root, io.BytesIO())


def test_a_file_that_shrinks_while_packed_is_an_error(tmp_path, monkeypatch):
    root = tmp_path / "t"
    root.mkdir()
    (root / "f").write_text("short")
    real_fstat = os.fstat
    extra = ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")

    def fstat_says_bigger(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        fields = list(st[:10])
        fields[stat.ST_SIZE] += 100
        return os.stat_result(fields, {name: getattr(st, name) for name in extra})

    monkeypatch.setattr(os, "fstat", fstat_says_bigger)
    with pytest.raises(LayerError, match="shrank"):
        pack(root, io.BytesIO())


def test_unreadable_sources_are_layer_errors(tmp_path):
    with pytest.raises(LayerError, match=r"cannot pack .*missing"):
        pack(tmp_path / "missing", io.BytesIO())
    (tmp_path / "file").touch()
    with pytest.raises(LayerError, match=r"cannot pack .*file"):
        pack(tmp_path / "file", io.BytesIO())


def test_plain_mode_keeps_a_0_0_device_as_a_device(tmp_path):
    if not ROOT:
        pytest.skip("needs root to make device nodes")
    root = tmp_path / "t"
    root.mkdir()
    os.mknod(root / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (member,) = members(pack_bytes(root)[0])
    assert member.name == "gone" and member.ischr()


# -- overlay upper dirs ----------------------------------------------------------------


@needs_root
def test_overlay_whiteouts_and_opaque_dirs(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc/deleted", stat.S_IFCHR, os.makedev(0, 0))
    os.chown(upper / "etc/deleted", 7, 8)
    (upper / "etc/added").write_text("new\n")
    (upper / "var").mkdir()
    (upper / "var").chmod(0o751)
    os.setxattr(upper / "var", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "var", "user.kept", b"v")
    (upper / "var/fresh").write_text("fresh\n")
    (upper / "notopaque").mkdir()
    os.setxattr(upper / "notopaque", "trusted.overlay.opaque", b"x")
    blob, _ = pack_bytes(upper, overlay=True, source_date_epoch=1_000)
    by_name = {m.name: m for m in members(blob)}
    assert list(by_name) == [
        "etc",
        "etc/.wh.deleted",
        "etc/added",
        "notopaque",
        "var",
        "var/.wh..wh..opq",
        "var/fresh",
    ]
    whiteout = by_name["etc/.wh.deleted"]
    assert whiteout.isreg() and whiteout.size == 0 and whiteout.mode == 0o600
    assert (whiteout.uid, whiteout.gid, whiteout.mtime) == (7, 8, 1_000)
    opaque = by_name["var/.wh..wh..opq"]
    assert opaque.isreg() and opaque.size == 0 and opaque.mode == 0o751
    assert by_name["var"].isdir()
    assert set(by_name["var"].pax_headers) == {"SCHILY.xattr.user.kept"}
    assert not any("overlay" in k for m in by_name.values() for k in m.pax_headers)


def test_overlay_user_xattr_mode_opaque_dirs(tmp_path):
    """overlayfs mounted with userxattr (rootless) marks opaque dirs with user.overlay.*."""
    upper = tmp_path / "upper"
    (upper / "var").mkdir(parents=True)
    os.setxattr(upper / "var", "user.overlay.opaque", b"y")
    by_name = {m.name: m for m in members(pack_bytes(upper, overlay=True)[0])}
    assert list(by_name) == ["var", "var/.wh..wh..opq"]
    assert by_name["var"].pax_headers == {}
    # Without overlay mode, an xattr is just an xattr.
    by_name = {m.name: m for m in members(pack_bytes(upper)[0])}
    assert list(by_name) == ["var"]


def test_overlay_redirects_are_refused(tmp_path):
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "user.overlay.redirect", b"/original")
    with pytest.raises(LayerError, match="redirect_dir=off"):
        pack(upper, io.BytesIO(), overlay=True)


@needs_root
def test_overlay_pack_then_apply_deletes_from_lower(tmp_path):
    """The whiteouts an upper dir produces delete what the lower layer had."""
    lower = tmp_path / "lower"
    (lower / "keep").mkdir(parents=True)
    (lower / "keep/file").write_text("kept\n")
    (lower / "keep/gone").write_text("deleted\n")
    (lower / "opaque").mkdir()
    (lower / "opaque/old").write_text("hidden\n")
    upper = tmp_path / "upper"
    (upper / "keep").mkdir(parents=True)
    os.mknod(upper / "keep/gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "opaque").mkdir()
    (upper / "opaque/new").write_text("new\n")
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    layers = [
        io.BytesIO(pack_bytes(lower)[0]),
        io.BytesIO(pack_bytes(upper, overlay=True)[0]),
    ]
    rootfs = tmp_path / "rootfs"
    flatten(layers, rootfs)
    files = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    assert files == ["keep", "keep/file", "opaque", "opaque/new"]


@pytest.mark.parametrize(
    "name, uid, size, mtime",
    [
        (b"plain.txt", 0, 12, 1_700_000_000),
        (b"d/" + b"x" * 98, 65534, 0, 0),  # exactly 100 bytes
        (b"d/" + b"x" * 99, 1, 5, 1),  # 101: a pax path record
        ("é.txt".encode(), 0, 1, 1),  # not ASCII: a pax path record
        (b"big", 8**7, 8**11, 8**11),  # id, size and time beyond ustar: pax records
    ],
)
def test_the_fast_file_header_is_the_general_one(name, uid, size, mtime):
    from dockyard.layers import tarformat

    general = tarformat.header(
        name, tarformat.REGTYPE, mode=0o4755, uid=uid, gid=7, mtime=mtime, size=size
    )
    assert tarformat.file_header(name, 0o4755, uid, 7, size, mtime) == general
    with tarfile.open(fileobj=io.BytesIO(general + bytes(1024)), mode="r:") as tar:
        member = tar.next()  # the header alone: no data follows
    assert member is not None
    assert member.name == name.decode() and member.size == size and member.uid == uid


def previous_tree(root: Path) -> Path:
    """A tree with what an older layer's members may be: long and non-ASCII names (pax
    records), xattrs, a file bigger than a read, a symlink, a whiteout."""
    (root / "d").mkdir(parents=True)
    for i in range(20):
        (root / "d" / f"f{i}.txt").write_text(f"file {i}\n")
    (root / "d" / ("long-" * 30)).write_text("a long name\n")
    (root / "d/ünï.txt").write_text("not ascii\n")
    (root / "d/big.bin").write_bytes(os.urandom((1 << 20) + 12345))
    (root / "d/attrs.txt").write_text("with xattrs\n")
    os.setxattr(root / "d/attrs.txt", "user.note", b"kept")
    os.symlink("f1.txt", root / "d/link")
    return root


def repacked(tree: Path, old: bytes, diff_id: str, rewritten: set[bytes]) -> bytes:
    """``tree`` packed with the members of the gzip blob ``old`` (of diff ID ``diff_id``)."""
    from dockyard.layers.packer import Previous

    out = io.BytesIO()
    with open_decompressed(io.BytesIO(old)) as tar:
        pack(tree, out, overlay=True, previous=Previous(tar, diff_id, frozenset(rewritten)))
    return out.getvalue()


@needs_root
def test_members_taken_from_the_older_layer_give_the_bytes_of_a_plain_pack(tmp_path):
    """A tree cloned from an older layer's snapshot, a few files rewritten, added and
    removed: packed with the older layer's members, it is the same blob, byte for byte."""
    from dockyard.runtime.treecopy import clone_tree

    older = previous_tree(tmp_path / "older")
    old, packed = pack_bytes(older, overlay=True)
    new = tmp_path / "new"
    new.mkdir()
    clone_tree(str(older), str(new), skip={"d/f3.txt", "d/f7.txt"})
    (new / "d/f3.txt").write_text("rewritten\n")
    (new / "d/added.txt").write_text("added\n")
    rewritten = {b"d/f3.txt", b"d/added.txt"}

    assert repacked(new, old, packed.diff_id, rewritten) == pack_bytes(new, overlay=True)[0]
    assert repacked(older, old, packed.diff_id, set()) == old  # the whole layer taken


@needs_root
def test_an_older_layer_that_is_not_what_it_says_is_stale(tmp_path):
    """A tar that does not hash to its diff ID, or that has hardlinks (a clone may break
    them): StalePrevious, and the caller packs the tree plainly."""
    from dockyard.layers.packer import StalePrevious

    older = previous_tree(tmp_path / "older")
    old, packed = pack_bytes(older, overlay=True)
    with pytest.raises(StalePrevious):
        repacked(older, old, "sha256:" + "0" * 64, set())
    os.link(older / "d/f1.txt", older / "d/hard.txt")
    old, packed = pack_bytes(older, overlay=True)
    with pytest.raises(StalePrevious):
        repacked(older, old, packed.diff_id, set())
