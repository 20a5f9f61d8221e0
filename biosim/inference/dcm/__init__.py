"""Dynamic causal modelling for fMRI: generative model, variational Laplace,
model comparison and reduction."""

from .comparison import (bayesian_model_average, family_probabilities, model_probabilities,
                         reduce_model)
from .fit import DCMResult, fit_dcm, simulate_dcm, spm_prepare_data
from .model import DCMStructure, predict_bold
from .variational_laplace import VLResult, invert

__all__ = ["bayesian_model_average", "family_probabilities", "model_probabilities", "reduce_model",
           "DCMResult", "fit_dcm", "simulate_dcm", "spm_prepare_data", "DCMStructure",
           "predict_bold", "VLResult", "invert"]
