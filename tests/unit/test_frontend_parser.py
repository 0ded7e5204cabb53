"""Dockerfile lexical structure: directives, continuations, comments, flags, heredocs."""

from __future__ import annotations

import pytest

from dockyard.builder.frontend.parser import Heredoc, parse, parse_json, parse_words, split_fields
from dockyard.errors import BuildError


def nodes(text: str):
    return parse(text, "Dockerfile").nodes


def test_directives_and_comments() -> None:
    df = parse(
        "# syntax = docker/dockerfile:1.7\n# check=skip=all\n# escape=`\n\n# a comment\nFROM a\n"
    )
    assert df.syntax == "docker/dockerfile:1.7"
    assert df.escape == "`"
    assert [(n.command, n.rest, n.start_line) for n in df.nodes] == [("FROM", "a", 6)]


@pytest.mark.parametrize(
    ("text", "escape"),
    [
        ("\n# escape=`\nFROM a\n", "\\"),  # a blank line ends the directives
        ("# hello\n# escape=`\nFROM a\n", "\\"),  # so does an ordinary comment
        ("FROM a\n# escape=`\n", "\\"),
        ("# unknown=1\n# escape=`\nFROM a\n", "\\"),
        ("\ufeff# escape=`\nFROM a\n", "`"),  # a BOM is ignored
        ("  # ESCAPE = ` \nFROM a\n", "`"),
    ],
)
def test_escape_directive_position(text: str, escape: str) -> None:
    assert parse(text).escape == escape


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("# escape=x\nFROM a\n", "invalid escape token 'x'", 1),
        ("# escape=`\n# escape=\\\nFROM a\n", "only one escape parser directive", 2),
        ("# just a comment\n\n", "file with no instructions", None),
    ],
)
def test_directive_errors(text: str, message: str, line: int | None) -> None:
    with pytest.raises(BuildError) as info:
        parse(text, "Dockerfile")
    assert message in str(info.value)
    assert info.value.line == line


def test_continuations_comments_and_empty_lines() -> None:
    df = parse(
        "FROM a\nRUN echo one \\\n  # a comment inside\n\n    two \\\nthree\nRUN after\n",
        "Dockerfile",
    )
    run = df.nodes[1]
    assert run.rest == "echo one     two three"  # continuation lines keep their indent
    assert (run.start_line, run.end_line) == (2, 6)
    assert df.nodes[2].start_line == 7
    assert [w.line for w in df.warnings] == [6]
    assert "Empty continuation line" in str(df.warnings[0])


def test_backtick_continuation_and_windows_paths() -> None:
    df = parse("# escape=`\nFROM a\nCOPY C:\\src `\n  C:\\dst\\\n")
    assert df.nodes[1].rest == "C:\\src   C:\\dst\\"


def test_escaped_escape_is_not_a_continuation() -> None:
    df = parse("FROM a\nRUN echo \\\\\nRUN next\n")
    assert [n.rest for n in df.nodes[1:]] == ["echo \\\\", "next"]


def test_lone_escape_line_continues() -> None:
    df = parse("FROM a\n\\\nRUN x\n")
    assert [(n.command, n.start_line) for n in df.nodes] == [("FROM", 1), ("RUN", 2)]


def test_instruction_names_keep_case() -> None:
    assert [n.keyword for n in nodes("from a\nRuN x\n")] == ["from", "run"]


@pytest.mark.parametrize(
    ("line", "flags", "rest"),
    [
        ("COPY --from=build --chown=1:1 a b", ("--from=build", "--chown=1:1"), "a b"),
        ('COPY --chown="a b" x y', ("--chown=a b",), "x y"),
        (
            "RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t make",
            (
                "--mount=type=cache,target=/c",
                "--mount=type=tmpfs,target=/t",
            ),
            "make",
        ),
        ("COPY --link -- --odd /dst", ("--link",), "--odd /dst"),
        ("RUN echo --not-a-flag", (), "echo --not-a-flag"),
        (
            "ADD --keep-git-dir=true --checksum=sha256:00 u /d",
            (
                "--keep-git-dir=true",
                "--checksum=sha256:00",
            ),
            "u /d",
        ),
    ],
)
def test_flags(line: str, flags: tuple[str, ...], rest: str) -> None:
    (node,) = nodes(line)
    assert node.flags == flags
    assert node.rest == rest


@pytest.mark.parametrize(
    ("line", "json"),
    [
        ('CMD ["a", "b c"]', ("a", "b c")),
        ("CMD [ ]", ()),
        ("CMD echo [a]", None),
        ('CMD ["a", ]', None),  # not valid JSON: shell form
        ("RUN [NaN]", None),
        ('ENV X ["a"]', None),  # ENV has no exec form
    ],
)
def test_json_form(line: str, json: tuple[str, ...] | None) -> None:
    assert nodes(line)[0].json == json


