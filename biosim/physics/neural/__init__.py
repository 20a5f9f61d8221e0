"""Neural state models: bilinear/nonlinear DCM."""

from .bilinear import NeuralParams, effective_connectivity, neural_rhs

__all__ = ["NeuralParams", "effective_connectivity", "neural_rhs"]
