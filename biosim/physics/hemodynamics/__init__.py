"""Neurovascular coupling: Balloon-Windkessel hemodynamics, BOLD signal
models and canonical hemodynamic response functions."""

from .balloon import BalloonParams, balloon_rhs, resting_state, steady_state
from .bold import BOLDParams, bold_from_states, bold_signal

__all__ = ["BalloonParams", "balloon_rhs", "resting_state", "steady_state",
           "BOLDParams", "bold_from_states", "bold_signal"]
