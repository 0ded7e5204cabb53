"""``dockyard agent``: take runs from a server and run them with the local engine.

The agent long-polls the server for a run its labels fit while it has a free slot
(``capacity``), runs each in a thread: the commit checked out (:mod:`.checkout`), the
pipeline file read from it, its ``labels`` reported (a run whose pipeline needs labels
this agent lacks goes back to the queue, :mod:`.reports`), the secrets it names
fetched, :func:`run_pipeline` with a :class:`.reporter.Reporter` shipping its log and
step states. A heartbeat thread keeps
the leases of its runs every :data:`HEARTBEAT` seconds and learns which to stop
(cancelled through the API): their containers are killed at once. Lost connections
are retried. A process first claims its name (the server refuses a second live
process under one name, :func:`.api.agents._agent`), and only then clears what a
previous process left. An agent that is stopped (SIGINT/SIGTERM) cancels its runs
and says goodbye: the server requeues them at once and frees the name. With
``gc_keep_storage``, each run ends with the store brought back under it if it grew
past it (:mod:`dockyard.disk.autogc`).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dockyard.ci.cancel import Cancellation
from dockyard.ci.pipeline import Pipeline
from dockyard.ci.results import RunResult
from dockyard.disk.autogc import AutoGC
from dockyard.errors import DockyardError
from dockyard.service.checkout import CheckoutError, checkout
from dockyard.service.reporter import Reporter

log = logging.getLogger("dockyard.agent")
HEARTBEAT = 1.0  # seconds; a cancel reaches a step within about this
POLL_WAIT = 20.0
RETRY_MAX = 5.0
UPLOAD_CHUNK = 1 << 20
HANDED_BACK = "handed back"  # the run needs labels this agent lacks: no verdict


def _regular_files(root: Path) -> Iterator[Path]:
    """The regular files under ``root``, not through symlinks."""
    for directory, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(directory, name)
            if stat.S_ISREG(path.lstat().st_mode):
                yield path


def _error(response: httpx.Response) -> str:
    """The server's one-line error message of ``response``."""
    try:
        return str(response.json().get("error"))
    except ValueError:
        return f"HTTP {response.status_code}"


class AgentError(DockyardError):
    """The server refuses this agent (its token)."""


