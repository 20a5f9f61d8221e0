"""The focused-ultrasound device: transducer -> pressure -> heat -> PRFS thermometry.

A single-element focused bowl (``frequency``, ``radius_of_curvature``, ``aperture``,
surface pressure ``source_pressure``) is placed on the template head with its geometric
focus on ``target`` (a region of ``subject.regions`` or ``[x, y, z]`` MNI152 mm) and its
axis along ``direction`` (default: from the target outwards, away from the head's
centre, so that the bowl faces the nearest scalp); the bowl must sit outside the head
(water couples it).  On a grid aligned with the beam (``grid_spacing`` m), the MNI152
atlas gives the acoustic media (:func:`~biosim.physics.acoustics.media.template_head_media`:
ITRUSST skin / cortical / trabecular / brain values) and the IT'IS thermal properties;
the continuous-wave field (:func:`~biosim.physics.acoustics.simulate_cw`, float32, Courant
number ``cfl``, PML of ``pml_size`` points, ``margin`` m of tissue beyond the focus) heats
the tissue by ``alpha p^2 / (rho c)`` while the transducer emits: in the protocol blocks of
``condition``, with optional pulses (``pulse_duration``, ``pulse_repetition_frequency``)
and bursts (``burst_duration``, ``burst_interval``).  Pennes' bioheat equation
(:func:`~biosim.physics.thermal.solve_bioheat`) runs over the whole experiment; the ITRUSST
safety indices (MI, peak rise and CEM43 per tissue) are computed.

``[devices.<key>.thermometry]`` images the temperature on an axial slab around the target
(``matrix``, ``n_slices``, ``voxel_size`` mm) every ``frame_interval`` s through the PRFS
model (:class:`~biosim.instruments.thermometry.PRFSThermometry`: ``field_strength``,
``te``, ``tr``, ``flip_angle``, ``snr``, ``drift`` Hz/s, ``drift_gradient`` Hz/(m s),
``motion`` mm) and reconstructs it with drift correction in brain tissue farther than
``reference_distance`` mm from the target.

``neuromodulation = true`` adds ``modulation_gain`` (1/s) x the emitting fraction of time
to the target region's activity (:func:`biosim.experiment.activity.ultrasound_drive`); the
target must then be a region.

Output: ``func/..._acq-prfs_part-mag_bold.nii.gz`` and ``_part-phase_bold.nii.gz`` (the
thermometry series, BIDS complex-data entities) with sidecars and events;
``derivatives/biosim-ultrasound/``: the pressure amplitude, peak temperature rise, CEM43
dose and tissue labels on the acoustic grid, the true and reconstructed temperature
series on the thermometry grid (NIfTI), the safety indices (TSV) and the thermometry error
(JSON).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ... import __version__
from ..._core.errors import ParameterError, SpecError
from ...instruments.thermometry import PRFSThermometry, ThermometryError, thermometry_error
from ...io.bids import (
    BIDSDataset,
    derivative_dataset,
    events_sidecar,
    write_events,
    write_json,
    write_tsv,
)
from ..activity import ultrasound_schedules
from ..keys import check_keys, instrument_errors, require, set_default
from ..protocol import Protocol
from . import DeviceContext, Recording, acq_label, register_device

DEFAULTS = dict(
    frequency=250e3,
    radius_of_curvature=0.04,
    aperture=0.036,
    source_pressure=50e3,
    grid_spacing=1.2e-3,
    pml_size=6,
    margin=0.015,
    cfl=0.2,
    condition="sonication",
    thermal_dt=1.0,
    neuromodulation=False,
    modulation_gain=0.05,
)
OPTIONAL = {
    "direction",
    "pulse_duration",
    "pulse_repetition_frequency",
    "burst_duration",
    "burst_interval",
}
KEYS = set(DEFAULTS) | OPTIONAL | {"type", "target", "thermometry"}
THERMOMETRY_DEFAULTS = dict(
    field_strength=3.0,
    te=0.012,
    tr=0.03,
    flip_angle=20.0,
    frame_interval=1.0,
    snr=40.0,
    drift=0.0,
    drift_gradient=0.0,
    motion=0.0,
    matrix=[32, 32],
    n_slices=3,
    voxel_size=2.0,
    reference_distance=15.0,
)
#: Smallest points per wavelength in water the device accepts (the solver's own check
#: applies to the lowest sound speed of the actual grid).
MIN_PPW = 3.0
#: Sound speed of the coupling water, m/s.
C_WATER = 1500.0


def build_thermometry(th: dict, seed: int = 0) -> PRFSThermometry:
    """The thermometry protocol of a validated ``thermometry`` table."""
    return PRFSThermometry(
        field_strength=th["field_strength"],
        te=th["te"],
        tr=th["tr"],
        flip_angle=th["flip_angle"],
        frame_interval=th["frame_interval"],
        snr=th["snr"],
        drift=th["drift"],
        drift_gradient=th["drift_gradient"],
        motion=th["motion"] * 1e-3,
        seed=seed,
    )


def _validate_thermometry(us: dict, where: str) -> None:
    th = set_default(us, "thermometry", where, {}, dict)
    w = f"{where}.thermometry"
    check_keys(th, THERMOMETRY_DEFAULTS, w)
    for k, v in THERMOMETRY_DEFAULTS.items():
        th.setdefault(k, v)
    for k in ("field_strength", "te", "tr", "flip_angle", "frame_interval", "snr"):
        require(th, k, w, float)
    for k in ("drift", "drift_gradient", "motion"):
        require(th, k, w, float)
    require(th, "voxel_size", w, float, lambda v: v > 0, "a positive voxel size in mm")
    require(th, "reference_distance", w, float, lambda v: v > 0, "a positive distance in mm")
    require(
        th,
        "matrix",
        w,
        list,
        lambda v: len(v) == 2 and all(isinstance(n, int) and n >= 4 for n in v),
        "two integers >= 4",
    )
    require(th, "n_slices", w, int, lambda v: v >= 1, "a positive number of slices")
    with instrument_errors(w, th):
        build_thermometry(th)


def validate(us: dict, spec: dict, where: str):
    """Defaults, types and geometry; the schedules and the thermometry check their limits."""
    check_keys(us, KEYS, where)
    for k, v in DEFAULTS.items():
        us.setdefault(k, v)
    positive = lambda v: v > 0  # noqa: E731
    for k in ("frequency", "radius_of_curvature", "aperture", "grid_spacing", "thermal_dt"):
        require(us, k, where, float, positive, "a positive value (SI units)")
    require(us, "source_pressure", where, float, positive, "a positive surface pressure, Pa")
    require(us, "margin", where, float, lambda v: v >= 0, "a non-negative length, m")
    require(us, "pml_size", where, int, lambda v: 2 <= v <= 40, "2-40 grid points")
    require(us, "cfl", where, float, lambda v: 0 < v <= 1, "a Courant number in (0, 1]")
    require(us, "modulation_gain", where, float)
    require(us, "neuromodulation", where, bool)
    if us["aperture"] > 2 * us["radius_of_curvature"]:
        raise SpecError(
            f"{where}.aperture = {us['aperture']!r} is invalid: expected at most twice the "
            f"radius_of_curvature ({2 * us['radius_of_curvature']:g} m)"
        )
    ppw = C_WATER / (us["frequency"] * us["grid_spacing"])
    if ppw < MIN_PPW:
        raise SpecError(
            f"{where}.grid_spacing = {us['grid_spacing']!r} is invalid: expected at most "
            f"{C_WATER / (us['frequency'] * MIN_PPW):.4g} m ({MIN_PPW:g} points per "
            f"wavelength in water at {us['frequency']:g} Hz; got {ppw:.3g})"
        )
    regions = spec["subject"]["regions"]
    target = us.get("target")
    if isinstance(target, str):
        if target not in regions:
            raise SpecError(
                f"{where}.target = {target!r} is invalid: expected a region of "
                f"subject.regions or [x, y, z] in MNI152 mm"
            )
    elif not (
        isinstance(target, list)
        and len(target) == 3
        and all(isinstance(x, (int, float)) and np.isfinite(x) for x in target)
    ):
        raise SpecError(
            f"{where}.target = {target!r} is invalid: expected a region of subject.regions "
            "or [x, y, z] in MNI152 mm"
        )
    if us["neuromodulation"] and not isinstance(target, str):
        raise SpecError(
            f"{where}.neuromodulation = true needs a region target: expected {where}.target "
            "to name a region of subject.regions"
        )
    if "direction" in us:
        require(
            us,
            "direction",
            where,
            list,
            lambda v: (
                len(v) == 3
                and all(isinstance(x, (int, float)) for x in v)
                and np.linalg.norm(v) > 0
            ),
            "a non-zero [dx, dy, dz] beam direction (transducer -> target, MNI152)",
        )
    require(us, "condition", where, str, lambda v: v.isidentifier(), "a condition name")
    conditions = {b["condition"] for b in spec["protocol"]["blocks"]}
    if us["condition"] not in conditions:
        raise SpecError(
            f"{where}.condition = {us['condition']!r} is invalid: expected a condition of "
            f"the protocol ({sorted(conditions)}): its blocks are the sonications"
        )
    for k in OPTIONAL - {"direction"}:
        if k in us:
            require(us, k, where, float, positive, "a positive value (s or Hz)")
    with instrument_errors(where, us):
        ultrasound_schedules(us, Protocol.from_spec(spec))
    _validate_thermometry(us, where)
    th = us["thermometry"]
    duration = float(spec["experiment"]["duration"])
    if th["frame_interval"] > duration:
        raise SpecError(
            f"{where}.thermometry.frame_interval = {th['frame_interval']!r} is invalid: "
            f"expected at most experiment.duration = {duration:g} s"
        )
    steps = th["frame_interval"] / us["thermal_dt"]
    if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
        raise SpecError(
            f"{where}.thermal_dt = {us['thermal_dt']!r} is invalid: expected a step dividing "
            f"thermometry.frame_interval = {th['frame_interval']:g} s"
        )


# ----------------------------------------------------------------------------- geometry
@functools.cache
def _head_centre_mm() -> np.ndarray:
    """Centroid of the template head (MNI152 mm)."""
    from ...geometry.anatomy import mni_anatomy

    anat = mni_anatomy()
    idx = np.argwhere(anat.head_mask())
    c = idx.mean(0)
    return (np.asarray(anat.affine) @ np.append(c, 1.0))[:3]


def _inside_head(points_mm) -> np.ndarray:
    """Whether each MNI152 point lies in the template head (nearest atlas voxel)."""
    from ...geometry.anatomy import mni_anatomy

    anat = mni_anatomy()
    ijk = np.rint(
        (np.linalg.inv(anat.affine) @ np.c_[points_mm, np.ones(len(points_mm))].T)[:3].T
    ).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(anat.shape)), axis=1)
    inside = np.zeros(len(ijk), bool)
    f = anat.fractions
    inside[ok] = f[:, ijk[ok, 0], ijk[ok, 1], ijk[ok, 2]].sum(0) > 0.5
    return inside


def target_mm(us: dict, spec: dict) -> np.ndarray:
    """The target, MNI152 mm (a region's defining coordinate, or as given)."""
    if isinstance(us["target"], str):
        from ..subject import subject_regions

        names = spec["subject"]["regions"]
        return np.asarray(subject_regions(spec)[names.index(us["target"])].center_mni, float)
    return np.asarray(us["target"], float)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The transducer on the head and the beam-aligned grid.

    Attributes
    ----------
    target, apex : (3,) MNI152 mm
    direction : (3,) unit beam axis (transducer -> target)
    affine : (4, 4) voxel -> MNI152 mm of the acoustic grid
    shape : 3 ints
    origin : (3,) m, local (beam-frame) position of voxel 0 (target at 0)
    """

    target: np.ndarray
    apex: np.ndarray
    direction: np.ndarray
    affine: np.ndarray
    shape: tuple
    origin: tuple


def grid_shape(us: dict) -> tuple[tuple, tuple]:
    """Shape of the beam-aligned grid and the local position (m) of its voxel 0: the
    bowl's aperture and the target plus ``margin``, with the PML and 5 points around."""
    roc, ap, h = us["radius_of_curvature"], us["aperture"], us["grid_spacing"]
    pad = (us["pml_size"] + 5) * h
    n_lat = int(np.ceil((ap + 2 * pad) / h)) + 1
    z0 = -(roc + pad)
    n_ax = int(np.ceil((us["margin"] + us["pml_size"] * h - z0) / h)) + 1
    return (n_lat, n_lat, n_ax), (-(n_lat - 1) / 2 * h, -(n_lat - 1) / 2 * h, z0)


def place_transducer(us: dict, spec: dict, where: str = "devices.ultrasound") -> Placement:
    """Place the bowl (focus on the target, outside the head) and build its grid."""
    tgt = target_mm(us, spec)
    if "direction" in us:
        u = np.asarray(us["direction"], float)
    else:
        u = tgt - _head_centre_mm()
        u = -u if np.linalg.norm(u) > 0 else np.array([0.0, 0.0, -1.0])
    u = u / np.linalg.norm(u)
    roc, ap, h = us["radius_of_curvature"], us["aperture"], us["grid_spacing"]
    helper = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    # bowl surface: rim and cap sampled in the beam frame (mm)
    th_max = np.arcsin(min(1.0, ap / (2 * roc)))
    th = np.linspace(0, th_max, 6)
    ph = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    tt, pp = np.meshgrid(th, ph)
    local = np.stack(
        [roc * np.sin(tt) * np.cos(pp), roc * np.sin(tt) * np.sin(pp), -roc * np.cos(tt)], -1
    ).reshape(-1, 3)
    surface_mm = tgt + 1e3 * (local @ np.stack([e1, e2, u]))
    if _inside_head(surface_mm).any():
        raise SpecError(
            f"{where}.radius_of_curvature = {roc!r} is invalid: the bowl would sit inside "
            f"the head (target {np.round(tgt, 1).tolist()} mm, beam "
            f"{np.round(u, 3).tolist()}): expected a longer focal distance or another "
            f"direction"
        )
    (n_lat, _, n_ax), origin = grid_shape(us)
    rot = np.stack([e1, e2, u], axis=1)  # columns: grid axes in MNI
    affine = np.eye(4)
    affine[:3, :3] = rot * h * 1e3
    affine[:3, 3] = tgt + 1e3 * (rot @ np.asarray(origin))
    apex = tgt - 1e3 * roc * u
    return Placement(tgt, apex, u, affine, (n_lat, n_lat, n_ax), origin)


# ----------------------------------------------------------------------------- recording
@dataclasses.dataclass(frozen=True)
class UltrasoundRecording(Recording):
    """What the ultrasound device simulated and recorded.

    Attributes
    ----------
    placement : Placement
    labels, pressure, max_delta_t, cem43 : arrays on the acoustic grid
        Tissue labels (:data:`~biosim.physics.acoustics.media.TEMPLATE_LABELS`), CW pressure
        amplitude (Pa), peak temperature rise (K), thermal dose (CEM43 min).
    thermometry_affine : (4, 4)
    thermometry_truth, thermometry_reconstructed : (n, X, Y, Z) K
    series : ThermometrySeries
    scan : PRFSThermometry
    thermometry_brain : (X, Y, Z) bool
        Brain (grey + white matter + CSF > 0.5) on the thermometry grid.
    error : ThermometryError
        Inside ``thermometry_brain``.
    safety : SafetyIndices
    focus_mm : (3,) MNI152 mm of the peak pressure in the brain (and CSF).
    """

    placement: Placement
    labels: np.ndarray
    pressure: np.ndarray
    max_delta_t: np.ndarray
    cem43: np.ndarray
    thermometry_affine: np.ndarray
    thermometry_truth: np.ndarray
    thermometry_reconstructed: np.ndarray
    series: object
    scan: PRFSThermometry
    thermometry_brain: np.ndarray
    error: ThermometryError
    safety: object
    focus_mm: np.ndarray

    def truth_arrays(self, key: str) -> dict[str, np.ndarray]:
        p = self.placement
        return {
            f"{key}_target_mm": p.target,
            f"{key}_transducer_mm": p.apex,
            f"{key}_direction": p.direction,
            f"{key}_focus_mm": self.focus_mm,
            f"{key}_peak_pressure": np.asarray(self.safety.peak_pressure),
            f"{key}_acoustic_affine": p.affine,
            f"{key}_thermometry_affine": self.thermometry_affine,
            f"{key}_thermometry_times": self.series.times,
            f"{key}_thermometry_truth": self.thermometry_truth.astype(np.float32),
            f"{key}_thermometry_reconstructed": self.thermometry_reconstructed.astype(np.float32),
            f"{key}_max_delta_t": np.asarray(self.safety.max_delta_t),
            f"{key}_max_cem43": np.asarray(self.safety.max_cem43),
        }


def thermometry_grid(th: dict, centre_mm) -> tuple[np.ndarray, tuple]:
    """Axial thermometry slab centred on ``centre_mm``: (affine, shape)."""
    vs = th["voxel_size"]
    shape = (th["matrix"][0], th["matrix"][1], th["n_slices"])
    affine = np.diag([vs, vs, vs, 1.0])
    affine[:3, 3] = np.asarray(centre_mm) - vs * (np.asarray(shape) - 1) / 2
    return affine, shape


def resample_frames(frames, src_affine, dst_affine, dst_shape):
    """Trilinear resampling of (n, *src) frames onto another grid (zero outside)."""
    from scipy.ndimage import map_coordinates

    idx = np.stack(np.meshgrid(*[np.arange(n) for n in dst_shape], indexing="ij"), 0)
    pts = dst_affine @ np.concatenate([idx.reshape(3, -1), np.ones((1, idx[0].size))])
    src = (np.linalg.inv(src_affine) @ pts)[:3]
    return np.stack(
        [
            map_coordinates(np.asarray(f, float), src, order=1, cval=0.0).reshape(dst_shape)
            for f in frames
        ]
    )


def thermometry_magnitude(scan: PRFSThermometry, affine, shape):
    """Spoiled-GRE magnitude of the template head on the thermometry grid, and its
    fractions."""
    from ...geometry.anatomy import TISSUES, mni_anatomy
    from ...physics.mri.tissue import tissue_properties

    anat = mni_anatomy().resample(affine, shape)
    f = np.asarray(anat.fractions, float)
    props = tissue_properties(scan.field_strength)
    idx = [TISSUES.index(t) for t in ("gm", "wm", "csf", "soft")]
    ones = np.ones((len(idx), *shape))
    m0 = props.proton_density[idx, None, None, None] * f[idx]
    mag = scan.magnitude(
        m0, props.t1[idx, None, None, None] * ones, props.t2star[idx, None, None, None] * ones
    )
    return mag, f


def acoustic_problem(us: dict, spec: dict, where: str = "devices.ultrasound"):
    """The device's acoustic set-up: ``(placement, media maps, Medium, Grid, bowl)``.

    The bowl sits at the beam grid's origin facing +z (the grid is aligned with the
    beam by :func:`place_transducer`); media come from the template head at the
    device frequency.
    """
    from ...physics.acoustics import Grid, bowl
    from ...physics.acoustics.media import template_head_media

    place = place_transducer(us, spec, where)
    f, h = us["frequency"], us["grid_spacing"]
    maps = template_head_media(place.affine, place.shape)
    grid = Grid(place.shape, (h,) * 3, pml_size=(us["pml_size"],) * 3, origin=place.origin)
    source = bowl(
        (0.0, 0.0, 0.0),
        (0.0, 0.0, 1.0),
        us["radius_of_curvature"],
        us["aperture"],
        point_spacing=h / 2,
        amplitude=us["source_pressure"],
    )
    return place, maps, maps.medium(f), grid, source


def simulate(ctx: DeviceContext) -> UltrasoundRecording:
    """Field, heating, dose, safety and the thermometry series of one sonication run."""
    from ...physics.acoustics import cw_settings, simulate_cw
    from ...physics.acoustics.media import TEMPLATE_LABELS
    from ...physics.thermal import (
        acoustic_heat_source,
        safety_indices,
        solve_bioheat,
        thermal_maps_from_labels,
    )

    us, spec, where = ctx.table, ctx.spec, f"devices.{ctx.key}"
    th = us["thermometry"]
    place, maps, medium, grid, source = acoustic_problem(us, spec, where)
    f, h = us["frequency"], us["grid_spacing"]
    try:
        settings = cw_settings(medium, grid, f, cfl=us["cfl"], dtype="float32")
    except ParameterError as err:
        raise SpecError(f"{where}: {err}") from err
    pressure = np.asarray(simulate_cw(medium, source, grid, f, settings=settings).amplitude)
    pressure = pressure.astype(float)
    # no heat or dose in the PML (its field is not physical)
    interior = np.zeros(place.shape, bool)
    pml = us["pml_size"]
    interior[pml:-pml, pml:-pml, pml:-pml] = True
    pressure = np.where(interior, pressure, 0.0)
    q = np.asarray(
        acoustic_heat_source(pressure, maps.attenuation(f), maps.density, maps.sound_speed)
    )
    thermal = thermal_maps_from_labels(maps.labels, TEMPLATE_LABELS, h)
    fi = th["frame_interval"]
    n_frames = int(np.floor(ctx.protocol.duration / fi + 1e-9))
    heat = solve_bioheat(
        thermal,
        q,
        n_frames * fi,
        us["thermal_dt"],
        schedule=ultrasound_schedules(us, ctx.protocol),
        frame_interval=fi,
    )
    max_dt, dose = np.asarray(heat.max_delta_t), np.asarray(heat.cem43)
    safety = safety_indices(pressure, f, max_dt, dose, maps.labels, TEMPLATE_LABELS)
    brain = np.isin(maps.labels, [TEMPLATE_LABELS.index("brain"), TEMPLATE_LABELS.index("csf")])
    peak = np.unravel_index(np.argmax(np.where(brain, pressure, -1.0)), place.shape)
    focus_mm = (place.affine @ np.append(peak, 1.0))[:3]
    # thermometry on an axial slab around the target
    scan = build_thermometry(th, ctx.new_seed())
    t_aff, t_shape = thermometry_grid(th, place.target)
    truth = resample_frames(np.asarray(heat.delta_t), place.affine, t_aff, t_shape)
    mag, frac = thermometry_magnitude(scan, t_aff, t_shape)
    series = scan.acquire(truth, mag, th["voxel_size"] * 1e-3)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in t_shape], indexing="ij"), -1)
    pos = idx @ t_aff[:3, :3].T + t_aff[:3, 3]
    dist = np.linalg.norm(pos - place.target, axis=-1)
    reference = (frac[:2].sum(0) > 0.5) & (dist > th["reference_distance"])
    if not reference.any():
        raise SpecError(
            f"{where}.thermometry.reference_distance = {th['reference_distance']!r} is "
            "invalid: expected a distance leaving brain tissue in the thermometry slab for "
            "the drift reference (or a larger matrix)"
        )
    recon = scan.reconstruct(series, reference)
    brain = frac[:3].sum(0) > 0.5
    error = thermometry_error(recon, truth, brain)
    return UltrasoundRecording(
        place,
        np.asarray(maps.labels),
        pressure,
        max_dt,
        dose,
        t_aff,
        truth,
        recon,
        series,
        scan,
        brain,
        error,
        safety,
        focus_mm,
    )


