"""Checking out the exact commit a run is for, with git, into a fresh directory.

Only the one commit is fetched when the server allows it (``--depth 1`` by id);
otherwise the ref the run came from (a branch, a tag, ``refs/pull/N/head``), or else
every branch and tag, is fetched and the commit taken from it. A run
without a commit (a manual run of a branch) takes the branch's head, and says which.
git never prompts, reads no system config and speaks only the protocols listed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from dockyard.errors import DockyardError

GIT_TIMEOUT = 600.0
PROTOCOLS = "file:git:http:https:ssh"


class CheckoutError(DockyardError):
    """git could not fetch or check out what the run names."""


def checkout(
    url: str,
    branch: str | None,
    commit: str | None,
    into: Path,
    note: Callable[[str], None],
    ref: str | None = None,
) -> str:
    """Fill ``into`` (new) with the commit's tree; return the commit id."""
    if url.startswith("-"):
        raise CheckoutError(f"clone URL {url[:100]!r} looks like an option")
    into.mkdir(parents=True)
    _git(["init", "-q", str(into)], None)
    if commit:
        note(f"fetching {commit} from {url}")
        try:
            _git(["fetch", "-q", "--depth=1", url, commit], into)
        except CheckoutError:
            wanted = (
                [f"+{ref}:refs/dockyard/fetched"]
                if ref
                else ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
            )
            _git(["fetch", "-q", url, *wanted], into)
    else:
        if not branch:
            raise CheckoutError("a run needs a branch or a commit")
        note(f"fetching branch {branch} from {url}")
        _git(["fetch", "-q", "--depth=1", url, f"refs/heads/{branch}"], into)
        commit = _git(["rev-parse", "FETCH_HEAD"], into).strip()
    _git(["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit, "--"], into)
    return commit


def _git(args: list[str], cwd: Path | None) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ALLOW_PROTOCOL": PROTOCOLS,
        "LC_ALL": "C",
    }
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise CheckoutError(f"git {args[0]}: no answer in {GIT_TIMEOUT:g}s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise CheckoutError(f"git {args[0]}: {detail}")
    return done.stdout
