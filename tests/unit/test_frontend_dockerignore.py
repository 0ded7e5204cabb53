""".dockerignore: patternmatcher semantics, exceptions, pruning, file selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.builder.confined import ConfinedDir, ConfinedFile
from dockyard.builder.frontend.dockerignore import IgnoreMatcher, ignore_file, read_patterns
from dockyard.errors import BuildError


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.go"], "main.go", True),
        (["*.go"], "pkg/main.go", False),  # * never crosses /
        (["**/*.go"], "pkg/sub/main.go", True),
        (["**/*.go"], "main.go", True),
        (["*.go", "!important.go"], "important.go", False),
        (["*.go", "!important.go"], "other.go", True),
        (["!important.go", "*.go"], "important.go", True),  # the last match wins
        (["dir"], "dir", True),
        (["dir"], "dir/sub/file", True),  # a directory match covers everything under it
        (["dir/"], "dir/file", True),  # dir/ is cleaned to dir
        (["dir/"], "dir", True),
        (["dir"], "dirx", False),
        (["/abs/path"], "abs/path", True),
        (["./a/../b"], "b", True),
        (["[a-c]?.txt"], "b1.txt", True),
        (["[a-c]?.txt"], "d1.txt", False),
        (["[a-c]?.txt"], "b12.txt", False),
        (["[^a-c]*"], "dog", True),
        (["[^a-c]*"], "cat", False),
        (["a\\*b"], "a*b", True),
        (["a\\*b"], "axb", False),
        (["dir/**"], "dir/x/y", True),
        (["dir/**"], "dir", False),
        (["**/node_modules"], "a/b/node_modules/x", True),
        (["**.txt"], "deep/dir/notes.txt", True),  # a plain suffix test, as in docker
        (["abc.def"], "abcZdef", False),
        (["a(b)c+d$"], "a(b)c+d$", True),
        (["dir", "!dir/keep"], "dir/keep", False),
        (["dir", "!dir/keep"], "dir/keep/deeper", False),
        (["dir", "!dir/keep"], "dir/other", True),
        (["dir/*", "!dir/*.md", "dir/secret.md"], "dir/README.md", False),
        (["dir/*", "!dir/*.md", "dir/secret.md"], "dir/secret.md", True),
        (["**", "!src", "src/**/*.tmp"], "src/a/b.tmp", True),
        (["**", "!src", "src/**/*.tmp"], "src/a/b.go", False),
        (["**", "!src", "src/**/*.tmp"], "docs/x", True),
        ([], "anything", False),
    ],
)
def test_excluded(patterns: list[str], path: str, excluded: bool) -> None:
    from_file = [p for _, p in read_patterns("\n".join(patterns))]
    assert IgnoreMatcher(from_file).excluded(path) is excluded


def test_patterns_given_directly_are_not_file_lines() -> None:
    # like patternmatcher.New (used for COPY --exclude): no comments, no "/" stripping
    assert IgnoreMatcher(["# x"]).excluded("# x")
    assert not IgnoreMatcher(["/abs"]).excluded("abs")


def test_walk_order_uses_remembered_directories() -> None:
    m = IgnoreMatcher(["build", "!build/keep.txt", "*.log"])
    assert m.excluded("build", is_dir=True)
    assert not m.excluded("build/keep.txt")
    assert m.excluded("build/other.txt")
    assert m.excluded("x.log")
    assert not m.excluded("sub/x.log")


@pytest.mark.parametrize(
    ("patterns", "directory", "may"),
    [
        (["dir"], "dir", False),  # no exceptions: prune
        (["dir", "!dir/keep"], "dir", True),
        (["dir", "!dir/keep"], "dir/other", False),
        (["dir", "!dir/keep/x"], "dir/keep", True),
        (["dir", "!other"], "dir", False),
        (["dir", "!d*/keep"], "dir", True),  # a wildcard exception might match inside
        (["node_modules", "!src/**/*.go"], "node_modules", False),
        (["*", "!**/*.go"], "vendor", True),
        (["dir", "!dir"], "dir", True),
    ],
)
def test_may_contain(patterns: list[str], directory: str, may: bool) -> None:
    assert IgnoreMatcher(patterns).may_contain(directory) is may


def test_read_patterns() -> None:
    text = (
        "\ufeff# comment\n"
        "  *.pyc  \n"
        "\n"
        "/abs/\n"
        "!  ./keep//me\n"
        "  # indented: a pattern, not a comment\n"
        "dir/../x\r\n"
        "/\n"
    )
    assert read_patterns(text) == [
        (2, "*.pyc"),
        (4, "abs"),
        (5, "!keep/me"),
        (6, "# indented: a pattern, not a comment"),
        (7, "x"),
        (8, "/"),
    ]


@pytest.mark.parametrize("bad", ["[", "a[", "[]a]", "[-x]", "[x-]", "[a-b-c]", "\\", "!", "[^"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(BuildError):
        IgnoreMatcher([bad])


def test_bad_pattern_in_file_names_the_line(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("ok\n\n[oops\n")
    with pytest.raises(BuildError) as info, ConfinedDir.open(tmp_path) as context:
        IgnoreMatcher.load(context)
    assert info.value.line == 3
    assert info.value.file == str(tmp_path / ".dockerignore")


def test_ignore_file_selection(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    (root / "docker").mkdir(parents=True)
    context = ConfinedDir.open(root)
    dockerfile = ConfinedFile(context, "docker/build.Dockerfile")

    def chosen(dockerfile: ConfinedFile | None = None) -> str | None:
        found = ignore_file(context, dockerfile)
        return found and found[0]

    assert chosen(dockerfile) is None
    assert not IgnoreMatcher.load(context, dockerfile).excluded("x")

    (root / ".dockerignore").write_text("x\n")
    assert chosen(dockerfile) == str(root / ".dockerignore")
    assert IgnoreMatcher.load(context, dockerfile).excluded("x")

    specific = root / "docker" / "build.Dockerfile.dockerignore"
    specific.write_text("y\n")
    assert chosen(dockerfile) == str(specific)
    m = IgnoreMatcher.load(context, dockerfile)
    assert m.excluded("y") and not m.excluded("x")

    (root / "Dockerfile.dockerignore").write_text("z\n")
    assert chosen(ConfinedFile(context, "Dockerfile")) == str(root / "Dockerfile.dockerignore")
    assert chosen() == str(root / ".dockerignore")
    context.close()


def test_walk(tmp_path: Path) -> None:
    """A walker that prunes with may_contain sees exactly what the matcher includes."""
    files = [
        "main.go",
        "README.md",
        "build/out.bin",
        "build/keep/me.txt",
        "build/deep/x",
        "node_modules/a/b.js",
        "src/app.go",
        "src/app_test.go",
        "src/tmp/cache",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text(f)
    m = IgnoreMatcher(["build", "!build/keep", "node_modules", "**/*_test.go", "src/tmp"])
    seen, entered = [], []

    def walk(rel: str) -> None:
        for child in sorted((tmp_path / rel).iterdir()):
            path = f"{rel}/{child.name}" if rel else child.name
            excluded = m.excluded(path, is_dir=child.is_dir())
            if child.is_dir():
                if excluded and not m.may_contain(path):
                    continue
                entered.append(path)
                walk(path)
            elif not excluded:
                seen.append(path)

    walk("")
    assert seen == ["README.md", "build/keep/me.txt", "main.go", "src/app.go"]
    assert "node_modules" not in entered and "src/tmp" not in entered
    assert "build/deep" not in entered
