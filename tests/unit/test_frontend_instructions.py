"""Typed instructions: parsing, validation, expansion and docker's history text."""

from __future__ import annotations

import pytest

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
    RunScript,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    normalize_path,
)
from dockyard.builder.frontend.parse import parse_instruction
from dockyard.builder.frontend.parser import parse
from dockyard.builder.frontend.runmount import Mount, parse_mount
from dockyard.errors import BuildError

ENV = {"A": "1", "B": "two words", "DIR": "/srv", "EMPTY": "", "PORT": "8080", "U": "app"}


def one(text: str) -> Instruction:
    df = parse(text, "Dockerfile")
    return parse_instruction(df.nodes[0], df.escape, "Dockerfile")


def error(text: str) -> BuildError:
    with pytest.raises(BuildError) as info:
        df = parse(text, "Dockerfile")
        for node in df.nodes:
            parse_instruction(node, df.escape, "Dockerfile")
    return info.value


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


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("typ=tmpfs", "unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)"),
        ("type=tmp", 'unsupported mount type "tmp" (did you mean tmpfs?)'),
        ("type=cache,target=/x,sharing=lockd", 'unsupported sharing value "lockd" (did you mean'),
        ("target=/x,readonli=true", "unexpected key 'readonli' in 'readonli=true' (did you mean"),
    ],
)
def test_misspelt_mount_keys_and_types_get_a_suggestion(spec: str, message: str) -> None:
    run = one(f"RUN \\\n  --mount={spec} true\n")
    with pytest.raises(BuildError) as info:
        run.expand(ENV)
    assert str(info.value).startswith(f"Dockerfile:1: {message}")
    assert str(info.value).endswith("?)")


@pytest.mark.parametrize("keyword", ["COPY", "ADD"])
@pytest.mark.parametrize("chmod", ["64a", "10000", "0o755", "8"])
def test_numeric_looking_chmod_gets_buildkits_octal_message(keyword: str, chmod: str) -> None:
    instr = one(f"{keyword} --chmod={chmod} foo /\n")
    with pytest.raises(BuildError) as info:
        instr.expand({})
    assert str(info.value) == (
        f"Dockerfile:1: invalid chmod parameter: '{chmod}'. it should be octal string and "
        "between 0 and 07777"
    )


def test_from() -> None:
    assert one("FROM --platform=$BUILDPLATFORM golang:1.22 As Build\n") == From(
        base="golang:1.22",
        name="build",
        platform="$BUILDPLATFORM",
        line=1,
        end_line=1,
        original="FROM --platform=$BUILDPLATFORM golang:1.22 As Build",
        file="Dockerfile",
    )
    assert one("from scratch\n").name is None


def test_run_shell_and_exec_forms() -> None:
    shell = one("RUN --network=none echo $HOME && make\n")
    assert isinstance(shell, Run)
    assert (shell.command, shell.shell_form, shell.network) == (
        ("echo $HOME && make",),
        True,
        "none",
    )
    exec_form = one('RUN ["echo", "$HOME"]\n')
    assert (exec_form.command, exec_form.shell_form) == (("echo", "$HOME"), False)
    # RUN is never expanded by the builder: the shell does it
    assert shell.expand(ENV).command == shell.command
    assert shell.command_line() == (["/bin/sh", "-c", "echo $HOME && make"], None)
    assert exec_form.command_line() == (["echo", "$HOME"], None)
    assert shell.command_line(["bash", "-eo", "pipefail", "-c"])[0][:3] == [
        "bash",
        "-eo",
        "pipefail",
    ]


@pytest.mark.parametrize(
    ("text", "args", "script"),
    [
        ("RUN <<EOF\necho $A\necho b\nEOF\n", ["/bin/sh", "-c", "echo $A\necho b\n"], None),
        ("RUN <<-EOF\n\techo a\nEOF\n", ["/bin/sh", "-c", "echo a\n"], None),
        (
            "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
            ["/bin/sh", "-c", "/dev/pipes/EOF"],
            RunScript("/dev/pipes/EOF", "#!/usr/bin/env python3\nprint(1)\n"),
        ),
        (
            "RUN <<EOF sh -x\necho a\nEOF\n",
            ["/bin/sh", "-c", "<<EOF sh -x\necho a\nEOF"],
            None,
        ),
        (
            "RUN <<A cat <<-B\na\nA\n\tb\n\tB\n",
            ["/bin/sh", "-c", "<<A cat <<-B\na\nA\n\tb\nB"],  # the shell strips tabs itself
            None,
        ),
    ],
)
def test_run_heredocs(text: str, args: list[str], script: RunScript | None) -> None:
    run = one(text)
    assert isinstance(run, Run)
    assert run.command_line() == (args, script)


