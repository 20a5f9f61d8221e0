"""The pipeline behind ``biosim run``: simulate an experiment and write its dataset.

:func:`run_experiment` simulates the activity, runs every device (simulate ->
record -> write), the analyses the spec asks for, and writes the ground truth
and the report, all into a folder that appears only when complete: a BIDS raw
dataset whose ground truth, report and analyses are derivative datasets
(``<task>`` is the experiment's name reduced to letters and digits,
:func:`~biosim.io.bids.bids_label`)::

    OUT/
      dataset_description.json, README
      sub-01/func/sub-01_task-<task>_bold.nii.gz   4D NIfTI + _bold.json sidecar + _events.tsv
      sub-01/eeg/sub-01_task-<task>_eeg.vhdr       BrainVision + _eeg.json, _channels.tsv,
                                                   _events.tsv, sub-01_electrodes.tsv
      sub-01/meg/sub-01_task-<task>_meg.fif        FIF + _meg.json, _channels.tsv, _events.tsv
      derivatives/biosim-truth/truth.npz, truth.json   ground truth and what each array is
      derivatives/biosim-report/*.png              design and activity, BOLD, EEG/MEG figures
      derivatives/biosim-dcm*/                     DCM fits, when the spec asks for them
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .. import __version__
from .._core.atomic import atomic_directory
from .._core.progress import phase, quiet
from ..io.bids import (
    BIDSDataset,
    bids_label,
    derivative_dataset,
    generated_by,
    write_dataset_description,
    write_json,
    write_readme,
    write_tsv,
)
from ..io.truth import write_truth
from .activity import MAX_SOURCE_TRUTH, Activity, simulate_activity
from .analysis import run_dcm_analysis, run_dcm_erp_analysis, run_glm_analysis
from .devices import DeviceContext, Simulation, device_instances, device_type
from .protocol import Protocol
from .spec import validate_spec
from .subject import head_motion

_TRUTH_DOC = {
    "times": "microtime axis of neural_input, s",
    "neural_input": "neural activity per region (hemodynamic input), 1/s, shape (n_t, n_regions)",
    "condition_inputs": "microtime boxcars of the protocol's conditions (alphabetical), "
    "shape (n_t, n_conditions)",
    "dcm_A": "DCM connectivity in SPM's parametrisation (off-diagonal Hz, diagonal log "
    "self-inhibition scale)",
    "dcm_B": "DCM modulations per condition (Hz), shape (n_conditions, n, n)",
    "dcm_C": "DCM driving inputs per condition in SPM's scaling (x 1/16 = Hz)",
    "network_connectivity": "structural connectivity W of the network model (row = target)",
    "network_jacobian": "network Jacobian A = (-I + g W / rho(W)) / tau, 1/s",
    "network_input_gain": "network input gain C per condition (alphabetical), 1/s per unit input",
    "network_coupling": "global coupling g as a fraction of the critical value",
    "network_time_constant": "neural time constant tau of the network, s",
    "network_noise_std": "std of the neural noise of the network model, 1/s per sqrt(s)",
    "scan_times": "acquisition times of the volumes, s",
    "states": "Balloon states [s (1/s), ln f, ln v, ln q] at scan_times, shape "
    "(n_scans, n_regions, 4)",
    "bold": "noise-free fractional BOLD change per region at scan_times",
    "labels": "region label volume of the NIfTI (0 = background, r+1 = region r)",
    "source_times": "time axis of source_moments, s",
    "source_phase_times": "time grid of source_phase, s",
    "source_phase": "diffusing phase (rad) of each region's rhythm: moment = "
    "moment_per_input x neural_input x sin(2 pi carrier_hz t + phase), shape (n, n_regions)",
    "pyramidal_depolarisation": "neural-mass pyramidal depolarisation x9 per region at "
    "source_times, mV",
    "source_moments": "dipole moment of each region, A m, shape (n, n_regions)",
    "dipole_positions": "region dipole positions (m, fsaverage frame)",
    "dipole_orientations": "region dipole unit orientations",
    "r_peaks": "cardiac R-peak times (s): the ballistocardiogram, the fMRI cardiac noise and "
    "the pulse recording follow them",
    "mri_slice_times": "slice acquisition start times (s, scanner clock)",
    "ultrasound_drive": "focused-ultrasound neuromodulatory drive per region (1/s, included in "
    "neural_input), shape (n_t, n_regions)",
}
_DEVICE_TRUTH_DOC = {
    "times": "sample times of the truth of device {key} (s, true time; every q-th sample "
    "of the recording, q = sample_rate / truth_sample_rate)",
    "pose_times": "times where device {key}'s lead field followed the head pose, s",
    "tissue_fractions": "tissue volume fractions (gm, wm, csf, bone, soft, air) on device "
    "{key}'s EPI grid, shape (6, X, Y, Z)",
    "affine": "voxel -> MNI152 mm affine of device {key}'s EPI grid",
    "motion": "head pose at each volume's mid-time: translations (m) and pitch, roll, yaw "
    "(rad), shape (n_volumes, 6)",
    "field_hz": "B0 off-resonance of the head at rest on device {key}'s grid, Hz",
    "leadfield": "lead field of the region dipoles (V or T or T/m per A m), "
    "(n_channels, n_regions)",
    "clean": "noise-free, artifact-free signal of device {key}, (n_channels, n_times)",
    "gradient_artifact": "MR gradient artifact added to device {key}, V",
    "bcg_artifact": "ballistocardiogram added to device {key}, V",
    "sensor_positions": "sensor positions of device {key}, m",
    "sensor_orientations": "sensor axes of device {key}",
    "noise_std": "white-noise standard deviation per channel and sample of device {key}",
    "target_mm": "target of ultrasound device {key} (geometric focus), MNI152 mm",
    "transducer_mm": "apex (centre) of the bowl of device {key}, MNI152 mm",
    "direction": "beam axis of device {key} (transducer -> target), unit vector in MNI152",
    "focus_mm": "position of the peak pressure in the brain of device {key}, MNI152 mm",
    "peak_pressure": "peak pressure amplitude in the head of device {key}, Pa",
    "acoustic_affine": "voxel -> MNI152 mm affine of device {key}'s acoustic/thermal grid",
    "thermometry_affine": "voxel -> MNI152 mm affine of device {key}'s thermometry grid",
    "thermometry_times": "times of device {key}'s thermometry frames (frame 0: baseline), s",
    "thermometry_truth": "true temperature rise on device {key}'s thermometry grid at frames "
    "1.., K, shape (n, X, Y, Z)",
    "thermometry_reconstructed": "PRFS-reconstructed temperature rise of device {key}, K",
    "max_delta_t": "peak temperature rise per tissue of device {key} (tissues in truth.json), K",
    "max_cem43": "peak thermal dose per tissue of device {key}, CEM43 minutes",
}


def _source_truth(sources) -> dict[str, np.ndarray]:
    """The sources' truth: moments on their grid when it is small enough
    (:data:`MAX_SOURCE_TRUTH`); a lazy rhythm's phase grid always."""
    out = sources.truth_arrays() if hasattr(sources, "truth_arrays") else {}
    n_regions = np.shape(sources.neural_input if out else sources.moments)[1]
    if not out or len(sources.times) * n_regions <= MAX_SOURCE_TRUTH:
        out.update(source_times=sources.times, source_moments=sources.moments)
    return out


