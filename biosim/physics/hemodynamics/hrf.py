"""Canonical hemodynamic response functions and LTI convolution of designs.

HRFs are differences of two gamma densities (Friston et al. 1998; Glover
1999)::

    h(t) = G(t - dt; delay/d, d) - ratio * G(t - dt; undershoot/d_u, d_u)

with ``G(x; a, s)`` the gamma pdf of shape ``a`` and scale ``s`` (zero for
x <= 0), normalised to unit sum on the sampling grid.  The constants and the
sampling grid follow nilearn exactly (``spm_hrf``, ``glover_hrf`` and their
time and dispersion derivatives), so biosim's regressors can be compared with
nilearn's to round-off:

=========  =====  ==========  ==========  ============  =====
model      delay  undershoot  dispersion  u_dispersion  ratio
=========  =====  ==========  ==========  ============  =====
spm        6 s    16 s        1           1             0.167
glover     6 s    12 s        0.9         0.9           0.48
=========  =====  ==========  ==========  ============  =====

The grid for a repetition time ``tr`` and ``oversampling`` has
``n = round(time_length / (tr / oversampling))`` points spanning
``[0, time_length]`` (nilearn's convention).  Time derivatives are finite
differences over a 0.1 s onset shift; dispersion derivatives over a 0.01
change of the peak dispersion (SPM's ``spm_get_bf`` does the same).

All functions are written in ``jax.numpy`` and are differentiable with
respect to the shape constants and the design amplitudes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from ..._core.errors import ParameterError
from ..._core.validation import check_all_finite, check_finite, check_positive

HRF_MODELS = (
    "spm",
    "spm + derivative",
    "spm + derivative + dispersion",
    "glover",
    "glover + derivative",
    "glover + derivative + dispersion",
)

_SHAPES = {
    "spm": dict(delay=6.0, undershoot=16.0, dispersion=1.0, undershoot_dispersion=1.0, ratio=0.167),
    "glover": dict(
        delay=6.0, undershoot=12.0, dispersion=0.9, undershoot_dispersion=0.9, ratio=0.48
    ),
}
# nilearn's dispersion derivatives vary the peak dispersion and keep the
# undershoot dispersion at 1 for both models.
_DISPERSION_BASE = {
    "spm": dict(delay=6.0, undershoot=16.0, dispersion=1.0, undershoot_dispersion=1.0, ratio=0.167),
    "glover": dict(
        delay=6.0, undershoot=12.0, dispersion=0.9, undershoot_dispersion=1.0, ratio=0.48
    ),
}
TIME_DERIVATIVE_STEP = 0.1  # s
DISPERSION_DERIVATIVE_STEP = 0.01


def hrf_time_grid(tr: float, oversampling: int = 50, time_length: float = 32.0):
    """Sampling times (s) of the HRF kernels: nilearn's grid (see module doc)."""
    check_positive("tr", tr, "s")
    check_positive("time_length", time_length, "s")
    if int(oversampling) != oversampling or oversampling < 1:
        raise ParameterError("oversampling", oversampling, "a positive integer")
    dt = tr / oversampling
    n = int(np.rint(float(time_length) / dt))
    return np.linspace(0.0, time_length, n)


def _gamma_pdf(x, shape, scale):
    safe = jnp.where(x > 0, x, 1.0)
    logpdf = (shape - 1.0) * jnp.log(safe) - safe / scale - gammaln(shape) - shape * jnp.log(scale)
    return jnp.where(x > 0, jnp.exp(logpdf), 0.0)


def gamma_difference_hrf(
    times,
    dt,
    *,
    onset=0.0,
    delay=6.0,
    undershoot=16.0,
    dispersion=1.0,
    undershoot_dispersion=1.0,
    ratio=0.167,
):
    """Difference-of-gammas HRF on ``times`` (s), normalised to unit sum.

    Parameters
    ----------
    times : array
        Sampling times, s.
    dt : float
        Microtime step, s (the gamma densities start at ``t = dt``, as nilearn).
    onset : float
        Shift of the response, s.
    delay, undershoot : float
        Peak and undershoot delays (gamma shape x dispersion), s.
    dispersion, undershoot_dispersion : float
        Gamma scales, s.
    ratio : float
        Undershoot-to-peak amplitude ratio.
    """
    check_all_finite(onset=onset)
    t = jnp.asarray(times) - onset
    peak = _gamma_pdf(t - dt, delay / dispersion, dispersion)
    under = _gamma_pdf(t - dt, undershoot / undershoot_dispersion, undershoot_dispersion)
    h = peak - ratio * under
    return h / jnp.sum(h)


def _parse_model(model: str):
    if model not in HRF_MODELS:
        raise ParameterError("hrf_model", model, f"one of {HRF_MODELS}")
    base = model.split(" ")[0]
    return base, "derivative" in model, "dispersion" in model


