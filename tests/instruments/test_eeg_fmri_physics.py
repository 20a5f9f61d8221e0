"""Faraday-induction physics of the simulated EEG-fMRI artifacts."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.instruments.eeg_fmri import (
    EPIGradients,
    bcg_artifact,
    cardiac_r_peaks,
    gradient_artifact,
    lead_loops,
)


def test_gradient_artifact_is_slice_locked_and_scales_with_slew_and_area():
    pos = np.array([[0.05, 0.0, 0.08], [-0.03, 0.06, 0.07]])
    loops = np.array([[0.0, 0.0, 5e-4], [0.0, 0.0, 2.5e-4]])
    t = np.arange(0, 2.0, 1 / 5000.0)
    a = gradient_artifact(pos, loops, EPIGradients(), 0.1, 20, t)
    np.testing.assert_allclose(a[:, 500:1000], a[:, 1000:1500], atol=1e-15)  # slice-locked
    # EMF = -(dG/dt . r) a_z: linear in loop area and in gradient amplitude
    pos_b = np.array([[0.05, 0.0, 0.08], [0.05, 0.0, 0.08]])
    b = gradient_artifact(pos_b, loops, EPIGradients(), 0.1, 20, t)
    np.testing.assert_allclose(b[1], 0.5 * b[0], rtol=1e-12)
    strong = gradient_artifact(
        pos,
        loops,
        EPIGradients(readout_amplitude=0.05, slice_amplitude=0.02, blip_amplitude=0.02),
        0.1,
        20,
        t,
    )
    np.testing.assert_allclose(strong, 2 * a, rtol=1e-9, atol=1e-12)
    # order of magnitude: slew ~ 250 T/m/s x 0.05 m x 5e-4 m^2 ~ 6 mV at 5 kHz
    assert 1e-4 < np.abs(a).max() < 1e-1
    with pytest.raises(ParameterError, match="slice_period"):
        EPIGradients().waveform(0.005)


def test_bcg_is_cardiac_locked_and_proportional_to_field():
    peaks = cardiac_r_peaks(60.0, seed=1)
    rr = np.diff(peaks)
    assert 0.75 < rr.mean() < 1.05 and rr.std() > 0.01  # beat-to-beat variability
    t = np.arange(0, 60, 1 / 250.0)
    loops = lead_loops(8, seed=2)
    b3 = bcg_artifact(loops, 3.0, peaks, t, seed=3)
    b7 = bcg_artifact(loops, 7.0, peaks, t, seed=3)
    np.testing.assert_allclose(b7, b3 * 7 / 3, rtol=1e-12)
    # energy concentrated within 0.5 s after each R peak
    near = np.zeros_like(t, bool)
    for p in peaks:
        near |= (t > p) & (t < p + 0.5)
    assert np.sum(b3[:, near] ** 2) > 0.95 * np.sum(b3**2)
