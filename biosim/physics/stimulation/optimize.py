"""Gradient-based optimisation of TMS coil placement and TES electrode currents (JAX).

Coil placement: maximise the ROI-mean field along a direction (or its magnitude) over the
position (polar and azimuthal angles on a sphere fitted to the scalp) and the handle angle,
with Adam (Kingma & Ba 2015) on gradients of the reciprocal functional
(:func:`biosim.physics.stimulation.sweep.reciprocal_roi_field`).

TES currents: ``E_target = G I`` is linear in the electrode currents I (A).  The currents
obey ``sum I = 0``, ``|I_k| <= max_electrode`` and ``sum |I_k| <= 2 max_total`` (a
polytope).  :func:`optimize_tes_currents` maximises ``d . G_t I - w mean|G_o I|^2`` (target
field minus an off-target energy penalty) by Frank-Wolfe (conditional gradient): the
gradient comes from JAX, each step's direction from the linear programme over the polytope
(scipy's HiGHS), so every iterate satisfies the constraints exactly.  Without the penalty
the problem is that linear programme (Dmochowski et al. 2011; Saturnino et al. 2019).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linprog

from ..._core.errors import ConvergenceError, ParameterError
from ..._core.validation import check_positive
from .coils import Coil, place_on_sphere
from .sweep import ReciprocalSources, reciprocal_roi_field


def tes_field(unit_fields, currents):
    """Field (..., 3) for electrode currents (e,) from the unit fields (..., 3, e) (V/m per
    A; the field of 1 A injected at electrode k and removed at the reference)."""
    return jnp.tensordot(jnp.asarray(unit_fields), jnp.asarray(currents), axes=1)


def _lp_vertex(c, n, max_electrode, max_total):
    """argmin c . I over the current polytope (I = p - q, p, q >= 0)."""
    cost = np.concatenate([c, -c])
    a_eq = np.concatenate([np.ones(n), -np.ones(n)])[None]
    a_ub = np.zeros((n + 1, 2 * n))
    a_ub[:n, :n] = np.eye(n)
    a_ub[:n, n:] = np.eye(n)
    a_ub[n] = 1.0
    b_ub = np.concatenate([np.full(n, max_electrode), [2 * max_total]])
    res = linprog(
        cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[0.0], bounds=(0, None), method="highs"
    )
    if res.status != 0:
        raise ConvergenceError(f"TES current linear programme failed: {res.message}")
    return res.x[:n] - res.x[n:]


def optimize_tes_currents(
    target_fields,
    direction,
    max_total=2e-3,
    max_electrode=1e-3,
    offtarget_fields=None,
    offtarget_weight=0.0,
    n_iter=300,
):
    """Electrode currents (e,) in A maximising the target field along ``direction``.

    Parameters
    ----------
    target_fields : array (3, e) or (t, 3, e)
        Target field (V/m) per ampere at each electrode (last electrode's column may be
        the reference); several target points are averaged.
    direction : array (3,)
        Desired field direction (normalised here).
    max_total : float
        Total injected current (sum of positive currents), A.
    max_electrode : float
        Largest current per electrode, A.
    offtarget_fields : array (o, 3, e), optional
        Field per ampere at off-target points; with ``offtarget_weight`` w (m^2/V per
        (V/m)) the objective subtracts ``w * mean |E_off|^2``.
    n_iter : int
        Frank-Wolfe iterations (only used with the penalty).

    Returns
    -------
    array (e,)
        Currents (A), summing to zero, within the limits.
    """
    check_positive("max_total", max_total, "A")
    check_positive("max_electrode", max_electrode, "A")
    gt = np.asarray(target_fields, float)
    if gt.ndim == 2:
        gt = gt[None]
    if gt.ndim != 3 or gt.shape[1] != 3 or not np.all(np.isfinite(gt)):
        raise ParameterError("target_fields", f"shape {gt.shape}", "finite (3, e) or (t, 3, e)")
    n = gt.shape[2]
    d = np.asarray(direction, float)
    if d.shape != (3,) or np.linalg.norm(d) == 0:
        raise ParameterError("direction", d.tolist(), "a non-zero 3-vector")
    d = d / np.linalg.norm(d)
    go = None if offtarget_fields is None else jnp.asarray(offtarget_fields, float)
    w = float(offtarget_weight)

    def objective(cur):
        val = jnp.mean(tes_field(gt, cur) @ d)
        if go is not None and w > 0:
            val = val - w * jnp.mean(jnp.sum(tes_field(go, cur) ** 2, axis=-1))
        return val

    grad = jax.jit(jax.grad(objective))
    cur = _lp_vertex(-np.asarray(grad(jnp.zeros(n))), n, max_electrode, max_total)
    if go is None or w == 0:
        return cur
    for _ in range(n_iter):
        g = np.asarray(grad(jnp.asarray(cur)))
        s = _lp_vertex(-g, n, max_electrode, max_total)
        gap = float(g @ (s - cur))
        if gap <= 1e-12 * max(1.0, abs(float(objective(cur)))):
            break
        # exact line search for the concave quadratic objective on [cur, s]
        dirn = s - cur
        f0 = float(objective(cur))
        f1 = float(objective(cur + dirn))
        slope = gap
        curv = f1 - f0 - slope  # f(t) = f0 + slope t + curv t^2
        t = 1.0 if curv >= 0 else min(1.0, -slope / (2 * curv))
        cur = cur + t * dirn
    return cur


def _adam(grad_fn, x0, lr, n_iter, b1=0.9, b2=0.999, eps=1e-12):
    x = jnp.asarray(x0, float)
    m = jnp.zeros_like(x)
    v = jnp.zeros_like(x)
    for k in range(1, n_iter + 1):
        g = grad_fn(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x + lr * (m / (1 - b1**k)) / (jnp.sqrt(v / (1 - b2**k)) + eps)
    return x


def optimize_coil_placement(
    sources: ReciprocalSources,
    coil: Coil,
    start,
    direction=None,
    distance=0.004,
    radius=0.09,
    center=(0.0, 0.0, 0.0),
    didt=1.0,
    lr=0.02,
    n_iter=150,
):
    """Coil placement maximising the ROI-mean field (gradient ascent with Adam).

    Parameters
    ----------
    sources : ReciprocalSources
        From :func:`roi_reciprocal_sources` (k = 3 Cartesian components, or k = 1 for a
        fixed direction).
    coil : Coil
        Dipole coil.
    start : (theta, phi, angle)
        Initial placement on the scalp sphere (rad).
    direction : array (3,), optional
        Maximise the field along this direction; default the magnitude of the ROI mean.
    distance, radius, center
        Coil-scalp gap, scalp sphere radius and centre (m) of the placement
        parametrisation (a sphere fitted to the scalp near the target).
    didt : float
        A/s.

    Returns
    -------
    params : array (3,)
        (theta, phi, angle) at the optimum, rad.
    value : float
        The objective there (V/m).
    """
    d = None if direction is None else jnp.asarray(direction, float)

    def objective(p):
        pl = place_on_sphere(p[0], p[1], p[2], distance, radius, center)
        f = reciprocal_roi_field(sources, coil, pl, didt)
        if d is None:
            return jnp.sqrt(jnp.sum(f * f))
        return f @ d if f.shape[0] == 3 else f[0]

    obj = jax.jit(objective)
    grad = jax.jit(jax.grad(objective))
    p = _adam(grad, jnp.asarray(start, float), lr, n_iter)
    return np.asarray(p), float(obj(p))
