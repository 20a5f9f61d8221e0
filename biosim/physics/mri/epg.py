"""Extended phase graphs (EPG) for spoiled-GRE and spin-echo trains.

The magnetisation of a voxel dephased by unit gradient moments is kept as
configuration states ``F+_k, F-_k, Z_k`` (k = 0..K-1), stored as a complex
array of shape (3, K).  Operators (Weigel 2015, J Magn Reson Imaging 41:266):

* RF pulse of flip ``a`` and phase ``phi`` (eq. 15): the 3x3 matrix
  ``T(a, phi)`` applied to every k;
* relaxation over ``t``: ``F *= E2``, ``Z_k *= E1``, ``Z_0 += M0 (1 - E1)``;
* one unit of dephasing: ``F+_k -> F+_{k+1}``, ``F-_k -> F-_{k-1}``,
  ``F+_0 = conj(F-_0)``.

The echo is ``F+_0``.  With K states, dephasing beyond K-1 units is
discarded, which is harmless once T2 decay has removed those states (choose
K larger than a few T2/TR).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from ..._core.errors import ParameterError
from ..._core.validation import check_all_finite, check_positive


def rf_matrix(alpha, phi):
    """EPG RF rotation matrix T(alpha, phi) (Weigel 2015, eq. 15)."""
    c2, s2 = jnp.cos(alpha / 2) ** 2, jnp.sin(alpha / 2) ** 2
    sa, ca = jnp.sin(alpha), jnp.cos(alpha)
    e = jnp.exp(1j * phi)
    return jnp.array(
        [
            [c2, e**2 * s2, -1j * e * sa],
            [jnp.conj(e) ** 2 * s2, c2, 1j * jnp.conj(e) * sa],
            [-0.5j * jnp.conj(e) * sa, 0.5j * e * sa, ca],
        ]
    )


def apply_rf(states, alpha, phi):
    return rf_matrix(alpha, phi) @ states


def relax(states, t, t1, t2, m0=1.0):
    e1, e2 = jnp.exp(-t / t1), jnp.exp(-t / t2)
    out = states * jnp.array([e2, e2, e1])[:, None]
    return out.at[2, 0].add(m0 * (1 - e1))


def dephase(states):
    fp = jnp.concatenate([jnp.zeros(1, states.dtype), states[0, :-1]])
    fm = jnp.concatenate([states[1, 1:], jnp.zeros(1, states.dtype)])
    fp = fp.at[0].set(jnp.conj(fm[0]))
    return jnp.stack([fp, fm, states[2]])


def equilibrium(n_states, m0=1.0):
    return jnp.zeros((3, n_states), complex).at[2, 0].set(m0)


@partial(jax.jit, static_argnames=("n_tr", "n_states"))
def _spoiled_gre(t1, t2, tr, te, flip, increment, n_tr, n_states):
    n = jnp.arange(n_tr)
    phases = increment * n * (n + 1) / 2.0

    def body(states, phi):
        states = apply_rf(states, flip, phi)
        states = relax(states, te, t1, t2)
        echo = states[0, 0] * jnp.exp(-1j * phi)  # receiver follows the RF phase
        states = relax(states, tr - te, t1, t2)
        return dephase(states), echo

    _, echoes = lax.scan(body, equilibrium(n_states), phases)
    return echoes


def spoiled_gre_train(
    t1, t2, tr, te, flip_angle, n_tr, rf_spoiling_increment=117.0 * jnp.pi / 180, n_states=200
):
    """Echo after each of ``n_tr`` pulses of an RF- and gradient-spoiled GRE.

    Parameters
    ----------
    t1, t2, tr, te : float
        s (TE < TR).
    flip_angle : float
        rad.
    n_tr : int
        Number of repetitions.
    rf_spoiling_increment : float
        Quadratic phase increment, rad (117 deg: Zur et al. 1991).
    n_states : int
        Configuration states kept.

    Returns
    -------
    complex array (n_tr,)
        Demodulated echoes (relative to M0 = 1).
    """
    check_all_finite(
        T1=t1, T2=t2, TE=te, flip_angle=flip_angle, rf_spoiling_increment=rf_spoiling_increment
    )
    check_positive("TR", tr, "s")
    if not 0 <= te < tr:
        raise ParameterError("TE", te, f"0 <= TE < TR = {tr} s")
    return _spoiled_gre(t1, t2, tr, te, flip_angle, rf_spoiling_increment, int(n_tr), int(n_states))


@partial(jax.jit, static_argnames=("n_echoes", "n_states"))
def _cpmg(t1, t2, esp, refocus, excitation, n_echoes, n_states):
    states = apply_rf(equilibrium(n_states), excitation, 0.0)

    def body(states, _):
        states = dephase(relax(states, esp / 2, t1, t2))
        states = apply_rf(states, refocus, jnp.pi / 2)
        states = dephase(relax(states, esp / 2, t1, t2))
        return states, states[0, 0]

    _, echoes = lax.scan(body, states, None, length=n_echoes)
    return echoes


def cpmg_train(
    t1, t2, echo_spacing, refocus_angle, n_echoes, excitation_angle=jnp.pi / 2, n_states=None
):
    """Echo amplitudes of a CPMG train (90x - [ESP/2 - a_y - ESP/2 - echo] x n).

    With perfect 180 deg refocusing the echoes are ``exp(-n ESP / T2)``;
    imperfect refocusing mixes in stimulated echoes (Hennig 1988).
    """
    check_all_finite(T1=t1, T2=t2, refocus_angle=refocus_angle, excitation_angle=excitation_angle)
    check_positive("echo_spacing", echo_spacing, "s")
    n_states = 2 * int(n_echoes) + 2 if n_states is None else int(n_states)
    return _cpmg(t1, t2, echo_spacing, refocus_angle, excitation_angle, int(n_echoes), n_states)
