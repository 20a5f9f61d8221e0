"""Every shipped experiment validates, runs and writes what its devices promise, as a
dataset the official BIDS validator accepts and MNE-BIDS reads back (EEG montage and
events, MEG vendor channel names and trigger channel); ``biosim examples`` lists them all."""

import json

import numpy as np
import pytest

from biosim import experiment
from biosim.cli import main
from biosim.io.bids import bids_label

SHIPPED = sorted(
    p.name for p in experiment.spec.shipped_dir().iterdir() if p.name.endswith(".toml")
)
OUTPUTS = {
    "mri": ["func/{stem}_bold.nii.gz", "func/{stem}_bold.json", "func/{stem}_events.tsv"],
    "eeg": ["eeg/{stem}_eeg.vhdr", "eeg/{stem}_eeg.json", "eeg/{stem}_channels.tsv"],
    "meg": ["meg/{stem}_meg.fif", "meg/{stem}_meg.json", "meg/{stem}_channels.tsv"],
    "ultrasound": [
        "func/{stem}_acq-prfs_part-mag_bold.nii.gz",
        "func/{stem}_acq-prfs_part-phase_bold.nii.gz",
        "func/{stem}_acq-prfs_part-phase_bold.json",
    ],
}


def test_one_experiment_per_device_is_shipped():
    assert {"fmri.toml", "eeg.toml", "meg_squid.toml", "meg_opm.toml", "eeg_fmri.toml"} <= set(
        SHIPPED
    )


#: Run by other tests' fixtures, which call check_dataset on their output: the default in
#: test_cli.py, dcm_fmri (which fits DCMs) in test_analysis.py and erp_eeg_fmri in
#: test_neural_mass_experiment.py.
RUN_ELSEWHERE = (experiment.spec.DEFAULT_EXPERIMENT, "dcm_fmri.toml", "erp_eeg_fmri.toml")
#: Shipped experiments too heavy for CI (a 3D acoustic field: ~1 min of CPU); their device
#: runs end to end on a tiny grid in tests/experiment/devices/test_ultrasound_device.py,
#: which calls check_dataset on its output.
SLOW = ("focused_ultrasound.toml",)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
        for n in SHIPPED
        if n not in RUN_ELSEWHERE
    ],
)
def test_shipped_experiment_runs(name, tmp_path, capsys, bids_errors):
    pytest.importorskip("mne")
    pytest.importorskip("nibabel")
    assert main(["run", name, "-o", str(tmp_path / "ds"), "--no-progress"]) == 0
    check_dataset(tmp_path / "ds", experiment.load_experiment(name), bids_errors)


def check_dataset(out, spec, bids_errors):
    """The device files, the documented truth, zero BIDS validator errors, MNE read-back."""
    for key, table in spec["devices"].items():
        stem = f"sub-01_task-{bids_label(spec['experiment']['name'])}"
        if key != table["type"]:
            stem += "_acq-" + "".join(c for c in key if c.isalnum())
        for pattern in OUTPUTS[table["type"]]:
            assert (out / "sub-01" / pattern.format(stem=stem)).is_file(), pattern
    truth = json.loads((out / "derivatives" / "biosim-truth" / "truth.json").read_text())
    assert truth["spec"]["experiment"]["name"] == spec["experiment"]["name"]
    arrays = np.load(out / "derivatives" / "biosim-truth" / "truth.npz").files
    assert sorted(truth["arrays"]) == sorted(arrays)  # every array is documented
    assert bids_errors(out) == []
    check_mne_reads_back(out, spec)


def check_mne_reads_back(out, spec):
    """MNE-BIDS reads each EEG with its montage and events, and each MEG with vendor
    channel names (MNE's layout finds every channel) and events on its trigger channel."""
    mne = pytest.importorskip("mne")
    mne_bids = pytest.importorskip("mne_bids")
    task = bids_label(spec["experiment"]["name"])
    conditions = {b["condition"] for b in spec["protocol"]["blocks"]}
    onsets = sorted(b["onset"] for b in spec["protocol"]["blocks"])
    in_scanner = any(t["type"] == "mri" for t in spec["devices"].values())
    for key, table in spec["devices"].items():
        kind = table["type"]
        if kind not in ("eeg", "meg"):
            continue
        path = mne_bids.BIDSPath(
            subject=spec["subject"]["id"],
            task=task,
            datatype=kind,
            suffix=kind,
            root=out,
            acquisition=None if key == kind else "".join(c for c in key if c.isalnum()),
            extension=".vhdr" if kind == "eeg" else ".fif",
        )
        raw = mne_bids.read_raw_bids(path, verbose="error")
        if kind == "eeg":
            montage = raw.get_montage()
            assert montage is not None and montage.ch_names == raw.ch_names
            locs = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
            assert np.all(np.isfinite(locs)) and np.all(np.linalg.norm(locs, axis=1) > 0.05)
            _, ids = mne.events_from_annotations(raw, verbose="error")
            assert conditions | ({"slice", "volume"} if in_scanner else set()) == set(ids)
            continue
        names = [n for n, t in zip(raw.ch_names, raw.get_channel_types()) if t in ("mag", "grad")]
        if table["system"] in ("squid306", "axial275"):
            layout = mne.channels.find_layout(raw.info, ch_type="meg")
            vendor = {n.replace(" ", "").split("-")[0] for n in layout.names}
            assert (
                layout.kind
                == {"squid306": "Vectorview-all", "axial275": "CTF-275"}[table["system"]]
            )
            assert set(names) == vendor and len(names) == len(vendor)
        events = mne.find_events(raw, verbose="error")
        np.testing.assert_allclose(raw.times[events[:, 0]], onsets, atol=1.5 / raw.info["sfreq"])


def test_examples_lists_and_copies(tmp_path, capsys):
    assert main(["examples"]) == 0
    listed = capsys.readouterr().out
    for name in SHIPPED:
        assert name in listed
    assert main(["examples", "--copy", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == SHIPPED


def test_devices_are_listed(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in ("mri:", "eeg:", "meg:"):
        assert name in out
