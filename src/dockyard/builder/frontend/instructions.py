"""Typed Dockerfile instructions, their variable expansion, and their image-history text.

:func:`parse_instruction` turns a parser :class:`~dockyard.builder.frontend.parser.Node`
into one frozen dataclass per instruction, validated as BuildKit validates at parse time.
Nothing is expanded yet: call :meth:`Instruction.expand` with the stage's variables at
the moment the instruction runs (``StageScope.apply`` in :mod:`.stages` does that and
tracks ARG/ENV). Only what BuildKit expands is expanded: ADD, COPY (not ``--from``),
ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and RUN's ``--mount`` values.
RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/ONBUILD/MAINTAINER are left for the shell or kept
verbatim; FROM is expanded with the global ARGs by the stage graph; ARG defaults by the
stage scope.

``created_by`` methods give the ``history[].created_by`` text BuildKit writes.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Self

from dockyard.builder.frontend import golang
from dockyard.builder.frontend.parser import (
    DEFAULT_ESCAPE,
    Heredoc,
    Node,
    heredoc_word,
    parse_json,
    parse_words,
    split_fields,
)
from dockyard.builder.frontend.shell_lex import ExpansionError, Lex
from dockyard.builder.frontend.suggest import did_you_mean
from dockyard.errors import BuildError

DEFAULT_SHELL = ("/bin/sh", "-c")
BUILDKIT_SUFFIX = " # buildkit"  # history of instructions that ran on a container/snapshot

_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*\Z")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_MODE_CLAUSE = r"[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+"
_SYMBOLIC_MODE = re.compile(rf"{_MODE_CLAUSE}(?:,{_MODE_CLAUSE})*\Z")
_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING_MODES = ("shared", "private", "locked")
_MOUNT_KEYS = (  # in BuildKit's order, which decides between equally near suggestions
    *("type", "from", "source", "target", "readonly", "id", "sharing", "required", "size"),
    *("mode", "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env"),
)
_RAM_SIZE = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIGNALS = frozenset(
    [
        "ABRT",
        "ALRM",
        "BUS",
        "CHLD",
        "CLD",
        "CONT",
        "FPE",
        "HUP",
        "ILL",
        "INT",
        "IO",
        "IOT",
        "KILL",
        "PIPE",
        "POLL",
        "PROF",
        "PWR",
        "QUIT",
        "SEGV",
        "STKFLT",
        "STOP",
        "SYS",
        "TERM",
        "TRAP",
        "TSTP",
        "TTIN",
        "TTOU",
        "URG",
        "USR1",
        "USR2",
        "VTALRM",
        "WINCH",
        "XCPU",
        "XFSZ",
        "RTMIN",
        "RTMAX",
    ]
    + [f"RTMIN+{i}" for i in range(1, 16)]
    + [f"RTMAX-{i}" for i in range(1, 15)]
)


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """What every instruction carries: where it is and how it was written."""

    keyword: ClassVar[str]
    line: int  # first physical line (1-based): where docker reports errors
    end_line: int  # last physical line, heredoc bodies included
    original: str  # the logical line, trimmed (continuations joined)
    file: str | None = None
    escape: str = DEFAULT_ESCAPE  # the Dockerfile's escape character, for expansion

    def error(self, message: str) -> BuildError:
        """A :class:`BuildError` located at this instruction."""
        return BuildError(message, self.file, self.line)

    def expand(self, env: Mapping[str, str]) -> Self:
        """This instruction with its expandable values expanded against ``env``.

        ``env`` is everything visible at this point of the stage: the base image's ENV,
        the ARGs declared so far, the ENVs set so far. Instructions docker does not
        expand return themselves.
        """
        return self

    def _expander(self, env: Mapping[str, str]) -> Callable[[str], str]:
        lex = Lex(self.escape)

        def expand(word: str) -> str:
            try:
                return lex.expand(word, env)
            except ExpansionError as e:
                raise self.error(str(e)) from None

        return expand


@dataclass(frozen=True)
class KeyValue:
    """One ``key=value`` of ENV or LABEL; ``legacy`` for the ``ENV key value`` form."""

    key: str
    value: str
    legacy: bool = False


@dataclass(frozen=True)
class ArgDef:
    """One name of an ARG instruction and its value: the default as written when parsed,
    the resolved value once ``StageScope.apply`` ran (None: no value)."""

    key: str
    value: str | None = None


@dataclass(frozen=True)
class InlineSource:
    """A COPY/ADD heredoc source: a file named ``path`` holding ``data``."""

    path: str
    data: str
    expand: bool


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount``, with BuildKit's defaults applied by :meth:`Run.expand`.

    ``id`` is the cache id (default: the cleaned target), the secret id (``source`` or
    ``id`` or the target's base name) or the ssh id (default ``default``). ``target``
    for a secret defaults to ``/run/secrets/<id>`` unless the secret goes to ``env``
    only; for ssh to ``/run/buildkit/ssh_agent.<n>``. ``from_`` is a stage name/index or
    an image ("" = the build context, or an empty dir for a cache). ``read_only``
    defaults to True except for cache and tmpfs. Secrets and ssh sockets default to
    uid/gid 0 and mode 0400/0600; a cache dir gets uid/gid/mode only when given.
    ``size`` is the tmpfs limit in bytes (0: none). ``target`` may be relative to the
    working directory: see :meth:`Run.mount_target`.
    """

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    read_only: bool = True
    id: str = ""
    sharing: str = "shared"
    required: bool = False
    env: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0


