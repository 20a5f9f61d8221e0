"""fMRI-informed EEG/MEG source imaging.

* Hard constraint: sources are allowed only where fMRI is active (the gain is
  restricted to those columns).
* Soft constraint (Liu, Belliveau & Dale 1998): the source variance of
  fMRI-inactive locations is a fraction ``inactive_weight`` of that of active
  ones; the "90 % weighting" of Liu et al. is inactive_weight = 0.1.

Both are biased towards fMRI: an electrically active but fMRI-silent source
(e.g. a transient that produces no sustained hemodynamic change) is forced
into the wrong place by the hard mask and attenuated by the soft prior; see
``tests/inference/test_fmri_prior.py`` for the measured gain and failure mode.
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ParameterError
from .minimum_norm import apply_inverse, make_inverse_operator


def fmri_weights(active, inactive_weight=0.1):
    """Source variance weights: 1 where ``active``, ``inactive_weight`` elsewhere."""
    active = np.asarray(active, bool)
    if not 0 <= inactive_weight <= 1:
        raise ParameterError("inactive_weight", inactive_weight, "a weight in [0, 1]")
    return np.where(active, 1.0, inactive_weight)


def fmri_masked_inverse(gain, noise_cov, active, data, method="dSPM", **kwargs):
    """Hard-constrained estimate: inverse on the fMRI-active sources only; returns a
    full-size estimate (zeros elsewhere)."""
    active = np.asarray(active, bool)
    if not active.any():
        raise ParameterError("active", "an empty mask", "at least one fMRI-active source")
    g = np.asarray(gain)
    inv = make_inverse_operator(g[:, active], noise_cov, **kwargs)
    est = apply_inverse(inv, data, method)
    out = np.zeros((g.shape[1],) + est.shape[1:])
    out[active] = est
    return out
