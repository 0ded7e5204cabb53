"""Step order: parallel starts, dependencies, hooks, and what a failure reaches."""

from __future__ import annotations

import pytest

from dockyard.ci.graph import Node, Schedule, StepGraph, find_cycle


def graph(*nodes: Node) -> StepGraph:
    return StepGraph(nodes)


def run(schedule: Schedule, failing: set[str] = frozenset()) -> list[list[str]]:
    """Run to the end, finishing every ready step at once; the waves of starts."""
    waves = []
    while not schedule.done:
        wave = schedule.ready()
        assert wave, "stuck"
        waves.append(wave)
        for name in wave:
            schedule.finish(name, failed=name in failing)
    return waves


def test_find_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["missing"]}) is None


def test_a_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        graph(Node("a", ("b",)), Node("b", ("a",)))


def test_independent_steps_start_together():
    g = graph(Node("a"), Node("b"), Node("c", ("a", "b")), Node("d", ("a",)))
    assert run(Schedule(g)) == [["a", "b"], ["c", "d"]]


def test_steps_start_as_soon_as_their_dependencies_end():
    g = graph(Node("slow"), Node("fast"), Node("after-fast", ("fast",)))
    schedule = Schedule(g)
    assert schedule.ready() == ["slow", "fast"]
    schedule.finish("fast", failed=False)
    assert schedule.ready() == ["after-fast"]
    assert schedule.ready() == []  # each step is handed out once
    schedule.finish("after-fast", failed=False)
    assert not schedule.done
    schedule.finish("slow", failed=False)
    assert schedule.done


def test_a_failure_reaches_only_what_waits_for_it():
    g = graph(
        Node("a"), Node("b", ("a",)), Node("c", ("b",)), Node("other"), Node("after", ("other",))
    )
    schedule = Schedule(g)
    schedule.ready()
    schedule.finish("a", failed=True)
    schedule.finish("other", failed=False)
    assert schedule.upstream_failed("b")
    assert schedule.upstream_failed("c")  # transitively
    assert not schedule.upstream_failed("after")


def test_hooks_wait_for_everything_and_see_the_whole_pipeline():
    g = graph(
        Node("a"),
        Node("b", ("a",)),
        Node("notify", on_failure=True),
        Node("cleanup", on_failure=True),
        Node("targeted", ("b",), on_failure=True),
    )
    assert g.awaits["notify"] == {"a", "b", "targeted"}
    assert g.awaits["targeted"] == {"b"}
    schedule = Schedule(g)
    assert run(schedule, failing={"a"}) == [["a"], ["b"], ["targeted"], ["notify", "cleanup"]]
    assert schedule.upstream_failed("notify")


def test_hooks_never_wait_for_steps_that_wait_for_hooks():
    g = graph(
        Node("h1", on_failure=True),
        Node("h2", on_failure=True),
        Node("s1", ("h2",)),
        Node("s2", ("h1",)),
        Node("plain"),
    )
    assert g.awaits["h1"] == {"plain"}
    assert run(Schedule(g)) == [["plain"], ["h1", "h2"], ["s1", "s2"]]


def test_selection_with_dependencies():
    g = graph(
        Node("a"), Node("b", ("a",)), Node("c", ("b",)), Node("d"), Node("hook", on_failure=True)
    )
    assert g.with_dependencies(["c"]) == ["a", "b", "c"]
    assert run(Schedule(g, g.with_dependencies(["b", "hook"]))) == [["a"], ["b"], ["hook"]]


def test_finishing_twice_is_a_bug():
    schedule = Schedule(graph(Node("a")))
    with pytest.raises(ValueError):
        schedule.finish("a", failed=False)
    schedule.ready()
    schedule.finish("a", failed=False)
    with pytest.raises(ValueError):
        schedule.finish("a", failed=False)
