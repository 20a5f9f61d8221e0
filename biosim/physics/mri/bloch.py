"""Isochromat Bloch simulation in the rotating frame.

Each isochromat (spin) has a position r (m), an off-resonance df (Hz),
relaxation times T1, T2 (s) and equilibrium magnetisation M0.  A sequence is
a list of time steps; step k applies, in order,

1. ideal spoiling when ``spoil[k]`` (residual transverse magnetisation set
   to zero before the pulse),
2. an instantaneous (hard) rotation by ``flip[k]`` (rad) about the transverse
   axis at angle ``phase[k]`` (rad) from x,
3. free precession for ``dt[k]`` seconds under the effective field
   ``B = (Re b1[k], Im b1[k], g[k] . r + df / gamma_bar)`` (T) -- a shaped RF
   pulse is a run of steps with non-zero ``b1`` -- with exact relaxation,

and records the transverse magnetisation ``Mx + i My`` summed over spins at
the end of the step.  Precession follows dM/dt = gamma M x B (left-handed for
protons: an RF field along +x tips +z towards +y).  The rotation over a step
is exact (Rodrigues' formula); relaxation is applied after the rotation
(operator splitting, error O(dt) only while RF and relaxation act together).

``lax.scan`` runs over time and ``vmap`` over spins; everything is
differentiable with respect to tissue parameters and the waveforms.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._core.errors import ParameterError, ShapeError
from ..._core.units import GAMMA_PROTON
from ..._core.validation import check_all_finite, check_finite, check_nonnegative, check_positive


class Sequence(NamedTuple):
    """A discretised sequence (all arrays of length n_steps).

    Attributes
    ----------
    dt : (n,) s, duration of each free-precession step.
    flip : (n,) rad, hard pulse at the start of the step (0 for none).
    phase : (n,) rad, axis angle of the hard pulse (0 = x).
    b1 : (n,) complex T, shaped RF field during the step.
    gradient : (n, 3) T/m.
    spoil : (n,) bool, ideal spoiling before the hard pulse.
    """

    dt: jax.Array
    flip: jax.Array
    phase: jax.Array
    b1: jax.Array
    gradient: jax.Array
    spoil: jax.Array


def make_sequence(dt, flip=None, phase=None, b1=None, gradient=None, spoil=None) -> Sequence:
    """Build a :class:`Sequence`, filling omitted waveforms with zeros."""
    dt = np.atleast_1d(np.asarray(dt, dtype=float))
    n = dt.shape[0]
    check_nonnegative("dt", dt, "s")

    def arr(x, shape, dtype):
        out = np.zeros(shape, dtype) if x is None else np.broadcast_to(np.asarray(x, dtype), shape)
        return jnp.asarray(out)

    seq = Sequence(
        dt=jnp.asarray(dt),
        flip=arr(flip, (n,), float),
        phase=arr(phase, (n,), float),
        b1=arr(b1, (n,), complex),
        gradient=arr(gradient, (n, 3), float),
        spoil=arr(spoil, (n,), bool),
    )
    check_finite("flip", seq.flip)
    check_finite("gradient", seq.gradient)
    return seq


def concatenate(*seqs: Sequence) -> Sequence:
    """Concatenate sequences in time."""
    return Sequence(*[jnp.concatenate(parts) for parts in zip(*seqs)])


class Spins(NamedTuple):
    """Isochromats: positions (n, 3) m, off_resonance (n,) Hz, t1, t2 (n,) s, m0 (n,)."""

    positions: jax.Array
    off_resonance: jax.Array
    t1: jax.Array
    t2: jax.Array
    m0: jax.Array


def make_spins(positions, t1, t2, m0=1.0, off_resonance=0.0) -> Spins:
    """Build :class:`Spins`, broadcasting scalars to the number of positions."""
    check_all_finite(positions=positions, m0=m0, off_resonance=off_resonance)
    pos = np.atleast_2d(np.asarray(positions, dtype=float))
    if pos.shape[-1] != 3:
        raise ShapeError("positions", f"array of shape {pos.shape}", "shape (n, 3)")
    n = pos.shape[0]
    check_positive("t1", t1, "s")
    check_positive("t2", t2, "s")
    b = lambda x: jnp.broadcast_to(jnp.asarray(x, dtype=float), (n,))  # noqa: E731
    return Spins(jnp.asarray(pos), b(off_resonance), b(t1), b(t2), b(m0))


def _rotate(m, axis, angle):
    """Rotate vectors ``m`` (..., 3) by ``angle`` about unit ``axis`` (Rodrigues)."""
    c, s = jnp.cos(angle)[..., None], jnp.sin(angle)[..., None]
    return m * c + jnp.cross(axis, m) * s + axis * jnp.sum(axis * m, -1, keepdims=True) * (1 - c)


def _hard_pulse(m, flip, ph):
    axis = jnp.stack([jnp.cos(ph), jnp.sin(ph), 0.0])
    return _rotate(m, axis, -flip * jnp.ones(m.shape[:-1]))


def _precess_rf(m, bz, b1, dt):
    bvec = jnp.stack(
        [jnp.broadcast_to(b1.real, bz.shape), jnp.broadcast_to(b1.imag, bz.shape), bz], axis=-1
    )
    bnorm = jnp.linalg.norm(bvec, axis=-1)
    safe = jnp.where(bnorm > 0, bnorm, 1.0)
    axis = jnp.where((bnorm > 0)[..., None], bvec / safe[..., None], jnp.array([0.0, 0.0, 1.0]))
    return _rotate(m, axis, -GAMMA_PROTON * bnorm * dt)


def _precess_free(m, bz, b1, dt):
    # no RF: a rotation about z by -gamma bz dt (cheap path)
    ang = -GAMMA_PROTON * bz * dt
    c, s = jnp.cos(ang), jnp.sin(ang)
    return jnp.stack([m[..., 0] * c - m[..., 1] * s, m[..., 0] * s + m[..., 1] * c, m[..., 2]], -1)


def _step(m, k, spins: Spins, seq: Sequence):
    # 1. ideal spoiling of the residual transverse magnetisation
    m = lax.cond(seq.spoil[k], lambda m: m * jnp.array([0.0, 0.0, 1.0]), lambda m: m, m)
    # 2. hard pulse about (cos phase, sin phase, 0); left-handed: angle -> -flip
    m = lax.cond(seq.flip[k] != 0, _hard_pulse, lambda m, f, p: m, m, seq.flip[k], seq.phase[k])
    # 3. free precession with shaped RF and gradients, then exact relaxation
    dt = seq.dt[k]
    bz = spins.positions @ seq.gradient[k] + spins.off_resonance * (2 * jnp.pi / GAMMA_PROTON)
    m = lax.cond(seq.b1[k] != 0, _precess_rf, _precess_free, m, bz, seq.b1[k], dt)
    e1, e2 = jnp.exp(-dt / spins.t1), jnp.exp(-dt / spins.t2)
    return jnp.stack([m[..., 0] * e2, m[..., 1] * e2, m[..., 2] * e1 + spins.m0 * (1 - e1)], -1)


@jax.jit
def simulate(spins: Spins, seq: Sequence, m_init=None):
    """Run the sequence on all spins.

    Parameters
    ----------
    spins : Spins
    seq : Sequence
    m_init : array (n_spins, 3), optional
        Initial magnetisation (default: equilibrium ``(0, 0, M0)``).

    Returns
    -------
    signal : complex array (n_steps,)
        Sum over spins of ``Mx + i My`` at the end of each step.
    m_final : array (n_spins, 3)
    """
    if m_init is None:
        m_init = jnp.stack([jnp.zeros_like(spins.m0), jnp.zeros_like(spins.m0), spins.m0], -1)

    def body(m, k):
        m = _step(m, k, spins, seq)
        return m, jnp.sum(m[:, 0]) + 1j * jnp.sum(m[:, 1])

    m_final, signal = lax.scan(body, m_init, jnp.arange(seq.dt.shape[0]))
    return signal, m_final


def simulate_per_spin(spins: Spins, seq: Sequence):
    """Like :func:`simulate` but returns the final magnetisation of each spin
    only (no recorded signal); convenient for slice profiles."""
    _, m = simulate(spins, seq)
    return m


def spoiled_gre_sequence(
    flip_angle,
    tr,
    te,
    n_tr,
    *,
    rf_spoiling_increment=None,
    ideal_spoiling=False,
    dephasing_gradient=0.0,
    dephasing_axis=2,
):
    """Steps of a gradient-spoiled GRE: per TR, a hard pulse, TE of free
    precession (the echo is read at the end of this step), then the rest of the
    TR with a dephasing gradient of ``dephasing_gradient`` T/m.

    ``rf_spoiling_increment`` (rad, e.g. 117 deg) makes the pulse phase
    quadratic: phi_n = phi_{n-1} + n * increment.  Returns the sequence and the
    RF phase per TR (to demodulate the received signal).
    """
    check_all_finite(flip_angle=flip_angle, TE=te, dephasing_gradient=dephasing_gradient)
    check_positive("TR", tr, "s")
    if not 0 <= te < tr:
        raise ParameterError("TE", te, f"0 <= TE < TR = {tr} s")
    n = np.arange(n_tr)
    phases = (
        np.zeros(n_tr)
        if rf_spoiling_increment is None
        else rf_spoiling_increment * n * (n + 1) / 2.0
    )
    dt = np.tile([te, tr - te], n_tr)
    flip = np.zeros(2 * n_tr)
    flip[0::2] = flip_angle
    phase = np.zeros(2 * n_tr)
    phase[0::2] = phases
    spoil = np.zeros(2 * n_tr, bool)
    spoil[0::2] = ideal_spoiling
    grad = np.zeros((2 * n_tr, 3))
    grad[1::2, dephasing_axis] = dephasing_gradient
    return make_sequence(dt, flip=flip, phase=phase, gradient=grad, spoil=spoil), phases


@jax.jit
def free_precession_block(m, spins: Spins, gradient, dt):
    """Exact evolution through a stretch without RF, vectorised over time.

    Without RF the transverse magnetisation of each spin only rotates about z
    and decays, so after step l (cumulative time T_l, cumulative gradient
    moment K_l = sum_j G_j dt_j)::

        Mxy(l) = Mxy(0) exp(-i gamma (r . K_l + df T_l / gamma_bar... ) - T_l / T2)

    (with the sign convention of :func:`simulate`) and Mz relaxes towards M0.
    This replaces L sequential steps by one (n_spins x L) evaluation, the
    approach of event-based simulators such as KomaMRI for ADC blocks.

    Parameters
    ----------
    m : array (n_spins, 3)
        Magnetisation at the start of the block.
    spins : Spins
    gradient : array (L, 3), T/m
    dt : array (L,), s

    Returns
    -------
    signal : complex (L,)
        Sum over spins of Mx + i My at the end of each step (as :func:`simulate`).
    m_final : array (n_spins, 3)
    """
    t_cum = jnp.cumsum(dt)  # (L,)
    k_cum = jnp.cumsum(gradient * dt[:, None], axis=0)  # (L, 3) T s / m
    phase = (
        -GAMMA_PROTON * (spins.positions @ k_cum.T)
        - 2 * jnp.pi * spins.off_resonance[:, None] * t_cum[None, :]
    )
    decay = jnp.exp(-t_cum[None, :] / spins.t2[:, None])
    mxy0 = m[:, 0] + 1j * m[:, 1]
    evol = jnp.exp(1j * phase) * decay  # (n, L)
    signal = mxy0 @ evol
    mxy = mxy0 * evol[:, -1]
    e1 = jnp.exp(-t_cum[-1] / spins.t1)
    mz = m[:, 2] * e1 + spins.m0 * (1 - e1)
    return signal, jnp.stack([mxy.real, mxy.imag, mz], -1)