# ----------------------------------------------------------------------------- writing
def write(rec: UltrasoundRecording, ctx: DeviceContext, dataset: BIDSDataset):
    """The thermometry series (raw, BIDS) and the truth maps (derivative NIfTI)."""
    from ...io.nifti import write_nifti

    label = acq_label(ctx.key, "ultrasound")
    acq = "prfs" + (label or "")
    scan, th, us = rec.scan, ctx.table["thermometry"], ctx.table
    images = np.moveaxis(rec.series.images, 0, -1)
    side = {
        "TaskName": dataset.task,
        "RepetitionTime": scan.frame_interval,
        "EchoTime": scan.te,
        "FlipAngle": scan.flip_angle,
        "MagneticFieldStrength": scan.field_strength,
        "PulseSequenceType": "spoiled gradient echo (PRFS MR thermometry)",
        "PRFThermalCoefficient": scan.alpha,
        "FrameTimes": rec.series.times.tolist(),
        "Manufacturer": "biosim (simulated)",
        "SoftwareVersions": __version__,
    }
    for part, data, extra in (
        ("mag", np.abs(images), {}),
        ("phase", np.angle(images), {"Units": "rad"}),
    ):
        path = dataset.path("func", f"part-{part}_bold.nii.gz", acq)
        write_nifti(path, data, rec.thermometry_affine, tr=scan.frame_interval)
        write_json(path.with_name(path.name.replace(".nii.gz", ".json")), {**side, **extra})
    events = dataset.path("func", "events.tsv", acq)
    write_events(events, ctx.protocol.events())
    write_json(
        events.with_name(events.name.replace(".tsv", ".json")),
        events_sidecar(ctx.protocol.conditions),
    )
    # derivatives: the truth maps
    root = derivative_dataset(
        dataset.root,
        "biosim-ultrasound",
        f"biosim focused ultrasound: {ctx.spec['experiment']['name']}",
        "pressure, temperature and thermal dose truth and the PRFS reconstruction",
        ignore=["*_map.nii.gz", "*_map.json", "*_temperature.nii.gz", "*.tsv", "*.json"],
    )
    sub = root / f"sub-{dataset.subject}"
    sub.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{dataset.subject}_task-{dataset.task}" + (f"_acq-{label}" if label else "")
    aff = rec.placement.affine
    for desc, data, unit in (
        ("pressure", rec.pressure, "Pa (CW pressure amplitude)"),
        ("maxtemperature", rec.max_delta_t, "K (peak rise above 37 degC)"),
        ("cem43", rec.cem43, "min (CEM43 thermal dose)"),
        ("labels", rec.labels, "tissue label: " + ", ".join(_label_names())),
    ):
        write_nifti(sub / f"{stem}_desc-{desc}_map.nii.gz", data, aff)
        write_json(sub / f"{stem}_desc-{desc}_map.json", {"Units": unit})
    t_aff = rec.thermometry_affine
    write_nifti(
        sub / f"{stem}_desc-truth_temperature.nii.gz",
        np.moveaxis(rec.thermometry_truth, 0, -1),
        t_aff,
        tr=scan.frame_interval,
    )
    write_nifti(
        sub / f"{stem}_desc-prfs_temperature.nii.gz",
        np.moveaxis(rec.thermometry_reconstructed, 0, -1),
        t_aff,
        tr=scan.frame_interval,
    )
    s = rec.safety
    write_tsv(
        sub / f"{stem}_safety.tsv",
        {
            "tissue": list(s.tissues),
            "max_delta_t_K": list(s.max_delta_t),
            "max_cem43_min": list(s.max_cem43),
        },
        {"max_delta_t_K": ".4g", "max_cem43_min": ".4g"},
    )
    e = rec.error
    write_json(
        sub / f"{stem}_summary.json",
        {
            "MechanicalIndex": s.mechanical_index,
            "PeakPressure_Pa": s.peak_pressure,
            "MechanicalIndexWithinITRUSST": s.mechanical_ok,
            "ThermalWithinITRUSST": s.thermal_ok,
            "ITRUSSTLimits": dataclasses.asdict(s.limits),
            "Target_mm": rec.placement.target.tolist(),
            "Focus_mm": rec.focus_mm.tolist(),
            "Transducer_mm": rec.placement.apex.tolist(),
            "Direction": rec.placement.direction.tolist(),
            "SourcePressure_Pa": us["source_pressure"],
            "Frequency_Hz": us["frequency"],
            "ThermometryRMSE_K": e.rmse,
            "ThermometryBias_K": e.bias,
            "ThermometryPeakError_K": e.peak_error,
            "ThermometryNoiseStd_K": scan.temperature_std,
            "ReferenceDistance_mm": th["reference_distance"],
        },
    )


def _label_names():
    from ...physics.acoustics.media import TEMPLATE_LABELS

    return [f"{i} {n}" for i, n in enumerate(TEMPLATE_LABELS)]


register_device(
    "ultrasound",
    validate=validate,
    simulate=simulate,
    write=write,
    description="focused-ultrasound transducer with heating, thermal dose and PRFS MR thermometry",
)
