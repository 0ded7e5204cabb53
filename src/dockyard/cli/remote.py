"""``dockyard remote ...``: the CI server's API from a terminal.

``remote login URL`` keeps the server and a token in ``~/.config/dockyard/remote.json``
(0600; ``DOCKYARD_REMOTE`` and ``DOCKYARD_REMOTE_TOKEN`` override it); every other
command calls one API route and prints its answer as a table or text.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import httpx
from dockyard.cli.common import print_table
from dockyard.cli.users import user_group


def _config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dockyard" / "remote.json"


def _client() -> httpx.Client:
    import httpx

    from dockyard.errors import DockyardError

    saved: dict[str, str] = {}
    if _config_path().is_file():
        saved = json.loads(_config_path().read_text())
    url = os.environ.get("DOCKYARD_REMOTE") or saved.get("url")
    token = os.environ.get("DOCKYARD_REMOTE_TOKEN") or saved.get("token")
    if not url or not token:
        raise DockyardError("not logged in: dockyard remote login URL")
    return httpx.Client(
        base_url=url.rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, read=None),
    )


def _call(method: str, path: str, **kwargs: Any) -> Any:
    from dockyard.errors import DockyardError

    with _client() as client:
        response = client.request(method, path, **kwargs)
    if response.status_code >= 400:
        try:
            message = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise DockyardError(f"{method} {path}: {response.status_code} {message}")
    return response.json() if response.content else None


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected K=V", param_hint=option)
        pairs[key] = value
    return pairs


@click.group()
def remote() -> None:
    """Use a dockyard CI server: repositories, runs, logs, secrets, agents."""


@remote.command()
@click.argument("url")
@click.option("--token", prompt=True, hide_input=True, help="An API token.")
def login(url: str, token: str) -> None:
    """Remember the server at URL and a token for it (checked first)."""
    import httpx

    from dockyard.errors import DockyardError
    from dockyard.registry.client.credentials import write_atomic

    response = httpx.get(
        url.rstrip("/") + "/api/v1/repos", headers={"Authorization": f"Bearer {token}"}
    )
    if response.status_code != 200:
        raise DockyardError(f"{url}: the token is refused ({response.status_code})")
    write_atomic(_config_path(), {"url": url, "token": token})
    click.echo(f"logged in to {url}")


@remote.group()
def repo() -> None:
    """Repositories the server builds."""


@repo.command("add")
@click.argument("name")
@click.argument("clone_url")
@click.option("--branch", default="main", show_default=True, help="The default branch.")
@click.option("--pipeline", default=".dockyard.yml", show_default=True, help="Its path.")
@click.option("--labels", metavar="K=V,...", help="Labels an agent must have.")
@click.option(
    "--webhook-secret-env",
    metavar="VAR",
    help="Read the webhook secret from this environment variable.",
)
def repo_add(
    name: str,
    clone_url: str,
    branch: str,
    pipeline: str,
    labels: str | None,
    webhook_secret_env: str | None,
) -> None:
    """Add repository NAME, cloned from CLONE_URL."""
    from dockyard.cli.service import parse_labels

    doc: dict[str, Any] = {
        "name": name,
        "clone_url": clone_url,
        "default_branch": branch,
        "pipeline_path": pipeline,
        "labels": parse_labels(labels),
    }
    if webhook_secret_env:
        doc["webhook_secret"] = os.environ.get(webhook_secret_env, "")
    _call("POST", "/repos", json=doc)
    click.echo(f"added {name}; its webhook: /api/v1/hooks/{name}")


@repo.command("ls")
def repo_ls() -> None:
    """List the repositories."""
    items = _call("GET", "/repos", params={"per_page": 100})["items"]
    print_table(
        [("NAME", "RUNS", "BRANCH", "LABELS", "CLONE URL")]
        + [
            (
                r["name"],
                r["runs"],
                r["default_branch"],
                ",".join(f"{k}={v}" for k, v in r["labels"].items()) or "-",
                r["clone_url"],
            )
            for r in items
        ]
    )


@remote.command()
@click.argument("repository")
@click.option("--branch", help="The branch [default: the repository's].")
@click.option("--commit", help="A commit id [default: the branch's head].")
@click.option("--env", "env", multiple=True, metavar="K=V", help="A variable for every step.")
def trigger(repository: str, branch: str | None, commit: str | None, env: tuple[str, ...]) -> None:
    """Queue a manual run of REPOSITORY; print its number."""
    doc = {"branch": branch, "commit": commit, "env": _pairs(env, "--env")}
    run = _call("POST", f"/repos/{repository}/runs", json=doc)
    click.echo(run["number"])


@remote.command()
@click.argument("repository")
@click.option("--page", type=click.IntRange(min=1), default=1)
def runs(repository: str, page: int) -> None:
    """List the runs of REPOSITORY, newest first."""
    items = _call("GET", f"/repos/{repository}/runs", params={"page": page})["items"]
    print_table(
        [("RUN", "STATUS", "EVENT", "BRANCH", "COMMIT", "AGENT", "CREATED")]
        + [
            (
                r["number"],
                r["status"],
                r["event"],
                r["branch"] or "-",
                (r["commit"] or "-")[:12],
                r["agent"] or "-",
                r["created"],
            )
            for r in items
        ]
    )


@remote.command()
@click.argument("repository")
@click.argument("number", type=int)
@click.argument("step", required=False)
@click.option("-f", "--follow", is_flag=True, help="Follow the log until the run ends.")
def logs(repository: str, number: int, step: str | None, follow: bool) -> None:
    """Print the log of run NUMBER of REPOSITORY (of STEP only, if given)."""
    path = f"/repos/{repository}/runs/{number}/logs"

    def show(lines: list[list[Any]]) -> None:
        for source, text, _note in lines:
            if step is None or source == step:
                click.echo(f"{source} | {text}" if step is None and source else text)

    if not follow:
        for chunk in _call("GET", path)["chunks"]:
            show(chunk["lines"])
        return
    last = None
    with _client() as client:
        while True:  # a dropped stream resumes after the last event it gave
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = last
            with client.stream("GET", path, headers=headers) as response:
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if line:
                        key, _, value = line.partition(": ")
                        event[key] = value
                        continue
                    if event.get("event") == "log":
                        last = event["id"]
                        show(json.loads(event["data"])["lines"])
                    elif event.get("event") == "end":
                        status = json.loads(event["data"])["status"]
                        click.echo(f"run {number}: {status}", err=True)
                        sys.exit(0 if status == "success" else 1)
                    event = {}


@remote.command()
@click.argument("repository")
@click.argument("number", type=int)
def cancel(repository: str, number: int) -> None:
    """Cancel run NUMBER of REPOSITORY."""
    _call("POST", f"/repos/{repository}/runs/{number}/cancel")
    click.echo(f"run {number}: cancel requested")


@remote.command()
@click.argument("repository")
@click.argument("number", type=int)
def restart(repository: str, number: int) -> None:
    """Run run NUMBER of REPOSITORY again, as a new run; print its number."""
    click.echo(_call("POST", f"/repos/{repository}/runs/{number}/restart")["number"])


@remote.command()
@click.option("--page", type=click.IntRange(min=1), default=1)
def queue(page: int) -> None:
    """List the queued runs of every repository, oldest first, and why each waits."""
    items = _call("GET", "/queue", params={"page": page})["items"]
    print_table(
        [("REPOSITORY", "RUN", "LABELS", "WAITING")]
        + [
            (
                r["repository"],
                r["number"],
                ",".join(f"{k}={v}" for k, v in r["labels"].items()) or "-",
                r["waiting"],
            )
            for r in items
        ]
    )


def _secrets_path(names: tuple[str, ...], global_: bool, named: bool) -> tuple[str, str]:
    """The API path of the secrets of the repository ``names`` starts with (none with
    ``--global``), and the secret's name that ends it if ``named``."""
    expected = (0 if global_ else 1) + named
    if len(names) != expected:
        words = ([] if global_ else ["REPOSITORY"]) + (["NAME"] if named else [])
        raise click.UsageError(f"expected {' '.join(words) or 'no argument'}")
    path = "/secrets" if global_ else f"/repos/{names[0]}/secrets"
    return path, names[-1] if named else ""


