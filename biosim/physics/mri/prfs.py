"""Proton-resonance-frequency-shift (PRFS) MR thermometry.

The water proton resonance shifts with temperature by alpha ~ -0.01 ppm/degC
(Ishihara et al. 1995; ~0 for fat).  In a GRE image the phase changes by::

    dphi = gamma * alpha * B0 * TE * dT          (rad; gamma in rad/(s T))

so ``dT = dphi / (gamma alpha B0 TE)`` from the phase difference to a
baseline.  Phase noise of a magnitude-SNR image is 1/SNR rad, hence
(Conturo & Smith 1990)::

    sigma_T = 1 / (|gamma alpha| B0 TE SNR)      (x sqrt(2) for a difference)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ..._core.units import GAMMA_PROTON, PPM
from ..._core.validation import check_all_finite, check_positive

#: PRF thermal coefficient of water, 1/degC (i.e. -0.01 ppm/degC).
ALPHA_WATER = -0.01 * PPM
#: Tissue coefficients (1/degC); fat has essentially no PRF shift.
ALPHA_TISSUE = {
    "water": -0.01 * PPM,
    "brain": -0.0097 * PPM,
    "muscle": -0.0097 * PPM,
    "fat": -0.00018 * PPM,
}


def prfs_phase(delta_t, field_strength, echo_time, alpha=ALPHA_WATER):
    """Phase change (rad) for a temperature change ``delta_t`` (degC)."""
    check_all_finite(delta_t=delta_t, alpha=alpha)
    check_positive("field_strength", field_strength, "T")
    check_positive("echo_time", echo_time, "s")
    return GAMMA_PROTON * alpha * field_strength * echo_time * jnp.asarray(delta_t)


def temperature_change(
    image, baseline, field_strength, echo_time, alpha=ALPHA_WATER, reference_mask=None
):
    """Temperature change (degC) from complex images by baseline subtraction.

    Parameters
    ----------
    image, baseline : complex arrays of the same shape
    field_strength, echo_time : float
        T, s.
    alpha : float
        PRF coefficient, 1/degC.
    reference_mask : bool array, optional
        Unheated reference region: its mean phase difference (field drift)
        is removed before conversion.
    """
    check_all_finite(
        image=image,
        baseline=baseline,
        field_strength=field_strength,
        echo_time=echo_time,
        alpha=alpha,
    )
    image, baseline = jnp.asarray(image), jnp.asarray(baseline)
    if image.shape != baseline.shape:
        raise ParameterError(
            "baseline", f"shape {baseline.shape}", f"shape {image.shape} like image"
        )
    if alpha == 0:
        raise ParameterError("alpha", alpha, "a non-zero PRF coefficient")
    diff = image * jnp.conj(baseline)
    if reference_mask is not None:
        mask = np.asarray(reference_mask, bool)
        if not mask.any():
            raise ParameterError("reference_mask", "empty mask", "at least one reference voxel")
        drift = jnp.angle(jnp.sum(jnp.where(mask, diff, 0)))
        diff = diff * jnp.exp(-1j * drift)
    return jnp.angle(diff) / (GAMMA_PROTON * alpha * field_strength * echo_time)


def temperature_noise(field_strength, echo_time, snr, alpha=ALPHA_WATER, difference=True):
    """Standard deviation (degC) of a PRFS temperature map at magnitude SNR."""
    check_positive("snr", snr)
    sigma = 1.0 / (abs(GAMMA_PROTON * alpha) * field_strength * echo_time * snr)
    return sigma * (np.sqrt(2.0) if difference else 1.0)
