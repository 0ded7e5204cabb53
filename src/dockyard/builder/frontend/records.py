"""One base for the builder's frozen records: equality, hash, repr and the freeze written once.

A frozen dataclass gets ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` generated and compiled for it, one by one, when its
module is imported; for the builder's ~40 record types (instructions, nodes, mounts,
stages, cache records, outputs) that was most of its import time, and of a cached
build's start-up (issue 18). Declared with
:func:`record` and derived from :class:`Record`, a record gets only its ``__init__``
compiled, and behaves as before: its fields are set once, by ``__init__``, and never
again (type checkers see a frozen dataclass); it is equal to a record of the same class
with equal fields, hashable by its fields, shown as ``Name(field=value, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, FrozenInstanceError, dataclass, fields
from typing import Any, ClassVar, TypeVar, cast, dataclass_transform, overload

_T = TypeVar("_T", bound=type)


@overload
@dataclass_transform(frozen_default=True)
def record(cls: _T, /) -> _T: ...


@overload
def record(*, kw_only: bool = False) -> Callable[[_T], _T]: ...


def record(cls: _T | None = None, /, *, kw_only: bool = False) -> _T | Callable[[_T], _T]:
    """A dataclass of a :class:`Record` subclass: only ``__init__`` generated."""
    make = cast("Callable[[_T], _T]", dataclass(eq=False, repr=False, kw_only=kw_only))
    return make if cls is None else make(cls)


class Record:
    """Equality, hash, repr and set-once fields, as a frozen dataclass has them."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __setattr__(self, name: str, value: object) -> None:
        """Set a field not yet set (what ``__init__`` does); any other assignment fails."""
        values = self.__dict__
        if name in values or name not in self.__dataclass_fields__:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        values[name] = value

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record) and other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        values = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{self.__class__.__qualname__}({values})"
