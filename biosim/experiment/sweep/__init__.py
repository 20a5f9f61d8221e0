"""Sweeps: many subjects or parameter sets of one experiment, in one call.

:mod:`~biosim.experiment.sweep.plan` expands a validated experiment and a set
of changes into runs with stable ids; :mod:`~biosim.experiment.sweep.execute`
runs them (a local Dask cluster, an existing scheduler, or one after another
in this process), resumably, and reports what happened.
"""

from .execute import (
    COMPLETE_MARKER,
    STAMP_FILE,
    SWEEP_FILE,
    WORKER_ENV,
    RunResult,
    SweepReport,
    run_state,
    run_sweep,
)
from .plan import SweepRun, apply_overrides, expand_sweep, spec_hash

__all__ = [
    "COMPLETE_MARKER",
    "STAMP_FILE",
    "SWEEP_FILE",
    "WORKER_ENV",
    "RunResult",
    "SweepReport",
    "SweepRun",
    "apply_overrides",
    "expand_sweep",
    "run_state",
    "run_sweep",
    "spec_hash",
]
