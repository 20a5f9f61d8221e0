"""Floating-point precision policy.

Policy
------
Importing :mod:`biosim` enables JAX's 64-bit mode (``jax_enable_x64``) because
boundary-element, finite-element, sphere-series and variational-Laplace
computations lose accuracy in float32.  Set the environment variable
``BIOSIM_X64=0`` *before* importing biosim to opt out (for example to run
float32 on an accelerator).  Solvers that need float64 call
:func:`require_float64`, which warns (or raises with ``strict=True``) when x64
is disabled, so accuracy is never lost silently.
"""

from __future__ import annotations

import os
import warnings

import jax

from .errors import PrecisionError, PrecisionWarning

_ENV_VAR = "BIOSIM_X64"


def _env_wants_x64() -> bool:
    value = os.environ.get(_ENV_VAR, "1").strip().lower()
    return value not in {"0", "false", "no", "off"}


def apply_default_policy() -> None:
    """Enable float64 in JAX unless ``BIOSIM_X64=0`` is set."""
    if _env_wants_x64():
        jax.config.update("jax_enable_x64", True)


def x64_enabled() -> bool:
    """Return True when JAX creates float64 arrays by default."""
    return bool(jax.config.read("jax_enable_x64"))


def set_precision(precision: str) -> None:
    """Switch JAX precision at run time.

    Parameters
    ----------
    precision : {"float64", "float32"}
        Default floating-point width for new arrays.  Functions already
        jit-compiled keep the precision they were traced with.
    """
    if precision not in ("float64", "float32"):
        raise ValueError(
            f"precision={precision!r} is not supported; expected 'float64' or 'float32'"
        )
    jax.config.update("jax_enable_x64", precision == "float64")


def require_float64(what: str, strict: bool = False) -> None:
    """Warn (or raise) when a float64-only computation runs in float32.

    Parameters
    ----------
    what : str
        Name of the computation, used in the message.
    strict : bool
        Raise :class:`PrecisionError` instead of warning.
    """
    if x64_enabled():
        return
    msg = (
        f"{what} needs float64 for its stated accuracy, but jax_enable_x64 is off "
        f"({_ENV_VAR}=0 or set_precision('float32')); results may lose several digits"
    )
    if strict:
        raise PrecisionError(msg)
    warnings.warn(msg, PrecisionWarning, stacklevel=3)
