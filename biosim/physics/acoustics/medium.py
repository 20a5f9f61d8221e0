"""Acoustic media and computational grids.

A :class:`Medium` holds sound speed (m/s), density (kg/m^3) and the power-law
attenuation ``alpha = alpha0 f^y`` (``alpha0`` in dB / (MHz^y cm), the unit of
the ultrasound literature); each is a scalar or an array of the grid's shape.
A :class:`Grid` is a regular Cartesian grid (2D or 3D) whose outer
``pml_size`` cells on each side form the perfectly matched layer (k-Wave's
"PML inside" convention).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from biosim._core.errors import ParameterError, ShapeError
from biosim._core.pytree import pytree_dataclass, static_field
from biosim._core.validation import check_finite, check_nonnegative, check_positive, is_concrete

__all__ = ["Grid", "Medium", "db_to_neper", "WATER"]

#: dB per neper (20 log10 e).
_DB_PER_NP = 20.0 / math.log(10.0)


def db_to_neper(alpha0_db: Any, alpha_power: float) -> Any:
    """Convert ``alpha0`` from dB / (MHz^y cm) to Np / ((rad/s)^y m).

    Parameters
    ----------
    alpha0_db : array_like
        Attenuation prefactor, dB / (MHz^y cm).
    alpha_power : float
        Power-law exponent y.

    Returns
    -------
    array_like
        The same prefactor in Np / ((rad/s)^y m), as used by Treeby & Cox (2010).
    """
    return alpha0_db * (100.0 / _DB_PER_NP) / (2.0 * math.pi * 1e6) ** alpha_power


@pytree_dataclass
class Grid:
    """Regular Cartesian grid for the acoustic solver.

    Parameters
    ----------
    shape : tuple of int
        Number of points per axis (2 or 3 axes); the PML is inside this shape.
    spacing : tuple of float
        Grid step per axis, m.
    pml_size : tuple of int
        PML thickness per axis, grid points (0 makes that axis periodic).
    pml_alpha : float
        PML absorption, nepers per grid point (k-Wave's default is 2).
    origin : tuple of float
        Position of grid point ``(0, 0[, 0])``, m; ``None`` centres the grid on 0.
    """

    shape: tuple = static_field()
    spacing: tuple = static_field()
    pml_size: tuple = static_field(default=(20, 20, 20))
    pml_alpha: float = static_field(default=2.0)
    origin: tuple | None = static_field(default=None)

    def __post_init__(self):
        shape = tuple(int(n) for n in np.atleast_1d(self.shape))
        if len(shape) not in (2, 3):
            raise ShapeError("shape", self.shape, "2 or 3 grid dimensions")
        nd = len(shape)
        spacing = np.broadcast_to(np.asarray(self.spacing, dtype=float), (nd,))
        pml = np.broadcast_to(np.asarray(self.pml_size, dtype=int).ravel()[:nd], (nd,))
        if np.size(self.pml_size) not in (1, nd) and np.size(self.pml_size) != 3:
            raise ShapeError("pml_size", self.pml_size, f"one int or {nd} ints")
        if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise ParameterError("spacing", self.spacing, "positive grid steps in m")
        if np.any(pml < 0) or np.any(2 * pml + 4 > np.asarray(shape)):
            raise ParameterError(
                "pml_size", tuple(pml.tolist()), f"0 <= pml_size and 2 pml_size + 4 <= {shape}"
            )
        if not (self.pml_alpha >= 0 and math.isfinite(self.pml_alpha)):
            raise ParameterError("pml_alpha", self.pml_alpha, "a finite value >= 0 Np/point")
        if self.origin is None:
            origin = tuple(float(-(n - 1) / 2 * d) for n, d in zip(shape, spacing))
        else:
            origin = tuple(float(o) for o in np.broadcast_to(np.asarray(self.origin), (nd,)))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", tuple(float(d) for d in spacing))
        object.__setattr__(self, "pml_size", tuple(int(p) for p in pml))
        object.__setattr__(self, "origin", origin)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.shape)

    def axes(self) -> tuple[np.ndarray, ...]:
        """Coordinates of the grid points along each axis, m."""
        return tuple(o + d * np.arange(n) for o, d, n in zip(self.origin, self.spacing, self.shape))

    def points(self) -> np.ndarray:
        """All grid coordinates, shape ``shape + (ndim,)``, m."""
        return np.stack(np.meshgrid(*self.axes(), indexing="ij"), axis=-1)

    def index_of(self, position: Any) -> tuple[int, ...]:
        """Nearest grid index of a position (m)."""
        pos = np.asarray(position, dtype=float)
        return tuple(int(round((p - o) / d)) for p, o, d in zip(pos, self.origin, self.spacing))

    def interior_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper coordinates (m) of the region outside the PML."""
        ax = self.axes()
        lo = np.array([a[p] for a, p in zip(ax, self.pml_size)])
        hi = np.array([a[len(a) - 1 - p] for a, p in zip(ax, self.pml_size)])
        return lo, hi


@pytree_dataclass
class Medium:
    """Linear acoustic medium, homogeneous or heterogeneous.

    Parameters
    ----------
    sound_speed : array_like
        Sound speed c0, m/s (scalar or an array of the grid's shape).
    density : array_like
        Ambient density rho0, kg/m^3 (scalar or grid).
    alpha0 : array_like
        Attenuation prefactor, dB / (MHz^y cm): alpha(f) = alpha0 f^y (scalar or grid).
    alpha_power : float
        Power-law exponent y, 0 < y < 3 and y != 1 (the Kramers-Kronig dispersion
        term of Treeby & Cox 2010 is singular at y = 1).
    """

    sound_speed: Any
    density: Any = 1000.0
    alpha0: Any = 0.0
    alpha_power: float = static_field(default=1.5)

    def __post_init__(self):
        # pytree unflattening passes arbitrary leaves (tracers, None, placeholders): only
        # convert and check plain numbers and arrays
        names = ("sound_speed", "density", "alpha0")
        plain = all(
            isinstance(getattr(self, n), (int, float, list, tuple, np.ndarray, jax.Array))
            for n in names
        )
        if not plain:
            return
        for name in names:
            object.__setattr__(self, name, jnp.asarray(getattr(self, name)))
        y = self.alpha_power
        if not (0.0 < y < 3.0) or abs(y - 1.0) < 1e-6:
            raise ParameterError("alpha_power", y, "0 < y < 3 and y != 1")
        if is_concrete((self.sound_speed, self.density, self.alpha0)):
            check_positive("sound_speed", self.sound_speed, "m/s")
            check_positive("density", self.density, "kg/m^3")
            check_finite("alpha0", self.alpha0)
            check_nonnegative("alpha0", self.alpha0, "dB/(MHz^y cm)")

    def check_shape(self, grid: Grid) -> None:
        """Raise :class:`ShapeError` unless every map is a scalar or of ``grid.shape``."""
        for name in ("sound_speed", "density", "alpha0"):
            shp = tuple(np.shape(getattr(self, name)))
            if shp not in ((), grid.shape):
                raise ShapeError(name, shp, f"a scalar or an array of shape {grid.shape}")

    def attenuation_np(self, frequency: float) -> Any:
        """Attenuation at ``frequency`` (Hz), Np/m."""
        return self.alpha0 * (100.0 / _DB_PER_NP) * (frequency / 1e6) ** self.alpha_power


#: Water at about 20 degC (sound speed m/s, density kg/m^3, alpha0 dB/(MHz^2 cm), y = 2).
WATER = dict(sound_speed=1500.0, density=1000.0, alpha0=2.17e-3, alpha_power=2.0)
