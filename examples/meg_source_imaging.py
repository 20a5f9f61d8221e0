"""Simulate a MEG experiment (306-channel SQUID helmet), read the FIF back with
MNE-Python, and localise the active regions with sLORETA and a dipole fit.

Run: ``python examples/meg_source_imaging.py``  (needs mne)
"""

# %%
import tempfile
from pathlib import Path

import numpy as np

import biosim  # noqa: F401
from biosim import experiment
from biosim.experiment.devices.meg import sensors_for
from biosim.experiment.subject import sphere_head
from biosim.geometry.source_space import cortical_surface
from biosim.inference.minimum_norm import apply_inverse, make_inverse_operator
from biosim.physics.electromag import meg_gain


def run(out_dir=None):
    import mne

    spec = experiment.load_experiment("meg_squid")
    out = Path(out_dir or tempfile.mkdtemp()) / "meg_squid"
    experiment.run_experiment(spec, out, overwrite=True, progress=False)
    raw = mne.io.read_raw_fif(
        out / "sub-01" / "meg" / "sub-01_task-megsquid_meg.fif", preload=True, verbose="error"
    )
    data, fs = raw.get_data(picks="meg"), raw.info["sfreq"]
    truth = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")
    src = cortical_surface("ico3")
    sensors = sensors_for(spec["devices"]["meg"], spec)
    _, center, _ = sphere_head(spec)
    gain = np.einsum(
        "csk,sk->cs", np.asarray(meg_gain(sensors, src.positions, center=center)), src.normals
    )
    inv = make_inverse_operator(gain, np.cov(data[:, : int(4.5 * fs)]), snr=3.0)
    errors = {}
    for b in spec["protocol"]["blocks"][:2]:
        seg = data[:, int((b["onset"] + 0.5) * fs) : int((b["onset"] + b["duration"] - 0.5) * fs)]
        power = (apply_inverse(inv, seg, "sLORETA") ** 2).mean(axis=1)
        region = list(spec["activity"]["drive"]).index(b["condition"])
        errors[b["condition"]] = 1e3 * float(
            np.linalg.norm(src.positions[np.argmax(power)] - truth["dipole_positions"][region])
        )
    return {f"sLORETA error {k} (mm)": v for k, v in errors.items()}


# %%
if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v:.3g}")