@dataclass(frozen=True, kw_only=True)
class From(Instruction):
    """``FROM [--platform=P] image [AS name]`` (the stage graph expands base/platform)."""

    keyword: ClassVar[str] = "FROM"
    base: str
    name: str | None = None  # lower-cased stage name
    platform: str | None = None


@dataclass(frozen=True)
class RunScript:
    """A heredoc RUN starting with ``#!``: write ``data`` to ``path`` (mode 0755,
    read-only mount) and execute it, as BuildKit does."""

    path: str
    data: str


@dataclass(frozen=True, kw_only=True)
class Run(Instruction):
    """``RUN``: shell form (``shell_form``) or exec form, heredocs, mounts, network."""

    keyword: ClassVar[str] = "RUN"
    command: tuple[str, ...]  # exec-form argv, or one shell command line
    shell_form: bool
    heredocs: tuple[Heredoc, ...] = ()
    mount_specs: tuple[str, ...] = ()  # the ``--mount`` values as written
    network: str = "default"  # default | none | host
    security: str = "sandbox"  # sandbox | insecure
    mounts: tuple[Mount, ...] | None = None  # None until expand()

    @property
    def mount_sources(self) -> tuple[str, ...]:
        """The ``from=`` of each mount as written (stage or image), for the stage graph."""
        return tuple(s for s in (_mount_from(spec) for spec in self.mount_specs) if s)

    def expand(self, env: Mapping[str, str]) -> Self:
        expand = self._expander(env)
        mounts = []
        ssh_index = 0
        for spec in self.mount_specs:
            try:
                mount = _parse_mount(spec, expand)
            except ValueError as e:
                raise self.error(str(e)) from None
            if mount.type == "ssh":
                if mount.source:
                    raise self.error("ssh does not support source")
                mount = replace(
                    mount,
                    id=mount.id or "default",
                    target=mount.target or f"/run/buildkit/ssh_agent.{ssh_index}",
                )
                ssh_index += 1
            mounts.append(mount)
        return replace(self, mounts=tuple(mounts))

    def mount_target(self, mount: Mount, workdir: str) -> str:
        """The absolute mount point of a bind/cache/tmpfs ``mount`` when running in
        ``workdir`` (relative targets join it)."""
        target = mount.target
        if not golang.clean_path(target).startswith("/"):
            target = golang.clean_path("/" + workdir + "/" + target)
        if target == "/":
            raise self.error(f"invalid mount target {golang.quote(target)}")
        return target

    def command_line(
        self, shell: Sequence[str] = DEFAULT_SHELL
    ) -> tuple[list[str], RunScript | None]:
        """The argv to execute (shell prepended for the shell form), and the script file
        to provide first when the RUN is a single ``#!`` heredoc."""
        args = list(self.command)
        script = None
        if self.heredocs:
            if len(args) != 1 or not self.shell_form:
                raise self.error(f"parsing produced an invalid run command: {args}")
            if _heredoc_opening(args[0]) is not None:
                first = self.heredocs[0]
                data = first.text
                if data.startswith("#!"):
                    script = RunScript("/dev/pipes/" + first.name, data)
                    args = [script.path]
                else:
                    args = [data]
            else:
                # several heredocs or a command after one: the shell reads them itself
                args = [args[0] + "".join(f"\n{h.content}{h.name}" for h in self.heredocs)]
        if self.shell_form:
            args = [*shell, " ".join(args)]
        return args, script

    def created_by(self, args: Sequence[str], build_args: Sequence[tuple[str, str]]) -> str:
        """``RUN |2 A=1 B=2 /bin/sh -c make # buildkit``: ``args`` from
        :meth:`command_line`, ``build_args`` the stage's ARGs with their current values
        (``StageScope.history_args``)."""
        prefix = [f"|{len(build_args)}", *(f"{k}={v}" for k, v in build_args)] if build_args else []
        return "RUN " + " ".join([*prefix, *args]) + BUILDKIT_SUFFIX


@dataclass(frozen=True, kw_only=True)
class _CommandLine(Instruction):
    command: tuple[str, ...]
    shell_form: bool

    def config_value(self, shell: Sequence[str] = DEFAULT_SHELL) -> list[str]:
        """The image config value (``["/bin/sh", "-c", "cmd"]`` for the shell form)."""
        return [*shell, " ".join(self.command)] if self.shell_form else list(self.command)

    def created_by(self, shell: Sequence[str] = DEFAULT_SHELL) -> str:
        """``CMD ["/bin/sh" "-c" "run"]``."""
        return f"{self.keyword} {golang.format_quoted_list(self.config_value(shell))}"


@dataclass(frozen=True, kw_only=True)
class Cmd(_CommandLine):
    """``CMD``: exec form, or shell form run through the image's SHELL."""

    keyword: ClassVar[str] = "CMD"


