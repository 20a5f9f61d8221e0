"""biosim: differentiable physics simulation of measuring and stimulating the
human brain, on JAX.

Importing biosim enables JAX float64 (see :mod:`biosim._core.precision`; opt
out with ``BIOSIM_X64=0``).  Subpackages are imported on demand::

    from biosim.physics.hemodynamics import balloon
"""

from ._core.precision import apply_default_policy as _apply_default_policy

_apply_default_policy()

from ._core import (  # noqa: E402
    BiosimError,
    ConvergenceError,
    GeometryError,
    ParameterError,
    SpecError,
    set_precision,
    x64_enabled,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BiosimError",
    "ConvergenceError",
    "GeometryError",
    "ParameterError",
    "SpecError",
    "set_precision",
    "x64_enabled",
]
