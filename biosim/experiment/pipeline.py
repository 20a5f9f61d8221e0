"""The pipeline behind ``biosim run``: simulate an experiment and write its dataset.

:func:`run_experiment` simulates the activity, runs every device (simulate ->
record -> write), the analyses the spec asks for, and writes the ground truth
and the report, all into a folder that appears only when complete::

    OUT/
      dataset_description.json
      sub-01/func/sub-01_task-<name>_bold.nii.gz   4D NIfTI + _bold.json sidecar + _events.tsv
      sub-01/eeg/sub-01_task-<name>_eeg.vhdr       BrainVision + _eeg.json, _channels.tsv,
                                                   _events.tsv, sub-01_electrodes.tsv
      sub-01/meg/sub-01_task-<name>_meg.fif        FIF + _meg.json, _channels.tsv, _events.tsv
      truth/truth.npz, truth/truth.json            ground truth and what each array is
      report/*.png                                 design and activity, BOLD, EEG/MEG figures
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._core.atomic import atomic_directory, atomic_path, atomic_write_text
from .activity import simulate_activity
from .analysis import run_dcm_analysis, run_dcm_erp_analysis
from .devices import DeviceContext, device_instances, device_type
from .spec import validate_spec

_TRUTH_DOC = {
    "times": "microtime axis of neural_input, s",
    "neural_input": "neural activity per region (hemodynamic input), 1/s, shape (n_t, n_regions)",
    "condition_inputs": "microtime boxcars of the protocol's conditions (alphabetical), "
                        "shape (n_t, n_conditions)",
    "dcm_A": "DCM connectivity in SPM's parametrisation (off-diagonal Hz, diagonal log "
             "self-inhibition scale)",
    "dcm_B": "DCM modulations per condition (Hz), shape (n_conditions, n, n)",
    "dcm_C": "DCM driving inputs per condition in SPM's scaling (x 1/16 = Hz)",
    "scan_times": "acquisition times of the volumes, s",
    "states": "Balloon states [s (1/s), ln f, ln v, ln q] at scan_times, shape "
              "(n_scans, n_regions, 4)",
    "bold": "noise-free fractional BOLD change per region at scan_times",
    "labels": "region label volume of the NIfTI (0 = background, r+1 = region r)",
    "source_times": "time axis of source_moments, s",
    "pyramidal_depolarisation": "neural-mass pyramidal depolarisation x9 per region at "
                                "source_times, mV",
    "source_moments": "dipole moment of each region, A m, shape (n, n_regions)",
    "dipole_positions": "region dipole positions (m, fsaverage frame)",
    "dipole_orientations": "region dipole unit orientations",
    "r_peaks": "cardiac R-peak times (s) of the ballistocardiogram",
    "mri_slice_times": "slice acquisition start times (s, scanner clock)",
}
_DEVICE_TRUTH_DOC = {
    "times": "sample times of device {key} (s, true time)",
    "moments": "dipole moments at those samples, A m",
    "leadfield": "lead field of the region dipoles (V or T or T/m per A m), (n_channels, n_regions)",
    "clean": "noise-free, artifact-free signal of device {key}, (n_channels, n_times)",
    "gradient_artifact": "MR gradient artifact added to device {key}, V",
    "bcg_artifact": "ballistocardiogram added to device {key}, V",
    "sensor_positions": "sensor positions of device {key}, m",
    "sensor_orientations": "sensor axes of device {key}",
    "noise_std": "white-noise standard deviation per channel and sample of device {key}",
}


def _write_truth(spec: dict, truth: dict, truth_dir: Path):
    arrays = {k: np.asarray(v) for k, v in truth.items()}
    with atomic_path(truth_dir / "truth.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    doc = {}
    for name in arrays:
        if name in _TRUTH_DOC:
            doc[name] = _TRUTH_DOC[name]
            continue
        for key in sorted(spec["devices"], key=len, reverse=True):
            what = name[len(key) + 1:]
            if name.startswith(key + "_") and what in _DEVICE_TRUTH_DOC:
                doc[name] = _DEVICE_TRUTH_DOC[what].format(key=key)
                break
    public = {k: v for k, v in spec.items() if not k.startswith("_")}
    atomic_write_text(truth_dir / "truth.json", json.dumps(
        {"regions": spec["subject"]["regions"], "arrays": doc, "spec": public},
        indent=2, default=float) + "\n")


def _write_report(spec: dict, truth: dict, report_dir: Path) -> list[str]:
    """Figures of the design, the activity and each device's data (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from . import report

    written = [report.activity_figure(spec, truth, report_dir / "activity.png", plt)]
    for key, table in device_instances(spec):
        kind = table["type"]
        if kind == "mri":
            written.append(report.bold_figure(spec, truth, report_dir / f"{key}.png", plt))
        elif kind in ("eeg", "meg"):
            written.append(report.electrophysiology_figure(spec, truth, key, kind,
                                                           report_dir / f"{key}.png", plt))
    return [w.name for w in written if w is not None]


def run_experiment(spec: dict, out_dir: str | Path, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Simulate a validated experiment and write its dataset atomically.

    Parameters
    ----------
    spec : dict
        From :func:`load_experiment`.
    out_dir : path-like
        Output folder; it appears only once complete.
    overwrite : bool
        Replace an existing, non-empty ``out_dir``.
    progress : bool
        Show progress bars on a terminal.

    Returns
    -------
    Path
        The output folder.
    """
    spec = validate_spec(spec)
    out_dir = Path(out_dir)
    rng = np.random.default_rng(spec["experiment"]["seed"])
    sub = f"sub-{spec['subject']['id']}"
    stem = f"{sub}_task-{spec['experiment']['name']}"
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        truth = simulate_activity(spec)
        sub_dir = tmp / sub
        sub_dir.mkdir(parents=True)
        outputs = {}
        for key, table in device_instances(spec):
            ctx = DeviceContext(key=key, table=table, spec=spec, truth=truth, rng=rng,
                                sub_dir=sub_dir, stem=stem, show_progress=progress,
                                outputs=outputs)
            device_type(table["type"]).run(ctx)
        if "dcm" in spec.get("analysis", {}):
            run_dcm_analysis(spec, truth, outputs, tmp, stem)
        if "dcm_erp" in spec.get("analysis", {}):
            run_dcm_erp_analysis(spec, truth, outputs, tmp, stem)
        (tmp / "truth").mkdir()
        _write_truth(spec, truth, tmp / "truth")
        (tmp / "report").mkdir()
        _write_report(spec, truth, tmp / "report")
        atomic_write_text(tmp / "dataset_description.json", json.dumps(
            {"Name": f"biosim {spec['experiment']['name']}", "BIDSVersion": "1.9.0",
             "DatasetType": "raw", "GeneratedBy": [{"Name": "biosim"}]}, indent=2) + "\n")
    return out_dir