@dataclass(frozen=True, kw_only=True)
class Entrypoint(_CommandLine):
    """``ENTRYPOINT``; ``ENTRYPOINT []`` clears it. Docker resets CMD to none unless a CMD
    was set earlier in the same stage."""

    keyword: ClassVar[str] = "ENTRYPOINT"


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    """``SHELL ["executable", "params"]`` (JSON form only)."""

    keyword: ClassVar[str] = "SHELL"
    shell: tuple[str, ...]

    def created_by(self) -> str:
        return f"SHELL {golang.format_list(self.shell)}"


@dataclass(frozen=True, kw_only=True)
class _KeyValues(Instruction):
    pairs: tuple[KeyValue, ...]

    def expand(self, env: Mapping[str, str]) -> Self:
        expand = self._expander(env)
        return replace(
            self,
            pairs=tuple(replace(p, key=expand(p.key), value=expand(p.value)) for p in self.pairs),
        )

    def created_by(self) -> str:
        return self.keyword + "".join(f" {p.key}={p.value}" for p in self.pairs)


@dataclass(frozen=True, kw_only=True)
class Env(_KeyValues):
    """``ENV k=v ...`` or legacy ``ENV k v``; every value is expanded with the variables
    as they were *before* this instruction."""

    keyword: ClassVar[str] = "ENV"


@dataclass(frozen=True, kw_only=True)
class Label(_KeyValues):
    """``LABEL k=v ...`` (expanded like ENV)."""

    keyword: ClassVar[str] = "LABEL"


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    """``MAINTAINER name`` (deprecated): docker sets the image's ``author``."""

    keyword: ClassVar[str] = "MAINTAINER"
    maintainer: str

    def created_by(self) -> str:
        return f"MAINTAINER {self.maintainer}"


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    """``ARG a b=default ...``: values are resolved by ``StageScope.apply`` (a build-arg,
    else the default expanded, else the global ARG of that name)."""

    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDef, ...]

    def created_by(self) -> str:
        """``ARG a=1 b`` (call on the Arg ``StageScope.apply`` returned)."""
        return "ARG " + " ".join(
            a.key if a.value is None else f"{a.key}={a.value}" for a in self.args
        )


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    """``EXPOSE 80 53/udp 8000-8002``; after :meth:`expand`, ``ports`` are the
    ``port/proto`` entries docker stores (ranges unrolled, ``tcp`` by default)."""

    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]

    def expand(self, env: Mapping[str, str]) -> Self:
        lex = Lex(self.escape)
        out: list[str] = []
        for raw in self.ports:
            try:
                words = lex.words(raw, env)
            except ExpansionError as e:
                raise self.error(str(e)) from None
            for word in words:
                try:
                    out += _parse_port(word)
                except ValueError as e:
                    raise self.error(f"invalid port: {golang.quote(word)}: {e}") from None
        return replace(self, ports=tuple(out))

    def created_by(self) -> str:
        return f"EXPOSE {golang.format_list(self.ports)}"


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    """``VOLUME ["/a", "/b"]`` or ``VOLUME /a /b``."""

    keyword: ClassVar[str] = "VOLUME"
    volumes: tuple[str, ...]

    def expand(self, env: Mapping[str, str]) -> Self:
        expand = self._expander(env)
        volumes = tuple(expand(v) for v in self.volumes)
        if "" in volumes:
            raise self.error("VOLUME specified can not be an empty string")
        return replace(self, volumes=volumes)

    def created_by(self) -> str:
        return f"VOLUME {golang.format_list(self.volumes)}"


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    """``USER user[:group]``."""

    keyword: ClassVar[str] = "USER"
    user: str

    def expand(self, env: Mapping[str, str]) -> Self:
        return replace(self, user=self._expander(env)(self.user))

    def split(self) -> tuple[str, str | None]:
        """``(user, group)``; group None when not given."""
        user, sep, group = self.user.partition(":")
        return user, (group if sep else None)

    def created_by(self) -> str:
        return f"USER {self.user}"


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    """``WORKDIR path``: relative paths join the previous working directory; docker
    creates the directory (a layer, unless it is ``/``)."""

    keyword: ClassVar[str] = "WORKDIR"
    path: str

    def expand(self, env: Mapping[str, str]) -> Self:
        return replace(self, path=self._expander(env)(self.path))

    def resolve(self, current: str) -> str:
        """The new working directory when the current one is ``current``."""
        return normalize_path(current, self.path)

    @staticmethod
    def created_by(workdir: str) -> str:
        """``WORKDIR /app`` with the resolved directory."""
        return f"WORKDIR {workdir}"


@dataclass(frozen=True, kw_only=True)
class StopSignal(Instruction):
    """``STOPSIGNAL SIGTERM`` (a name with or without ``SIG``, or a number)."""

    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str

    def expand(self, env: Mapping[str, str]) -> Self:
        signal = self._expander(env)(self.signal)
        if not _valid_signal(signal):
            raise self.error(f"invalid signal: {signal}")
        return replace(self, signal=signal)

    def created_by(self) -> str:
        return f"STOPSIGNAL {self.signal}"


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """``HEALTHCHECK NONE`` or ``HEALTHCHECK [--interval=..] CMD ...``; durations in
    nanoseconds as the image config stores them (0: inherit)."""

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: tuple[str, ...]  # ("NONE",) | ("CMD", argv...) | ("CMD-SHELL", command)
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def created_by(self) -> str:
        d = golang.format_duration
        return (
            f"HEALTHCHECK {{Test:{golang.format_list(self.test)} Interval:{d(self.interval)} "
            f"Timeout:{d(self.timeout)} StartPeriod:{d(self.start_period)} "
            f"StartInterval:{d(self.start_interval)} Retries:{self.retries}}}"
        )


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    """``ONBUILD <instruction>``: ``expression`` is what the image config's ``OnBuild``
    keeps (heredoc bodies included). Writes no history entry."""

    keyword: ClassVar[str] = "ONBUILD"
    expression: str


