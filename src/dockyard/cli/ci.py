"""``dockyard ci run | logs | runs | prune``: pipelines run locally, and their saved runs.

``run`` prints each step's output as it comes, prefixed by the step's name (coloured on
a terminal), then a summary table; it exits 0 only if the pipeline succeeded, 130 on
Ctrl-C (or SIGTERM), after cleaning up. ``--json`` is written however the run ended.
``logs -f`` follows a step (or a whole run) while it runs, from another terminal.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dockyard.ci.results import Events
from dockyard.cli.common import open_store, parse_pairs, print_table

if TYPE_CHECKING:
    from dockyard.ci import RunDir, RunResult, StepResult

INTERRUPTED = 130
PLUGINS_OFF = "PYDANTIC_DISABLE_PLUGINS"
FOLLOW_INTERVAL = 0.2  # seconds between looks at a followed log
_COLOURS = ("cyan", "magenta", "blue", "yellow", "green", "bright_cyan", "bright_magenta")
_STATUS_COLOURS = {"success": "green", "failure": "red", "timeout": "red", "skipped": "yellow"}


@click.group()
def ci() -> None:
    """Run pipelines (.dockyard.yml) locally, in containers; show and prune past runs."""


@ci.command("run")
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline file [default: DIR/.dockyard.yml].",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="A secret; a bare NAME takes its value from the environment (needs --from-env).",
)
@click.option("--from-env", is_flag=True, help="Allow bare --secret NAME (value from env).")
@click.option(
    "--secrets-file",
    "secrets_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="NAME=VALUE lines ('#' comments; one pair of quotes around a value is dropped).",
)
@click.option("--env", "env", multiple=True, metavar="K=V", help="A variable for every step.")
@click.option("--branch", help="The branch for when.branch [default: the git branch of DIR].")
@click.option("--commit", help="The commit DIR is a checkout of [default: git's HEAD of DIR].")
@click.option("--event", default="manual", show_default=True, help="The event for when.event.")
@click.option("--only", multiple=True, metavar="STEP", help="Run STEP and its dependencies.")
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the result as JSON.",
)
@click.option("-j", "--parallel", type=click.IntRange(min=1), help="Steps at a time.")
@click.option(
    "--allow-host-credentials",
    is_flag=True,
    help="Let the run's pulls and pushes use this host's registry logins (docker "
    "config.json, dockyard login) for registries its registry_auth does not cover. "
    "Only for pipelines you trust.",
)
@click.option(
    "--allow-host-network",
    is_flag=True,
    help="Let build steps use the host's network (build network: host, RUN --network=host).",
)
@click.argument(
    "directory",
    required=False,
    default=".",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
def run(
    file: Path | None,
    secrets: tuple[str, ...],
    from_env: bool,
    secrets_files: tuple[Path, ...],
    env: tuple[str, ...],
    branch: str | None,
    commit: str | None,
    event: str,
    only: tuple[str, ...],
    json_file: Path | None,
    parallel: int | None,
    allow_host_credentials: bool,
    allow_host_network: bool,
    directory: Path,
) -> None:
    """Run the pipeline of DIR (default: .) with DIR copied as its workspace."""
    from dockyard.ci import RunOptions, load_pipeline, run_pipeline
    from dockyard.ci.pipeline import DEFAULT_FILE

    with _pydantic_plugins_unsought():
        pipeline = load_pipeline(
            file or directory / DEFAULT_FILE, within=None if file else directory
        )
    if branch is None or commit is None:
        git_commit, git_branch = _git_head(directory)
        branch = git_branch if branch is None else branch
        commit = git_commit if commit is None else commit
    options = RunOptions(
        store_root=open_store().root,
        source=directory,
        secrets=_secrets(secrets, from_env, secrets_files),
        env=parse_pairs(env, "--env"),
        branch=branch,
        commit=commit,
        event=event,
        only=only,
        allow_host_credentials=allow_host_credentials,
        allow_host_network=allow_host_network,
    )
    if parallel:
        options.parallel = parallel
    printer = _Printer(
        [s.name for s in pipeline.steps]
        + list(pipeline.services)
        + [f"{s.name}.{name}" for s in pipeline.steps for name in s.own_services]
    )
    previous = signal.signal(signal.SIGTERM, _sigterm_as_sigint)
    try:
        result = run_pipeline(pipeline, options, printer)
    except KeyboardInterrupt:
        click.echo("dockyard: run cancelled; everything it started has been removed", err=True)
        sys.exit(INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if json_file and printer.result:
            json_file.write_text(json.dumps(printer.result.to_json(), indent=2) + "\n")
    _summary(result, printer.colour)
    sys.exit(0 if result.succeeded else 1)


@ci.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Go on printing lines as they come.")
@click.option("-t", "--timestamps", is_flag=True, help="Show when each line was written (UTC).")
@click.argument("run_id", metavar="RUN")
@click.argument("name", metavar="[STEP]", required=False)
def logs(run_id: str, name: str | None, follow: bool, timestamps: bool) -> None:
    """Print the saved logs of RUN (an id, a unique prefix, or 'last').

    Of STEP (or service) only, else of every step, prefixed by its name. With --follow, until the
    step (or the run) ends."""
    from dockyard.ci import RunDir

    run = RunDir.find(open_store().root, run_id)
    follower = _LogFollower(run, name, timestamps)
    while True:
        record = run.read_record()  # before reading: a log is complete once it ends
        follower.print_new(record)
        if not follow or follower.ended(record):
            return
        time.sleep(FOLLOW_INTERVAL)


@ci.command("prune")
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the newest runs to keep.",
)
@click.option(
    "--caches-unused-for",
    "caches_age",
    metavar="DURATION",
    help="Also delete the caches no step has used for DURATION (such as 12h or 7d).",
)
def prune(keep: int, caches_age: str | None) -> None:
    """Delete the runs older than the newest KEEP, and unused caches if asked.

    A run's records, logs and artifacts go. Runs in progress and their caches are kept."""
    from dockyard.ci.pipeline import parse_duration
    from dockyard.ci.prune import prune as prune_runs

    try:
        unused_for = parse_duration(caches_age) if caches_age is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--caches-unused-for") from None
    result = prune_runs(open_store(), keep=keep, caches_unused_for=unused_for)
    leftovers = f", {result.leftovers} leftovers of killed runs" if result.leftovers else ""
    click.echo(
        f"removed {len(result.runs)} runs and {len(result.caches)} caches{leftovers}, "
        f"{result.freed / 1e6:.1f} MB freed"
    )


