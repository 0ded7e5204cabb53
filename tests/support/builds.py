"""Directories written for a test: build contexts, pipeline projects."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Mapping
from pathlib import Path


def directory_with(tmp_path: Path, prefix: str, files: Mapping[str, str]) -> Path:
    """A new directory ``PREFIX-xxxxxx`` below ``tmp_path`` holding ``files`` (name: text)."""
    directory = tmp_path / f"{prefix}-{uuid.uuid4().hex[:6]}"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def context_with(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    """A build context: ``dockerfile`` (dedented) as its Dockerfile, and ``files``."""
    return directory_with(tmp_path, "ctx", {"Dockerfile": textwrap.dedent(dockerfile), **files})
