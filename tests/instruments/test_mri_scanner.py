"""The virtual MRI scanner: parameter validation, BOLD contrast, NIfTI output."""

import json

import numpy as np
import pytest

from biosim import ParameterError
from biosim.instruments.mri import GradientEchoEPI, MRIScanner, SpinEchoEPI, TissueMaps
from biosim.io.bids import write_json
from biosim.io.nifti import write_nifti

SEQ = dict(matrix=(8, 8), fov=(0.032, 0.032), n_slices=2, echo_spacing=5e-4, tr=1.0)


def _tissue(shape=(8, 8, 2)):
    ones = np.ones(shape)
    return TissueMaps(
        m0=ones, t1=1.4 * ones, t2=0.08 * ones, t2star=0.045 * ones, off_resonance=0 * ones
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(te=1.5), "te"),
        (dict(flip_angle=200.0), "flip_angle"),
        (dict(matrix=(7, 8)), "matrix"),
        (dict(te=0.001), "te"),
        (dict(n_slices=200), "tr"),
        (dict(slice_order="spiral"), "slice_order"),
    ],
)
def test_bad_sequence_parameters(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        GradientEchoEPI(**{**SEQ, **kwargs})


def test_bold_contrast_gre_vs_se_and_te():
    tissue = _tissue()
    bold = np.zeros((2, 8, 8, 2))
    bold[1] = 0.02  # 2 % at the reference TE (40 ms)
    changes = {}
    for name, seq in [
        ("gre30", GradientEchoEPI(**SEQ, te=0.03)),
        ("gre40", GradientEchoEPI(**SEQ, te=0.04)),
        ("se", SpinEchoEPI(**SEQ, te=0.04)),
    ]:
        acq = MRIScanner(sequence=seq).acquire(tissue, bold)
        centre = acq.magnitude[4, 4, 0]
        changes[name] = centre[1] / centre[0] - 1
    assert changes["gre40"] == pytest.approx(0.02, rel=0.05)
    assert changes["gre30"] == pytest.approx(np.expm1(0.75 * np.log1p(0.02)), rel=0.05)
    assert 0 < changes["se"] < changes["gre40"]


def test_noise_drift_and_nifti(tmp_path):
    nib = pytest.importorskip("nibabel")
    scanner = MRIScanner(sequence=GradientEchoEPI(**SEQ), noise_std=0.01, drift=0.01, seed=3)
    acq = scanner.acquire(_tissue(), n_volumes=5)
    assert acq.magnitude.shape == (8, 8, 2, 5)
    clean = MRIScanner(sequence=GradientEchoEPI(**SEQ), drift=0.01).acquire(_tissue(), n_volumes=5)
    mean = clean.magnitude[2:6, 2:6, 0].mean(axis=(0, 1))
    assert mean[-1] / mean[0] == pytest.approx(1.04, rel=1e-5)
    # Rician magnitude: the noise std in the bright interior is close to noise_std
    assert (acq.magnitude - clean.magnitude)[2:6, 2:6].std() == pytest.approx(0.01, rel=0.2)
    path = write_nifti(
        tmp_path / "sub-01_task-x_bold.nii.gz",
        acq.magnitude,
        acq.affine,
        tr=acq.sidecar["RepetitionTime"],
    )
    write_json(tmp_path / "sub-01_task-x_bold.json", acq.sidecar)
    img = nib.load(path)
    assert img.shape == (8, 8, 2, 5) and img.header.get_zooms()[3] == pytest.approx(1.0)
    sidecar = json.loads((tmp_path / "sub-01_task-x_bold.json").read_text())
    for key in ("RepetitionTime", "EchoTime", "FlipAngle", "MagneticFieldStrength", "SliceTiming"):
        assert key in sidecar
    assert len(sidecar["SliceTiming"]) == 2
    np.testing.assert_allclose(img.affine[:3, :3], np.diag([4.0, 4.0, 3.0]))


def test_tissue_validation():
    with pytest.raises(ParameterError, match="t2star"):
        ones = np.ones((8, 8, 2))
        TissueMaps(ones, ones, 0.05 * ones, 0.08 * ones, 0 * ones)
    with pytest.raises(ParameterError, match="tissue"):
        MRIScanner(sequence=GradientEchoEPI(**SEQ)).acquire(_tissue((4, 4, 2)), n_volumes=1)
