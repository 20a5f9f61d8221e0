"""Neural state models: bilinear/nonlinear DCM, ERP neural mass, whole-brain linear network."""

from .bilinear import NeuralParams, effective_connectivity, neural_rhs

__all__ = ["NeuralParams", "effective_connectivity", "neural_rhs"]

from .neural_mass import (  # noqa: E402
    ERPParams,
    erp_rhs,
    event_related_activity,
    gaussian_input,
    integrate_erp,
    integrate_erp_spm,
    simulate_neural_mass,
)

__all__ += [
    "ERPParams",
    "erp_rhs",
    "event_related_activity",
    "gaussian_input",
    "integrate_erp",
    "integrate_erp_spm",
    "simulate_neural_mass",
]

from .network import (  # noqa: E402
    NetworkParams,
    distance_connectivity,
    network_matrices,
    network_response,
    read_connectivity,
    simulate_network,
    stationary_covariance,
)

__all__ += [
    "NetworkParams",
    "distance_connectivity",
    "network_matrices",
    "network_response",
    "read_connectivity",
    "simulate_network",
    "stationary_covariance",
]
