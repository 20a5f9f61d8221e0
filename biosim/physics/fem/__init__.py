"""Finite-element conductivity solver on tetrahedral meshes (P1/P2, isotropic or
tensor conductivity), shared by the EEG/MEG lead fields and TMS/TES.

Typical use: ``u = solve_potential(mesh, sigma, rhs)`` with a load from
:func:`divergence_rhs` (impressed currents, TMS) or :func:`boundary_current_rhs`
(injected currents, TES), then ``E = -element_field(mesh, u)``.  Gradients with
respect to the conductivities: :func:`make_differentiable_solve`.
"""

from .assembly import (
    FEMSpace,
    assemble_stiffness,
    fixed_ratio_conductivity,
    tissue_conductivity,
    volume_normalized_conductivity,
)
from .fields import (
    boundary_current_rhs,
    divergence_rhs,
    element_field,
    element_quadrature,
    interpolation_matrix,
    locate_points,
    recovered_nodal_field,
)
from .solve import DIRECT_LIMIT, FEMSolver, make_differentiable_solve, solve_potential

__all__ = [
    "DIRECT_LIMIT",
    "FEMSolver",
    "FEMSpace",
    "assemble_stiffness",
    "boundary_current_rhs",
    "divergence_rhs",
    "element_field",
    "element_quadrature",
    "fixed_ratio_conductivity",
    "interpolation_matrix",
    "locate_points",
    "make_differentiable_solve",
    "recovered_nodal_field",
    "solve_potential",
    "tissue_conductivity",
    "volume_normalized_conductivity",
]
