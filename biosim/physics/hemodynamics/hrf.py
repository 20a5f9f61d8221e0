"""Canonical hemodynamic response functions and LTI convolution of designs.

HRFs are differences of two gamma densities (Friston et al. 1998; Glover
1999).  Two conventions are provided, each reproduced exactly:

**SPM** (:func:`spm_hrf`, :func:`spm_basis_functions`, :func:`spm_orth`):
SPM12/SPM25's ``spm_hrf(RT, p, T)`` with ``p = [6 16 1 1 6 0 32]``
(peak delay, undershoot delay, their dispersions, peak-to-undershoot ratio 6,
onset, length, s)::

    dt = RT / T;   u_k = k - onset / dt,  k = 0 .. ceil(length / dt)
    h_k = G(u_k; delay/disp, dt/disp) - G(u_k; under/udisp, dt/udisp) / ratio
    hrf = h[0, T, 2T, ..., floor(length / RT) T] / sum(...)

with ``G(x; a, l)`` the gamma density of shape ``a`` and *rate* ``l``: the
kernel has ``floor(length / RT) + 1`` samples (321/65/33/17/10 at RT
0.1/0.5/1/2/3.22 s).  ``spm_get_bf`` builds its basis sets at the microtime
bin ``dt = RT / T`` (``T = 16`` by default), adds the time derivative over a
1 s onset shift and the dispersion derivative over a 0.01 change of the peak
dispersion, then orthogonalises them with ``spm_orth``.  Values agree with
SPM run under Octave to 1e-12 (tests/physics/hemodynamics/data).

**nilearn** (:func:`nilearn_spm_hrf`, :func:`nilearn_glover_hrf`,
:func:`hrf_kernels`): nilearn's ``spm_hrf``, ``glover_hrf`` and their time and
dispersion derivatives, equal to nilearn's to round-off:

=============  =====  ==========  ==========  ============  =====
model          delay  undershoot  dispersion  u_dispersion  ratio
=============  =====  ==========  ==========  ============  =====
nilearn spm    6 s    16 s        1           1             0.167
glover         6 s    12 s        0.9         0.9           0.48
=============  =====  ==========  ==========  ============  =====

(``ratio`` multiplies the undershoot: 0.167 is nilearn's rounding of SPM's
1/6).  The grid for a repetition time ``tr`` and ``oversampling`` has
``n = round(time_length / (tr / oversampling))`` points spanning
``[0, time_length]`` and the densities start at ``t = dt`` (nilearn's
convention, one step later than SPM's).  Time derivatives are finite
differences over a 0.1 s onset shift; dispersion derivatives over a 0.01
change of the peak dispersion.

All HRFs are written in ``jax.numpy`` and are differentiable with respect to
the shape constants and the design amplitudes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from scipy.special import gammaln as scipy_gammaln

from ..._core.errors import ParameterError
from ..._core.validation import check_all_finite, check_finite, check_positive, is_concrete

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
    """nilearn's HRF basis kernels (``hrf_model``) sampled at ``tr / oversampling``.

    ``"spm"`` here is nilearn's ``spm_hrf`` (see the module docstring); SPM's
    own basis sets are :func:`spm_basis_functions`.

    Parameters
    ----------
    model : str
        One of :data:`HRF_MODELS` (nilearn's ``hrf_model`` names).
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


def nilearn_spm_hrf(tr, oversampling=50, time_length=32.0, onset=0.0):
    """nilearn's ``spm_hrf`` (not SPM's: see :func:`spm_hrf`) on nilearn's grid.

    Parameters
    ----------
    tr : float
        Repetition time, s.
    oversampling : int
        Microtime samples per TR.
    time_length : float
        Kernel length, s.
    onset : float
        Shift of the response, s.

    Returns
    -------
    array, shape (round(time_length * oversampling / tr),)
        Unit-sum kernel, equal to ``nilearn.glm.first_level.spm_hrf``.
    """
    times = hrf_time_grid(tr, oversampling, time_length)
    return gamma_difference_hrf(times, tr / oversampling, onset=onset, **_SHAPES["spm"])


def nilearn_glover_hrf(tr, oversampling=50, time_length=32.0, onset=0.0):
    """nilearn's ``glover_hrf`` (Glover 1999 constants) on nilearn's grid.

    Parameters as :func:`nilearn_spm_hrf`.
    """
    times = hrf_time_grid(tr, oversampling, time_length)
    return gamma_difference_hrf(times, tr / oversampling, onset=onset, **_SHAPES["glover"])


SPM_BASIS_SETS = (
    "hrf",
    "hrf (with time derivative)",
    "hrf (with time and dispersion derivatives)",
)
SPM_TIME_DERIVATIVE_STEP = 1.0  # s, spm_get_bf
SPM_DISPERSION_DERIVATIVE_STEP = 0.01  # spm_get_bf


def _check_microtime(fmri_t):
    if isinstance(fmri_t, bool) or int(fmri_t) != fmri_t or fmri_t < 1:
        raise ParameterError("fmri_t", fmri_t, "a positive integer (microtime bins per scan)")
    return int(fmri_t)


def _spm_gamma_pdf(x, shape, rate, xp=jnp, lgamma=gammaln):
    """SPM's ``spm_Gpdf(x, shape, rate)`` for ``shape > 1`` (zero for x <= 0)."""
    safe = xp.where(x > 0, x, 1.0)
    logpdf = (shape - 1.0) * xp.log(safe) + shape * xp.log(rate) - rate * safe - lgamma(shape)
    return xp.where(x > 0, xp.exp(logpdf), 0.0)


def spm_hrf(
    rt,
    *,
    fmri_t=16,
    delay=6.0,
    undershoot=16.0,
    dispersion=1.0,
    undershoot_dispersion=1.0,
    ratio=6.0,
    onset=0.0,
    length=32.0,
):
    """SPM's canonical HRF, sample for sample (``spm_hrf(RT, p, T)``, SPM12/SPM25).

    Parameters
    ----------
    rt : float
        Sampling interval of the returned kernel, s (SPM's ``RT``).
    fmri_t : int
        Microtime bins per ``rt`` on which the densities are evaluated
        (SPM's ``T``, ``stats.fmri.t`` = 16).
    delay, undershoot : float
        Peak and undershoot delays, s (``p(1)``, ``p(2)``).
    dispersion, undershoot_dispersion : float
        Dispersions, s (``p(3)``, ``p(4)``).
    ratio : float
        Peak-to-undershoot ratio (``p(5)``; the undershoot is divided by it).
    onset : float
        Onset, s (``p(6)``).
    length : float
        Kernel length, s (``p(7)``).

    Returns
    -------
    array, shape (floor(length / rt) + 1,)
        Unit-sum kernel; differentiable with respect to the shape constants.

    Notes
    -----
    Friston et al. (1998) NeuroImage 7:30; see the module docstring for the
    sampling grid.  The shapes ``delay / dispersion`` and
    ``undershoot / undershoot_dispersion`` must exceed 1.
    """
    check_positive("rt", rt, "s")
    check_positive("length", length, "s")
    check_all_finite(
        delay=delay,
        undershoot=undershoot,
        dispersion=dispersion,
        undershoot_dispersion=undershoot_dispersion,
        ratio=ratio,
        onset=onset,
    )
    t = _check_microtime(fmri_t)
    rt = float(rt)
    dt = rt / t
    n_fine = int(np.ceil(float(length) / dt)) + 1
    shape = (delay, undershoot, dispersion, undershoot_dispersion, ratio, onset)
    # NumPy for concrete constants (no per-shape compilation), jax.numpy when traced
    xp, lgamma = (np, scipy_gammaln) if is_concrete(shape) else (jnp, gammaln)
    u = xp.arange(n_fine, dtype=float) - onset / dt
    h = _spm_gamma_pdf(u, delay / dispersion, dt / dispersion, xp, lgamma) - (
        _spm_gamma_pdf(
            u, undershoot / undershoot_dispersion, dt / undershoot_dispersion, xp, lgamma
        )
        / ratio
    )
    h = h[np.arange(int(np.floor(float(length) / rt)) + 1) * t]
    return jnp.asarray(h / xp.sum(h))


def spm_orth(x):
    """SPM's ``spm_orth(X)`` ('pad'): recursive Gram-Schmidt of the columns.

    Each column is orthogonalised with respect to the (kept) columns before
    it; columns that are zero or fall in the span of the previous ones
    (1-norm below ``exp(-32)``) are returned as zeros.

    Parameters
    ----------
    x : array, shape (n, m)

    Returns
    -------
    numpy array, shape (n, m)
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ParameterError("x", f"array of shape {x.shape}", "a 2-D array (n, m)")
    check_finite("x", x)
    n, m = x.shape
    out = np.zeros((n, m))
    cols = [j for j in range(m) if np.any(x[:, j])]
    if not cols:
        return out
    rank = np.linalg.matrix_rank(x[:, cols])
    kept_idx = [cols[0]]
    kept = x[:, [cols[0]]]
    for j in cols[1:]:
        d = x[:, j] - kept @ (np.linalg.pinv(kept) @ x[:, j])
        if np.sum(np.abs(d)) > np.exp(-32):
            kept = np.column_stack([kept, d])
            kept_idx.append(j)
        if len(kept_idx) == rank:
            break
    out[:, kept_idx] = kept
    return out


def spm_basis_functions(name, rt, fmri_t=16):
    """SPM's canonical basis sets (``spm_get_bf`` as called by ``spm_fMRI_design``).

    Parameters
    ----------
    name : str
        One of :data:`SPM_BASIS_SETS`.
    rt : float
        Repetition time, s; the kernels are sampled at the microtime bin
        ``rt / fmri_t``.
    fmri_t : int
        Microtime bins per scan (SPM's ``T``, 16 by default).

    Returns
    -------
    numpy array, shape (n_basis, floor(32 fmri_t / rt) + 1)
        The canonical HRF, then the time derivative (1 s onset shift) and the
        dispersion derivative (0.01 dispersion change), after :func:`spm_orth`
        (SPM's ``xBF.bf``, transposed).
    """
    if name not in SPM_BASIS_SETS:
        raise ParameterError("name", name, f"one of {SPM_BASIS_SETS}")
    check_positive("rt", rt, "s")
    t = _check_microtime(fmri_t)
    dt = float(rt) / t  # xBF.dt
    bf = [np.asarray(spm_hrf(dt, fmri_t=t))]
    if "time" in name:
        shifted = np.asarray(spm_hrf(dt, fmri_t=t, onset=SPM_TIME_DERIVATIVE_STEP))
        bf.append((bf[0] - shifted) / SPM_TIME_DERIVATIVE_STEP)
        if "dispersion" in name:
            wider = np.asarray(
                spm_hrf(dt, fmri_t=t, dispersion=1.0 + SPM_DISPERSION_DERIVATIVE_STEP)
            )
            bf.append((bf[0] - wider) / SPM_DISPERSION_DERIVATIVE_STEP)
    return spm_orth(np.stack(bf, 1)).T


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
