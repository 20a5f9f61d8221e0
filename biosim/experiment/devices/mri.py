"""The MRI scanner device: BOLD fMRI with a GRE- or SE-EPI sequence.

The regional neural activity drives the Balloon-Windkessel model; the BOLD
signal becomes a change of R2* (R2 for SE) in a cube of grey-matter voxels per
region inside a white-matter slab, and :class:`biosim.instruments.mri.MRIScanner`
acquires EPI volumes (4D NIfTI + BIDS sidecar in ``func/``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ... import __version__
from ..._core.errors import SpecError
from ...instruments.mri import GradientEchoEPI, MRIAcquisition, MRIScanner, SpinEchoEPI
from ...io.bids import BIDSDataset, events_sidecar, write_events, write_json, write_tsv
from ...physics.hemodynamics import BOLDParams, simulate_bold
from ...physics.hemodynamics.balloon import preset as balloon_preset
from ..keys import check_keys, instrument_errors, require, set_default
from . import DeviceContext, Recording, register_device

KEYS = {
    "type",
    "field_strength",
    "tr",
    "te",
    "baseline_signal",
    "noise_std",
    "sequence",
    "flip_angle",
    "matrix",
    "n_slices",
    "echo_spacing",
    "slice_order",
}


def build_scanner(mri: dict, spec: dict, seed: int = 0) -> MRIScanner:
    """The scanner and its EPI sequence for a validated ``[devices.<key>]`` table
    (voxels of ``subject.voxel_size`` mm, isotropic)."""
    vs = spec["subject"]["voxel_size"] * 1e-3
    matrix = tuple(mri["matrix"])
    seq_cls = SpinEchoEPI if mri["sequence"] == "se" else GradientEchoEPI
    seq = seq_cls(
        tr=mri["tr"],
        te=mri["te"],
        flip_angle=mri["flip_angle"],
        matrix=matrix,
        fov=(matrix[0] * vs, matrix[1] * vs),
        n_slices=mri["n_slices"],
        slice_thickness=vs,
        echo_spacing=mri["echo_spacing"],
        slice_order=mri["slice_order"],
    )
    return MRIScanner(
        field_strength=mri["field_strength"], sequence=seq, noise_std=mri["noise_std"], seed=seed
    )


def bold_params(mri: dict, spec: dict) -> BOLDParams:
    """The BOLD signal model at the scanner's field strength and echo time."""
    balloon = balloon_preset(spec["activity"]["hemodynamics"])
    b0 = mri["field_strength"]
    return BOLDParams(
        field_strength=b0,
        echo_time=mri["te"],
        resting_extraction=balloon.resting_extraction,
        r0=None if 1.5 <= b0 <= 7.0 else extrapolated_r0(b0),
    )


def validate(mri: dict, spec: dict, where: str):
    """Defaults and types here; every limit of the scanner, its sequence and the BOLD
    model is checked by building them (their errors name the key)."""
    check_keys(mri, KEYS, where)
    dt, duration = spec["activity"]["dt"], spec["experiment"]["duration"]
    positive = lambda v: v > 0  # noqa: E731
    require(mri, "field_strength", where, float, None, "a field strength in T")
    tr = require(mri, "tr", where, float, positive, "a positive TR in s")
    require(mri, "te", where, float, None, "an echo time in s")
    ratio = tr / dt
    if abs(ratio - round(ratio)) > 1e-9 * ratio:
        raise SpecError(
            f"{where}.tr = {tr!r} is invalid: expected a multiple of activity.dt = {dt:g} s"
        )
    if abs(duration / tr - round(duration / tr)) > 1e-9 * duration / tr:
        raise SpecError(
            f"experiment.duration = {duration!r} is invalid: expected a whole "
            f"number of TRs ({tr:g} s) for {where}"
        )
    set_default(mri, "baseline_signal", where, 1000.0, float, positive, "a positive signal")
    set_default(mri, "noise_std", where, 0.0, float, None, "a noise level")
    seq = set_default(
        mri, "sequence", where, "gre", str, lambda v: v in ("gre", "se"), "'gre' or 'se'"
    )
    set_default(
        mri,
        "flip_angle",
        where,
        77.0 if seq == "gre" else 90.0,
        float,
        None,
        "a flip angle in degrees",
    )
    set_default(mri, "matrix", where, [16, 16], list, lambda v: len(v) == 2, "two integers")
    set_default(mri, "n_slices", where, 3, int, None, "an integer")
    set_default(mri, "echo_spacing", where, 5e-4, float, None, "a spacing in s")
    set_default(mri, "slice_order", where, "interleaved", str, None, "a slice order")
    with instrument_errors(where, mri, {"echo_time": "te"}):
        build_scanner(mri, spec)
        bold_params(mri, spec)
    region_volume(
        len(spec["subject"]["regions"]),
        spec["subject"]["voxels_per_region"],
        mri["matrix"],
        mri["n_slices"],
        where,
    )


