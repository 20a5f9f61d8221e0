"""Linearisation of the Balloon-BOLD system: its first-order Volterra kernel
and the linear (LTI) prediction it implies.

About rest (x = 0, z = 0) the model is ``dx/dt ~ J x + b z`` and
``y ~ c . x`` with ``J = d rhs / dx``, ``b = d rhs / dz`` and
``c = d BOLD / dx`` (obtained by automatic differentiation).  The first-order
Volterra kernel is then exactly (Friston et al. 2000, eq. 6)::

    k1(t) = c . expm(J t) . b          [fraction per (1/s) per s]

and the linear prediction of the BOLD response to an input z is the
convolution ``y_lin(t) = int k1(s) z(t - s) ds``.  The Balloon model departs
from it for strong or closely spaced inputs (refractoriness of paired stimuli,
saturation and the shape of long blocks); see
``tests/physics/hemodynamics/test_nonlinearity.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import expm

from .balloon import BalloonParams, balloon_rhs, resting_state
from .bold import BOLDParams, bold_from_states


def linearised_system(balloon: BalloonParams, bold: BOLDParams):
    """(J, b, c) of the Balloon-BOLD system linearised about rest (one region)."""
    x0 = resting_state()
    jac = jax.jacfwd(lambda x: balloon_rhs(x, 0.0, balloon))(x0)
    b = jax.jacfwd(lambda z: balloon_rhs(x0, z, balloon))(0.0)
    c = jax.grad(lambda x: bold_from_states(x, bold))(x0)
    return jac, b, c


def first_order_kernel(balloon: BalloonParams, bold: BOLDParams, dt: float, n_samples: int):
    """First-order Volterra kernel ``k1(k dt)``, k = 0..n_samples-1.

    Returns
    -------
    kernel : array, shape (n_samples,)
        BOLD fraction per unit input (1/s) per second of input.
    """
    jac, b, c = linearised_system(balloon, bold)
    phi = expm(jac * dt)

    def step(v, _):
        return phi @ v, c @ v

    _, k = lax.scan(step, b, None, length=n_samples)
    return k


def linear_prediction(neural_input, dt: float, balloon: BalloonParams, bold: BOLDParams):
    """LTI prediction of the BOLD fraction for ``neural_input`` (n_t, ...) at step dt.

    The input is treated as piecewise constant; the kernel is integrated over
    each step by the trapezoidal rule, consistent with a zero-order hold to
    second order in ``dt``.
    """
    u = jnp.asarray(neural_input, dtype=float)
    n = u.shape[0]
    k = first_order_kernel(balloon, bold, dt, n + 1)
    w = 0.5 * (k[:-1] + k[1:]) * dt  # response at lag j+1/2 of one held sample
    flat = u.reshape(n, -1)
    # y[m] = sum_{j < m} w[m-1-j] u[j]: the state at t = m dt sees samples 0..m-1
    conv = jax.vmap(lambda col: jnp.convolve(col, w, mode="full")[:n], in_axes=1, out_axes=1)(flat)
    y = jnp.concatenate([jnp.zeros((1, flat.shape[1])), conv[:-1]], axis=0)
    return y.reshape(u.shape)
