"""The biosim command: help, version, the default experiment, validation errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import biosim
from biosim import SpecError, experiment
from biosim.cli import main


def test_help_and_version(capsys):
    assert main([]) == 0
    assert "run" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert biosim.__version__ in capsys.readouterr().out


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ds"
    assert main(["run", "-o", str(out), "--no-progress"]) == 0
    return out


def test_default_run_writes_dataset(default_run):
    func = default_run / "sub-01" / "func"
    stem = "sub-01_task-eegfmri"
    for path in [
        func / f"{stem}_bold.json",
        func / f"{stem}_events.tsv",
        default_run / "derivatives" / "biosim-truth" / "truth.npz",
        default_run / "derivatives" / "biosim-truth" / "truth.json",
        default_run / "derivatives" / "biosim-report" / "mri.png",
        default_run / "derivatives" / "biosim-report" / "activity.png",
        default_run / "dataset_description.json",
    ]:
        assert path.is_file(), path
    sidecar = json.loads((func / f"{stem}_bold.json").read_text())
    assert sidecar["RepetitionTime"] == 2.0 and sidecar["EchoTime"] == 0.03
    truth = np.load(default_run / "derivatives" / "biosim-truth" / "truth.npz")
    assert truth["neural_input"].shape == (2400, 3)
    assert truth["states"].shape == (120, 3, 4)
    # BOLD in the physiological range (a few percent at 3 T)
    assert 0.01 < truth["bold"].max() < 0.06


def test_default_nifti_has_truth_in_regions(default_run):
    nib = pytest.importorskip("nibabel")
    img = nib.load(default_run / "sub-01" / "func" / "sub-01_task-eegfmri_bold.nii.gz")
    data = np.asarray(img.dataobj)
    assert data.ndim == 4 and data.shape[-1] == 120
    assert img.header.get_zooms()[3] == pytest.approx(2.0)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    truth = np.load(default_run / "derivatives" / "biosim-truth" / "truth.npz")
    labels, grey = truth["labels"], truth["mri_tissue_fractions"][0] > 0.5
    for r in range(3):
        ts = data[(labels == r + 1) & grey].mean(axis=0)
        r_corr = np.corrcoef(ts, truth["bold"][:, r])[0, 1]
        # measured 0.70 / 0.66 / 0.63 under physiological, AR and thermal noise
        assert r_corr > 0.5


def test_existing_output_is_refused_then_overwritten(default_run, capsys):
    assert main(["run", "-o", str(default_run), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_validate_and_examples(tmp_path, capsys):
    assert main(["examples", "--copy", str(tmp_path)]) == 0
    assert "eeg_fmri.toml" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "eeg_fmri.toml")]) == 0
    assert "is valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("te = 0.03", "te = 2.5"), r"devices.mri.te = 2.5 is invalid"),
        (lambda s: s.replace("tr = 2.0", "tr = -2.0"), r"devices.mri.tr = -2.0 is invalid"),
        (
            lambda s: s.replace('condition = "visual" }', 'condition = "auditory" }', 1),
            r"protocol condition 'auditory' is not defined in \[activity.dcm.C\]",
        ),
        (
            lambda s: s.replace("C.visual = [0.06, 0.0, 0.0]", "C.visual = [0.06, 0.0]"),
            r"activity.dcm.C.visual = \[0.06, 0.0\] is invalid",
        ),
        (
            lambda s: s.replace("B.attention", "B.atention"),
            r"activity.dcm.B.atention: condition 'atention' does not occur",
        ),
        (
            lambda s: s.replace("[ 0.0,  0.5, -0.5]]", "[ 0.0,  0.5, 0.5]]"),
            r"activity.dcm.A diagonal",
        ),
        (
            lambda s: s.replace('sequence = "gre"', 'sequence = "gre"\ntype = "pet"'),
            r"devices.mri: 'pet' is not a known device type",
        ),
        (
            lambda s: s.replace("[devices.mri]", "[devices.pet]"),
            r"devices.pet: 'pet' is not a known device type",
        ),
        (lambda s: s.replace("duration = 240.0", "duration = 241.0"), r"whole number of TRs"),
        (lambda s: s + "\n[[[", r"not valid TOML"),
        (
            lambda s: s.replace("noise_std = 3.0", "noise_sdt = 3.0"),
            r"devices.mri.noise_sdt is not a known key: expected one of",
        ),
        (
            lambda s: s.replace("carrier_hz = 10.0", "carier_hz = 10.0"),
            r"activity.carier_hz is not a known key",
        ),
    ],
)
def test_bad_spec_names_the_key(tmp_path, edit, message):
    text = (Path(experiment.__file__).parent / "shipped" / "eeg_fmri.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(text))
    with pytest.raises(SpecError, match=message):
        experiment.load_experiment(bad)
    assert main(["validate", str(bad)]) == 2


def test_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    out = tmp_path / "ds"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment.pipeline, "write_truth", boom)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(experiment.load_experiment(), out, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "biosim"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "biosim run" in proc.stdout or "run" in proc.stdout


def test_default_eeg_recording_reads_back_with_mne(default_run):
    mne = pytest.importorskip("mne")
    vhdr = default_run / "sub-01" / "eeg" / "sub-01_task-eegfmri_eeg.vhdr"
    raw = mne.io.read_raw_brainvision(vhdr, preload=True, verbose=False)
    truth = np.load(default_run / "derivatives" / "biosim-truth" / "truth.npz")
    data = raw.get_data()
    assert data.shape == truth["eeg_clean"].shape and raw.info["sfreq"] == 1000.0
    # the recording is the noise-free truth plus amplifier noise and mains: the residual is
    # small, uncorrelated with the truth, and peaks at 50 Hz
    resid = data - truth["eeg_clean"] - truth["eeg_gradient_artifact"] - truth["eeg_bcg_artifact"]
    assert resid.std() < 3e-6
    assert abs(np.corrcoef(resid.ravel(), truth["eeg_clean"].ravel())[0, 1]) < 0.05
    spec = np.abs(np.fft.rfft(resid[0]))
    freqs = np.fft.rfftfreq(resid.shape[1], 1 / 1000.0)
    assert abs(freqs[np.argmax(spec[1:]) + 1] - 50.0) < 0.1
    descriptions = list(raw.annotations.description)
    assert sum(d.endswith(("visual", "attention")) for d in descriptions) == 6
    assert sum(d.endswith("volume") for d in descriptions) == 120  # one per fMRI volume
    # visual blocks drive V1/V5: 10 Hz power at occipital electrodes rises in visual blocks
    names = raw.ch_names
    occ = [names.index(n) for n in ("O1", "Oz", "O2")]
    t = truth["eeg_times"]
    vis = (t >= 20) & (t < 40)
    rest = (t >= 0) & (t < 20)
    neural = data - truth["eeg_gradient_artifact"] - truth["eeg_bcg_artifact"]
    assert neural[occ][:, vis].std() > 3 * neural[occ][:, rest].std()
    for f in (
        "sub-01_electrodes.tsv",
        "sub-01_task-eegfmri_channels.tsv",
        "sub-01_task-eegfmri_eeg.json",
    ):
        assert (default_run / "sub-01" / "eeg" / f).is_file()
    assert (default_run / "derivatives" / "biosim-report" / "eeg.png").is_file()


def test_default_run_is_valid_bids_and_mne_bids_reads_it(default_run, bids_errors):
    """Zero validator errors; MNE-BIDS reads the EEG with its montage (fsaverage frame, m)
    and with the blocks and the scanner's slice and volume triggers of events.tsv."""
    assert bids_errors(default_run) == []
    mne = pytest.importorskip("mne")
    mne_bids = pytest.importorskip("mne_bids")
    path = mne_bids.BIDSPath(
        subject="01",
        task="eegfmri",
        datatype="eeg",
        suffix="eeg",
        extension=".vhdr",
        root=default_run,
    )
    raw = mne_bids.read_raw_bids(path, verbose="error")
    montage = raw.get_montage()
    assert montage is not None and montage.ch_names == raw.ch_names
    truth = np.load(default_run / "derivatives" / "biosim-truth" / "truth.npz")
    dig = np.array(
        [d["r"] for d in montage.dig if d["kind"] == mne.io.constants.FIFF.FIFFV_POINT_EEG]
    )
    np.testing.assert_allclose(dig, truth["eeg_sensor_positions"], atol=1e-5)  # m, as placed
    events, ids = mne.events_from_annotations(raw, verbose="error")
    counts = {k: int((events[:, 2] == v).sum()) for k, v in ids.items()}
    bold = json.loads(
        (default_run / "sub-01" / "func" / "sub-01_task-eegfmri_bold.json").read_text()
    )
    assert counts["volume"] == 120 and counts["slice"] == 120 * len(bold["SliceTiming"])
    assert counts["visual"] + counts["attention"] == 6
    description = json.loads((default_run / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0] == {
        "Name": "biosim",
        "Version": biosim.__version__,
        "Description": description["GeneratedBy"][0]["Description"],
    }
    assert description["License"] and (default_run / "README").is_file()
    for sub in ("biosim-truth", "biosim-report"):
        doc = json.loads(
            (default_run / "derivatives" / sub / "dataset_description.json").read_text()
        )
        assert doc["DatasetType"] == "derivative" and doc["GeneratedBy"][0]["Name"] == "biosim"


def test_regions_lists_landmarks_and_roi_sets(capsys):
    assert main(["regions"]) == 0
    out = capsys.readouterr().out
    assert "V1: (" in out and "power264: 264 regions" in out and "dosenbach160" in out
    assert main(["regions", "seitzman300"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 300 and lines[0].startswith("seitzman300_001: MNI (")
    assert main(["regions", "nope"]) == 2
    assert "roi_set" in capsys.readouterr().err
