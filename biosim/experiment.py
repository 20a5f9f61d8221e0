"""Experiment specification (TOML) and the pipeline behind ``biosim run``.

An experiment names a subject (head, cortex regions), brain activity (a model
driven by the protocol's conditions: :mod:`biosim.activity`), the devices that
observe it (:mod:`biosim.devices`: MRI scanner, EEG amplifier, MEG system, ...)
and the protocol.  :func:`load_experiment` reads and validates a TOML file
(or a shipped experiment by name, or the built-in default) into a plain nested
dict; :func:`run_experiment` simulates it and writes a BIDS-style folder
atomically (it appears only when complete)::

    OUT/
      dataset_description.json
      sub-01/func/sub-01_task-<name>_bold.nii.gz   4D NIfTI + _bold.json sidecar + _events.tsv
      sub-01/eeg/sub-01_task-<name>_eeg.vhdr       BrainVision + _eeg.json, _channels.tsv,
                                                   _events.tsv, sub-01_electrodes.tsv
      sub-01/meg/sub-01_task-<name>_meg.fif        FIF + _meg.json, _channels.tsv, _events.tsv
      truth/truth.npz                              activity, hemodynamic states, BOLD,
                                                   source moments, lead fields, artifacts
      truth/truth.json                             what each array is, with units; the spec
      report/*.png                                 design and activity, BOLD, EEG/MEG traces
                                                   and topographies

Every validation error is a :class:`~biosim.SpecError` naming the key.
"""

from __future__ import annotations

import copy
import json
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np

from ._core.atomic import atomic_directory, atomic_path, atomic_write_text
from ._core.errors import SpecError
from .activity import simulate_activity, validate_activity
from .analysis import run_dcm_analysis, run_dcm_erp_analysis, validate_analysis
from .devices import DeviceContext, device_instances, device_type
from .spec import check_keys, require, set_default

DEFAULT_EXPERIMENT = "eeg_fmri.toml"


# ----------------------------------------------------------------------------- loading
def _experiments_dir():
    return resources.files("biosim") / "experiments"


