"""EEG and MEG at the scale of real sessions: everything evaluated in time chunks
equals the same thing in one piece, the truth is decimated consistently, the
BrainVision writer streams, the memory stays within a few copies of the
recording, and the MEG lead field follows the head's motion."""

import dataclasses
import tracemalloc

import numpy as np
import pytest

from biosim import ParameterError, SpecError, experiment
from biosim.experiment.activity import simulate_activity, source_activity
from biosim.experiment.devices import DeviceContext, Simulation
from biosim.experiment.devices import eeg as eeg_device
from biosim.experiment.devices import meg as meg_device
from biosim.experiment.devices.mri import MRIRecording, build_scanner
from biosim.experiment.estimate import check_resources, estimate_resources
from biosim.experiment.protocol import Protocol
from biosim.experiment.subject import region_dipoles, sphere_head
from biosim.geometry.motion import RigidMotion
from biosim.instruments.eeg import EEGAmplifier
from biosim.instruments.eeg_fmri import (
    EPIGradients,
    bcg_artifact,
    cardiac_r_peaks,
    gradient_artifact,
    lead_loops,
)
from biosim.instruments.meg import MEGSystem
from biosim.io.brainvision import write_brainvision
from biosim.physics.electromag import meg_gain
from biosim.physics.electromag.sensors import opm_array

PIECES = [0, 1, 777, 4096, 5000, 9000, 12_000]  # chunk edges, deliberately unaligned


def _in_pieces(fn, n):
    return np.concatenate([fn(a, b) for a, b in zip(PIECES, PIECES[1:] + [n])], axis=-1)


def _eeg_spec(duration=4.0, rate=2000.0, channels=("Fz", "Cz", "Pz", "Oz"), **eeg):
    spec = experiment.load_experiment("eeg_fmri")
    spec["experiment"]["duration"] = duration
    spec["protocol"]["blocks"] = [{"onset": 1.0, "duration": 2.0, "condition": "visual"}]
    spec["activity"]["dcm"]["B"] = {}
    spec["activity"]["dcm"]["C"].pop("attention")
    table = spec["devices"]["eeg"]
    table.update(sample_rate=rate, **eeg)
    if channels is None:
        table.pop("channels")
    else:
        table["channels"] = list(channels)
    spec["devices"]["mri"].update(n_slices=10)
    spec["subject"]["voxel_size"] = 12.0  # ten slices still cover the regions
    return experiment.validate_spec(spec)


def _simulation(spec, motion=None):
    protocol = Protocol.from_spec(spec)
    sim = Simulation(spec, protocol, simulate_activity(spec, protocol), np.random.default_rng(0))
    sim.motion = motion
    if "mri" in spec["devices"]:
        scanner = build_scanner(spec["devices"]["mri"], spec)
        empty = np.zeros((1, 1))
        sim.recordings["mri"] = MRIRecording(scanner, None, None, empty, empty, empty, empty, empty)
    return sim


def test_lazy_sources_are_the_same_in_one_call_or_in_chunks():
    spec = _eeg_spec(duration=6.0)
    act = simulate_activity(spec, Protocol.from_spec(spec))
    src = source_activity(spec, act)
    t = np.arange(12_500) / 2000.0
    whole = src.at(t)
    np.testing.assert_array_equal(whole, _in_pieces(lambda a, b: src.at(t[a:b]).T, len(t)).T)
    # nothing is held at a device's rate: the neural input and a 10 ms phase grid
    assert src.phase.shape[0] <= 6.0 / 0.01 + 2
    # on the truth's 1 kHz grid the moments are the lazy ones: k z(t) Im[exp(i w t) c(t)],
    # z held over each microtime step, the phasor c = exp(i phi) interpolated linearly
    np.testing.assert_array_equal(src.moments, src.at(src.times).astype(np.float32))
    tt, act_ = src.times, spec["activity"]
    idx = np.floor(tt / act_["dt"] + 1e-9).astype(int)
    z = act.neural_input[np.minimum(idx, len(act.times) - 1)]
    phasor = np.exp(1j * src.phase)
    c = np.stack(
        [
            np.interp(tt, src.phase_times, phasor[:, r].real)
            + 1j * np.interp(tt, src.phase_times, phasor[:, r].imag)
            for r in range(3)
        ],
        1,
    )
    expected = act_["moment_per_input"] * z * np.imag(np.exp(2j * np.pi * 10.0 * tt)[:, None] * c)
    np.testing.assert_allclose(src.at(tt), expected, rtol=1e-12, atol=1e-24)
    # the lead field applied on the coarse grid gives the same signal, in chunks too
    lead = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(src.project(lead, t), lead @ whole.T, rtol=1e-10, atol=1e-20)
    pieces = _in_pieces(lambda a, b: src.project(lead, t[a:b]), len(t))
    np.testing.assert_allclose(pieces, src.project(lead, t), rtol=1e-12, atol=1e-22)
    # the phase is a Wiener process of diffusion 2 pi x rhythm_bandwidth (Lorentzian line)
    steps = np.diff(src.phase, axis=0)
    expected = 2 * np.pi * spec["activity"]["rhythm_bandwidth"] * 0.01
    assert steps.var() == pytest.approx(expected, rel=0.15)


