"""Parser nodes to typed instructions: where an instruction is, and the errors (with
"did you mean" suggestions) BuildKit gives at parse time, at the instruction's first line."""

from __future__ import annotations

import pytest

from tests.support.dockerfiles import error, one


def test_location_and_original() -> None:
    instr = one("RUN echo \\\n   hi   \n")
    assert (instr.line, instr.end_line, instr.file) == (1, 2, "Dockerfile")
    assert instr.original == "RUN echo    hi"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("FROM a\nFOO bar\n", "unknown instruction: FOO", 2),
        ("FROM a\nRUN --foo x\n", "unknown flag: --foo", 2),
        ("FROM a\nCOPY --from=a --from=b x y\n", "duplicate flag specified: --from", 2),
        ("FROM a\nCOPY --from x y\n", "missing a value on flag: --from", 2),
        ("FROM a\nCOPY --link= x y\n", "missing a value on flag: --link", 2),
        ("FROM a\nCOPY --link=yes x y\n", "expecting boolean value for flag --link, not: yes", 2),
        ("FROM a\nENV --x=1 A=b\n", "unknown flag: --x", 2),
        # an error anywhere in a continued instruction is reported at its first line
        ("FROM a\nCOPY \\\n  --chown=1 \\\n  --bogus=2 x y\n", "unknown flag: --bogus", 2),
        ("FROM\n", "FROM requires either one or three arguments", 1),
        ("FROM a b\n", "FROM requires either one or three arguments", 1),
        ("FROM a AS 1x\n", 'invalid name for build stage: "1x"', 1),
        ("FROM a\nCOPY x\n", "COPY requires at least two arguments", 2),
        ("FROM a\nADD x\n", "ADD requires at least two arguments", 2),
        ("FROM a\nCOPY x <<EOF\nEOF\n", "COPY cannot accept a heredoc as a destination", 2),
        ("FROM a\nENV\n", "ENV requires at least one argument", 2),
        ("FROM a\nENV A\n", "ENV must have two arguments", 2),
        ("FROM a\nENV A=1 B\n", 'can\'t find = in "B"', 2),
        ("FROM a\nLABEL =x\n", "LABEL names can not be blank", 2),
        ("FROM a\nARG\n", "ARG requires at least one argument", 2),
        ("FROM a\nARG =x\n", "ARG names can not be blank", 2),
        ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument", 2),
        ("FROM a\nUSER\n", "USER requires exactly one argument", 2),
        ("FROM a\nSTOPSIGNAL\n", "STOPSIGNAL requires exactly one argument", 2),
        ("FROM a\nMAINTAINER\n", "MAINTAINER requires exactly one argument", 2),
        ("FROM a\nEXPOSE\n", "EXPOSE requires at least one argument", 2),
        ("FROM a\nVOLUME\n", "VOLUME requires at least one argument", 2),
        ('FROM a\nVOLUME ["/a", " "]\n', "VOLUME specified can not be an empty string", 2),
        ("FROM a\nSHELL\n", "SHELL requires at least one argument", 2),
        ("FROM a\nSHELL bash -c\n", "SHELL requires the arguments to be in JSON form", 2),
        ("FROM a\nHEALTHCHECK\n", "HEALTHCHECK requires at least one argument", 2),
        ("FROM a\nHEALTHCHECK NONE x\n", "HEALTHCHECK NONE takes no arguments", 2),
        ("FROM a\nHEALTHCHECK CMD\n", "Missing command after HEALTHCHECK CMD", 2),
        ("FROM a\nHEALTHCHECK RUN x\n", 'Unknown type "RUN" in HEALTHCHECK (try CMD)', 2),
        ("FROM a\nHEALTHCHECK --interval=1us CMD x\n", 'Interval "interval" cannot be', 2),
        ("FROM a\nHEALTHCHECK --timeout=5 CMD x\n", "missing unit", 2),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "--retries cannot be negative (-1)", 2),
        ("FROM a\nONBUILD\n", "ONBUILD requires at least one argument", 2),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD", 2),
        ("FROM a\nONBUILD FROM x\n", "FROM isn't allowed as an ONBUILD trigger", 2),
        ("FROM a\nonbuild maintainer x\n", "MAINTAINER isn't allowed as an ONBUILD trigger", 2),
        ("FROM a\nRUN --network=bridge x\n", 'invalid network mode "bridge"', 2),
        ("FROM a\nRUN --security=root x\n", 'security "root" is not valid', 2),
        ("FROM a\nRUN --mount=from=$X,target=/x y\n", "'from' doesn't support variable", 2),
    ],
)
def test_parse_errors(text: str, message: str, line: int) -> None:
    e = error(text)
    assert message in str(e)
    assert e.line == line
    assert str(e).startswith(f"Dockerfile:{line}: ")


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        (
            'FROM a\nFNTRYPOINT ["/bin/sh"]\n',
            "unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)",
            2,
        ),
        ("FROM a\n\ncopi a b\n", "unknown instruction: copi (did you mean copy?)", 3),
        ("FROM a\nBOGUSWORD x\n", "unknown instruction: BOGUSWORD", 2),  # nothing near
        (
            "FROM a\nRUN \\\n  --mont=target=/x,type=tmpfs true\n",
            "unknown flag: --mont (did you mean mount?)",
            2,
        ),
        ("FROM a\nCOPY --chmood=644 a b\n", "unknown flag: --chmood (did you mean chmod?)", 2),
    ],
)
def test_misspelt_names_get_a_suggestion_at_their_line(text: str, message: str, line: int) -> None:
    e = error(text)
    assert str(e) == f"Dockerfile:{line}: {message}"
    assert e.line == line
