"""Typed Dockerfile instructions, their variable expansion, and their image-history text.

One frozen record per instruction (:mod:`.records`), as BuildKit's ``instructions/commands.go``:
:mod:`.parse` makes them from parser nodes, validated as BuildKit validates at parse
time. Nothing is expanded yet: call :meth:`Instruction.expand` with the stage's
variables at the moment the instruction runs (``StageScope.apply`` in :mod:`.stages`
does that and tracks ARG/ENV). Only what BuildKit expands is expanded: ADD, COPY (not
``--from``), ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and RUN's ``--mount``
values (:mod:`.runmount`). RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/ONBUILD/MAINTAINER are
left for the shell or kept verbatim; FROM is expanded with the global ARGs by the stage
graph; ARG defaults by the stage scope.

``created_by`` methods give the ``history[].created_by`` text BuildKit writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, Self

from dockyard.builder.frontend import golang
from dockyard.builder.frontend.parser import DEFAULT_ESCAPE, Heredoc, heredoc_opening
from dockyard.builder.frontend.records import Record, record
from dockyard.builder.frontend.shell_lex import ExpansionError, Lex
from dockyard.errors import BuildError

if TYPE_CHECKING:
    from dockyard.builder.frontend.runmount import Mount

DEFAULT_SHELL = ("/bin/sh", "-c")
BUILDKIT_SUFFIX = " # buildkit"  # history of instructions that ran on a container/snapshot

_MODE_CLAUSE = r"[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+"
_SYMBOLIC_MODE = re.compile(rf"{_MODE_CLAUSE}(?:,{_MODE_CLAUSE})*\Z")
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


@record(kw_only=True)
class Instruction(Record):
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


@record
class KeyValue(Record):
    """One ``key=value`` of ENV or LABEL; ``legacy`` for the ``ENV key value`` form."""

    key: str
    value: str
    legacy: bool = False


@record
class ArgDef(Record):
    """One name of an ARG instruction and its value.

    The default as written when parsed, the resolved value once ``StageScope.apply`` ran (None: no
    value)."""

    key: str
    value: str | None = None


@record
class InlineSource(Record):
    """A COPY/ADD heredoc source: a file named ``path`` holding ``data``."""

    path: str
    data: str
    expand: bool


@record(kw_only=True)
class From(Instruction):
    """``FROM [--platform=P] image [AS name]`` (the stage graph expands base/platform)."""

    keyword: ClassVar[str] = "FROM"
    base: str
    name: str | None = None  # lower-cased stage name
    platform: str | None = None


@record
class RunScript(Record):
    """A heredoc RUN starting with ``#!``, run as a script as BuildKit does.

    Write ``data`` to ``path`` (mode 0755, read-only mount) and execute it."""

    path: str
    data: str


@record(kw_only=True)
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
        if not self.mount_specs:
            return ()
        from dockyard.builder.frontend.runmount import mount_from

        return tuple(s for s in (mount_from(spec) for spec in self.mount_specs) if s)

    def expand(self, env: Mapping[str, str]) -> Self:
        if not self.mount_specs:
            return replace(self, mounts=())
        from dockyard.builder.frontend.runmount import parse_mount

        expand = self._expander(env)
        mounts: list[Mount] = []
        for spec in self.mount_specs:
            ssh_index = sum(m.type == "ssh" for m in mounts)
            try:
                mounts.append(parse_mount(spec, expand).validate(ssh_index))
            except ValueError as e:
                raise self.error(str(e)) from None
        return replace(self, mounts=tuple(mounts))

    def mount_target(self, mount: Mount, workdir: str) -> str:
        """The absolute mount point of a bind/cache/tmpfs ``mount`` when running in ``workdir``.

        Relative targets join it."""
        target = mount.target
        if not golang.clean_path(target).startswith("/"):
            target = golang.clean_path("/" + workdir + "/" + target)
        if target == "/":
            raise self.error(f"invalid mount target {golang.quote(target)}")
        return target

    def command_line(
        self, shell: Sequence[str] = DEFAULT_SHELL
    ) -> tuple[list[str], RunScript | None]:
        """The argv to execute, and the script file to provide first if any.

        The shell is prepended for the shell form; the script file is for a RUN that is a single
        ``#!`` heredoc."""
        args = list(self.command)
        script = None
        if self.heredocs:
            if len(args) != 1 or not self.shell_form:
                raise self.error(f"parsing produced an invalid run command: {args}")
            if heredoc_opening(args[0]) is not None:
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
        """The history text: ``RUN |2 A=1 B=2 /bin/sh -c make # buildkit``.

        ``args`` from :meth:`command_line`, ``build_args`` the stage's ARGs with their current
        values (``StageScope.history_args``)."""
        prefix = [f"|{len(build_args)}", *(f"{k}={v}" for k, v in build_args)] if build_args else []
        return "RUN " + " ".join([*prefix, *args]) + BUILDKIT_SUFFIX


