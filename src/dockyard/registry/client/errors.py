"""Turning a registry's error answer into one clear :class:`RegistryError` line.

Registries answer failures with ``{"errors": [{"code", "message", "detail"}]}`` (the
distribution spec); proxies and load balancers answer with anything at all.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import httpx

from dockyard.errors import AuthError, RegistryError, RegistryNotFound
from dockyard.registry.client.retry import describe


def parse_error_body(body: bytes) -> list[tuple[str, str]]:
    """The ``(code, message)`` pairs of an OCI error body; empty if it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    out = []
    for entry in errors:
        if isinstance(entry, dict):
            code = entry.get("code")
            message = entry.get("message")
            out.append(
                (
                    code if isinstance(code, str) else "",
                    message if isinstance(message, str) else "",
                )
            )
    return out


def response_error(host: str, what: str, status: int, body: bytes = b"") -> RegistryError:
    """The error for a failed answer.

    For example ``registry h:5000: manifest unknown: library/foo:1 (404 MANIFEST_UNKNOWN)``.

    401 and 403 give an :class:`AuthError`, 404 a :class:`RegistryNotFound` (which
    generic code catches as :class:`~dockyard.errors.NotFound`).
    """
    errors = parse_error_body(body)
    code = next((c for c, _ in errors if c), None)
    messages = [m or c.lower().replace("_", " ") for c, m in errors if m or c]
    if messages:
        summary = "; ".join(dict.fromkeys(messages))
    else:
        try:
            summary = HTTPStatus(status).phrase.lower()
        except ValueError:
            summary = "unexpected answer"
    tail = f"{status} {code}" if code else str(status)
    cls = {401: AuthError, 403: AuthError, 404: RegistryNotFound}.get(status, RegistryError)
    return cls(f"registry {host}: {summary}: {what} ({tail})", status, code)


def transport_error(
    host: str, what: str, error: httpx.TransportError, tries: int = 1
) -> RegistryError:
    """The error for a registry we could not talk to, after ``tries`` tries."""
    after = f" ({tries} tries)" if tries > 1 else ""
    return RegistryError(f"registry {host}: {describe(error)}{after}: {what}")
