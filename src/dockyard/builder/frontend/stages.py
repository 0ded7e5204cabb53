"""The stage graph: global ARGs, stages and their dependencies, ``--target``, ARG scoping.

:func:`plan_build` turns a Dockerfile into a :class:`BuildPlan`: every stage with its
base (image, ``scratch`` or an earlier stage) expanded with the global ARGs, the stages
the target needs in an order that runs dependencies first, and :attr:`BuildPlan.levels`
grouping stages that may run in parallel. :class:`StageScope` carries one stage's
variables while the builder runs it: ``scope.apply(instr)`` expands an instruction and
records its ARG/ENV effects.

ARG rules (BuildKit's): ARGs before the first FROM are global and only FROM lines see
them; ``ARG NAME`` inside a stage brings a global (or automatic platform) ARG into that
stage. A ``--build-arg`` overrides the value of a declared ARG; proxy build-args reach
RUN commands undeclared (:meth:`StageScope.run_env`) but stay out of history. Stage
names are case-insensitive for ``COPY --from``, ``--mount from=`` and ``--target``, but
``FROM name`` must match the (lower-cased) name exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from dockyard import reference
from dockyard.builder.frontend import golang
from dockyard.builder.frontend.commands import (
    Arg,
    ArgDef,
    Copy,
    Env,
    From,
    Instruction,
    Onbuild,
    Run,
)
from dockyard.builder.frontend.parse import parse_instruction
from dockyard.builder.frontend.parser import BuildWarning, Dockerfile, parse
from dockyard.builder.frontend.platforms import Platform
from dockyard.builder.frontend.records import Record, record
from dockyard.builder.frontend.shell_lex import ExpansionError, Lex
from dockyard.builder.frontend.suggest import did_you_mean
from dockyard.errors import BuildError, InvalidReference
from dockyard.oci.config import DEFAULT_PATH

PROXY_ARGS = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")
_RESERVED_STAGE_NAMES = ("context", "scratch")
_INDEX = re.compile(r"[+-]?[0-9]+\Z")


@record
class Stage(Record):
    """One ``FROM`` and the instructions up to the next one."""

    index: int
    name: str | None  # lower-cased ``AS`` name
    from_: From
    base: str  # expanded: an image reference, "scratch", or the base stage's name
    base_stage: int | None  # index of the stage this one is built FROM
    platform: Platform | None  # expanded ``FROM --platform``
    instructions: tuple[Instruction, ...]
    triggers: tuple[Instruction, ...] = ()  # the base stage's ONBUILDs: run them first
    depends_on: tuple[int, ...] = ()  # stages needed: base, COPY --from, RUN --mount from=
    images: tuple[str, ...] = ()  # images needed by COPY --from / RUN --mount from=

    @property
    def id(self) -> str:
        """The name docker shows: the stage name, or ``stage-N``."""
        return self.name or f"stage-{self.index}"

    @property
    def is_scratch(self) -> bool:
        return self.base_stage is None and self.base == "scratch"


def proxy_env(build_args: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables RUN gets from build-args, in both spellings.

    ``HTTP_PROXY`` and ``http_proxy``, whatever case the build-arg used."""
    found: dict[str, str] = {}
    for key in sorted(build_args):
        if key.lower() in PROXY_ARGS:
            found[key.lower()] = build_args[key]
    out: dict[str, str] = {}
    for name in PROXY_ARGS:
        if found.get(name):
            out[name.upper()] = out[name] = found[name]
    return out


