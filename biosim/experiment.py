"""Experiment specification (TOML) and the pipeline behind ``biosim run``.

An experiment names a subject (regions), brain activity (neural input driven
by the protocol's conditions), the devices that observe it and the protocol.
:func:`load_experiment` reads and validates a TOML file (or the built-in
default) into a plain nested dict; :func:`run_experiment` simulates it and
writes a BIDS-style folder atomically::

    OUT/
      dataset_description.json
      sub-01/func/sub-01_task-<name>_bold.nii.gz   4D NIfTI (or _bold.tsv without nibabel)
      sub-01/func/sub-01_task-<name>_bold.json     BIDS sidecar (RepetitionTime, EchoTime, ...)
      sub-01/func/sub-01_task-<name>_events.tsv    onset, duration, trial_type
      truth/truth.npz                              neural input, hemodynamic states, BOLD
      truth/truth.json                             what each array is, with units
      report/fmri.png                              design, neural input, BOLD per region

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
from ._core.errors import ParameterError, SpecError
from .physics.hemodynamics import BOLDParams, simulate_bold
from .physics.hemodynamics.balloon import preset as balloon_preset

DEFAULT_EXPERIMENT = "fmri_block.toml"


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
    """Read and validate an experiment TOML file (``None``: the built-in default)."""
    if path is None:
        text = (_experiments_dir() / DEFAULT_EXPERIMENT).read_text(encoding="utf-8")
        source = f"<built-in {DEFAULT_EXPERIMENT}>"
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: not valid TOML: {err}") from err
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


def _require(table: dict, key: str, where: str, kind, check=None, expected: str = ""):
    if key not in table:
        raise SpecError(f"{where}.{key} is missing: expected {expected or kind.__name__}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SpecError(f"{where}.{key} = {value!r} has the wrong type: expected "
                        f"{expected or kind.__name__}")
    if check is not None and not check(value):
        raise SpecError(f"{where}.{key} = {value!r} is invalid: expected {expected}")
    table[key] = value
    return value


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
    exp, subj, act, prot, dev = (spec[k] for k in
                                 ("experiment", "subject", "activity", "protocol", "devices"))
    positive = lambda v: v > 0  # noqa: E731
    _require(exp, "name", "experiment", str, lambda v: v.isidentifier(),
             "a name of letters, digits and underscores")
    exp.setdefault("seed", 0)
    _require(exp, "seed", "experiment", int, lambda v: v >= 0, "a non-negative integer")
    duration = _require(exp, "duration", "experiment", float, positive, "a positive duration in s")
    subj.setdefault("id", "01")
    _require(subj, "id", "subject", str, lambda v: v.isalnum(), "letters and digits")
    regions = _require(subj, "regions", "subject", list,
                       lambda v: len(v) > 0 and all(isinstance(r, str) for r in v)
                       and len(set(v)) == len(v), "a non-empty list of distinct region names")
    subj.setdefault("voxels_per_region", 27)
    _require(subj, "voxels_per_region", "subject", int, lambda v: v >= 1 and round(v ** (1 / 3)) ** 3 == v,
             "a perfect cube (1, 8, 27, ...)")
    subj.setdefault("voxel_size", 3.0)
    _require(subj, "voxel_size", "subject", float, positive, "a positive size in mm")
    dt = _require(act, "dt", "activity", float, positive, "a positive microtime step in s")
    act.setdefault("hemodynamics", "spm")
    _require(act, "hemodynamics", "activity", str, lambda v: v in ("spm", "friston2000"),
             "'spm' or 'friston2000'")
    drive = _require(act, "drive", "activity", dict, lambda v: len(v) > 0,
                     "a table condition = [input per region]")
    for cond, weights in drive.items():
        if (not isinstance(weights, list) or len(weights) != len(regions)
                or not all(isinstance(w, (int, float)) and np.isfinite(w) for w in weights)):
            raise SpecError(f"activity.drive.{cond} = {weights!r} is invalid: expected a list of "
                            f"{len(regions)} finite numbers (one per region, 1/s)")
    blocks = _require(prot, "blocks", "protocol", list, lambda v: len(v) > 0,
                      "a non-empty list of {onset, duration, condition}")
    for i, b in enumerate(blocks):
        where = f"protocol.blocks[{i}]"
        if not isinstance(b, dict):
            raise SpecError(f"{where} = {b!r} is invalid: expected a table")
        onset = _require(b, "onset", where, float, lambda v: 0 <= v < duration,
                         f"an onset in [0, {duration:g}) s")
        _require(b, "duration", where, float, lambda v: v >= 0 and onset + v <= duration,
                 f"a non-negative duration ending by {duration:g} s")
        cond = _require(b, "condition", where, str)
        if cond not in drive:
            raise SpecError(f"{where}.condition = {cond!r} is not defined in [activity.drive] "
                            f"(defined: {sorted(drive)})")
    if not dev:
        raise SpecError(f"{source}: [devices] names no device")
    unknown = set(dev) - set(DEVICE_RUNNERS)
    if unknown:
        raise SpecError(f"devices.{sorted(unknown)[0]} is not a known device type: expected one of "
                        f"{sorted(DEVICE_RUNNERS)}")
    if "mri" in dev:
        mri = dev["mri"]
        _require(mri, "field_strength", "devices.mri", float, lambda v: 0.1 <= v <= 11.7,
                 "a field strength in [0.1, 11.7] T")
        tr = _require(mri, "tr", "devices.mri", float, positive, "a positive TR in s")
        _require(mri, "te", "devices.mri", float, lambda v: 0 < v < tr,
                 f"an echo time in (0, TR = {tr:g}) s")
        ratio = tr / dt
        if abs(ratio - round(ratio)) > 1e-9 * ratio:
            raise SpecError(f"devices.mri.tr = {tr!r} is invalid: expected a multiple of "
                            f"activity.dt = {dt:g} s")
        if abs(duration / tr - round(duration / tr)) > 1e-9 * duration / tr:
            raise SpecError(f"experiment.duration = {duration!r} is invalid: expected a whole "
                            f"number of TRs ({tr:g} s)")
        mri.setdefault("baseline_signal", 1000.0)
        _require(mri, "baseline_signal", "devices.mri", float, positive, "a positive signal")
        mri.setdefault("noise_std", 0.0)
        _require(mri, "noise_std", "devices.mri", float, lambda v: v >= 0,
                 "a non-negative noise level")
        mri.setdefault("sequence", "gre")
        _require(mri, "sequence", "devices.mri", str, lambda v: v in ("gre", "se"),
                 "'gre' or 'se'")
        mri.setdefault("flip_angle", 77.0 if mri["sequence"] == "gre" else 90.0)
        _require(mri, "flip_angle", "devices.mri", float, lambda v: 0 < v <= 180,
                 "a flip angle in (0, 180] degrees")
        mri.setdefault("matrix", [16, 16])
        _require(mri, "matrix", "devices.mri", list,
                 lambda v: len(v) == 2 and all(isinstance(m, int) and m >= 4 and m % 2 == 0
                                               for m in v), "two even integers >= 4")
        mri.setdefault("n_slices", 3)
        _require(mri, "n_slices", "devices.mri", int, lambda v: v >= 1, "a positive integer")
        mri.setdefault("echo_spacing", 5e-4)
        _require(mri, "echo_spacing", "devices.mri", float, positive, "a positive spacing in s")
        mri.setdefault("slice_order", "interleaved")
        _require(mri, "slice_order", "devices.mri", str,
                 lambda v: v in ("ascending", "descending", "interleaved"),
                 "'ascending', 'descending' or 'interleaved'")
    if "eeg" in dev:
        eeg = dev["eeg"]
        defaults = dict(montage="standard_1020", reference="average", sample_rate=250.0,
                        noise_density=50e-9, line_noise=0.0, line_frequency=50.0,
                        clock_drift_ppm=0.0, bit_depth=24, carrier_hz=10.0,
                        moment_per_input=1e-7, relative_radii=[0.87, 0.92, 1.0],
                        conductivities=[0.33, 0.0042, 0.33])
        for k, v in defaults.items():
            eeg.setdefault(k, v)
        _require(eeg, "montage", "devices.eeg", str)
        _require(eeg, "reference", "devices.eeg", str)
        _require(eeg, "sample_rate", "devices.eeg", float, positive, "a positive rate in Hz")
        _require(eeg, "noise_density", "devices.eeg", float, lambda v: v >= 0,
                 "a non-negative noise density in V/sqrt(Hz)")
        _require(eeg, "line_noise", "devices.eeg", float, lambda v: v >= 0, "a non-negative V")
        _require(eeg, "line_frequency", "devices.eeg", float, lambda v: v in (50.0, 60.0),
                 "50 or 60 Hz")
        _require(eeg, "clock_drift_ppm", "devices.eeg", float)
        _require(eeg, "bit_depth", "devices.eeg", int, lambda v: 8 <= v <= 32, "8 to 32 bits")
        _require(eeg, "carrier_hz", "devices.eeg", float, lambda v: 0 <= v < eeg["sample_rate"] / 2,
                 "a frequency in [0, sample_rate / 2) Hz (0: no carrier)")
        _require(eeg, "moment_per_input", "devices.eeg", float, positive,
                 "a positive dipole moment per unit neural input, A m s")
        _require(eeg, "relative_radii", "devices.eeg", list,
                 lambda v: len(v) >= 1 and all(isinstance(x, (int, float)) for x in v)
                 and list(v) == sorted(set(v)) and v[-1] == 1.0,
                 "increasing relative shell radii ending with 1.0")
        _require(eeg, "conductivities", "devices.eeg", list,
                 lambda v: len(v) == len(eeg["relative_radii"]) and all(
                     isinstance(x, (int, float)) and x > 0 for x in v),
                 "one positive conductivity (S/m) per shell")
    return spec


# ----------------------------------------------------------------------------- simulation
def neural_input(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Microtime neural input (n_t, n_regions) in 1/s and its time axis (s)."""
    exp, act = spec["experiment"], spec["activity"]
    dt = act["dt"]
    n_t = int(round(exp["duration"] / dt))
    times = np.arange(n_t) * dt
    u = np.zeros((n_t, len(spec["subject"]["regions"])))
    for b in spec["protocol"]["blocks"]:
        on = (times >= b["onset"] - 1e-9) & (times < b["onset"] + b["duration"] - 1e-9)
        u[on] += np.asarray(act["drive"][b["condition"]], dtype=float)
    return times, u