def test_run_history() -> None:
    run = one("RUN echo hi\n")
    args, _ = run.command_line()
    assert run.created_by(args, []) == "RUN /bin/sh -c echo hi # buildkit"
    assert (
        run.created_by(args, [("V", "1"), ("W", "")])
        == "RUN |2 V=1 W= /bin/sh -c echo hi # buildkit"
    )
    exec_form = one('RUN ["ls", "-l"]\n')
    assert exec_form.created_by(exec_form.command_line()[0], []) == "RUN ls -l # buildkit"


@pytest.mark.parametrize(
    ("spec", "mount"),
    [
        (
            "type=cache,target=/root/.cache",
            Mount("cache", "/root/.cache", read_only=False, id="/root/.cache"),
        ),
        (
            "type=cache,id=go,target=$DIR/x,sharing=locked,mode=0700,uid=$A,gid=2,from=base,source=/s",
            Mount("cache", "/srv/x", "/s", "base", False, "go", "locked", mode=0o700, uid=1, gid=2),
        ),
        ("target=/src", Mount("bind", "/src")),
        ("type=bind,source=.,target=/src,rw", Mount("bind", "/src", ".", read_only=False)),
        (
            "type=bind,src=a,dst=/b,from=builder,readonly=false",
            Mount("bind", "/b", "a", "builder", False),
        ),
        ("type=tmpfs,target=/tmp,size=64m", Mount("tmpfs", "/tmp", read_only=False, size=64 << 20)),
        (
            "type=tmpfs,destination=/t,size=1.5GiB",
            Mount("tmpfs", "/t", read_only=False, size=3 << 29),
        ),
        (
            "type=secret,id=npmrc",
            Mount("secret", "/run/secrets/npmrc", id="npmrc", mode=0o400, uid=0, gid=0),
        ),
        (
            "type=secret,id=tok,env=TOKEN,required",
            Mount("secret", "", id="tok", env="TOKEN", required=True, mode=0o400, uid=0, gid=0),
        ),
        (
            "type=secret,source=aws,target=/root/.aws/credentials,mode=0440,uid=1000",
            Mount("secret", "/root/.aws/credentials", "aws", id="aws", mode=0o440, uid=1000, gid=0),
        ),
        (
            "type=secret,target=/run/x/key.pem",
            Mount("secret", "/run/x/key.pem", id="key.pem", mode=0o400, uid=0, gid=0),
        ),
        (
            "type=ssh",
            Mount("ssh", "/run/buildkit/ssh_agent.0", id="default", mode=0o600, uid=0, gid=0),
        ),
        ('"type=bind,target=/a,b"', None),  # flag quotes go; the bare "b" is no key=value
    ],
)
def test_mounts(spec: str, mount: Mount | None) -> None:
    run = one(f"RUN --mount={spec} true\n")
    assert run.mounts is None  # mounts are parsed with the variables at run time
    if mount is None:
        with pytest.raises(BuildError):
            run.expand(ENV)
        return
    assert run.expand(ENV).mounts == (mount,)


