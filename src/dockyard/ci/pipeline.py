"""The pipeline file (``.dockyard.yml``): its schema, and loading it with precise errors.

::

    env: {GLOBAL: "1"}
    variables: {TAG: "ci-${CI_RUN_NUMBER}"}      # ${NAME} in any string (see .variables)
    registry_auth: REGISTRY_AUTH                  # a secret: the run's registry logins
    services:
      web:
        image: REF
        command: [busybox, httpd, -f, -p, "8080"]
        ready: {tcp: 8080, timeout: 30s}          # or {command: [...]}
        stop_timeout: 10s                         # from StopSignal to SIGKILL
        secrets: [DB_PASSWORD]                    # in its environment
    steps:
      - name: test
        matrix: {PY: ["3.11", "3.12"]}            # steps test.PY-3.11, test.PY-3.12
        image: REF
        commands: [make test]                     # sh -e, in /workspace
        workdir: /app                             # where they start (default: /workspace)
        depends_on: [compile]
        secrets: [API_TOKEN]
        services: [web]                           # waits for these (default: all)
        # services: {db: {image: REF, ...}}       # or its own, in a network of its own
        cache: [/root/.cache/pip]                 # or, keyed by the files' contents:
        # cache: {key: {files: [requirements.txt]}, paths: [/root/.cache/pip]}
        # cache: {paths: [/var/cache/apt], sharing: locked}  # one step at a time in it
        reports: {junit: report.xml}
        artifacts: ["dist/**"]
        timeout: 10m
        retry: {count: 2, when: [{exit_code: 137}, timeout, service_failure]}  # default: any
        failure: ignore
        when: {status: [success, failure], branch: main, event: push}
        network: none                             # default: the run's, with outbound NAT
        labels: {gpu: "true"}                     # what the agent needs (see below)
      - name: image
        build: {context: ., dockerfile: Dockerfile, tags: [REF], push: true,
                keep: true,                       # tag it in the store too (default: no)
                registry_auth: PUSH_AUTH}         # the build's logins (default: the run's)
      - name: gate
        depends_on: [image]
        check: {image: REF, policy: gate.yml}     # dockyard check; findings as JUnit

``labels`` (at the top, or on a step) name what the agent that takes a run must have
(``dockyard agent --labels``); one agent runs the whole pipeline, so they add up, and a
step cannot ask for another value of a label than the pipeline or another step does.
``dockyard ci run`` ignores them.

The ``tags`` of a build step name its image within the run only (later steps and
their own services find it by them, before any other image so named); ``push`` sends
it to a registry under them, ``keep`` names it by them in the store for after the run.

``registry_auth`` names a secret holding a docker config (``{"auths": {HOST: {"auth":
BASE64(user:password)}}}``): the only registry credentials the run's pulls, builds and
pushes use. Without one they are anonymous; the host's own logins are used only when the
operator allows it (``RunOptions.allow_host_credentials``).

A ``check`` step runs ``dockyard check`` on an image (one the run built first, else
the store's or a registry's) with a policy file of the workspace: it fails when a rule
of severity ``error`` fails, and its findings are counted as tests (one case per rule).

A ``matrix`` makes one step per combination of its values (:mod:`.matrix`).

Unknown fields are errors, as are unknown or cyclic ``depends_on`` names, repeated
step names and unknown ``${VARIABLES}`` (:mod:`.variables`). Every error names the
file, the line and the field as written (a matrix step's, not a combination's)::

    .dockyard.yml:14: steps[2].timeout: invalid duration '10x'
"""

from __future__ import annotations

import errno
import math
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from dockyard import reference, yamlmarks
from dockyard.ci import matrix
from dockyard.ci.graph import Node, StepGraph, find_cycle
from dockyard.ci.variables import BUILT_IMAGE, BUILTIN, STAND_INS, interpolate
from dockyard.errors import InvalidFile, InvalidReference, Problem
from dockyard.reference import Reference
from dockyard.runtime import inroot
from dockyard.yamlmarks import field_name

DEFAULT_FILE = ".dockyard.yml"
MAX_FILE_SIZE = 1 << 20

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOSTNAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
MAX_LABELS = 100
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = 365 * 86400.0


class PipelineError(InvalidFile):
    """The pipeline file is invalid; ``problems`` lists every error found, in order."""


