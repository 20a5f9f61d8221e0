"""Bilinear (and nonlinear) DCM neural state equations, SPM parametrisation.

One state per region (Friston, Harrison & Penny 2003; SPM12 ``spm_fx_fmri``)::

    dx/dt = (A + sum_j u_j B_j + sum_k x_k D_k) x + C u / 16

with the self-connections log-scaled: the diagonal of the effective A is
``-exp(A_ii) / 2`` Hz (so A_ii = 0 gives -0.5 Hz and the prior keeps every
region stable), off-diagonal entries in Hz, inputs u scaled by 1/16 as SPM
does.  The diagonal of each B_j modulates the self-connection
multiplicatively in SPM; here it adds to the log-scale,
``-exp(A_ii + sum_j u_j B_jii) / 2``, which is SPM12's one-state convention.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..._core.pytree import pytree_dataclass


@pytree_dataclass
class NeuralParams:
    """Connectivity (all in SPM's parametrisation).

    Attributes
    ----------
    A : (n, n)  off-diagonal Hz; diagonal log self-inhibition scale
    B : (m, n, n) modulation of A by input j (Hz; diagonal on the log scale)
    C : (n, m) driving input strengths (x 1/16)
    D : (n, n, n) nonlinear modulation of A by region k's activity (may be zeros)
    """

    A: jnp.ndarray
    B: jnp.ndarray
    C: jnp.ndarray
    D: jnp.ndarray


def effective_connectivity(params: NeuralParams, u, x=None):
    """The Jacobian dx'/dx at input u (m,) and state x (n,)."""
    n = params.A.shape[0]
    eye = jnp.eye(n)
    mod = params.A + jnp.einsum("j,jab->ab", u, params.B)
    if x is not None:
        mod = mod + jnp.einsum("k,kab->ab", x, params.D)
    off = mod * (1 - eye)
    diag = -0.5 * jnp.exp(jnp.diagonal(mod))
    return off + jnp.diag(diag)


def neural_rhs(x, u, params: NeuralParams):
    """dx/dt of the neural states (n,) under input u (m,)."""
    return effective_connectivity(params, u, x) @ x + params.C @ u / 16.0
