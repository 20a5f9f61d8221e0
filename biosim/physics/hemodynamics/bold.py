"""BOLD observation equations: from venous volume v and deoxyhemoglobin q
(normalised to rest) to the fractional BOLD signal change.

Both models have the form (Buxton et al. 1998)::

    dS/S = V0 [k1 (1 - q) + k2 (1 - q/v) + k3 (1 - v)]

* ``"classic"`` (Friston et al. 2000; Buxton et al. 1998), valid at 1.5 T and
  TE about 40 ms: ``k1 = 7 E0``, ``k2 = 2``, ``k3 = 2 E0 - 0.2``.
* ``"revised"`` (Stephan et al. 2007, NeuroImage 38:387, as in SPM's
  ``spm_gx_fmri``), with explicit field strength and echo time::

      k1 = 4.3 nu0 E0 TE,   k2 = eps r0 E0 TE,   k3 = 1 - eps
      nu0 = frequency offset at the outer surface of a fully deoxygenated
            vessel, Hz
      r0  = slope of intravascular R2* relaxation versus extraction, 1/s

  eps is the ratio of intra- to extravascular signal at rest.

Two presets, named for what they are:

* :meth:`BOLDParams.spm`: SPM12/SPM25's fixed constants (``spm_gx_fmri``):
  nu0 = 40.3 Hz, TE = 0.04 s, r0 = 25 1/s, E0 = 0.4, V0 = 4 %, whatever the
  scanner's field.
* :meth:`BOLDParams.at_field`: field-dependent constants,
  nu0 = 28.265 B0 Hz (B0 in T; Heinzle et al. 2016) and r0 interpolated
  from 25, 110 and 340 1/s at 1.5, 3 and 7 T (Uludag et al. 2009), at the
  given echo time.  At 1.5 T and TE = 40 ms this is *not* SPM's model
  (nu0 = 42.4 Hz against SPM's 40.3 Hz).

Units: the signal is a *fraction* (0.01 is a 1 % change); V0 is the resting
venous blood volume fraction (SPM uses 4 %, i.e. 0.04).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ..._core.pytree import pytree_dataclass, static_field
from ..._core.validation import check_positive, check_range, is_concrete

#: Field strengths (T) and intravascular relaxation slopes r0 (1/s) tabulated
#: by Uludag, Mueller-Bierl & Ugurbil (2009) and used by Heinzle et al. (2016).
R0_TABLE_B0 = (1.5, 3.0, 7.0)
R0_TABLE_VALUES = (25.0, 110.0, 340.0)

#: nu0 / B0, Hz per tesla (Heinzle et al. 2016; 42.4 Hz at 1.5 T).
NU0_PER_TESLA = 28.265

#: SPM12/SPM25 ``spm_gx_fmri`` constants (independent of the field strength):
#: nu0 (Hz), TE (s), r0 (1/s), E0, V0 (fraction; SPM writes 4 for percent).
SPM_NU0, SPM_ECHO_TIME, SPM_R0, SPM_E0, SPM_V0 = 40.3, 0.04, 25.0, 0.4, 0.04

BOLD_MODELS = ("revised", "classic")


def intravascular_relaxation_slope(field_strength):
    """r0 (1/s) at ``field_strength`` (T), interpolated linearly between the
    tabulated 1.5, 3 and 7 T values.  Outside [1.5, 7] T pass ``r0`` explicitly."""
    if is_concrete(field_strength):
        b0 = np.asarray(field_strength, dtype=float)
        if np.any((b0 < R0_TABLE_B0[0]) | (b0 > R0_TABLE_B0[-1])):
            raise ParameterError(
                "field_strength",
                float(b0.min()) if b0.ndim else float(b0),
                "a value in [1.5, 7] T for the tabulated r0; pass r0 explicitly otherwise",
            )
    return jnp.interp(field_strength, jnp.asarray(R0_TABLE_B0), jnp.asarray(R0_TABLE_VALUES))


@pytree_dataclass
class BOLDParams:
    """Parameters of the BOLD observation equation.

    Parameters
    ----------
    field_strength : float
        B0, T (revised model only; sets nu0 and r0 unless they are given).
    echo_time : float
        TE, s (revised model only; SPM default 0.04 s).
    resting_venous_volume : float
        V0, resting venous blood volume fraction (SPM 0.04; Friston 2000 0.02).
    epsilon : float
        Ratio of intra- to extravascular signal (revised model; SPM
        ``exp(P.epsilon)``, 1 at the prior mean).
    resting_extraction : float
        E0, must equal the Balloon model's value (0.4 SPM; 0.34 Friston 2000).
    r0 : float or None
        Intravascular relaxation slope, 1/s; None takes it from the
        field-strength table.
    nu0 : float or None
        Frequency offset of a fully deoxygenated vessel, Hz; None takes
        ``28.265 field_strength``.
    model : {"revised", "classic"}
        Static choice of observation equation.
    """

    field_strength: float = 3.0
    echo_time: float = 0.04
    resting_venous_volume: float = 0.04
    epsilon: float = 1.0
    resting_extraction: float = 0.4
    r0: float | None = None
    nu0: float | None = None
    model: str = static_field(default="revised")

    @classmethod
    def spm(cls, log_epsilon=0.0) -> BOLDParams:
        """SPM12/SPM25's ``spm_gx_fmri`` constants, the same at every field.

        nu0 = 40.3 Hz, TE = 0.04 s, r0 = 25 1/s, E0 = 0.4, V0 = 4 % and
        eps = exp(``log_epsilon``) (SPM's ``P.epsilon``).  ``field_strength``
        is set to 1.5 T for the record only: it does not enter the
        coefficients.  For constants that follow the scanner use
        :meth:`at_field`.
        """
        return cls(
            field_strength=1.5,
            echo_time=SPM_ECHO_TIME,
            resting_venous_volume=SPM_V0,
            epsilon=jnp.exp(log_epsilon),
            resting_extraction=SPM_E0,
            r0=SPM_R0,
            nu0=SPM_NU0,
        )

    @classmethod
    def at_field(cls, field_strength, echo_time=0.04, log_epsilon=0.0) -> BOLDParams:
        """Field-dependent constants: nu0 = 28.265 B0 Hz, r0 from the 1.5/3/7 T
        table (Uludag et al. 2009), at ``echo_time`` (s), with SPM's V0 = 4 %,
        E0 = 0.4 and eps = exp(``log_epsilon``)."""
        return cls(
            field_strength=field_strength,
            echo_time=echo_time,
            resting_venous_volume=SPM_V0,
            epsilon=jnp.exp(log_epsilon),
            resting_extraction=SPM_E0,
        )

    @classmethod
    def friston2000(cls) -> BOLDParams:
        """The classic coefficients with V0 = 2 % and E0 = 0.34."""
        return cls(resting_venous_volume=0.02, resting_extraction=0.34, model="classic")

    def validate(self) -> BOLDParams:
        """Raise :class:`ParameterError` for invalid values (concrete values only)."""
        if self.model not in BOLD_MODELS:
            raise ParameterError("model", self.model, f"one of {BOLD_MODELS}")
        check_positive("field_strength", self.field_strength, "T")
        check_positive("echo_time", self.echo_time, "s")
        check_range("resting_venous_volume", self.resting_venous_volume, 0.0, 1.0, inclusive=False)
        check_positive("epsilon", self.epsilon)
        check_range("resting_extraction", self.resting_extraction, 0.0, 1.0, inclusive=False)
        if self.r0 is not None:
            check_positive("r0", self.r0, "1/s")
        if self.nu0 is not None:
            check_positive("nu0", self.nu0, "Hz")
        return self

    def coefficients(self):
        """(k1, k2, k3) of the selected model."""
        e0 = self.resting_extraction
        if self.model == "classic":
            return 7.0 * e0, 2.0, 2.0 * e0 - 0.2
        r0 = intravascular_relaxation_slope(self.field_strength) if self.r0 is None else self.r0
        nu0 = NU0_PER_TESLA * self.field_strength if self.nu0 is None else self.nu0
        te = self.echo_time
        return 4.3 * nu0 * e0 * te, self.epsilon * r0 * e0 * te, 1.0 - self.epsilon


def bold_signal(v, q, params: BOLDParams):
    """Fractional BOLD signal change from normalised volume ``v`` and
    deoxyhemoglobin ``q`` (same shapes).  Zero at rest (v = q = 1).

    NaN states give NaN (not an error): the states come from an integration, and
    fits (DCM) reject parameters whose integration diverges by that NaN."""
    k1, k2, k3 = params.coefficients()
    return params.resting_venous_volume * (k1 * (1.0 - q) + k2 * (1.0 - q / v) + k3 * (1.0 - v))


def bold_from_states(x, params: BOLDParams):
    """BOLD fraction from Balloon states ``x[..., :] = [s, ln f, ln v, ln q]``."""
    return bold_signal(jnp.exp(x[..., 2]), jnp.exp(x[..., 3]), params)
