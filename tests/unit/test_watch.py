"""The watcher of ``dockyard watch`` on real files: which changes count (the context minus
.dockerignore, new directories, the ignore file itself, never through a symlink), and
that changes made during a build start exactly one more build.

inotify queues an event before the write that causes it returns, so ``changes(0)``
right after a write sees it: no test here waits for time to pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from dockyard.watch import ContextWatcher, rebuild_loop


@pytest.fixture
def context(tmp_path) -> Path:
    root = tmp_path / "context"
    (root / "src").mkdir(parents=True)
    (root / "node_modules/keep").mkdir(parents=True)
    (root / "node_modules/junk").mkdir()
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / ".dockerignore").write_text("node_modules\n!node_modules/keep\n*.log\n")
    return root


def test_changes_in_the_context_count_ignored_ones_do_not(context):
    with ContextWatcher(context) as watcher:
        (context / "src/a.py").write_text("1")
        (context / "debug.log").write_text("x")
        (context / "node_modules/junk/x.js").write_text("x")
        (context / "node_modules/keep/y.js").write_text("y")  # an exception reaches in
        assert set(watcher.changes()) == {"src/a.py", "node_modules/keep/y.js"}
        assert watcher.changes() == []


def test_a_new_directory_is_watched_from_its_creation(context):
    with ContextWatcher(context) as watcher:
        (context / "src/new/deeper").mkdir(parents=True)
        (context / "src/new/deeper/f").write_text("f")
        # Made before its watch: the new directory's own event stands for all of it.
        assert watcher.changes()[0] == "src/new"
        (context / "src/new/deeper/f").write_text("again")
        assert watcher.changes() == ["src/new/deeper/f"]


def test_the_ignore_file_reloads_the_rules(context):
    with ContextWatcher(context) as watcher:
        (context / ".dockerignore").write_text("src\n")
        assert watcher.changes() == [".dockerignore"]
        (context / "src/a.py").write_text("now ignored")
        (context / "node_modules/junk/x.js").write_text("now seen")
        assert watcher.changes() == ["node_modules/junk/x.js"]


def test_the_dockerfile_counts_even_when_ignored_and_outside_the_context(context, tmp_path):
    (context / ".dockerignore").write_text("Dockerfile\n")
    elsewhere = tmp_path / "files/app.Dockerfile"
    elsewhere.parent.mkdir()
    elsewhere.write_text("FROM scratch\n")
    with ContextWatcher(context) as watcher:
        (context / "Dockerfile").write_text("FROM scratch\n# edited\n")
        assert watcher.changes() == ["Dockerfile"]
    with ContextWatcher(context, elsewhere) as watcher:
        (elsewhere.parent / "other").write_text("not ours")
        elsewhere.write_text("FROM scratch\n# edited\n")
        assert watcher.changes() == [str(elsewhere)]


def test_a_symlink_out_of_the_context_is_not_followed(context, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (context / "src/link").symlink_to(outside)
    with ContextWatcher(context) as watcher:
        (outside / "secret").write_text("not part of the context")
        assert watcher.changes() == []


class Done(Exception):
    pass


def test_changes_during_a_build_start_exactly_one_more(context):
    builds: list[list[str]] = []

    def build(changed: Sequence[str], since: float) -> None:
        builds.append(list(changed))
        if len(builds) == 1:
            (context / "src/first").write_text("starts the next build")
        elif len(builds) == 2:  # the build is running: these wait for it to end
            for n in range(5):
                (context / f"src/during-{n}").write_text(str(n))
        else:
            raise Done

    with ContextWatcher(context) as watcher, pytest.raises(Done):
        rebuild_loop(watcher, build, debounce=0.01)
    assert builds[0] == []
    assert builds[1] == ["src/first"]
    assert builds[2] == [f"src/during-{n}" for n in range(5)]  # all in one build
    assert len(builds) == 3
