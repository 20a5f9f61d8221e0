"""Argument checks that give clear errors and are no-ops under ``jax.jit``.

Checks run on concrete values (Python numbers, NumPy arrays, concrete JAX
arrays).  Inside a traced function the values are abstract; the checks then
do nothing so that the same public function can be jit-compiled and
differentiated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ParameterError, ShapeError


def is_concrete(value: Any) -> bool:
    """True when ``value`` holds concrete numbers (not a JAX tracer)."""
    import jax

    leaves = jax.tree_util.tree_leaves(value)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def _as_array(value: Any):
    return np.asarray(value, dtype=float)


def check_finite(name: str, value: Any) -> None:
    """Raise :class:`ParameterError` if ``value`` contains NaN or infinity."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):  # lists of numbers, booleans
        arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        shown = arr.tolist() if arr.size <= 8 else f"array with {bad} non-finite value(s)"
        raise ParameterError(name, shown, "finite numbers (no NaN or inf)")


def check_positive(name: str, value: Any, unit: str = "") -> None:
    """Raise unless every element of ``value`` is finite and > 0."""
    if not is_concrete(value):
        return
    check_finite(name, value)
    arr = _as_array(value)
    if np.any(arr <= 0):
        shown = arr.item() if arr.ndim == 0 else f"array with min {arr.min():g}"
        raise ParameterError(name, shown, f"a positive value{(' in ' + unit) if unit else ''}")


def check_nonnegative(name: str, value: Any, unit: str = "") -> None:
    """Raise unless every element of ``value`` is finite and >= 0."""
    if not is_concrete(value):
        return
    check_finite(name, value)
    arr = _as_array(value)
    if np.any(arr < 0):
        shown = arr.item() if arr.ndim == 0 else f"array with min {arr.min():g}"
        raise ParameterError(name, shown, f"a non-negative value{(' in ' + unit) if unit else ''}")


def check_range(
    name: str, value: Any, low: float, high: float, unit: str = "", inclusive: bool = True
) -> None:
    """Raise unless ``low <= value <= high`` (or strict when not inclusive)."""
    if not is_concrete(value):
        return
    check_finite(name, value)
    arr = _as_array(value)
    ok = (arr >= low) & (arr <= high) if inclusive else (arr > low) & (arr < high)
    if not np.all(ok):
        shown = arr.item() if arr.ndim == 0 else f"array in [{arr.min():g}, {arr.max():g}]"
        brackets = "[]" if inclusive else "()"
        raise ParameterError(
            name,
            shown,
            f"a value in {brackets[0]}{low:g}, {high:g}{brackets[1]}{(' ' + unit) if unit else ''}",
        )


def check_shape(name: str, value: Any, shape: tuple) -> None:
    """Raise :class:`ShapeError` unless ``value.shape`` matches ``shape``.

    ``None`` in ``shape`` matches any length on that axis.
    """
    actual = tuple(np.shape(value))
    if len(actual) != len(shape) or any(s is not None and s != a for s, a in zip(shape, actual)):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(name, f"array of shape {actual}", f"shape {want}")


def check_all_finite(**arrays: Any) -> None:
    """:func:`check_finite` on each keyword argument (``None`` is skipped), named by
    its keyword: ``check_all_finite(m0=m0, flip_angle=flip_angle)``."""
    for name, value in arrays.items():
        if value is not None:
            check_finite(name, value)
