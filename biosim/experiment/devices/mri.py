"""The MRI scanner device: BOLD fMRI with a GRE- or SE-EPI sequence.

The regional neural activity drives the Balloon-Windkessel model; the BOLD
signal becomes a change of R2* (R2 for SE) in a cube of grey-matter voxels per
region inside a white-matter slab, and :class:`biosim.instruments.mri.MRIScanner`
acquires EPI volumes (4D NIfTI + BIDS sidecar in ``func/``).
"""

from __future__ import annotations

import json

import numpy as np

from ..._core.atomic import atomic_write_text
from ..._core.errors import ParameterError, SpecError
from ...physics.hemodynamics import BOLDParams, simulate_bold
from ...physics.hemodynamics.balloon import preset as balloon_preset
from ..keys import check_keys, require, set_default
from . import register_device
from ..subject import write_events


KEYS = {"type", "field_strength", "tr", "te", "baseline_signal", "noise_std", "sequence",
        "flip_angle", "matrix", "n_slices", "echo_spacing", "slice_order"}


def validate(mri: dict, spec: dict, where: str):
    check_keys(mri, KEYS, where)
    dt, duration = spec["activity"]["dt"], spec["experiment"]["duration"]
    positive = lambda v: v > 0  # noqa: E731
    require(mri, "field_strength", where, float, lambda v: 0.1 <= v <= 11.7,
            "a field strength in [0.1, 11.7] T")
    tr = require(mri, "tr", where, float, positive, "a positive TR in s")
    require(mri, "te", where, float, lambda v: 0 < v < tr, f"an echo time in (0, TR = {tr:g}) s")
    ratio = tr / dt
    if abs(ratio - round(ratio)) > 1e-9 * ratio:
        raise SpecError(f"{where}.tr = {tr!r} is invalid: expected a multiple of "
                        f"activity.dt = {dt:g} s")
    if abs(duration / tr - round(duration / tr)) > 1e-9 * duration / tr:
        raise SpecError(f"experiment.duration = {duration!r} is invalid: expected a whole "
                        f"number of TRs ({tr:g} s) for {where}")
    set_default(mri, "baseline_signal", where, 1000.0, float, positive, "a positive signal")
    set_default(mri, "noise_std", where, 0.0, float, lambda v: v >= 0, "a non-negative noise level")
    seq = set_default(mri, "sequence", where, "gre", str, lambda v: v in ("gre", "se"),
                      "'gre' or 'se'")
    set_default(mri, "flip_angle", where, 77.0 if seq == "gre" else 90.0, float,
                lambda v: 0 < v <= 180, "a flip angle in (0, 180] degrees")
    set_default(mri, "matrix", where, [16, 16], list,
                lambda v: len(v) == 2 and all(isinstance(m, int) and m >= 4 and m % 2 == 0
                                              for m in v), "two even integers >= 4")
    set_default(mri, "n_slices", where, 3, int, lambda v: v >= 1, "a positive integer")
    set_default(mri, "echo_spacing", where, 5e-4, float, positive, "a positive spacing in s")
    set_default(mri, "slice_order", where, "interleaved", str,
                lambda v: v in ("ascending", "descending", "interleaved"),
                "'ascending', 'descending' or 'interleaved'")


