"""Container-native pipelines, run locally with dockyard's own runtime.

::

    from dockyard.ci import RunOptions, load_pipeline, run_pipeline

    pipeline = load_pipeline(".dockyard.yml")  # PipelineError names file:line: field
    result = run_pipeline(pipeline, RunOptions(secrets={"TOKEN": "..."}, branch="main"))
    print(result.status, [(s.name, s.status, s.tests) for s in result.steps])

Steps share one workspace (a copy of the pipeline's directory, at ``/workspace``),
services share the steps' network namespace (outbound NAT, never the host's), image
builds run in-process and their images are the run's own, caches persist in the
store, secrets are masked in all output, logs are written as they come.

- :mod:`.pipeline`: the file's schema and validation (:mod:`dockyard.yamlmarks` for lines,
  :mod:`.variables` for ``${NAME}``, :mod:`.matrix` for ``matrix:``);
- :mod:`.graph`: step order, hooks, what a failure skips;
- :mod:`.runner`: a whole run; :mod:`.steps` and :mod:`.services` its parts;
- :mod:`.masking`, :mod:`.output`: secret masking and per-step logs;
- :mod:`.junit`, :mod:`.workspace`, :mod:`.caches`: reports, artifacts, caches;
- :mod:`.runs`: run directories and records in the store; :mod:`.prune` deletes old
  ones and unused caches.
"""

from dockyard.ci.pipeline import Pipeline, PipelineError, load_pipeline
from dockyard.ci.results import Events, RunResult, StepResult
from dockyard.ci.runner import RunError, RunOptions, run_pipeline
from dockyard.ci.runs import RunDir, run_ids

__all__ = [
    "Events",
    "Pipeline",
    "PipelineError",
    "RunDir",
    "RunError",
    "RunOptions",
    "RunResult",
    "StepResult",
    "load_pipeline",
    "run_ids",
    "run_pipeline",
]
