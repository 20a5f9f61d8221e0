"""The MRI scanner device: whole-brain BOLD fMRI of the virtual subject.

The subject's MNI152 anatomy is imaged on an axial EPI slab (``matrix`` x
``n_slices`` voxels of ``subject.voxel_size`` mm around ``slab_center``, MNI mm)
with partial volume by tissue (:mod:`biosim.geometry.anatomy`), relaxation
times at the scanner's field strength (:mod:`biosim.physics.mri.tissue`) and
the B0 field of the head's susceptibility (air in the sinuses and ear canals;
:mod:`biosim.physics.mri.susceptibility`): EPI distortion along phase encode
and through-slice dropout at TE.  Each region's Balloon-Windkessel BOLD
changes R2* in the grey matter under its cortical patch, at each slice's
acquisition time.  The head moves as ``[subject.motion]`` says (image, field and
spin history follow).  ``[devices.<key>.noise]`` adds physiological noise
phase-locked to the subject's heartbeat and breathing, AR fluctuations,
spatial smoothness and drift (:mod:`biosim.instruments.mri_noise`), or noise
fitted to a user's own 4D NIfTI (``fit = "path"``); ``noise_std`` is the
thermal noise (Rician magnitude).

Output (BIDS): ``func/`` 4D NIfTI, sidecar, events and physiological
recordings; ``fmap/`` the field map (Hz) and its magnitude; ``anat/`` a
T1-weighted MPRAGE image of the same anatomy (``anatomical = true``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ... import __version__
from ..._core.errors import ParameterError, SpecError
from ...instruments.mri import (
    FieldMap,
    GradientEchoEPI,
    MRIAcquisition,
    MRIScanner,
    RegionBOLD,
    SpinEchoEPI,
    TissueMaps,
)
from ...io.bids import BIDSDataset, events_sidecar, write_events, write_json, write_tsv
from ...physics.hemodynamics import BOLDParams, simulate_bold
from ...physics.hemodynamics.balloon import preset as balloon_preset
from ..keys import check_keys, instrument_errors, require, set_default
from ..subject import subject_regions
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
    "slab_center",
    "susceptibility",
    "anatomical",
    "noise",
}
NOISE_KEYS = {"sfnr", "ar", "fwhm", "drift", "cardiac", "respiratory", "fit"}
#: Tissue compartments the EPI images (bone and air give no EPI signal).
COMPARTMENTS = ("gm", "wm", "csf", "soft")
#: Share of the soft tissues' (scalp) proton density an EPI sees: functional EPI saturates
#: fat, most of the scalp's signal; the rest is skin and muscle water.
SOFT_TISSUE_AFTER_FAT_SAT = 0.2
#: Resolution (mm) of the whole-head susceptibility grid of the field map (2 mm gives the
#: same brain field to a few Hz, at twice the cost).
FIELD_GRID_MM = 3.0


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


def acquisition_grid(mri: dict, spec: dict):
    """``(affine voxel -> MNI152 mm, shape)`` of the EPI slab."""
    from ...geometry.anatomy import epi_grid

    return epi_grid(
        tuple(mri["matrix"]),
        mri["n_slices"],
        spec["subject"]["voxel_size"],
        tuple(mri["slab_center"]),
    )


def noise_parameters(mri: dict, where: str):
    """The fluctuation model's :class:`~biosim.instruments.mri_noise.NoiseParameters`
    of ``[<where>.noise]`` (fitted to a NIfTI with ``fit``), or None."""
    from ...instruments.mri_noise import NoiseParameters

    noise = mri.get("noise")
    if noise is None:
        return None
    if "_fitted" in noise:
        return NoiseParameters(**noise["_fitted"])
    with instrument_errors(f"{where}.noise", noise, {"fwhm": "fwhm"}):
        return NoiseParameters(
            sfnr=noise["sfnr"],
            snr=1e9,  # thermal noise is noise_std
            ar=tuple(noise["ar"]),
            fwhm=noise["fwhm"] * 1e-3,
            drift=noise["drift"],
            cardiac=noise["cardiac"],
            respiratory=noise["respiratory"],
        )


def _validate_noise(mri: dict, spec: dict, where: str) -> None:
    if "noise" not in mri:
        return
    noise = require(mri, "noise", where, dict, None, "a table of noise parameters")
    w = f"{where}.noise"
    check_keys(noise, NOISE_KEYS | {"_fitted"}, w)
    if "fit" in noise:
        from pathlib import Path

        from ...instruments.mri_noise import fit_noise

        require(noise, "fit", w, str, None, "a path to a 4D NIfTI")
        path = Path(spec.get("_source_dir", ".")) / noise["fit"]
        if "_fitted" not in noise:
            try:
                fitted = fit_noise(str(path))
            except (ParameterError, ImportError, OSError) as err:
                raise SpecError(f"{w}.fit = {noise['fit']!r} is invalid: {err}") from None
            noise["_fitted"] = dataclasses.asdict(dataclasses.replace(fitted, snr=1e9))
            noise["_fitted"]["ar"] = list(fitted.ar)
            noise["_fitted_snr"] = float(fitted.snr)
        return
    nonneg = lambda v: v >= 0  # noqa: E731
    set_default(noise, "sfnr", w, 70.0, float, None, "a signal-to-fluctuation-noise ratio")
    set_default(noise, "ar", w, [0.5], list, None, "AR coefficients at the TR")
    if not all(isinstance(a, (int, float)) for a in noise["ar"]):
        raise SpecError(f"{w}.ar = {noise['ar']!r} is invalid: expected a list of numbers")
    set_default(noise, "fwhm", w, 5.0, float, nonneg, "a smoothness FWHM in mm")
    set_default(noise, "drift", w, 0.01, float, nonneg, "a drift std (fraction)")
    set_default(noise, "cardiac", w, 0.005, float, nonneg, "a fractional amplitude")
    set_default(noise, "respiratory", w, 0.005, float, nonneg, "a fractional amplitude")
    noise_parameters(mri, where)


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
    set_default(mri, "matrix", where, [64, 64], list, lambda v: len(v) == 2, "two integers")
    set_default(mri, "n_slices", where, 36, int, None, "an integer")
    set_default(mri, "echo_spacing", where, 5e-4, float, None, "a spacing in s")
    set_default(mri, "slice_order", where, "interleaved", str, None, "a slice order")
    set_default(
        mri,
        "slab_center",
        where,
        [0.0, -18.0, 12.0],
        list,
        lambda v: len(v) == 3 and all(isinstance(x, (int, float)) and np.isfinite(x) for x in v),
        "[x, y, z] in MNI152 mm",
    )
    set_default(mri, "susceptibility", where, True, bool, None, "true or false")
    set_default(mri, "anatomical", where, True, bool, None, "true or false")
    with instrument_errors(where, mri, {"echo_time": "te"}):
        build_scanner(mri, spec)
        bold_params(mri, spec)
    _validate_noise(mri, spec, where)
    _check_coverage(mri, spec, where)


def _check_coverage(mri: dict, spec: dict, where: str) -> None:
    """SpecError naming the first region whose centre lies outside the imaged slab."""
    affine, shape = acquisition_grid(mri, spec)
    inv = np.linalg.inv(affine)
    for region in subject_regions(spec):
        ijk = inv[:3, :3] @ region.center_mni + inv[:3, 3]
        if np.any(ijk < -0.5) or np.any(ijk > np.array(shape) - 0.5):
            lo = affine[:3, :3] @ np.full(3, -0.5) + affine[:3, 3]
            hi = affine[:3, :3] @ (np.array(shape) - 0.5) + affine[:3, 3]
            raise SpecError(
                f"{where}.slab_center = {mri['slab_center']} is invalid: region "
                f"{region.name!r} at MNI {np.round(region.center_mni, 1).tolist()} mm lies "
                f"outside the slab {np.round(lo, 1).tolist()} to {np.round(hi, 1).tolist()} mm: "
                "expected a slab (matrix, n_slices, subject.voxel_size) covering every region"
            )


def extrapolated_r0(b0: float) -> float:
    """Intravascular relaxation-rate slope r0 (1/s) linear in B0 beyond the
    tabulated 1.5-7 T range (Uludag et al. 2009 values 25/110/340)."""
    return float(np.polyval(np.polyfit([1.5, 3.0, 7.0], [25.0, 110.0, 340.0], 1), b0))


@functools.lru_cache(maxsize=2)
def _head_field_components(resolution_mm: float):
    """Field-shift tensor (6, X, Y, Z) ppm of the whole head on a ``resolution_mm`` grid,
    and that grid's affine (voxel -> MNI152 mm).  Independent of B0 and of the pose.

    The scanner's second-order shim over the brain
    (:func:`biosim.physics.mri.susceptibility.shim`)
    is subtracted from the rest-pose component F_zz; it moves with the head here
    (in a scanner it stays put: a second-order error in the motion).
    """
    from ...geometry.anatomy import mni_anatomy
    from ...physics.mri.susceptibility import field_shift_components, shim
    from ...physics.mri.tissue import susceptibility_map, tissue_properties

    atlas = mni_anatomy()
    step = resolution_mm / atlas.voxel_size_mm
    shape = tuple(int(n) for n in np.floor(np.array(atlas.shape) / step))
    affine = np.array(atlas.affine, float) @ np.diag([*step, 1.0])
    affine[:3, 3] = atlas.affine[:3, :3] @ ((step - 1) / 2) + atlas.affine[:3, 3]
    coarse = atlas.resample(affine, shape, supersample=int(round(step.max())))
    chi = susceptibility_map(coarse.fractions, tissue_properties(3.0))
    comps = np.array(field_shift_components(chi, resolution_mm * 1e-3), np.float32)
    comps[2] = shim(comps[2], coarse.brain_mask(), order=2, voxel_size=resolution_mm * 1e-3)
    return comps, affine


def field_map(affine, shape) -> FieldMap:
    """The head's susceptibility field (relative, ppm) sampled on a grid (MNI152 frame)."""
    from scipy.ndimage import map_coordinates

    comps, field_affine = _head_field_components(FIELD_GRID_MM)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    to_field = np.linalg.inv(field_affine) @ affine
    pts = idx @ to_field[:3, :3].T + to_field[:3, 3]
    out = np.stack(
        [map_coordinates(c, pts.reshape(-1, 3).T, order=1, mode="nearest") for c in comps]
    )
    return FieldMap(out.reshape((6,) + tuple(shape)))


