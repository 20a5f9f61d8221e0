"""Every shipped experiment validates, runs and writes what its devices promise;
``biosim examples`` lists them all."""

import json

import numpy as np
import pytest

from biosim import experiment
from biosim.cli import main
from biosim.io.bids import bids_label

SHIPPED = sorted(p.name for p in experiment.spec.shipped_dir().iterdir() if p.name.endswith(".toml"))
OUTPUTS = {"mri": ["func/{stem}_bold.nii.gz", "func/{stem}_bold.json", "func/{stem}_events.tsv"],
           "eeg": ["eeg/{stem}_eeg.vhdr", "eeg/{stem}_eeg.json", "eeg/{stem}_channels.tsv"],
           "meg": ["meg/{stem}_meg.fif", "meg/{stem}_meg.json", "meg/{stem}_channels.tsv"]}


def test_one_experiment_per_device_is_shipped():
    assert {"fmri.toml", "eeg.toml", "meg_squid.toml", "meg_opm.toml", "eeg_fmri.toml"} <= set(SHIPPED)


# the default runs in test_cli.py and dcm_fmri (which fits DCMs) in test_analysis.py
@pytest.mark.parametrize("name", [n for n in SHIPPED if n not in (experiment.spec.DEFAULT_EXPERIMENT,
                                                                  "dcm_fmri.toml")])
def test_shipped_experiment_runs(name, tmp_path, capsys):
    pytest.importorskip("mne")
    pytest.importorskip("nibabel")
    assert main(["run", name, "-o", str(tmp_path / "ds"), "--no-progress"]) == 0
    spec = experiment.load_experiment(name)
    out = tmp_path / "ds"
    for key, table in spec["devices"].items():
        stem = f"sub-01_task-{bids_label(spec['experiment']['name'])}"
        if key != table["type"]:
            stem += "_acq-" + "".join(c for c in key if c.isalnum())
        for pattern in OUTPUTS[table["type"]]:
            assert (out / "sub-01" / pattern.format(stem=stem)).is_file(), pattern
    truth = json.loads((out / "derivatives" / "biosim-truth" / "truth.json").read_text())
    assert truth["spec"]["experiment"]["name"] == spec["experiment"]["name"]
    arrays = np.load(out / "derivatives" / "biosim-truth" / "truth.npz").files
    assert sorted(truth["arrays"]) == sorted(arrays)             # every array is documented


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
