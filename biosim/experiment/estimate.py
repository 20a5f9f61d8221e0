"""Up-front checks of an experiment: resources it needs and sampling it aliases.

:func:`estimate_resources` predicts the peak memory, the size of the output
folder and the run time of a validated spec from its sizes alone (nothing is
simulated); :func:`check_resources` refuses, with a :class:`~biosim.SpecError`
naming the keys that drive it, a spec whose memory estimate exceeds what this
machine has available; :func:`check_sampling` warns (:class:`AliasingWarning`)
when a device samples slower than twice the rhythm or the mains frequency.

The model is deliberately coarse (an order of magnitude, not a profile):

* baseline: the Python process with JAX and the compiled kernels, ~0.4 GB and
  ~8 s (including the report);
* activity: the microtime grid (``experiment.duration / activity.dt`` x regions);
  the electrophysiology sources are lazy (a 10 ms phase grid x regions), and
  the truth computes them once on a 1 kHz grid (~4 float64 copies, transient;
  the neural mass holds its own 1 kHz grid);
* MRI: the atlas and field map (~0.6 GB while loading, ~4 s once), image
  formation on chunks of ~1.5 million voxels, the volumes held as float32
  (matrix x ``n_slices`` x volumes, ``experiment.duration / tr``, ~2 copies
  while writing); its time is ~6 s once (field map, T1w image) and ~1e-4 s +
  5.5e-9 s x Nx Ny^2 per slice and volume (four sub-voxels per voxel where the field
  varies along phase encode), plus
  3.6e-7 s per voxel and volume when the head moves (``[subject.motion]``);
* EEG/MEG: simulated in chunks into one float32 array of channels x samples
  (``sample_rate x experiment.duration``), plus the truth (clean signal, and
  for an EEG in the scanner its two artifacts) as float32 at
  ``truth_sample_rate``; one chunk (a few MB per channel and region) at a
  time; the writers stream blocks to disk; ~6e-8 s per MEG channel and
  sample, 3e-8 s (6e-8 in the scanner) per EEG channel and sample (64
  channels at 5 kHz for 600 s in the scanner: ~7 s of CPU, 1.4 GB);
* template head (``subject.head = "template"``): the dense BEM system of
  3 x ``subject.bem_vertices`` + 2 x triangles unknowns, ~3.5 float64 copies
  (blocks, system, factors), built once per device; ~40 s at 642 vertices,
  growing with the square of the unknowns (x3 for curved elements);
* FEM head (``subject.head = "fem"``): the template head meshed at
  ``subject.fem_edge_length`` h (~60 k tetrahedra at 8 mm, x (8 mm / h)^3), its
  sparse factorisation and transfer matrix, built once per device; measured
  0.41 GB and 12 s at 8 mm, 0.45 GB and 50 s at 6 mm (64 electrodes, 3 regions):
  estimated 0.45 GB x (8 mm / h)^3 and 12 s x (8 mm / h)^5;
* analyses: ~17 s and ~0.2 GB per DCM model, ~90 s and ~0.3 GB for the ERP-DCM.

Calibration (2 shared CPU cores, load ~3; peak RSS from ``/usr/bin/time``),
measured against the estimate:

* eeg_fmri (whole-brain EPI 64 x 64 x 40, EEG at 1 kHz): 1.27 GB, 26 s, 136 MB
  (estimate 1.2 GB, 15 s, 145 MB);
* meg_opm_template: 0.92 GB, 48 s, 16 MB (estimate 1.0 GB, 52 s, 19 MB);
* opm_vs_squid: 0.49 GB, 7 s, 82 MB (estimate 0.56 GB, 9 s, 107 MB; chunked MEG);
* erp_eeg_fmri, dcm_fmri: measured before the MRI imaged the MNI152 anatomy (0.93 GB,
  103 s and 0.60 GB, 43 s with a 16 x 16 x 5 phantom).

Times scale with the machine; memory does not.

``BIOSIM_AVAILABLE_MEMORY`` (bytes, or with a unit: ``"16G"``, ``"512M"``)
overrides the memory this machine is taken to have (e.g. a batch job's limit).
"""

from __future__ import annotations

import dataclasses
import os
import warnings

from .._core.errors import SpecError
from .activity import MAX_SOURCE_TRUTH
from .devices import device_instances

__all__ = [
    "AliasingWarning",
    "Estimate",
    "estimate_resources",
    "available_memory",
    "check_resources",
    "check_sampling",
    "format_bytes",
]

_BASE_MEMORY = 0.4e9  # B: Python + JAX + compiled kernels
_BASE_TIME = 8.0  # s: start-up, compilation, report
_MEG_CHANNELS = {"squid306": 306, "axial275": 275}
_OPM_AXES = {"radial": 1, "dual": 2, "triaxial": 3}


