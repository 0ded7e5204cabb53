"""The layout of a run's steps as the graph their ``depends_on`` forms.

The run page's template draws it as an SVG.

A step's column is its depth (the longest chain of steps it waits for), its row its
place among the steps of that column in pipeline order. Edges are drawn only where no
longer path already says the same (a transitive reduction), so a hook that waits for
every step gets one edge per last step, not one per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 200, 56  # a step's box
COLUMN_GAP, ROW_GAP, MARGIN = 48, 14, 4
MAX_NAME = 24  # characters of a name drawn in a box (the link's label has all of it)


@dataclass(frozen=True)
class Box:
    step: dict[str, Any]
    x: int
    y: int
    label: str  # the name, cut to fit


@dataclass(frozen=True)
class Edge:
    path: str  # an SVG path from the waited-for step to the waiting one


@dataclass(frozen=True)
class Layout:
    boxes: list[Box]
    edges: list[Edge]
    width: int
    height: int


def layout(steps: Sequence[dict[str, Any]]) -> Layout:
    """Boxes and edges for ``steps`` (each with ``name`` and ``depends_on``), in order."""
    names = [s["name"] for s in steps]
    known = set(names)
    waits = {
        s["name"]: list(dict.fromkeys(d for d in s.get("depends_on") or () if d in known))
        for s in steps
    }
    depth = _depths(names, waits)
    rows: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for step in steps:
        column = depth[step["name"]]
        row = rows.get(column, 0)
        rows[column] = row + 1
        label = (
            step["name"] if len(step["name"]) <= MAX_NAME else step["name"][: MAX_NAME - 1] + "…"
        )
        boxes[step["name"]] = Box(
            step,
            MARGIN + column * (WIDTH + COLUMN_GAP),
            MARGIN + row * (HEIGHT + ROW_GAP),
            label,
        )
    edges = [_edge(boxes[d], boxes[name]) for name in names for d in _reduced(name, waits)]
    columns = max(rows, default=-1) + 1
    return Layout(
        list(boxes.values()),
        edges,
        2 * MARGIN + max(columns * (WIDTH + COLUMN_GAP) - COLUMN_GAP, 0),
        2 * MARGIN + max(max(rows.values(), default=0) * (HEIGHT + ROW_GAP) - ROW_GAP, 0),
    )


def _depths(names: list[str], waits: dict[str, list[str]]) -> dict[str, int]:
    """Each step's longest chain of steps it waits for (steps in a cycle: 0)."""
    left = {name: len(waits[name]) for name in names}
    waiting: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in waits[name]:
            waiting[dep].append(name)
    depth = {name: 0 for name in names}
    ready = [name for name in names if not left[name]]
    while ready:
        name = ready.pop()
        for other in waiting[name]:
            depth[other] = max(depth[other], depth[name] + 1)
            left[other] -= 1
            if not left[other]:
                ready.append(other)
    return depth


def _reduced(name: str, waits: dict[str, list[str]]) -> list[str]:
    """The steps ``name`` waits for that no other of them waits for, directly or not."""
    direct = waits[name]
    reached: set[str] = set()
    for dep in direct:
        stack = list(waits[dep])
        while stack:
            other = stack.pop()
            if other not in reached and other != name:
                reached.add(other)
                stack.extend(waits[other])
    return [d for d in direct if d not in reached]


def _edge(source: Box, target: Box) -> Edge:
    x1, y1 = source.x + WIDTH, source.y + HEIGHT // 2
    x2, y2 = target.x, target.y + HEIGHT // 2
    if x2 <= x1:  # a cycle's back edge: around below
        return Edge(f"M{x1},{y1} C{x1 + 30},{y1 + 60} {x2 - 30},{y2 + 60} {x2},{y2}")
    bend = x2 - COLUMN_GAP // 2  # straight along the row, turning in the last gap
    return Edge(f"M{x1},{y1} L{bend - 20},{y1} C{bend + 10},{y1} {bend},{y2} {x2 - 6},{y2}")