@dataclasses.dataclass(frozen=True)
class SubjectImage:
    """The anatomy on the EPI grid and what the scanner needs of it.

    Attributes
    ----------
    affine : array (4, 4)
        Voxel -> MNI152 mm.
    fractions : array (6, X, Y, Z)
        Tissue volume fractions (:data:`biosim.geometry.anatomy.TISSUES`).
    tissue : TissueMaps
        Compartments :data:`COMPARTMENTS` (m0 = baseline x proton density x fraction).
    field : FieldMap or None
    weights : scipy.sparse matrix (n_regions, n_voxels)
        Grey-matter volume fraction of each voxel under each region's patch.
    """

    affine: np.ndarray
    fractions: np.ndarray
    tissue: TissueMaps
    field: FieldMap | None
    weights: object

    @property
    def shape(self) -> tuple:
        return self.fractions.shape[1:]

    def labels(self) -> np.ndarray:
        """Region label volume: r+1 where region r holds most of the voxel's grey matter."""
        w = self.weights.tocsc()
        best = np.asarray(w.argmax(axis=0)).ravel()
        has = np.asarray(w.max(axis=0).todense()).ravel() > 0
        return np.where(has, best + 1, 0).astype(np.int16).reshape(self.shape)


def subject_image(mri: dict, spec: dict) -> SubjectImage:
    """The virtual subject as the scanner sees it at rest."""
    from ...geometry.anatomy import TISSUES, mni_anatomy
    from ...geometry.regions import region_voxel_weights
    from ...physics.mri.tissue import tissue_properties

    affine, shape = acquisition_grid(mri, spec)
    anat = mni_anatomy().resample(affine, shape)
    props = tissue_properties(mri["field_strength"])
    idx = [TISSUES.index(t) for t in COMPARTMENTS]
    frac = np.asarray(anat.fractions, float)[idx]
    ones = np.ones((len(idx),) + tuple(shape))
    density = props.proton_density[idx] * np.where(
        np.array(COMPARTMENTS) == "soft", SOFT_TISSUE_AFTER_FAT_SAT, 1.0
    )
    tissue = TissueMaps(
        m0=mri["baseline_signal"] * density[:, None, None, None] * frac,
        t1=props.t1[idx, None, None, None] * ones,
        t2=props.t2[idx, None, None, None] * ones,
        t2star=props.t2star[idx, None, None, None] * ones,
        off_resonance=np.zeros(shape),
    )
    field = field_map(affine, shape) if mri["susceptibility"] else None
    weights = region_voxel_weights(subject_regions(spec), anat)
    return SubjectImage(affine, np.asarray(anat.fractions), tissue, field, weights)