def _region_volume(n_regions: int, voxels_per_region: int, matrix, n_slices: int):
    """Label volume (Nx, Ny, n_slices): region r is a cube of voxels (label r+1)
    placed along x in the middle slices; 0 elsewhere."""
    side = round(voxels_per_region ** (1 / 3))
    need_x = n_regions * (side + 1) + 1
    if matrix[0] < need_x or matrix[1] < side + 2 or n_slices < side:
        raise SpecError(f"devices.mri.matrix = {list(matrix)} / n_slices = {n_slices} is too small: "
                        f"expected at least [{need_x}, {side + 2}] and {side} slices for "
                        f"{n_regions} regions of {voxels_per_region} voxels")
    labels = np.zeros((matrix[0], matrix[1], n_slices), dtype=np.int16)
    y0 = (matrix[1] - side) // 2
    z0 = (n_slices - side) // 2
    x_start = (matrix[0] - need_x) // 2 + 1
    for r in range(n_regions):
        x0 = x_start + r * (side + 1)
        labels[x0:x0 + side, y0:y0 + side, z0:z0 + side] = r + 1
    return labels


def _tissue_maps(labels, m0_scale: float):
    """Grey-matter regions inside a white-matter ellipse (3 T relaxation times,
    Wansapura et al. 1999; Peters et al. 2007)."""
    from .scanners.mri import TissueMaps

    nx, ny, nz = labels.shape
    x = (np.arange(nx) - (nx - 1) / 2) / (nx / 2)
    y = (np.arange(ny) - (ny - 1) / 2) / (ny / 2)
    brain = (x[:, None] ** 2 + y[None, :] ** 2 <= 1.0)[:, :, None] * np.ones(nz, bool)
    gm = labels > 0
    m0 = np.where(gm, 1.0, np.where(brain, 0.75, 0.0)) * m0_scale
    t1 = np.where(gm, 1.33, 0.83)
    t2 = np.where(gm, 0.083, 0.075)
    t2star = np.where(gm, 0.052, 0.045)
    return TissueMaps(m0=m0, t1=t1, t2=t2, t2star=t2star, off_resonance=np.zeros(labels.shape))


