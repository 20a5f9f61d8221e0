"""Up-front checks: the resource estimate that validate/run print, the refusal of a
spec that needs more memory than the machine has, and the aliasing warnings."""

import warnings

import pytest

from biosim import SpecError, experiment
from biosim.cli import main
from biosim.experiment.estimate import (
    AliasingWarning,
    available_memory,
    estimate_resources,
    format_bytes,
    format_duration,
)

MRI = """
[experiment]
name = "tiny"
duration = {duration}

[subject]
regions = ["V1", "V5"]
voxel_size = 24.0

[activity]
dt = 0.1
[activity.drive]
visual = [0.15, 0.10]

[protocol]
blocks = [{{ onset = 4.0, duration = 6.0, condition = "visual" }}]

[devices.mri]
field_strength = 3.0
tr = 2.0
te = 0.03
matrix = {matrix}
n_slices = {n_slices}
echo_spacing = 0.0001
"""

EEG = """
[experiment]
name = "alias"
duration = 10.0
[subject]
regions = ["V1"]
[activity]
dt = 0.1
[activity.drive]
visual = [0.15]
[protocol]
blocks = [{{ onset = 2.0, duration = 4.0, condition = "visual" }}]
[devices.eeg]
montage = "standard_1020"
sample_rate = {rate}
line_noise = 2e-6
line_frequency = 50.0
"""


def _write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _mri(tmp_path, matrix="[8, 8]", n_slices=1, duration=20.0):
    return _write(tmp_path, MRI.format(matrix=matrix, n_slices=n_slices, duration=duration))


def test_shipped_estimate_matches_calibration():
    # measured: eeg_fmri peaked at 1.27 GB, wrote 136 MB, took 26 s (2 cores)
    est = estimate_resources(experiment.load_experiment("eeg_fmri"))
    assert 0.6e9 < est.peak_memory < 2.5e9
    assert 70e6 < est.output_size < 270e6
    assert 8 < est.run_time < 100
    assert est.summary().startswith("estimate: peak memory ~")


def test_huge_matrix_is_refused_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOSIM_AVAILABLE_MEMORY", "64G")
    path = _mri(tmp_path, "[512, 512]", 30, duration=2e5)
    with pytest.raises(SpecError, match=r"devices\.mri\.matrix = \[512, 512\].*TB"):
        experiment.load_experiment(path)
    monkeypatch.setenv("BIOSIM_AVAILABLE_MEMORY", "100T")  # the override lets it through
    est = estimate_resources(experiment.load_experiment(path))
    assert est.peak_memory > 1e12 and est.run_time > 86400


def test_cli_refuses_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIOSIM_AVAILABLE_MEMORY", "64G")
    path = _mri(tmp_path, "[512, 512]", 30, duration=2e5)
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "devices.mri.matrix" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_available_memory_override_and_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOSIM_AVAILABLE_MEMORY", "512M")
    assert available_memory() == 512e6
    monkeypatch.setenv("BIOSIM_AVAILABLE_MEMORY", "100M")  # less than the baseline
    with pytest.raises(SpecError, match="needs ~1.0 GB of memory but ~100 MB.*MNI152 atlas"):
        experiment.load_experiment(_mri(tmp_path))
    monkeypatch.setenv("BIOSIM_AVAILABLE_MEMORY", "lots")
    with pytest.raises(SpecError, match="BIOSIM_AVAILABLE_MEMORY = 'lots'"):
        available_memory()
    monkeypatch.delenv("BIOSIM_AVAILABLE_MEMORY")
    assert available_memory() > 100e6  # this machine's MemAvailable


def test_validate_prints_estimate_and_long_duration(tmp_path, capsys):
    assert main(["validate", str(_mri(tmp_path, duration=2.4e6))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("biosim: estimate: peak memory ~")
    assert "time ~" in out[-1] and ("min" in out[-1] or " h" in out[-1] or "days" in out[-1])


def test_aliasing_warnings(tmp_path, capsys):
    path = _write(tmp_path, EEG.format(rate=12.0))
    with pytest.warns(AliasingWarning) as rec:
        experiment.load_experiment(path)
    msgs = [str(w.message) for w in rec]
    assert any("devices.eeg.sample_rate = 12 Hz" in m and "activity.carrier_hz" in m for m in msgs)
    assert any("devices.eeg.line_frequency = 50 Hz" in m for m in msgs)
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(e.startswith("biosim: warning: devices.eeg") for e in err)


def test_no_aliasing_warning_at_a_proper_rate(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AliasingWarning)
        experiment.load_experiment(_write(tmp_path, EEG.format(rate=250.0)))


def test_formats():
    assert format_bytes(1.2e9) == "1.2 GB" and format_bytes(35e6) == "35 MB"
    assert format_bytes(512) == "512 B"
    assert format_duration(40) == "40 s" and format_duration(600) == "10 min"
    assert format_duration(2.4e6).endswith("days")
