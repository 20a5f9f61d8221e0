"""A 10-minute simultaneous EEG-fMRI session, simulated, written and analysed back.

The session: 267 regions (V1, V5, PFC and Power et al.'s 264 ROIs) coupled by a
distance-dependent network, driven by a visual and an attention condition; a
64-channel EEG (``biosemi64``) at 5 kHz inside the scanner (gradient artifact of
the EPI train, ballistocardiogram of the same heartbeat as the fMRI's cardiac
noise, amplifier noise, mains, clock drift); whole-brain GRE-EPI of the MNI152
subject, 80 x 80 x 50 voxels of 2.5 mm, TR 2 s, 300 volumes, with susceptibility
distortion and dropout, head motion (drift and two jerks) and physiological,
AR and thermal noise; a T1w image, field map and physiological recordings.

Phases, each in its own process so that its peak memory is its own:

1. ``simulate``: ``biosim.experiment.run_experiment`` (simulation and writing of
   the BIDS dataset, truth and report);
2. ``analyse``: what a lab does with the files: AAS of the gradient artifact on
   the slice triggers then OBS of the BCG on the R peaks, realignment and a
   whole-brain GLM (AR(1), motion confounds) scored against the true activation,
   dSPM source imaging of the cleaned EEG on the cortex, and a 3-region DCM
   (V1, V5, PFC) of the fMRI.

Targets (issue 23): simulate + write <= 60 s and <= 4 GB; analyse <= 60 s.

Usage::

    python benchmarks/eeg_fmri_session.py [--duration 600] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss() -> float:
    """Peak resident memory of this process, bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def session_spec(duration: float = 600.0) -> dict:
    """The session as an experiment specification (a dict, as from a TOML file)."""
    blocks = []
    for k in range(int(duration // 60)):  # a visual block a minute, attention in its second half
        blocks.append({"onset": 60.0 * k + 20.0, "duration": 20.0, "condition": "visual"})
        blocks.append({"onset": 60.0 * k + 30.0, "duration": 10.0, "condition": "attention"})
    return {
        "experiment": {"name": "eeg_fmri_session", "seed": 0, "duration": float(duration)},
        "subject": {
            "regions": ["V1", "V5", "PFC", "power264"],
            "voxel_size": 2.5,
            "head": "sphere",
            "motion": {"translation": 0.15, "rotation": 0.1, "jerks": 2, "jerk_size": 0.5},
        },
        "activity": {
            "model": "network",
            "dt": 0.1,
            "network": {
                "coupling": 0.5,
                "time_constant": 1.0,
                "noise": 0.02,
                "inputs": {
                    "visual": {"regions": ["V1", "V5"], "gain": 0.12},
                    "attention": {"regions": ["V5", "PFC"], "gain": 0.1},
                },
            },
        },
        "protocol": {"blocks": blocks},
        "devices": {
            "mri": {
                "field_strength": 3.0,
                "tr": 2.0,
                "te": 0.0235,
                "matrix": [80, 80],
                "n_slices": 50,  # 125 mm: every Power ROI; 200 EEG samples a slice
                "echo_spacing": 0.0004,
                "slab_center": [0.0, -16.0, 18.0],
                "noise_std": 3.0,
                "noise": {"sfnr": 100.0, "ar": [0.4], "fwhm": 6.0, "cardiac": 0.004},
            },
            "eeg": {
                "montage": "biosemi64",
                "sample_rate": 5000.0,
                "truth_sample_rate": 500.0,
                "noise_density": 2e-8,
                "line_noise": 2e-6,
                "clock_drift_ppm": 10.0,
            },
        },
    }


def simulate(out: Path, duration: float) -> dict:
    """Phase 1 in this process: run the experiment; time its steps."""
    import contextlib

    from biosim.experiment import pipeline
    from biosim.experiment.spec import validate_spec

    steps: dict[str, float] = {}
    original = pipeline.phase

    @contextlib.contextmanager
    def timed(desc, disable=None):
        t0 = time.perf_counter()
        with original(desc, disable=disable):
            yield
        steps[desc] = time.perf_counter() - t0

    pipeline.phase = timed
    t0 = time.perf_counter()
    spec = validate_spec(session_spec(duration))
    steps["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipeline.run_experiment(spec, out, overwrite=True, progress=False)
    total = time.perf_counter() - t0
    steps["truth, report and BIDS files"] = total - sum(
        v for k, v in steps.items() if k != "validate"
    )
    return {"steps": steps, "total": total + steps["validate"], "peak_rss": _peak_rss()}


def _read_eeg(vhdr: Path):
    """The BrainVision data (float32, multiplexed) as (channels, samples) and its rate."""
    text = vhdr.read_text()
    n_ch = int(text.split("NumberOfChannels=")[1].split()[0])
    interval_us = float(text.split("SamplingInterval=")[1].split()[0])
    raw = np.memmap(vhdr.with_suffix(".eeg"), dtype="<f4", mode="r").reshape(-1, n_ch)
    resolution = np.array(
        [float(line.split(",")[2]) for line in text.splitlines() if line.startswith("Ch")][:n_ch]
    )
    data = np.ascontiguousarray(raw.T) * resolution[:, None].astype(np.float32) * 1e-6
    return data, 1e6 / interval_us


def analyse(out: Path) -> dict:
    """Phase 2 in this process: the analyses a lab would run on the files."""
    import nibabel as nib

    from biosim.inference.design import design_matrix
    from biosim.inference.eegfmri.artifacts import (
        average_artifact_subtraction,
        optimal_basis_set,
    )
    from biosim.inference.glm import fit_glm
    from biosim.inference.metrics import detection_rates
    from biosim.inference.registration import realign

    steps, result = {}, {}
    sub = out / "sub-01"
    task = "eegfmrisession"
    truth = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")
    spec = json.loads((out / "derivatives" / "biosim-truth" / "truth.json").read_text())["spec"]

    t0 = time.perf_counter()
    eeg, fs = _read_eeg(sub / "eeg" / f"sub-01_task-{task}_eeg.vhdr")
    events = [
        line.split("\t")
        for line in (sub / "eeg" / f"sub-01_task-{task}_events.tsv").read_text().splitlines()[1:]
    ]
    slices = np.array([float(e[0]) for e in events if e[2] == "slice"])
    steps["read EEG"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    slice_len = int(round(np.diff(slices).mean() * fs))
    aas = average_artifact_subtraction(eeg, np.round(slices * fs).astype(int), slice_len, 30)
    del eeg
    steps["AAS (gradient artifact)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r_peaks = np.round(truth["r_peaks"] * fs).astype(int)  # the ECG's R peaks (from the truth)
    cleaned = optimal_basis_set(aas, r_peaks, pre=int(0.1 * fs), post=int(0.6 * fs))
    del aas
    steps["OBS (ballistocardiogram, 3 components)"] = time.perf_counter() - t0
    from scipy.signal import butter, sosfiltfilt

    clean_truth = truth["eeg_clean"]
    truth_fs = 1.0 / float(truth["eeg_times"][1] - truth["eeg_times"][0])
    q = max(1, int(round(fs / truth_fs)))
    # scoring (not timed): the 1-40 Hz band, filtered at the full rate before decimating
    n = clean_truth.shape[1]
    got = sosfiltfilt(butter(4, [1.0, 40.0], btype="band", fs=fs, output="sos"), cleaned, axis=-1)
    got = got[:, ::q][:, :n]
    band = butter(4, [1.0, 40.0], btype="band", fs=truth_fs, output="sos")
    want = sosfiltfilt(band, clean_truth, axis=-1)
    keep = slice(int(5 * truth_fs), -int(5 * truth_fs))
    result["eeg_1_40_hz_correlation_with_truth"] = float(
        np.corrcoef(got[:, keep].ravel(), want[:, keep].ravel())[0, 1]
    )

    t0 = time.perf_counter()
    img = nib.load(sub / "func" / f"sub-01_task-{task}_bold.nii.gz")
    bold = np.asarray(img.dataobj, np.float32)
    steps["read fMRI"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean = bold.mean(axis=3)
    mask = mean > 0.2 * np.percentile(mean, 99)
    motion = realign(bold, img.affine, mask=mask).parameters
    steps["realignment"] = time.perf_counter() - t0
    true_motion = truth["mri_motion"] - truth["mri_motion"][0]
    est = motion - motion[0]
    result["realignment_rms_error"] = {
        "translation_mm": float(1e3 * np.sqrt(np.mean((est[:, :3] - true_motion[:, :3]) ** 2))),
        "rotation_deg": float(np.rad2deg(np.sqrt(np.mean((est[:, 3:] - true_motion[:, 3:]) ** 2)))),
        "true_translation_std_mm": float(1e3 * true_motion[:, :3].std()),
    }
    t0 = time.perf_counter()
    ev = [
        dict(zip(("onset", "duration", "trial_type"), (float(a), float(b), c)))
        for a, b, c in (
            line.split("\t")[:3]
            for line in (sub / "func" / f"sub-01_task-{task}_events.tsv")
            .read_text()
            .splitlines()[1:]
        )
    ]
    x, names = design_matrix(bold.shape[3], 2.0, ev, confounds=motion - motion.mean(0))
    fit = fit_glm(bold[mask].T, x, noise_model="ar1")
    steps["whole-brain GLM (AR(1))"] = time.perf_counter() - t0
    from scipy import sparse

    from biosim.experiment.analysis import glm_truth_masks
    from biosim.experiment.protocol import Protocol
    from biosim.experiment.spec import validate_spec

    full = validate_spec(session_spec(spec["experiment"]["duration"]))
    protocol = Protocol.from_spec(full)
    labels = np.asarray(truth["labels"])
    flat = labels.ravel()
    one_hot = sparse.csr_matrix(
        (np.ones((flat > 0).sum()), (flat[flat > 0] - 1, np.flatnonzero(flat > 0))),
        shape=(truth["bold"].shape[1], flat.size),
    )
    masks = glm_truth_masks(truth["bold"], 2.0, one_hot, labels.shape, protocol, 0.2)
    result["glm"] = {}
    for cond in ("visual", "attention"):
        c = np.zeros(x.shape[1])
        c[names.index(cond)] = 1.0
        z = np.zeros(mask.shape, np.float32)
        z[mask] = fit.t_contrast(c)[1]
        rates = detection_rates(z, masks[cond], 3.1, mask=mask)
        result["glm"][cond] = {
            "sensitivity": rates.sensitivity,
            "false_positive_rate": rates.false_positive_rate,
        }

    t0 = time.perf_counter()
    from biosim.inference.minimum_norm import apply_inverse, make_inverse_operator

    gain = truth["eeg_leadfield"]  # (C, regions): the forward model a lab computes
    decim = cleaned[:, :: int(fs // 250)]
    noise = np.cov(decim[:, : 250 * 18])  # the first 18 s: rest
    inv = make_inverse_operator(
        gain, noise + 1e-3 * np.trace(noise) / len(noise) * np.eye(len(noise))
    )
    src = apply_inverse(inv, decim, method="dSPM")
    steps["dSPM source imaging (267 regions)"] = time.perf_counter() - t0
    result["source_imaging_shape"] = list(np.shape(src))

    t0 = time.perf_counter()
    from biosim.inference.dcm import DCMStructure, fit_dcm

    rois = [np.asarray(labels) == r + 1 for r in range(3)]
    y = np.stack([bold[m].mean(axis=0) for m in rois], 1)
    y = 100 * (y / y[:8].mean(0) - 1)
    # conditions in alphabetical order: attention (modulates V1 -> V5), visual (drives V1)
    a = np.array([[1, 0, 0], [1, 1, 1], [0, 1, 1]], bool)
    b = np.zeros((2, 3, 3), bool)
    b[0, 1, 0] = True
    cmat = np.zeros((3, 2), bool)
    cmat[0, 1] = True
    st = DCMStructure(a, b, cmat, tr=2.0, n_micro=8, field_strength=3.0, echo_time=0.0235)
    u = protocol.boxcars(2.0 / 8, bold.shape[3] * 8)
    res = fit_dcm(st, y, u)
    steps["3-region DCM"] = time.perf_counter() - t0
    result["dcm_free_energy"] = float(res.free_energy)
    return {
        "steps": steps,
        "total": sum(steps.values()),
        "peak_rss": _peak_rss(),
        "result": result,
    }


def _child(phase: str, out: Path, duration: float) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--out", str(out)]
    cmd += ["--duration", str(duration)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print(name: str, report: dict, target_s: float, target_gb: float | None) -> None:
    print(
        f"{name}: {report['total']:.1f} s (target {target_s:g} s), peak memory "
        f"{report['peak_rss'] / 1e9:.2f} GB" + (f" (target {target_gb:g} GB)" if target_gb else "")
    )
    for step, t in report["steps"].items():
        print(f"  {step:45s} {t:7.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the dataset")
    ap.add_argument("--phase", choices=("simulate", "analyse"), default=None)
    args = ap.parse_args()
    if args.phase == "simulate":
        print(json.dumps(simulate(args.out, args.duration)))
        return
    if args.phase == "analyse":
        print(json.dumps(analyse(args.out)))
        return
    tmp = tempfile.TemporaryDirectory()
    out = args.out or Path(tmp.name) / "session"
    sim = _child("simulate", out, args.duration)
    _print("simulate + write", sim, 60, 4)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"  dataset: {size / 1e9:.2f} GB")
    ana = _child("analyse", out, args.duration)
    _print("analyse", ana, 60, None)
    print(json.dumps(ana["result"], indent=1))
    if not args.keep and args.out is None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