@dataclasses.dataclass(frozen=True)
class MRIRecording(Recording):
    """What the MRI device acquired, and the hemodynamics behind it.

    Attributes
    ----------
    scanner : MRIScanner
        With the sequence it ran (TR, TE, matrix, echo spacing, slice order).
    acquisition : MRIAcquisition
        Magnitude images (X, Y, n_slices, n_volumes), affine (MNI152 mm), sidecar.
    image : SubjectImage
        The anatomy, tissue maps, field and region weights on the EPI grid.
    labels : array (X, Y, n_slices)
        Region label volume (0: no region's grey matter; r+1: region r).
    region_signal : array (n_volumes, n_regions)
        Grey-matter-weighted mean magnitude of each region's voxels.
    scan_times : array (n_volumes,)
        Volume acquisition start times, s.
    states : array (n_volumes, n_regions, 4)
        Balloon states [s, ln f, ln v, ln q] at the scan times.
    bold : array (n_volumes, n_regions)
        Noise-free fractional BOLD change at the scan times.
    motion : array (n_volumes, 6) or None
        Head pose at each volume's mid-time (m, rad; SPM's parameter order).
    field_hz : array (X, Y, n_slices) or None
        Off-resonance at rest, Hz.
    noise : NoiseParameters or None
    r_peaks : array or None
        The subject's cardiac R peaks (s), which the cardiac noise and pulse recording follow.
    """

    scanner: MRIScanner
    acquisition: MRIAcquisition
    image: SubjectImage
    labels: np.ndarray
    region_signal: np.ndarray
    scan_times: np.ndarray
    states: np.ndarray
    bold: np.ndarray
    motion: np.ndarray | None = None
    field_hz: np.ndarray | None = None
    noise: object = None
    r_peaks: np.ndarray | None = None

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
        out = {
            "states": self.states,
            "bold": self.bold,
            "scan_times": self.scan_times,
            "labels": self.labels,
            f"{key}_tissue_fractions": self.image.fractions.astype(np.float32),
            f"{key}_affine": self.acquisition.affine,
        }
        if self.motion is not None:
            out[f"{key}_motion"] = self.motion
        if self.field_hz is not None:
            out[f"{key}_field_hz"] = self.field_hz.astype(np.float32)
        if self.r_peaks is not None:
            out["r_peaks"] = self.r_peaks
        return out


