"""The order of a pipeline's steps: who waits for whom, and what a failure reaches.

A step waits for the steps it names in ``depends_on``. A *hook*, a step with no
``depends_on`` that may run on failure (``when: status: [failure]``), waits instead for
every ordinary step that does not itself depend on a hook: it runs last and sees the
status of the whole pipeline, as a notification or cleanup step should.

:class:`Schedule` is the bookkeeping of one run, free of containers so that it can be
tested alone: which steps may start now, and whether anything a step waits for
(directly or not) has failed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from dockyard.frozen import Frozen


def find_cycle(dependencies: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]``, or None; unknown names are ignored."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in dependencies.get(name, ()):
            if dep not in dependencies:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in dependencies:
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


class Node(Frozen):
    """What the graph needs to know of a step."""

    __slots__ = ("depends_on", "name", "on_failure")
    name: str
    depends_on: tuple[str, ...]
    on_failure: bool  # its ``when.status`` includes failure

    def __init__(self, name: str, depends_on: tuple[str, ...] = (), on_failure: bool = False):
        self._set(name=name, depends_on=depends_on, on_failure=on_failure)


class StepGraph:
    """The waits of an acyclic set of steps (see the module doc for hooks)."""

    def __init__(self, nodes: Iterable[Node]):
        nodes = list(nodes)
        self.order = [n.name for n in nodes]
        explicit = {n.name: tuple(n.depends_on) for n in nodes}
        if cycle := find_cycle(explicit):
            raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")
        hooks = {n.name for n in nodes if n.on_failure and not n.depends_on}
        ordinary = [
            n.name
            for n in nodes
            if n.name not in hooks and not (_closure(explicit, n.name) & hooks)
        ]
        self.awaits: dict[str, frozenset[str]] = {
            name: frozenset(ordinary) if name in hooks else frozenset(explicit[name])
            for name in self.order
        }
        self._upstream = {name: _closure(self.awaits, name) for name in self.order}
        self._dependencies = {name: _closure(explicit, name) for name in self.order}

    def upstream(self, name: str) -> frozenset[str]:
        """Every step ``name`` waits for, directly or not."""
        return self._upstream[name]

    def with_dependencies(self, names: Collection[str]) -> list[str]:
        """``names`` and their ``depends_on``, transitively, in pipeline order.

        A hook selected alone waits only for the selected steps."""
        wanted = set(names)
        for name in names:
            wanted |= self._dependencies[name]
        return [name for name in self.order if name in wanted]


class Schedule:
    """One run through a graph: start steps once all they wait for has finished.

    Steps outside ``selected`` (default: all) are not part of the run: nobody waits
    for them.
    """

    def __init__(self, graph: StepGraph, selected: Collection[str] | None = None):
        self.graph = graph
        chosen = set(graph.order if selected is None else selected)
        self._todo = [name for name in graph.order if name in chosen]
        self._chosen = frozenset(self._todo)
        self._started: set[str] = set()
        self._finished: dict[str, bool] = {}  # name -> failed (a failure that counts)

    def ready(self) -> list[str]:
        """Steps that may start now, in pipeline order; each is returned once."""
        found = []
        for name in self._todo:
            if name in self._started:
                continue
            waits = self.graph.awaits[name] & self._chosen
            if all(dep in self._finished for dep in waits):
                self._started.add(name)
                found.append(name)
        return found

    def finish(self, name: str, *, failed: bool) -> None:
        """Record the end of a started step; ``failed`` only if its failure counts.

        A failed step with ``failure: ignore`` has not failed here."""
        if name not in self._started or name in self._finished:
            raise ValueError(f"step {name!r} is not running")
        self._finished[name] = failed

    def upstream_failed(self, name: str) -> bool:
        """Whether anything ``name`` waits for, directly or not, has failed."""
        return any(self._finished.get(dep, False) for dep in self.graph.upstream(name))

    @property
    def done(self) -> bool:
        return len(self._finished) == len(self._todo)


def _closure(edges: Mapping[str, Iterable[str]], name: str) -> frozenset[str]:
    """Everything reachable from ``name`` along ``edges`` (``name`` itself excepted)."""
    seen: set[str] = set()
    stack = list(edges.get(name, ()))
    while stack:
        current = stack.pop()
        if current not in seen and current in edges:
            seen.add(current)
            stack.extend(edges[current])
    return frozenset(seen)
