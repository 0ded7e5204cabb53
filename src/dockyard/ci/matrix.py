"""``matrix:`` on a step: one step per combination of its variables' values.

::

    steps:
      - name: test
        matrix: {PY: ["3.11", "3.12"], DB: [pg15]}
        image: "python:${PY}"
        commands: [pytest]
      - name: publish
        depends_on: [test]              # waits for every combination

makes the steps ``test.PY-3.11.DB-pg15`` and ``test.PY-3.12.DB-pg15``, in that order
(the first variable varies slowest). A combination's name is the step's, then
``.KEY-VALUE`` per variable, any character a step name may not hold written ``_``: a
step name like any other, valid in ``depends_on``, ``ci run --only``, ``ci logs``, as a
log file's name and as an image tag. The matrix's own name stands for all its
combinations in ``depends_on`` and ``--only``. Each combination sees its values as
``${PY}`` in its strings and ``PY`` in its environment. They are taken as written, no
variables replaced: the names are fixed when the file is loaded, before a run's values
are known.

The steps are expanded in the document, before the schema or any variable is checked;
every later error names a field of the expanded document, which :attr:`Expansion.origin`
leads back to the step as written (its index, so its line).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.yamlmarks import FieldPath

MAX_VARIABLES = 8
MAX_COMBINATIONS = 64  # of one step
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Expansion:
    """A pipeline document with its matrix steps expanded."""

    data: Any
    origin: list[int] = field(default_factory=list)  # expanded step index -> written index
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # matrix -> its steps
    values: dict[int, dict[str, str]] = field(default_factory=dict)  # expanded index -> vars
    problems: list[tuple[FieldPath, str]] = field(default_factory=list)  # paths as written

    def source(self, path: FieldPath) -> FieldPath:
        """``path`` of the expanded document as the path written in the file."""
        if path[:1] == ("steps",) and len(path) >= 2 and isinstance(path[1], int):
            return ("steps", self.origin[path[1]], *path[2:])
        return path


def combination_name(step: str, values: Mapping[str, str]) -> str:
    """The step name of one combination: ``test.PY-3.11`` for ``{PY: 3.11}``."""
    return step + "".join(f".{key}-{_UNSAFE.sub('_', value)}" for key, value in values.items())


def expand(data: Any, reserved: Collection[str]) -> Expansion:
    """``data`` (a pipeline document) with each step's ``matrix`` expanded.

    Problems with a matrix are listed, that step then left out. ``reserved``: names a matrix
    variable may not take (the built-in variables)."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return Expansion(data)  # the schema says what is wrong
    own = data.get("variables")
    taken = {*reserved, *(own if isinstance(own, dict) else ())}
    expansion = Expansion(None)
    steps: list[Any] = []
    for i, step in enumerate(data["steps"]):
        if not isinstance(step, dict) or "matrix" not in step:
            expansion.origin.append(i)
            steps.append(step)
            continue
        combinations = _combinations(step["matrix"], ("steps", i, "matrix"), taken, expansion)
        if combinations is None:
            continue
        written = {k: v for k, v in step.items() if k != "matrix"}
        name = step.get("name")
        environment = step.get("environment", {})
        if isinstance(environment, dict):
            for key in environment:
                if key in combinations[0]:
                    where = ("steps", i, "environment", key)
                    expansion.problems.append((where, f"{key} is also a matrix variable"))
        names = []
        for values in combinations:
            expanded = dict(written)
            if isinstance(name, str):
                expanded["name"] = combination_name(name, values)
                names.append(expanded["name"])
            if isinstance(environment, dict):  # "$$": the values are literal
                literal = {k: v.replace("$", "$$") for k, v in values.items()}
                expanded["environment"] = {**environment, **literal}
            expansion.values[len(steps)] = values
            expansion.origin.append(i)
            steps.append(expanded)
        if isinstance(name, str):
            expansion.groups[name] = tuple(names)
    expansion.data = {**data, "steps": steps}
    return expansion


def _combinations(
    matrix: Any, path: FieldPath, taken: Collection[str], expansion: Expansion
) -> list[dict[str, str]] | None:
    """Every combination of ``matrix``'s values, or None (its problems noted)."""
    before = len(expansion.problems)

    def problem(where: FieldPath, message: str) -> None:
        expansion.problems.append((where, message))

    if not isinstance(matrix, dict) or not matrix:
        problem(path, "expected a mapping of variables to lists of values")
        return None
    if len(matrix) > MAX_VARIABLES:
        problem(path, f"at most {MAX_VARIABLES} variables")
    choices: list[list[tuple[str, str]]] = []
    for key, values in matrix.items():
        where = (*path, key)
        if not isinstance(key, str) or not _VARIABLE.match(key):
            problem(where, f"invalid variable name {key!r}")
            continue
        if key in taken:
            problem(where, "already a variable of the pipeline")
        values = [values] if not isinstance(values, list) else values
        if not values:
            problem(where, "needs at least one value")
        texts = []
        for j, value in enumerate(values):
            if isinstance(value, dict | list) or value is None:
                problem((*where, j), "expected a string, number or boolean")
                continue
            text = _text(value)
            if text in texts:
                problem((*where, j), f"{text!r} is given twice")
            texts.append(text)
        choices.append([(key, text) for text in texts])
    count = 1
    for options in choices:
        count *= len(options)
    if count > MAX_COMBINATIONS:
        problem(path, f"{count} combinations: at most {MAX_COMBINATIONS}")
    if len(expansion.problems) > before:
        return None
    return [dict(combination) for combination in itertools.product(*choices)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