global_option = click.option(
    "--global", "global_", is_flag=True, help="A global secret (every repository's runs)."
)


@remote.group()
def secret() -> None:
    """Secrets of a repository, or global ones with --global (values are never shown)."""


@secret.command("set")
@click.argument("names", nargs=-1, required=True, metavar="[REPOSITORY] NAME")
@global_option
def secret_set(names: tuple[str, ...], global_: bool) -> None:
    """Set secret NAME of REPOSITORY (or global) to what standard input holds.

    One trailing newline is dropped. Read from standard input, the value is in no command line."""
    path, name = _secrets_path(names, global_, named=True)
    value = sys.stdin.read()
    value = value[:-1] if value.endswith("\n") else value
    _call("PUT", f"{path}/{name}", json={"value": value})


@secret.command("ls")
@click.argument("names", nargs=-1, metavar="[REPOSITORY]")
@global_option
def secret_ls(names: tuple[str, ...], global_: bool) -> None:
    """List the names of REPOSITORY's secrets (or the global ones)."""
    path, _ = _secrets_path(names, global_, named=False)
    for item in _call("GET", path)["items"]:
        click.echo(item["name"])


@secret.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="[REPOSITORY] NAME")
@global_option
def secret_rm(names: tuple[str, ...], global_: bool) -> None:
    """Delete secret NAME of REPOSITORY (or global)."""
    path, name = _secrets_path(names, global_, named=True)
    _call("DELETE", f"{path}/{name}")


