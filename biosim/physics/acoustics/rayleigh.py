"""Continuous-wave field of a transducer in a homogeneous medium (Rayleigh sum).

For a homogeneous medium the steady state of the time-domain solver's source
(a mass-source sheet launching a surface pressure p_s, see :mod:`.solver`) is
the free-space Green's function integral over the transducer surface,

    P(x) = (i k / 2 pi) sum_j dA_j a_e exp(i phi_e) exp(-i k r_j) / r_j,

with r_j = |x - x_j| and the convention p(x, t) = Re(P(x) exp(i omega t)) of
:class:`~.solver.CWField` (Rayleigh 1896; O'Neil 1949 for the focused bowl).
A flat sheet gives exactly P = p_s exp(-i k z), and on the axis of a circular
piston of radius a the sum converges to p_s (exp(-i k z) - exp(-i k sqrt(z^2 + a^2))).
Absorption enters through the complex wavenumber k = omega / c - i alpha.
Costs O(points x targets): no grid, no time stepping, no PML.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from biosim._core.errors import ParameterError
from biosim._core.validation import is_concrete

from .sources import Transducer

__all__ = ["rayleigh_cw"]

_BLOCK = 2**21  # target x point pairs per evaluated block


def rayleigh_cw(
    transducer: Transducer,
    targets: Any,
    frequency: float,
    sound_speed: float = 1500.0,
    attenuation: float = 0.0,
) -> Any:
    """Complex CW pressure P (Pa) of a 3D transducer in a homogeneous medium.

    Parameters
    ----------
    transducer : Transducer
        3D transducer (surface points, area weights, element drives).
    targets : array_like, shape (M, 3)
        Field points, m; none may coincide with a surface point.
    frequency : float
        Drive frequency, Hz.
    sound_speed : float
        m/s.
    attenuation : float
        Amplitude attenuation at ``frequency``, Np/m (>= 0).

    Returns
    -------
    Array, shape (M,)
        Complex pressure with p(x, t) = Re(P exp(i omega t)), the convention of
        :func:`~.solver.simulate_cw`.  Differentiable with respect to the drives,
        weights, point positions and targets.
    """
    if transducer.ndim != 3:
        raise ParameterError("transducer", transducer.ndim, "a 3D transducer (2D needs Hankel)")
    for name, v, ok in (
        ("frequency", frequency, "a positive frequency in Hz"),
        ("sound_speed", sound_speed, "a positive sound speed in m/s"),
    ):
        if not (float(v) > 0 and math.isfinite(float(v))):
            raise ParameterError(name, v, ok)
    if not (float(attenuation) >= 0 and math.isfinite(float(attenuation))):
        raise ParameterError("attenuation", attenuation, "an attenuation >= 0 Np/m")
    tg = jnp.asarray(targets, dtype=float)
    if tg.ndim != 2 or tg.shape[1] != 3:
        raise ParameterError("targets", tuple(tg.shape), "an (M, 3) array of points in m")
    if is_concrete((tg, transducer.points)):
        d = np.asarray(tg)[:, None, :] - np.asarray(transducer.points)[None, :, :]
        gap = float(np.sqrt((d**2).sum(-1)).min()) if d.size else 1.0
        if gap == 0.0:
            raise ParameterError("targets", "on the surface", "points off the transducer surface")
    k = 2 * math.pi * float(frequency) / float(sound_speed) - 1j * float(attenuation)
    drive = transducer.amplitude * jnp.exp(1j * transducer.phase)
    vals = transducer.weights * drive[transducer.element] * (1j * k / (2 * math.pi))
    n_pts = int(transducer.points.shape[0])
    chunk = max(1, min(int(tg.shape[0]), _BLOCK // max(n_pts, 1)))
    n = -(-int(tg.shape[0]) // chunk)
    pad = n * chunk - int(tg.shape[0])
    blocks = jnp.pad(tg, ((0, pad), (0, 0)), mode="edge").reshape(n, chunk, 3)
    out = _sum(blocks, transducer.points, vals, k)
    return out.reshape(-1)[: tg.shape[0]]


@jax.jit
def _sum(blocks, pts, vals, k):
    def one(t):
        r = jnp.sqrt(jnp.sum((t[:, None, :] - pts[None, :, :]) ** 2, axis=-1))
        return jnp.sum(vals[None, :] * jnp.exp(-1j * k * r) / r, axis=1)

    return jax.lax.map(one, blocks)