# -- field types -----------------------------------------------------------------------


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"1h30m"``, ``"1.5m"``, ``"250ms"`` or ``"7d"``.

    Above 0 and at most a year (never NaN or infinite: ``.nan``, ``.inf`` are YAML floats)."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(f"(?:{_DURATION_PART.pattern})+", text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid duration {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"invalid duration {value!r}: longer than a year")
    return seconds


def _text(value: object) -> str:
    """YAML scalars as the strings a shell or an environment would see."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if value is None:
        return ""
    raise ValueError(f"expected a string, number or boolean, not {type(value).__name__}")


def _list(value: object) -> object:
    """A lone string where a list is expected is a list of one."""
    return [value] if isinstance(value, str) else value


def _image(value: object) -> Reference:
    if isinstance(value, Reference):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an image reference")
    try:
        return reference.parse(value)
    except InvalidReference as e:
        raise ValueError(str(e)) from None


def _step_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"invalid name {value!r}: letters, digits, '_', '.', '-'; 63 at most")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"invalid variable name {value!r}")
    return value


def _relative(value: str) -> str:
    """A path inside the workspace: relative, no ``..``."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r}: expected a relative path inside the workspace")
    return value


def _absolute(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/"):
        raise ValueError(f"{value!r}: expected an absolute path below /")
    return str(path)


def _directory(value: str) -> str:
    """An absolute path in a container, ``/`` included."""
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r}: expected an absolute path")
    return str(path)