@remote.group()
def cron() -> None:
    """A repository's cron schedules (five fields, UTC)."""


@cron.command("ls")
@click.argument("repository")
def cron_ls(repository: str) -> None:
    """List REPOSITORY's schedules and when each runs next."""
    items = _call("GET", f"/repos/{repository}/schedules")["items"]
    print_table(
        [("NAME", "SCHEDULE", "BRANCH", "NEXT RUN")]
        + [(s["name"], s["schedule"], s["branch"], s["next_run"]) for s in items]
    )


@cron.command("set")
@click.argument("repository")
@click.argument("name")
@click.argument("schedule")
@click.option("--branch", help="The branch to run [default: the repository's].")
def cron_set(repository: str, name: str, schedule: str, branch: str | None) -> None:
    """Run REPOSITORY at each time SCHEDULE names ("0 3 * * 1-5"); print the next."""
    doc = {"schedule": schedule, "branch": branch}
    click.echo(_call("PUT", f"/repos/{repository}/schedules/{name}", json=doc)["next_run"])


@cron.command("rm")
@click.argument("repository")
@click.argument("name")
def cron_rm(repository: str, name: str) -> None:
    """Delete schedule NAME of REPOSITORY."""
    _call("DELETE", f"/repos/{repository}/schedules/{name}")


@remote.group()
def token() -> None:
    """API tokens (admin): make, list, revoke."""


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["read", "write", "admin", "agent"]),
    default="read",
    show_default=True,
)
def token_create(name: str, role: str) -> None:
    """Make a token NAME of a role; print its value (shown this once only)."""
    click.echo(_call("POST", "/tokens", json={"name": name, "role": role})["token"])


@token.command("ls")
def token_ls() -> None:
    """List the tokens: id, name, role (never their values)."""
    items = _call("GET", "/tokens")["items"]
    print_table(
        [("ID", "NAME", "ROLE", "CREATED")]
        + [(t["id"], t["name"], t["role"], t["created"]) for t in items]
    )


@token.command("rm")
@click.argument("token_id", metavar="ID", type=int)
def token_rm(token_id: int) -> None:
    """Revoke token ID: refused from its next request on."""
    _call("DELETE", f"/tokens/{token_id}")


class _ApiUsers:
    """The users through the server's API (admin)."""

    def add(self, name: str, role: str, password: str) -> None:
        _call("POST", "/users", json={"name": name, "role": role, "password": password})

    def passwd(self, name: str, password: str) -> None:
        _call("PUT", f"/users/{name}/password", json={"password": password})

    def rm(self, name: str) -> None:
        _call("DELETE", f"/users/{name}")

    def ls(self) -> list[dict[str, str]]:
        return _call("GET", "/users")["items"]


remote.add_command(user_group(_ApiUsers))


@remote.command()
def agents() -> None:
    """List the agents, their labels and what they run."""
    items = _call("GET", "/agents")["items"]
    print_table(
        [("AGENT", "LABELS", "RUNNING", "CAPACITY", "LAST SEEN")]
        + [
            (
                a["name"],
                ",".join(f"{k}={v}" for k, v in a["labels"].items()) or "-",
                a["running"],
                a["capacity"],
                a["last_seen"],
            )
            for a in items
        ]
    )