class StageScope:
    """The variables of one stage while it runs.

    ``env`` is what expansion and RUN see (base image ENV, then ARGs and ENVs in order);
    ``config_env`` is the image config's Env (base image ENV, ``PATH`` added when missing,
    then ENVs); ``args`` are the declared ARGs and their values, in order.
    """

    def __init__(
        self, plan: BuildPlan, image_env: Sequence[str] = (), base: StageScope | None = None
    ):
        self._plan = plan
        self.config_env: dict[str, str]
        self.env: dict[str, str]
        self.args: list[tuple[str, str | None]]
        if base is not None:
            self.config_env = dict(base.config_env)
            self.env = dict(base.env)
            self.args = list(base.args)
        else:
            self.config_env = dict(entry.partition("=")[::2] for entry in image_env)
            self.config_env.setdefault("PATH", DEFAULT_PATH)
            self.env = dict(self.config_env)
            self.args = []

    def apply(self, instr: Instruction) -> Instruction:
        """``instr`` expanded with the current variables; ARG and ENV take effect.

        An ARG comes back with every :class:`ArgDef` holding its resolved value.
        """
        if isinstance(instr, Arg):
            return self._declare(instr)
        done = instr.expand(self.env)
        if isinstance(done, Env):
            for pair in done.pairs:
                self.env[pair.key] = pair.value
                self.config_env[pair.key] = pair.value
        return done

    def _declare(self, arg: Arg) -> Arg:
        plan = self._plan
        lex = Lex(arg.escape)
        resolved = []
        for d in arg.args:
            value = d.value
            if d.key in plan.build_args:
                value = plan.build_args[d.key]
            elif value is not None:
                try:
                    value = lex.expand(value, self.env)
                except ExpansionError as e:
                    raise arg.error(str(e)) from None
            elif d.key in plan.global_args:
                value = plan.global_args[d.key]
            if value is not None:
                self.env[d.key] = value
            self.args.append((d.key, value))
            resolved.append(ArgDef(d.key, value))
        return replace(arg, args=tuple(resolved))

    def history_args(self) -> list[tuple[str, str]]:
        """The ARGs a RUN's history line and cache key carry (``|2 A=1 B=2``)."""
        out: dict[str, str] = {}
        for key, value in self.args:
            out[key] = self.env.get(key, value or "")
        return list(out.items())

    def run_env(self) -> dict[str, str]:
        """The environment of a RUN: ``env`` plus proxy build-args not set otherwise."""
        return self.env | {k: v for k, v in self._plan.proxy_env.items() if k not in self.env}


@record
class BuildPlan(Record):
    """What to build: all stages, the target, and the stages it needs."""

    dockerfile: Dockerfile
    stages: tuple[Stage, ...]
    target: Stage
    order: tuple[Stage, ...]  # the stages the target needs, dependencies first
    global_args: Mapping[str, str]  # what FROM lines (and ``ARG NAME`` in stages) see
    build_args: Mapping[str, str]
    platform: Platform  # target platform
    build_platform: Platform
    warnings: tuple[BuildWarning, ...] = ()

    @property
    def proxy_env(self) -> dict[str, str]:
        return proxy_env(self.build_args)

    @property
    def levels(self) -> tuple[tuple[Stage, ...], ...]:
        """:attr:`order` in groups whose stages can run in parallel.

        A stage depends only on stages of earlier groups."""
        level: dict[int, int] = {}
        for stage in self.order:
            level[stage.index] = 1 + max((level[d] for d in stage.depends_on), default=-1)
        groups: dict[int, list[Stage]] = {}
        for stage in self.order:
            groups.setdefault(level[stage.index], []).append(stage)
        return tuple(tuple(groups[n]) for n in sorted(groups))

    def source_stage(self, ref: str, *, by_index: bool = True) -> Stage | None:
        """The stage a ``COPY --from`` or a ``--mount from=`` names; None when it names an image.

        ``COPY --from`` by name or index; ``--mount from=`` with ``by_index=False``."""
        if by_index and _INDEX.match(ref):
            return self.stages[int(ref)]
        for stage in self.stages:
            if stage.name == ref.lower():
                return stage
        return None

    def scope(
        self, stage: Stage, image_env: Sequence[str] = (), base: StageScope | None = None
    ) -> StageScope:
        """A fresh scope for ``stage``.

        From the base image's Env, or from the final scope of its base stage."""
        if stage.base_stage is not None and base is None:
            raise ValueError(f"stage {stage.id} is built FROM a stage: pass that stage's scope")
        return StageScope(self, image_env, base)

    def image_triggers(self, stage: Stage, onbuild: Sequence[str]) -> tuple[Instruction, ...]:
        """The ONBUILD triggers of ``stage``'s base image (its config ``OnBuild``).

        Parsed and located at the FROM line; run them before the stage's instructions."""
        return _parse_triggers(onbuild, stage.from_)


