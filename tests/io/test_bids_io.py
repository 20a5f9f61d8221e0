"""BIDS writers (labels, events with trigger codes, derivative datasets) and the MNE
interoperability of biosim's files: vendor MEG channel names, the FIF trigger channel."""

import json

import numpy as np
import pytest

import biosim
from biosim import ParameterError
from biosim.io.bids import (
    EventRow,
    add_bidsignore,
    bids_label,
    derivative_dataset,
    write_dataset_description,
    write_events,
)
from biosim.io.fif import STIM_CHANNEL, event_codes, stim_channel, write_meg_fif
from biosim.physics.electromag.sensors import axial_system_275, opm_array, squid_helmet_306


@pytest.mark.parametrize(
    "name, label",
    [("eeg_fmri", "eegfmri"), ("opm_vs_squid", "opmvssquid"), ("fmri", "fmri"), ("A-1.b", "A1b")],
)
def test_bids_label_keeps_letters_and_digits(name, label):
    assert bids_label(name) == label


def test_bids_label_refuses_a_name_without_letters():
    with pytest.raises(ParameterError, match="name"):
        bids_label("_-_")


def test_events_with_codes_get_a_value_column(tmp_path):
    rows = [EventRow(10.0, 5.0, "b", 2), EventRow(1.0, 0.0, "slice"), EventRow(0.0, 5.0, "a", 1)]
    text = write_events(tmp_path / "events.tsv", rows).read_text().splitlines()
    assert text[0].split("\t") == ["onset", "duration", "trial_type", "value"]
    assert [line.split("\t")[2:] for line in text[1:]] == [["a", "1"], ["slice", "n/a"], ["b", "2"]]
    plain = write_events(tmp_path / "plain.tsv", [EventRow(0.0, 1.0, "a")]).read_text()
    assert plain.splitlines()[0] == "onset\tduration\ttrial_type"


def test_descriptions_and_derivative_datasets(tmp_path):
    write_dataset_description(tmp_path, "x", [{"Name": "biosim"}])
    raw = json.loads((tmp_path / "dataset_description.json").read_text())
    assert raw["DatasetType"] == "raw" and raw["License"] and raw["BIDSVersion"]
    folder = derivative_dataset(tmp_path, "biosim-truth", "truth", "what", ignore=["*.npz"])
    assert folder == tmp_path / "derivatives" / "biosim-truth"
    doc = json.loads((folder / "dataset_description.json").read_text())
    assert doc["DatasetType"] == "derivative"
    assert doc["GeneratedBy"][0]["Name"] == "biosim"
    assert doc["GeneratedBy"][0]["Version"] == biosim.__version__
    add_bidsignore(folder, "*.npz", "*.json")
    assert (folder / ".bidsignore").read_text().split() == ["*.npz", "*.json"]
    with pytest.raises(ParameterError, match="dataset_type"):
        write_dataset_description(tmp_path, "x", [], dataset_type="study")


def test_stim_channel_pulses_end_before_the_next_event():
    stim = stim_channel([(0.5, "b"), (0.1, "a"), (0.102, "b")], {"a": 1, "b": 2}, 1000.0, 1000)
    assert stim[100] == 1 and stim[101] == 1 and stim[102] == 2 and stim[111] == 2
    assert stim[112] == 0 and np.all(stim[500:510] == 2) and stim[510] == 0


def test_meg_names_are_the_vendor_layouts():
    mne = pytest.importorskip("mne")
    from biosim.io.fif import meg_info

    for sensors, layout in (
        (squid_helmet_306(accuracy="point"), "Vectorview-all"),
        (axial_system_275(), "CTF-275"),
    ):
        info = meg_info(sensors, 1000.0)
        found = mne.channels.find_layout(info)
        assert found.kind == layout
        assert set(info.ch_names) == {n.replace(" ", "").split("-")[0] for n in found.names}
    helmet = squid_helmet_306(accuracy="point")
    assert helmet.names[:3] == ("MEG0711", "MEG0712", "MEG0713")  # at the vertex
    for i, name in enumerate(helmet.names):  # 1 mag, 2 and 3 grads
        assert helmet.kinds[i] == ("mag" if name.endswith("1") else "grad")
    ctf = axial_system_275()
    x = ctf.positions[:, 0]
    left = np.array([n.startswith("ML") for n in ctf.names])
    right = np.array([n.startswith("MR") for n in ctf.names])
    assert np.all(x[left] < 0) and np.all(x[right] > 0)  # left is left


def test_fif_trigger_channel_gives_the_events_back(tmp_path):
    mne = pytest.importorskip("mne")
    sensors = opm_array(8)
    fs, n = 200.0, 800
    events = [(0.5, "visual"), (1.5, "motor"), (2.5, "visual")]
    path = write_meg_fif(tmp_path / "x_meg.fif", np.zeros((8, n)), fs, sensors, events)
    raw = mne.io.read_raw_fif(path, verbose="error")
    assert raw.ch_names[-1] == STIM_CHANNEL and raw.get_channel_types()[-1] == "stim"
    found = mne.find_events(raw, verbose="error")
    codes = event_codes(["visual", "motor"])
    np.testing.assert_array_equal(found[:, 0], [100, 300, 500])
    np.testing.assert_array_equal(found[:, 2], [codes["visual"], codes["motor"], codes["visual"]])
    assert list(raw.annotations.description) == ["visual", "motor", "visual"]
