"""One base for the frontend's frozen records: equality, hash and repr written once.

A frozen dataclass gets ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` generated and compiled for it, one by one, when its
module is imported; for the frontend's ~30 record types (instructions, nodes, mounts)
that was most of its import time. Declared ``@dataclass(frozen=True, eq=False,
repr=False)`` and derived from :class:`Record`, a record gets only the three it needs
of its own, and behaves as before: equal to a record of the same class with equal
fields, hashable by its fields, shown as ``Name(field=value, ...)``.
"""

from __future__ import annotations

from dataclasses import Field, fields
from typing import Any, ClassVar


class Record:
    """Equality, hash and repr by fields, as a frozen dataclass has them."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record) and other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        values = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{self.__class__.__qualname__}({values})"
