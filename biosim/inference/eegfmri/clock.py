"""EEG-MRI clock synchronisation.

The EEG amplifier timestamps the scanner's volume (or slice) triggers on its
own clock.  With trigger times t_MRI (nominal, from the sequence) and
t_EEG (measured), the two clocks are related by ``t_EEG = alpha t_MRI + beta``
(alpha = 1 + drift, beta = offset); a least-squares line through the trigger
pairs estimates both (Mandelkow et al. 2006 synchronise the clocks in
hardware; this is the software correction).  :func:`resample_to_mri_clock`
then re-samples the EEG onto a regular grid of the MRI clock.
"""

from __future__ import annotations

import numpy as np

from ..._core.errors import ParameterError


def estimate_clock_drift(mri_trigger_times, eeg_trigger_times):
    """Fit ``t_EEG = alpha t_MRI + beta``; returns (alpha, beta, residual_rms_s)."""
    tm = np.asarray(mri_trigger_times, float)
    te = np.asarray(eeg_trigger_times, float)
    if tm.shape != te.shape or tm.size < 2:
        raise ParameterError(
            "eeg_trigger_times",
            f"{te.size} triggers",
            f"{tm.size} triggers matching the MRI triggers (at least 2)",
        )
    a = np.c_[tm, np.ones_like(tm)]
    (alpha, beta), *_ = np.linalg.lstsq(a, te, rcond=None)
    resid = te - (alpha * tm + beta)
    return float(alpha), float(beta), float(np.sqrt(np.mean(resid**2)))


def resample_to_mri_clock(data, eeg_times, alpha, beta, sfreq):
    """Re-sample EEG ``data`` (C, T) recorded at ``eeg_times`` (EEG clock, s)
    onto a regular grid of the MRI clock at ``sfreq`` Hz (cubic interpolation).

    Returns (data_on_mri_clock, mri_times).
    """
    from scipy.interpolate import CubicSpline

    t_mri_of_samples = (np.asarray(eeg_times, float) - beta) / alpha
    grid = np.arange(t_mri_of_samples[0], t_mri_of_samples[-1], 1.0 / sfreq)
    spline = CubicSpline(t_mri_of_samples, np.asarray(data, float), axis=1)
    return spline(grid), grid
