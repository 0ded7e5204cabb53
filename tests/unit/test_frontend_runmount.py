"""``RUN --mount``: a mount parsed into its typed spec, then validated, with BuildKit's
defaults, errors and suggestions."""

from __future__ import annotations

import pytest

from dockyard.builder.frontend.runmount import Mount, parse_mount
from dockyard.errors import BuildError
from tests.support.dockerfiles import ENV, one


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