@dataclass(frozen=True, kw_only=True)
class _CopyBase(Instruction):
    sources: tuple[str, ...]  # context paths, URLs (ADD), or paths in --from
    dest: str
    inline: tuple[InlineSource, ...] = ()  # heredoc sources
    chown: str = ""
    chmod: str = ""
    link: bool = False
    exclude: tuple[str, ...] = ()

    def expand(self, env: Mapping[str, str]) -> Self:
        expand = self._expander(env)
        raw = Lex(DEFAULT_ESCAPE, skip_process_quotes=True)
        inline = []
        for source in self.inline:
            if source.expand:
                try:
                    source = replace(source, data=raw.expand(source.data, env))
                except ExpansionError as e:
                    raise self.error(str(e)) from None
            inline.append(source)
        done = replace(
            self,
            chown=expand(self.chown),
            chmod=expand(self.chmod),
            sources=tuple(expand(s) for s in self.sources),
            dest=expand(self.dest),
            inline=tuple(inline),
        )
        if done.chmod:
            _check_chmod(done)
        return done

    def resolve_dest(self, workdir: str) -> str:
        """The absolute destination (a trailing ``/`` kept: it means "into a directory")."""
        dest = "./" if self.dest in (".", "") else self.dest
        return normalize_path(workdir, dest, keep_slash=True)

    def _history(self, flags: list[str]) -> str:
        if self.chown:
            flags.append(f"--chown={self.chown}")
        if self.chmod:
            flags.append(f"--chmod={self.chmod}")
        parts = [self.keyword, *flags, *self.sources, *(f"<<{s.path}" for s in self.inline)]
        return " ".join([*parts, self.dest]) + BUILDKIT_SUFFIX


@dataclass(frozen=True, kw_only=True)
class Copy(_CopyBase):
    """``COPY [--from=stage|image|index] [--chown] [--chmod] [--link] [--parents]
    [--exclude=p]... src... dest`` (``--from`` is never expanded)."""

    keyword: ClassVar[str] = "COPY"
    from_: str = ""
    parents: bool = False

    def created_by(self) -> str:
        """``COPY --chown=1:1 a b /dst # buildkit`` (``--from``/``--link`` not shown)."""
        return self._history(["--parents"] if self.parents else [])


@dataclass(frozen=True, kw_only=True)
class Add(_CopyBase):
    """``ADD [--chown] [--chmod] [--link] [--checksum] [--keep-git-dir] [--unpack]
    [--exclude=p]... src... dest``: local archives unpack, URLs download."""

    keyword: ClassVar[str] = "ADD"
    checksum: str = ""
    keep_git_dir: bool | None = None
    unpack: bool | None = None

    def expand(self, env: Mapping[str, str]) -> Self:
        done = replace(super().expand(env), checksum=self._expander(env)(self.checksum))
        if done.checksum:
            if len(done.sources) != 1:
                raise self.error("checksum can't be specified for multiple sources")
            if not done.sources[0].startswith(("http://", "https://", "git@", "git://")):
                raise self.error("checksum requires HTTP(S) or Git sources")
        return done

    def created_by(self) -> str:
        return self._history([])


def normalize_path(parent: str, path: str, keep_slash: bool = False) -> str:
    """BuildKit's ``NormalizePath``: a relative ``path`` joins ``parent`` (default ``/``)
    and is cleaned; an absolute one is kept as written. With ``keep_slash`` a trailing
    ``/`` (or ``/.``) of ``path`` survives."""
    parent = parent or "/"
    if not parent.startswith("/"):
        parent = golang.clean_path("/" + parent)
    new = path or parent
    if not new.startswith("/"):
        new = golang.clean_path(parent + "/" + new)
    if keep_slash:
        if path.endswith("/") and not new.endswith("/"):
            new += "/"
        elif path.endswith("/."):
            new = ("/" if new == "/" else new + "/") + "."
    return new


# -- parsing ---------------------------------------------------------------------------


