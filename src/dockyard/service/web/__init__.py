"""The web UI of ``dockyard server``: pages rendered on the server with Jinja2.

A little vanilla JavaScript (``static/app.js``: buttons, the live log) and CSS are
shipped as package data, so nothing is built and nothing else is served.

Pages: ``/`` repositories, ``/repos/R`` its runs, ``/repos/R/runs/N`` a run,
``.../log?step=S`` a step's live log, tail first (``.../log/lines`` earlier lines as
JSON, ``.../log.txt`` raw), ``/agents``, ``/secrets`` (admin); ``/login`` and
``/logout``. Buttons call the REST API with the session cookie and its CSRF value
(:mod:`..sessions`). Every response of the server carries :data:`SECURITY_HEADERS`: a
Content-Security-Policy without inline scripts or styles, no framing, no sniffing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


def web_routes() -> list[BaseRoute]:
    from dockyard.service.web import pages, secretspage  # they need the API, which needs this

    run = "/repos/{repo}/runs/{number}"
    return [
        Route("/", pages.repositories),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/agents", pages.agents),
        Route("/secrets", secretspage.secrets_page, methods=["GET"]),
        Route("/secrets", secretspage.set_secret_form, methods=["POST"]),
        Route("/secrets/delete", secretspage.delete_secret_form, methods=["POST"]),
        Route("/repos/{repo}", pages.runs),
        Route(run, pages.run),
        Route(run + "/log", pages.log),
        Route(run + "/log/lines", pages.log_lines),
        Route(run + "/log.txt", pages.raw_log),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response that does not set its own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