@dataclass
class AgentConfig:
    server: str
    token: str
    name: str
    workdir: Path
    labels: dict[str, str] = field(default_factory=dict)
    capacity: int = 1
    store_root: Path | None = None
    gc_keep_storage: int | None = None  # bytes: prune after a run past this


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.client = httpx.Client(
            base_url=config.server.rstrip("/"),
            headers={"Authorization": f"Bearer {config.token}"},
            timeout=httpx.Timeout(10.0, read=POLL_WAIT + 15),
        )
        self.identity = {
            "name": config.name,
            "labels": config.labels,
            "capacity": config.capacity,
            "instance": secrets.token_hex(16),  # this process: a new one has lost the runs
        }
        self._lock = threading.Lock()
        self._jobs: dict[int, Cancellation] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._slot_freed = threading.Event()
        self._gc = (
            AutoGC(config.store_root, config.gc_keep_storage)
            if config.gc_keep_storage is not None
            else None
        )

    def run(self) -> None:
        """Take and run jobs until interrupted, then cancel the ones running."""
        if not self._claim_name():
            return
        self._reap_previous()
        beat = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        beat.start()
        delay = 0.5
        try:
            while True:
                with self._lock:
                    self._threads = [t for t in self._threads if t.is_alive()]
                    busy = len(self._threads)
                if busy >= self.config.capacity:
                    self._slot_freed.wait(1.0)
                    self._slot_freed.clear()
                    continue
                try:
                    job = self._poll()
                    delay = 0.5
                except (httpx.HTTPError, OSError, ValueError) as e:
                    log.warning("server %s: %s; retrying", self.config.server, e)
                    time.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                if job is not None:
                    self._start(job)
        finally:
            self.stop()

    def _claim_name(self) -> bool:
        """Wait until the server lets this process act as the agent's name: another
        live process holding it is refused (409) until it stops; False if stopped."""
        delay, said = HEARTBEAT, ""
        while not self._stopping.is_set():
            try:
                response = self.client.post(
                    "/api/v1/agent/heartbeat", json={**self.identity, "runs": []}
                )
                if response.status_code in (401, 403):
                    raise AgentError(f"server refused the agent: {_error(response)}")
                if response.status_code != 409:
                    response.raise_for_status()
                    return True
                if _error(response) != said:
                    said = _error(response)
                    log.warning("%s; waiting", said)
                delay = HEARTBEAT
            except (httpx.HTTPError, OSError, ValueError) as e:
                log.warning("server %s: %s; retrying", self.config.server, e)
                delay = min(delay * 2, RETRY_MAX)
            self._stopping.wait(delay)
        return False

    def _reap_previous(self) -> None:
        """Delete what this agent's previous process left if it was killed: checkouts,
        containers (runc state, bundles), overlays, run dirs. The server learns of the
        restart from the new ``instance`` id and puts that process's runs back in the
        queue at once."""
        from dockyard.ci.prune import prune
        from dockyard.store import Store

        shutil.rmtree(self.config.workdir / "checkouts", ignore_errors=True)
        try:
            reaped = prune(Store(self.config.store_root), keep=sys.maxsize, abandoned=True)
        except (DockyardError, OSError) as e:
            log.warning("could not reap what a previous agent left: %s", e)
            return
        if reaped.runs or reaped.leftovers:
            log.info(
                "reaped what a previous agent left: %d runs, %d containers and images",
                len(reaped.runs),
                reaped.leftovers,
            )

    def _cancellations(self) -> list[Cancellation]:
        with self._lock:
            return list(self._jobs.values())

    def stop(self) -> None:
        self._stopping.set()
        jobs = self._cancellations()
        with self._lock:
            threads = list(self._threads)
        for cancel in jobs:
            cancel.cancel()
        for thread in threads:
            thread.join()
        try:  # the runs cancelled above go back to the queue now, not after their lease
            self.client.post("/api/v1/agent/goodbye", json=self.identity, timeout=5.0)
        except httpx.HTTPError as e:
            log.warning("goodbye not heard by the server: %s", e)

    def _poll(self) -> dict[str, Any] | None:
        response = self.client.post("/api/v1/agent/poll", json={**self.identity, "wait": POLL_WAIT})
        if response.status_code in (401, 403):
            raise AgentError(f"server refused the agent: {_error(response)}")
        response.raise_for_status()
        return response.json().get("job")

    def _start(self, job: dict[str, Any]) -> None:
        cancel = Cancellation()
        thread = threading.Thread(target=self._job, args=(job, cancel), name=f"run-{job['id']}")
        with self._lock:
            self._jobs[job["id"]] = cancel
            self._threads.append(thread)
        thread.start()

    def _heartbeats(self) -> None:
        while not self._stopping.wait(HEARTBEAT):
            with self._lock:
                runs = list(self._jobs)
            try:
                response = self.client.post(
                    "/api/v1/agent/heartbeat", json={**self.identity, "runs": runs}
                )
                if response.status_code == 409:  # another process took the name over
                    log.warning("%s; stopping this process's runs", _error(response))
                    for lost in self._cancellations():
                        lost.cancel()
                    continue
                response.raise_for_status()
                stop = response.json().get("stop", [])
            except (httpx.HTTPError, OSError, ValueError) as e:
                log.warning("heartbeat failed: %s", e)
                continue
            for run_id in stop:
                with self._lock:
                    cancel = self._jobs.get(run_id)
                if cancel is not None:
                    log.info("run %s: stopping (cancelled, or no longer ours)", run_id)
                    cancel.cancel()

    def _job(self, job: dict[str, Any], cancel: Cancellation) -> None:
        run_id, attempt = job["id"], job["attempt"]
        reporter = Reporter(self.client, self.identity, run_id, attempt)
        where = self.config.workdir / "checkouts" / f"{run_id}-{attempt}"
        try:
            status, error = self._execute(job, reporter, cancel, where)
        except Exception as e:  # the run must end whatever happened
            log.exception("run %s failed", run_id)
            status, error = "failure", f"{type(e).__name__}: {e}"
        finally:
            shutil.rmtree(where, ignore_errors=True)
            with self._lock:
                self._jobs.pop(run_id, None)
            self._slot_freed.set()
        if self._stopping.is_set() or status == HANDED_BACK:
            reporter.close(10.0)  # what it printed, but no verdict: the server requeues
            return
        if not reporter.finish(status, error):
            log.warning("run %s: the server did not take its end (%s)", run_id, status)
        if self._gc is not None:
            self._gc.after_run()

    def _execute(
        self, job: dict[str, Any], reporter: Reporter, cancel: Cancellation, where: Path
    ) -> tuple[str, str]:
        from dockyard.ci import PipelineError, RunError, RunOptions, load_pipeline, run_pipeline

        def note(text: str) -> None:
            reporter.line("", text, note=True)

        note(f"agent {self.config.name}, attempt {job['attempt']}")
        try:
            commit = checkout(
                job["clone_url"], job["branch"], job["commit"], where, note, ref=job.get("ref")
            )
        except CheckoutError as e:
            note(str(e))
            return "failure", str(e)
        if commit != job["commit"]:
            reporter.add({"kind": "start", "commit": commit})
        try:
            pipeline = load_pipeline(where / job["pipeline_path"], within=where)
        except PipelineError as e:
            note(str(e))
            return "failure", str(e).replace(str(where) + "/", "")
        try:
            pipeline.check_labels(job.get("labels") or {})
        except PipelineError as e:
            note(str(e).replace(str(where) + "/", ""))
            return "failure", str(e).replace(str(where) + "/", "")
        if pipeline.labels:
            reporter.add({"kind": "labels", "labels": pipeline.labels})
            have = self.config.labels
            if any(have.get(k) != v for k, v in pipeline.labels.items()):
                return HANDED_BACK, ""
        reporter.plan(pipeline.graph)
        options = RunOptions(
            store_root=self.config.store_root,
            source=where,
            secrets=self._secrets(job, pipeline),
            env={
                "CI_REPO": job["repository"],
                "CI_RUN_NUMBER": str(job["number"]),
                "CI_COMMIT_SHA": commit,
                **job["env"],
            },
            branch=job["branch"],
            event=job["event"],
            cancel=cancel,
        )
        if cancel.cancelled:
            return "cancelled", "cancelled"
        try:
            result = run_pipeline(pipeline, options, reporter)
        except RunError as e:
            note(str(e))
            return "failure", str(e)
        if cancel.cancelled:
            return "cancelled", "cancelled"
        self._upload_artifacts(job, result, note)
        return ("success" if result.succeeded else "failure"), result.error

    def _upload_artifacts(
        self, job: dict[str, Any], result: RunResult, note: Callable[[str], None]
    ) -> None:
        """Send the files the steps' ``artifacts`` saved (symlinks are not followed)."""
        from dockyard.ci.runs import RUNS_DIR, RunDir
        from dockyard.store import Store

        run_dir = RunDir(Store(self.config.store_root).root / RUNS_DIR / result.id)
        for step in result.steps:
            if not step.artifacts:
                continue
            root = run_dir.artifacts(step.name)
            for path in _regular_files(root):
                params = {
                    "name": self.config.name,
                    "attempt": job["attempt"],
                    "step": step.name,
                    "path": path.relative_to(root).as_posix(),
                }
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                    with os.fdopen(fd, "rb") as f:
                        response = self.client.put(
                            f"/api/v1/agent/runs/{job['id']}/artifacts",
                            params=params,
                            content=iter(functools.partial(f.read, UPLOAD_CHUNK), b""),
                            timeout=httpx.Timeout(60.0),
                        )
                    response.raise_for_status()
                except (httpx.HTTPError, OSError) as e:
                    note(f"artifact {step.name}/{params['path']} not uploaded: {e}")

    def _secrets(self, job: dict[str, Any], pipeline: Pipeline) -> dict[str, str]:
        """The secrets the pipeline names (only those), from the server."""
        names = {name for step in pipeline.steps for name in step.secrets}
        if pipeline.spec.registry_auth:
            names.add(pipeline.spec.registry_auth)
        names.update(
            s.build.registry_auth
            for s in pipeline.steps
            if s.build is not None and s.build.registry_auth
        )
        if not names:
            return {}
        response = self.client.post(
            f"/api/v1/agent/runs/{job['id']}/secrets",
            json={**self.identity, "attempt": job["attempt"], "names": sorted(names)},
        )
        response.raise_for_status()
        return response.json()["secrets"]
