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
Deichmann et al. (2000), NeuroImage 12:112: MPRAGE steady state.
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


def mprage(
    m0,
    t1,
    t2star,
    inversion_time=0.9,
    echo_spacing=7.1e-3,
    flip_angle=0.15707963267948966,
    n_echoes=176,
    repetition_time=2.3,
    echo_time=2.98e-3,
    k_centre=None,
):
    """MPRAGE: inversion-prepared segmented spoiled FLASH, signal of the k-space-centre echo
    in the steady state over repeated inversions.

    Per repetition (``repetition_time`` between inversions): an ideal inversion; after
    ``inversion_time - k_centre * echo_spacing`` the first of ``n_echoes`` ideally spoiled
    pulses of ``flip_angle`` ``echo_spacing`` apart; free recovery to the next inversion.
    Every step maps Mz affinely (inversion ``M -> -M``, pulse ``M -> M cos a``, recovery
    for t ``M -> M E + M0 (1 - E)``, ``E = exp(-t/T1)``); composing them gives the
    steady state in closed form (Deichmann, Good, Josephs et al. 2000, NeuroImage 12:112;
    Wang, He, Zheng & Lu 2014, PLoS One 9:e96899) and ``S = M_k sin(a) exp(-TE/T2*)`` for the echo
    of pulse ``k_centre``.

    Parameters
    ----------
    m0, t1, t2star : arrays (T1, T2* in s)
    inversion_time : float
        Inversion to the k-space-centre pulse, s.
    echo_spacing : float
        Between readout pulses, s.
    flip_angle : float
        rad.
    n_echoes : int
        Readout pulses per inversion.
    repetition_time : float
        Between inversions, s.
    echo_time : float
        Pulse to echo, s (< echo_spacing).
    k_centre : int, optional
        0-based index of the k-space-centre pulse (default ``n_echoes // 2``, linear order).

    Defaults: a 3 T ADNI-like protocol (TI 0.9 s, TR 2.3 s, 9 deg, 7.1 ms spacing,
    176 echoes, TE 2.98 ms).
    """
    check_all_finite(m0=m0, flip_angle=flip_angle)
    check_positive("T1", t1, "s")
    check_positive("T2*", t2star, "s")
    check_positive("inversion_time", inversion_time, "s")
    check_positive("repetition_time", repetition_time, "s")
    if int(n_echoes) != n_echoes or n_echoes < 1:
        raise ParameterError("n_echoes", n_echoes, "a positive integer")
    n = int(n_echoes)
    k = n // 2 if k_centre is None else k_centre
    if int(k) != k or not 0 <= k < n:
        raise ParameterError("k_centre", k_centre, f"an integer in [0, {n - 1}]")
    k = int(k)
    check_positive("echo_spacing", echo_spacing, "s")
    check_range("echo_time", echo_time, 0.0, echo_spacing, "s", inclusive=False)
    t_first = inversion_time - k * echo_spacing
    t_last = repetition_time - inversion_time - (n - k) * echo_spacing
    if is_concrete((t_first, t_last)):
        import numpy as np

        if np.any(np.asarray(t_first) < 0):
            raise ParameterError(
                "inversion_time",
                inversion_time,
                f">= k_centre * echo_spacing = {k * echo_spacing} s",
            )
        if np.any(np.asarray(t_last) < 0):
            raise ParameterError(
                "repetition_time",
                repetition_time,
                f">= TI + (n_echoes - k_centre) * echo_spacing = "
                f"{inversion_time + (n - k) * echo_spacing} s",
            )
    m0 = jnp.asarray(m0)
    ca = jnp.cos(flip_angle)

    def relax(t):  # (a, b) of M -> a M + b
        e = jnp.exp(-t / t1)
        return e, m0 * (1 - e)

    def then(first, second):  # second after first
        return second[0] * first[0], second[0] * first[1] + second[1]

    def train(j):  # j pulses, each followed by echo_spacing of recovery
        q = ca * jnp.exp(-echo_spacing / t1)
        e = jnp.exp(-echo_spacing / t1)
        return q**j, m0 * (1 - e) * (1 - q**j) / (1 - q)

    to_k = then((-1.0, 0.0), relax(t_first))  # from just before the inversion to pulse 0
    to_k = then(to_k, train(k))  # ... to just before pulse k
    rest = then(train(n - k), relax(t_last))  # from just before pulse k to the next inversion
    cycle = then(to_k, rest)
    m_ss = cycle[1] / (1 - cycle[0])  # Mz just before each inversion
    m_k = to_k[0] * m_ss + to_k[1]
    return m_k * jnp.sin(flip_angle) * jnp.exp(-echo_time / t2star)


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
