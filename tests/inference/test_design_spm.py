"""SPM-convention design regressors against spm_fMRI_design run under Octave
(values stored in tests/physics/hemodynamics/data/spm_hrf_reference.npz)."""

import json
from pathlib import Path

import numpy as np
import pytest

from biosim import ParameterError
from biosim.inference.design import spm_regressors

DATA = Path(__file__).parents[1] / "physics" / "hemodynamics" / "data"
REF = np.load(DATA / "spm_hrf_reference.npz")
CASES = json.loads(str(REF["cases_json"]))


@pytest.mark.parametrize("i", range(len(CASES["design"])))
def test_spm_regressors_equal_spm_fmri_design(i):
    rt, t, t0, basis, n_scans, conditions = CASES["design"][i]
    x = REF[f"design{i}"]
    col = 0
    for onsets, durations in conditions:
        ours = spm_regressors(onsets, durations, n_scans, rt, basis=basis, fmri_t=t, fmri_t0=t0)
        ref = x[:, col : col + ours.shape[1]]
        col += ours.shape[1]
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert col == x.shape[1] - 1  # the last column is SPM's constant


def test_spm_regressors_block_plateau_and_bad_inputs():
    # a long block reaches the HRF's unit-sum plateau (no 1/dt scaling for epochs)
    x = spm_regressors([10.0], [200.0], 120, 2.0)[:, 0]
    np.testing.assert_allclose(x[60:100], 1.0, atol=1e-3)
    with pytest.raises(ParameterError, match="durations"):
        spm_regressors([1.0], [-1.0], 10, 2.0)
    with pytest.raises(ParameterError, match="fmri_t0"):
        spm_regressors([1.0], [0.0], 10, 2.0, fmri_t0=17)
