"""PRFS thermometry: temperature -> complex images -> temperature, drift and noise."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.instruments.thermometry import PRFSThermometry, thermometry_error

N = 32
X = (np.arange(N) - (N - 1) / 2) * 2e-3
R2 = X[:, None] ** 2 + X[None, :] ** 2
TRUTH = np.stack([a * np.exp(-R2 / (2 * 4e-3**2)) for a in (1.0, 3.0, 5.0, 4.0)])
MAG = np.ones((N, N))
REF = R2 > (25e-3) ** 2  # corners: unheated


def test_noise_free_round_trip_is_exact_and_drift_is_removed():
    scan = PRFSThermometry(snr=np.inf, drift=0.5)  # 0.5 Hz/s B0 drift
    series = scan.acquire(TRUTH, MAG, 2e-3)
    assert series.images.shape == (5, N, N) and series.times[-1] == 4.0
    raw = scan.reconstruct(series)
    # uncorrected: a uniform error of drift t / (gamma_bar alpha B0) = -16 K at 4 s
    err = raw[-1] - TRUTH[-1]
    assert np.ptp(err) < 1e-4 and err.mean() == pytest.approx(
        0.5 * 4.0 / (42.577e6 * -0.0097e-6 * 3.0), rel=1e-3
    )
    fixed = scan.reconstruct(series, REF)
    np.testing.assert_allclose(fixed, TRUTH, atol=1e-4)


def test_noise_matches_the_conturo_smith_prediction():
    scan = PRFSThermometry(snr=30.0, seed=3)
    rec = scan.reconstruct(scan.acquire(np.zeros((4, N, N)), MAG, 2e-3))
    assert rec.std() == pytest.approx(scan.temperature_std, rel=0.08)
    e = thermometry_error(rec, np.zeros_like(rec), np.ones((N, N), bool))
    assert e.rmse == pytest.approx(rec.std(), rel=0.05) and len(e.per_frame_rmse) == 4


def test_motion_moves_the_map_and_bad_inputs_are_refused():
    scan = PRFSThermometry(snr=np.inf, motion=1e-3, seed=0)
    series = scan.acquire(TRUTH, MAG, 2e-3)
    assert np.any(series.motion[1:] != 0) and np.all(series.motion[0] == 0)
    rec = scan.reconstruct(series, REF)
    assert thermometry_error(rec, TRUTH, ~REF).rmse > 1e-3  # motion leaves an error
    with pytest.raises(ParameterError, match="te"):
        PRFSThermometry(te=0.05, tr=0.03)
    with pytest.raises(ParameterError, match="delta_t"):
        scan.acquire(TRUTH[0], MAG, 2e-3)
