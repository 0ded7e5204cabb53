"""Push webhooks in GitHub's format, verified by their HMAC-SHA256 signature first.

Gitea and Forgejo send the same format. Nothing in a webhook is believed before its
signature is checked.

``X-Hub-Signature-256: sha256=<hex>`` is the HMAC of the raw body under the
repository's webhook secret, compared in constant time; Gitea's ``X-Gitea-Signature``
(the bare hex) is accepted too. A push to a branch becomes a ``push`` run, to a tag a
``tag`` run; a pull request opened, reopened or pushed to (``synchronize``) a
``pull_request`` run of its head commit, marked as from a fork when its head lives in
another repository. A deleted ref, another pull request action or a ping queues nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

MAX_PAYLOAD = 5 << 20  # GitHub caps its payloads at 25 MB, but pushes are far smaller
ZERO_SHA = "0" * 40


class WebhookError(Exception):
    """A payload that cannot be used; the message says why."""


def signature_valid(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Whether the request carries the right signature of ``body``."""
    given = headers.get("x-hub-signature-256", "")
    if given.startswith("sha256="):
        given = given[len("sha256=") :]
    else:
        given = headers.get("x-gitea-signature", "") or headers.get("x-forgejo-signature", "")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return bool(given) and hmac.compare_digest(given.strip().lower(), expected)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body`` (what a forge sends)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


PR_ACTIONS = ("opened", "reopened", "synchronize", "synchronized")  # Gitea: synchronized


@dataclass
class Push:
    """What a run is made from: a push, a tag or a pull request's head."""

    event: str  # push | tag | pull_request
    ref_name: str  # branch or tag (for a pull request: its target branch)
    commit: str
    author: str
    message: str
    ref: str  # the ref to fetch the commit by, if a fetch by id is refused
    fork: bool = False


def event_name(headers: dict[str, str]) -> str:
    for header in ("x-github-event", "x-gitea-event", "x-forgejo-event"):
        if headers.get(header):
            return headers[header]
    raise WebhookError("no X-GitHub-Event (or X-Gitea-Event) header")


def _document(body: bytes) -> dict:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WebhookError(f"payload is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise WebhookError("payload is not a JSON object")
    return doc


def _commit_id(value: object, name: str) -> str:
    if not (
        isinstance(value, str)
        and 40 <= len(value) <= 64
        and all(c in "0123456789abcdef" for c in value)
    ):
        raise WebhookError(f"{name!r} is not a commit id: {str(value)[:80]!r}")
    return value


def _object(doc: dict, *path: str) -> dict:
    for key in path:
        value = doc.get(key)
        doc = value if isinstance(value, dict) else {}
    return doc


def parse(event: str, body: bytes) -> Push | None:
    """The run a ``push`` or ``pull_request`` payload asks for, or None for none."""
    if event == "push":
        return parse_push(body)
    if event == "pull_request":
        return parse_pull_request(body)
    raise WebhookError(f"unsupported event {event[:50]!r}")


def parse_pull_request(body: bytes) -> Push | None:
    doc = _document(body)
    if doc.get("action") not in PR_ACTIONS:
        return None
    pr = _object(doc, "pull_request")
    number = doc.get("number", pr.get("number"))
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise WebhookError("pull request payload without a 'number'")
    head, base = _object(pr, "head"), _object(pr, "base")
    commit = _commit_id(head.get("sha"), "pull_request.head.sha")
    target = base.get("ref")
    if not isinstance(target, str) or not target:
        raise WebhookError("pull request payload without 'pull_request.base.ref'")
    head_repo = _object(head, "repo").get("full_name")
    base_repo = _object(base, "repo").get("full_name")
    fork = bool(_object(head, "repo").get("fork")) or head_repo != base_repo
    author = _object(pr, "user").get("login") or ""
    title = pr.get("title") or ""
    return Push(
        "pull_request",
        target[:255],
        commit,
        str(author)[:255],
        str(title)[:10_000],
        ref=f"refs/pull/{number}/head",
        fork=fork,
    )


def parse_push(body: bytes) -> Push | None:
    """The push a payload describes, or None for a deleted ref."""
    doc = _document(body)
    ref, after = doc.get("ref"), doc.get("after")
    if not isinstance(ref, str) or not isinstance(after, str):
        raise WebhookError("push payload without 'ref' and 'after'")
    if doc.get("deleted") or after == ZERO_SHA:
        return None
    _commit_id(after, "after")
    if ref.startswith("refs/heads/"):
        event, name = "push", ref[len("refs/heads/") :]
    elif ref.startswith("refs/tags/"):
        event, name = "tag", ref[len("refs/tags/") :]
    else:
        raise WebhookError(f"'ref' is neither a branch nor a tag: {ref[:200]!r}")
    head, pusher = _object(doc, "head_commit"), _object(doc, "pusher")
    author = _object(head, "author")
    who = author.get("name") or pusher.get("name") or ""
    message = head.get("message") or ""
    return Push(event, name[:255], after, str(who)[:255], str(message)[:10_000], ref=ref[:255])
