"""Dynamic causal modelling for fMRI: generative model, variational Laplace,
model comparison and reduction."""

from .comparison import (bayesian_model_average, family_probabilities, model_probabilities,
                         reduce_model)
from .fit import DCMResult, fit_dcm, simulate_dcm
from .model import DCMStructure, predict_bold
from .variational_laplace import VLResult, invert

__all__ = ["bayesian_model_average", "family_probabilities", "model_probabilities", "reduce_model",
           "DCMResult", "fit_dcm", "simulate_dcm", "DCMStructure", "predict_bold", "VLResult",
           "invert"]

from .erp import (ERPResult, ERPStructure, dipole_moments, fit_erp, predict_eeg,  # noqa: E402
                  region_lead_field, simulate_erp, source_signals, spatial_modes)

__all__ += ["ERPResult", "ERPStructure", "dipole_moments", "fit_erp", "predict_eeg",
            "region_lead_field", "simulate_erp", "source_signals", "spatial_modes"]

from .joint import (JointResult, JointStructure, fit_joint, neuronal_drive,  # noqa: E402
                    predict_joint, simulate_joint)

__all__ += ["JointResult", "JointStructure", "fit_joint", "neuronal_drive", "predict_joint",
            "simulate_joint"]