def region_volume(n_regions: int, voxels_per_region: int, matrix, n_slices: int,
                  where: str = "devices.mri"):
    """Label volume (Nx, Ny, n_slices): region r is a cube of voxels (label r+1)
    placed along x in the middle slices; 0 elsewhere."""
    side = round(voxels_per_region ** (1 / 3))
    need_x = n_regions * (side + 1) + 1
    if matrix[0] < need_x or matrix[1] < side + 2 or n_slices < side:
        raise SpecError(f"{where}.matrix = {list(matrix)} / n_slices = {n_slices} is too small: "
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


def tissue_maps(labels, m0_scale: float):
    """Grey-matter regions inside a white-matter ellipse (3 T relaxation times,
    Wansapura et al. 1999; Peters et al. 2007)."""
    from ...instruments.mri import TissueMaps

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


def extrapolated_r0(b0: float) -> float:
    """Intravascular relaxation-rate slope r0 (1/s) linear in B0 beyond the
    tabulated 1.5-7 T range (Uludag et al. 2009 values 25/110/340)."""
    return float(np.polyval(np.polyfit([1.5, 3.0, 7.0], [25.0, 110.0, 340.0], 1), b0))


def run(ctx):
    from ...instruments.mri import GradientEchoEPI, MRIScanner, SpinEchoEPI

    mri, spec, truth = ctx.table, ctx.spec, ctx.truth
    act = spec["activity"]
    func_dir = ctx.sub_dir / "func"
    func_dir.mkdir(parents=True, exist_ok=True)
    balloon = balloon_preset(act["hemodynamics"])
    bold_params = BOLDParams(field_strength=mri["field_strength"], echo_time=mri["te"],
                             resting_extraction=balloon.resting_extraction,
                             r0=None if 1.5 <= mri["field_strength"] <= 7.0 else
                             extrapolated_r0(mri["field_strength"]))
    res = simulate_bold(truth["neural_input"], act["dt"], balloon, bold_params, tr=mri["tr"])
    bold = np.asarray(res.bold)                               # (n_scans, n_regions)
    truth.update(states=np.asarray(res.states), bold=bold, scan_times=np.asarray(res.times))
    matrix = tuple(mri["matrix"])
    labels = region_volume(bold.shape[1], spec["subject"]["voxels_per_region"], matrix,
                           mri["n_slices"], f"devices.{ctx.key}")
    truth["labels"] = labels
    vs = spec["subject"]["voxel_size"] * 1e-3
    seq_cls = SpinEchoEPI if mri["sequence"] == "se" else GradientEchoEPI
    try:
        seq = seq_cls(tr=mri["tr"], te=mri["te"], flip_angle=mri["flip_angle"], matrix=matrix,
                      fov=(matrix[0] * vs, matrix[1] * vs), n_slices=mri["n_slices"],
                      slice_thickness=vs, echo_spacing=mri["echo_spacing"],
                      slice_order=mri["slice_order"])
    except ParameterError as err:
        raise SpecError(f"devices.{ctx.key}: {err}") from err
    scanner = MRIScanner(field_strength=mri["field_strength"], sequence=seq,
                         noise_std=mri["noise_std"], seed=int(ctx.rng.integers(2 ** 31)))
    voxel_bold = np.zeros((bold.shape[0],) + labels.shape)
    for r in range(bold.shape[1]):
        voxel_bold[:, labels == r + 1] = bold[:, r][:, None]
    acq = scanner.acquire(tissue_maps(labels, mri["baseline_signal"]), voxel_bold,
                          reference_echo_time=mri["te"], show_progress=ctx.show_progress)
    ctx.outputs[ctx.key] = {"region_signal": np.stack(
        [np.asarray(acq.magnitude)[labels == r + 1].mean(axis=0) for r in range(bold.shape[1])],
        axis=1), "tr": mri["tr"], "te": mri["te"], "field_strength": mri["field_strength"]}
    acq.sidecar["TaskName"] = spec["experiment"]["name"]
    write_events(spec, func_dir / f"{ctx.stem}_events.tsv")
    acq.sidecar["GeneratedBy"] = [{"Name": "biosim", "Description":
                                   "Balloon-Windkessel BOLD -> virtual MRI scanner (EPI)"}]
    try:
        acq.write_nifti(func_dir / f"{ctx.stem}_bold.nii.gz", func_dir / f"{ctx.stem}_bold.json")
    except ImportError:  # nibabel absent: per-region TSV + sidecar
        cols = [acq.magnitude[labels == r].mean(axis=0) for r in range(1, int(labels.max()) + 1)]
        header = "\t".join(spec["subject"]["regions"])
        rows = "\n".join("\t".join(f"{v:.6f}" for v in row) for row in np.array(cols).T)
        atomic_write_text(func_dir / f"{ctx.stem}_bold.tsv", header + "\n" + rows + "\n")
        atomic_write_text(func_dir / f"{ctx.stem}_bold.json",
                          json.dumps(acq.sidecar, indent=2) + "\n")


register_device("mri", validate=validate, run=run, order=10,
                description="MRI scanner: BOLD fMRI with GRE- or SE-EPI (4D NIfTI + sidecar)")