def _truth_descriptions(spec: dict, names) -> dict[str, str]:
    """One-line description (with units) of each truth array, device arrays included."""
    doc = {}
    for name in names:
        if name in _TRUTH_DOC:
            doc[name] = _TRUTH_DOC[name]
            continue
        for key in sorted(spec["devices"], key=len, reverse=True):
            what = name[len(key) + 1 :]
            if name.startswith(key + "_") and what in _DEVICE_TRUTH_DOC:
                doc[name] = _DEVICE_TRUTH_DOC[what].format(key=key)
                break
    return doc


TRUTH_DIR = ("derivatives", "biosim-truth")
"""Where the ground truth goes, relative to the dataset folder."""
REPORT_DIR = ("derivatives", "biosim-report")
"""Where the report figures go, relative to the dataset folder."""


def _write_description(root: Path, spec: dict, task: str) -> None:
    """The raw dataset's ``dataset_description.json`` and ``README``."""
    name = spec["experiment"]["name"]
    write_dataset_description(
        root,
        f"biosim simulation: {name}",
        generated_by("virtual experiment: simulated activity recorded by virtual devices"),
        Authors=["biosim (simulated data)"],
    )
    write_tsv(root / "participants.tsv", {"participant_id": [f"sub-{spec['subject']['id']}"]})
    write_json(
        root / "participants.json",
        {"participant_id": {"Description": "simulated subject (fsaverage template anatomy)"}},
    )
    devices = ", ".join(f"{k} ({t['type']})" for k, t in spec["devices"].items())
    write_readme(
        root,
        f"""biosim simulation: {name}

This dataset was generated by biosim {__version__}, a simulator of brain imaging
experiments, from the experiment specification {name!r} (BIDS task label
{task!r}, subject {spec["subject"]["id"]!r}, seed {spec["experiment"]["seed"]}).
No person was measured: every recording is simulated.

Devices: {devices}.

The ground truth that made the data (neural activity, hemodynamic states, source
moments, lead fields, artifacts) is in derivatives/biosim-truth/ (truth.npz, with
truth.json saying what each array is, with units, and holding the full
specification).  Figures are in derivatives/biosim-report/; DCM fits, when the
specification asks for them, in derivatives/biosim-dcm*/.
""",
    )


