"""Balloon-Windkessel hemodynamic state equations.

States per region, as in SPM's ``spm_fx_fmri`` (log states for the positive
quantities so that they stay positive under any integrator step):

====  ===================================  ==========
x[0]  s, vasodilatory signal               1/s
x[1]  ln f, log normalised inflow          (f = 1 at rest)
x[2]  ln v, log normalised venous volume   (v = 1 at rest)
x[3]  ln q, log normalised deoxyhemoglobin (q = 1 at rest)
====  ===================================  ==========

Equations (Friston et al. 2000, NeuroImage 12:466; Buxton et al. 1998)::

    ds/dt     = z - kappa s - gamma (f - 1)
    d ln f/dt = s / f
    d ln v/dt = (f - v^(1/alpha)) / (tau v)
    d ln q/dt = (f E(f)/E0 - v^(1/alpha) q / v) / (tau q)
    E(f)      = 1 - (1 - E0)^(1/f)

Rates and time constants are named unambiguously: ``decay_rate`` (kappa) and
``autoregulation_rate`` (gamma) are rates in 1/s; ``transit_time`` (tau) is a
time in s.

Steady state under constant input z (set every derivative to zero)::

    d ln f/dt = 0            =>  s* = 0
    ds/dt = 0, s* = 0        =>  f* = 1 + z / gamma
    d ln v/dt = 0            =>  v* = f*^alpha
    d ln q/dt = 0            =>  q* = v* E(f*) / E0

(the last from f E(f)/E0 = f q / v with v^(1/alpha) = f).  :func:`steady_state`
returns this fixed point; it exists for z > -gamma.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..._core.errors import ParameterError
from ..._core.pytree import pytree_dataclass
from ..._core.validation import check_positive, check_range, is_concrete

N_STATES = 4
STATE_NAMES = ("s", "ln_f", "ln_v", "ln_q")


@pytree_dataclass
class BalloonParams:
    """Balloon-Windkessel constants (all traced leaves: differentiable, vmappable).

    Parameters
    ----------
    decay_rate : float
        kappa, rate of signal decay, 1/s (SPM 0.64; Friston 2000 0.65).
    autoregulation_rate : float
        gamma, rate of flow-dependent elimination (autoregulation), 1/s
        (SPM 0.32; Friston 2000 0.41).
    transit_time : float
        tau, mean hemodynamic transit time through the venous compartment, s
        (SPM 2.0; Friston 2000 0.98).
    grubb_exponent : float
        alpha, outflow-volume exponent (Grubb), dimensionless (0.32).
    resting_extraction : float
        E0, resting oxygen extraction fraction, dimensionless (SPM 0.4;
        Friston 2000 0.34).

    Arrays of shape ``(n_regions,)`` give region-specific constants.
    """

    decay_rate: float = 0.64
    autoregulation_rate: float = 0.32
    transit_time: float = 2.0
    grubb_exponent: float = 0.32
    resting_extraction: float = 0.4

    @classmethod
    def spm(cls, log_decay=0.0, log_transit=0.0) -> BalloonParams:
        """SPM12 ``spm_fx_fmri`` constants with SPM's free-parameter scaling.

        ``decay_rate = 0.64 exp(log_decay)``, ``transit_time = 2 exp(log_transit)``
        (the DCM hemodynamic parameters ``P.decay`` and ``P.transit``).
        """
        return cls(
            decay_rate=0.64 * jnp.exp(log_decay),
            autoregulation_rate=0.32,
            transit_time=2.0 * jnp.exp(log_transit),
            grubb_exponent=0.32,
            resting_extraction=0.4,
        )

    @classmethod
    def friston2000(cls) -> BalloonParams:
        """Constants of Friston, Mechelli, Turner & Price (2000), NeuroImage 12:466."""
        return cls(
            decay_rate=0.65,
            autoregulation_rate=0.41,
            transit_time=0.98,
            grubb_exponent=0.32,
            resting_extraction=0.34,
        )

    def validate(self) -> BalloonParams:
        """Raise :class:`ParameterError` for non-physical constants (concrete values only)."""
        check_positive("decay_rate", self.decay_rate, "1/s")
        check_positive("autoregulation_rate", self.autoregulation_rate, "1/s")
        check_positive("transit_time", self.transit_time, "s")
        check_range("grubb_exponent", self.grubb_exponent, 0.0, 1.0, inclusive=False)
        check_range("resting_extraction", self.resting_extraction, 0.0, 1.0, inclusive=False)
        return self


PRESETS = {"spm": BalloonParams.spm, "friston2000": BalloonParams.friston2000}


def preset(name: str) -> BalloonParams:
    """Named constant sets: ``"spm"`` or ``"friston2000"``."""
    if name not in PRESETS:
        raise ParameterError("preset", name, f"one of {sorted(PRESETS)}")
    return PRESETS[name]()


def oxygen_extraction(f, resting_extraction):
    """E(f) = 1 - (1 - E0)^(1/f): oxygen extraction fraction at flow f."""
    return 1.0 - jnp.power(1.0 - resting_extraction, 1.0 / f)


def balloon_rhs(x, z, params: BalloonParams):
    """Time derivative of the hemodynamic state.

    Parameters
    ----------
    x : array, shape (..., 4)
        States ``[s, ln f, ln v, ln q]``.
    z : array, shape (...)
        Neural (vasoactive) input, 1/s.
    params : BalloonParams
        Constants (scalars or broadcastable to ``x[..., 0]``).

    Returns
    -------
    dxdt : array, shape (..., 4)
    """
    s = x[..., 0]
    f = jnp.exp(x[..., 1])
    v = jnp.exp(x[..., 2])
    q = jnp.exp(x[..., 3])
    kappa, gamma = params.decay_rate, params.autoregulation_rate
    tau, alpha, e0 = params.transit_time, params.grubb_exponent, params.resting_extraction
    fv = jnp.power(v, 1.0 / alpha)
    ds = z - kappa * s - gamma * (f - 1.0)
    dlnf = s / f
    dlnv = (f - fv) / (tau * v)
    dlnq = (f * oxygen_extraction(f, e0) / e0 - fv * q / v) / (tau * q)
    return jnp.stack([ds, dlnf, dlnv, dlnq], axis=-1)


def resting_state(shape=()):
    """The resting state (s = 0, f = v = q = 1) for ``shape`` regions."""
    return jnp.zeros(tuple(shape) + (N_STATES,))


def steady_state(z, params: BalloonParams):
    """Analytic fixed point of :func:`balloon_rhs` under constant input ``z``.

    See the module docstring for the derivation.  Requires ``z > -gamma``.
    """
    if is_concrete(z) and is_concrete(params.autoregulation_rate):
        import numpy as np

        if np.any(np.asarray(z) <= -np.asarray(params.autoregulation_rate)):
            raise ParameterError(
                "z",
                z,
                "input greater than -autoregulation_rate (no positive steady-state flow otherwise)",
            )
    z = jnp.asarray(z, dtype=float)
    f = 1.0 + z / params.autoregulation_rate
    v = jnp.power(f, params.grubb_exponent)
    q = v * oxygen_extraction(f, params.resting_extraction) / params.resting_extraction
    s = jnp.zeros_like(f)
    return jnp.stack([s, jnp.log(f), jnp.log(v), jnp.log(q)], axis=-1)