@ci.command("runs")
def runs() -> None:
    """List the pipeline runs in the store, oldest first."""
    from dockyard.ci import RunDir, run_ids

    root = open_store().root
    rows: list[tuple[str, ...]] = [
        ("RUN", "STATUS", "BRANCH", "COMMIT", "EVENT", "STARTED", "DURATION", "FAILING")
    ]
    for run_id in run_ids(root):
        record = RunDir.find(root, run_id).read_record()
        rows.append(
            (
                run_id,
                str(record.get("status", "?")),
                str(record.get("branch") or "-"),
                str(record.get("commit") or "-")[:12],
                str(record.get("event") or "-"),
                str(record.get("started", "-")),
                _duration(record.get("duration")),
                str(record.get("failing_step") or ("services" if record.get("error") else "-")),
            )
        )
    _table(rows)


_LIVE = ("running", "starting")  # run statuses after which more lines may come


class _LogFollower:
    """Prints what a run's logs gained since the last call: one step's or service's
    (``name``), or every step's, prefixed by its name; whole lines only."""

    def __init__(self, run: RunDir, name: str | None, timestamps: bool):
        self.run = run
        self.name = name
        self.timestamps = timestamps
        self.offsets: dict[Path, int] = {}

    def print_new(self, record: dict[str, Any]) -> None:
        from dockyard.ci.output import saved_lines
        from dockyard.errors import NotFound

        if self.name is not None:
            path = self._path(self.name)
            if path is None and record.get("status") not in _LIVE:  # it will never start
                raise NotFound(
                    f"run {self.run.id} has no log of a step or service named {self.name!r}"
                )
            sources = [("", path)] if path else []
        else:
            steps = [s["name"] for s in record.get("steps", [])]
            width = max((len(s) for s in steps), default=0)
            sources = [(f"{s:<{width}} | ", self.run.step_log(s)) for s in steps]
        for prefix, path in sources:
            data = self._new_data(path)
            for line in saved_lines(data, timestamps=self.timestamps):
                click.echo(prefix + line)

    def ended(self, record: dict[str, Any]) -> bool:
        """Whether nothing more will be written: the run ended, or the step did."""
        if record.get("status") not in _LIVE:
            return True
        if self.name is None:
            return False
        status = {s["name"]: s["status"] for s in record.get("steps", [])}.get(self.name)
        return status is not None and status != "running"

    def _path(self, name: str) -> Path | None:
        for path in (self.run.step_log(name), self.run.service_log(name)):
            if path.is_file():
                return path
        return None

    def _new_data(self, path: Path) -> bytes:
        """The whole lines ``path`` gained since the last call."""
        offset = self.offsets.get(path, 0)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return b""
        whole = data[: data.rfind(b"\n") + 1]
        self.offsets[path] = offset + len(whole)
        return whole


# -- output ----------------------------------------------------------------------------


