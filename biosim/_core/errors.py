"""Exception and warning types shared by all biosim modules.

Every error raised for bad user input names the argument, the offending value
and what was expected, e.g.
``ParameterError("TE", 0.05, "less than TR = 0.03 s")`` renders as
``TE = 0.05 is invalid: expected less than TR = 0.03 s``.
"""

from __future__ import annotations

import os
from typing import Any


class BiosimError(Exception):
    """Base class of all biosim errors."""


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` of a value, cut at ``limit`` characters; text and paths are shown whole
    (a file name is useless cut in half)."""
    if isinstance(value, (str, os.PathLike)):
        return repr(str(value))
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParameterError(BiosimError, ValueError):
    """A parameter has an invalid value.

    Parameters
    ----------
    name : str
        Argument or key name (e.g. ``"TR"`` or ``"devices.mri.TE"``).
    value : object
        The offending value (shown with a shortened ``repr``).
    expected : str
        What was expected, in words, with units.
    """

    def __init__(self, name: str, value: Any, expected: str):
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"{name} = {_short_repr(value)} is invalid: expected {expected}")


class ShapeError(ParameterError):
    """An array argument has the wrong shape."""


class GeometryError(BiosimError, ValueError):
    """A mesh, surface, source or sensor geometry is invalid (not closed,
    not nested, a dipole outside its compartment, sensors inside the head...)."""


class ConvergenceError(BiosimError, RuntimeError):
    """An iterative solver did not converge or produced non-finite values."""


class SpecError(BiosimError, ValueError):
    """An experiment specification is invalid; the message names the key."""


class PrecisionError(BiosimError, RuntimeError):
    """A float64-only computation was asked to run in float32 (strict mode)."""


class PrecisionWarning(UserWarning):
    """A float64-only computation is running in float32."""
