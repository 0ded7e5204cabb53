"""Where pipeline runs keep their state under a store root, named once.

The pipeline runner (:mod:`dockyard.ci`) writes these directories; disk accounting
and prune (:mod:`dockyard.disk`) count and delete what is in them. Both import the
names from here, below either of them.
"""

from __future__ import annotations

from pathlib import Path

PIPELINE_RUNS_DIR = Path("ci") / "runs"
"""One directory per pipeline run (:mod:`dockyard.ci.runs`)."""

PIPELINE_HOLDS_DIR = Path("ci") / "holds"
"""The flock holds of live runs: a held run is never pruned."""

PIPELINE_CACHE_DIR = Path("ci") / "cache"
"""Pipeline caches kept between runs (:mod:`dockyard.ci.caches`)."""