def test_several_ssh_mounts_get_numbered_sockets() -> None:
    run = one("RUN --mount=type=ssh --mount=type=ssh,id=gh true\n").expand({})
    assert [(m.id, m.target) for m in run.mounts] == [
        ("default", "/run/buildkit/ssh_agent.0"),
        ("gh", "/run/buildkit/ssh_agent.1"),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=nfs,target=/x", 'unsupported mount type "nfs"'),
        ("type=$EMPTY2,target=/x", 'unsupported mount type ""'),
        ("target=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
        ("target=/x,nonsense", "invalid field 'nonsense' must be a key=value pair"),
        ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
        ("type=cache,target=/x,size=1m", "unexpected key 'size' for mount type 'cache'"),
        # BuildKit checks these keys against the type declared before them
        ("size=1m,type=tmpfs,target=/x", "unexpected key 'size' for mount type 'bind'"),
        ("required,type=secret,id=a", "unexpected key 'required' for mount type 'bind'"),
        ("type=bind,target=/x,uid=1", 'uid not allowed for "bind" type mounts'),
        ("type=tmpfs,target=/x,mode=0700", 'mode not allowed for "tmpfs" type mounts'),
        ("type=cache,target=/x,mode=999", "invalid value 999 for mode"),
        ("type=cache,target=/x,uid=-1", "invalid value -1 for uid"),
        ("type=cache,target=/x,sharing=all", 'unsupported sharing value "all"'),
        ("type=bind,target=/x,sharing=locked", "invalid cache sharing set for bind mount"),
        ("type=secret", "one of source, target required"),
        ("type=secret,id=a,source=b", "both source and id can't be set"),
        ("type=secret,id=a,from=x", "secret mount should not have a from"),
        ("type=secret,id=a,sharing=shared", "secret mount should not define sharing"),
        ("type=bind,target=/x,ro=maybe", "invalid value for ro: maybe"),
        ("type=tmpfs,target=/x,size=lots", "invalid value for size: lots"),
        ("type=ssh,source=x", "ssh does not support source"),
        ("type=cache,target=${X", "missing '}'"),
    ],
)
def test_mount_errors(spec: str, message: str) -> None:
    run = one(f"RUN \\\n  --mount={spec} true\n")
    with pytest.raises(BuildError) as info:
        run.expand(ENV)
    assert message in str(info.value)
    assert info.value.line == 1


def test_a_mount_is_parsed_then_validated() -> None:
    spec = parse_mount("type=secret,src=npmrc,type=ssh,uid=5", str.upper)
    assert (spec.type, spec.source, spec.uid, spec.mode) == ("ssh", "NPMRC", 5, None)
    with pytest.raises(ValueError, match="ssh does not support source"):
        spec.validate()
    spec = parse_mount("type=ssh,uid=5", str)
    assert spec.validate(ssh_index=2) == Mount(
        "ssh", "/run/buildkit/ssh_agent.2", id="default", mode=0o600, uid=5, gid=0
    )


def test_mount_sources_and_targets() -> None:
    run = one(
        "RUN --mount=from=builder,target=/b --mount=type=cache,target=c --mount=target=/x true\n"
    )
    assert run.mount_sources == ("builder",)
    mounts = run.expand({}).mounts
    assert run.mount_target(mounts[1], "/app") == "/app/c"
    assert mounts[1].id == "c"  # the cache id is the target as written
    with pytest.raises(BuildError, match="invalid mount target"):
        run.mount_target(Mount("bind", "."), "/")


@pytest.mark.parametrize(
    ("text", "config", "history"),
    [
        ('CMD ["app", "-v"]', ["app", "-v"], 'CMD ["app" "-v"]'),
        ("CMD app -v", ["/bin/sh", "-c", "app -v"], 'CMD ["/bin/sh" "-c" "app -v"]'),
        (
            'CMD echo "hi\tthere"',
            ["/bin/sh", "-c", 'echo "hi\tthere"'],
            'CMD ["/bin/sh" "-c" "echo \\"hi\\tthere\\""]',
        ),
        ("ENTRYPOINT []", [], "ENTRYPOINT []"),
        (
            "ENTRYPOINT exec app",
            ["/bin/sh", "-c", "exec app"],
            'ENTRYPOINT ["/bin/sh" "-c" "exec app"]',
        ),
    ],
)
def test_cmd_entrypoint(text: str, config: list[str], history: str) -> None:
    instr = one(text + "\n")
    assert isinstance(instr, Cmd | Entrypoint)
    assert instr.config_value() == config
    assert instr.created_by() == history


def test_cmd_with_custom_shell() -> None:
    cmd = one("CMD Write-Host hi\n")
    assert cmd.config_value(["pwsh", "-Command"]) == ["pwsh", "-Command", "Write-Host hi"]


def test_shell() -> None:
    shell = one('SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n')
    assert shell == Shell(shell=("/bin/bash", "-o", "pipefail", "-c"), **_where(shell))
    assert shell.created_by() == "SHELL [/bin/bash -o pipefail -c]"


def _where(instr: Instruction) -> dict:
    return {
        "line": instr.line,
        "end_line": instr.end_line,
        "original": instr.original,
        "file": instr.file,
    }


