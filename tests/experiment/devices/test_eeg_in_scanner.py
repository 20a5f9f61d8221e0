"""The EEG recorded inside the scanner sees the gradients of the MRI device's
actual EPI sequence: change the matrix and the echo spacing, and the gradient
artifact's period and spectrum follow."""

import numpy as np
import pytest

from biosim import experiment
from biosim.experiment.activity import simulate_activity
from biosim.experiment.devices import DeviceContext, Simulation
from biosim.experiment.devices import eeg as eeg_device
from biosim.experiment.devices.mri import MRIRecording, build_scanner
from biosim.experiment.protocol import Protocol
from biosim.instruments.eeg_fmri import EPIGradients

FS = 20_000.0  # EEG sampling fast enough to resolve the readout lobes


def _spec(matrix, echo_spacing, te):
    spec = experiment.load_experiment("eeg_fmri")
    spec["experiment"]["duration"] = 4.0
    spec["protocol"]["blocks"] = [
        {"onset": 1.0, "duration": 1.0, "condition": "visual"},
        {"onset": 2.0, "duration": 1.0, "condition": "attention"},
    ]
    spec["subject"]["voxel_size"] = 12.0  # a small matrix still covers the brain
    mri = spec["devices"]["mri"]
    mri.update(matrix=matrix, echo_spacing=echo_spacing, te=te, n_slices=25)  # 1600 samples a slice
    spec["devices"]["eeg"].update(
        sample_rate=FS,
        truth_sample_rate=FS,  # the truth at the full rate (default: decimated to 1 kHz)
        channels=["Fz", "Cz", "Pz", "Oz"],
        line_noise=0.0,
        noise_density=0.0,
    )
    return experiment.validate_spec(spec)


def _gradient_artifact(spec):
    protocol = Protocol.from_spec(spec)
    sim = Simulation(spec, protocol, simulate_activity(spec, protocol), np.random.default_rng(0))
    scanner = build_scanner(spec["devices"]["mri"], spec)
    empty = np.zeros((1, 1))
    sim.recordings["mri"] = MRIRecording(scanner, None, None, empty, empty, empty, empty, empty)
    rec = eeg_device.simulate(DeviceContext("eeg", spec["devices"]["eeg"], sim))
    return rec.artifacts.gradient, scanner.sequence


SEQUENCES = [([16, 16], 5e-4, 0.03), ([32, 32], 8e-4, 0.04)]


def _harmonic_power_fraction(channel, echo_spacing, n_lines):
    """Share of the artifact's power (0.1-9 kHz) within the bandwidth of an echo train,
    1 / (n_lines esp), around the harmonics of the readout frequency 1 / (2 esp)."""
    power = np.abs(np.fft.rfft(channel)) ** 2
    freqs = np.fft.rfftfreq(channel.size, 1 / FS)
    base, half_width = 1 / (2 * echo_spacing), 0.5 / (n_lines * echo_spacing)
    band = (freqs > 100.0) & (freqs < 9000.0)
    near = band & (np.abs(freqs - base * np.round(freqs / base)) < half_width)
    return power[near].sum() / power[band].sum()


def test_gradient_artifact_follows_the_epi_sequence():
    channels = []
    for matrix, echo_spacing, te in SEQUENCES:
        grad, seq = _gradient_artifact(_spec(matrix, echo_spacing, te))
        expected = EPIGradients.for_sequence(seq)
        assert expected.n_lines == matrix[1] and expected.echo_spacing == echo_spacing
        period = int(round(seq.tr / seq.n_slices * FS))
        channel = grad[np.argmax(np.abs(grad).max(axis=1))]
        # slice-locked: one slice period later the artifact repeats
        np.testing.assert_allclose(
            channel[period : 3 * period],
            channel[2 * period : 4 * period],
            atol=1e-9 * np.abs(channel).max(),
        )
        # the echo train ends at TE plus the lines read after the centre of k-space
        one = np.abs(channel[:period])
        last = np.flatnonzero(one > 1e-3 * one.max()).max() / FS
        assert last == pytest.approx(te + (matrix[1] - matrix[1] // 2) * echo_spacing, abs=2 / FS)
        channels.append(channel[: 8 * period])
    # spectrum: each artifact's power sits on its own sequence's readout harmonics
    for k, (matrix, echo_spacing, _) in enumerate(SEQUENCES):
        own = _harmonic_power_fraction(channels[k], echo_spacing, matrix[1])
        other = _harmonic_power_fraction(channels[1 - k], echo_spacing, matrix[1])
        assert own > 0.5 and own > 3 * other, (own, other)