class AliasingWarning(UserWarning):
    """A device samples slower than twice a frequency present in the signal."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Predicted resources of one run.

    Attributes
    ----------
    peak_memory : float
        Peak resident memory, bytes.
    output_size : float
        Size of the output folder, bytes.
    run_time : float
        Wall time on a few cores, s (an order of magnitude).
    drivers : tuple of (str, float)
        What drives the memory, naming the spec keys, with its bytes, largest first.
    """

    peak_memory: float
    output_size: float
    run_time: float
    drivers: tuple = ()

    def summary(self) -> str:
        """``estimate: peak memory ~1.2 GB, output ~35 MB, time ~40 s``."""
        return (
            f"estimate: peak memory ~{format_bytes(self.peak_memory)}, "
            f"output ~{format_bytes(self.output_size)}, time ~{format_duration(self.run_time)}"
        )


def format_bytes(n: float) -> str:
    """``1.2 GB`` (decimal units)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n / scale < 10 else f"{n / scale:.0f} {unit}"
    return f"{n:.0f} B"


def format_duration(s: float) -> str:
    """``40 s``, ``12 min``, ``3.5 h``, ``27 days``."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.2g} h"
    return f"{s / 86400:.3g} days"


def _eeg_channels(table: dict) -> int:
    if "channels" in table:
        return len(table["channels"])
    from ..physics.electromag.montage import standard_montage

    return len(standard_montage(table["montage"]).names)


def _meg_channels(table: dict) -> int:
    if table["system"] == "opm":
        return table["n_sensors"] * _OPM_AXES.get(table["opm_axes"], 1)
    return _MEG_CHANNELS.get(table["system"], 306)


def _bem_unknowns(n_vertices: int) -> int:
    """Unknowns of the 3-surface template BEM (P1 potentials, P0 fluxes on 2)."""
    n_triangles = 2 * n_vertices - 4
    return 3 * n_vertices + 2 * n_triangles


