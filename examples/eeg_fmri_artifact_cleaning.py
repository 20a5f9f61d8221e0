"""Simultaneous EEG-fMRI: run the default experiment, read the EEG back with
MNE-Python, remove the gradient artifact (AAS on the slice triggers) and the
ballistocardiogram (OBS on the R peaks), and compare with the true neural EEG
(1-40 Hz).

Run: ``python examples/eeg_fmri_artifact_cleaning.py``  (needs mne)
"""

# %%
import tempfile
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

import biosim  # noqa: F401
from biosim import experiment
from biosim.inference.eegfmri.artifacts import average_artifact_subtraction, optimal_basis_set


def run(out_dir=None):
    import mne

    out = Path(out_dir or tempfile.mkdtemp()) / "eeg_fmri"
    experiment.run_experiment(experiment.load_experiment(), out, overwrite=True, progress=False)
    raw = mne.io.read_raw_brainvision(
        out / "sub-01" / "eeg" / "sub-01_task-eegfmri_eeg.vhdr", preload=True, verbose="error"
    )
    data, fs = raw.get_data(), raw.info["sfreq"]
    slices = np.array(
        [
            o
            for o, d in zip(raw.annotations.onset, raw.annotations.description)
            if d.endswith("slice")
        ]
    )
    truth = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")
    slice_len = int(round(np.diff(truth["mri_slice_times"]).mean() * fs))
    aas = average_artifact_subtraction(
        data, np.round(slices * fs).astype(int), slice_len, window=30
    )
    cleaned = optimal_basis_set(
        aas,
        np.round(truth["r_peaks"] * fs).astype(int),
        pre=int(0.1 * fs),
        post=int(0.6 * fs),
        n_components=0,
    )
    keep = slice(int(5 * fs), -int(5 * fs))
    band = butter(4, [1.0, 40.0], btype="band", fs=fs, output="sos")  # the EEG band of interest
    clean = sosfiltfilt(band, truth["eeg_clean"], axis=-1)[:, keep]

    def corr(x):
        return float(
            np.corrcoef(sosfiltfilt(band, x, axis=-1)[:, keep].ravel(), clean.ravel())[0, 1]
        )

    return {
        "correlation with the neural EEG, raw": corr(data),
        "after AAS": corr(aas),
        "after AAS + OBS": corr(cleaned),
    }


# %%
if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v:.3f}")
