"""nilearn's HRFs: shape, derivatives, convolution, and equality with nilearn."""

import jax
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.hemodynamics import (
    convolve_kernels,
    event_boxcar,
    hrf_kernels,
    hrf_time_grid,
    nilearn_glover_hrf,
    nilearn_spm_hrf,
    sample_at,
)


def test_nilearn_spm_hrf_shape():
    h = np.asarray(nilearn_spm_hrf(tr=1.0, oversampling=10))
    t = hrf_time_grid(1.0, 10)
    assert h.sum() == pytest.approx(1.0)
    assert 4.5 < t[np.argmax(h)] < 5.5
    assert h[t > 10].min() < 0  # undershoot
    assert 14 < t[np.argmin(h)] < 17


def test_block_response_plateaus_at_amplitude():
    tr, os_ = 2.0, 20
    times = np.arange(0, 200, tr / os_)
    box = event_boxcar([10.0], [120.0], [2.5], times)
    y = np.asarray(convolve_kernels(box, nilearn_spm_hrf(tr, os_)))
    plateau = y[(times > 80) & (times < 130)]
    np.testing.assert_allclose(plateau, 2.5, rtol=2e-3)
    s = np.asarray(sample_at(y, times, np.arange(0, 200, tr)))[0]
    assert s.shape == (100,)


def test_zero_duration_event_and_gradient():
    times = np.arange(0, 40, 0.1)
    box = event_boxcar([5.0, 12.0], [0.0, 0.0], [1.0, 2.0], times)
    assert np.asarray(box).sum() == pytest.approx(3.0)
    g = jax.grad(
        lambda a: convolve_kernels(
            event_boxcar([5.0], [2.0], a, times), nilearn_spm_hrf(2.0, 20)
        ).sum()
    )(1.0)
    assert float(g) > 0
    with pytest.raises(ParameterError, match="durations"):
        event_boxcar([1.0], [-1.0], [1.0], times)
    with pytest.raises(ParameterError, match="hrf_model"):
        hrf_kernels("canonical", 2.0)


@pytest.mark.crosscheck
@pytest.mark.parametrize("tr, oversampling", [(2.0, 50), (0.72, 16), (3.22, 1)])
def test_hrfs_equal_nilearn(tr, oversampling):
    hm = pytest.importorskip("nilearn.glm.first_level.hemodynamic_models")
    ours = np.concatenate(
        [
            np.asarray(hrf_kernels("spm + derivative + dispersion", tr, oversampling)),
            np.asarray(hrf_kernels("glover + derivative + dispersion", tr, oversampling)),
        ]
    )
    theirs = np.stack(
        [
            hm.spm_hrf(tr, oversampling),
            hm.spm_time_derivative(tr, oversampling),
            hm.spm_dispersion_derivative(tr, oversampling),
            hm.glover_hrf(tr, oversampling),
            hm.glover_time_derivative(tr, oversampling),
            hm.glover_dispersion_derivative(tr, oversampling),
        ]
    )
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * np.abs(theirs).max())
    np.testing.assert_allclose(
        np.stack([nilearn_spm_hrf(tr, oversampling), nilearn_glover_hrf(tr, oversampling)]),
        theirs[[0, 3]],
        rtol=0,
        atol=1e-12 * np.abs(theirs).max(),
    )