class _Flags:
    """An instruction's ``--flags`` checked against the ones it accepts.

    ``accepted`` maps a flag name to ``text``, ``bool`` or ``texts`` (repeatable).
    """

    def __init__(self, flags: Sequence[str], accepted: Mapping[str, str]):
        self.texts: dict[str, list[str]] = {}
        self.bools: dict[str, bool] = {}
        for flag in flags:
            if flag == "--":
                break
            name, has_value, value = flag.partition("=")
            key = name[2:]
            kind = accepted.get(key)
            if kind is None:
                raise ValueError(did_you_mean(f"unknown flag: {name}", key, accepted))
            if kind != "texts" and (key in self.texts or key in self.bools):
                raise ValueError(f"duplicate flag specified: {name}")
            if kind == "bool":
                if has_value and not value:
                    raise ValueError(f"missing a value on flag: {name}")
                if value.lower() not in ("true", "false", ""):
                    raise ValueError(f"expecting boolean value for flag {name}, not: {value}")
                self.bools[key] = value.lower() != "false"
            elif not has_value:
                raise ValueError(f"missing a value on flag: {name}")
            else:
                self.texts.setdefault(key, []).append(value)

    def text(self, key: str, default: str = "") -> str:
        return self.texts.get(key, [default])[-1]

    def all(self, key: str) -> tuple[str, ...]:
        return tuple(self.texts.get(key, ()))

    def flag(self, key: str) -> bool | None:
        """A bool flag's value, None when not given."""
        return self.bools.get(key)


def _exactly_one(node: Node) -> str:
    if not node.rest:
        raise ValueError(f"{node.command.upper()} requires exactly one argument")
    return node.rest


def _at_least_one(node: Node, args: Sequence[str]) -> None:
    if not args:
        raise ValueError(f"{node.command.upper()} requires at least one argument")


def _command(node: Node) -> tuple[tuple[str, ...], bool]:
    """(argv, shell_form) of RUN/CMD/ENTRYPOINT: the JSON array, or the line as one string."""
    if node.json is not None:
        return node.json, False
    return ((node.rest,) if node.rest else ()), True


def _key_values(node: Node, escape: str) -> tuple[KeyValue, ...]:
    name = node.command.upper()
    words = parse_words(node.rest, escape)
    if not words:
        raise ValueError(f"{name} requires at least one argument")
    if "=" not in words[0]:
        parts = _WHITESPACE.split(node.rest, maxsplit=1)
        if len(parts) < 2:
            raise ValueError(f"{name} must have two arguments")
        pairs = [KeyValue(parts[0], parts[1], legacy=True)]
    else:
        pairs = []
        for word in words:
            if "=" not in word:
                raise ValueError(
                    f"Syntax error - can't find = in {golang.quote(word)}. "
                    "Must be of the form: name=value"
                )
            key, _, value = word.partition("=")
            pairs.append(KeyValue(key, value))
    if any(not p.key for p in pairs):
        raise ValueError(f"{name} names can not be blank")
    return tuple(pairs)


def _parse_from(node: Node, common: dict) -> From:
    args = split_fields(node.rest)
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise ValueError(
                f"invalid name for build stage: {golang.quote(args[2])}, "
                "name can't start with a number or contain symbols"
            )
    elif len(args) != 1:
        raise ValueError("FROM requires either one or three arguments")
    f = _Flags(node.flags, {"platform": "text"})
    return From(base=args[0], name=name, platform=f.text("platform") or None, **common)


def _parse_run(node: Node, common: dict) -> Run:
    f = _Flags(node.flags, {"mount": "texts", "network": "text", "security": "text"})
    network = f.text("network", "default")
    if network not in ("default", "none", "host"):
        raise ValueError(f"invalid network mode {golang.quote(network)}")
    security = f.text("security", "sandbox")
    if security not in ("sandbox", "insecure"):
        raise ValueError(f"security {golang.quote(security)} is not valid")
    for spec in f.all("mount"):
        _mount_from(spec)  # BuildKit rejects a variable in from= while parsing
    command, shell_form = _command(node)
    return Run(
        command=command,
        shell_form=shell_form,
        heredocs=node.heredocs,
        mount_specs=f.all("mount"),
        network=network,
        security=security,
        **common,
    )


def _parse_cmd(node: Node, common: dict) -> Cmd | Entrypoint:
    _Flags(node.flags, {})
    command, shell_form = _command(node)
    cls = Entrypoint if node.keyword == "entrypoint" else Cmd
    return cls(command=command, shell_form=shell_form, **common)


def _parse_shell(node: Node, common: dict) -> Shell:
    _Flags(node.flags, {})
    command, shell_form = _command(node)
    if not command:
        raise ValueError("SHELL requires at least one argument")
    if shell_form:
        raise ValueError("SHELL requires the arguments to be in JSON form")
    return Shell(shell=command, **common)


def _parse_env(node: Node, common: dict) -> Env | Label:
    pairs = _key_values(node, common["escape"])
    _Flags(node.flags, {})
    cls = Label if node.keyword == "label" else Env
    return cls(pairs=pairs, **common)


def _parse_maintainer(node: Node, common: dict) -> Maintainer:
    maintainer = _exactly_one(node)
    _Flags(node.flags, {})
    return Maintainer(maintainer=maintainer, **common)


def _parse_arg(node: Node, common: dict) -> Arg:
    words = parse_words(node.rest, common["escape"])
    _at_least_one(node, words)
    defs = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and not key:
            raise ValueError("ARG names can not be blank")
        defs.append(ArgDef(key, value if eq else None))
    return Arg(args=tuple(defs), **common)


def _parse_expose(node: Node, common: dict) -> Expose:
    ports = split_fields(node.rest)
    _at_least_one(node, ports)
    _Flags(node.flags, {})
    return Expose(ports=tuple(sorted(ports)), **common)


