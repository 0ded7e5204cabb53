"""Which network a RUN step gets: its own --network, else the build's; host only with
the operator's leave (BuildKit's network.host entitlement)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard.builder.builder import Builder, BuildOptions
from dockyard.builder.frontend.parse import parse_instruction
from dockyard.builder.frontend.parser import parse
from dockyard.errors import BuildError


def network(flag: str, **options) -> str:
    df = parse(f"RUN{flag} true\n", "Dockerfile")
    instr = parse_instruction(df.nodes[0], df.escape, "Dockerfile")
    builder = SimpleNamespace(options=BuildOptions(context=Path("."), **options))
    return Builder._network(builder, instr)  # type: ignore[arg-type]


def test_the_default_is_the_private_nat_network():
    assert BuildOptions(context=Path(".")).network == "default"
    assert network("") == "default"
    assert network(" --network=default") == "default"


def test_a_step_follows_the_builds_network_unless_it_names_its_own():
    assert network("", network="host") == "host"
    assert network("", network="none") == "none"
    assert network(" --network=default", network="none") == "none"
    assert network(" --network=none", network="host") == "none"


def test_run_network_host_needs_the_entitlement_or_a_host_build():
    with pytest.raises(BuildError, match=r"^Dockerfile:1: .*network\.host"):
        network(" --network=host")
    with pytest.raises(BuildError, match=r"network\.host"):
        network(" --network=host", network="none")
    assert network(" --network=host", allow_network_host=True) == "host"
    assert network(" --network=host", network="host") == "host"


@pytest.mark.parametrize("flag", ["", " --network=default", " --network=none", " --network=host"])
@pytest.mark.parametrize("build_network", ["default", "none", "host"])
def test_a_step_is_on_the_nat_network_exactly_when_its_network_is_the_default(flag, build_network):
    """What a build makes its NAT network ahead for (``_on_nat``) is what the step gets."""
    df = parse(f"RUN{flag} true\n", "Dockerfile")
    instr = parse_instruction(df.nodes[0], df.escape, "Dockerfile")
    options = BuildOptions(context=Path("."), network=build_network, allow_network_host=True)
    builder = SimpleNamespace(options=options)
    on_nat = Builder._on_nat(builder, instr)  # type: ignore[arg-type]
    assert on_nat == (network(flag, network=build_network, allow_network_host=True) == "default")