@pytest.mark.parametrize(
    ("text", "pairs", "history"),
    [
        ("ENV X=1", [("X", "1")], "ENV X=1"),
        (
            'ENV X="a b" Y=$A Z=${B}',
            [("X", "a b"), ("Y", "1"), ("Z", "two words")],
            "ENV X=a b Y=1 Z=two words",
        ),
        ("ENV X a b  c", [("X", "a b  c")], "ENV X=a b  c"),  # legacy form: the rest is the value
        ('ENV X "q r"', [("X", "q r")], "ENV X=q r"),
        ("ENV X='$A' Y=\\$A", [("X", "$A"), ("Y", "$A")], "ENV X=$A Y=$A"),
        ("ENV X=${UNSET:-d} Y=${EMPTY-e}", [("X", "d"), ("Y", "")], "ENV X=d Y="),
        ("ENV A=2 C=$A", [("A", "2"), ("C", "1")], "ENV A=2 C=1"),  # sees the value before
        ("ENV X=", [("X", "")], "ENV X="),
    ],
)
def test_env(text: str, pairs: list[tuple[str, str]], history: str) -> None:
    env = one(text + "\n")
    assert isinstance(env, Env)
    done = env.expand(ENV)
    assert [(p.key, p.value) for p in done.pairs] == pairs
    assert done.created_by() == history


def test_env_legacy_flag_and_label() -> None:
    assert one("ENV X a\n").pairs == (KeyValue("X", "a", legacy=True),)
    label = one('LABEL org.opencontainers.image.title="My app" version=$A\n')
    assert isinstance(label, Label)
    assert label.expand(ENV).created_by() == "LABEL org.opencontainers.image.title=My app version=1"


def test_arg_parsing() -> None:
    arg = one('ARG A B=2 C="x y" D=\n')
    assert isinstance(arg, Arg)
    assert arg.args == (ArgDef("A"), ArgDef("B", "2"), ArgDef("C", '"x y"'), ArgDef("D", ""))
    assert arg.created_by() == 'ARG A B=2 C="x y" D='


@pytest.mark.parametrize(
    ("text", "ports", "history"),
    [
        ("EXPOSE 80", ("80/tcp",), "EXPOSE [80/tcp]"),
        (
            "EXPOSE 80/tcp 53/UDP 9000-9002/sctp",
            ("53/udp", "80/tcp", "9000/sctp", "9001/sctp", "9002/sctp"),
            None,
        ),
        ("EXPOSE $PORT ${EMPTY}", ("8080/tcp",), "EXPOSE [8080/tcp]"),
        ('EXPOSE "$PORT"/udp', ("8080/udp",), None),
        ("EXPOSE 127.0.0.1:8000:80", ("80/tcp",), None),
    ],
)
def test_expose(text: str, ports: tuple[str, ...], history: str | None) -> None:
    done = one(text + "\n").expand(ENV)
    assert isinstance(done, Expose)
    assert done.ports == ports
    if history:
        assert done.created_by() == history


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EXPOSE 80/xtp", "invalid proto: xtp"),
        ("EXPOSE 70000", "invalid containerPort: 70000"),
        ("EXPOSE 90-80", "invalid containerPort: 90-80"),
        ("EXPOSE abc", "invalid containerPort: abc"),
        ("EXPOSE /tcp", "no port specified"),
        ("EXPOSE 1.2.3:80:80", "invalid IP address"),
    ],
)
def test_expose_errors(text: str, message: str) -> None:
    with pytest.raises(BuildError) as info:
        one(text + "\n").expand(ENV)
    assert message in str(info.value)


