"""Variables in a pipeline file: ``${NAME}`` in any string, ``$$`` for a dollar.

::

    variables: {REGISTRY: registry.example.org, TAG: "ci-${CI_RUN_NUMBER}"}
    steps:
      - name: image
        build: {tags: ["localhost/app:${CI_COMMIT_SHA}"]}
      - name: test
        depends_on: [image]
        image: ${BUILT_IMAGE}                  # the image its build dependency made
        commands: ["echo run ${CI_RUN_NUMBER} costs $$5; echo $HOME"]

Names are the built-in ones (:data:`BUILTIN`) and the file's own ``variables:``, whose
values may use the built-in ones but not each other. Only the braced form is
replaced: ``$HOME`` stays for the shell, and ``$${HOME}`` gives the shell ``${HOME}``.
A name that is neither is an error when the file is loaded, naming its line, never an
empty string. Keys are never replaced, nor are step names and ``depends_on`` (a
step's identity is fixed). The values are also every step's environment.

``BUILT_IMAGE`` exists only in a step that depends on exactly one build step: that
step's first tag, else the run's own name for its image (see :mod:`.images`); it is
in that step's environment too (unless the step sets it itself).

At load time the values are not known yet: the file is checked with stand-ins
(:data:`STAND_INS`); a run replaces them with its own (see :mod:`.runner`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from dockyard.yamlmarks import FieldPath

BUILTIN = (
    "CI_RUN_ID",
    "CI_RUN_NUMBER",
    "CI_COMMIT_SHA",
    "CI_COMMIT_BRANCH",
    "CI_EVENT",
    "CI_PIPELINE_DIR",
)
BUILT_IMAGE = "BUILT_IMAGE"
STAND_INS = {
    "CI_RUN_ID": "20000101-000000-000000",
    "CI_RUN_NUMBER": "1",
    "CI_COMMIT_SHA": "0" * 40,
    "CI_COMMIT_BRANCH": "main",
    "CI_EVENT": "manual",
    "CI_PIPELINE_DIR": "/workspace",
}
_REFERENCE = re.compile(r"\$(?:(\$)|\{([^}]*)\}?)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIXED = {"name", "depends_on"}  # step fields no variable may change

Report = Callable[[FieldPath, str], None]


class UnknownVariable(ValueError):
    """A ``${...}`` that names no variable, or is not a name."""


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``${NAME}`` replaced by its value and ``$$`` by ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match[1]:
            return "$"
        name = match[2]
        if not match[0].endswith("}"):
            raise UnknownVariable(f"'${{{name}' is not closed (write $$ for a dollar)")
        if not _NAME.fullmatch(name):
            raise UnknownVariable(f"'${{{name}}}' is not a variable name")
        if name not in values:
            raise UnknownVariable(f"unknown variable ${{{name}}}")
        return values[name]

    return _REFERENCE.sub(replace, text)


def interpolate(
    data: Any,
    values: Mapping[str, str],
    report: Report,
    step_values: Mapping[int, Mapping[str, str]] | None = None,
) -> Any:
    """The pipeline document ``data`` with variables replaced.

    Replaced in every string but keys, step names and ``depends_on``; ``report(path, message)``
    hears of each bad one.

    ``values`` are the built-in variables; the document's ``variables:`` come on top,
    ``BUILT_IMAGE`` in the steps that have one, and ``step_values`` (by step index: a
    matrix combination's, see :mod:`.matrix`) in theirs."""
    step_values = step_values or {}
    if not isinstance(data, dict):
        return data
    out = dict(data)
    own = data.get("variables")
    if isinstance(own, dict):
        resolved = _walk(own, values, report, ("variables",))
        values = {**values, **{str(k): _text(v) for k, v in resolved.items()}}
        out["variables"] = resolved
    built = _built_images(data.get("steps"), values)
    for key, value in data.items():
        if key == "variables":
            continue
        if key == "steps" and isinstance(value, list):
            out[key] = [
                _with_env(
                    _step(
                        step,
                        {**values, **built.get(i, {}), **step_values.get(i, {})},
                        report,
                        ("steps", i),
                    ),
                    built.get(i, {}),
                )
                for i, step in enumerate(value)
            ]
        else:
            out[key] = _walk(value, values, report, (key,))
    return out


def _text(value: Any) -> str:
    """A YAML scalar as its variable's value (the schema refuses what is not one)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _with_env(step: Any, env: Mapping[str, str]) -> Any:
    """A command step with ``env`` in its environment, under what it sets itself."""
    if not env or not isinstance(step, dict) or "build" in step or "check" in step:
        return step
    environment = step.get("environment", {})
    if not isinstance(environment, dict):
        return step  # the schema says what is wrong
    return {**step, "environment": {**env, **environment}}


def _step(step: Any, values: Mapping[str, str], report: Report, path: FieldPath) -> Any:
    if not isinstance(step, dict):
        return _walk(step, values, report, path)
    return {
        key: value if key in _FIXED else _walk(value, values, report, (*path, key))
        for key, value in step.items()
    }


def _walk(value: Any, values: Mapping[str, str], report: Report, path: FieldPath) -> Any:
    if isinstance(value, str):
        try:
            return substitute(value, values)
        except UnknownVariable as e:
            report(path, str(e))
            return value
    if isinstance(value, dict):
        return {k: _walk(v, values, report, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, values, report, (*path, i)) for i, v in enumerate(value)]
    return value


def _built_images(steps: Any, values: Mapping[str, str]) -> dict[int, dict[str, str]]:
    """``{BUILT_IMAGE: ...}`` of each step (by index) that depends on exactly one
    build step: its first tag (variables replaced), or the run's name for its image."""
    from dockyard.ci.images import run_name

    if not isinstance(steps, list):
        return {}
    builds: dict[str, str] = {}
    for step in steps:
        if isinstance(step, dict) and isinstance(step.get("build"), dict):
            name, tags = step.get("name"), step["build"].get("tags")
            tags = [tags] if isinstance(tags, str) else tags
            if not isinstance(name, str):
                continue
            try:
                first = substitute(tags[0], values) if tags and isinstance(tags[0], str) else ""
            except UnknownVariable:
                first = ""  # reported where the tag is written
            builds[name] = first or str(run_name(values.get("CI_RUN_ID", "run"), name))
    found = {}
    for i, step in enumerate(steps):
        needs = step.get("depends_on") if isinstance(step, dict) else None
        needs = [needs] if isinstance(needs, str) else needs
        if isinstance(needs, list):
            images = [builds[n] for n in needs if isinstance(n, str) and n in builds]
            if len(images) == 1:
                found[i] = {BUILT_IMAGE: images[0]}
    return found
