"""Ultrasound propagation: k-space pseudospectral solver, media, transducers.

Public API
----------
Grid, Medium, WATER, db_to_neper
    Computational grid (PML inside) and acoustic medium (SI units; attenuation
    alpha0 in dB / (MHz^y cm)).
cw_settings, simulate_cw, CWSettings, CWField
    Continuous-wave steady state of a transducer in a medium (time-domain
    k-space solver, differentiable).
Transducer, bowl, piston, linear_array, point_source, combine, source_map,
sample_points, element_centres, focus_phases, oneil_on_axis
    Off-grid band-limited sources and O'Neil's focused-bowl solution.
rayleigh_cw
    Continuous-wave field of a 3D transducer in a homogeneous medium (Rayleigh
    sum, no grid), validated against the exact on-axis integrals.
time_reversal_phases, optimise_phases, focal_pressure, PhaseCorrection
    Aberration correction of phased arrays (phase conjugation, gradient ascent).
"""

from .aberration import PhaseCorrection, focal_pressure, optimise_phases, time_reversal_phases
from .medium import WATER, Grid, Medium, db_to_neper
from .rayleigh import rayleigh_cw
from .solver import CWField, CWSettings, cw_settings, simulate_cw, source_term_grid
from .sources import (
    Transducer,
    bowl,
    combine,
    element_centres,
    focus_phases,
    linear_array,
    oneil_on_axis,
    piston,
    point_source,
    sample_points,
    source_map,
)

__all__ = [
    "rayleigh_cw",
    "PhaseCorrection",
    "focal_pressure",
    "optimise_phases",
    "time_reversal_phases",
    "CWField",
    "CWSettings",
    "Grid",
    "Medium",
    "Transducer",
    "WATER",
    "bowl",
    "combine",
    "cw_settings",
    "db_to_neper",
    "element_centres",
    "focus_phases",
    "linear_array",
    "oneil_on_axis",
    "piston",
    "point_source",
    "sample_points",
    "simulate_cw",
    "source_map",
    "source_term_grid",
]
