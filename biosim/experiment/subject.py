"""The virtual subject every device of an experiment sees.

* **Anatomy**: the MNI152 tissue atlas (:func:`biosim.geometry.anatomy.mni_anatomy`);
  the MRI scanner images it, the EEG/MEG head models (concentric spheres fitted to
  the 10-20 montage, or the fsaverage template head's BEM) are registered to it by
  :data:`~biosim.geometry.anatomy.FSAVERAGE_TO_MNI152`.
* **Regions**: each is one cortical patch (:mod:`biosim.geometry.regions`): one
  dipole for EEG/MEG and the grey-matter voxels under it for fMRI.
  ``subject.regions`` lists landmark names (``V1``, ``V1-rh``...), published ROI
  sets (``dosenbach160``, ``power264``, ``seitzman300``: all their regions) or
  names defined in ``[subject.coordinates]`` (``name = [x, y, z]``, MNI152 mm);
  ``subject.region_radius`` (mm) is the patch radius of coordinates and ROI-set
  regions.  Validation expands the list to one name per region.
* **Head motion** (``[subject.motion]``, optional): translation and rotation
  drift (``translation`` mm and ``rotation`` degrees, standard deviations),
  ``jerks`` sudden movements of ``jerk_size`` mm, or ``file``: six columns
  (mm, rad) one row per ``interval`` s.  The MRI images the moving head; MEG
  sensors stay in the helmet while the head moves; EEG electrodes move with it.
* **Physiology** (``[subject.physiology]``): ``heart_rate`` (beats per minute),
  ``heart_rate_variability`` (s, std of the RR interval) and
  ``respiration_rate`` (Hz).  One cardiac trace drives both the EEG's
  ballistocardiogram and the fMRI's cardiac noise.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from .._core.errors import ParameterError, SpecError
from ..geometry.regions import (
    LANDMARK_RADIUS_MM,
    ROI_SETS,
    Region,
    coordinate_regions,
    landmark_regions,
    roi_set_regions,
)
from ..geometry.source_space import LANDMARKS_MNI
from .keys import check_keys, require, set_default

#: Landmark names ``subject.regions`` may use (``-lh``/``-rh`` pick a hemisphere).
REGION_NAMES = tuple(sorted(LANDMARKS_MNI))
MOTION_KEYS = {
    "translation",
    "rotation",
    "jerks",
    "jerk_size",
    "correlation_time",
    "file",
    "interval",
    "_path",
}
PHYSIOLOGY_KEYS = {"heart_rate", "heart_rate_variability", "respiration_rate"}


def _is_landmark(name: str) -> bool:
    base, _, tag = name.partition("-")
    return base in LANDMARKS_MNI and tag in ("", "lh", "rh")


def _roi_member(name: str) -> str | None:
    prefix, _, number = name.rpartition("_")
    return prefix if prefix in ROI_SETS and number.isdigit() else None


def expand_regions(subj: dict, where: str = "subject") -> list[str]:
    """One name per region: ROI sets expanded, every name checked (SpecError naming it)."""
    coords = subj.get("coordinates", {})
    names: list[str] = []
    for entry in subj["regions"]:
        if entry in ROI_SETS:
            names += _roi_names(entry)
        elif _is_landmark(entry) or entry in coords or _roi_member(entry):
            if _roi_member(entry) and entry not in _roi_names(_roi_member(entry)):
                raise SpecError(
                    f"{where}.regions: {entry!r} is not in the {_roi_member(entry)} set"
                )
            names.append(entry)
        else:
            raise SpecError(
                f"{where}.regions: {entry!r} is not a known region: expected a landmark "
                f"({', '.join(REGION_NAMES)}, optionally -lh/-rh), a ROI set "
                f"({', '.join(ROI_SETS)}) or a name of [{where}.coordinates]"
            )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SpecError(f"{where}.regions names {duplicated[0]!r} twice: expected distinct regions")
    return names


@functools.cache
def _roi_names(roi_set: str) -> list[str]:
    return [r.name for r in roi_set_regions(roi_set)]


def validate_subject_regions(subj: dict) -> None:
    """Validate ``regions``, ``coordinates`` and ``region_radius``; expand ``regions``."""
    require(
        subj,
        "regions",
        "subject",
        list,
        lambda v: len(v) > 0 and all(isinstance(r, str) for r in v),
        "a non-empty list of region names",
    )
    coords = set_default(subj, "coordinates", "subject", {}, dict)
    for name, xyz in coords.items():
        if not name.isidentifier() or _is_landmark(name) or name in ROI_SETS:
            raise SpecError(
                f"subject.coordinates.{name} is invalid: expected a new region name "
                "(letters, digits, underscores; not a landmark or ROI set)"
            )
        if (
            not isinstance(xyz, list)
            or len(xyz) != 3
            or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in xyz)
        ):
            raise SpecError(
                f"subject.coordinates.{name} = {xyz!r} is invalid: expected [x, y, z] in MNI152 mm"
            )
    set_default(
        subj,
        "region_radius",
        "subject",
        5.0,
        float,
        lambda v: 0 < v <= 30,
        "a radius in (0, 30] mm",
    )
    subj["regions"] = expand_regions(subj)


def validate_motion(spec: dict) -> None:
    """Validate ``[subject.motion]`` (optional) in place; a motion file is read here."""
    subj = spec["subject"]
    if "motion" not in subj:
        return
    mot = require(subj, "motion", "subject", dict, None, "a table")
    where = "subject.motion"
    check_keys(mot, MOTION_KEYS, where)
    nonneg = lambda v: v >= 0  # noqa: E731
    if "file" in mot:
        require(mot, "file", where, str, None, "a path to six columns (mm, rad)")
        require(mot, "interval", where, float, lambda v: v > 0, "the row interval in s")
        path = Path(spec.get("_source_dir", ".")) / mot["file"]
        mot["_path"] = str(path)
        try:
            _read_motion(str(path), mot["interval"])
        except ParameterError as err:
            raise SpecError(f"{where}.file = {mot['file']!r} is invalid: {err.expected}") from None
        return
    set_default(mot, "translation", where, 0.3, float, nonneg, "a drift std in mm")
    set_default(mot, "rotation", where, 0.2, float, nonneg, "a drift std in degrees")
    set_default(mot, "jerks", where, 0, int, nonneg, "a number of sudden movements")
    set_default(mot, "jerk_size", where, 1.0, float, nonneg, "a jerk amplitude in mm")
    set_default(
        mot, "correlation_time", where, 30.0, float, lambda v: v > 0, "a drift time scale in s"
    )
    set_default(mot, "interval", where, 0.5, float, lambda v: v > 0, "a sampling interval in s")


def validate_physiology(subj: dict) -> None:
    """Validate ``[subject.physiology]`` in place (defaults: 67 bpm, 0.25 Hz breathing)."""
    phys = set_default(subj, "physiology", "subject", {}, dict)
    where = "subject.physiology"
    check_keys(phys, PHYSIOLOGY_KEYS, where)
    set_default(phys, "heart_rate", where, 67.0, float, lambda v: 30 <= v <= 200, "30-200 bpm")
    set_default(
        phys,
        "heart_rate_variability",
        where,
        0.05,
        float,
        lambda v: 0 <= v <= 0.2 * 60 / phys["heart_rate"],
        "an RR-interval std in s below 20 % of the mean interval",
    )
    set_default(
        phys, "respiration_rate", where, 0.25, float, lambda v: 0.05 <= v <= 1.0, "0.05-1 Hz"
    )


def subject_regions(spec: dict) -> list[Region]:
    """The :class:`~biosim.geometry.regions.Region` of every name of ``subject.regions``."""
    subj = spec["subject"]
    coords = subj.get("coordinates", {})
    return list(
        _regions(
            tuple(subj["regions"]),
            tuple((k, tuple(v)) for k, v in coords.items()),
            float(subj.get("region_radius", 5.0)),
        )
    )


@functools.lru_cache(maxsize=8)
def _regions(names, coords, radius) -> tuple[Region, ...]:
    coords = dict(coords)
    sets = {
        s: {r.name: r for r in roi_set_regions(s, radius)}
        for s in ROI_SETS
        if any(_roi_member(n) == s for n in names)
    }
    out = []
    for name in names:
        if _is_landmark(name):
            out += landmark_regions([name], LANDMARK_RADIUS_MM)
        elif name in coords:
            out += coordinate_regions(np.array([coords[name]], float), radius, [name])
        else:
            out.append(sets[_roi_member(name)][name])
    return tuple(out)


def check_regions(regions: list[str], where: str = "subject.regions") -> None:
    """SpecError naming the first entry that is not a landmark, ROI set or ROI-set member."""
    expand_regions({"regions": list(regions)}, where.rpartition(".")[0] or "subject")


def region_dipoles(spec: dict):
    """Dipole position (m, fsaverage frame) and unit orientation of each region: the
    centroid and mean normal of its cortical patch."""
    regions = subject_regions(spec)
    return (
        np.array([r.position for r in regions]),
        np.array([r.orientation for r in regions]),
    )


def sphere_head(spec: dict):
    """The subject's concentric-sphere head: ``(SphereHead, center (3,) m, scalp radius m)``.

    The sphere is fitted to the standard 10-20 electrode positions (MNE's
    fsaverage MRI frame, like the cortex); ``subject.relative_radii`` and
    ``subject.conductivities`` give the shells.
    """
    from ..physics.electromag import SphereHead
    from ..physics.electromag.montage import fit_sphere, standard_montage

    subj = spec["subject"]
    center, radius = fit_sphere(standard_montage("standard_1020").positions)
    head = SphereHead.create(
        np.asarray(subj["relative_radii"], float) * radius, subj["conductivities"], center
    )
    return head, center, radius


def template_bem(spec: dict, eeg=None, meg=None):
    """:class:`~biosim.physics.electromag.bem.BEMForward` of the template head
    (``subject.bem_vertices`` per surface, ``subject.conductivities`` of brain,
    skull and scalp, ``subject.bem_elements`` flat, matched or curved) for the given sensors."""
    from ..geometry.template_head import template_head
    from ..physics.electromag import BEMForward

    subj = spec["subject"]
    surfaces = template_head(subj["bem_vertices"])
    return BEMForward.create(
        surfaces,
        subj["conductivities"],
        eeg=eeg,
        meg=meg,
        geometry=subj.get("bem_elements", "matched"),
    )


#: Default conductivities (S/m) of the FEM head's WM, GM, CSF, bone and scalp
#: (tags 1-5): GM, CSF, bone and scalp as the 4-shell sphere of DUNEuro's examples
#: (Wolters et al. 2006; Baumann et al. 1997 for CSF), WM 0.14 (Haueisen et al. 1997).
FEM_CONDUCTIVITIES = (0.14, 0.33, 1.79, 0.01, 0.43)
#: Default edge length (mm) of the FEM head: ~60 k tetrahedra, a few seconds to mesh
#: and to solve for 64 electrodes (the mesh is the template head's, so the same
#: sensors and sources as the BEM).
FEM_EDGE_LENGTH_MM = 8.0


@functools.lru_cache(maxsize=2)
def _fem_mesh(edge_length_mm: float, n_vertices: int):
    from ..geometry.tetmesh import template_head_tet_mesh

    return template_head_tet_mesh(edge_length=edge_length_mm * 1e-3, n_vertices=n_vertices)


def template_fem(spec: dict, eeg=None, meg=None):
    """:class:`~biosim.physics.electromag.fem_leadfield.FEMForward` of the template
    head meshed into tetrahedra (``subject.fem_edge_length`` mm, surfaces of
    ``subject.bem_vertices`` vertices, WM/GM/CSF from the MNI152 tissue atlas)
    with ``subject.conductivities`` of WM, GM, CSF, bone and scalp (S/m), the
    localized-subtraction source model, for the given sensors."""
    from ..physics.electromag.fem_leadfield import FEMForward

    subj = spec["subject"]
    mesh = _fem_mesh(float(subj["fem_edge_length"]), int(subj["bem_vertices"]))
    sigma = dict(zip((1, 2, 3, 4, 5), (float(c) for c in subj["conductivities"])))
    return FEMForward.create(mesh, sigma, eeg=eeg, meg=meg, source_model="subtraction")


def head_forward(spec: dict, eeg=None, meg=None):
    """The BEM (``subject.head = "template"``) or FEM (``"fem"``) forward model of
    the template head for the given sensors."""
    if spec["subject"]["head"] == "fem":
        return template_fem(spec, eeg=eeg, meg=meg)
    return template_bem(spec, eeg=eeg, meg=meg)


#: Centre of rotation of the head (MNI152, m): about the middle of the brain.
HEAD_CENTER = np.array([0.0, -0.018, 0.012])


def _read_motion(path: str, interval: float):
    from ..geometry.motion import read_motion

    m = read_motion(path, interval)
    return dataclasses.replace(m, center=HEAD_CENTER.copy())


def head_motion(spec: dict):
    """The subject's :class:`~biosim.geometry.motion.RigidMotion` (head -> scanner,
    MNI152 frame, m), or None without ``[subject.motion]``."""
    from ..geometry.motion import RigidMotion, random_motion

    mot = spec["subject"].get("motion")
    if mot is None:
        return None
    duration = spec["experiment"]["duration"]
    if "file" in mot:
        m = _read_motion(mot["_path"], mot["interval"])
        if m.times[-1] < duration:  # hold the last pose to the end
            m = RigidMotion(
                np.r_[m.times, duration],
                np.vstack([m.translations, m.translations[-1]]),
                np.vstack([m.rotations, m.rotations[-1]]),
                m.center,
            )
        return m
    return random_motion(
        duration,
        min(mot["interval"], duration),
        translation_std=mot["translation"] * 1e-3,
        rotation_std=np.deg2rad(mot["rotation"]),
        n_jerks=mot["jerks"],
        jerk_size=mot["jerk_size"] * 1e-3,
        correlation_time=mot["correlation_time"],
        center=HEAD_CENTER,
        seed=spec["experiment"]["seed"] + 4241,
    )


@dataclasses.dataclass(frozen=True)
class Physiology:
    """The subject's heartbeat and breathing during the run.

    Attributes
    ----------
    r_peaks : array
        Cardiac R-peak times, s.
    respiration : biosim.instruments.mri_noise.RespiratoryTrace
        Breathing phase and depth over time.
    """

    r_peaks: np.ndarray
    respiration: object


def physiology(spec: dict) -> Physiology:
    """Heartbeat and breathing drawn once per experiment (seeded by ``experiment.seed``)."""
    from ..instruments.eeg_fmri import cardiac_r_peaks
    from ..instruments.mri_noise import respiratory_trace

    phys = spec["subject"]["physiology"]
    duration = spec["experiment"]["duration"]
    seed = spec["experiment"]["seed"]
    r_peaks = cardiac_r_peaks(
        duration,
        mean_rr=60.0 / phys["heart_rate"],
        rr_std=phys["heart_rate_variability"],
        seed=seed + 2713,
    )
    resp = respiratory_trace(duration, rate=phys["respiration_rate"], seed=seed + 3571)
    return Physiology(r_peaks, resp)
