"""Immutable value classes without :mod:`dataclasses`: subclasses of :class:`Frozen`.

``dockyard images`` must start fast (issue 18), and importing :mod:`dataclasses` (which
imports :mod:`inspect`) and generating each class's methods cost more than listing the
store: ~7 ms and ~1 ms a class here. The values every command reads (references,
descriptors, manifests, image configs) are therefore :class:`Frozen`: a subclass
annotates its fields, names them in ``__slots__`` too and sets them in its typed
``__init__`` with :meth:`Frozen._set` (by name); equality, hashing, ``repr``, copying, pickling
and :meth:`Frozen.replace` work from the fields as a frozen dataclass's do.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar, NoReturn, Self, cast


class FrozenError(AttributeError):
    """A field of a :class:`Frozen` value was assigned or deleted."""


class Frozen:
    """Base of immutable values: annotated fields, compared and hashed in order.

    ``_fields`` holds every field in the order annotated, base classes' first (``__init__``
    takes them in that order, by these names); fields named in ``_uncompared`` are left out
    of equality and hashing, as ``dataclasses.field(compare=False)``."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _uncompared: ClassVar[frozenset[str]] = frozenset()
    _key: ClassVar[attrgetter[Any]]
    """The compared fields' values (in C, as dataclasses' generated code is: a tuple for
    two or more, the value itself for one)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The class's own annotations (not a base's), without importing inspect.
        own = tuple(cls.__dict__.get("__annotations__", ()))  # noqa: RUF063
        if set(own) != set(cls.__dict__.get("__slots__", ())):
            raise TypeError(f"{cls.__qualname__}: __slots__ must name the annotated fields")
        cls._fields = (*cls._fields, *own)
        compared = [name for name in cls._fields if name not in cls._uncompared]
        if not compared:
            raise TypeError(f"{cls.__qualname__}: no field to compare")
        cls._key = attrgetter(*compared)

    def _set(self, **values: object) -> None:
        """Set every field, each by its name (``__init__``'s way past the freeze)."""
        try:
            if len(values) != len(self._fields):
                raise KeyError
            for name in self._fields:
                object.__setattr__(self, name, values[name])
        except KeyError:
            wrong = sorted(set(values).symmetric_difference(self._fields))
            raise TypeError(f"{type(self).__name__}: fields {wrong} set wrongly") from None

    def replace(self, **changes: Any) -> Self:
        """A copy with the fields in ``changes`` changed (``dataclasses.replace``)."""
        unknown = changes.keys() - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {min(unknown)!r}")
        values = {name: changes.get(name, getattr(self, name)) for name in self._fields}
        return cast(Self, _rebuild(type(self), values))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key(self) == self._key(other)

    def __hash__(self) -> int:
        return hash(self._key(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), {name: getattr(self, name) for name in self._fields})

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise FrozenError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise FrozenError(f"cannot delete field {name!r}")


def _rebuild(cls: type[Frozen], values: dict[str, object]) -> Frozen:
    """A copy or an unpickled value: its fields set by name, no ``__init__`` run."""
    value = object.__new__(cls)
    value._set(**values)
    return value
