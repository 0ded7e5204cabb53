"""Build contexts written for a test."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path


def context_with(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    context = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    context.mkdir()
    (context / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, text in files.items():
        (context / name).write_text(text)
    return context
