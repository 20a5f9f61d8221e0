"""RF pulse shapes and slice selection.

A windowed sinc pulse of duration T and time-bandwidth product TBW has a
bandwidth ``BW = TBW / T`` (Hz).  With a slice-select gradient G (T/m) the
excited slice has thickness ``BW / (gamma_bar G)``.  In the small-tip regime
the transverse slice profile is the Fourier transform of the pulse envelope
evaluated at ``f = gamma_bar G z`` (Pauly, Nishimura & Macovski 1989).
"""

from __future__ import annotations

import numpy as np

from ..._core.units import GAMMA_BAR_PROTON, GAMMA_PROTON
from ..._core.validation import check_positive, check_range


def sinc_pulse(flip_angle, duration, time_bandwidth=4.0, n_samples=256, window="hann"):
    """Windowed sinc RF envelope scaled to ``flip_angle``.

    Parameters
    ----------
    flip_angle : float
        rad.
    duration : float
        s.
    time_bandwidth : float
        Number of zero crossings spanned, dimensionless.
    n_samples : int
    window : {"hann", "none"}

    Returns
    -------
    b1 : array (n_samples,), T (real: applied along x)
    dt : float, s per sample
    """
    check_positive("duration", duration, "s")
    check_positive("time_bandwidth", time_bandwidth)
    check_range("flip_angle", flip_angle, 0.0, 2 * np.pi, "rad")
    dt = duration / n_samples
    t = (np.arange(n_samples) + 0.5) * dt - duration / 2
    env = np.sinc(time_bandwidth * t / duration)
    if window == "hann":
        env = env * (0.5 + 0.5 * np.cos(2 * np.pi * t / duration))
    area = flip_angle / GAMMA_PROTON  # T s
    return env * area / (env.sum() * dt), dt


def slice_select_gradient(duration, time_bandwidth, thickness):
    """Gradient (T/m) that makes a sinc pulse excite a slice of ``thickness`` m."""
    check_positive("thickness", thickness, "m")
    return time_bandwidth / duration / (GAMMA_BAR_PROTON * thickness)


def small_tip_profile(b1, dt, frequencies):
    """Small-tip slice profile: |gamma int b1(t) exp(-2 pi i f t) dt| (rad) at ``frequencies`` (Hz),
    with t measured from the pulse centre."""
    n = b1.shape[0]
    t = (np.arange(n) + 0.5) * dt - n * dt / 2
    ft = np.exp(-2j * np.pi * np.outer(frequencies, t)) @ b1 * dt
    return np.abs(GAMMA_PROTON * ft)