def _run_mri(spec: dict, truth: dict, rng: np.random.Generator, sub_dir: Path, stem: str,
             show_progress: bool = False):
    from .scanners.mri import GradientEchoEPI, MRIScanner, SpinEchoEPI

    mri = spec["devices"]["mri"]
    act = spec["activity"]
    func_dir = sub_dir / "func"
    func_dir.mkdir(parents=True, exist_ok=True)
    balloon = balloon_preset(act["hemodynamics"])
    bold_params = BOLDParams(field_strength=mri["field_strength"], echo_time=mri["te"],
                             resting_extraction=balloon.resting_extraction,
                             r0=None if 1.5 <= mri["field_strength"] <= 7.0 else
                             _extrapolated_r0(mri["field_strength"]))
    res = simulate_bold(truth["neural_input"], act["dt"], balloon, bold_params, tr=mri["tr"])
    bold = np.asarray(res.bold)                               # (n_scans, n_regions)
    truth.update(states=np.asarray(res.states), bold=bold, scan_times=np.asarray(res.times))
    matrix = tuple(mri["matrix"])
    labels = _region_volume(bold.shape[1], spec["subject"]["voxels_per_region"], matrix,
                            mri["n_slices"])
    truth["labels"] = labels
    vs = spec["subject"]["voxel_size"] * 1e-3
    seq_cls = SpinEchoEPI if mri["sequence"] == "se" else GradientEchoEPI
    try:
        seq = seq_cls(tr=mri["tr"], te=mri["te"], flip_angle=mri["flip_angle"], matrix=matrix,
                      fov=(matrix[0] * vs, matrix[1] * vs), n_slices=mri["n_slices"],
                      slice_thickness=vs, echo_spacing=mri["echo_spacing"],
                      slice_order=mri["slice_order"])
    except ParameterError as err:
        raise SpecError(f"devices.mri: {err}") from err
    scanner = MRIScanner(field_strength=mri["field_strength"], sequence=seq,
                         noise_std=mri["noise_std"], seed=int(rng.integers(2 ** 31)))
    voxel_bold = np.zeros((bold.shape[0],) + labels.shape)
    for r in range(bold.shape[1]):
        voxel_bold[:, labels == r + 1] = bold[:, r][:, None]
    acq = scanner.acquire(_tissue_maps(labels, mri["baseline_signal"]), voxel_bold,
                          reference_echo_time=mri["te"], show_progress=show_progress)
    acq.sidecar["TaskName"] = spec["experiment"]["name"]
    _write_events(spec, func_dir / f"{stem}_events.tsv")
    acq.sidecar["GeneratedBy"] = [{"Name": "biosim", "Description":
                                   "Balloon-Windkessel BOLD -> virtual MRI scanner (EPI)"}]
    try:
        acq.write_nifti(func_dir / f"{stem}_bold.nii.gz", func_dir / f"{stem}_bold.json")
    except ImportError:  # nibabel absent: per-region TSV + sidecar
        cols = [acq.magnitude[labels == r].mean(axis=0) for r in range(1, int(labels.max()) + 1)]
        header = "\t".join(spec["subject"]["regions"])
        rows = "\n".join("\t".join(f"{v:.6f}" for v in row) for row in np.array(cols).T)
        atomic_write_text(func_dir / f"{stem}_bold.tsv", header + "\n" + rows + "\n")
        atomic_write_text(func_dir / f"{stem}_bold.json", json.dumps(acq.sidecar, indent=2) + "\n")


