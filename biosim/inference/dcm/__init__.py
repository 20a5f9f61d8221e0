"""Dynamic causal modelling: DCM for fMRI (bilinear, SPM12-equivalent option),
DCM for ERP (SPM's neural mass through lead fields), the joint EEG-fMRI DCM,
variational Laplace, model comparison and reduction (and NUTS posterior checks
in :mod:`.sampling`, optional)."""

from .comparison import (
    bayesian_model_average,
    family_probabilities,
    model_probabilities,
    reduce_model,
)
from .erp import (
    ERPResult,
    ERPStructure,
    dipole_moments,
    fit_erp,
    predict_eeg,
    region_lead_field,
    simulate_erp,
    source_signals,
    spatial_modes,
)
from .fit import DCMResult, fit_dcm, simulate_dcm, spm_prepare_data
from .joint import (
    JointResult,
    JointStructure,
    fit_joint,
    neuronal_drive,
    predict_joint,
    simulate_joint,
)
from .model import DCMStructure, predict_bold, predict_bold_and_jacobian
from .variational_laplace import VLResult, invert

__all__ = [
    "bayesian_model_average",
    "family_probabilities",
    "model_probabilities",
    "reduce_model",
    "DCMResult",
    "fit_dcm",
    "simulate_dcm",
    "spm_prepare_data",
    "DCMStructure",
    "predict_bold",
    "predict_bold_and_jacobian",
    "VLResult",
    "invert",
    "ERPResult",
    "ERPStructure",
    "dipole_moments",
    "fit_erp",
    "predict_eeg",
    "region_lead_field",
    "simulate_erp",
    "source_signals",
    "spatial_modes",
    "JointResult",
    "JointStructure",
    "fit_joint",
    "neuronal_drive",
    "predict_joint",
    "simulate_joint",
]
