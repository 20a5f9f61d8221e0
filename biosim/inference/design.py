"""fMRI design matrices: conditions convolved with HRFs, parametric
modulation, cosine (DCT) drifts and nuisance regressors.

:func:`design_matrix` follows nilearn's convention: conditions are boxcars at
microtime ``tr / oversampling`` convolved with nilearn's HRF basis
(:func:`biosim.physics.hemodynamics.hrf_kernels`; ``hrf_model="spm"`` is
nilearn's ``spm_hrf``, whose undershoot ratio is 0.167 and whose grid starts
one microtime step later than SPM's) and linearly interpolated at the frame
times, so its columns equal nilearn's ``make_first_level_design_matrix``.
:func:`spm_regressors` builds a condition's regressors as SPM's
``spm_fMRI_design`` does (SPM's basis sets, microtime bins ``T`` and
reference bin ``T0``).  Drifts: the discrete cosine set of
SPM/nilearn with cut-off period ``high_pass_period`` (128 s by default)::

    d_k(t_n) = sqrt(2 / N) cos(pi (n + 1/2) k / N),   k = 1 .. floor(2 N TR / period)

plus a constant column.  Parametric modulation (EEG-informed fMRI) adds, per
condition, a regressor whose event heights are the mean-centred modulator
(e.g. trial-wise EEG amplitudes).
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ParameterError
from .._core.validation import check_finite, check_positive
from ..physics.hemodynamics.hrf import (
    convolve_kernels,
    event_boxcar,
    hrf_kernels,
    spm_basis_functions,
    spm_orth,
)


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


def _matlab_round(x):
    """MATLAB's ``round`` (halves away from zero), unlike ``numpy.rint``."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def spm_regressors(onsets, durations, n_scans, rt, *, basis="hrf", fmri_t=16, fmri_t0=8):
    """One condition's regressors built as SPM12/SPM25's ``spm_fMRI_design``.

    The stimulus function lives on microtime bins ``dt = rt / fmri_t`` with a
    32-bin lead: an event at ``onset`` (s) switches on at bin
    ``round(onset / dt) + 32`` and off ``round(duration / dt) + 1`` bins later
    (``spm_get_ons``, units 'secs'); when every duration is zero the sticks
    have height ``1 / dt``.  It is convolved with
    :func:`~biosim.physics.hemodynamics.spm_basis_functions`, sampled at bins
    ``n fmri_t + fmri_t0 + 31`` (0-based) for scan ``n`` and the basis columns
    are orthogonalised with :func:`~biosim.physics.hemodynamics.spm_orth`.

    Parameters
    ----------
    onsets, durations : array, shape (n_events,)
        Event timing, s (``durations`` may be a scalar).
    n_scans : int
    rt : float
        Repetition time, s.
    basis : str
        One of :data:`biosim.physics.hemodynamics.SPM_BASIS_SETS`.
    fmri_t, fmri_t0 : int
        Microtime resolution and reference bin (SPM's ``T`` = 16, ``T0`` = 8).

    Returns
    -------
    numpy array, shape (n_scans, n_basis)
    """
    onsets = np.atleast_1d(np.asarray(onsets, dtype=float))
    durations = np.broadcast_to(np.asarray(durations, dtype=float), onsets.shape)
    check_finite("onsets", onsets)
    check_finite("durations", durations)
    if np.any(durations < 0):
        raise ParameterError("durations", durations.min(), "non-negative durations (s)")
    if int(n_scans) != n_scans or n_scans < 1:
        raise ParameterError("n_scans", n_scans, "a positive integer")
    check_positive("rt", rt, "s")
    bf = spm_basis_functions(basis, rt, fmri_t)  # validates basis and fmri_t
    if int(fmri_t0) != fmri_t0 or not 1 <= fmri_t0 <= fmri_t:
        raise ParameterError("fmri_t0", fmri_t0, f"an integer reference bin in 1..{fmri_t}")
    n_scans, t, t0 = int(n_scans), int(fmri_t), int(fmri_t0)
    dt = float(rt) / t
    height = 1.0 / dt if not np.any(durations) else 1.0
    ton = np.maximum(_matlab_round(onsets / dt) + 33, 1).astype(int)  # 1-based, as SPM
    tof = np.maximum(_matlab_round(durations / dt) + ton + 1, 1).astype(int)
    n_fine = n_scans * t + 128
    sf = np.zeros(n_fine)
    np.add.at(sf, ton[ton < n_fine] - 1, height)
    np.add.at(sf, tof[tof < n_fine] - 1, -height)
    sf = np.cumsum(sf)[: n_scans * t + 32]
    conv = np.stack([np.convolve(sf, k)[: sf.size] for k in bf], 1)
    return spm_orth(conv[np.arange(n_scans) * t + t0 + 31])
