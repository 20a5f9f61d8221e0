"""MR artifact removal from EEG recorded in the scanner.

* Average artifact subtraction (AAS; Allen et al. 2000): the gradient
  artifact repeats with every slice (or volume) trigger, so for each epoch a
  template is the mean of the ``window`` nearest epochs (sliding, so slow
  changes are followed) and is subtracted.
* Optimal basis set (OBS; Niazy et al. 2005) for the ballistocardiogram:
  epochs around each R peak are stacked, their principal components form a
  basis of the pulse artifact's shape variability, and the first
  ``n_components`` (plus the mean) are fitted to each epoch by least squares
  and subtracted.
"""

from __future__ import annotations

import numpy as np

from ..._core.errors import ParameterError


def _epochs(signal, onsets, length):
    onsets = np.asarray(onsets, int)
    ok = (onsets >= 0) & (onsets + length <= signal.shape[-1])
    if not ok.any():
        raise ParameterError(
            "onsets", "no complete epoch", "triggers with a full epoch in the data"
        )
    return onsets[ok]


def _working_copy(data):
    """A writable copy in float32 or float64 (float32 data stays float32: a session
    at 5 kHz is held once, not twice)."""
    x = np.asarray(data)
    if x.ndim != 2:
        raise ParameterError("data", f"array of shape {x.shape}", "(channels, samples)")
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    out = np.array(x, dtype=dtype, copy=True)
    if not np.all(np.isfinite(out)):
        raise ParameterError("data", "array with non-finite values", "finite samples")
    return x, out


def average_artifact_subtraction(data, triggers, epoch_length, window=30):
    """Subtract a sliding-average template locked to ``triggers`` (samples).

    The template of epoch i is the mean of the ``window`` nearest epochs (fewer at
    the ends), kept as a running sum: O(channels x samples) whatever ``window``.

    Parameters
    ----------
    data : (C, T)
    triggers : sample indices of artifact onsets
    epoch_length : samples per epoch
    window : epochs averaged per template (nearest neighbours)
    """
    src, x = _working_copy(data)
    if int(epoch_length) != epoch_length or epoch_length < 1:
        raise ParameterError("epoch_length", epoch_length, "a positive number of samples")
    if int(window) != window or window < 1:
        raise ParameterError("window", window, "a positive number of epochs")
    length = int(epoch_length)
    on = _epochs(x, triggers, length)
    half = int(window) // 2
    epoch = lambda i: src[:, on[i] : on[i] + length]  # noqa: E731  (the original data)
    total = np.zeros((x.shape[0], length))
    lo, hi = 0, 0  # epochs [lo, hi) are in the running sum
    for i, o in enumerate(on):
        want_lo, want_hi = max(0, i - half), min(len(on), i + half + 1)
        while hi < want_hi:
            total += epoch(hi)
            hi += 1
        while lo < want_lo:
            total -= epoch(lo)
            lo += 1
        x[:, o : o + length] -= (total / (hi - lo)).astype(x.dtype)
    return x


def _top_components(residual, k, seed=0):
    """The first ``k`` right singular vectors (L, k) of ``residual`` (E, L) by a
    randomised range finder with two power iterations (Halko, Martinsson & Tropp
    2011, SIAM Review 53:217): O(E L k), where a full SVD is O(E L min(E, L))."""
    e, n = residual.shape
    if k >= min(e, n) // 2:
        return np.linalg.svd(residual, full_matrices=False)[2][:k].T
    rng = np.random.default_rng(seed)
    q = residual @ rng.standard_normal((n, k + 8))
    for _ in range(2):
        q, _ = np.linalg.qr(q)
        q, _ = np.linalg.qr(residual @ (residual.T @ q))
    _, _, vt = np.linalg.svd(q.T @ residual, full_matrices=False)
    return vt[:k].T


def optimal_basis_set(data, r_peaks, pre, post, n_components=3):
    """Remove the pulse artifact with an optimal basis set per channel.

    Parameters
    ----------
    data : (C, T)
    r_peaks : sample indices of cardiac R peaks
    pre, post : samples before / after each R peak in the epoch
    n_components : principal components fitted per epoch (Niazy et al.: 3)
    """
    src, x = _working_copy(data)
    if int(n_components) != n_components or n_components < 0:
        raise ParameterError("n_components", n_components, "a non-negative integer")
    length = pre + post
    on = _epochs(x, np.asarray(r_peaks) - pre, length)
    idx = on[:, None] + np.arange(length)  # (E, L)
    for c in range(x.shape[0]):
        ep = src[c][idx].astype(float)  # (E, L)
        mean = ep.mean(0)
        basis = mean[:, None]
        if n_components:
            basis = np.c_[mean, _top_components(ep - mean, int(n_components), seed=c)]
        coef, *_ = np.linalg.lstsq(basis, ep.T, rcond=None)
        fitted = (basis @ coef).T  # (E, L)
        np.subtract.at(x[c], idx, fitted.astype(x.dtype))
    return x


def artifact_reduction_db(before, after, clean):
    """Reduction (dB) of the artifact power: 10 log10(|before - clean|^2 / |after - clean|^2)."""
    b = np.sum((np.asarray(before) - clean) ** 2)
    a = np.sum((np.asarray(after) - clean) ** 2)
    return float(10 * np.log10(b / a))
