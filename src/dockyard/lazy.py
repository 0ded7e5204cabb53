"""Package ``__init__`` modules that import their parts on first use.

A CLI command pays at start-up for every module it imports: a package that re-exports
its submodules' names should not import them all because one is wanted.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports a name when first asked for.

    Each name of ``where`` comes from the submodule it maps to.
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
