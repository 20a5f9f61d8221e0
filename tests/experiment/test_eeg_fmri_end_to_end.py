"""End to end: the default simultaneous EEG-fMRI dataset, read back with MNE-Python and
nibabel, cleaned with biosim's drift correction + AAS + OBS, and analysed with the GLM."""

import json

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from biosim import experiment
from biosim.inference.design import design_matrix
from biosim.inference.eegfmri.artifacts import average_artifact_subtraction, optimal_basis_set
from biosim.inference.eegfmri.clock import estimate_clock_drift, resample_to_mri_clock
from biosim.inference.glm import fit_glm


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "ds"
    experiment.run_experiment(experiment.load_experiment(), out, progress=False)
    return out


def _read_eeg(path):
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_brainvision(
        path / "sub-01" / "eeg" / "sub-01_task-eegfmri_eeg.vhdr", preload=True, verbose=False
    )
    slices = np.array(
        [
            o
            for o, d in zip(raw.annotations.onset, raw.annotations.description)
            if d.endswith("slice")
        ]
    )
    return raw.get_data(), raw.info["sfreq"], slices


def test_artifact_subtraction_restores_the_neural_eeg(dataset):
    """Amplifier synchronised to the scanner (the default): AAS on the slice markers,
    then OBS on the R peaks, recover the noise-free neural EEG."""
    data, fs, slice_onsets = _read_eeg(dataset)
    truth = np.load(dataset / "derivatives" / "biosim-truth" / "truth.npz")
    slice_len = int(round(np.diff(truth["mri_slice_times"]).mean() * fs))
    trig = np.round(slice_onsets * fs).astype(int)
    aas = average_artifact_subtraction(data, trig, slice_len, window=30)
    r = np.round(truth["r_peaks"] * fs).astype(int)  # from the ECG in a real lab
    # the simulated pulse artifact varies little from beat to beat (10 %) compared with the
    # EEG, so principal components would absorb neural signal (measured: r = 0.94 / 0.83 /
    # 0.71 / 0.64 with 0 / 1 / 2 / 3 components); the mean template is the optimal basis here
    cleaned = optimal_basis_set(aas, r, pre=int(0.1 * fs), post=int(0.6 * fs), n_components=0)
    clean = truth["eeg_clean"]
    keep = slice(int(5 * fs), -int(5 * fs))
    band = butter(4, [1.0, 40.0], btype="band", fs=fs, output="sos")  # the EEG band of interest
    data, cleaned, clean = (sosfiltfilt(band, x, axis=-1)[:, keep] for x in (data, cleaned, clean))
    r_raw = np.corrcoef(data.ravel(), clean.ravel())[0, 1]
    r_clean = np.corrcoef(cleaned.ravel(), clean.ravel())[0, 1]
    db = 10 * np.log10(np.sum((data - clean) ** 2) / np.sum((cleaned - clean) ** 2))
    # measured (1-40 Hz, 1 kHz, 40 slices): r 0.38 -> 0.975, artifact power -21 dB
    # (amplifier noise and mains remain)
    assert r_raw < 0.5 and r_clean > 0.95 and db > 15, (r_raw, r_clean, db)


def test_clock_drift_is_recovered_from_the_triggers(tmp_path):
    """Amplifier 10 ppm fast: the drift fitted to the slice markers maps every trigger to
    within half a sample (markers are stored on whole 4 ms samples)."""
    spec = experiment.load_experiment()
    spec["devices"]["eeg"]["clock_drift_ppm"] = 10.0
    out = experiment.run_experiment(spec, tmp_path / "drift", progress=False)
    data, fs, slice_onsets = _read_eeg(out)
    slice_mri = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")["mri_slice_times"]
    alpha, beta, rms = estimate_clock_drift(slice_mri, slice_onsets)
    assert alpha > 1
    assert np.max(np.abs(alpha * slice_mri + beta - slice_mri * (1 + 10e-6))) < 0.5 / fs
    on_mri, grid = resample_to_mri_clock(data, np.arange(data.shape[1]) / fs, alpha, beta, fs)
    assert abs(grid[1] - grid[0] - 1 / fs) < 1e-12 and on_mri.shape[0] == data.shape[0]


def test_glm_finds_the_active_regions(dataset):
    nib = pytest.importorskip("nibabel")
    func = dataset / "sub-01" / "func"
    img = nib.load(func / "sub-01_task-eegfmri_bold.nii.gz")
    sidecar = json.loads((func / "sub-01_task-eegfmri_bold.json").read_text())
    events = [
        dict(onset=float(o), duration=float(d), trial_type=t)
        for o, d, t in (
            line.split("\t")
            for line in (func / "sub-01_task-eegfmri_events.tsv").read_text().splitlines()[1:]
        )
    ]
    y = np.asarray(img.dataobj).reshape(-1, img.shape[-1]).T
    truth = np.load(dataset / "derivatives" / "biosim-truth" / "truth.npz")
    labels = truth["labels"].ravel()
    grey = truth["mri_tissue_fractions"][0].ravel() > 0.5  # the analyst's grey-matter mask
    inside = y.mean(0) > 0.2 * np.percentile(y.mean(0), 99)  # brain voxels
    x, names = design_matrix(img.shape[-1], sidecar["RepetitionTime"], events)
    res = fit_glm(y[:, inside], x, "ar1")
    lab, gm = labels[inside], grey[inside]
    # the default network: visual drives V1; attention strengthens V1 -> V5 (V5 responds to
    # the interaction, weaker: measured median z 7.1 in V1 for visual, 2.6 in V5 for attention,
    # physiological + AR + thermal noise, 120 volumes)
    for cond, region, median_z in (("visual", 1, 5.0), ("attention", 2, 1.5)):
        c = np.zeros(x.shape[1])
        c[names.index(cond)] = 1
        _, z = res.t_contrast(c)
        assert np.median(z[(lab == region) & gm]) > median_z
        assert z[lab == region].max() > 5
        assert np.mean(z[lab == 0] > 3.09) < 0.01  # outside the regions: false-positive control
