"""The names build steps have in the log, as BuildKit shows them: ``[base 2/3] RUN make``.

BuildKit numbers the steps that make a layer or fetch an image: the FROM of an image
(not ``scratch``, not another stage), then each RUN, COPY, ADD and WORKDIR, the base
stage's ONBUILD triggers first (shown as ``ONBUILD RUN ...``). ENV, CMD and the other
config instructions are not steps and get no line. The stage is named when the
Dockerfile has more than one (``stage-N`` when it has no name); numbers are padded to
the width of the total.

A step's text is the instruction as written with its variables expanded (ARG and ENV
values): RUN keeps its quotes and leaves unset variables as written, COPY/ADD/WORKDIR
are expanded as their arguments are. A variable a RUN fills with a secret
(``--mount=type=secret,env=NAME``) shows as ``****``, never as any value.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence

from dockyard import reference
from dockyard.builder.frontend import commands as ins
from dockyard.builder.frontend.parser import heredoc_word
from dockyard.builder.frontend.shell_lex import ExpansionError, Lex
from dockyard.builder.frontend.stages import Stage
from dockyard.errors import DockyardError

SECRET_MASK = "****"
NUMBERED = (ins.Run, ins.Copy, ins.Add, ins.Workdir)
"""The instructions that are steps (besides FROM an image)."""


class StepNames:
    """Numbers and names the steps of one stage, in the order they run.

    ``triggers`` are the ONBUILD instructions that run before the stage's own;
    ``stage_count`` how many stages the Dockerfile has (one: no stage name shown).
    """

    def __init__(self, stage: Stage, triggers: Sequence[ins.Instruction], stage_count: int):
        self._label = stage.id if stage_count > 1 else ""
        pulls = 0 if stage.is_scratch or stage.base_stage is not None else 1
        steps = [i for i in (*triggers, *stage.instructions) if isinstance(i, NUMBERED)]
        self.total = pulls + len(steps)
        self._done = 0

    def base(self, name: str) -> str:
        """The line of the FROM that fetches image ``name``.

        The name is normalised, as BuildKit's ``FROM docker.io/library/busybox:latest``."""
        with contextlib.suppress(DockyardError):
            name = str(reference.parse(name))
        return self._next(f"FROM {name}")

    def step(
        self, instr: ins.Instruction, env: Mapping[str, str], *, trigger: bool = False
    ) -> str | None:
        """The line of ``instr`` run with the variables ``env``; None if it is not a step.

        ``instr`` is expanded: its mounts known. ``trigger``: an ONBUILD trigger of the base stage.
        """
        if not isinstance(instr, NUMBERED):
            return None
        text = expanded_text(instr, env)
        if trigger:
            text = f"ONBUILD {text}"
        return self._next(text)

    def _next(self, text: str) -> str:
        if self.total == 0:
            return text
        self._done += 1
        width = int(1 + math.log10(self.total))
        label = f"{self._label} " if self._label else ""
        return f"[{label}{self._done:>{width}}/{self.total}] {text}"


def expanded_text(instr: ins.Instruction, env: Mapping[str, str]) -> str:
    """``instr`` as written, its variables expanded from ``env`` and secrets masked.

    As written when it does not expand."""
    text = instr.original
    if isinstance(instr, ins.Run):
        lex = Lex(instr.escape, raw_quotes=True, skip_unset_env=True)
        secrets = [m.env for m in instr.mounts or () if m.type == "secret" and m.env]
        env = {**env, **dict.fromkeys(secrets, SECRET_MASK)}
        text = _expand(lex, text, env) + _heredoc_summary(instr)
    else:
        text = _expand(Lex(instr.escape), text, env)
    word, space, rest = text.partition(" ")
    return word.upper() + space + rest


def _expand(lex: Lex, text: str, env: Mapping[str, str]) -> str:
    try:
        return lex.expand(text, env)
    except ExpansionError:
        return text


def _heredoc_summary(run: ins.Run) -> str:
    """`` (first line...)`` of a RUN that is one heredoc, as BuildKit appends it."""
    if not run.heredocs or len(run.command) != 1:
        return ""
    try:
        if heredoc_word(run.command[0]) is None:
            return ""
    except ExpansionError:
        return ""
    lines = run.heredocs[0].content.strip().replace("\r\n", "\n").split("\n")
    return f" ({lines[0]}{'...' if len(lines) > 1 else ''})"
