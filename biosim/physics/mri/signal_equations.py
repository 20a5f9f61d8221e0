"""Closed-form MRI signal equations (steady states and echoes).

All functions are vectorised (broadcasting over tissue maps) and
differentiable with ``jax``.  Times in s, rates in 1/s, angles in rad,
off-resonance in Hz; signals in the units of ``m0``.

References
----------
Bernstein, King & Zhou (2004), *Handbook of MRI Pulse Sequences*:
spoiled GRE (eq. 14.8), spin echo with finite TR (eq. 14.13), inversion
recovery (eq. 14.29). Ernst & Anderson (1966): Ernst angle.
Scheffler & Lehnhardt (2003), Eur Radiol 13:2409: balanced SSFP.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..._core.errors import ParameterError
from ..._core.validation import check_all_finite, check_positive, check_range, is_concrete


def _check_te_tr(te, tr):
    check_all_finite(TE=te)
    check_positive("TR", tr, "s")
    if is_concrete((te, tr)):
        import numpy as np

        if np.any(np.asarray(te) < 0) or np.any(np.asarray(te) >= np.asarray(tr)):
            raise ParameterError(
                "TE", np.asarray(te).tolist(), f"0 <= TE < TR = {np.asarray(tr).tolist()} s"
            )


def spoiled_gre(m0, t1, t2star, tr, te, flip_angle):
    """Ideal spoiled gradient-echo (FLASH) steady state.

    ``S = M0 sin(a) (1 - E1) / (1 - E1 cos(a)) exp(-TE/T2*)``, E1 = exp(-TR/T1).
    """
    check_all_finite(m0=m0, flip_angle=flip_angle)
    _check_te_tr(te, tr)
    check_positive("T1", t1, "s")
    check_positive("T2*", t2star, "s")
    e1 = jnp.exp(-tr / t1)
    return (
        m0 * jnp.sin(flip_angle) * (1 - e1) / (1 - e1 * jnp.cos(flip_angle)) * jnp.exp(-te / t2star)
    )


def spin_echo(m0, t1, t2, tr, te):
    """90-180 spin echo with T1 recovery at finite TR (the 180 pulse at TE/2).

    ``S = M0 (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1)) exp(-TE/T2)``.
    """
    check_all_finite(m0=m0)
    _check_te_tr(te, tr)
    check_positive("T1", t1, "s")
    check_positive("T2", t2, "s")
    return m0 * (1 - 2 * jnp.exp(-(tr - te / 2) / t1) + jnp.exp(-tr / t1)) * jnp.exp(-te / t2)


def inversion_recovery(m0, t1, t2, ti, tr, te):
    """Inversion recovery spin echo (180 - TI - 90 - 180), signed.

    ``S = M0 (1 - 2 exp(-TI/T1) + 2 exp(-(TR - TE/2)/T1) - exp(-TR/T1)) exp(-TE/T2)``,
    which reduces to ``1 - 2 exp(-TI/T1) + exp(-TR/T1)`` for TE << TR.
    """
    check_all_finite(m0=m0)
    _check_te_tr(te, tr)
    check_positive("TI", ti, "s")
    if is_concrete((ti, tr)):
        import numpy as np

        if np.any(np.asarray(ti) >= np.asarray(tr)):
            raise ParameterError("TI", np.asarray(ti).tolist(), "TI < TR")
    return (
        m0
        * (1 - 2 * jnp.exp(-ti / t1) + 2 * jnp.exp(-(tr - te / 2) / t1) - jnp.exp(-tr / t1))
        * jnp.exp(-te / t2)
    )


def bssfp(m0, t1, t2, tr, flip_angle, te=None):
    """Balanced SSFP on resonance with alternating RF phase, at TE (default TR/2).

    ``S = M0 sin(a) (1 - E1) / (1 - (E1 - E2) cos(a) - E1 E2) exp(-TE/T2)``
    (Scheffler & Lehnhardt 2003, eq. 2, TE = TR/2 gives the echo).
    """
    check_all_finite(m0=m0, flip_angle=flip_angle)
    te = tr / 2 if te is None else te
    _check_te_tr(te, tr)
    e1, e2 = jnp.exp(-tr / t1), jnp.exp(-tr / t2)
    return (
        m0
        * jnp.sin(flip_angle)
        * (1 - e1)
        / (1 - (e1 - e2) * jnp.cos(flip_angle) - e1 * e2)
        * jnp.exp(-te / t2)
    )


def multi_echo(s0, t2star, echo_times):
    """Mono-exponential multi-echo decay ``S(TE_n) = S0 exp(-TE_n / T2*)``.

    ``echo_times`` is broadcast against a trailing echo axis of the result.
    """
    check_all_finite(s0=s0, echo_times=echo_times)
    check_positive("T2*", t2star, "s")
    te = jnp.asarray(echo_times)
    return jnp.asarray(s0)[..., None] * jnp.exp(-te / jnp.asarray(t2star)[..., None])


def ernst_angle(tr, t1):
    """Flip angle (rad) maximising the spoiled-GRE signal: ``arccos(exp(-TR/T1))``."""
    check_positive("TR", tr, "s")
    check_positive("T1", t1, "s")
    return jnp.arccos(jnp.exp(-tr / t1))


def snr_efficiency(signal, tr, readout_fraction=1.0):
    """Signal-to-noise per square root of scan time.

    Averaging N = T / TR acquisitions raises SNR by sqrt(N), so the SNR per
    unit time scales as ``S sqrt(readout_fraction / TR)`` (relative units;
    ``readout_fraction`` is the share of TR spent sampling).
    """
    check_all_finite(signal=signal)
    check_positive("TR", tr, "s")
    check_range("readout_fraction", readout_fraction, 0.0, 1.0)
    return signal * jnp.sqrt(readout_fraction / tr)