def test_gridded_sources_interpolate_linearly_in_chunks():
    from biosim.experiment.activity import SourceActivity

    grid = np.linspace(0.0, 1.0, 11)
    moments = np.stack([np.sin(grid), grid**2], axis=1)
    src = SourceActivity(grid, moments)
    t = np.linspace(-0.05, 1.05, 12_345)
    expected = np.stack([np.interp(t, grid, moments[:, r]) for r in range(2)], axis=1)
    np.testing.assert_allclose(src.at(t), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(src.at(t), _in_pieces(lambda a, b: src.at(t[a:b]).T, len(t)).T)


def test_amplifier_and_meg_system_are_the_same_in_one_call_or_in_chunks():
    amp = EEGAmplifier(sample_rate=5000.0, line_noise=3e-6, noise_density=5e-8, seed=4)
    rng = np.random.default_rng(1)
    v = 1e-5 * rng.standard_normal((3, 12_345))
    names = ["a", "b", "c"]
    whole = amp.record(v, names)
    np.testing.assert_array_equal(
        whole, _in_pieces(lambda a, b: amp.record(v[:, a:b], names, start=a), v.shape[1])
    )
    # the noise has the specified density: std = e_n sqrt(fs / 2)
    noise = amp.noise(3, 0, 200_000)
    assert noise.std() == pytest.approx(5e-8 * np.sqrt(2500.0), rel=0.01)
    assert abs(np.corrcoef(noise[0, :-1], noise[0, 1:])[0, 1]) < 0.01  # white
    with pytest.raises(ParameterError, match="range_v"):
        amp.record(np.full((3, 10), 0.5), names)
    sensors = opm_array(4, scalp_radius=0.09, standoff=0.006)
    system = MEGSystem(line_noise=1e-12, seed=2)
    field = 1e-13 * rng.standard_normal((4, 12_345))
    np.testing.assert_array_equal(
        system.record(field, sensors),
        _in_pieces(lambda a, b: system.record(field[:, a:b], sensors, start=a), 12_345),
    )


def test_scanner_artifacts_are_the_same_in_one_call_or_in_chunks():
    pos = np.array([[0.05, 0.0, 0.08], [-0.03, 0.06, 0.07], [0.0, -0.08, 0.05]])
    loops = lead_loops(3, seed=2)
    fs = 5000.0 / (1 + 10e-6)  # a drifting amplifier: samples off the slice grid
    t = np.arange(12_345) / fs
    grad = gradient_artifact(pos, loops, EPIGradients(), 0.1, 20, t, sample_interval=1 / fs)
    pieces = _in_pieces(
        lambda a, b: gradient_artifact(
            pos, loops, EPIGradients(), 0.1, 20, t[a:b], sample_interval=1 / fs
        ),
        len(t),
    )
    np.testing.assert_allclose(pieces, grad, rtol=1e-12, atol=1e-18)
    peaks = cardiac_r_peaks(2.5, seed=1)
    bcg = bcg_artifact(loops, 3.0, peaks, t, seed=3)
    np.testing.assert_array_equal(
        bcg, _in_pieces(lambda a, b: bcg_artifact(loops, 3.0, peaks, t[a:b], seed=3), len(t))
    )


@pytest.fixture(scope="module")
def in_scanner():
    """A 4 s EEG in the scanner at 2 kHz, simulated in small chunks on one thread and
    in the default chunks on several."""
    spec = _eeg_spec()
    runs = []
    for length, workers in ((lambda q, b, w: 4096 * q, 1), (eeg_device.chunk_length, 4)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(eeg_device, "chunk_length", length)
            mp.setattr(eeg_device, "CHUNK_WORKERS", workers)
            sim = _simulation(spec)
            runs.append(eeg_device.simulate(DeviceContext("eeg", spec["devices"]["eeg"], sim)))
    return spec, runs


def test_chunked_eeg_equals_one_piece_and_the_truth_is_decimated(in_scanner):
    spec, (small, big) = in_scanner
    assert big.data.dtype == np.float32 and big.data.shape == (4, 8000)
    np.testing.assert_array_equal(small.data, big.data)
    np.testing.assert_array_equal(small.clean, big.clean)
    # default truth rate: sample_rate / ceil(sample_rate / 1 kHz); every q-th sample
    assert eeg_device.truth_decimation(spec["devices"]["eeg"]) == 2
    np.testing.assert_array_equal(big.clean_times, big.times[::2])
    truth = big.truth_arrays("eeg")
    assert truth["eeg_clean"].shape == truth["eeg_gradient_artifact"].shape == (4, 4000)
    # recorded - truth = amplifier noise + mains + quantisation (density 50 nV/sqrt(Hz))
    resid = big.data[:, ::2] - truth["eeg_clean"] - truth["eeg_gradient_artifact"]
    resid = resid - truth["eeg_bcg_artifact"]
    mains = spec["devices"]["eeg"]["line_noise"]
    assert resid.std() < np.sqrt((5e-8 * np.sqrt(1000.0)) ** 2 + (1.5 * mains) ** 2)
    # the truth's clean signal is the lead field times the lazy sources at truth times
    sim = _simulation(spec)
    expected = big.leadfield @ sim.sources.at(big.clean_times).T
    np.testing.assert_allclose(truth["eeg_clean"], expected, rtol=1e-6, atol=1e-13)


def test_truth_sample_rate_must_divide_the_sample_rate():
    with pytest.raises(SpecError, match="truth_sample_rate"):
        _eeg_spec(truth_sample_rate=700.0)


def test_brainvision_streams_and_reads_back_with_mne(tmp_path, monkeypatch):
    mne = pytest.importorskip("mne")
    import biosim.io.brainvision as bv

    monkeypatch.setattr(bv, "BLOCK_BYTES", 8 * 3 * 1000)  # 1000-sample blocks
    data = (1e-5 * np.random.default_rng(0).standard_normal((3, 4321))).astype(np.float32)
    vhdr = write_brainvision(tmp_path / "x.vhdr", data, 5000.0, ["A", "B", "C"], [(0.1, "go")])
    raw = mne.io.read_raw_brainvision(vhdr, preload=True, verbose="error")
    assert raw.info["sfreq"] == 5000.0 and raw.ch_names == ["A", "B", "C"]
    np.testing.assert_allclose(raw.get_data(), data, rtol=1e-6, atol=1e-12)
    bad = data.copy()
    bad[1, 3000] = np.nan
    with pytest.raises(ParameterError, match="non-finite"):
        write_brainvision(tmp_path / "y.vhdr", bad, 5000.0, ["A", "B", "C"])
    assert not list(tmp_path.glob("y*")) and not list(tmp_path.glob(".y*"))


def test_a_minute_of_64_channel_eeg_at_5_khz_holds_few_copies():
    """64 ch x 60 s x 5 kHz in the scanner: the traced peak stays below 2 float64
    copies of the session (data float32 + truth at 1 kHz + chunk buffers; the
    design before chunking held ~8)."""
    spec = _eeg_spec(duration=60.0, rate=5000.0, channels=None, montage="biosemi64")
    sim = _simulation(spec)
    assert sim.sources is not None  # drawn before tracing: shared by every device
    ctx = DeviceContext("eeg", spec["devices"]["eeg"], sim)
    one_copy = 64 * 300_000 * 8
    tracemalloc.start()
    try:
        rec = eeg_device.simulate(ctx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rec.data.shape == (64, 300_000)
    assert peak < 2 * one_copy, peak / one_copy


def test_session_estimate_fits_a_small_machine(monkeypatch):
    spec = _eeg_spec(duration=600.0, rate=5000.0, channels=None, montage="biosemi64")
    spec["devices"]["mri"].update(n_slices=40)
    est = estimate_resources(spec)
    assert est.peak_memory < 3e9, est.drivers[:3]
    monkeypatch.setenv("BIOSIM_AVAILABLE_MEMORY", "8G")
    check_resources(spec)


# ---------------------------------------------------------------------------- MEG motion


@pytest.fixture(scope="module")
def opm_spec():
    spec = experiment.load_experiment("meg_opm")
    spec["experiment"]["duration"] = 3.0
    spec["protocol"]["blocks"] = [dict(onset=0.5, duration=2.0, condition="visual")]
    spec["activity"]["drive"].pop("auditory")
    spec["devices"]["meg"].update(n_sensors=8, noise_scale=0.0, line_noise=0.0)
    return experiment.validate_spec(spec)


def _meg(spec, motion):
    sim = _simulation(spec, motion)
    return meg_device.simulate(DeviceContext("meg", spec["devices"]["meg"], sim)), sim


def test_moving_the_head_by_d_equals_moving_the_sensors_by_minus_d(opm_spec):
    d = np.array([0.004, 0.0, 0.0])
    shift = RigidMotion(np.array([0.0, 3.0]), np.tile(d, (2, 1)), np.zeros((2, 3)))
    moved, sim = _meg(opm_spec, shift)
    still, _ = _meg(opm_spec, None)
    sensors = meg_device.sensors_for(opm_spec["devices"]["meg"], opm_spec)
    back = dataclasses.replace(sensors, points=sensors.points - d, positions=sensors.positions - d)
    pos, ori = region_dipoles(opm_spec)
    _, center, _ = sphere_head(opm_spec)
    lead = np.einsum("csk,sk->cs", np.asarray(meg_gain(back, pos, center=center)), ori)
    expected = lead @ sim.sources.at(moved.times).T
    np.testing.assert_allclose(moved.clean, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert np.abs(moved.clean - still.clean).max() > 0.01 * np.abs(still.clean).max()
    # a head at rest changes nothing
    rest, _ = _meg(opm_spec, RigidMotion.still(3.0))
    np.testing.assert_allclose(rest.clean, still.clean, rtol=1e-6, atol=1e-25)
    assert still.pose_times is None and len(rest.pose_times) >= 4  # every second


def test_pose_knots_follow_the_displacement(opm_spec):
    sensors = meg_device.sensors_for(opm_spec["devices"]["meg"], opm_spec)
    # still for 1.2 s, then a 3 mm shift along y within 0.3 s, then still
    times = np.array([0.0, 1.2, 1.5, 3.0])
    trans = np.array([[0, 0, 0], [0, 0, 0], [0, 0.003, 0], [0, 0.003, 0]], float)
    knots = meg_device.pose_knots(RigidMotion(times, trans, np.zeros((4, 3))), 3.0, sensors)
    assert knots[0] == 0.0 and knots[-1] == 3.0
    during = knots[(knots > 1.2) & (knots <= 1.5)]
    assert len(during) >= 3  # 3 mm, a knot each time a sensor moved over 0.5 mm
    assert np.all(np.diff(knots) <= 1.0 + 1e-9)


def test_turning_the_head_equals_turning_the_sensors_back(opm_spec):
    """A yaw of the head by 0.1 rad about the sphere's centre is the helmet turned by
    -0.1 rad about it (rotation built independently of the motion module)."""
    _, center, _ = sphere_head(opm_spec)
    center = np.asarray(center, float)
    angle = 0.1
    turn = RigidMotion(
        np.array([0.0, 3.0]), np.zeros((2, 3)), np.tile([0.0, 0.0, angle], (2, 1)), center
    )
    moved, sim = _meg(opm_spec, turn)
    c, s = np.cos(-angle), np.sin(-angle)
    back_rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # about z by -angle
    sensors = meg_device.sensors_for(opm_spec["devices"]["meg"], opm_spec)
    back = dataclasses.replace(
        sensors,
        points=(sensors.points - center) @ back_rot.T + center,
        normals=sensors.normals @ back_rot.T,
        positions=(sensors.positions - center) @ back_rot.T + center,
        orientations=sensors.orientations @ back_rot.T,
    )
    pos, ori = region_dipoles(opm_spec)
    lead = np.einsum("csk,sk->cs", np.asarray(meg_gain(back, pos, center=center)), ori)
    expected = lead @ sim.sources.at(moved.times).T
    np.testing.assert_allclose(moved.clean, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
