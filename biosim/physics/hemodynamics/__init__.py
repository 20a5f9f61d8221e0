"""Neurovascular coupling: Balloon-Windkessel hemodynamics, BOLD signal
models, time integration and canonical hemodynamic response functions."""

from .balloon import BalloonParams, balloon_rhs, resting_state, steady_state
from .bold import BOLDParams, bold_from_states, bold_signal
from .hrf import (
    convolve_kernels,
    event_boxcar,
    glover_hrf,
    hrf_kernels,
    hrf_time_grid,
    sample_at,
    spm_hrf,
)
from .integrate import HemodynamicResponse, integrate_balloon, simulate_bold

__all__ = [
    "BalloonParams",
    "balloon_rhs",
    "resting_state",
    "steady_state",
    "BOLDParams",
    "bold_from_states",
    "bold_signal",
    "event_boxcar",
    "convolve_kernels",
    "glover_hrf",
    "hrf_kernels",
    "hrf_time_grid",
    "sample_at",
    "spm_hrf",
    "HemodynamicResponse",
    "integrate_balloon",
    "simulate_bold",
]