def _parse_triggers(expressions: Sequence[str], frm: From) -> tuple[Instruction, ...]:
    out = []
    for expression in expressions:
        try:
            nodes = parse(expression).nodes
            if len(nodes) != 1:
                raise BuildError("onbuild trigger should be a single expression")
            instr = parse_instruction(nodes[0])
        except BuildError as e:
            raise BuildError(str(e), frm.file, frm.line) from None
        if isinstance(instr, From):
            raise frm.error("FROM isn't allowed as an ONBUILD trigger")
        out.append(replace(instr, line=frm.line, end_line=frm.end_line, file=frm.file))
    return tuple(out)


def _default_args(build: Platform, target: Platform, stage: str) -> dict[str, str]:
    return {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDOSVERSION": "",
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETOSVERSION": "",
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
        "TARGETSTAGE": stage or "default",
    }


def _check_image(ref: str, instr: Instruction) -> None:
    try:
        reference.parse(ref)
    except InvalidReference as e:
        raise instr.error(f"failed to parse stage name {golang.quote(ref)}: {e}") from None


def plan_build(
    dockerfile: str | Dockerfile,
    *,
    file: str | None = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: Platform | None = None,
    build_platform: Platform | None = None,
) -> BuildPlan:
    """Parse and validate a Dockerfile (text, or already parsed) into a :class:`BuildPlan`.

    ``file`` names the Dockerfile in errors and warnings; ``target`` is ``--target``
    (default: the last stage); ``platform`` the target platform (default: the build
    platform, which defaults to this machine). Raises :class:`BuildError` at the
    offending line.
    """
    df = parse(dockerfile, file) if isinstance(dockerfile, str) else dockerfile
    build_args = dict(build_args or {})
    warnings = list(df.warnings)
    lex = Lex(df.escape)
    meta, groups = _split_stages(df)
    build_platform = build_platform or Platform.host()
    platform = platform or build_platform
    defaults = _default_args(build_platform, platform, target or groups[-1][0].name or "")
    global_args = {k: build_args.get(k, v) for k, v in defaults.items()}
    declared = _apply_meta_args(meta, lex, global_args, build_args)
    names = _stage_names(groups)
    stages = [
        _make_stage(index, groups, names, lex, global_args, declared, warnings)
        for index in range(len(groups))
    ]
    _check_cycles(stages)
    target_stage = _target_stage(stages, names, target, df.file)
    order = _needed(stages, target_stage)
    for stage in order:
        _check_stage(stage)
    consumed = declared | _declared_in(order)
    builtin = {*PROXY_ARGS, *(p.upper() for p in PROXY_ARGS), *defaults}
    unused = sorted(k for k in build_args if k not in consumed and k not in builtin)
    if unused:
        warnings.append(
            BuildWarning(f"One or more build-args [{' '.join(unused)}] were not consumed", df.file)
        )
    return BuildPlan(
        dockerfile=df,
        stages=tuple(stage.stage for stage in stages),
        target=target_stage.stage,
        order=tuple(stage.stage for stage in order),
        global_args=global_args,
        build_args=build_args,
        platform=platform,
        build_platform=build_platform,
        warnings=tuple(warnings),
    )


@dataclass
class _Planned:
    """A stage while it is planned: what it reads (``edges``: a stage index or an image,
    and the instruction that reads it) and a trigger error raised only if it is needed."""

    stage: Stage
    edges: list[tuple[int | str, Instruction]]
    trigger_error: BuildError | None = None