def _hemodynamics(mri: dict, spec: dict, neural_input):
    """BOLD on the microtime grid (slices sample it at their own times)."""
    dt = spec["activity"]["dt"]
    res = simulate_bold(
        neural_input,
        dt,
        balloon_preset(spec["activity"]["hemodynamics"]),
        bold_params(mri, spec),
        tr=None,
    )
    bold = np.asarray(res.bold)
    if not np.all(np.isfinite(bold)) or np.any(bold <= -1):
        raise SpecError(
            f"activity: the hemodynamic response of this neural activity is not "
            f"physical (BOLD change {np.nanmin(bold):.3g} to {np.nanmax(bold):.3g}): "
            f"expected a neural input the Balloon model follows (about 0.01-1 1/s)"
        )
    return np.asarray(res.times), np.asarray(res.states), bold


def _fluctuations(mri, ctx, image: SubjectImage, params, n_vol):
    from ...geometry.anatomy import TISSUES
    from ...instruments.mri_noise import FluctuationModel, NoiseTissue

    if params is None:
        return None
    f = image.fractions
    brain = np.clip(f[TISSUES.index("gm")] + f[TISSUES.index("wm")], 0, 1)
    phys = ctx.simulation.physiology
    vox = ctx.spec["subject"]["voxel_size"] * 1e-3
    return FluctuationModel(
        params,
        image.shape,
        np.full(3, vox),
        n_vol * mri["tr"],
        tissue=NoiseTissue(brain, np.clip(f[TISSUES.index("csf")], 0, 1)),
        cardiac_peaks=phys.r_peaks,
        respiration=phys.respiration,
        seed=ctx.new_seed(),
    )