def test_volume_user_workdir_stopsignal_maintainer() -> None:
    volume = one("VOLUME $DIR /data\n").expand(ENV)
    assert isinstance(volume, Volume)
    assert volume.volumes == ("/srv", "/data")
    assert volume.created_by() == "VOLUME [/srv /data]"
    assert one('VOLUME ["/a b", "/c"]\n').volumes == ("/a b", "/c")
    with pytest.raises(BuildError, match="empty string"):
        one("VOLUME $EMPTY\n").expand(ENV)

    user = one("USER ${U}:staff\n").expand(ENV)
    assert isinstance(user, User)
    assert user.split() == ("app", "staff")
    assert one("USER 1000\n").split() == ("1000", None)
    assert user.created_by() == "USER app:staff"

    workdir = one("WORKDIR $DIR/app\n").expand(ENV)
    assert isinstance(workdir, Workdir)
    assert workdir.resolve("/") == "/srv/app"
    relative = one("WORKDIR sub/../x\n")
    assert relative.resolve("/srv/app") == "/srv/app/x"
    assert Workdir.created_by("/srv/app/x") == "WORKDIR /srv/app/x"

    signal = one("STOPSIGNAL SIGKILL\n").expand(ENV)
    assert isinstance(signal, StopSignal)
    assert signal.created_by() == "STOPSIGNAL SIGKILL"
    for ok in ("term", "9", "SIGRTMIN+3", "RTMAX"):
        one(f"STOPSIGNAL {ok}\n").expand(ENV)
    for bad in ("SIGFOO", "0"):
        with pytest.raises(BuildError, match="invalid signal"):
            one(f"STOPSIGNAL {bad}\n").expand(ENV)

    maintainer = one("MAINTAINER Jane Doe <jane@example.com>\n")
    assert isinstance(maintainer, Maintainer)
    assert maintainer.maintainer == "Jane Doe <jane@example.com>"
    assert maintainer.expand(ENV) is maintainer
    assert maintainer.created_by() == "MAINTAINER Jane Doe <jane@example.com>"


@pytest.mark.parametrize(
    ("parent", "path", "keep", "expected"),
    [
        ("/", "app", False, "/app"),
        ("/a", "../b", False, "/b"),
        ("/a", "/abs//x/", False, "/abs//x/"),  # absolute paths are kept as written
        ("", "x", False, "/x"),
        ("rel", "x", False, "/rel/x"),
        ("/a", "", False, "/a"),
        ("/a", "dir/", True, "/a/dir/"),
        ("/a", "./", True, "/a/"),
        ("/", "./", True, "/"),
        ("/a", "x/.", True, "/a/x/."),
    ],
)
def test_normalize_path(parent: str, path: str, keep: bool, expected: str) -> None:
    assert normalize_path(parent, path, keep) == expected


@pytest.mark.parametrize(
    ("text", "test", "interval", "timeout", "start", "start_interval", "retries", "history"),
    [
        (
            "HEALTHCHECK NONE",
            ("NONE",),
            0,
            0,
            0,
            0,
            0,
            "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s "
            "Retries:0}",
        ),
        (
            "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --start-interval=250ms "
            "--retries=3 CMD curl -f http://localhost/ || exit 1",
            ("CMD-SHELL", "curl -f http://localhost/ || exit 1"),
            30_000_000_000,
            90_000_000_000,
            1_500_000_000,
            250_000_000,
            3,
            "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/ || exit 1] Interval:30s "
            "Timeout:1m30s StartPeriod:1.5s StartInterval:250ms Retries:3}",
        ),
        (
            'HEALTHCHECK --interval=1h CMD ["/bin/check", "-q"]',
            ("CMD", "/bin/check", "-q"),
            3_600_000_000_000,
            0,
            0,
            0,
            0,
            "HEALTHCHECK {Test:[CMD /bin/check -q] Interval:1h0m0s Timeout:0s StartPeriod:0s "
            "StartInterval:0s Retries:0}",
        ),
        ("healthcheck --interval=0s cmd true", ("CMD-SHELL", "true"), 0, 0, 0, 0, 0, None),
    ],
)
def test_healthcheck(
    text, test, interval, timeout, start, start_interval, retries, history
) -> None:
    hc = one(text + "\n")
    assert isinstance(hc, Healthcheck)
    assert (hc.test, hc.interval, hc.timeout, hc.start_period, hc.start_interval, hc.retries) == (
        test,
        interval,
        timeout,
        start,
        start_interval,
        retries,
    )
    if history:
        assert hc.created_by() == history


def test_onbuild_expression() -> None:
    onbuild = one("ONBUILD  COPY . /app\n")
    assert isinstance(onbuild, Onbuild)
    assert onbuild.expression == "COPY . /app"
    heredoc = one("onbuild RUN <<EOF\necho hi\nEOF\n")
    assert heredoc.expression == "RUN <<EOF\necho hi\nEOF"
    # the trigger is only checked when used: BuildKit accepts an unknown one here
    assert one("ONBUILD NOPE x\n").expression == "NOPE x"


