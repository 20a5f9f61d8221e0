"""Resolution metrics of source estimates (Hauk et al. 2011; Molins et al. 2008).

* localisation error: distance from the true source to the peak of its
  point-spread function (m);
* spatial dispersion: sqrt( sum_j d_j^2 |e_j|^2 / sum_j |e_j|^2 ) around the
  true source (m).
"""

from __future__ import annotations

import numpy as np


def localization_error(estimate, positions, true_index):
    """Distance (m) between the source with the largest |estimate| and the true one."""
    amp = np.abs(np.asarray(estimate)).reshape(len(positions), -1).sum(1)
    return float(np.linalg.norm(positions[np.argmax(amp)] - positions[true_index]))


def spatial_dispersion(estimate, positions, true_index):
    """Amplitude-weighted RMS distance (m) of the estimate from the true source."""
    amp2 = (np.abs(np.asarray(estimate)).reshape(len(positions), -1) ** 2).sum(1)
    d2 = np.sum((positions - positions[true_index]) ** 2, 1)
    return float(np.sqrt(np.sum(d2 * amp2) / np.sum(amp2)))
