"""Dockerfile instructions parsed for a test, and the variables they are expanded with."""

from __future__ import annotations

import pytest

from dockyard.builder.frontend.commands import Instruction
from dockyard.builder.frontend.parse import parse_instruction
from dockyard.builder.frontend.parser import parse
from dockyard.errors import BuildError

ENV = {"A": "1", "B": "two words", "DIR": "/srv", "EMPTY": "", "PORT": "8080", "U": "app"}
"""The stage's variables the tests expand instructions with."""


def one(text: str) -> Instruction:
    """The first instruction of the Dockerfile ``text``, parsed."""
    df = parse(text, "Dockerfile")
    return parse_instruction(df.nodes[0], df.escape, "Dockerfile")


def error(text: str) -> BuildError:
    """The error parsing the Dockerfile ``text`` must give."""
    with pytest.raises(BuildError) as info:
        df = parse(text, "Dockerfile")
        for node in df.nodes:
            parse_instruction(node, df.escape, "Dockerfile")
    return info.value