def _parse_volume(node: Node, common: dict) -> Volume:
    volumes = node.json if node.json is not None else tuple(split_fields(node.rest))
    _at_least_one(node, volumes)
    _Flags(node.flags, {})
    volumes = tuple(v.strip() for v in volumes)
    if "" in volumes:
        raise ValueError("VOLUME specified can not be an empty string")
    return Volume(volumes=volumes, **common)


def _parse_user(node: Node, common: dict) -> User:
    user = _exactly_one(node)
    _Flags(node.flags, {})
    return User(user=user, **common)


def _parse_workdir(node: Node, common: dict) -> Workdir:
    path = _exactly_one(node)
    _Flags(node.flags, {})
    return Workdir(path=path, **common)


def _parse_stopsignal(node: Node, common: dict) -> StopSignal:
    return StopSignal(signal=_exactly_one(node), **common)  # BuildKit ignores its flags


def _parse_healthcheck(node: Node, common: dict) -> Healthcheck:
    kind, _, rest = _split_first(node.rest)
    if not kind:
        raise ValueError("HEALTHCHECK requires at least one argument")
    json_args = parse_json(rest) if rest else None
    args = json_args if json_args is not None else ((rest,) if rest else ())
    kind = kind.upper()
    if kind == "NONE":
        if args:
            raise ValueError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(test=("NONE",), **common)
    f = _Flags(
        node.flags,
        dict.fromkeys(("interval", "timeout", "start-period", "start-interval", "retries"), "text"),
    )
    if kind != "CMD":
        raise ValueError(f"Unknown type {golang.quote(kind)} in HEALTHCHECK (try CMD)")
    if not args:
        raise ValueError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *args) if json_args is not None else ("CMD-SHELL", args[0])
    retries = 0
    if f.text("retries"):
        text = f.text("retries")
        if not re.fullmatch(r"[+-]?[0-9]+", text) or not -(1 << 31) <= int(text) < 1 << 31:
            raise ValueError(f"strconv.ParseInt: parsing {golang.quote(text)}: invalid syntax")
        retries = int(text)
        if retries < 0:
            raise ValueError(f"--retries cannot be negative ({retries})")
    return Healthcheck(
        test=test,
        interval=_interval(f, "interval"),
        timeout=_interval(f, "timeout"),
        start_period=_interval(f, "start-period"),
        start_interval=_interval(f, "start-interval"),
        retries=retries,
        **common,
    )


def _split_first(text: str) -> tuple[str, str, str]:
    """The first whitespace-delimited word of ``text`` and what follows it."""
    m = re.match(r"(\S*)(\s*)(.*)\Z", text, re.DOTALL)
    return m.group(1), m.group(2), m.group(3)


def _interval(f: _Flags, key: str) -> int:
    text = f.text(key)
    if not text:
        return 0
    value = golang.parse_duration(text)
    if 0 < value < 1_000_000 or value < 0:
        raise ValueError(f"Interval {golang.quote(key)} cannot be less than 1ms")
    return value


def _parse_onbuild(node: Node, common: dict) -> Onbuild:
    if node.sub is None:
        raise ValueError("ONBUILD requires at least one argument")
    _Flags(node.flags, {})
    trigger = node.sub.command.strip().upper()
    if trigger == "ONBUILD":
        raise ValueError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise ValueError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    expression += "".join(f"\n{h.content}{h.name}" for h in node.heredocs)
    return Onbuild(expression=expression, **common)


def _sources(node: Node) -> tuple[tuple[str, ...], tuple[InlineSource, ...], str]:
    args = node.json if node.json is not None else tuple(split_fields(node.rest))
    if len(args) < 2:
        raise ValueError(
            f"{node.command.upper()} requires at least two arguments, but only one was "
            "provided. Destination could not be determined"
        )
    if _heredoc_opening(args[-1]) is not None:
        raise ValueError(f"{node.command.upper()} cannot accept a heredoc as a destination")
    bodies = {h.name: h for h in node.heredocs}
    paths: list[str] = []
    inline: list[InlineSource] = []
    for src in args[:-1]:
        opening = _heredoc_opening(src)
        if opening is None:
            paths.append(src)
            continue
        body = bodies.get(opening.name)
        data = body.content if body else ""
        if opening.chomp:
            data = Heredoc(opening.name, data, opening.expand, True).text
        inline.append(InlineSource(opening.name, data, opening.expand))
    return tuple(paths), tuple(inline), args[-1]


def _parse_copy(node: Node, common: dict) -> Copy:
    f = _Flags(
        node.flags,
        {
            "chown": "text",
            "from": "text",
            "chmod": "text",
            "link": "bool",
            "exclude": "texts",
            "parents": "bool",
        },
    )
    sources, inline, dest = _sources(node)
    return Copy(
        sources=sources,
        inline=inline,
        dest=dest,
        from_=f.text("from"),
        chown=f.text("chown"),
        chmod=f.text("chmod"),
        link=bool(f.flag("link")),
        parents=bool(f.flag("parents")),
        exclude=f.all("exclude"),
        **common,
    )


