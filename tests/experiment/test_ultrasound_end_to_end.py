"""The focused-ultrasound device end to end on a tiny grid: placement, field, heating,
dose, thermometry, files, truth, the neuromodulatory drive, and spec errors."""

import json

import nibabel as nib
import numpy as np
import pytest
from test_shipped_experiments import check_dataset

from biosim import SpecError, experiment
from biosim.experiment.activity import simulate_activity

TOML = """
[experiment]
name = "fus_tiny"
duration = 6.0

[subject]
regions = ["V1", "PFC"]

[activity]
model = "drive"
dt = 0.1
[activity.drive]
sonication = [0.0, 0.0]

[protocol]
blocks = [{ onset = 1.0, duration = 3.0, condition = "sonication" }]

[devices.ultrasound]
target = "V1"
frequency = 150e3
radius_of_curvature = 0.035
aperture = 0.03
source_pressure = 150e3
grid_spacing = 3e-3
pml_size = 4
margin = 0.006
pulse_duration = 0.05
pulse_repetition_frequency = 10.0
neuromodulation = true
modulation_gain = 0.2

[devices.ultrasound.thermometry]
frame_interval = 1.0
snr = 200.0
drift = 0.2
matrix = [16, 16]
n_slices = 2
voxel_size = 3.0
reference_distance = 12.0
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fus")
    (folder / "fus.toml").write_text(TOML)
    spec = experiment.load_experiment(folder / "fus.toml")
    return spec, experiment.run_experiment(spec, folder / "ds", progress=False)


def test_end_to_end_files_truth_and_physics(run, bids_errors):
    spec, out = run
    check_dataset(out, spec, bids_errors)  # device files, documented truth, BIDS validator
    func = out / "sub-01" / "func"
    mag = nib.load(func / "sub-01_task-fustiny_acq-prfs_part-mag_bold.nii.gz")
    phase = nib.load(func / "sub-01_task-fustiny_acq-prfs_part-phase_bold.nii.gz")
    assert mag.shape == (16, 16, 2, 7) and phase.shape == mag.shape  # baseline + 6 frames
    assert mag.header.get_zooms()[3] == pytest.approx(1.0)
    side = json.loads((func / "sub-01_task-fustiny_acq-prfs_part-phase_bold.json").read_text())
    assert side["EchoTime"] == 0.012 and side["Units"] == "rad"
    der = out / "derivatives" / "biosim-ultrasound" / "sub-01"
    p = nib.load(der / "sub-01_task-fustiny_desc-pressure_map.nii.gz")
    pressure = np.asarray(p.dataobj)
    labels = np.asarray(nib.load(der / "sub-01_task-fustiny_desc-labels_map.nii.gz").dataobj)
    assert np.isin(np.unique(labels), range(6)).all() and {0, 2, 4} <= set(np.unique(labels))
    # the field in the water: of the order of the focal gain x source pressure, finite
    assert np.isfinite(pressure).all() and 1.5e5 < pressure.max() < 3e6
    dose = np.asarray(nib.load(der / "sub-01_task-fustiny_desc-cem43_map.nii.gz").dataobj)
    rise = np.asarray(nib.load(der / "sub-01_task-fustiny_desc-maxtemperature_map.nii.gz").dataobj)
    assert rise.max() > 0 and np.all(dose >= 0)
    # the hottest voxel is where heat is deposited: absorbing tissue, not the water
    assert labels.flat[np.argmax(rise)] != 0
    summary = json.loads((der / "sub-01_task-fustiny_summary.json").read_text())
    f = 150e3
    assert summary["MechanicalIndex"] == pytest.approx(
        summary["PeakPressure_Pa"] / 1e6 / np.sqrt(f / 1e6)
    )
    truth = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")
    tt, rec = truth["ultrasound_thermometry_truth"], truth["ultrasound_thermometry_reconstructed"]
    assert tt.shape == (6, 16, 16, 2) and rec.shape == tt.shape
    # frames at 1..6 s: heating only while sonicating (1-4 s), cooling after
    peak = tt.reshape(6, -1).max(1)
    assert peak[0] == 0 and 0 < peak[1] < peak[2] < peak[3] and peak[5] < peak[4] < peak[3]
    # drift removed: the error is the noise's
    assert summary["ThermometryRMSE_K"] < 3 * summary["ThermometryNoiseStd_K"]
    assert abs(summary["ThermometryBias_K"]) < summary["ThermometryNoiseStd_K"]
    np.testing.assert_allclose(np.linalg.norm(truth["ultrasound_direction"]), 1.0)
    target = truth["ultrasound_target_mm"]
    apex = truth["ultrasound_transducer_mm"]
    assert np.linalg.norm(target - apex) == pytest.approx(35.0)
    # neuromodulation: V1 driven at 0.2 x 50 % duty cycle during the block only
    drive = truth["ultrasound_drive"]
    times = truth["times"]
    on = (times >= 1.0) & (times < 4.0)
    np.testing.assert_allclose(drive[on, 0], 0.1, atol=1e-9)
    assert np.all(drive[~on] == 0) and np.all(drive[:, 1] == 0)
    np.testing.assert_allclose(truth["neural_input"][:, 0], drive[:, 0])


def test_neuromodulation_is_switchable_and_spec_errors_name_the_key(run):
    spec, _ = run
    off = json.loads(json.dumps(spec))
    off["devices"]["ultrasound"]["neuromodulation"] = False
    off = experiment.validate_spec(off)
    assert simulate_activity(off).ultrasound_drive is None
    for key, value, match in (
        ("target", "M1", "devices.ultrasound.target = 'M1'"),
        ("grid_spacing", 5e-3, "devices.ultrasound.grid_spacing"),
        ("condition", "rest", "devices.ultrasound.condition = 'rest'"),
        ("pulse_duration", 0.2, "devices.ultrasound.pulse_duration"),
        ("aperture", 0.08, "devices.ultrasound.aperture"),
    ):
        bad = json.loads(json.dumps(spec))
        bad["devices"]["ultrasound"][key] = value
        with pytest.raises(SpecError, match=match):
            experiment.validate_spec(bad)
    bad = json.loads(json.dumps(spec))
    bad["devices"]["ultrasound"]["thermometry"]["te"] = 0.5
    with pytest.raises(SpecError, match="devices.ultrasound.thermometry.te"):
        experiment.validate_spec(bad)