def _write_report(
    spec: dict, protocol: Protocol, activity: Activity, recordings: dict, report_dir: Path
) -> list[str]:
    """Figures of the design, the activity and each device's data (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from . import report
    from .devices.eeg import EEGRecording
    from .devices.meg import MEGRecording
    from .devices.mri import MRIRecording
    from .devices.ultrasound import UltrasoundRecording

    report_dir.mkdir(parents=True, exist_ok=True)
    written = [report.activity_figure(spec, protocol, activity, report_dir / "activity.png", plt)]
    for key, rec in recordings.items():
        if isinstance(rec, MRIRecording):
            written.append(
                report.mri_figure(spec, protocol, key, rec, report_dir / f"{key}.png", plt)
            )
        elif isinstance(rec, UltrasoundRecording):
            written.append(
                report.ultrasound_figure(spec, protocol, key, rec, report_dir / f"{key}.png", plt)
            )
        elif isinstance(rec, (EEGRecording, MEGRecording)):
            written.append(
                report.electrophysiology_figure(
                    spec, protocol, key, rec, report_dir / f"{key}.png", plt
                )
            )
    return [w.name for w in written if w is not None]


def run_experiment(
    spec: dict, out_dir: str | Path, overwrite: bool = False, progress: bool = True
) -> Path:
    """Simulate a validated experiment and write its dataset atomically.

    Parameters
    ----------
    spec : dict
        From :func:`~biosim.experiment.load_experiment`.
    out_dir : path-like
        Output folder; the dataset appears in it only once complete.
    overwrite : bool
        Replace an existing, non-empty ``out_dir`` that holds an earlier biosim
        dataset (its ``.biosim`` marker lists every file in it); any other
        non-empty folder is refused (``FileExistsError``) before simulating.
        An existing empty folder (a mount point, ``.``) is filled in place.
    progress : bool
        Show progress bars on a terminal (never into a log, nor with
        ``BIOSIM_PROGRESS=0``); False silences every bar of the run.

    Returns
    -------
    Path
        The output folder.
    """
    spec = validate_spec(spec)
    out_dir = Path(out_dir)
    protocol = Protocol.from_spec(spec)
    # the marker (.biosim, hidden: BIDS tools skip it) lets a later --overwrite tell a
    # dataset biosim wrote from a folder of someone else's files
    public = {k: v for k, v in spec.items() if not k.startswith("_")}
    marker = {
        "biosim_version": __version__,
        "experiment": spec["experiment"]["name"],
        "spec_sha256": hashlib.sha256(
            json.dumps(public, sort_keys=True, default=str).encode("utf-8")
        ).hexdigest(),
    }
    with quiet(not progress), atomic_directory(out_dir, overwrite=overwrite, marker=marker) as tmp:
        with phase("activity"):
            activity = simulate_activity(spec, protocol)
        sim = Simulation(
            spec,
            protocol,
            activity,
            np.random.default_rng(spec["experiment"]["seed"]),
            show_progress=progress,
            motion=head_motion(spec),
        )
        dataset = BIDSDataset(tmp, spec["subject"]["id"], bids_label(spec["experiment"]["name"]))
        dataset.subject_dir.mkdir(parents=True)
        for key, table in device_instances(spec):
            device = device_type(table["type"])
            ctx = DeviceContext(key, table, sim)
            with phase(f"devices.{key}"):
                recording = device.simulate(ctx)
                sim.recordings[key] = recording
                device.write(recording, ctx, dataset)
        analysis = spec.get("analysis", {})
        if "dcm" in analysis:
            run_dcm_analysis(spec, protocol, sim.recordings, dataset)
        if "dcm_erp" in analysis:
            run_dcm_erp_analysis(spec, protocol, sim.recordings, dataset)
        if "glm" in analysis:
            with phase("analysis.glm"):
                run_glm_analysis(spec, protocol, sim.recordings, dataset)
        truth = activity.truth_arrays()
        sources = sim.drawn_sources()
        if sources is not None:
            truth.update(_source_truth(sources))
        for key, recording in sim.recordings.items():
            truth.update(recording.truth_arrays(key))
        write_truth(
            derivative_dataset(
                tmp,
                TRUTH_DIR[1],
                f"biosim ground truth: {spec['experiment']['name']}",
                "the arrays that made the simulated data, with units",
                ignore=["truth.npz", "truth.json"],
            ),
            truth,
            _truth_descriptions(spec, truth),
            {"regions": spec["subject"]["regions"], "spec": public},
        )
        report_dir = derivative_dataset(
            tmp,
            REPORT_DIR[1],
            f"biosim report: {spec['experiment']['name']}",
            "figures of the design, the activity and each device's data",
            ignore=["*.png"],
        )
        _write_report(spec, protocol, activity, sim.recordings, report_dir)
        _write_description(tmp, spec, dataset.task)
    return out_dir