Text = Annotated[str, BeforeValidator(_text)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
ImageRef = Annotated[Reference, BeforeValidator(_image)]
StepName = Annotated[str, AfterValidator(_step_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
RelativePath = Annotated[str, AfterValidator(_relative)]
AbsolutePath = Annotated[str, AfterValidator(_absolute)]
Directory = Annotated[str, AfterValidator(_directory)]
Env = dict[EnvName, Text]


def _label_name(value: str) -> str:
    if not LABEL_NAME.match(value):
        raise ValueError(f"invalid label name {value!r}: letters, digits, '.', '_', '/', '-'")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_LABELS:
        raise ValueError(f"more than {MAX_LABELS} labels")
    return value


Labels = Annotated[
    dict[Annotated[str, AfterValidator(_label_name)], Annotated[str, Field(max_length=4096)]],
    BeforeValidator(lambda v: {k: _text(x) for k, x in v.items()} if isinstance(v, dict) else v),
    AfterValidator(_labels),
]


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError(f"invalid service name {value!r}: it must be a valid hostname")
    return value


ServiceName = Annotated[str, AfterValidator(_hostname)]


# -- the schema ------------------------------------------------------------------------


class _Model(BaseModel):
    # defer_build: only the validator of PipelineSpec (which inlines the others) is ever
    # used; building one per model at import cost more than the whole load of a file.
    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, defer_build=True
    )


class Ready(_Model):
    """When a service counts as up: a TCP port accepts connections, or a command exits 0.

    The port is on 127.0.0.1 of the run's network; the command runs in a container of the service's
    image."""

    tcp: int | None = Field(None, ge=1, le=65535)
    command: tuple[Text, ...] | None = None
    timeout: Duration = 60.0

    @model_validator(mode="after")
    def _one_check(self) -> Ready:
        if (self.tcp is None) == (self.command is None):
            raise ValueError("give exactly one of tcp and command")
        if self.command is not None and not self.command:
            raise ValueError("command: must not be empty")
        return self


class Service(_Model):
    """A container started before the steps that use it and stopped after them."""

    image: ImageRef
    command: tuple[Text, ...] = ()  # replaces the image's CMD, as in compose
    environment: Env = {}
    secrets: tuple[EnvName, ...] = ()
    ready: Ready | None = None
    stop_timeout: Duration = 10.0  # after the image's StopSignal, before SIGKILL


class When(_Model):
    """Conditions for a step to run; each list matches if any of its items does."""

    status: Annotated[tuple[Literal["success", "failure"], ...], BeforeValidator(_list)] = (
        "success",
    )
    branch: Annotated[tuple[str, ...], BeforeValidator(_list)] = ()  # glob patterns
    event: Annotated[tuple[str, ...], BeforeValidator(_list)] = ()

    @model_validator(mode="after")
    def _some_status(self) -> When:
        if not self.status:
            raise ValueError("status: must name success, failure or both")
        return self

    def skip_reason(self, *, branch: str | None, event: str, upstream_failed: bool) -> str:
        """Why a step with these conditions must not run, or "" if it may run.

        ``upstream_failed``: whether anything the step waits for has failed."""
        if self.branch and not (branch and any(fnmatchcase(branch, p) for p in self.branch)):
            return f"branch {branch or '(unknown)'} does not match when.branch"
        if self.event and event not in self.event:
            return f"event {event} does not match when.event"
        status = "failure" if upstream_failed else "success"
        if status not in self.status:
            return "an earlier step failed" if upstream_failed else "nothing failed"
        return ""


class Build(_Model):
    """An image built in-process from the workspace; paths relative to the workspace."""

    context: RelativePath = "."
    dockerfile: RelativePath | None = None  # default: CONTEXT/Dockerfile
    tags: Annotated[tuple[ImageRef, ...], BeforeValidator(_list)] = ()
    push: bool = False
    keep: bool = False  # also tag it in the store (else the tags are the run's own)
    build_args: dict[str, Text] = {}
    cache_from: Annotated[tuple[str, ...], BeforeValidator(_list)] = ()
    cache_to: str | None = None
    registry_auth: EnvName | None = None  # a secret; default: the pipeline's
    network: Literal["default", "none", "host"] = "default"  # host: if the run allows it

    @model_validator(mode="after")
    def _push_needs_tags(self) -> Build:
        if self.push and not self.tags:
            raise ValueError("push: needs tags to push to")
        return self


class CheckImage(_Model):
    """The image gate on an image.

    ``policy`` is a file of the workspace (default: the built-in policy of ``dockyard check``)."""

    image: ImageRef
    policy: RelativePath | None = None


class CacheKey(_Model):
    """What a cache's content depends on: files of the workspace (when a step starts)."""

    files: Annotated[tuple[RelativePath, ...], BeforeValidator(_list)]

    @field_validator("files")
    @classmethod
    def _some_files(cls, files: tuple[str, ...]) -> tuple[str, ...]:
        if not files:
            raise ValueError("name at least one file")
        return files


class Cache(_Model):
    """Cache dirs kept between runs; with a ``key``, one set per content of its files.

    ``sharing`` is BuildKit's for cache mounts: ``shared`` (steps of any run use a cache
    dir at once) or ``locked`` (one step at a time, the others wait: for tools such as
    apt and dpkg that lock their cache and fail rather than wait). The lock binds the
    steps that say ``locked``: a step naming the same cache as ``shared`` does not wait."""

    key: CacheKey | None = None
    paths: Annotated[tuple[AbsolutePath, ...], BeforeValidator(_list)]
    sharing: Literal["shared", "locked"] = "shared"


def _cache_form(value: object) -> str:
    return "[keyed]" if isinstance(value, dict) else "[paths]"


CacheField = Annotated[
    Annotated[tuple[AbsolutePath, ...], Tag("[paths]")] | Annotated[Cache, Tag("[keyed]")],
    Discriminator(_cache_form),
]


class ExitCode(_Model):
    exit_code: int = Field(ge=1, le=255)


class Retry(_Model):
    """Run a failed step again, up to ``count`` more times, if it failed as ``when`` says.

    ``when``: ``failure`` (any), ``timeout``, ``{exit_code: N}``, or ``service_failure`` (its own
    services did not get ready: they start afresh); default: any."""

    count: int = Field(ge=1, le=10)
    when: Annotated[
        tuple[Literal["failure", "timeout", "service_failure"] | ExitCode, ...],
        BeforeValidator(_list),
    ] = ("failure", "timeout")

    def matches(self, status: str, exit_code: int | None, *, service_failed: bool = False) -> bool:
        """Whether an attempt that ended with ``status`` is retried.

        The attempt is told by ``status`` and ``exit_code``, or by its services having failed."""
        for condition in self.when:
            if isinstance(condition, ExitCode):
                if status == "failure" and exit_code == condition.exit_code:
                    return True
            elif condition == "service_failure":
                if status == "failure" and service_failed:
                    return True
            elif condition == status:
                return True
        return False


class Reports(_Model):
    junit: Annotated[tuple[RelativePath, ...], BeforeValidator(_list)] = ()  # glob patterns


_COMMAND_FIELDS = (
    "image",
    "commands",
    "workdir",
    "environment",
    "cache",
    "reports",
    "artifacts",
    "network",
    "services",
)


def _services_form(value: object) -> str:
    return "[own]" if isinstance(value, dict) else "[names]"


StepServices = Annotated[
    Annotated[tuple[ServiceName, ...], BeforeValidator(_list), Tag("[names]")]
    | Annotated[dict[ServiceName, Service], Tag("[own]")],
    Discriminator(_services_form),
]


class Step(_Model):
    """A command step, a build step or a check step.

    A command step has ``image`` and ``commands``, a build step ``build``, a check step ``check``.
    """

    name: StepName
    image: ImageRef | None = None
    commands: tuple[Text, ...] = ()  # empty: the image's own command
    workdir: Directory | None = None  # default: the workspace
    environment: Env = {}
    secrets: tuple[EnvName, ...] = ()
    depends_on: tuple[str, ...] = ()
    cache: CacheField = ()  # paths, or a Cache
    reports: Reports = Reports.model_construct()  # built without a validator (see _Model)
    artifacts: tuple[RelativePath, ...] = ()  # glob patterns
    timeout: Duration | None = None  # of each attempt
    retry: Retry | None = None
    failure: Literal["fail", "ignore"] = "fail"
    when: When = When.model_construct()
    network: Literal["default", "none"] = "default"  # none: loopback only, no services
    # the pipeline's services it waits for (default: all), or its own (a mapping)
    services: StepServices | None = None
    build: Build | None = None
    check: CheckImage | None = None
    labels: Labels = {}  # what the agent needs, besides the pipeline's labels

    @property
    def own_services(self) -> dict[str, Service]:
        """The services started for this step alone, in a network of its own."""
        return self.services if isinstance(self.services, dict) else {}

    def uses(self, services: Collection[str]) -> tuple[str, ...]:
        """Which of the pipeline's ``services`` this step waits for.

        A build step waits for none: its RUN steps have a network of their own."""
        if self.services is None:
            idle = self.network == "none" or self.build or self.check
            return () if idle else tuple(services)
        return () if isinstance(self.services, dict) else self.services

    @property
    def cache_paths(self) -> tuple[str, ...]:
        return self.cache.paths if isinstance(self.cache, Cache) else self.cache

    @property
    def cache_locked(self) -> bool:
        """Whether its cache dirs are used by one step at a time."""
        return isinstance(self.cache, Cache) and self.cache.sharing == "locked"

    @property
    def cache_files(self) -> tuple[str, ...]:
        """The files its caches are keyed by (none: one cache per path)."""
        key = self.cache.key if isinstance(self.cache, Cache) else None
        return key.files if key else ()

    @model_validator(mode="after")
    def _kind(self) -> Step:
        if self.build is not None and self.check is not None:
            raise ValueError("a step cannot have both build and check")
        for kind, fields in (("build", _COMMAND_FIELDS), ("check", (*_COMMAND_FIELDS, "secrets"))):
            if getattr(self, kind) is not None:
                extra = [f for f in fields if f in self.model_fields_set]
                if extra:
                    raise ValueError(f"a {kind} step cannot have {', '.join(extra)}")
        if self.build is None and self.check is None and self.image is None:
            raise ValueError("a step needs image (to run commands), build or check")
        if self.network == "none" and self.services:
            raise ValueError("a step with network: none has no services")
        return self


class PipelineSpec(_Model):
    """The whole file."""

    name: str | None = None  # keys the caches; default: the file's path
    env: Env = {}
    variables: Env = {}  # ${NAME} in strings, and in every step's environment
    registry_auth: EnvName | None = None  # a secret: the run's registry credentials
    services: dict[ServiceName, Service] = {}
    labels: Labels = {}  # what the agent that runs it must have
    steps: tuple[Step, ...]

    @field_validator("variables")
    @classmethod
    def _not_builtin(cls, variables: dict[str, str]) -> dict[str, str]:
        taken = sorted(set(variables) & {*BUILTIN, BUILT_IMAGE})
        if taken:
            raise ValueError(f"{', '.join(taken)}: a built-in variable")
        return variables

    @field_validator("steps")
    @classmethod
    def _some_steps(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        if not steps:
            raise ValueError("a pipeline needs at least one step")
        return steps


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline file.

    Variables are replaced with stand-ins until :meth:`with_values` gives their values."""

    file: Path
    spec: PipelineSpec
    document: yamlmarks.MarkedDocument | None = field(default=None, compare=False, repr=False)
    matrices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> steps

    def with_values(self, values: Mapping[str, str]) -> Pipeline:
        """This pipeline with the built-in variables' ``values`` (a run's).

        Raise :class:`PipelineError` if the file is then invalid (a tag with ``/`` in it)."""
        assert self.document is not None
        return _validate(self.document, self.file, values)

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.spec.steps

    @property
    def services(self) -> dict[str, Service]:
        return self.spec.services

    @property
    def cache_key(self) -> str:
        """What keys this pipeline's caches: its name, else its file's absolute path."""
        return self.spec.name or str(self.file.absolute())

    def step(self, name: str) -> Step:
        """The step ``name``; KeyError if there is none."""
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Step]:
        return {step.name: step for step in self.steps}

    def steps_named(self, name: str) -> tuple[str, ...]:
        """The steps ``name`` stands for: a matrix's combinations, else itself."""
        return self.matrices.get(name, (name,))

    def dependencies(self, step: Step) -> tuple[str, ...]:
        """The steps ``step`` waits for by its ``depends_on`` (matrices expanded)."""
        return tuple(dict.fromkeys(s for dep in step.depends_on for s in self.steps_named(dep)))

    @property
    def labels(self) -> dict[str, str]:
        """What the agent that runs this pipeline must have: its labels and its steps'."""
        labels = dict(self.spec.labels)
        for step in self.steps:
            labels.update(step.labels)
        return labels

    def check_labels(self, allowed: Mapping[str, str]) -> None:
        """Raise :class:`PipelineError` where the file contradicts a label ``allowed`` fixes.

        That is, where the file asks for a label another value than ``allowed`` fixes (a
        repository's labels, which its runs all need)."""
        problems = []
        data = self.document.data if self.document else {}
        written = [(("labels",), data.get("labels"))] + [
            (("steps", i, "labels"), step.get("labels"))
            for i, step in enumerate(data.get("steps") or ())
            if isinstance(step, dict)
        ]
        for key, value in self.labels.items():
            if key not in allowed or allowed[key] == value:
                continue
            for loc, labels in written:
                if isinstance(labels, dict) and key in labels:
                    line = self.document.line_of((*loc, key)) if self.document else None
                    message = f"{key}={value}: this repository's runs need {key}={allowed[key]}"
                    problems.append(Problem(field_name((*loc, key)), message, line))
        if problems:
            raise PipelineError(str(self.file), problems)

    @cached_property
    def graph(self) -> StepGraph:
        return StepGraph(
            Node(s.name, self.dependencies(s), "failure" in s.when.status) for s in self.steps
        )


# -- loading ---------------------------------------------------------------------------


def load_pipeline(
    file: str | os.PathLike[str], *, within: str | os.PathLike[str] | None = None
) -> Pipeline:
    """Read and validate a pipeline file; raise :class:`PipelineError` if it is invalid.

    ``within``: a directory ``file`` lies in (a repository) that symlinks may not lead
    out of, so that a ``.dockyard.yml`` linked to a host file is not read, nor its
    content echoed in an error. Only a regular file is read (a FIFO never blocks).
    """
    path = Path(file)
    try:
        fd = open_regular(path, within)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        reason = "it leads out of its directory" if e.errno == errno.EXDEV else e.strerror
        raise PipelineError(str(path), [Problem("", f"cannot read: {reason}", None)]) from None
    if len(data) > MAX_FILE_SIZE:
        raise PipelineError(str(path), [Problem("", "larger than 1 MiB", None)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        problem = Problem("", f"not UTF-8 text (byte 0x{data[e.start]:02x})", line)
        raise PipelineError(str(path), [problem]) from None
    return parse_pipeline(text, path)


def open_regular(path: Path, within: str | os.PathLike[str] | None) -> int:
    """An fd of the regular file ``path``, opened beneath ``within`` if given.

    See :func:`dockyard.runtime.inroot.open_regular`."""
    if within is None:
        return inroot.regular(os.open(path, os.O_PATH | os.O_CLOEXEC))
    root = os.open(within, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(within))
        return inroot.open_regular(root, relative, beneath=True)
    finally:
        os.close(root)


def parse_pipeline(text: str, file: Path) -> Pipeline:
    """Validate the text of the pipeline file ``file`` (used in messages only)."""
    try:
        document = yamlmarks.load(text)
    except yamlmarks.YamlError as e:
        raise PipelineError(str(file), [Problem("", e.message, e.line)]) from None
    return _validate(document, file, STAND_INS)


def _validate(
    document: yamlmarks.MarkedDocument, file: Path, values: Mapping[str, str]
) -> Pipeline:
    """The pipeline of ``document``, its variables replaced with ``values``."""
    if not isinstance(document.data, dict):
        raise PipelineError(str(file), [Problem("", "expected a mapping with steps", 1)])
    expansion = matrix.expand(document.data, (*BUILTIN, BUILT_IMAGE))

    def problem(loc: yamlmarks.FieldPath, message: str) -> Problem:
        """A problem at ``loc`` of the expanded document, where it is written."""
        written = expansion.source(loc)
        return Problem(field_name(written), message, document.line_of(written))

    def fail(problems: Sequence[Problem]) -> PipelineError:
        # once each: every combination of a matrix step has the step's own problems
        return PipelineError(str(file), list(dict.fromkeys(problems)))

    if expansion.problems:
        raise fail(
            [Problem(field_name(loc), m, document.line_of(loc)) for loc, m in expansion.problems]
        )
    unknown: list[Problem] = []
    data = interpolate(
        expansion.data,
        values,
        lambda loc, message: unknown.append(problem(loc, message)),
        expansion.values,
    )
    if unknown:
        raise fail(unknown)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        problems = [_problem(error, problem) for error in e.errors(include_url=False)]
        problems.sort(key=lambda problem: problem.line or 0)  # in the order of the file
        raise fail(problems) from None
    pipeline = Pipeline(file, spec, document, expansion.groups)
    problems = _cross_check(pipeline, problem)
    if problems:
        raise fail(problems)
    return pipeline


def _problem(error: Any, problem: Callable[[yamlmarks.FieldPath, str], Problem]) -> Problem:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required field missing"
    # "[key]" of a dict's key, "[keyed]" and the like of a choice between forms
    loc = tuple(part for part in loc if not (isinstance(part, str) and part.startswith("[")))
    return problem(loc, message)


def _cross_check(
    pipeline: Pipeline, problem: Callable[[yamlmarks.FieldPath, str], Problem]
) -> list[Problem]:
    """What one field cannot tell alone: unique names, known and acyclic dependencies,
    and images built in the run used only after their build step."""
    spec = pipeline.spec
    problems: list[Problem] = []

    def add(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(problem(loc, message))

    index: dict[str, int] = {}
    for i, step in enumerate(spec.steps):
        if step.name in index or step.name in pipeline.matrices:
            add(("steps", i, "name"), f"step name {step.name!r} is used twice")
        index.setdefault(step.name, i)
    for i, step in enumerate(spec.steps):
        for j, dep in enumerate(step.depends_on):
            if dep not in index and dep not in pipeline.matrices:
                add(("steps", i, "depends_on", j), f"no step is named {dep!r}")
            elif step.name in pipeline.steps_named(dep):
                add(("steps", i, "depends_on", j), "a step cannot depend on itself")
    if problems:
        return problems
    wanted = {key: ("the pipeline", value) for key, value in spec.labels.items()}
    for i, step in enumerate(spec.steps):
        for key, value in step.labels.items():
            where, other = wanted.setdefault(key, (f"step {step.name!r}", value))
            if other != value:
                add(
                    ("steps", i, "labels", key),
                    f"{key}={value}, but {where} asks for {key}={other}: one agent runs "
                    "the whole pipeline",
                )
    cycle = find_cycle({s.name: pipeline.dependencies(s) for s in spec.steps})
    if cycle:
        add(("steps", index[cycle[0]], "depends_on"), f"dependency cycle: {' -> '.join(cycle)}")
        return problems
    graph = pipeline.graph
    builders = {tag: s.name for s in spec.steps if s.build for tag in s.build.tags}
    for name, service in spec.services.items():
        if service.image in builders:
            add(
                ("services", name, "image"),
                f"{service.image} is built by step {builders[service.image]!r}: make it "
                "the service of a step that depends on it",
            )
    for i, step in enumerate(spec.steps):
        images: list[tuple[yamlmarks.FieldPath, Reference]] = (
            [(("steps", i, "image"), step.image)] if step.image else []
        )
        if step.check:
            images.append((("steps", i, "check", "image"), step.check.image))
        images += [
            (("steps", i, "services", name, "image"), service.image)
            for name, service in step.own_services.items()
        ]
        for loc, image in images:
            builder = builders.get(image)
            if builder and builder not in graph.upstream(step.name):
                add(loc, f"{image} is built by step {builder!r}: add it to depends_on")
        if isinstance(step.services, tuple):
            for j, name in enumerate(step.services):
                if name not in spec.services:
                    add(("steps", i, "services", j), f"no service is named {name!r}")
    return problems