def region_volume(
    n_regions: int, voxels_per_region: int, matrix, n_slices: int, where: str = "devices.mri"
):
    """Label volume (Nx, Ny, n_slices): region r is a cube of voxels (label r+1)
    placed along x in the middle slices; 0 elsewhere."""
    side = round(voxels_per_region ** (1 / 3))
    need_x = n_regions * (side + 1) + 1
    if matrix[0] < need_x or matrix[1] < side + 2 or n_slices < side:
        raise SpecError(
            f"{where}.matrix = {list(matrix)} / n_slices = {n_slices} is too small: "
            f"expected at least [{need_x}, {side + 2}] and {side} slices for "
            f"{n_regions} regions of {voxels_per_region} voxels"
        )
    labels = np.zeros((matrix[0], matrix[1], n_slices), dtype=np.int16)
    y0 = (matrix[1] - side) // 2
    z0 = (n_slices - side) // 2
    x_start = (matrix[0] - need_x) // 2 + 1
    for r in range(n_regions):
        x0 = x_start + r * (side + 1)
        labels[x0 : x0 + side, y0 : y0 + side, z0 : z0 + side] = r + 1
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


@dataclasses.dataclass(frozen=True)
class MRIRecording(Recording):
    """What the MRI device acquired, and the hemodynamics behind it.

    Attributes
    ----------
    scanner : MRIScanner
        With the sequence it ran (TR, TE, matrix, echo spacing, slice order).
    acquisition : MRIAcquisition
        Magnitude and phase images (Nx, Ny, n_slices, n_volumes), affine, sidecar.
    labels : array (Nx, Ny, n_slices)
        Region label volume (0 background, r+1 region r).
    region_signal : array (n_volumes, n_regions)
        Mean magnitude of each region's voxels.
    scan_times : array (n_volumes,)
        Volume acquisition times, s.
    states : array (n_volumes, n_regions, 4)
        Balloon states [s, ln f, ln v, ln q] at the scan times.
    bold : array (n_volumes, n_regions)
        Noise-free fractional BOLD change.
    """

    scanner: MRIScanner
    acquisition: MRIAcquisition
    labels: np.ndarray
    region_signal: np.ndarray
    scan_times: np.ndarray
    states: np.ndarray
    bold: np.ndarray

    @property
    def sequence(self) -> GradientEchoEPI:
        return self.scanner.sequence

    @property
    def tr(self) -> float:
        return self.sequence.tr

    @property
    def te(self) -> float:
        return self.sequence.te

    @property
    def field_strength(self) -> float:
        return self.scanner.field_strength

    def truth_arrays(self, key: str) -> dict[str, np.ndarray]:
        return {
            "states": self.states,
            "bold": self.bold,
            "scan_times": self.scan_times,
            "labels": self.labels,
        }


