"""Resolution metrics of source estimates (Hauk et al. 2011; Molins et al. 2008).

* localisation error: distance from the true source to the peak of its
  point-spread function (m);
* spatial dispersion: sqrt( sum_j d_j^2 |e_j|^2 / sum_j |e_j|^2 ) around the
  true source (m);
* detection rates: sensitivity and false-positive rate of a thresholded
  statistical map against the true activation mask.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ParameterError


def localization_error(estimate, positions, true_index):
    """Distance (m) between the source with the largest |estimate| and the true one."""
    amp = np.abs(np.asarray(estimate)).reshape(len(positions), -1).sum(1)
    return float(np.linalg.norm(positions[np.argmax(amp)] - positions[true_index]))


def spatial_dispersion(estimate, positions, true_index):
    """Amplitude-weighted RMS distance (m) of the estimate from the true source."""
    amp2 = (np.abs(np.asarray(estimate)).reshape(len(positions), -1) ** 2).sum(1)
    d2 = np.sum((positions - positions[true_index]) ** 2, 1)
    return float(np.sqrt(np.sum(d2 * amp2) / np.sum(amp2)))


@dataclasses.dataclass(frozen=True)
class DetectionRates:
    """A thresholded statistical map scored against the true activation mask.

    Attributes
    ----------
    sensitivity : float
        Share of truly active voxels detected (true-positive rate).
    false_positive_rate : float
        Share of inactive voxels detected.
    n_active, n_inactive : int
        Voxels in the truth mask and outside it (within the analysis mask).
    n_true_positive, n_false_positive : int
    """

    sensitivity: float
    false_positive_rate: float
    n_active: int
    n_inactive: int
    n_true_positive: int
    n_false_positive: int


def detection_rates(stat_map, truth_mask, threshold: float, mask=None) -> DetectionRates:
    """Sensitivity and false-positive rate of ``stat_map > threshold`` against
    ``truth_mask`` over the voxels of ``mask`` (default: all)."""
    stat = np.asarray(stat_map, dtype=float)
    truth = np.asarray(truth_mask, dtype=bool)
    if stat.shape != truth.shape:
        raise ParameterError(
            "truth_mask", f"array of shape {truth.shape}", f"the shape of stat_map {stat.shape}"
        )
    if not np.isfinite(threshold):
        raise ParameterError("threshold", threshold, "a finite statistic")
    within = np.ones(stat.shape, bool) if mask is None else np.asarray(mask, bool)
    if within.shape != stat.shape:
        raise ParameterError("mask", f"array of shape {within.shape}", f"shape {stat.shape}")
    detected = (stat > threshold) & within
    active, inactive = truth & within, ~truth & within
    tp, fp = int((detected & active).sum()), int((detected & inactive).sum())
    n_a, n_i = int(active.sum()), int(inactive.sum())
    return DetectionRates(
        tp / n_a if n_a else float("nan"), fp / n_i if n_i else float("nan"), n_a, n_i, tp, fp
    )