def simulate(ctx: DeviceContext) -> MRIRecording:
    """Balloon-Windkessel BOLD of each region, acquired from the subject's anatomy."""
    mri, spec, act = ctx.table, ctx.spec, ctx.activity
    times, states, bold = _hemodynamics(mri, spec, act.neural_input)
    tr, duration = mri["tr"], spec["experiment"]["duration"]
    n_vol = int(round(duration / tr))
    stride = int(round(tr / spec["activity"]["dt"]))
    scan_idx = np.arange(n_vol) * stride
    image = subject_image(mri, spec)
    if times[-1] < duration:  # the last slices lie after the last microtime sample
        times = np.r_[times, duration]
        bold = np.vstack([bold, bold[-1]])
    gm = np.asarray(image.fractions[0], float).ravel()
    region_bold = RegionBOLD(times, bold, image.weights, 0, gm)
    params = noise_parameters(mri, f"devices.{ctx.key}")
    scanner = build_scanner(mri, spec, seed=ctx.new_seed())
    if params is not None and "_fitted_snr" in mri["noise"]:
        scanner = dataclasses.replace(
            scanner, noise_std=_thermal_std(scanner, image, mri["noise"]["_fitted_snr"])
        )
    motion = ctx.simulation.motion
    acq = scanner.acquire(
        image.tissue,
        reference_echo_time=mri["te"],
        n_volumes=n_vol,
        show_progress=ctx.show_progress,
        region_bold=region_bold,
        motion=motion,
        field=image.field,
        fluctuation=_fluctuations(mri, ctx, image, params, n_vol),
        affine=image.affine,
    )
    w = image.weights.tocsr()
    norm = np.asarray(w.sum(axis=1)).ravel()
    mag = np.asarray(acq.magnitude).reshape(-1, n_vol)
    region_signal = (w @ mag).T / np.where(norm > 0, norm, 1.0)
    scan_times = np.arange(n_vol) * tr
    pose = None
    if motion is not None:
        t, r = motion.at(scan_times + tr / 2)
        pose = np.hstack([t, r])
    field_hz = None
    if image.field is not None:
        from ..._core.units import GAMMA_BAR_PROTON

        field_hz = GAMMA_BAR_PROTON * mri["field_strength"] * 1e-6 * image.field.shift([0, 0, 1])
    return MRIRecording(
        scanner,
        acq,
        image,
        image.labels(),
        np.asarray(region_signal),
        scan_times,
        states[scan_idx],
        bold[scan_idx],
        pose,
        field_hz,
        params,
        ctx.simulation.physiology.r_peaks,
    )


def _thermal_std(scanner: MRIScanner, image: SubjectImage, snr: float) -> float:
    """Thermal noise std giving ``snr`` for the mean brain signal at TE."""
    seq = scanner.sequence
    m0, t1, t2, t2s = image.tissue.compartments()
    signal = (np.asarray(seq.steady_state(m0, t1, t2, t2s)) * np.exp(-seq.te / t2s)).sum(0)
    brain = image.fractions[0] + image.fractions[1] > 0.5
    return float(signal[brain].mean() / snr)


