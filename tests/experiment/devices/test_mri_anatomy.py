"""The MRI device images the MNI152 subject: regions' grey matter, the head's field at
1.5 / 3 / 7 T, the T1w image, field map and physiological recordings a lab expects."""

import gzip
import json

import numpy as np
import pytest
from conftest import DRIVE_TOML

from biosim import experiment
from biosim.experiment.devices import mri as mri_device


@pytest.fixture(scope="module")
def drive_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("anat") / "drive.toml"
    path.write_text(
        DRIVE_TOML.replace("matrix = [48, 48]", "matrix = [24, 24]")
        .replace("voxel_size = 4.0", "voxel_size = 8.0")
        .replace("n_slices = 28", "n_slices = 14")
    )
    return experiment.load_experiment(path)


def test_regions_are_the_grey_matter_under_their_patches(drive_spec):
    image = mri_device.subject_image(drive_spec["devices"]["mri"], drive_spec)
    labels = image.labels()
    gm = image.fractions[0]
    for r, name in enumerate(drive_spec["subject"]["regions"]):
        voxels = np.argwhere(labels == r + 1)
        assert len(voxels) >= 3, name
        mm = voxels @ image.affine[:3, :3].T + image.affine[:3, 3]
        region = experiment.subject.subject_regions(drive_spec)[r]
        assert np.median(np.linalg.norm(mm - region.center_mni, axis=1)) < 20.0, name
        assert gm[labels == r + 1].mean() > 0.3, name  # grey matter, not white
    w = image.weights.tocsc()
    assert np.all(np.asarray(w.sum(axis=0)).ravel() <= gm.ravel() + 1e-6)


@pytest.mark.parametrize("b0", [1.5, 3.0, 7.0])
def test_field_map_scales_with_b0_and_is_shimmed(drive_spec, b0):
    from biosim._core.units import GAMMA_BAR_PROTON

    table = dict(drive_spec["devices"]["mri"], field_strength=b0)
    image = mri_device.subject_image(table, drive_spec)
    hz = GAMMA_BAR_PROTON * b0 * 1e-6 * image.field.shift([0, 0, 1])
    brain = image.fractions[:3].sum(0) > 0.5
    lo, hi = np.percentile(hz[brain], [5, 95])
    # after the second-order shim the bulk of the brain lies within tens of Hz per 3 T,
    # the tails (orbitofrontal, temporal poles) reach further
    assert -40 * b0 / 3 < lo < 0 < hi < 40 * b0 / 3, (lo, hi)
    assert np.abs(hz[brain]).max() > 2 * max(-lo, hi)
    props = image.tissue.compartments()[3]  # T2* shortens with B0
    assert props[0].max() < {1.5: 0.09, 3.0: 0.07, 7.0: 0.04}[b0]


def test_run_writes_t1w_fieldmap_and_physio(drive_spec, tmp_path, bids_errors):
    nib = pytest.importorskip("nibabel")
    spec = dict(drive_spec)
    spec["experiment"] = dict(spec["experiment"], duration=40.0)
    spec["protocol"] = {
        "blocks": [
            {"onset": 10.0, "duration": 10.0, "condition": "visual"},
            {"onset": 24.0, "duration": 10.0, "condition": "attention"},
        ]
    }
    out = experiment.run_experiment(experiment.validate_spec(spec), tmp_path / "ds", progress=False)
    sub = out / "sub-01"
    t1 = nib.load(sub / "anat" / "sub-01_T1w.nii.gz")
    data = np.asarray(t1.dataobj, float)
    from biosim.geometry.anatomy import mni_anatomy

    atlas = mni_anatomy()
    gm, wm, csf = (atlas.fractions[i] > 0.9 for i in range(3))  # TISSUES order
    assert data[wm].mean() > data[gm].mean() > data[csf].mean()  # T1w contrast at 3 T
    fmap = json.loads((sub / "fmap" / "sub-01_fieldmap.json").read_text())
    assert fmap["Units"] == "Hz" and fmap["IntendedFor"] == [
        "bids::sub-01/func/sub-01_task-drive_bold.nii.gz"
    ]
    bold = json.loads((sub / "func" / "sub-01_task-drive_bold.json").read_text())
    assert bold["B0FieldSource"] == fmap["B0FieldIdentifier"]
    assert len(bold["SliceTiming"]) == 14 and bold["TotalReadoutTime"] > 0
    physio = json.loads((sub / "func" / "sub-01_task-drive_physio.json").read_text())
    with gzip.open(sub / "func" / "sub-01_task-drive_physio.tsv.gz", "rt") as fh:
        rows = np.loadtxt(fh)
    assert rows.shape == (40 * physio["SamplingFrequency"], 3)
    assert rows[:, 2].sum() == 20  # one trigger per volume
    truth = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")
    # the pulse peaks follow the R peaks that also drive the EEG's BCG
    pulse = rows[:, 0]
    peaks = (
        np.flatnonzero(
            (pulse[1:-1] > pulse[:-2]) & (pulse[1:-1] >= pulse[2:]) & (pulse[1:-1] > 0.5)
        )
        + 1
    )
    assert abs(len(peaks) - len(truth["r_peaks"])) <= 2
    assert bids_errors(out) == []


def test_realignment_recovers_the_simulated_head_motion(tmp_path):
    """The moving head imaged at 6 mm, realigned back: a shift of a third of a voxel in x
    and z with the head's susceptibility field on, and a 1 degree yaw without it."""
    import dataclasses

    from biosim.experiment.subject import HEAD_CENTER
    from biosim.geometry.motion import RigidMotion
    from biosim.inference.registration import realign

    path = tmp_path / "six.toml"
    path.write_text(
        DRIVE_TOML.replace("matrix = [48, 48]", "matrix = [32, 32]")
        .replace("voxel_size = 4.0", "voxel_size = 6.0")
        .replace("n_slices = 28", "n_slices = 20")
    )
    spec = experiment.load_experiment(path)
    table = spec["devices"]["mri"]
    image = mri_device.subject_image(table, spec)
    scanner = dataclasses.replace(mri_device.build_scanner(table, spec), noise_std=0.0)

    def estimate(shift, yaw_deg, field):
        trans = np.array([[0, 0, 0], [0, 0, 0], shift, shift], float)
        rots = np.zeros((4, 3))
        rots[2:, 2] = np.deg2rad(yaw_deg)
        motion = RigidMotion(np.array([0.0, 1.9, 2.0, 10.0]), trans, rots, HEAD_CENTER)
        acq = scanner.acquire(
            image.tissue,
            reference_echo_time=table["te"],
            n_volumes=3,
            motion=motion,
            field=field,
            affine=image.affine,
        )
        return realign(np.asarray(acq.magnitude, float), image.affine).parameters[2]

    est = estimate([2e-3, 0, 2e-3], 0.0, image.field)  # measured 1.79 / -0.10 / 2.15 mm
    np.testing.assert_allclose(est[:3], [2e-3, 0, 2e-3], atol=0.3e-3)
    est = estimate([0, 0, 0], 1.0, None)  # measured 0.92 deg
    assert abs(np.rad2deg(est[5]) - 1.0) < 0.15 and np.all(np.abs(est[:3]) < 0.1e-3)