def simulate(ctx: DeviceContext) -> MRIRecording:
    """Balloon-Windkessel BOLD of each region, acquired by the EPI scanner."""
    mri, spec, act = ctx.table, ctx.spec, ctx.activity
    res = simulate_bold(
        act.neural_input,
        spec["activity"]["dt"],
        balloon_preset(spec["activity"]["hemodynamics"]),
        bold_params(mri, spec),
        tr=mri["tr"],
    )
    bold = np.asarray(res.bold)  # (n_scans, n_regions)
    if not np.all(np.isfinite(bold)) or np.any(bold <= -1):
        raise SpecError(
            f"activity: the hemodynamic response of this neural activity is not "
            f"physical (BOLD change {np.nanmin(bold):.3g} to {np.nanmax(bold):.3g}): "
            f"expected a neural input the Balloon model follows (about 0.01-1 1/s)"
        )
    labels = region_volume(
        bold.shape[1],
        spec["subject"]["voxels_per_region"],
        mri["matrix"],
        mri["n_slices"],
        f"devices.{ctx.key}",
    )
    scanner = build_scanner(mri, spec, seed=ctx.new_seed())
    voxel_bold = np.zeros((bold.shape[0],) + labels.shape)
    for r in range(bold.shape[1]):
        voxel_bold[:, labels == r + 1] = bold[:, r][:, None]
    acq = scanner.acquire(
        tissue_maps(labels, mri["baseline_signal"]),
        voxel_bold,
        reference_echo_time=mri["te"],
        show_progress=ctx.show_progress,
    )
    region_signal = np.stack(
        [np.asarray(acq.magnitude)[labels == r + 1].mean(axis=0) for r in range(bold.shape[1])],
        axis=1,
    )
    return MRIRecording(
        scanner, acq, labels, region_signal, np.asarray(res.times), np.asarray(res.states), bold
    )


def write(rec: MRIRecording, ctx: DeviceContext, dataset: BIDSDataset):
    """4D NIfTI (or, without nibabel, region-mean TSV), BIDS sidecar and events."""
    sidecar = dict(
        rec.acquisition.sidecar,
        TaskName=dataset.task,
        TaskDescription=f"simulated experiment {ctx.spec['experiment']['name']!r} "
        f"(conditions: {', '.join(ctx.protocol.conditions)})",
        MRAcquisitionType="2D",
        ScanningSequence=["SE" if rec.sequence.spin_echo else "GR", "EP"],
        SequenceVariant="NONE",
        SequenceName="biosim " + ("SE-EPI" if rec.sequence.spin_echo else "GRE-EPI"),
        NonlinearGradientCorrection=False,
        SoftwareVersions=f"biosim {__version__}",
        GeneratedBy=[
            {
                "Name": "biosim",
                "Version": __version__,
                "Description": "Balloon-Windkessel BOLD -> virtual MRI scanner (EPI)",
            }
        ],
    )
    write_events(dataset.path("func", "events.tsv"), ctx.protocol.events())
    write_json(dataset.path("func", "events.json"), events_sidecar(ctx.protocol.conditions))
    try:
        from ...io.nifti import write_nifti

        write_nifti(
            dataset.path("func", "bold.nii.gz"),
            rec.acquisition.magnitude,
            rec.acquisition.affine,
            tr=rec.tr,
        )
    except ImportError:  # nibabel absent: per-region TSV
        regions = ctx.spec["subject"]["regions"]
        write_tsv(
            dataset.path("func", "bold.tsv"),
            {name: rec.region_signal[:, r] for r, name in enumerate(regions)},
            formats=dict.fromkeys(regions, ".6f"),
        )
    write_json(dataset.path("func", "bold.json"), sidecar)


register_device(
    "mri",
    validate=validate,
    simulate=simulate,
    write=write,
    order=10,
    description="MRI scanner: BOLD fMRI with GRE- or SE-EPI (4D NIfTI + sidecar)",
)
