"""The Dockerfile frontend: text in, a validated stage graph out (nothing runs here).

``plan_build(text, build_args=..., target=...)`` parses a Dockerfile (:mod:`.parser`),
types its instructions (:mod:`.parse` into :mod:`.commands`; ``RUN --mount`` in
:mod:`.runmount`) and builds the stage graph (:mod:`.stages`); the builder then walks
``plan.order`` (or ``plan.levels``) and, per stage, feeds each instruction through
``StageScope.apply`` to get it expanded exactly as docker would. :mod:`.dockerignore`
decides which context files a build sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard import lazy

if TYPE_CHECKING:
    from dockyard.builder.frontend.dockerignore import IgnoreMatcher
    from dockyard.builder.frontend.parser import BuildWarning, Dockerfile, parse
    from dockyard.builder.frontend.platforms import Platform
    from dockyard.builder.frontend.stages import BuildPlan, Stage, StageScope, plan_build

# Imported on first use: code that needs one submodule (``container commit`` reads
# ``--change`` through the instruction parser) should not load the whole frontend.
_WHERE = {
    "IgnoreMatcher": "dockerignore",
    **dict.fromkeys(["BuildWarning", "Dockerfile", "parse"], "parser"),
    "Platform": "platforms",
    **dict.fromkeys(["BuildPlan", "Stage", "StageScope", "plan_build"], "stages"),
}

__all__ = [
    "BuildPlan",
    "BuildWarning",
    "Dockerfile",
    "IgnoreMatcher",
    "Platform",
    "Stage",
    "StageScope",
    "parse",
    "plan_build",
]

__getattr__ = lazy.exports(__name__, _WHERE)