def _parse_add(node: Node, common: dict) -> Add:
    f = _Flags(
        node.flags,
        {
            "chown": "text",
            "chmod": "text",
            "link": "bool",
            "keep-git-dir": "bool",
            "checksum": "text",
            "unpack": "bool",
            "exclude": "texts",
        },
    )
    sources, inline, dest = _sources(node)
    return Add(
        sources=sources,
        inline=inline,
        dest=dest,
        chown=f.text("chown"),
        chmod=f.text("chmod"),
        link=bool(f.flag("link")),
        keep_git_dir=f.flag("keep-git-dir"),
        checksum=f.text("checksum"),
        unpack=f.flag("unpack"),
        exclude=f.all("exclude"),
        **common,
    )


_PARSERS: dict[str, Callable[[Node, dict], Instruction]] = {
    "from": _parse_from,
    "run": _parse_run,
    "cmd": _parse_cmd,
    "entrypoint": _parse_cmd,
    "shell": _parse_shell,
    "env": _parse_env,
    "label": _parse_env,
    "maintainer": _parse_maintainer,
    "arg": _parse_arg,
    "expose": _parse_expose,
    "volume": _parse_volume,
    "user": _parse_user,
    "workdir": _parse_workdir,
    "stopsignal": _parse_stopsignal,
    "healthcheck": _parse_healthcheck,
    "onbuild": _parse_onbuild,
    "copy": _parse_copy,
    "add": _parse_add,
}


def parse_instruction(
    node: Node, escape: str = DEFAULT_ESCAPE, file: str | None = None
) -> Instruction:
    """The typed instruction for ``node``; BuildError at its first line when invalid."""
    parse = _PARSERS.get(node.keyword)
    if parse is None:
        message = did_you_mean(
            f"unknown instruction: {node.command}",
            node.command,
            [name.upper() for name in _PARSERS],
            case_sensitive=False,
        )
        raise BuildError(message, file, node.start_line)
    common = {
        "line": node.start_line,
        "end_line": node.end_line,
        "original": node.original.strip(),
        "file": file,
        "escape": escape,
    }
    try:
        return parse(node, common)
    except ValueError as e:
        raise BuildError(str(e), file, node.start_line) from None


# -- helpers for expansion-time checks -------------------------------------------------


def _heredoc_opening(word: str) -> Heredoc | None:
    try:
        return heredoc_word(word)
    except ExpansionError:
        return None


def _csv_fields(spec: str) -> list[str]:
    import csv  # only for RUN --mount: not on every build's import

    try:
        rows = list(csv.reader([spec], strict=True))
    except csv.Error as e:
        raise ValueError(f"failed to parse csv mounts: {e}") from None
    return rows[0] if rows else [""]


def _mount_from(spec: str) -> str:
    """The ``from=`` value of a mount spec, checked the way BuildKit checks at parse time."""
    source = ""
    for fld in _csv_fields(spec):
        key, eq, value = fld.partition("=")
        if eq and key.lower() == "from":
            dollar = value.find("$")
            if dollar not in (-1, len(value) - 1):
                raise ValueError(
                    "'from' doesn't support variable expansion, define alias stage instead"
                )
            source = value
    return source


def _parse_bool_field(key: str, value: str) -> bool:
    try:
        return golang.parse_bool(value)
    except ValueError:
        raise ValueError(f"invalid value for {key}: {value}") from None


def _parse_mount(spec: str, expand: Callable[[str], str]) -> Mount:
    """One ``--mount`` value (csv ``key=value``), as BuildKit parses it at dispatch."""
    m: dict = {"type": "bind"}
    ro_auto = True
    for fld in _csv_fields(spec):
        key, eq, value = fld.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                m["read_only"], ro_auto = True, False
            elif key in ("readwrite", "rw"):
                m["read_only"], ro_auto = False, False
            elif key == "required" and m["type"] in ("secret", "ssh"):
                m["required"] = True
            elif key == "required":
                raise ValueError(f"unexpected key '{key}' for mount type '{m['type']}'")
            else:
                raise ValueError(f"invalid field '{fld}' must be a key=value pair")
            continue
        value = expand(value)
        if key == "type":
            if value.lower() not in _MOUNT_TYPES:
                message = f"unsupported mount type {golang.quote(value)}"
                raise ValueError(did_you_mean(message, value, _MOUNT_TYPES))
            m["type"] = value.lower()
        elif key == "from":
            m["from_"] = value
        elif key in ("source", "src"):
            m["source"] = value
        elif key in ("target", "dst", "destination"):
            m["target"] = value
        elif key in ("readonly", "ro"):
            m["read_only"], ro_auto = _parse_bool_field(key, value), False
        elif key in ("readwrite", "rw"):
            m["read_only"], ro_auto = not _parse_bool_field(key, value), False
        elif key == "required":
            if m["type"] not in ("secret", "ssh"):
                raise ValueError(f"unexpected key '{key}' for mount type '{m['type']}'")
            m["required"] = _parse_bool_field(key, value)
        elif key == "size":
            if m["type"] != "tmpfs":
                raise ValueError(f"unexpected key '{key}' for mount type '{m['type']}'")
            try:
                m["size"] = _ram_in_bytes(value)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        elif key == "id":
            m["id"] = value
        elif key == "sharing":
            if value.lower() not in _SHARING_MODES:
                message = f"unsupported sharing value {golang.quote(value)}"
                raise ValueError(did_you_mean(message, value, _SHARING_MODES))
            m["sharing"] = value.lower()
            m["sharing_set"] = True
        elif key in ("mode", "uid", "gid"):
            try:
                m[key] = golang.parse_uint(value, 8 if key == "mode" else 10)
            except ValueError:
                raise ValueError(f"invalid value {value} for {key}") from None
        elif key == "env":
            m["env"] = value
        else:
            raise ValueError(did_you_mean(f"unexpected key '{key}' in '{fld}'", key, _MOUNT_KEYS))
    kind = m["type"]
    if kind not in ("secret", "ssh", "cache"):
        for key in ("mode", "uid", "gid"):
            if key in m:
                raise ValueError(f"{key} not allowed for {golang.quote(kind)} type mounts")
    if ro_auto:
        m["read_only"] = kind not in ("cache", "tmpfs")
    sharing_set = m.pop("sharing_set", False)
    if kind == "secret":
        if m.get("from_"):
            raise ValueError("secret mount should not have a from")
        if sharing_set:
            raise ValueError("secret mount should not define sharing")
        if not (m.get("source") or m.get("target") or m.get("id")):
            raise ValueError("invalid secret mount. one of source, target required")
        if m.get("source") and m.get("id"):
            raise ValueError("both source and id can't be set")
        m["id"] = m.get("source") or m.get("id") or posixpath.basename(m["target"])
        if m.get("env") is None and not m.get("target"):
            m["target"] = "/run/secrets/" + posixpath.basename(m["id"])
        m.setdefault("mode", 0o400)
    if sharing_set and kind != "cache":
        raise ValueError(f"invalid cache sharing set for {kind} mount")
    if kind == "cache" and not m.get("id"):
        m["id"] = golang.clean_path(m.get("target", ""))
    if kind == "ssh":
        m.setdefault("mode", 0o600)
    if kind in ("secret", "ssh"):
        m.setdefault("uid", 0)
        m.setdefault("gid", 0)
    return Mount(**m)


