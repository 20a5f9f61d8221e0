"""Aberration correction of phased arrays through heterogeneous media (skull).

Two ways to choose element phases that refocus a phased array at a target:

* :func:`time_reversal_phases`: phase conjugation, the continuous-wave form of
  time reversal (Fink 1992; Thomas & Fink 1996).  A point source at the target
  is simulated, the field is read at every element (band-limited interpolation,
  averaged over the element) and each element is driven with the conjugate
  phase; by reciprocity the element contributions then arrive in phase.
* :func:`optimise_phases`: gradient ascent of the focal pressure |P(target)|^2
  with respect to the element phases, differentiating through the time-domain
  solver (Adam steps, Kingma & Ba 2015).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from biosim._core.errors import ParameterError
from biosim._core.pytree import pytree_dataclass

from .medium import Grid, Medium
from .solver import CWSettings, cw_settings, simulate_cw
from .sources import Transducer, point_source, sample_points, source_map

__all__ = ["PhaseCorrection", "focal_pressure", "optimise_phases", "time_reversal_phases"]


@pytree_dataclass
class PhaseCorrection:
    """Element phases found by an aberration correction.

    Attributes
    ----------
    phases : Array, shape (E,)
        Drive phase of each element, rad.
    focal_pressure : Array, shape (n_iter + 1,)
        Pressure amplitude at the target (Pa) before the first and after each step.
    """

    phases: Any
    focal_pressure: Any


def _target_probe(target, grid: Grid) -> Transducer:
    return point_source(np.asarray(target, dtype=float), weight=1.0)


def focal_pressure(field_complex: Any, target: Any, grid: Grid) -> Any:
    """Complex pressure at ``target`` (m), band-limited interpolation of a grid field (Pa)."""
    return sample_points(field_complex, _target_probe(target, grid), grid)[0]


def _settings(medium, grid, frequency, settings, kwargs):
    if settings is None:
        return cw_settings(medium, grid, frequency, **kwargs)
    if kwargs:
        raise ParameterError("settings_kwargs", sorted(kwargs), "none when settings given")
    return settings


def time_reversal_phases(
    medium: Medium,
    transducer: Transducer,
    grid: Grid,
    frequency: float,
    target: Any,
    settings: CWSettings | None = None,
    **settings_kwargs: Any,
) -> Any:
    """Phase-conjugation (CW time-reversal) element phases focusing at ``target``.

    Parameters
    ----------
    medium, grid, frequency
        As for :func:`~biosim.physics.acoustics.solver.simulate_cw`.
    transducer : Transducer
        The phased array (its drives are ignored).
    target : array_like, shape (ndim,)
        Focus, m.
    settings : CWSettings, optional
        Time stepping (default from ``cw_settings(**settings_kwargs)``).

    Returns
    -------
    Array, shape (E,)
        Element phases, rad: minus the phase of the field of a point source at
        the target, averaged over each element.
    """
    settings = _settings(medium, grid, frequency, settings, settings_kwargs)
    d = min(grid.spacing)
    probe = point_source(np.asarray(target, dtype=float), weight=d ** (grid.ndim - 1))
    fld = simulate_cw(medium, probe, grid, frequency, settings=settings)
    return -jnp.angle(sample_points(fld.complex, transducer, grid))


def optimise_phases(
    medium: Medium,
    transducer: Transducer,
    grid: Grid,
    frequency: float,
    target: Any,
    *,
    n_iter: int = 20,
    learning_rate: float = 0.3,
    initial_phases: Any = None,
    settings: CWSettings | None = None,
    **settings_kwargs: Any,
) -> PhaseCorrection:
    """Maximise the focal pressure over element phases by gradient ascent.

    Parameters
    ----------
    medium, transducer, grid, frequency, target
        As for :func:`time_reversal_phases` (the transducer's amplitudes are kept).
    n_iter : int
        Adam steps.
    learning_rate : float
        Adam step size, rad.
    initial_phases : array_like, optional
        Start (default: the transducer's phases).
    settings : CWSettings, optional
        Time stepping (default from ``cw_settings(**settings_kwargs)``).

    Returns
    -------
    PhaseCorrection
        Final phases and the focal pressure amplitude at every step.
    """
    if int(n_iter) != n_iter or n_iter < 1:
        raise ParameterError("n_iter", n_iter, "a positive number of steps")
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ParameterError("learning_rate", learning_rate, "a positive step in rad")
    settings = _settings(medium, grid, frequency, settings, settings_kwargs)
    phases = transducer.phase if initial_phases is None else jnp.asarray(initial_phases, float)
    if phases.shape != (transducer.n_elements,):
        raise ParameterError("initial_phases", phases.shape, f"shape ({transducer.n_elements},)")
    probe = _target_probe(target, grid)
    source_map(probe, grid)  # checks the target lies inside the grid interior

    def focal(ph):
        smap = source_map(transducer.with_drive(phase=ph), grid)
        fld = simulate_cw(medium, smap, grid, frequency, settings=settings)
        return sample_points(fld.complex, probe, grid)[0]

    value_and_grad = jax.jit(jax.value_and_grad(lambda ph: jnp.abs(focal(ph)) ** 2))
    m = jnp.zeros_like(phases)
    v = jnp.zeros_like(phases)
    b1, b2 = 0.9, 0.999
    history = []
    for it in range(int(n_iter)):
        val, g = value_and_grad(phases)
        history.append(jnp.sqrt(val))
        g = -g  # ascent
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mh = m / (1 - b1 ** (it + 1))
        vh = v / (1 - b2 ** (it + 1))
        denom = jnp.sqrt(vh)
        phases = phases - learning_rate * mh / (denom + 1e-8 * jnp.max(denom) + 1e-300)
    val, _ = value_and_grad(phases)
    history.append(jnp.sqrt(val))
    return PhaseCorrection(phases=phases, focal_pressure=jnp.stack(history))
