"""Foundations shared by every layer: precision, errors, validation, pytrees,
units and progress.  Nothing here imports from the rest of biosim."""

from .errors import (
    BiosimError,
    ConvergenceError,
    GeometryError,
    ParameterError,
    PrecisionError,
    PrecisionWarning,
    ShapeError,
    SpecError,
)
from .precision import require_float64, set_precision, x64_enabled
from .pytree import pytree_dataclass, replace, static_field

__all__ = [
    "BiosimError",
    "ConvergenceError",
    "GeometryError",
    "ParameterError",
    "PrecisionError",
    "PrecisionWarning",
    "ShapeError",
    "SpecError",
    "require_float64",
    "set_precision",
    "x64_enabled",
    "pytree_dataclass",
    "replace",
    "static_field",
]