def _ram_in_bytes(text: str) -> int:
    """docker/go-units RAMInBytes: ``64m``, ``1.5GiB``, ``512`` (binary multiples)."""
    m = re.fullmatch(r"(.*[0-9. ])?([^0-9. ]*)", text, re.DOTALL)
    if not m or not m.group(1):
        raise ValueError(text)
    number, suffix = m.group(1), m.group(2)
    if number.endswith(" "):
        number = number[:-1]
    if not re.fullmatch(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", number):
        raise ValueError(text)
    size = float(number)
    if size < 0:
        raise ValueError(text)
    suffix = suffix.lower()
    if not suffix or suffix == "b":
        return int(size)
    if len(suffix) > 3 or suffix[0] not in _RAM_SIZE or suffix[1:] not in ("", "b", "ib"):
        raise ValueError(text)
    return int(size * _RAM_SIZE[suffix[0]])


def _check_chmod(instr: _CopyBase) -> None:
    """BuildKit's check: a value starting with a digit must be octal up to 07777 (its
    message says so, ``64a`` included); anything else a symbolic mode."""
    chmod = instr.chmod
    if chmod[:1].isascii() and chmod[:1].isdigit():
        if any(c not in "01234567" for c in chmod) or int(chmod, 8) > 0o7777:
            raise instr.error(
                f"invalid chmod parameter: '{chmod}'. it should be octal string and "
                "between 0 and 07777"
            )
    elif not _SYMBOLIC_MODE.match(chmod):
        raise instr.error(f"invalid chmod parameter: '{chmod}'")


def _valid_signal(signal: str) -> bool:
    if re.fullmatch(r"[+-]?[0-9]+", signal):
        return int(signal) != 0
    name = signal.upper()
    return name.removeprefix("SIG") in _SIGNALS


def _parse_port(spec: str) -> list[str]:
    """``[ip:][hostport:]port[-end][/proto]`` -> ``["port/proto", ...]``."""
    parts = spec.split(":")
    ip = ":".join(parts[:-2]) if len(parts) > 2 else ""
    host_port = parts[-2] if len(parts) > 1 else ""
    container, _, proto = parts[-1].partition("/")
    if not container:
        raise ValueError("no port specified")
    if proto.lower() not in ("", "tcp", "udp", "sctp"):
        raise ValueError(f"invalid proto: {proto}")
    proto = proto.lower() or "tcp"
    if ip.startswith("["):
        ip = ip[1:].partition("]")[0]
    if ip and not _valid_ip(ip):
        raise ValueError(f"invalid IP address: {ip}")
    try:
        start, end = _port_range(container)
    except ValueError:
        raise ValueError(f"invalid containerPort: {container}") from None
    if host_port:
        try:
            host_start, host_end = _port_range(host_port)
        except ValueError:
            raise ValueError(f"invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise ValueError(
                f"invalid ranges specified for container and host Ports: {container} and "
                f"{host_port}"
            )
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _port_range(text: str) -> tuple[int, int]:
    start, dash, end = text.partition("-")
    first = _port_number(start)
    if not dash or start == end:
        return first, first
    last = _port_number(end)
    if last < first:
        raise ValueError(text)
    return first, last


def _port_number(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text) or not 0 <= int(text) <= 65535:
        raise ValueError(text)
    return int(text)


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