def _split_stages(df: Dockerfile) -> tuple[list[Arg], list[tuple[From, list[Instruction]]]]:
    """The global ARGs, and each FROM with the instructions up to the next FROM."""
    meta: list[Arg] = []
    groups: list[tuple[From, list[Instruction]]] = []
    for node in df.nodes:
        instr = parse_instruction(node, df.escape, df.file)
        if isinstance(instr, From):
            groups.append((instr, []))
        elif groups:
            groups[-1][1].append(instr)
        elif isinstance(instr, Arg):
            meta.append(instr)
        else:
            raise instr.error("no build stage in current context")
    if not groups:
        raise BuildError("dockerfile contains no stages to build", df.file)
    return meta, groups


def _stage_names(groups: Sequence[tuple[From, list[Instruction]]]) -> dict[str, int]:
    """Each stage name and its index; BuildError for a name used twice."""
    names: dict[str, int] = {}
    for index, (frm, _) in enumerate(groups):
        if frm.name in names:
            raise frm.error(
                f"Duplicate stage name {golang.quote(frm.name)}, stage names should be unique"
            )
        if frm.name:
            names[frm.name] = index
    return names


def _make_stage(
    index: int,
    groups: Sequence[tuple[From, list[Instruction]]],
    names: Mapping[str, int],
    lex: Lex,
    global_args: Mapping[str, str],
    declared: set[str],
    warnings: list[BuildWarning],
) -> _Planned:
    """Stage ``index``: its FROM expanded, its base stage's ONBUILD triggers, what it
    reads from other stages and images."""
    frm, instrs = groups[index]
    base, stage_platform = _expand_from(frm, lex, global_args, declared, warnings)
    base_stage = names.get(base)
    if base_stage is not None and base_stage >= index:
        base_stage = None  # FROM only sees stages defined above it
    if frm.name in _RESERVED_STAGE_NAMES:
        warnings.append(
            BuildWarning(
                f"{golang.quote(frm.name)} is reserved and should not be used as a stage name",
                frm.file,
                frm.line,
            )
        )
    triggers: tuple[Instruction, ...] = ()
    trigger_error = None
    if base_stage is not None:
        onbuild = [i.expression for i in groups[base_stage][1] if isinstance(i, Onbuild)]
        try:
            triggers = _parse_triggers(onbuild, frm)
        except BuildError as e:
            trigger_error = e
    edges = [e for i in (*triggers, *instrs) for e in _sources(i, lex, names, len(groups))]
    deps = {d for d, _ in edges if isinstance(d, int)}
    if base_stage is not None:
        deps.add(base_stage)
    images = dict.fromkeys(d for d, _ in edges if isinstance(d, str))
    stage = Stage(
        index=index,
        name=frm.name,
        from_=frm,
        base=base,
        base_stage=base_stage,
        platform=stage_platform,
        instructions=tuple(instrs),
        triggers=triggers,
        depends_on=tuple(sorted(deps)),
        images=tuple(images),
    )
    return _Planned(stage, edges, trigger_error)


def _target_stage(
    stages: Sequence[_Planned], names: Mapping[str, int], target: str | None, file: str | None
) -> _Planned:
    """The ``--target`` stage (case-insensitive), else the last one."""
    if not target:
        return stages[-1]
    chosen = names.get(target.lower())
    if chosen is None:
        message = f"target stage {golang.quote(target)} could not be found"
        raise BuildError(did_you_mean(message, target, names), file)
    return stages[chosen]


def _declared_in(order: Sequence[_Planned]) -> set[str]:
    """The ARG names the stages in ``order`` declare (triggers included)."""
    return {
        d.key
        for s in order
        for i in (*s.stage.triggers, *s.stage.instructions)
        if isinstance(i, Arg)
        for d in i.args
    }


def _apply_meta_args(
    meta: Sequence[Arg], lex: Lex, global_args: dict[str, str], build_args: Mapping[str, str]
) -> set[str]:
    """Add the global ARGs' values (a build-arg, else the default expanded) to
    ``global_args``; return the names declared."""
    declared = set()
    for arg in meta:
        for d in arg.args:
            declared.add(d.key)
            value = build_args.get(d.key, d.value)
            if d.key not in build_args and value is not None:
                try:
                    value = lex.expand(value, global_args)
                except ExpansionError as e:
                    raise arg.error(str(e)) from None
            if value is not None:
                global_args[d.key] = value
    return declared


