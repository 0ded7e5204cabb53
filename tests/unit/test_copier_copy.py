"""COPY from the build context into a rootfs, with BuildKit's (fsutil's) semantics."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from dockyard.builder import copier
from dockyard.errors import BuildError
from tests.support.copier import context, instruction, mode, needs_root, owner, run

pytestmark = needs_root

T1 = 1_600_000_000_000_000_000  # a fixed past time for sources (ns)


@pytest.fixture
def ctx(tmp_path) -> Path:
    root = tmp_path / "ctx"
    (root / "dir/sub").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "b.txt").write_text("b\n")
    (root / "ab").write_text("ab\n")
    (root / "bz").write_text("bz\n")
    (root / "abc").write_text("abc\n")
    (root / "dir/x").write_text("dir x\n")
    (root / "dir/sub/x").write_text("sub x\n")
    (root / "dir/sub/notes.md").write_text("md\n")
    (root / "other/deep").mkdir(parents=True)
    (root / "other/deep/x").write_text("other x\n")
    for path in root.rglob("*"):
        os.utime(path, ns=(T1, T1))
    os.utime(root, ns=(T1, T1))
    return root


@pytest.fixture
def rootfs(tmp_path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "existing").mkdir()
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n"
    )
    (root / "etc/group").write_text("root:x:0:\napp:x:1001:\nstaff:x:50:\n")
    return root


# -- destinations --------------------------------------------------------------------


def test_file_into_existing_directory_keeps_its_name(ctx, rootfs):
    run("COPY a.txt /existing", rootfs, ctx)
    assert (rootfs / "existing/a.txt").read_text() == "a\n"


def test_file_to_a_new_name_is_a_rename(ctx, rootfs):
    run("COPY a.txt /new/name.txt", rootfs, ctx)
    assert (rootfs / "new/name.txt").read_text() == "a\n"
    assert mode(rootfs / "new") == 0o755  # parents made on the way


def test_trailing_slash_makes_the_destination_a_directory(ctx, rootfs):
    run("COPY a.txt /made/", rootfs, ctx)
    assert (rootfs / "made/a.txt").read_text() == "a\n"
    run("COPY a.txt /plain", rootfs, ctx)
    assert (rootfs / "plain").read_text() == "a\n"


def test_destination_is_relative_to_workdir(ctx, rootfs):
    run("COPY a.txt .", rootfs, ctx, workdir="/srv/app")
    run("COPY b.txt sub/renamed", rootfs, ctx, workdir="/srv/app")
    assert (rootfs / "srv/app/a.txt").read_text() == "a\n"
    assert (rootfs / "srv/app/sub/renamed").read_text() == "b\n"


def test_directory_source_copies_its_contents(ctx, rootfs):
    run("COPY dir /d", rootfs, ctx)
    assert sorted(p.name for p in (rootfs / "d").iterdir()) == ["sub", "x"]
    assert (rootfs / "d/sub/x").read_text() == "sub x\n"
    run("COPY dir /existing", rootfs, ctx)  # merged into an existing directory
    assert (rootfs / "existing/x").read_text() == "dir x\n"
    run("COPY . /all", rootfs, ctx)
    assert (rootfs / "all/dir/sub/notes.md").exists() and (rootfs / "all/a.txt").exists()


def test_existing_file_is_replaced_but_never_a_directory_by_a_file(ctx, rootfs):
    (rootfs / "f").write_text("old")
    (rootfs / "f2").symlink_to("/etc/passwd")
    run("COPY a.txt /f", rootfs, ctx)
    run("COPY b.txt /f2", rootfs, ctx)  # the symlink is followed (inside the rootfs)
    assert (rootfs / "f").read_text() == "a\n"
    assert (rootfs / "etc/passwd").read_text() == "b\n"
    (rootfs / "d/x").mkdir(parents=True)
    with pytest.raises(BuildError, match=r"Dockerfile:2: cannot replace to directory /d/x"):
        run("COPY dir /d", rootfs, ctx)


def test_directory_onto_a_file_is_refused(ctx, rootfs):
    (rootfs / "file").write_text("x")
    with pytest.raises(BuildError, match="cannot copy to non-directory: /file"):
        run("COPY dir /file", rootfs, ctx)
    with pytest.raises(BuildError, match="not a directory"):
        run("COPY a.txt /file/inside/", rootfs, ctx)


def test_several_files_need_a_directory_destination(ctx, rootfs):
    with pytest.raises(BuildError, match=r"Dockerfile:2: When using COPY with more than one"):
        run("COPY a.txt b.txt /dst", rootfs, ctx)
    with pytest.raises(BuildError, match="more than one source"):
        run("COPY *.txt /dst", rootfs, ctx)
    assert not (rootfs / "dst").exists()
    run("COPY a.txt b.txt /existing", rootfs, ctx)  # an existing directory is fine
    run("COPY *.txt /dst/", rootfs, ctx)
    assert sorted(p.name for p in (rootfs / "dst").iterdir()) == ["a.txt", "b.txt"]
    run("COPY dir other /merged", rootfs, ctx)  # directories' contents merge (BuildKit)
    assert (rootfs / "merged/deep/x").exists() and (rootfs / "merged/sub/x").exists()


# -- sources -------------------------------------------------------------------------


def test_missing_source_is_an_error_at_its_line(ctx, rootfs):
    with pytest.raises(BuildError) as e:
        copier.plan_copy(instruction("COPY missing.txt /x"), context(ctx), None)
    assert str(e.value) == 'Dockerfile:2: failed to compute cache key: "/missing.txt": not found'
    assert e.value.line == 2


def test_ignored_source_is_missing(ctx, rootfs):
    with pytest.raises(BuildError, match="not found"):
        run("COPY a.txt /x", rootfs, ctx, ignore=["*.txt"])
    run("COPY . /all", rootfs, ctx, ignore=["*.txt", "dir", "!dir/sub/x"])
    assert not (rootfs / "all/a.txt").exists() and not (rootfs / "all/dir/x").exists()
    assert (rootfs / "all/dir/sub/x").read_text() == "sub x\n"  # its parents exist


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*.txt", ["a.txt", "b.txt"]),
        ("[ab]?", ["ab", "bz"]),
        ("a*", ["a.txt", "ab", "abc"]),
        ("dir/*/x", ["x"]),
        ("*/*/x", ["x"]),
        ("?", []),
    ],
)
def test_globs_match_like_go_filepath_match(ctx, rootfs, pattern, expected):
    run(f"COPY {pattern} /g/", rootfs, ctx)
    found = sorted(p.name for p in (rootfs / "g").iterdir()) if (rootfs / "g").exists() else []
    assert found == expected


def test_glob_matching_directories_copies_their_contents(ctx, rootfs):
    run("COPY d* /g/", rootfs, ctx)
    assert sorted(p.name for p in (rootfs / "g").iterdir()) == ["sub", "x"]


def test_empty_glob_copies_nothing_but_a_missing_glob_directory_fails(ctx, rootfs):
    run("COPY *.nothing /g/", rootfs, ctx)  # BuildKit allows empty wildcards
    assert not (rootfs / "g").exists()
    with pytest.raises(BuildError, match="lstat /nodir: no such file or directory"):
        run("COPY nodir/*.txt /g/", rootfs, ctx)


def test_excludes_apply_below_each_source(ctx, rootfs):
    run("COPY --exclude=*.md --exclude=sub/x dir /e1/", rootfs, ctx)
    # *.md only matches at the top (moby/buildkit#5509: use **/*.md for any depth)
    assert sorted(str(p.relative_to(rootfs / "e1")) for p in (rootfs / "e1").rglob("*")) == [
        "sub",
        "sub/notes.md",
        "x",
    ]
    run("COPY --exclude=**/*.md --exclude=!sub/notes.md --exclude=sub . /e2/", rootfs, ctx)
    # relative to ".": "sub" and "!sub/notes.md" name nothing there
    assert (rootfs / "e2/dir/sub/x").exists() and not (rootfs / "e2/dir/sub/notes.md").exists()
    run("COPY --exclude=dir/sub --exclude=!dir/sub/notes.md . /e3/", rootfs, ctx)
    assert sorted(p.name for p in (rootfs / "e3/dir/sub").iterdir()) == ["notes.md"]
    assert mode(rootfs / "e3/dir/sub") == mode(ctx / "dir/sub")


def test_parents_keeps_the_source_path(ctx, rootfs):
    run("COPY --parents dir/sub/x other/deep/x /p/", rootfs, ctx)
    assert (rootfs / "p/dir/sub/x").read_text() == "sub x\n"
    assert (rootfs / "p/other/deep/x").read_text() == "other x\n"
    assert not (rootfs / "p/dir/x").exists()
    run("COPY --parents ./dir/./sub/x /q/", rootfs, ctx)  # "/./" is the pivot
    assert (rootfs / "q/sub/x").exists() and not (rootfs / "q/dir").exists()
    run("COPY --parents */*/x /r/", rootfs, ctx)
    assert sorted(str(p.relative_to(rootfs / "r")) for p in (rootfs / "r").rglob("x")) == [
        "dir/sub/x",
        "other/deep/x",
    ]
    with pytest.raises(BuildError, match=r'"/dir/nothing": not found'):
        run("COPY --parents dir/nothing /p/", rootfs, ctx)


def test_symlinks_are_copied_as_symlinks_but_a_symlink_source_is_followed(ctx, rootfs):
    (ctx / "dir/rel").symlink_to("x")
    (ctx / "dir/abs").symlink_to("/etc/shadow")
    (ctx / "top").symlink_to("dir/x")
    (ctx / "todir").symlink_to("dir/sub")
    run("COPY dir /d/", rootfs, ctx)
    assert os.readlink(rootfs / "d/rel") == "x"
    assert os.readlink(rootfs / "d/abs") == "/etc/shadow"
    run("COPY top todir /t/", rootfs, ctx)
    assert not (rootfs / "t/top").is_symlink() and (rootfs / "t/top").read_text() == "dir x\n"
    assert (rootfs / "t/notes.md").exists()  # a directory's contents, through the link


def test_context_symlink_cannot_reach_outside_the_context(ctx, rootfs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    (ctx / "escape").symlink_to(secret)
    (ctx / "climb").symlink_to("../secret")
    for source in ("escape", "climb"):
        with pytest.raises(BuildError, match="not found"):
            run(f"COPY {source} /s", rootfs, ctx)
    assert not (rootfs / "s").exists()


def test_hardlinks_within_a_source_stay_hardlinks(ctx, rootfs):
    os.link(ctx / "dir/x", ctx / "dir/sub/x-link")
    run("COPY dir /h/", rootfs, ctx)
    assert (rootfs / "h/x").stat().st_ino == (rootfs / "h/sub/x-link").stat().st_ino
    assert (rootfs / "h/x").stat().st_nlink == 2


def test_modes_and_times_are_kept_owners_are_root(ctx, rootfs):
    os.chown(ctx / "dir/x", 1234, 5678)
    os.chmod(ctx / "dir/x", 0o4751)
    os.chmod(ctx / "dir/sub", 0o711)
    os.utime(ctx / "dir/x", ns=(T1, T1 + 123))
    os.utime(ctx / "dir/sub", ns=(T1, T1 + 456))
    run("COPY dir /m", rootfs, ctx)
    assert mode(rootfs / "m/x") == 0o4751
    assert mode(rootfs / "m/sub") == 0o711
    assert owner(rootfs / "m/x") == (0, 0)  # the context arrives as 0:0
    assert (rootfs / "m/x").stat().st_mtime_ns == T1 + 123
    assert (rootfs / "m/sub").stat().st_mtime_ns == T1 + 456
    assert (rootfs / "m").stat().st_mtime_ns == T1  # the top only takes the times


def test_special_files(ctx, rootfs):
    os.mkfifo(ctx / "dir/fifo", 0o640)
    os.mknod(ctx / "dir/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    run("COPY dir /s", rootfs, ctx)
    assert stat.S_ISFIFO((rootfs / "s/fifo").lstat().st_mode) and mode(rootfs / "s/fifo") == 0o640
    st = (rootfs / "s/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def make_socket(directory: Path, name: str, monkeypatch) -> None:
    """A Unix socket ``name`` in ``directory`` (bound by a relative name: tmp paths can
    be longer than a socket address)."""
    monkeypatch.chdir(directory)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(name)
    os.chmod(directory / name, 0o751)
    os.utime(directory / name, ns=(T1, T1), follow_symlinks=False)


def test_a_socket_becomes_an_empty_file(ctx, rootfs, tmp_path, monkeypatch):
    """fsutil copies a socket as an empty regular file with its mode and times (BuildKit's
    testCopySocket), from the context and from a stage, inside a tree or named alone."""
    make_socket(ctx / "dir", "sock", monkeypatch)
    stage = tmp_path / "stage"
    (stage / "run").mkdir(parents=True)
    make_socket(stage / "run", "app.sock", monkeypatch)
    run("COPY dir /s", rootfs, ctx)
    run("COPY dir/sock /alone", rootfs, ctx)
    run("COPY --from=stage /run /from-stage", rootfs, source_root=stage)
    for path in ("s/sock", "alone", "from-stage/app.sock"):
        st = (rootfs / path).lstat()
        assert stat.S_ISREG(st.st_mode), path
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0, 0o751, T1), path


# -- --chown and --chmod -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        ("app", (1000, 1001)),
        ("app:staff", (1000, 50)),
        ("1000", (1000, 1000)),  # a numeric user alone means uid:uid, as BuildKit
        ("1000:50", (1000, 50)),
        ("12:app", (12, 1001)),
        ("root:staff", (0, 50)),
        ("app:", (1000, 0)),
    ],
)
def test_chown_names_resolve_in_the_destination(ctx, rootfs, spec, ids):
    run(f"COPY --chown={spec} dir /made/deeper/c", rootfs, ctx)
    for path in ("made/deeper/c", "made/deeper/c/x", "made/deeper/c/sub", "made/deeper/c/sub/x"):
        assert owner(rootfs / path) == ids, path
    assert owner(rootfs / "made") == ids  # directories made on the way too
    assert owner(rootfs / "existing") == (0, 0)


def test_chown_unknown_name_is_an_error(ctx, rootfs):
    with pytest.raises(BuildError, match=r"Dockerfile:2: unable to find user nobody"):
        run("COPY --chown=nobody a.txt /x", rootfs, ctx)
    with pytest.raises(BuildError, match="unable to find group wheel"):
        run("COPY --chown=app:wheel a.txt /x", rootfs, ctx)


def test_chown_lookup_stays_inside_the_rootfs(ctx, rootfs, tmp_path):
    (tmp_path / "host-passwd").write_text("evil:x:4242:4242::/:/bin/sh\n")
    (rootfs / "etc/passwd").unlink()
    (rootfs / "etc/passwd").symlink_to(tmp_path / "host-passwd")  # means <rootfs>/<that path>
    with pytest.raises(BuildError, match="unable to find user evil"):
        run("COPY --chown=evil a.txt /x", rootfs, ctx)


def test_chmod_octal_applies_to_files_and_directories(ctx, rootfs):
    os.chmod(ctx / "dir/x", 0o600)
    run("COPY --chmod=4750 dir /c/new/", rootfs, ctx)
    assert mode(rootfs / "c/new/x") == 0o4750
    assert mode(rootfs / "c/new/sub") == 0o4750
    assert mode(rootfs / "c") == 0o750  # made on the way: the octal mode without setuid


def test_chmod_symbolic(ctx, rootfs):
    os.chmod(ctx / "dir/x", 0o640)
    os.chmod(ctx / "dir/sub", 0o700)
    run("COPY --chmod=u+x,go+rX,go-w dir /c/", rootfs, ctx)
    assert mode(rootfs / "c/x") == 0o744
    assert mode(rootfs / "c/sub") == 0o755  # X: directories get x
    assert mode(rootfs / "c") == 0o755  # made on the way: 0755 for a symbolic mode
    run("COPY --chmod=go=rX dir /c2/", rootfs, ctx)
    assert mode(rootfs / "c2/sub") == 0o744  # dchapes-mode honours X only with "+"


# -- heredocs ------------------------------------------------------------------------


def test_heredocs_are_files(rootfs):
    text = "COPY <<one <<two /h/\nfirst $X\none\nsecond\ntwo"
    with copier.plan_copy(instruction(text, {"X": "x"}), None, None) as plan:
        copier.execute_copy(plan, rootfs, workdir="/", now_ns=T1)
    assert (rootfs / "h/one").read_text() == "first x\n"
    assert (rootfs / "h/two").read_text() == "second\n"
    assert mode(rootfs / "h/one") == 0o644 and owner(rootfs / "h/one") == (0, 0)
    assert (rootfs / "h/one").stat().st_mtime_ns == T1
    with copier.plan_copy(
        instruction("COPY --chmod=755 <<EOF /run.sh\necho\nEOF"), None, None
    ) as p:
        copier.execute_copy(p, rootfs, workdir="/")
    assert mode(rootfs / "run.sh") == 0o755 and (rootfs / "run.sh").read_text() == "echo\n"


# -- cache keys ----------------------------------------------------------------------


def test_key_follows_content_and_modes_not_times(ctx):
    def key(text):
        with copier.plan_copy(instruction(text), context(ctx), None) as plan:
            return plan.key

    first = key("COPY dir /d")
    assert first == key("COPY dir /d")
    os.utime(ctx / "dir/x", ns=(1, 1))
    assert key("COPY dir /d") == first
    (ctx / "dir/x").write_text("changed")
    second = key("COPY dir /d")
    assert second != first
    os.chmod(ctx / "dir/sub/x", 0o700)
    assert key("COPY dir /d") != second
    with copier.plan_copy(instruction("COPY --exclude=sub/*.md dir /d"), context(ctx), None) as p:
        before = p.key
    (ctx / "dir/sub/notes.md").write_text("again")
    with copier.plan_copy(instruction("COPY --exclude=sub/*.md dir /d"), context(ctx), None) as p:
        assert p.key == before  # what is excluded does not count
        assert p.context_paths == ["dir"]


def test_copies_of_one_build_walk_the_context_once_and_reuse_its_digests(ctx, monkeypatch):
    """Every COPY of a build plans from one walk of the context; a source copied again
    unfiltered reuses its node and digest; a filtered copy of it still filters."""
    from dockyard.builder.context import BuildContext

    walked: list[str] = []
    hashed: list[str] = []
    walk, hash_file = BuildContext._walk, BuildContext._hash_file
    monkeypatch.setattr(
        BuildContext,
        "_walk",
        lambda self, fd, prefix, *a: walked.append(prefix) or walk(self, fd, prefix, *a),
    )
    monkeypatch.setattr(
        BuildContext, "_hash_file", lambda self, e: hashed.append(e.path) or hash_file(self, e)
    )
    build = context(ctx)
    plans = [
        copier.plan_copy(instruction(text), build, None)
        for text in (
            "COPY dir /d",
            "COPY dir /e",
            "COPY --exclude=sub/*.md dir /d",
            "COPY a.txt dir /f/",
        )
    ]
    assert walked.count("") == 1  # the root: one walk for the four
    assert sorted(hashed) == sorted(set(hashed)) and "dir/x" in hashed  # each file hashed once
    first, second, filtered, both = (p.key["context"] for p in plans)
    assert first == second and filtered != first and both not in (first, filtered)
    assert plans[0].items[0].node is plans[1].items[0].node  # the same unfiltered node
    assert plans[2].items[0].node is not plans[0].items[0].node
    (ctx / "dir/x").write_text("changed")  # a new build sees it: nothing outlives a build
    with copier.plan_copy(instruction("COPY dir /d"), context(ctx), None) as again:
        assert again.key["context"] != first


# -- WORKDIR -------------------------------------------------------------------------


def test_make_dirs_for_workdir(rootfs):
    (rootfs / "link").symlink_to("/existing")
    copier.make_dirs(rootfs, "/link/a/b", "app", mtime_ns=T1)
    assert owner(rootfs / "existing/a") == (1000, 1001)
    assert owner(rootfs / "existing/a/b") == (1000, 1001)
    assert owner(rootfs / "existing") == (0, 0)
    assert (rootfs / "existing/a/b").stat().st_mtime_ns == T1
    copier.make_dirs(rootfs, "/w", "ghost")  # BuildKit: an unknown USER means root here
    assert owner(rootfs / "w") == (0, 0)
    (rootfs / "file").write_text("")
    with pytest.raises(BuildError, match="not a directory"):
        copier.make_dirs(rootfs, "/file/x")
