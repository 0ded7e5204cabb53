"""The API's OpenAPI description, made from its route table.

A path and method per route, its summary from the handler's docstring, the token it
needs.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Route

API = "/api/v1"
UNSIGNED = (API, API + "/openapi.json")  # the routes that need no token
SIGNED = API + "/hooks/"  # webhooks: a signature instead of a token


def openapi_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        summary, _, description = (inspect.getdoc(route.endpoint) or route.name).partition("\n\n")
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            operation: dict[str, Any] = {
                "operationId": f"{route.name}_{method.lower()}",
                "summary": " ".join(summary.split()),
                "parameters": [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in re.findall(r"{(\w+)(?::\w+)?}", route.path)
                ],
                "responses": {
                    "default": {"description": 'JSON; an error is {"error": "what went wrong"}'}
                },
            }
            if description:
                operation["description"] = " ".join(description.split())
            if route.path.startswith(SIGNED):
                operation["description"] = "Signed with X-Hub-Signature-256 (no token)."
            elif route.path not in UNSIGNED:
                operation["security"] = [{"token": []}]
            path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "dockyard CI server", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    }