def _extrapolated_r0(b0: float) -> float:
    # linear in B0 beyond the tabulated 1.5-7 T range (Uludag et al. 2009 fit)
    return float(np.polyval(np.polyfit([1.5, 3.0, 7.0], [25.0, 110.0, 340.0], 1), b0))


def _write_events(spec: dict, path: Path):
    lines = ["onset\tduration\ttrial_type"]
    for b in sorted(spec["protocol"]["blocks"], key=lambda b: b["onset"]):
        lines.append(f"{b['onset']:.3f}\t{b['duration']:.3f}\t{b['condition']}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _write_truth(spec: dict, truth: dict, truth_dir: Path):
    arrays = {k: np.asarray(v) for k, v in truth.items()}
    with atomic_path(truth_dir / "truth.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    doc = {
        "regions": spec["subject"]["regions"],
        "arrays": {
            "times": "microtime axis of neural_input, s",
            "neural_input": "neural (vasoactive) input per region, 1/s, shape (n_t, n_regions)",
            "scan_times": "acquisition times of the volumes, s",
            "states": "Balloon states [s (1/s), ln f, ln v, ln q] at scan_times, shape "
                      "(n_scans, n_regions, 4)",
            "bold": "noise-free fractional BOLD change per region at scan_times",
            "labels": "region label volume of the NIfTI (0 = background, r+1 = region r)",
        },
        "spec": spec,
    }
    atomic_write_text(truth_dir / "truth.json", json.dumps(doc, indent=2, default=float) + "\n")


def _write_figure(spec: dict, truth: dict, path: Path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    regions = spec["subject"]["regions"]
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for r, name in enumerate(regions):
        axes[0].plot(truth["times"], truth["neural_input"][:, r], label=name)
        if "bold" in truth:
            axes[1].plot(truth["scan_times"], 100 * truth["bold"][:, r], marker=".", label=name)
    for b in spec["protocol"]["blocks"]:
        for ax in axes:
            ax.axvspan(b["onset"], b["onset"] + b["duration"], color="0.9", zorder=0)
    axes[0].set_ylabel("neural input (1/s)")
    axes[1].set_ylabel("BOLD change (%)")
    axes[1].set_xlabel("time (s)")
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"biosim experiment {spec['experiment']['name']!r}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    if "eeg_clean" in truth:
        _write_eeg_figure(spec, truth, path.with_name("eeg.png"), plt)
    return True


def _write_eeg_figure(spec, truth, path, plt):
    eeg = spec["devices"]["eeg"]
    names = eeg.get("channels") or []
    t, v = truth["eeg_times"], truth["eeg_clean"]
    first = next((b for b in spec["protocol"]["blocks"]), None)
    t0 = first["onset"] - 2.0 if first else 0.0
    sel = (t >= t0) & (t < t0 + 6.0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw=dict(width_ratios=[2, 1]))
    picks = np.linspace(0, v.shape[0] - 1, min(8, v.shape[0])).astype(int)
    spacing = 2.5 * np.abs(v[:, sel]).max() * 1e6 if sel.any() else 1.0
    for k, c in enumerate(picks):
        axes[0].plot(t[sel], v[c, sel] * 1e6 - k * spacing, lw=0.8)
        axes[0].text(t0, -k * spacing, names[c] if c < len(names) else str(c), ha="right")
    axes[0].set_xlabel("time (s)")
    axes[0].set_title("noise-free scalp EEG around the first block (uV)")
    axes[0].set_yticks([])
    lead = truth["eeg_leadfield"]
    axes[1].bar(range(lead.shape[0]), np.abs(lead).sum(1) * 1e-7 * 1e6)
    axes[1].set_xticks(range(lead.shape[0]))
    axes[1].set_xticklabels(names[:lead.shape[0]] if names else range(lead.shape[0]),
                            rotation=90, fontsize=7)
    axes[1].set_title("lead-field magnitude\n(uV per 100 nA m, all regions)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _region_dipoles(regions, source_space):
    """Dipole position (m) and unit orientation per region: the centroid and mean
    normal of the region's cortical patch (left hemisphere first)."""
    pos, ori = [], []
    for name in regions:
        key = next((f"{name}-{h}" for h in ("lh", "rh") if f"{name}-{h}" in source_space.regions),
                   None)
        if key is None:
            names = sorted({k.rsplit("-", 1)[0] for k in source_space.regions})
            raise SpecError(f"subject.regions: {name!r} has no cortical location for the EEG "
                            f"forward model: expected one of {names}")
        idx = source_space.regions[key]
        n = source_space.normals[idx].mean(0)
        pos.append(source_space.positions[idx].mean(0))
        ori.append(n / np.linalg.norm(n))
    return np.array(pos), np.array(ori)


def _run_eeg(spec: dict, truth: dict, rng: np.random.Generator, sub_dir: Path, stem: str,
             show_progress: bool = False):
    from .geometry.source_space import cortical_surface
    from .io.brainvision import write_brainvision
    from .physics.electromag import SphereHead, eeg_gain
    from .physics.electromag.montage import fit_sphere, standard_montage
    from .scanners.eeg import EEGAmplifier

    eeg = spec["devices"]["eeg"]
    try:
        montage = standard_montage(eeg["montage"], reference=eeg["reference"],
                                   channels=eeg.get("channels"))
        amp = EEGAmplifier(sample_rate=eeg["sample_rate"], noise_density=eeg["noise_density"],
                           line_noise=eeg["line_noise"], line_frequency=eeg["line_frequency"],
                           clock_drift_ppm=eeg["clock_drift_ppm"], bit_depth=eeg["bit_depth"],
                           seed=int(rng.integers(2 ** 31)))
    except ParameterError as err:
        raise SpecError(f"devices.eeg: {err}") from err
    center, radius = fit_sphere(standard_montage(eeg["montage"]).positions)
    rel = np.asarray(eeg["relative_radii"], float)
    head = SphereHead.create(rel * radius, eeg["conductivities"], center)
    pos, ori = _region_dipoles(spec["subject"]["regions"], cortical_surface("ico4"))
    g = np.asarray(eeg_gain(head, montage.positions, pos))              # (C, R, 3)
    lead = montage.reference_matrix() @ np.einsum("csk,sk->cs", g, ori)  # (C, R) V/(A m)
    times = amp.sample_times(spec["experiment"]["duration"])
    dt = spec["activity"]["dt"]
    idx = np.minimum((times / dt).astype(int), truth["neural_input"].shape[0] - 1)
    z = truth["neural_input"][idx]                                       # (T, R) 1/s
    if eeg["carrier_hz"] > 0:
        # narrowband rhythm: phase diffusion with ~1 Hz bandwidth (Lorentzian line), so the
        # rhythm is not locked to anything (e.g. the scanner's slice period)
        dt_s = np.diff(times, prepend=times[0])
        phase = np.cumsum(rng.normal(0.0, 1.0, (len(times), len(spec["subject"]["regions"])))
                          * np.sqrt(2 * np.pi * 1.0 * dt_s)[:, None], axis=0)
        carrier = np.sin(2 * np.pi * eeg["carrier_hz"] * times[:, None] + phase)
    else:
        carrier = 1.0
    moments = eeg["moment_per_input"] * z * carrier                      # (T, R) A m
    clean = lead @ moments.T                                             # (C, T) V
    total = clean
    events = [(b["onset"], b["condition"]) for b in spec["protocol"]["blocks"]]
    if "mri" in spec["devices"]:                                         # simultaneous EEG-fMRI
        from .scanners.eeg_fmri import (EPIGradients, bcg_artifact, cardiac_r_peaks,
                                        gradient_artifact, lead_loops)

        mri = spec["devices"]["mri"]
        slice_period = mri["tr"] / mri["n_slices"]
        n_slices_total = int(round(spec["experiment"]["duration"] / slice_period))
        loops = lead_loops(montage.n_channels, seed=int(rng.integers(2 ** 31)))
        grad = gradient_artifact(montage.positions, loops, EPIGradients(), slice_period,
                                 n_slices_total, times)
        r_peaks = cardiac_r_peaks(spec["experiment"]["duration"], seed=int(rng.integers(2 ** 31)))
        bcg = bcg_artifact(loops, mri["field_strength"], r_peaks, times,
                           seed=int(rng.integers(2 ** 31)))
        total = clean + grad + bcg
        slice_times = np.arange(n_slices_total) * slice_period
        truth.update(eeg_gradient_artifact=grad, eeg_bcg_artifact=bcg, r_peaks=r_peaks,
                     mri_slice_times=slice_times)
        events += [(ts, "slice") for ts in slice_times]
        events += [(ts, "volume") for ts in slice_times[::mri["n_slices"]]]
    data = amp.record(total, montage.names)
    # markers are stamped on the amplifier's clock: true time t -> sample t fs (1 + drift)
    drift = 1 + amp.clock_drift_ppm * 1e-6
    events = [(t * drift, d) for t, d in events]
    truth.update(eeg_times=times, eeg_moments=moments, eeg_leadfield=lead,
                 eeg_dipole_positions=pos, eeg_dipole_orientations=ori, eeg_clean=clean)
    eeg_dir = sub_dir / "eeg"
    eeg_dir.mkdir(parents=True, exist_ok=True)
    write_brainvision(eeg_dir / f"{stem}_eeg.vhdr", data, amp.sample_rate, montage.names, events)
    atomic_write_text(eeg_dir / f"{stem}_eeg.json", json.dumps({
        "TaskName": spec["experiment"]["name"], "SamplingFrequency": amp.sample_rate,
        "EEGReference": eeg["reference"], "PowerLineFrequency": amp.line_frequency,
        "SoftwareFilters": "n/a", "EEGChannelCount": montage.n_channels,
        "RecordingDuration": float(times[-1] + 1 / amp.sample_rate) if len(times) else 0.0,
        "Manufacturer": "biosim", "ManufacturersModelName": "virtual EEG amplifier"}, indent=2) + "\n")
    atomic_write_text(eeg_dir / f"{stem}_channels.tsv", "name\ttype\tunits\n" + "".join(
        f"{n}\tEEG\tuV\n" for n in montage.names))
    atomic_write_text(eeg_dir / f"{sub_dir.name}_electrodes.tsv", "name\tx\ty\tz\n" + "".join(
        f"{n}\t{p[0]:.5f}\t{p[1]:.5f}\t{p[2]:.5f}\n" for n, p in zip(montage.names, montage.positions)))
    _write_events(spec, eeg_dir / f"{stem}_events.tsv")


DEVICE_RUNNERS = {"mri": _run_mri, "eeg": _run_eeg}


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
        times, u = neural_input(spec)
        truth = {"times": times, "neural_input": u}
        sub_dir = tmp / sub
        sub_dir.mkdir(parents=True)
        for name in spec["devices"]:
            DEVICE_RUNNERS[name](spec, truth, rng, sub_dir, stem, show_progress=progress)
        (tmp / "truth").mkdir()
        _write_truth(spec, truth, tmp / "truth")
        (tmp / "report").mkdir()
        _write_figure(spec, truth, tmp / "report" / "fmri.png")
        atomic_write_text(tmp / "dataset_description.json", json.dumps(
            {"Name": f"biosim {spec['experiment']['name']}", "BIDSVersion": "1.9.0",
             "DatasetType": "raw", "GeneratedBy": [{"Name": "biosim"}]}, indent=2) + "\n")
    return out_dir
