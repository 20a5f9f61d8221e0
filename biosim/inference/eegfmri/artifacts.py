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


def average_artifact_subtraction(data, triggers, epoch_length, window=30):
    """Subtract a sliding-average template locked to ``triggers`` (samples).

    Parameters
    ----------
    data : (C, T)
    triggers : sample indices of artifact onsets
    epoch_length : samples per epoch
    window : epochs averaged per template (nearest neighbours)
    """
    x = np.asarray(data, float).copy()
    on = _epochs(x, triggers, epoch_length)
    ep = np.stack([x[:, o : o + epoch_length] for o in on])  # (E, C, L)
    half = window // 2
    for i, o in enumerate(on):
        lo, hi = max(0, i - half), min(len(on), i + half + 1)
        x[:, o : o + epoch_length] -= ep[lo:hi].mean(0)
    return x


def optimal_basis_set(data, r_peaks, pre, post, n_components=3):
    """Remove the pulse artifact with an optimal basis set per channel.

    Parameters
    ----------
    data : (C, T)
    r_peaks : sample indices of cardiac R peaks
    pre, post : samples before / after each R peak in the epoch
    n_components : principal components fitted per epoch (Niazy et al.: 3)
    """
    x = np.asarray(data, float).copy()
    length = pre + post
    on = _epochs(x, np.asarray(r_peaks) - pre, length)
    for c in range(x.shape[0]):
        ep = np.stack([x[c, o : o + length] for o in on])  # (E, L)
        mean = ep.mean(0)
        _, _, vt = np.linalg.svd(ep - mean, full_matrices=False)
        basis = np.c_[mean, vt[:n_components].T]  # (L, k+1)
        coef, *_ = np.linalg.lstsq(basis, ep.T, rcond=None)
        fitted = (basis @ coef).T
        for e, o in enumerate(on):
            x[c, o : o + length] -= fitted[e]
    return x


def artifact_reduction_db(before, after, clean):
    """Reduction (dB) of the artifact power: 10 log10(|before - clean|^2 / |after - clean|^2)."""
    b = np.sum((np.asarray(before) - clean) ** 2)
    a = np.sum((np.asarray(after) - clean) ** 2)
    return float(10 * np.log10(b / a))