def hrf_kernels(model: str, tr: float, oversampling: int = 50, time_length: float = 32.0):
    """The basis kernels of an HRF model sampled at ``tr / oversampling``.

    Parameters
    ----------
    model : str
        One of :data:`HRF_MODELS`.
    tr : float
        Repetition time, s.
    oversampling : int
        Microtime samples per TR.
    time_length : float
        Kernel length, s.

    Returns
    -------
    kernels : array, shape (n_basis, n_samples)
        Canonical HRF, then the time derivative and the dispersion
        derivative when the model includes them.
    """
    base, with_time, with_dispersion = _parse_model(model)
    times = jnp.asarray(hrf_time_grid(tr, oversampling, time_length))
    dt = tr / oversampling
    shape = _SHAPES[base]
    h = gamma_difference_hrf(times, dt, **shape)
    out = [h]
    if with_time:
        shifted = gamma_difference_hrf(times, dt, onset=TIME_DERIVATIVE_STEP, **shape)
        out.append((h - shifted) / TIME_DERIVATIVE_STEP)
    if with_dispersion:
        disp = dict(_DISPERSION_BASE[base])
        h0 = gamma_difference_hrf(times, dt, **disp)
        disp["dispersion"] = disp["dispersion"] + DISPERSION_DERIVATIVE_STEP
        h1 = gamma_difference_hrf(times, dt, **disp)
        out.append((h0 - h1) / DISPERSION_DERIVATIVE_STEP)
    return jnp.stack(out)


def spm_hrf(tr, oversampling=50, time_length=32.0, onset=0.0):
    """SPM canonical HRF (nilearn's ``spm_hrf``) on the oversampled grid."""
    times = hrf_time_grid(tr, oversampling, time_length)
    return gamma_difference_hrf(times, tr / oversampling, onset=onset, **_SHAPES["spm"])


def glover_hrf(tr, oversampling=50, time_length=32.0, onset=0.0):
    """Glover (1999) HRF with nilearn's constants, on the oversampled grid."""
    times = hrf_time_grid(tr, oversampling, time_length)
    return gamma_difference_hrf(times, tr / oversampling, onset=onset, **_SHAPES["glover"])


def event_boxcar(onsets, durations, amplitudes, times):
    """Microtime boxcar of a condition: ``amplitude`` on ``[onset, onset + duration)``.

    A zero-duration event occupies one microtime sample.  Events are placed
    at the first sample at or after their onset (nilearn's convention).

    Parameters
    ----------
    onsets, durations, amplitudes : array, shape (n_events,)
        Event timing (s) and heights.
    times : array, shape (n_samples,)
        Increasing microtime grid, s.

    Returns
    -------
    boxcar : array, shape (n_samples,)
        Differentiable with respect to ``amplitudes``.
    """
    check_all_finite(amplitudes=amplitudes, times=times)
    onsets = np.atleast_1d(np.asarray(onsets, dtype=float))
    durations = np.atleast_1d(np.asarray(durations, dtype=float))
    check_finite("onsets", onsets)
    check_finite("durations", durations)
    if np.any(durations < 0):
        raise ParameterError("durations", durations.min(), "non-negative durations (s)")
    amplitudes = jnp.broadcast_to(jnp.asarray(amplitudes, dtype=float), onsets.shape)
    times = np.asarray(times, dtype=float)
    n = times.size
    start = np.minimum(np.searchsorted(times, onsets), n - 1)
    stop = np.minimum(np.searchsorted(times, onsets + durations), n - 1)
    stop = np.where((stop == start) & (stop < n - 1), stop + 1, stop)
    steps = jnp.zeros(n).at[start].add(amplitudes).at[stop].add(-amplitudes)
    return jnp.cumsum(steps)


def convolve_kernels(signal, kernels):
    """Causal convolution of a microtime signal with each kernel, truncated
    to the signal length: ``y_b[k] = sum_j h_b[j] x[k - j]``.

    Parameters
    ----------
    signal : array, shape (n_samples,)
    kernels : array, shape (n_basis, n_kernel) or (n_kernel,)

    Returns
    -------
    array, shape (n_basis, n_samples) (or (n_samples,) for one kernel)
    """
    check_all_finite(signal=signal, kernels=kernels)
    signal = jnp.asarray(signal)
    kernels = jnp.asarray(kernels)
    single = kernels.ndim == 1
    kernels = jnp.atleast_2d(kernels)
    n = signal.shape[0]
    out = jnp.stack([jnp.convolve(signal, k, mode="full")[:n] for k in kernels])
    return out[0] if single else out


def sample_at(signal, times, sample_times):
    """Linearly interpolate a microtime signal (last axis) at ``sample_times``."""
    check_all_finite(signal=signal, times=times, sample_times=sample_times)
    signal = jnp.atleast_2d(jnp.asarray(signal))
    out = jnp.stack([jnp.interp(jnp.asarray(sample_times), jnp.asarray(times), s) for s in signal])
    return out
