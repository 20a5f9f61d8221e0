"""A sweep over subjects and hemodynamic models, then a group summary.

Each subject is the shipped three-region fMRI experiment (dcm_fmri.toml) with its own
subject id and random seed (thermal noise of the scanner), simulated once with
the SPM Balloon parameters and once with Friston et al. (2000)'s: 2 x N
independent runs on a local Dask cluster, each written as its own BIDS-style
dataset.  Running the script again skips every complete run, so an interrupted
sweep resumes where it stopped.  The summary compares the V1 peak BOLD change
measured in each subject's image with the noise-free truth.

Run: ``python examples/sweep_subjects.py [OUT]`` (default OUT: ``sweep_subjects_out``).
The same sweep from the command line::

    biosim sweep -o OUT --zip subject.id=01,02,03,04 --zip experiment.seed=1,2,3,4 \\
        --grid activity.hemodynamics=spm,friston2000
"""

# %%
import sys
from pathlib import Path

import numpy as np

from biosim import experiment
from biosim.experiment.sweep import run_sweep

PRESETS = ("spm", "friston2000")


def base_spec(duration: float = 240.0) -> dict:
    """The shipped three-region DCM fMRI experiment without its DCM analysis, cut to
    ``duration`` seconds (blocks that do not end by then are dropped; a run too short
    for any keeps one visual block with attention in its second half)."""
    spec = experiment.load_experiment("dcm_fmri")
    spec.pop("analysis", None)
    spec["experiment"]["duration"] = float(duration)
    blocks = [b for b in spec["protocol"]["blocks"] if b["onset"] + b["duration"] <= duration]
    if not blocks:
        length = min(30.0, duration - 20.0)
        blocks = [
            {"onset": 10.0, "duration": length, "condition": "visual"},
            {"onset": 10.0 + length / 2, "duration": length / 2, "condition": "attention"},
        ]
    spec["protocol"]["blocks"] = blocks
    return experiment.validate_spec(spec)


def v1_peak(run_dir: Path, baseline_until: float = 20.0) -> tuple[float, float]:
    """Peak fractional signal change in the V1 voxels of a run's image, and the
    noise-free peak BOLD of V1 from its ground truth."""
    import nibabel as nib

    truth = np.load(run_dir / "derivatives" / "biosim-truth" / "truth.npz")
    (img,) = (run_dir).glob("sub-*/func/*_bold.nii.gz")
    data = np.asarray(nib.load(img).dataobj, dtype=float)
    # V1 is label 1; its mostly-grey-matter voxels (partial volume dilutes the others)
    gm = truth["mri_tissue_fractions"][0]
    roi = data[(truth["labels"] == 1) & (gm > 0.7)].mean(axis=0)
    baseline = roi[truth["scan_times"] < baseline_until].mean()
    return float(roi.max() / baseline - 1), float(truth["bold"][:, 0].max())


def run(
    out_root, n_subjects: int = 4, duration: float = 240.0, scheduler=None, n_workers=None
) -> dict:
    """Sweep ``n_subjects`` subjects x the two Balloon presets; summarise V1 peaks."""
    ids = [f"{i + 1:02d}" for i in range(n_subjects)]
    grid = {
        ("subject.id", "experiment.seed"): [(s, i + 1) for i, s in enumerate(ids)],
        "activity.hemodynamics": list(PRESETS),
    }
    report = run_sweep(
        base_spec(duration),
        out_root,
        grid=grid,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=True,
    )
    est = {p: [] for p in PRESETS}
    true = {}
    for r in report.runs:
        if r.path is None:
            continue
        preset = r.overrides["activity.hemodynamics"]
        e, t = v1_peak(r.path)
        est[preset].append(e)
        true[preset] = t
    return {
        "report": report,
        "peak_estimated": {p: np.array(v) for p, v in est.items()},
        "peak_true": true,
    }


# %%
if __name__ == "__main__":  # the guard matters: Dask starts worker processes
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "sweep_subjects_out")
    res = run(out)
    print(res["report"])
    for preset in PRESETS:
        e = 100 * res["peak_estimated"][preset]
        print(
            f"{preset:12s} V1 peak BOLD: truth {100 * res['peak_true'][preset]:.2f} %, "
            f"measured {e.mean():.2f} +- {e.std(ddof=1) if e.size > 1 else 0:.2f} % "
            f"over {e.size} subjects"
        )