class _Printer(Events):
    """Live output: ``name | line``, one line at a time, coloured on a terminal."""

    def __init__(self, names: list[str]):
        self.colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self.width = max(len(n) for n in names)
        self.colours = dict(zip(names, itertools.cycle(_COLOURS), strict=False))
        self.lock = threading.Lock()
        self.result: RunResult | None = None  # once the run has ended

    def line(self, source: str, text: str, *, note: bool = False) -> None:
        prefix = f"{source:<{self.width}} |"
        if self.colour:
            prefix = click.style(prefix, fg=self.colours.get(source))
            text = click.style(text, dim=True) if note else text
        elif note:
            text = f"--- {text}"
        with self.lock:
            click.echo(f"{prefix} {text}")

    def step_finished(self, result: StepResult) -> None:
        if result.status == "skipped":
            self.line(result.name, f"skipped: {result.reason}", note=True)

    def run_finished(self, result: RunResult) -> None:
        self.result = result


def _summary(result: RunResult, colour: bool) -> None:
    rows: list[tuple[str, ...]] = [
        ("STEP", "STATUS", "DURATION", "SERVICES", "PULL", "RUN", "EXIT", "TESTS")
    ]
    for step in result.steps:
        status = step.status + (" (ignored)" if step.ignored else "")
        tests = step.tests
        timings = step.timings
        rows.append(
            (
                step.name,
                status,
                _duration(step.duration) if step.status != "skipped" else "-",
                *(
                    _duration(timings[part]) if part in timings else "-"
                    for part in ("services", "pull", "run")
                ),
                "-" if step.exit_code is None else str(step.exit_code),
                f"{tests.passed} passed, {tests.failed} failed" if tests else "-",
            )
        )
    click.echo()
    _table(rows, colour)
    for step in result.steps:
        if step.tests and step.tests.failing:
            click.echo(f"failing tests in {step.name}: {', '.join(step.tests.failing)}")
    services = [*result.services.items()] + [
        (f"{step.name}.{name}", t) for step in result.steps for name, t in step.services.items()
    ]
    for name, timings in services:
        parts = [f"pulled in {_duration(timings['pull'])}"] if "pull" in timings else []
        if "ready" in timings:
            parts.append(f"ready after {_duration(timings['ready'])}")
        if parts:
            click.echo(f"service {name}: {', '.join(parts)}")
    outcome = result.status.upper()
    if colour:
        outcome = click.style(outcome, fg=_STATUS_COLOURS.get(result.status), bold=True)
    error = f": {result.error}" if result.error else ""
    click.echo(f"{outcome} in {_duration(result.duration)}{error} (run {result.id})")


def _table(rows: list[tuple[str, ...]], colour: bool = False) -> None:
    """Rows under a header, the status column coloured if ``colour``."""

    def style(column: int, cell: str) -> str:
        return click.style(cell, fg=_STATUS_COLOURS.get(cell.split()[0])) if column == 1 else cell

    print_table(rows, style if colour else None)


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


# -- options ---------------------------------------------------------------------------


def _secrets(values: tuple[str, ...], from_env: bool, files: tuple[Path, ...]) -> dict[str, str]:
    """Secrets from files first, then --secret, later ones winning."""
    secrets: dict[str, str] = {}
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, sep, value = text.partition("=")
            if not sep or not name.strip():
                raise click.BadParameter(
                    f"{path}:{number}: expected NAME=VALUE", param_hint="--secrets-file"
                )
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            secrets[name.strip()] = value
    bare = [value for value in values if "=" not in value]
    if bare and not from_env:
        raise click.BadParameter(
            f"{bare[0]!r}: give NAME=VALUE, or add --from-env", param_hint="--secret"
        )
    unset = [name for name in bare if name not in os.environ]
    if unset:
        raise click.BadParameter(f"{unset[0]} is not set in the environment", param_hint="--secret")
    secrets.update(parse_pairs(values, "--secret", bare="environment"))
    return secrets


def _git_head(directory: Path) -> tuple[str | None, str | None]:
    """The commit and the checked-out branch of the work tree at ``directory``, if it is
    one (None for what it has not: no commit yet, a detached HEAD), from one ``git``."""
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD", "--abbrev-ref", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2:
        return None, None
    commit, branch = lines
    return commit, branch if branch != "HEAD" else None


@contextlib.contextmanager
def _pydantic_plugins_unsought() -> Iterator[None]:
    """No search for pydantic plugins while the pipeline's validator is built.

    Building a model's first validator, pydantic looks for plugins in the entry points of
    every installed distribution (~5 ms here) unless ``PYDANTIC_DISABLE_PLUGINS`` is set;
    it reads the variable at each build (pydantic 2.13), so set for this one build and
    then restored, it leaves every later validator, and this run's children, as they were.
    Only while this process has one thread: no other thread reads the environment as it
    changes (glibc's setenv is not safe beside a getenv)."""
    if PLUGINS_OFF in os.environ or threading.active_count() != 1:
        yield
        return
    os.environ[PLUGINS_OFF] = "1"
    try:
        yield
    finally:
        del os.environ[PLUGINS_OFF]


def _sigterm_as_sigint(signum: int, frame: object) -> None:
    """SIGTERM stops a run as Ctrl-C does, with the same cleanup."""
    signal.raise_signal(signal.SIGINT)
