"""fMRI design matrices: conditions convolved with HRFs, parametric
modulation, cosine (DCT) drifts and nuisance regressors.

Conditions are boxcars at microtime ``tr / oversampling`` convolved with the
HRF basis of :mod:`biosim.physics.hemodynamics.hrf` (nilearn-identical
kernels) and sampled at the frame times.  Drifts: the discrete cosine set of
SPM/nilearn with cut-off period ``high_pass_period`` (128 s by default)::

    d_k(t_n) = sqrt(2 / N) cos(pi (n + 1/2) k / N),   k = 1 .. floor(2 N TR / period)

plus a constant column.  Parametric modulation (EEG-informed fMRI) adds, per
condition, a regressor whose event heights are the mean-centred modulator
(e.g. trial-wise EEG amplitudes).
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ParameterError
from ..physics.hemodynamics.hrf import convolve_kernels, event_boxcar, hrf_kernels


def cosine_drifts(n_scans, tr, high_pass_period=128.0):
    """DCT drift regressors (n_scans, K) (without the constant)."""
    if high_pass_period <= 0:
        raise ParameterError("high_pass_period", high_pass_period, "a positive period in s")
    k = int(np.floor(2 * n_scans * tr / high_pass_period))
    n = np.arange(n_scans)
    return (
        np.stack(
            [
                np.sqrt(2.0 / n_scans) * np.cos(np.pi * (n + 0.5) * j / n_scans)
                for j in range(1, k + 1)
            ],
            1,
        )
        if k > 0
        else np.zeros((n_scans, 0))
    )


def design_matrix(
    n_scans,
    tr,
    events,
    *,
    hrf_model="spm",
    oversampling=50,
    high_pass_period=128.0,
    confounds=None,
    confound_names=None,
    modulators=None,
):
    """Build a design matrix.

    Parameters
    ----------
    n_scans : int
    tr : float, s
    events : list of dicts with "onset", "duration", "trial_type" (and "modulation")
    hrf_model : str
        See :data:`biosim.physics.hemodynamics.hrf.HRF_MODELS`.
    confounds : array (n_scans, q), optional (e.g. six motion parameters)
    modulators : dict trial_type -> array (n_events_of_type,), optional
        Parametric modulators (mean-centred here).

    Returns
    -------
    X : array (n_scans, p)
    names : list of str
    """
    if n_scans < 2 or tr <= 0:
        raise ParameterError("n_scans/tr", (n_scans, tr), "n_scans >= 2 and tr > 0")
    frame_times = np.arange(n_scans) * tr
    dt = tr / oversampling
    fine = np.arange(n_scans * oversampling) * dt
    kernels = hrf_kernels(hrf_model, tr, oversampling)
    suffix = ["", "_derivative", "_dispersion"]
    cols, names = [], []
    types = sorted({e["trial_type"] for e in events})
    modulators = modulators or {}
    for tt in types:
        ev = [e for e in events if e["trial_type"] == tt]
        onsets = np.array([e["onset"] for e in ev])
        durations = np.array([e["duration"] for e in ev])
        heights = [np.array([e.get("modulation", 1.0) for e in ev])]
        labels = [tt]
        if tt in modulators:
            m = np.asarray(modulators[tt], float)
            if m.shape != onsets.shape:
                raise ParameterError(
                    f"modulators[{tt!r}]",
                    f"{m.size} values",
                    f"{onsets.size} values (one per event)",
                )
            heights.append(m - m.mean())
            labels.append(f"{tt}_x_mod")
        for h, lab in zip(heights, labels):
            box = event_boxcar(onsets, durations, h, fine)
            conv = np.asarray(convolve_kernels(box, kernels))
            for b in range(conv.shape[0]):
                cols.append(np.interp(frame_times, fine, conv[b]))
                names.append(lab + suffix[b])
    if confounds is not None:
        conf = np.asarray(confounds, float)
        if conf.shape[0] != n_scans:
            raise ParameterError("confounds", f"array of shape {conf.shape}", f"({n_scans}, q)")
        for j in range(conf.shape[1]):
            cols.append(conf[:, j])
            names.append(confound_names[j] if confound_names else f"confound_{j}")
    drifts = cosine_drifts(n_scans, tr, high_pass_period)
    for j in range(drifts.shape[1]):
        cols.append(drifts[:, j])
        names.append(f"drift_{j + 1}")
    cols.append(np.ones(n_scans))
    names.append("constant")
    return np.stack(cols, 1), names
