"""Docker's rules from an image config and ``run`` options to the process to run."""

from __future__ import annotations

import pytest

from dockyard.errors import ContainerError
from dockyard.oci.config import ImageConfig
from dockyard.runtime import HOST, ContainerConfig, Mount, container_config
from dockyard.runtime.imageconfig import command, parse_env

IMAGE = {"Entrypoint": ["/entry.sh"], "Cmd": ["serve", "--port=80"]}


@pytest.mark.parametrize(
    ("config", "args", "entrypoint", "expected"),
    [
        (IMAGE, (), None, ["/entry.sh", "serve", "--port=80"]),
        (IMAGE, ("debug",), None, ["/entry.sh", "debug"]),  # args replace CMD
        (IMAGE, (), "/bin/sh", ["/bin/sh"]),  # --entrypoint drops the image CMD
        (IMAGE, ("-c", "id"), "/bin/sh", ["/bin/sh", "-c", "id"]),
        (IMAGE, ("id",), "", ["id"]),  # --entrypoint "" clears it
        ({"Cmd": ["sh"]}, (), None, ["sh"]),
        ({"Cmd": ["sh"]}, ("ls", "-l"), None, ["ls", "-l"]),
        ({"Entrypoint": None, "Cmd": None}, ("true",), None, ["true"]),
    ],
)
def test_entrypoint_and_cmd(config, args, entrypoint, expected):
    assert command(ImageConfig({"config": config}), args, entrypoint) == expected


@pytest.mark.parametrize(
    ("config", "args", "entrypoint"),
    [({}, (), None), (IMAGE, (), ""), ({"Entrypoint": []}, (), None)],
)
def test_nothing_to_run(config, args, entrypoint):
    with pytest.raises(ContainerError, match="no command"):
        command(ImageConfig({"config": config}), args, entrypoint)


def test_env_later_wins_and_bare_names_are_empty():
    assert parse_env(["A=1", "B=x=y", "A=2", "C"]) == {"A": "2", "B": "x=y", "C": ""}


def test_container_config_from_an_image():
    image = {
        "config": {
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
            "User": "nobody",
            "WorkingDir": "/srv",
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    config = container_config(image)
    assert config.args == ["sh"]
    assert config.env == {"PATH": "/usr/bin:/bin", "LANG": "C"}
    assert (config.user, config.cwd) == ("nobody", "/srv")

    base = ContainerConfig(args=(), network=HOST, mounts=[Mount.tmpfs("/tmp")])
    config = container_config(
        image, args=["id"], env={"LANG": "C.UTF-8"}, user="0", workdir="/x", base=base
    )
    assert config.args == ["id"]
    assert config.env == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    assert (config.user, config.cwd, config.network) == ("0", "/x", HOST)
    assert config.mounts == [Mount.tmpfs("/tmp")]


def test_defaults_without_user_or_workdir():
    config = container_config({"config": {"Cmd": ["sh"]}})
    assert (config.user, config.cwd, config.env) == ("", "/", {})
    assert container_config({"config": None}, args=["true"]).args == ["true"]
