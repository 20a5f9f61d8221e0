"""LCMV beamformer (Van Veen et al. 1997) with unit-gain constraint.

For source k with lead field L_k (C, o): ``W_k = (L_k' C^-1 L_k)^-1 L_k' C^-1``
with the data covariance C regularised by ``reg * mean(diag(C))``; the
neural activity index divides the output power by the projected noise power.
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ParameterError
from .covariance import regularize


def lcmv_weights(gain, data_cov, reg=0.05):
    """Filters (S, o, C) for gain (C, S) or (C, S, 3)."""
    g = np.asarray(gain, float)
    g = g[:, :, None] if g.ndim == 2 else g
    if g.ndim != 3:
        raise ParameterError("gain", f"shape {np.shape(gain)}", "(C, S) or (C, S, 3)")
    ci = np.linalg.inv(regularize(data_cov, reg))
    lk = np.transpose(g, (1, 0, 2))  # (S, C, o)
    a = np.einsum("sca,cd,sdb->sab", lk, ci, lk)  # L' C^-1 L
    return np.einsum("sab,scb,cd->sad", np.linalg.inv(a), lk, ci)


def neural_activity_index(gain, data_cov, noise_cov, reg=0.05):
    """Output power / projected noise power per source (S,)."""
    w = lcmv_weights(gain, data_cov, reg)
    p = np.einsum("sac,cd,sad->s", w, data_cov, w)
    n = np.einsum("sac,cd,sad->s", w, noise_cov, w)
    return p / n