def estimate_resources(spec: dict) -> Estimate:
    """Peak memory, output size and run time of a validated spec (see the module
    docstring for the model and its calibration)."""
    exp, subj, act = spec["experiment"], spec["subject"], spec["activity"]
    duration = float(exp["duration"])
    n_regions = len(subj["regions"])
    persistent: list[tuple[str, float]] = []  # held until the run ends
    transient: list[tuple[str, float]] = []  # one at a time
    output = 0.0
    run_time = _BASE_TIME

    n_micro = duration / act["dt"]
    persistent.append(
        (
            f"experiment.duration = {duration:g} s / activity.dt = {act['dt']:g} s "
            f"({n_micro:.3g} microtime steps x {n_regions} regions)",
            n_micro * n_regions * 8 * 6,
        )
    )
    output += n_micro * (n_regions + 3) * 8 * 0.7  # truth: times, input, boxcars
    run_time += n_micro * 2e-6

    rates = [float(t["sample_rate"]) for _, t in device_instances(spec) if "sample_rate" in t]
    if rates or act["model"] == "neural_mass":
        # the sources are lazy (the neural activity and a 10 ms phase grid); the truth
        # keeps them on a 1 kHz grid, computed once at the end (~4 float64 copies), when
        # that grid is at most MAX_SOURCE_TRUTH samples x regions
        n_src = duration * 1000.0
        if act["model"] == "neural_mass":
            persistent.append(
                (
                    f"experiment.duration (the neural mass's 1 kHz grid of {n_src:.3g} samples "
                    f"x {n_regions} regions)",
                    n_src * n_regions * 8 * 3,
                )
            )
        else:
            persistent.append(
                (
                    f"experiment.duration (the rhythm's 10 ms phase grid x {n_regions} regions)",
                    duration / 0.01 * n_regions * 8 * 2,
                )
            )
            if n_src * n_regions <= MAX_SOURCE_TRUTH:  # else the truth keeps the phase grid
                transient.append(
                    (
                        f"experiment.duration (the truth's 1 kHz source grid of {n_src:.3g} "
                        f"samples x {n_regions} regions)",
                        n_src * n_regions * 8 * 4,
                    )
                )
        if act["model"] == "neural_mass" or n_src * n_regions <= MAX_SOURCE_TRUTH:
            output += n_src * (n_regions + 1) * 8 * 0.7
            run_time += n_src * n_regions * 1e-7

    has_mri = bool(device_instances(spec, "mri"))
    for key, table in device_instances(spec):
        kind = table["type"]
        where = f"devices.{key}"
        if kind == "mri":
            nx, ny = table["matrix"]
            nz = table["n_slices"]
            n_vol = int(duration // table["tr"])
            n_vox = nx * ny * nz
            moving = "motion" in subj
            transient.append(
                (
                    "the MNI152 atlas and the head's field map (1 mm tissue fractions)",
                    0.6e9,
                )
            )
            transient.append(
                (
                    f"{where}.matrix = [{nx}, {ny}] x n_slices = {nz} (image formation "
                    "works on chunks of about 1.5 million voxels)",
                    min(n_vox * n_vol, 1.5e6) * 16 * 12,
                )
            )
            persistent.append(
                (
                    f"{where}.matrix = [{nx}, {ny}] x n_slices = {nz} x {n_vol} volumes "
                    f"(experiment.duration / {where}.tr)",
                    n_vox * n_vol * 4 * 2,
                )
            )
            output += n_vox * n_vol * 4 * 0.8 + (6e6 if table.get("anatomical", True) else 0)
            run_time += 6.0 + n_vol * nz * (1e-4 + nx * ny**2 * 5.5e-9)
            if moving:
                run_time += n_vox * n_vol * 3.6e-7
        elif kind in ("eeg", "meg"):
            from .devices.eeg import chunk_length, truth_decimation

            n_ch = _eeg_channels(table) if kind == "eeg" else _meg_channels(table)
            fs = float(table["sample_rate"])
            n_s = duration * fs
            q = truth_decimation(table)
            in_scanner = kind == "eeg" and has_mri
            truth_arrays = 3 if in_scanner else 1  # clean (+ gradient, BCG), float32
            persistent.append(
                (
                    f"{where}: {n_ch} channels x {n_s:.3g} samples ({where}.sample_rate = "
                    f"{fs:g} Hz x experiment.duration), float32, and its truth at "
                    f"{where}.truth_sample_rate = {fs / q:g} Hz",
                    n_ch * n_s * 4 + truth_arrays * n_ch * n_s / q * 4,
                )
            )
            chunk = chunk_length(q, 1024, max(n_ch, n_regions))
            transient.append(
                (
                    f"{where}: one chunk of {chunk} samples (sources, signal, artifacts, noise)",
                    chunk * 8 * (3 * n_regions + 6 * n_ch),
                )
            )
            output += n_ch * n_s * 4 + truth_arrays * n_ch * n_s / q * 4 * 0.9
            run_time += n_ch * n_s * (6e-8 if kind == "meg" or in_scanner else 3e-8)
            if subj["head"] == "template":
                n_unk = _bem_unknowns(subj["bem_vertices"])
                transient.append(
                    (
                        f"subject.bem_vertices = {subj['bem_vertices']} (a dense BEM system "
                        f"of {n_unk} x {n_unk} unknowns)",
                        n_unk**2 * 8 * 3.5,
                    )
                )
                curved = 3.0 if subj["bem_elements"] == "curved" else 1.0
                run_time += curved * 40.0 * (n_unk / 4486) ** 2 + 1e-11 * n_unk**3
            elif subj["head"] == "fem":
                ratio = 8.0 / subj["fem_edge_length"]
                transient.append(
                    (
                        f"subject.fem_edge_length = {subj['fem_edge_length']:g} mm (~"
                        f"{60e3 * ratio**3:.2g} tetrahedra: mesh, sparse factorisation and "
                        "transfer matrix)",
                        0.45e9 * ratio**3,
                    )
                )
                run_time += 12.0 * ratio**5
        elif kind == "ultrasound":
            from .devices.ultrasound import grid_shape

            shape, _ = grid_shape(table)
            n_vox = int(shape[0] * shape[1] * shape[2])
            f, h = table["frequency"], table["grid_spacing"]
            # time steps of the CW run: ~(settling + 6) periods of period / (cfl h / 2800 m/s)
            per_period = 1.0 / f / (table["cfl"] * h / 2800.0)
            diag = h * sum(n * n for n in shape) ** 0.5
            n_steps = per_period * (6 + 1.5 * diag / 1500.0 * f)
            n_frames = duration / table["thermometry"]["frame_interval"]
            persistent.append(
                (
                    f"{where}: {shape[0]} x {shape[1]} x {shape[2]} acoustic grid "
                    f"({where}.grid_spacing) x {n_frames:.0f} temperature frames",
                    n_vox * n_frames * 8,
                )
            )
            transient.append((f"{where}: the acoustic time loop", n_vox * 4 * 40))
            output += n_vox * 4 * 4 * 0.5
            run_time += 5.0 + n_vox * n_steps * 6e-8 + n_vox * n_frames * 2e-6
        else:  # a registered device type the model does not know: no contribution
            continue
    analysis = spec.get("analysis", {})
    if "dcm" in analysis:  # compiled model and its Jacobian
        run_time += 17.0 * len(analysis["dcm"].get("models", {1: 1}))
        transient.append(("analysis.dcm (the compiled DCM and its Jacobian)", 0.2e9))
    if "dcm_erp" in analysis:
        run_time += 90.0
        transient.append(("analysis.dcm_erp (the compiled ERP model and its Jacobian)", 0.3e9))
    peak = _BASE_MEMORY + sum(b for _, b in persistent) + max([0.0] + [b for _, b in transient])
    drivers = tuple(sorted(persistent + transient, key=lambda kv: -kv[1]))
    return Estimate(peak, output, run_time, drivers)


def _parse_bytes(text: str) -> float:
    units = {"": 1, "B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    t = text.strip().upper().removesuffix("B") if text.strip().upper() != "B" else ""
    unit = t[-1] if t and t[-1] in units else ""
    try:
        value = float(t[: len(t) - len(unit)]) * units[unit]
    except ValueError:
        raise SpecError(
            f"BIOSIM_AVAILABLE_MEMORY = {text!r} is invalid: expected bytes, e.g. 16G or 512M"
        ) from None
    if value <= 0:
        raise SpecError(f"BIOSIM_AVAILABLE_MEMORY = {text!r} is invalid: expected a positive size")
    return value


def available_memory() -> float | None:
    """Memory available to a run, bytes: ``BIOSIM_AVAILABLE_MEMORY`` if set, else
    ``MemAvailable`` of ``/proc/meminfo``, else free pages (``os.sysconf``);
    None when unknown."""
    override = os.environ.get("BIOSIM_AVAILABLE_MEMORY")
    if override:
        return _parse_bytes(override)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_resources(spec: dict, estimate: Estimate | None = None) -> Estimate:
    """The spec's :class:`Estimate`; :class:`~biosim.SpecError` when its peak
    memory exceeds :func:`available_memory`, naming the keys that drive it."""
    est = estimate or estimate_resources(spec)
    avail = available_memory()
    if avail is not None and est.peak_memory > avail:
        big = [(what, b) for what, b in est.drivers if b > 0.1 * est.peak_memory][:2]
        why = "; ".join(f"{what} needs ~{format_bytes(b)}" for what, b in big)
        fix = f"Reduce {'these' if len(big) > 1 else 'it'}"
        if not big:
            why = f"the Python process with JAX alone needs ~{format_bytes(_BASE_MEMORY)}"
            fix = "Free memory"
        raise SpecError(
            f"this experiment needs ~{format_bytes(est.peak_memory)} of memory but "
            f"~{format_bytes(avail)} is available: {why}. {fix} (or set "
            "BIOSIM_AVAILABLE_MEMORY to the memory the run will have)"
        )
    return est


def check_sampling(spec: dict) -> list[str]:
    """Warn (:class:`AliasingWarning`) for each EEG/MEG device sampling slower than
    twice the rhythm (``activity.carrier_hz``) or its mains frequency
    (``line_frequency``, when ``line_noise`` is on), and for an EEG in the scanner
    whose samples do not lock to the slice period; returns the messages."""
    carrier = float(spec["activity"].get("carrier_hz", 0.0))
    messages = []
    for key, table in device_instances(spec):
        if table["type"] not in ("eeg", "meg") or "sample_rate" not in table:
            continue
        fs = float(table["sample_rate"])
        where = f"devices.{key}"
        if spec["activity"]["model"] != "neural_mass" and 0 < carrier and fs < 2 * carrier:
            messages.append(
                f"{where}.sample_rate = {fs:g} Hz is below twice the rhythm "
                f"activity.carrier_hz = {carrier:g} Hz: the rhythm aliases to "
                f"{abs(carrier - fs * round(carrier / fs)):.3g} Hz"
            )
        mains = float(table.get("line_frequency", 0.0))
        if table.get("line_noise", 0.0) > 0 and 0 < mains and fs < 2 * mains:
            messages.append(
                f"{where}.sample_rate = {fs:g} Hz is below twice the mains frequency "
                f"{where}.line_frequency = {mains:g} Hz: the line noise aliases to "
                f"{abs(mains - fs * round(mains / fs)):.3g} Hz"
            )
        for mri_key, mri in device_instances(spec, "mri"):
            if table["type"] != "eeg":
                continue
            samples = fs * mri["tr"] / mri["n_slices"]
            if abs(samples - round(samples)) > 1e-6 * samples:
                messages.append(
                    f"{where}.sample_rate = {fs:g} Hz gives {samples:.4g} samples per slice "
                    f"of devices.{mri_key} (tr / n_slices): the gradient artifact is not "
                    "sample-locked to the slice triggers, so template subtraction (AAS) "
                    "leaves much of it; expected a rate that is a multiple of n_slices / tr "
                    f"= {mri['n_slices'] / mri['tr']:g} Hz"
                )
    for msg in messages:
        warnings.warn(msg, AliasingWarning, stacklevel=3)
    return messages
