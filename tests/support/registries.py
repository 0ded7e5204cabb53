"""Repositories of a fresh name in the session registry."""

from __future__ import annotations

import uuid


def unique_repo(registry, name: str = "img") -> str:
    return f"{registry.host}/t{uuid.uuid4().hex[:8]}/{name}"