def write(rec: MRIRecording, ctx: DeviceContext, dataset: BIDSDataset):
    """4D NIfTI, BIDS sidecar, events, physiological recordings; field map; T1w image."""
    from ...io.nifti import write_nifti

    bold_path = dataset.path("func", "bold.nii.gz")
    field_id = f"b0map{ctx.key.replace('_', '')}"
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
                "Description": "Balloon-Windkessel BOLD of the MNI152 virtual subject -> "
                "virtual MRI scanner (EPI)",
            }
        ],
    )
    if rec.field_hz is not None:
        sidecar["B0FieldSource"] = field_id
    write_events(dataset.path("func", "events.tsv"), ctx.protocol.events())
    write_json(dataset.path("func", "events.json"), events_sidecar(ctx.protocol.conditions))
    _write_physio(rec, ctx, dataset)
    try:
        write_nifti(bold_path, rec.acquisition.magnitude, rec.acquisition.affine, tr=rec.tr)
    except ImportError:  # nibabel absent: region-mean signals only
        sidecar.pop("B0FieldSource", None)
        write_json(dataset.path("func", "bold.json"), sidecar)
        _write_region_tsv(rec, ctx, dataset)
        return
    write_json(dataset.path("func", "bold.json"), sidecar)
    if rec.field_hz is not None:
        _write_fieldmap(rec, ctx, dataset, bold_path, field_id)
    if ctx.table["anatomical"]:
        _write_t1w(ctx, dataset)


#: Sampling rate of the physiological recordings written beside the BOLD series, Hz.
PHYSIO_RATE = 100.0


def _write_physio(rec: MRIRecording, ctx: DeviceContext, dataset: BIDSDataset) -> None:
    """Pulse oximeter and respiratory belt (BIDS ``physio``), plus the volume trigger."""
    import gzip

    from ...instruments.mri_noise import cardiac_phase, respiratory_phase

    phys = ctx.simulation.physiology
    duration = ctx.spec["experiment"]["duration"]
    t = np.arange(int(round(duration * PHYSIO_RATE))) / PHYSIO_RATE
    pulse = _pulse_wave(cardiac_phase(phys.r_peaks, t))
    depth = np.interp(t, phys.respiration.times, phys.respiration.amplitude)
    resp = depth * np.cos(respiratory_phase(phys.respiration, t))
    trigger = np.zeros(t.size, int)
    trigger[np.minimum(np.round(rec.scan_times * PHYSIO_RATE).astype(int), t.size - 1)] = 1
    path = dataset.path("func", "physio.tsv.gz")
    lines = "".join(f"{c:.4f}\t{r:.4f}\t{g:d}\n" for c, r, g in zip(pulse, resp, trigger))
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fh.write(lines)
    write_json(
        dataset.path("func", "physio.json"),
        {
            "SamplingFrequency": PHYSIO_RATE,
            "StartTime": 0.0,
            "Columns": ["cardiac", "respiratory", "trigger"],
            "cardiac": {
                "Description": "pulse oximeter waveform (peak after each R wave)",
                "Units": "a.u.",
            },
            "respiratory": {"Description": "respiratory belt (chest expansion)", "Units": "a.u."},
            "trigger": {"Description": "scanner volume trigger (1 at each volume start)"},
        },
    )


def _pulse_wave(phase):
    """A pulse-oximeter-like waveform of the cardiac phase (rad): a systolic peak about
    a fifth of a cycle after the R wave and a dicrotic notch."""
    x = np.asarray(phase) / (2 * np.pi)
    return np.exp(-(((x - 0.2) / 0.08) ** 2)) + 0.35 * np.exp(-(((x - 0.45) / 0.1) ** 2))