def _needed(stages: Sequence[_Planned], target: _Planned) -> tuple[_Planned, ...]:
    """``target`` and every stage it depends on, in file order (dependencies first)."""
    needed: set[int] = set()
    todo = [target.stage.index]
    while todo:
        index = todo.pop()
        if index not in needed:
            needed.add(index)
            todo += stages[index].stage.depends_on
    return tuple(stages[i] for i in sorted(needed))


def _expand_from(
    frm: From,
    lex: Lex,
    global_args: Mapping[str, str],
    declared: set[str],
    warnings: list[BuildWarning],
) -> tuple[str, Platform | None]:
    """FROM's base name and platform, expanded with the global ARGs."""
    try:
        result = lex.process(frm.base, global_args)
    except ExpansionError as e:
        raise frm.error(str(e)) from None
    for var in sorted(result.unmatched - declared):
        warnings.append(BuildWarning(f"FROM argument '{var}' is not declared", frm.file, frm.line))
    if not result.result:
        raise frm.error(f"base name ({frm.base}) should not be blank")
    if not frm.platform:
        return result.result, None
    try:
        spec = lex.expand(frm.platform, global_args)
    except ExpansionError as e:
        raise frm.error(f"failed to process arguments for platform: {e}") from None
    if not spec:
        raise frm.error(f"empty platform value from expression {frm.platform}")
    try:
        return result.result, Platform.parse(spec)
    except ValueError as e:
        raise frm.error(f"failed to parse platform {frm.platform}: {e}") from None


def _sources(
    instr: Instruction, lex: Lex, names: Mapping[str, int], count: int
) -> list[tuple[int | str, Instruction]]:
    """What ``instr`` reads from other stages (index) or images (reference)."""
    if isinstance(instr, Copy) and instr.from_:
        try:
            literal = lex.expand(instr.from_, {}) == instr.from_
        except ExpansionError:
            literal = False
        if not literal:
            raise instr.error(
                "variable expansion is not supported for --from, define a new stage with "
                "FROM using ARG from global scope as a workaround"
            )
        if _INDEX.match(instr.from_):
            index = int(instr.from_)
            if not 0 <= index < count:
                raise instr.error(f"invalid stage index {index}")
            return [(index, instr)]
        return [(names.get(instr.from_.lower(), instr.from_), instr)]
    if isinstance(instr, Run):
        return [(names.get(src.lower(), src), instr) for src in instr.mount_sources]
    return []


def _check_cycles(stages: Sequence[_Planned]) -> None:
    """BuildKit refuses a stage that (indirectly) copies or mounts from itself."""
    done: set[int] = set()

    def visit(index: int, path: set[int]) -> Instruction | None:
        if index in done:
            return None
        done.add(index)
        path.add(index)
        for dep, instr in stages[index].edges:
            if isinstance(dep, int) and (dep in path or visit(dep, path)):
                return instr
        path.discard(index)
        return None

    for planned in stages:
        instr = visit(planned.stage.index, set())
        if instr is not None:
            raise instr.error(f"circular dependency detected on stage: {planned.stage.id}")


def _check_stage(planned: _Planned) -> None:
    """What BuildKit checks when it runs a stage: its triggers parse, its sources are
    defined above it, its images are valid references."""
    stage = planned.stage
    if planned.trigger_error is not None:
        raise planned.trigger_error
    if not stage.is_scratch and stage.base_stage is None:
        _check_image(stage.base, stage.from_)
    for dep, instr in planned.edges:
        if isinstance(dep, str):
            _check_image(dep, instr)
        elif dep > stage.index and isinstance(instr, Copy):
            raise instr.error(
                f"cannot copy from stage {golang.quote(instr.from_)}, it needs to be defined "
                f"before current stage {golang.quote(stage.id)}"
            )
        elif dep > stage.index:
            raise instr.error(
                "cannot mount from stage, stage needs to be defined before current command"
            )
