"""``POST /hooks/{repo}``: signed webhooks from forges (:mod:`..webhooks`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import queue, webhooks
from dockyard.service.api.common import (
    APIError,
    find_repository,
    in_thread,
    read_body,
    run_json,
    service,
)
from dockyard.service.secrets import webhook_context


async def webhook(request: Request) -> Response:
    """A push from a forge; 401 and nothing queued unless its signature is right."""
    body = await read_body(request, webhooks.MAX_PAYLOAD)
    headers = {k.lower(): v for k, v in request.headers.items()}
    svc = service(request)

    def work() -> tuple[int, dict[str, Any]]:
        with svc.db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            if repository.webhook_secret is None:
                raise APIError(401, "this repository has no webhook secret")
            secret = svc.box.open(repository.webhook_secret, webhook_context(repository.id))
            if not webhooks.signature_valid(secret, body, headers):
                raise APIError(401, "bad or missing webhook signature")
            try:
                event = webhooks.event_name(headers)
                if event == "ping":
                    return 200, {"queued": None}
                push = webhooks.parse(event, body)
            except webhooks.WebhookError as e:
                raise APIError(400, str(e)) from None
            if push is None:
                return 200, {"queued": None}
            run = queue.enqueue(
                session,
                repository,
                event=push.event,
                branch=push.ref_name,
                commit=push.commit,
                ref=push.ref,
                fork=push.fork,
                author=push.author,
                message=push.message,
            )
            return 201, {"queued": run_json(session, run)}

    status, doc = await in_thread(work)
    svc.work.notify()
    return JSONResponse(doc, status)