def _write_fieldmap(rec, ctx, dataset: BIDSDataset, bold_path, field_id: str) -> None:
    """BIDS ``fmap/`` direct field mapping: field map (Hz) and its magnitude image."""
    from ...io.nifti import write_nifti

    fmap = dataset.subject_dir / "fmap"
    fmap.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{dataset.subject}"
    aff = rec.acquisition.affine
    head = rec.image.fractions.sum(axis=0) > 0.05  # no phase, no field map outside the head
    write_nifti(fmap / f"{stem}_fieldmap.nii.gz", (rec.field_hz * head).astype(np.float32), aff)
    m0, t1, t2, t2s = rec.image.tissue.compartments()
    magnitude = (m0 * np.exp(-rec.te / t2s)).sum(0).astype(np.float32)
    write_nifti(fmap / f"{stem}_magnitude.nii.gz", magnitude, aff)
    intended = f"bids::{bold_path.relative_to(dataset.root).as_posix()}"
    write_json(
        fmap / f"{stem}_fieldmap.json",
        {
            "Units": "Hz",
            "B0FieldIdentifier": field_id,
            "IntendedFor": [intended],
            "MagneticFieldStrength": float(rec.field_strength),
            "Description": "B0 off-resonance of the head's susceptibility (Fourier dipole "
            "kernel), head at rest",
        },
    )
    write_json(fmap / f"{stem}_magnitude.json", {"B0FieldIdentifier": field_id})


#: The anatomical sequence: a 3 T ADNI-like MPRAGE (times in s, flip angle in degrees).
MPRAGE = {
    "InversionTime": 0.9,
    "RepetitionTime": 2.3,
    "FlipAngle": 9.0,
    "EchoSpacing": 7.1e-3,
    "EchoTrainLength": 176,
    "EchoTime": 2.98e-3,
}


def _write_t1w(ctx: DeviceContext, dataset: BIDSDataset) -> None:
    """MPRAGE T1-weighted image of the anatomy (1 mm, MNI152 frame) in ``anat/``."""
    from ...geometry.anatomy import mni_anatomy
    from ...io.nifti import write_nifti
    from ...physics.mri.signal_equations import mprage
    from ...physics.mri.tissue import tissue_properties

    b0 = ctx.table["field_strength"]
    atlas = mni_anatomy()
    props = tissue_properties(b0)
    seq = MPRAGE
    signal = mprage(
        props.proton_density,
        props.t1,
        props.t2star,
        inversion_time=seq["InversionTime"],
        echo_spacing=seq["EchoSpacing"],
        flip_angle=np.deg2rad(seq["FlipAngle"]),
        n_echoes=seq["EchoTrainLength"],
        repetition_time=seq["RepetitionTime"],
        echo_time=seq["EchoTime"],
    )
    image = np.tensordot(np.abs(np.asarray(signal, np.float32)), atlas.fractions, axes=1)
    image *= 1000.0 / max(float(image.max()), 1e-12)
    anat = dataset.subject_dir / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    write_nifti(anat / f"sub-{dataset.subject}_T1w.nii.gz", image, atlas.affine)
    write_json(
        anat / f"sub-{dataset.subject}_T1w.json",
        {
            "MagneticFieldStrength": float(b0),
            "PulseSequenceType": "MPRAGE",
            "MRAcquisitionType": "3D",
            **MPRAGE,
            "Manufacturer": "biosim",
            "SoftwareVersions": f"biosim {__version__}",
        },
    )


def _write_region_tsv(rec: MRIRecording, ctx: DeviceContext, dataset: BIDSDataset) -> None:
    """Region-mean signals as a TSV (without nibabel)."""
    regions = ctx.spec["subject"]["regions"]
    write_tsv(
        dataset.path("func", "bold.tsv"),
        {name: rec.region_signal[:, r] for r, name in enumerate(regions)},
        formats=dict.fromkeys(regions, ".6f"),
    )


register_device(
    "mri",
    validate=validate,
    simulate=simulate,
    write=write,
    order=10,
    description="MRI scanner: whole-brain BOLD fMRI of the MNI152 subject with GRE- or "
    "SE-EPI (4D NIfTI, field map, T1w, physio)",
)
