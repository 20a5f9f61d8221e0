"""CCA and joint ICA recover shared EEG-fMRI structure with known truth."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.inference.fusion import cca, joint_ica


def test_cca_recovers_the_shared_component():
    rng = np.random.default_rng(0)
    n = 400
    shared = rng.normal(size=n)  # e.g. trial-wise neural gain
    x = np.c_[shared + 0.5 * rng.normal(size=n), rng.normal(size=(n, 4))] @ rng.normal(size=(5, 5))
    y = np.c_[shared + 0.5 * rng.normal(size=n), rng.normal(size=(n, 7))] @ rng.normal(size=(8, 8))
    rho, a, b = cca(x, y, 2)
    expected = 1 / (1 + 0.25)  # corr of two noisy copies (var 1 + 0.25)
    assert rho[0] == pytest.approx(expected, abs=0.05) and rho[1] < 0.3
    assert abs(np.corrcoef(x @ a[:, 0], shared)[0, 1]) > 0.85
    with pytest.raises(ParameterError, match="y"):
        cca(x, y[:10])


def test_joint_ica_recovers_joint_sources_and_loadings():
    rng = np.random.default_rng(1)
    n_sub, p, q, k = 60, 200, 300, 2
    # super-Gaussian joint maps: each component has an EEG part and an fMRI part
    eeg_maps = rng.laplace(size=(k, p)) ** 3
    fmri_maps = rng.laplace(size=(k, q)) ** 3
    loadings = rng.normal(size=(n_sub, k))
    eeg = loadings @ eeg_maps + 0.01 * rng.normal(size=(n_sub, p))
    fmri = loadings @ fmri_maps + 0.01 * rng.normal(size=(n_sub, q))
    e_src, f_src, mix = joint_ica(eeg, fmri, k)
    # each true joint component is matched by one estimated component in both modalities
    for j in range(k):
        ce = max(abs(np.corrcoef(e_src[i], eeg_maps[j])[0, 1]) for i in range(k))
        cf = max(abs(np.corrcoef(f_src[i], fmri_maps[j])[0, 1]) for i in range(k))
        cl = max(abs(np.corrcoef(mix[:, i], loadings[:, j])[0, 1]) for i in range(k))
        assert ce > 0.95 and cf > 0.95 and cl > 0.95
