"""``--no-cache`` builds leave other images' cached builds as they were (issue 19)."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.builds import context_with

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="RUN steps need root"),
]


def test_a_no_cache_build_does_not_change_another_images_cached_digest(
    dockyard, busybox_ref, tmp_path
):
    """Two Dockerfiles share a RUN step whose output differs at each run; a --no-cache
    build of one must not replace the record the other's cached builds hit."""
    step = "RUN cat /proc/sys/kernel/random/uuid > /id"
    app = context_with(tmp_path, f"FROM {busybox_ref}\n{step}\nRUN echo app > /app\n")
    other = context_with(tmp_path, f"FROM {busybox_ref}\n{step}\nRUN echo other > /other\n")

    def digest(context, tag: str, *args: str) -> str:
        epoch = {"SOURCE_DATE_EPOCH": "1700000000"}  # the digest then depends on layers only
        dockyard("build", "-q", *args, "-t", tag, str(context), env=epoch)
        return json.loads(dockyard("inspect", tag).stdout)["Digest"]

    first = digest(app, "localhost/t/app:1")
    assert digest(app, "localhost/t/app:1") == first  # cached
    digest(other, "localhost/t/other:1", "--no-cache")  # a new /id layer
    assert digest(app, "localhost/t/app:1") == first  # still cached, same digest
