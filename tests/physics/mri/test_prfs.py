"""PRFS thermometry: phase law, drift correction, noise law by Monte Carlo."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.mri import prfs


def test_phase_law_and_inversion():
    b0, te = 3.0, 0.012
    dT = np.linspace(0, 20, 11)
    phase = np.asarray(prfs.prfs_phase(dT, b0, te))
    # gamma alpha B0 TE = 2.675e8 * -1e-8 * 3 * 0.012 = -0.0963 rad/degC
    assert phase[1] / dT[1] == pytest.approx(-2.6752218744e8 * 1e-8 * b0 * te, rel=1e-9)
    base = np.exp(1j * 0.3) * np.ones(11)
    img = base * np.exp(1j * phase)
    np.testing.assert_allclose(prfs.temperature_change(img, base, b0, te), dT, atol=1e-10)


def test_drift_correction_with_reference_region():
    b0, te = 3.0, 0.01
    dT = np.zeros(100)
    dT[:30] = 8.0
    ref = np.zeros(100, bool)
    ref[60:] = True
    base = np.ones(100, complex)
    img = np.exp(1j * (np.asarray(prfs.prfs_phase(dT, b0, te)) + 0.2))  # 0.2 rad field drift
    t_raw = np.asarray(prfs.temperature_change(img, base, b0, te))
    t_cor = np.asarray(prfs.temperature_change(img, base, b0, te, reference_mask=ref))
    assert abs(t_raw[80]) > 1.0
    np.testing.assert_allclose(t_cor, dT, atol=1e-10)
    with pytest.raises(ParameterError, match="reference_mask"):
        prfs.temperature_change(img, base, b0, te, reference_mask=np.zeros(100, bool))


def test_noise_law_by_monte_carlo():
    rng = np.random.default_rng(0)
    b0, te, snr, n = 3.0, 0.015, 40.0, 200_000
    sigma = 1.0 / snr
    noise = lambda: sigma * (rng.normal(size=n) + 1j * rng.normal(size=n)) / np.sqrt(2)  # noqa
    # magnitude SNR = 1 / (std of the real part... per channel sigma/sqrt2): use |S|/sigma_channel
    base = 1.0 + noise()
    img = 1.0 + noise()
    t = np.asarray(prfs.temperature_change(img, base, b0, te))
    # per-channel noise std is sigma/sqrt(2): phase noise std = (sigma/sqrt2)/|S|
    predicted = prfs.temperature_noise(b0, te, snr * np.sqrt(2))
    assert t.std() == pytest.approx(predicted, rel=0.02)
    single = prfs.temperature_noise(b0, te, snr * np.sqrt(2), difference=False)
    assert predicted / single == pytest.approx(np.sqrt(2))