def test_json_array_of_non_strings_is_an_error() -> None:
    with pytest.raises(BuildError) as info:
        parse('FROM a\n\nCMD ["a", 1]\n', "Dockerfile")
    assert info.value.line == 3
    assert "arrays must be comprised of strings only" in str(info.value)
    with pytest.raises(ValueError):
        parse_json("[null]")


def test_heredoc_run() -> None:
    (_, run, after) = nodes("FROM a\nRUN <<EOF\necho $HOME\n  indented\nEOF\nRUN after\n")
    assert run.heredocs == (Heredoc("EOF", "echo $HOME\n  indented\n", True, False),)
    assert (run.start_line, run.end_line) == (2, 5)
    assert after.start_line == 6


@pytest.mark.parametrize(
    ("line", "name", "expand", "chomp", "fd"),
    [
        ("RUN <<EOF", "EOF", True, False, 0),
        ('RUN <<"EOF"', "EOF", False, False, 0),
        ("RUN <<'EOF'", "EOF", False, False, 0),
        ('RUN <<E"O"F', "EOF", False, False, 0),
        ("RUN <<-EOF", "EOF", True, True, 0),
        ("RUN << EOF", "EOF", True, False, 0),
        ("RUN 3<<EOF cat /dev/fd/3", "EOF", True, False, 3),
        ("RUN <<EOF sh -x", "EOF", True, False, 0),
        ("RUN python3 <<EOF", "EOF", True, False, 0),
    ],
)
def test_heredoc_delimiters(line: str, name: str, expand: bool, chomp: bool, fd: int) -> None:
    (node,) = nodes(f"{line}\n\tbody\n{name}\n")
    (doc,) = node.heredocs
    assert (doc.name, doc.expand, doc.chomp, doc.fd) == (name, expand, chomp, fd)
    assert doc.content == "\tbody\n"


def test_chomped_heredoc_terminator_and_text() -> None:
    (node,) = nodes("RUN <<-EOF\n\t\techo a\n\tb\n\t\tEOF\n")
    (doc,) = node.heredocs
    assert doc.content == "\t\techo a\n\tb\n"
    assert doc.text == "echo a\nb\n"


def test_several_heredocs_on_one_line() -> None:
    (node,) = nodes("RUN <<A cat <<B > out\na1\nA\nb1\nb2\nB\n")
    assert [(h.name, h.content) for h in node.heredocs] == [("A", "a1\n"), ("B", "b1\nb2\n")]
    assert node.end_line == 6


def test_copy_heredoc_and_onbuild_heredoc() -> None:
    copy, onbuild = nodes("COPY <<EOF /etc/conf\nx=1\nEOF\nONBUILD RUN <<X\nhi\nX\n")
    assert copy.heredocs[0].content == "x=1\n"
    assert onbuild.sub.keyword == "run"
    assert onbuild.heredocs[0].content == "hi\n"


@pytest.mark.parametrize(
    "text",
    [
        'RUN ["sh", "<<EOF"]\nEOF\n',  # exec form: no heredoc
        "ENV A=<<EOF\nEOF\n",  # only RUN, COPY, ADD take heredocs
        "RUN cat<<EOF\nEOF\n",  # << must start a word
        "RUN echo '<<EOF'\nEOF\n",  # quoted
        "RUN cat <<<EOF\nEOF\n",  # a here-string
    ],
)
def test_not_heredocs(text: str) -> None:
    assert all(not n.heredocs for n in nodes(text))
    assert len(nodes(text)) == 2


def test_unterminated_heredoc_reports_instruction_line() -> None:
    with pytest.raises(BuildError) as info:
        parse("FROM a\nRUN <<EOF\necho\nEOF \n", "Dockerfile")
    assert info.value.line == 2
    assert str(info.value) == "Dockerfile:2: unterminated heredoc"


def test_heredoc_after_continued_line() -> None:
    (_, run) = nodes("FROM a\nRUN <<EOF \\\n  bash\nbody\nEOF\n")
    assert run.rest == "<<EOF   bash"
    assert run.heredocs[0].content == "body\n"
    assert (run.start_line, run.end_line) == (2, 5)


def test_crlf_line_endings() -> None:
    (_, run) = nodes("FROM a\r\nRUN a \\\r\n b\r\n")
    assert run.rest == "a  b"


def test_line_helpers() -> None:
    assert parse_words('A="x y" B=\'q\' C=\\"d e', "\\") == ['A="x y"', "B='q'", 'C=\\"d', "e"]
    assert parse_words('a`"b c', "`") == ['a`"b', "c"]
    assert split_fields("a \t b") == ["a", "b"]
    assert split_fields("") == []
