"""Neurovascular coupling: Balloon-Windkessel hemodynamics, BOLD signal
models, time integration and canonical hemodynamic response functions."""

from .balloon import BalloonParams, balloon_rhs, resting_state, steady_state
from .bold import BOLDParams, bold_from_states, bold_signal
from .hrf import (
    SPM_BASIS_SETS,
    convolve_kernels,
    event_boxcar,
    hrf_kernels,
    hrf_time_grid,
    nilearn_glover_hrf,
    nilearn_spm_hrf,
    sample_at,
    spm_basis_functions,
    spm_hrf,
    spm_orth,
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
    "hrf_kernels",
    "hrf_time_grid",
    "nilearn_glover_hrf",
    "nilearn_spm_hrf",
    "sample_at",
    "SPM_BASIS_SETS",
    "spm_basis_functions",
    "spm_hrf",
    "spm_orth",
    "HemodynamicResponse",
    "integrate_balloon",
    "simulate_bold",
]
