"""Dockerfile parser nodes -> typed instructions, checked as BuildKit checks at parse time.

As BuildKit's ``instructions/parse.go``: :func:`parse_instruction` takes one
:class:`~dockyard.builder.frontend.parser.Node` and gives the
:mod:`~dockyard.builder.frontend.commands` value for it, or a :class:`BuildError` at
the instruction's first line (unknown instruction or flag, wrong argument count, a
variable in ``--mount from=``...). What needs the stage's variables is checked when
the instruction is expanded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from dockyard.builder.frontend import golang
from dockyard.builder.frontend.commands import (
    Add,
    Arg,
    ArgDef,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    InlineSource,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from dockyard.builder.frontend.parser import (
    DEFAULT_ESCAPE,
    Heredoc,
    Node,
    heredoc_opening,
    parse_json,
    parse_words,
    split_fields,
)
from dockyard.builder.frontend.suggest import did_you_mean
from dockyard.errors import BuildError

_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*\Z")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")


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
    if f.all("mount"):  # BuildKit rejects a variable in from= while parsing
        from dockyard.builder.frontend.runmount import mount_from

        for spec in f.all("mount"):
            mount_from(spec)
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
    assert m is not None  # every part of it may be empty: it always matches
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
    if heredoc_opening(args[-1]) is not None:
        raise ValueError(f"{node.command.upper()} cannot accept a heredoc as a destination")
    bodies = {h.name: h for h in node.heredocs}
    paths: list[str] = []
    inline: list[InlineSource] = []
    for src in args[:-1]:
        opening = heredoc_opening(src)
        if opening is None:
            paths.append(src)
            continue
        body = bodies.get(opening.name)
        data = body.content if body else ""
        if opening.chomp:
            data = Heredoc(opening.name, data, opening.expand, True).text
        inline.append(InlineSource(opening.name, data, opening.expand))
    return tuple(paths), tuple(inline), args[-1]


def _copy_fields(node: Node, accepted: Mapping[str, str]) -> tuple[_Flags, dict]:
    """COPY's and ADD's flags, and the fields both have (sources, destination, owner,
    mode, ``--link``, ``--exclude``)."""
    f = _Flags(node.flags, accepted)
    sources, inline, dest = _sources(node)
    return f, {
        "sources": sources,
        "inline": inline,
        "dest": dest,
        "chown": f.text("chown"),
        "chmod": f.text("chmod"),
        "link": bool(f.flag("link")),
        "exclude": f.all("exclude"),
    }


def _parse_copy(node: Node, common: dict) -> Copy:
    f, fields = _copy_fields(
        node,
        {
            "chown": "text",
            "from": "text",
            "chmod": "text",
            "link": "bool",
            "exclude": "texts",
            "parents": "bool",
        },
    )
    return Copy(from_=f.text("from"), parents=bool(f.flag("parents")), **fields, **common)


def _parse_add(node: Node, common: dict) -> Add:
    f, fields = _copy_fields(
        node,
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
    return Add(
        keep_git_dir=f.flag("keep-git-dir"),
        checksum=f.text("checksum"),
        unpack=f.flag("unpack"),
        **fields,
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
