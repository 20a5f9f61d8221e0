import numpy as np
import pytest

from biosim import ParameterError
from biosim.inference.slice_timing import region_delays, shift_series


def test_shift_recovers_a_sampled_sinusoid_and_a_smooth_response():
    tr, n = 2.0, 200
    t = np.arange(n) * tr
    f = 0.03  # Hz, well below the Nyquist 0.25 Hz
    delays = np.array([0.0, 0.7, 1.5])
    late = np.stack([np.sin(2 * np.pi * f * (t + d)) for d in delays], 1)
    on_time = shift_series(late, delays, tr)
    inner = slice(20, -20)  # the mirrored ends are approximate
    want = np.broadcast_to(np.sin(2 * np.pi * f * t)[:, None], late.shape)
    np.testing.assert_allclose(on_time[inner], want[inner], atol=2e-3)
    np.testing.assert_allclose(shift_series(late[:, :1], [0.0], tr), late[:, :1], atol=1e-14)


def test_region_delays_weighted_by_voxels():
    labels = np.zeros((2, 2, 3), int)
    labels[:, :, 0] = 1
    labels[0, 0, 2] = 2
    labels[1, 1, 1] = 2
    st = np.array([0.0, 1.0, 0.5])
    np.testing.assert_allclose(region_delays(labels, st), [0.0, 0.75])
    w = np.ones(labels.shape)
    w[1, 1, 1] = 3.0
    np.testing.assert_allclose(region_delays(labels, st, w), [0.0, (0.5 + 3.0) / 4])


def test_errors():
    with pytest.raises(ParameterError, match="delays"):
        shift_series(np.zeros((10, 2)), [0.0, 3.0], 2.0)
    with pytest.raises(ParameterError, match="slice_timing"):
        region_delays(np.ones((2, 2, 3), int), [0.0, 1.0], None)