@record(kw_only=True)
class _CommandLine(Instruction):
    command: tuple[str, ...]
    shell_form: bool

    def config_value(self, shell: Sequence[str] = DEFAULT_SHELL) -> list[str]:
        """The image config value (``["/bin/sh", "-c", "cmd"]`` for the shell form)."""
        return [*shell, " ".join(self.command)] if self.shell_form else list(self.command)

    def created_by(self, shell: Sequence[str] = DEFAULT_SHELL) -> str:
        """``CMD ["/bin/sh" "-c" "run"]``."""
        return f"{self.keyword} {golang.format_quoted_list(self.config_value(shell))}"


class Cmd(_CommandLine):  # no fields of its own: not a dataclass of its own
    """``CMD``: exec form, or shell form run through the image's SHELL."""

    keyword: ClassVar[str] = "CMD"


class Entrypoint(_CommandLine):  # no fields of its own: not a dataclass of its own
    """``ENTRYPOINT``; ``ENTRYPOINT []`` clears it.

    Docker resets CMD to none unless a CMD was set earlier in the same stage."""

    keyword: ClassVar[str] = "ENTRYPOINT"


@record(kw_only=True)
class Shell(Instruction):
    """``SHELL ["executable", "params"]`` (JSON form only)."""

    keyword: ClassVar[str] = "SHELL"
    shell: tuple[str, ...]

    def created_by(self) -> str:
        return f"SHELL {golang.format_list(self.shell)}"


@record(kw_only=True)
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


class Env(_KeyValues):  # no fields of its own: not a dataclass of its own
    """``ENV k=v ...`` or legacy ``ENV k v``.

    Every value is expanded with the variables as they were *before* this instruction."""

    keyword: ClassVar[str] = "ENV"


class Label(_KeyValues):  # no fields of its own: not a dataclass of its own
    """``LABEL k=v ...`` (expanded like ENV)."""

    keyword: ClassVar[str] = "LABEL"


@record(kw_only=True)
class Maintainer(Instruction):
    """``MAINTAINER name`` (deprecated): docker sets the image's ``author``."""

    keyword: ClassVar[str] = "MAINTAINER"
    maintainer: str

    def created_by(self) -> str:
        return f"MAINTAINER {self.maintainer}"


@record(kw_only=True)
class Arg(Instruction):
    """``ARG a b=default ...``: values are resolved by ``StageScope.apply``.

    A build-arg, else the default expanded, else the global ARG of that name."""

    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDef, ...]

    def created_by(self) -> str:
        """``ARG a=1 b`` (call on the Arg ``StageScope.apply`` returned)."""
        return "ARG " + " ".join(
            a.key if a.value is None else f"{a.key}={a.value}" for a in self.args
        )


@record(kw_only=True)
class Expose(Instruction):
    """``EXPOSE 80 53/udp 8000-8002``.

    After :meth:`expand`, ``ports`` are the ``port/proto`` entries docker stores (ranges unrolled,
    ``tcp`` by default)."""

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


@record(kw_only=True)
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


@record(kw_only=True)
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


@record(kw_only=True)
class Workdir(Instruction):
    """``WORKDIR path``: relative paths join the previous working directory.

    Docker creates the directory (a layer, unless it is ``/``)."""

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


@record(kw_only=True)
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


@record(kw_only=True)
class Healthcheck(Instruction):
    """``HEALTHCHECK NONE`` or ``HEALTHCHECK [--interval=..] CMD ...``.

    Durations are in nanoseconds as the image config stores them (0: inherit)."""

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


@record(kw_only=True)
class Onbuild(Instruction):
    """``ONBUILD <instruction>``; writes no history entry.

    ``expression`` is what the image config's ``OnBuild`` keeps (heredoc bodies included)."""

    keyword: ClassVar[str] = "ONBUILD"
    expression: str


@record(kw_only=True)
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


@record(kw_only=True)
class Copy(_CopyBase):
    """``COPY``: files from the context, a stage or an image into the stage.

    ``COPY [--from=stage|image|index] [--chown] [--chmod] [--link] [--parents] [--exclude=p]...
    src... dest`` (``--from`` is never expanded)."""

    keyword: ClassVar[str] = "COPY"
    from_: str = ""
    parents: bool = False

    def created_by(self) -> str:
        """``COPY --chown=1:1 a b /dst # buildkit`` (``--from``/``--link`` not shown)."""
        return self._history(["--parents"] if self.parents else [])


@record(kw_only=True)
class Add(_CopyBase):
    """``ADD``: like COPY, but local archives unpack and URLs download.

    ``ADD [--chown] [--chmod] [--link] [--checksum] [--keep-git-dir] [--unpack] [--exclude=p]...
    src... dest``."""

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
    """BuildKit's ``NormalizePath``: ``path`` made absolute under ``parent`` and cleaned.

    A relative ``path`` joins ``parent`` (default ``/``) and is cleaned; an absolute one is kept as
    written. With ``keep_slash`` a trailing ``/`` (or ``/.``) of ``path`` survives."""
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


# -- helpers for expansion-time checks ---------------------------------------------


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
    import ipaddress  # only for EXPOSE with an address: not on every build's import

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
