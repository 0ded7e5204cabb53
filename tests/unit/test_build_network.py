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
