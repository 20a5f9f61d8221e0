"""MEG/EEG forward physics: sensors, the lead-field interface, and sphere,
BEM and FEM forward models."""

from .bem import BEMForward, BEMOperators
from .fem_leadfield import FEMForward
from .leadfield import ForwardModel, SphereForward, apply_moments, fixed_orientation
from .sensors import (
    EEGSensors,
    MEGSensors,
    axial_gradiometer,
    axial_system_275,
    magnetometer,
    opm,
    opm_array,
    planar_gradiometer,
    squid_helmet_306,
)
from .sphere_eeg import (
    SphereHead,
    berg_scherg_potential,
    eeg_gain,
    eeg_potential,
    fit_berg_parameters,
    homogeneous_sphere_potential,
)
from .sphere_meg import meg_gain, sarvas_field_matrix

__all__ = [
    "BEMForward",
    "BEMOperators",
    "FEMForward",
    "ForwardModel",
    "SphereForward",
    "apply_moments",
    "fixed_orientation",
    "EEGSensors",
    "MEGSensors",
    "axial_gradiometer",
    "axial_system_275",
    "magnetometer",
    "opm",
    "opm_array",
    "planar_gradiometer",
    "squid_helmet_306",
    "SphereHead",
    "berg_scherg_potential",
    "eeg_gain",
    "eeg_potential",
    "fit_berg_parameters",
    "homogeneous_sphere_potential",
    "meg_gain",
    "sarvas_field_matrix",
]