def list_examples(copy_to: str | None = None) -> list[str]:
    """Names and one-line descriptions of the shipped experiments; copy them
    into ``copy_to`` when given."""
    lines = []
    for entry in sorted(_experiments_dir().iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        text = entry.read_text(encoding="utf-8")
        first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")
        lines.append(f"{entry.name}: {first}")
        if copy_to is not None:
            dest = Path(copy_to)
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write_text(dest / entry.name, text)
    if copy_to is not None:
        lines.append(f"copied {len(lines)} experiment(s) to {copy_to}")
    return lines


def load_experiment(path: str | Path | None = None) -> dict:
    """Read and validate an experiment.

    ``path``: a TOML file; or the name of a shipped experiment (``"meg_opm"``
    or ``"meg_opm.toml"``, see :func:`list_examples`); ``None``: the built-in
    default (a simultaneous EEG-fMRI experiment of a 3-region network).
    Relative file paths inside the spec resolve against the TOML's folder.
    """
    base = None
    if path is None:
        path = DEFAULT_EXPERIMENT
    p = Path(path)
    if p.is_file():
        text, source, base = p.read_text(encoding="utf-8"), str(p), p.resolve().parent
    else:
        shipped = _experiments_dir() / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
        if p.parent != Path(".") or not shipped.is_file():
            names = [e.name for e in _experiments_dir().iterdir() if e.name.endswith(".toml")]
            raise FileNotFoundError(f"experiment file {str(path)!r} does not exist (and is not "
                                    f"a shipped experiment: {sorted(names)})")
        text, source = shipped.read_text(encoding="utf-8"), f"<built-in {shipped.name}>"
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: not valid TOML: {err}") from err
    if base is not None:
        spec["_source_dir"] = str(base)
    return validate_spec(spec, source)


def with_seed(spec: dict, seed: int) -> dict:
    """A copy of ``spec`` with ``experiment.seed`` replaced."""
    out = copy.deepcopy(spec)
    out["experiment"]["seed"] = int(seed)
    return out


def describe(spec: dict) -> str:
    """One-line summary of a validated spec."""
    e, s = spec["experiment"], spec["subject"]
    devices = ", ".join(sorted(spec["devices"]))
    return (f"experiment {e['name']!r}: {len(s['regions'])} regions, {e['duration']:g} s, "
            f"devices: {devices}")


def validate_spec(spec: dict, source: str = "<spec>") -> dict:
    """Check types, ranges and cross-references; return a normalised copy.

    Raises
    ------
    SpecError
        Naming the key (``devices.mri.te``) and what was expected.
    """
    spec = copy.deepcopy(spec)
    for section in ("experiment", "subject", "activity", "protocol", "devices"):
        if not isinstance(spec.get(section), dict):
            raise SpecError(f"{source}: section [{section}] is missing")
    check_keys(spec, {"experiment", "subject", "activity", "protocol", "devices", "analysis",
                      "_source_dir"}, source)
    exp, subj, prot, dev = (spec[k] for k in ("experiment", "subject", "protocol", "devices"))
    check_keys(exp, {"name", "seed", "duration"}, "experiment")
    check_keys(subj, {"id", "regions", "voxels_per_region", "voxel_size", "head",
                      "bem_vertices", "bem_elements", "relative_radii", "conductivities"}, "subject")
    check_keys(prot, {"blocks"}, "protocol")
    check_keys(spec["activity"], {"model", "dt", "hemodynamics", "drive", "dcm", "timecourses",
                                  "neural_mass", "moment_per_input", "moment_per_mv",
                                  "carrier_hz", "rhythm_bandwidth"},
               "activity")
    positive = lambda v: v > 0  # noqa: E731
    require(exp, "name", "experiment", str, lambda v: v.isidentifier(),
            "a name of letters, digits and underscores")
    set_default(exp, "seed", "experiment", 0, int, lambda v: v >= 0, "a non-negative integer")
    duration = require(exp, "duration", "experiment", float, positive, "a positive duration in s")
    set_default(subj, "id", "subject", "01", str, lambda v: v.isalnum(), "letters and digits")
    require(subj, "regions", "subject", list,
            lambda v: len(v) > 0 and all(isinstance(r, str) for r in v) and len(set(v)) == len(v),
            "a non-empty list of distinct region names")
    set_default(subj, "voxels_per_region", "subject", 27, int,
                lambda v: v >= 1 and round(v ** (1 / 3)) ** 3 == v, "a perfect cube (1, 8, 27, ...)")
    set_default(subj, "voxel_size", "subject", 3.0, float, positive, "a positive size in mm")
    head = set_default(subj, "head", "subject", "sphere", str,
                       lambda v: v in ("sphere", "template"),
                       "'sphere' (concentric shells fitted to the 10-20 montage, exact series) "
                       "or 'template' (the fsaverage template head, symmetric BEM)")
    set_default(subj, "bem_vertices", "subject", 642, int, lambda v: v in (642, 2562),
                "642 or 2562 vertices per template-head surface")
    set_default(subj, "bem_elements", "subject", "matched", str, lambda v: v in ("flat", "matched", "curved"),
                "'flat' (the mesh's flat triangles), 'matched' (flat triangles enclosing the smooth "
                "surface's volume) or 'curved' (curved elements through the same vertices)")
    set_default(subj, "relative_radii", "subject", [0.87, 0.92, 1.0], list,
                lambda v: len(v) >= 1 and all(isinstance(x, (int, float)) for x in v)
                and list(v) == sorted(set(v)) and v[-1] == 1.0 and v[0] > 0,
                "increasing relative shell radii ending with 1.0")
    n_layers = len(subj["relative_radii"]) if head == "sphere" else 3
    set_default(subj, "conductivities", "subject", [0.33, 0.0042, 0.33], list,
                lambda v: len(v) == n_layers and all(
                    isinstance(x, (int, float)) and x > 0 for x in v),
                f"one positive conductivity (S/m) per {'shell' if head == 'sphere' else 'compartment (brain, skull, scalp)'}")
    blocks = require(prot, "blocks", "protocol", list, lambda v: len(v) > 0,
                     "a non-empty list of {onset, duration, condition}")
    for i, b in enumerate(blocks):
        where = f"protocol.blocks[{i}]"
        if not isinstance(b, dict):
            raise SpecError(f"{where} = {b!r} is invalid: expected a table")
        check_keys(b, {"onset", "duration", "condition"}, where)
        onset = require(b, "onset", where, float, lambda v: 0 <= v < duration,
                        f"an onset in [0, {duration:g}) s")
        require(b, "duration", where, float, lambda v: v >= 0 and onset + v <= duration,
                f"a non-negative duration ending by {duration:g} s")
        require(b, "condition", where, str, lambda v: v.isidentifier(),
                "a condition name (letters, digits, underscores)")
    validate_activity(spec, {b["condition"] for b in blocks})
    act = spec["activity"]
    set_default(act, "moment_per_input", "activity", 1e-6, float, positive,
                "a positive dipole moment per unit neural activity, A m s")
    set_default(act, "carrier_hz", "activity", 10.0, float, lambda v: 0 <= v < 200,
                "a rhythm frequency in [0, 200) Hz (0: no rhythm)")
    set_default(act, "rhythm_bandwidth", "activity", 1.0, float, lambda v: v >= 0,
                "a non-negative line width in Hz")
    if not dev:
        raise SpecError(f"{source}: [devices] names no device")
    for key, table in dev.items():
        where = f"devices.{key}"
        if not isinstance(table, dict):
            raise SpecError(f"{where} = {table!r} is invalid: expected a table")
        if not key.isidentifier():
            raise SpecError(f"{where}: the device key must be an identifier")
        kind = set_default(table, "type", where, key, str)
        device_type(kind, where).validate(table, spec, where)
    if len(device_instances(spec, "mri")) > 1:
        raise SpecError("[devices] holds more than one MRI scanner: expected at most one")
    validate_analysis(spec)
    return spec


# ----------------------------------------------------------------------------- simulation
def neural_input(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Microtime neural activity (n_t, n_regions) in 1/s and its time axis (s)."""
    act = simulate_activity(spec)
    return act["times"], act["neural_input"]


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
