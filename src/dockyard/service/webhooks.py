"""Push webhooks in GitHub's format (Gitea and Forgejo send the same), verified by
their HMAC-SHA256 signature before anything in them is believed.

``X-Hub-Signature-256: sha256=<hex>`` is the HMAC of the raw body under the
repository's webhook secret, compared in constant time; Gitea's ``X-Gitea-Signature``
(the bare hex) is accepted too. A push to a branch becomes a ``push`` run, to a tag a
``tag`` run; a deleted ref or a ping queues nothing.
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


@dataclass
class Push:
    event: str  # push | tag
    ref_name: str  # branch or tag
    commit: str
    author: str
    message: str


def event_name(headers: dict[str, str]) -> str:
    for header in ("x-github-event", "x-gitea-event", "x-forgejo-event"):
        if headers.get(header):
            return headers[header]
    raise WebhookError("no X-GitHub-Event (or X-Gitea-Event) header")


def parse_push(body: bytes) -> Push | None:
    """The push a payload describes, or None for a deleted ref."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WebhookError(f"payload is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise WebhookError("payload is not a JSON object")
    ref, after = doc.get("ref"), doc.get("after")
    if not isinstance(ref, str) or not isinstance(after, str):
        raise WebhookError("push payload without 'ref' and 'after'")
    if doc.get("deleted") or after == ZERO_SHA:
        return None
    if not (40 <= len(after) <= 64 and all(c in "0123456789abcdef" for c in after)):
        raise WebhookError(f"'after' is not a commit id: {after[:80]!r}")
    if ref.startswith("refs/heads/"):
        event, name = "push", ref[len("refs/heads/") :]
    elif ref.startswith("refs/tags/"):
        event, name = "tag", ref[len("refs/tags/") :]
    else:
        raise WebhookError(f"'ref' is neither a branch nor a tag: {ref[:200]!r}")
    head = doc.get("head_commit") if isinstance(doc.get("head_commit"), dict) else {}
    author = head.get("author") if isinstance(head.get("author"), dict) else {}
    pusher = doc.get("pusher") if isinstance(doc.get("pusher"), dict) else {}
    who = author.get("name") or pusher.get("name") or ""
    message = head.get("message") or ""
    return Push(event, name, after, str(who)[:255], str(message)[:10_000])
