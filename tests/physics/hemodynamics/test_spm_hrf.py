"""SPM's canonical HRF and basis sets, sample for sample against SPM12 run
under Octave (values stored in data/spm_hrf_reference.npz by
data/make_spm_hrf_reference.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.hemodynamics import (
    SPM_BASIS_SETS,
    nilearn_spm_hrf,
    spm_basis_functions,
    spm_hrf,
    spm_orth,
)

DATA = Path(__file__).parent / "data"
REF = np.load(DATA / "spm_hrf_reference.npz")
CASES = json.loads(str(REF["cases_json"]))
P_NAMES = ("delay", "undershoot", "dispersion", "undershoot_dispersion", "ratio", "onset", "length")


def _close(ours, ref):
    ours = np.asarray(ours)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("i", range(len(CASES["hrf"])))
def test_spm_hrf_equals_spm(i):
    rt, t, p = CASES["hrf"][i]
    kwargs = dict(zip(P_NAMES, p)) if p else {}
    _close(spm_hrf(rt, fmri_t=t, **kwargs), REF[f"hrf{i}"][:, 0])


def test_spm_hrf_sample_counts():
    counts = [spm_hrf(rt).size for rt in (0.1, 0.5, 1.0, 2.0, 3.22)]
    assert counts == [321, 65, 33, 17, 10]
    h = np.asarray(spm_hrf(0.1))
    assert h.sum() == pytest.approx(1.0, abs=1e-14)
    assert h[0] == 0.0  # the densities start at t = 0 (nilearn's one step later)
    assert 4.5 < 0.1 * np.argmax(h) < 5.5
    # nilearn's "spm" differs (ratio 0.167, shifted grid, 320 samples)
    assert nilearn_spm_hrf(0.1, 1).size == 320


@pytest.mark.parametrize("i", range(len(CASES["bf"])))
def test_spm_basis_functions_equal_spm_get_bf(i):
    rt, t = CASES["bf"][i]
    for j, name in enumerate(CASES["basis_sets"]):
        _close(spm_basis_functions(name, rt, t).T, REF[f"bf{i}_{j}"])


def test_spm_basis_is_orthogonal_and_hrf_differentiable():
    bf = spm_basis_functions(SPM_BASIS_SETS[2], 2.0)
    gram = bf @ bf.T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-14)
    # d hrf / d delay against a central difference
    f = lambda d: spm_hrf(2.0, delay=d)[3]  # noqa: E731
    eps = 1e-5
    fd = (f(6.0 + eps) - f(6.0 - eps)) / (2 * eps)
    assert float(jax.grad(f)(6.0)) == pytest.approx(float(fd), rel=1e-6)


def test_spm_orth_drops_dependent_columns_and_bad_inputs():
    x = np.array([[1.0, 2.0, 0.0, 1.0], [1.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 2.0]])
    o = spm_orth(x)
    np.testing.assert_array_equal(o[:, 1:3], 0.0)  # copy of column 0, zero column
    np.testing.assert_allclose(o[:, 0], x[:, 0])
    assert abs(o[:, 0] @ o[:, 3]) < 1e-14
    with pytest.raises(ParameterError, match="name"):
        spm_basis_functions("Fourier set", 2.0)
    with pytest.raises(ParameterError, match="fmri_t"):
        spm_hrf(2.0, fmri_t=2.5)
    with pytest.raises(ParameterError, match="rt"):
        spm_hrf(0.0)


@pytest.mark.slow
@pytest.mark.crosscheck
def test_reference_file_regenerates_under_octave(tmp_path):
    """Live check: rerun SPM under Octave (needs SPM12_PATH and octave)."""
    spm = os.environ.get("SPM12_PATH")
    if not spm or shutil.which("octave") is None:
        pytest.skip("needs SPM12_PATH and octave")
    script = DATA / "make_spm_hrf_reference.py"
    src = tmp_path / script.name
    src.write_text(script.read_text())
    subprocess.run([sys.executable, str(src)], check=True, env=dict(os.environ), cwd=tmp_path)
    fresh = np.load(tmp_path / "spm_hrf_reference.npz")
    for key in REF.files:
        if key not in ("cases_json", "spm_version"):
            np.testing.assert_allclose(fresh[key], REF[key], rtol=0, atol=1e-14)