def test_copy() -> None:
    copy = one(
        "COPY --from=build --chown=$U:$U --chmod=0644 --link --parents --exclude=*.md "
        "--exclude=tmp a $DIR/b ./dst/\n"
    )
    assert isinstance(copy, Copy)
    assert (copy.from_, copy.link, copy.parents, copy.exclude) == (
        "build",
        True,
        True,
        ("*.md", "tmp"),
    )
    done = copy.expand(ENV)
    assert (done.sources, done.dest, done.chown, done.chmod) == (
        ("a", "/srv/b"),
        "./dst/",
        "app:app",
        "0644",
    )
    assert done.from_ == "build"
    assert done.resolve_dest("/work") == "/work/dst/"
    assert (
        done.created_by()
        == "COPY --parents --chown=app:app --chmod=0644 a /srv/b ./dst/ # buildkit"
    )


def test_copy_json_form_and_dest_forms() -> None:
    copy = one('COPY ["my file", "dir with space/"]\n')
    assert (copy.sources, copy.dest) == (("my file",), "dir with space/")
    assert one("COPY a .\n").resolve_dest("/app") == "/app/"
    assert one("COPY a /abs\n").resolve_dest("/app") == "/abs"


def test_copy_heredoc_sources() -> None:
    copy = one(
        "COPY <<one <<'two' <<-three src /dst/\n"
        'v=$A "$B" \\$A\n'
        "one\n"
        "raw $A\n"
        "two\n"
        "\tchomped $A\n"
        "\tthree\n"
    )
    assert copy.sources == ("src",)
    assert copy.inline == (
        InlineSource("one", 'v=$A "$B" \\$A\n', True),
        InlineSource("two", "raw $A\n", False),
        InlineSource("three", "chomped $A\n", True),
    )
    done = copy.expand(ENV)
    # an unquoted delimiter expands the body (quotes kept, backslash escapes applied)
    assert [s.data for s in done.inline] == ['v=1 "two words" $A\n', "raw $A\n", "chomped 1\n"]
    assert done.created_by() == "COPY src <<one <<two <<three /dst/ # buildkit"


@pytest.mark.parametrize(
    ("chmod", "ok"),
    [
        ("755", True),
        ("0o755", False),
        ("7777", True),
        ("10000", False),
        ("999", False),
        ("u+x", True),
        ("u=rwx,go=rx", True),
        ("+x", True),
        ("x+u", False),
    ],
)
def test_copy_chmod(chmod: str, ok: bool) -> None:
    copy = one(f"COPY --chmod={chmod} a /b\n")
    if ok:
        assert copy.expand({}).chmod == chmod
    else:
        with pytest.raises(BuildError, match="invalid chmod parameter"):
            copy.expand({})


def test_add() -> None:
    add = one(
        "ADD --checksum=sha256:$A --keep-git-dir --unpack=false --link https://x/y.tgz /opt/\n"
    )
    assert isinstance(add, Add)
    assert (add.keep_git_dir, add.unpack, add.link) == (True, False, True)
    done = add.expand(ENV)
    assert done.checksum == "sha256:1"
    assert done.created_by() == "ADD https://x/y.tgz /opt/ # buildkit"
    assert one("ADD a.tar.gz /opt/\n").keep_git_dir is None
    with pytest.raises(BuildError, match="checksum requires HTTP"):
        one("ADD --checksum=sha256:0 local.tgz /opt/\n").expand({})
    with pytest.raises(BuildError, match="multiple sources"):
        one("ADD --checksum=sha256:0 https://a https://b /opt/\n").expand({})
    with pytest.raises(BuildError, match="unknown flag: --from"):
        one("ADD --from=x a b\n")


def test_expansion_error_is_located() -> None:
    df = parse('FROM a\nENV X=1 \\\n  Y="${B:?must be set}"\n', "Dockerfile")
    env = parse_instruction(df.nodes[1], df.escape, "Dockerfile")
    with pytest.raises(BuildError) as info:
        env.expand({})
    assert info.value.line == 2
    assert "B: must be set" in str(info.value)


def test_backtick_escape_in_expansion() -> None:
    df = parse("# escape=`\nFROM a\nWORKDIR C:\\app\\`$A\n")
    workdir = parse_instruction(df.nodes[1], df.escape)
    assert workdir.expand(ENV).path == "C:\\app\\$A"
