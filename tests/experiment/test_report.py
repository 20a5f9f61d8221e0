"""Report figures: each device's figure is written as a readable PNG for EEG in the
scanner, plain EEG, SQUID MEG (magnetometers + planar gradiometers) and OPM (dual
axes), and nothing is drawn (and nothing fails) without matplotlib."""

import struct
import sys

import numpy as np
import pytest

from biosim import experiment
from biosim.experiment import report
from biosim.experiment.activity import simulate_activity
from biosim.experiment.devices import DeviceContext, Simulation, device_instances, device_type
from biosim.experiment.pipeline import _write_report
from biosim.experiment.protocol import Protocol

pytest.importorskip("matplotlib")
pytest.importorskip("mne")


def _short(name, duration, blocks, **devices):
    spec = experiment.load_experiment(name)
    spec["experiment"]["duration"] = duration
    spec["protocol"]["blocks"] = [
        {"onset": on, "duration": d, "condition": c} for on, d, c in blocks
    ]
    for key, changes in devices.items():
        spec["devices"][key].update(changes)
    return experiment.validate_spec(spec)


def _simulate(spec):
    protocol = Protocol.from_spec(spec)
    activity = simulate_activity(spec, protocol)
    sim = Simulation(spec, protocol, activity, np.random.default_rng(0))
    for key, table in device_instances(spec):
        sim.recordings[key] = device_type(table["type"]).simulate(DeviceContext(key, table, sim))
    return spec, protocol, activity, sim.recordings


CASES = {
    "eeg_fmri": lambda: _short(
        "eeg_fmri",
        8.0,
        [(2.0, 4.0, "visual"), (4.0, 2.0, "attention")],
        eeg={"channels": ["Fz", "Cz", "Pz", "O1", "Oz", "O2", "T7", "T8"]},
    ),
    "eeg": lambda: _short("eeg", 4.0, [(1.0, 2.0, "visual"), (3.0, 1.0, "attention")]),
    "opm_vs_squid": lambda: _short(
        "opm_vs_squid",
        3.0,
        [(1.0, 1.0, "visual"), (2.0, 1.0, "motor")],
        meg_squid={"sample_rate": 250.0},
        meg_opm={"sample_rate": 250.0, "n_sensors": 32},
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def written(request, tmp_path_factory):
    """(recordings, report folder, names written) of a shortened shipped experiment."""
    spec, protocol, activity, recordings = _simulate(CASES[request.param]())
    out = tmp_path_factory.mktemp(request.param) / "report"
    names = _write_report(spec, protocol, activity, recordings, out)
    return recordings, out, names


def _png_size(path):
    """(width, height) in pixels of a PNG file, checking its signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


def test_every_device_gets_a_readable_figure(written):
    recordings, out, names = written
    assert names == ["activity.png"] + [f"{key}.png" for key in recordings]
    for name in names:
        path = out / name
        width, height = _png_size(path)
        assert width >= 800 and 400 <= height <= 2000, (name, width, height)
        assert path.stat().st_size > 20_000, name  # drawn, not blank


def test_channel_groups_and_topography_sensors(written):
    recordings, _, _ = written
    for rec in recordings.values():
        if not hasattr(rec, "leadfield"):
            continue
        spec_sphere = (0.0, -0.0165, -0.0036, 0.099)
        groups = report._groups(rec, spec_sphere)
        if hasattr(rec, "electrodes"):
            ((label, unit, _, picks, topo, n),) = groups
            assert unit == "µV" and n == len(rec.electrodes.names) == len(topo)
            assert len(picks) == min(n, report._MAX_EEG_TRACES)
            continue
        kinds = np.asarray(rec.sensors.kinds)
        if "grad" in kinds:  # SQUID: magnetometer topographies, both types traced
            (field, grad) = groups
            assert field[1] == "fT" and grad[1] == "fT/cm"
            assert set(kinds[field[4]]) == {"mag"} and len(field[4]) == field[5] == 102
            assert grad[4] is None and grad[5] == 204 and len(grad[3]) == report._MAX_MEG_TRACES
        else:  # dual-axis OPM: only the radial axes make the topography
            ((label, unit, _, picks, topo, n),) = groups
            assert unit == "fT" and n == len(kinds) and len(topo) == n // 2


def test_no_matplotlib_no_figures(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "report"
    assert _write_report({}, None, None, {}, out) == []
    assert not out.exists()
