"""Regions: one cortical patch seen by every device.

A :class:`Region` is a patch of the ico4 cortical surface
(:func:`biosim.geometry.source_space.cortical_surface`) around a coordinate. EEG and MEG
see it as one dipole (patch centroid, mean normal, fsaverage frame, m); fMRI sees the
grey-matter voxels under the patch (:func:`region_voxel_weights`, MNI152 mm).

Sources of regions: the named landmarks of :data:`~biosim.geometry.source_space.LANDMARKS_MNI`
(:func:`landmark_regions`), any MNI152 coordinates (:func:`coordinate_regions`) and three
published ROI sets shipped in ``biosim/data/anatomy`` (:func:`roi_set_regions`):
Dosenbach et al. (2010) Science 329:1358 (160 ROIs), Power et al. (2011) Neuron 72:665
(264 ROIs), Seitzman et al. (2020) NeuroImage 206:116290 (300 ROIs).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
from importlib import resources

import numpy as np

from .._core.errors import ParameterError, ShapeError
from .anatomy import FSAVERAGE_TO_MNI152, Anatomy
from .source_space import LANDMARKS_MNI, cortical_surface

#: ROI sets shipped in ``biosim/data/anatomy/<name>.csv`` and their sizes.
ROI_SETS = {"dosenbach160": 160, "power264": 264, "seitzman300": 300}
#: Patch radius (mm) of landmark regions: the radius the experiment layer has always used.
LANDMARK_RADIUS_MM = 15.0

_MNI152_TO_FSAVERAGE = np.linalg.inv(FSAVERAGE_TO_MNI152)


@dataclasses.dataclass(frozen=True)
class Region:
    """A cortical patch.

    Attributes
    ----------
    name : str
    center_mni : (3,) mm
        The defining coordinate, MNI152.
    vertices : (k,) int
        Indices into the ico4 cortical surface (empty for coordinates far from the
        white surface, e.g. deep grey matter).
    position : (3,) m
        Patch centroid in the fsaverage (MNI305) frame of the EEG/MEG head models, or the
        coordinate itself when the patch is empty.
    orientation : (3,)
        Unit mean outward normal of the patch (of the 10 nearest vertices of the
        hemisphere when the patch is empty).
    """

    name: str
    center_mni: np.ndarray
    vertices: np.ndarray
    position: np.ndarray
    orientation: np.ndarray


@functools.lru_cache(maxsize=1)
def _surface():
    return cortical_surface("ico4")


def _hemi_of(x):
    return 0 if x <= 0 else 1


def _patch(name, center_fs_mm, hemi, radius_mm, center_mni):
    s = _surface()
    pos, nrm = s.positions, s.normals
    c = np.asarray(center_fs_mm, float) / 1000.0
    d = np.linalg.norm(pos - c, axis=1)
    on = s.hemisphere == hemi
    idx = np.flatnonzero(on & (d < radius_mm / 1000.0))
    if idx.size:
        position = pos[idx].mean(0)
        n = nrm[idx].mean(0)
    else:
        position = c
        near = np.flatnonzero(on)[np.argsort(d[on])[:10]]
        n = nrm[near].mean(0)
    return Region(name, np.asarray(center_mni, float), idx, position, n / np.linalg.norm(n))


def _check_radius(radius_mm):
    if not np.isfinite(radius_mm) or radius_mm <= 0:
        raise ParameterError("radius_mm", radius_mm, "a positive radius in mm")


def landmark_regions(names, radius_mm: float = LANDMARK_RADIUS_MM) -> list[Region]:
    """Regions around the named landmarks of ``LANDMARKS_MNI``.

    Parameters
    ----------
    names : sequence of str
        ``"V1"`` (left hemisphere, as the experiment layer's ``region_dipoles``),
        ``"V1-lh"`` or ``"V1-rh"``.
    radius_mm : float
        Patch radius. The landmark coordinates are used in the fsaverage frame as given
        (as :func:`~biosim.geometry.source_space.cortical_surface` does), so the default
        reproduces ``cortical_surface("ico4").regions`` exactly.
    """
    _check_radius(radius_mm)
    out = []
    for name in names:
        base, _, tag = str(name).partition("-")
        if base not in LANDMARKS_MNI or tag not in ("", "lh", "rh"):
            raise ParameterError(
                "region", name, f"a landmark of {sorted(LANDMARKS_MNI)}, optionally -lh or -rh"
            )
        hemi = 1 if tag == "rh" else 0
        x, y, z = LANDMARKS_MNI[base]
        c = np.array([x if hemi else -x, y, z])
        out.append(_patch(str(name), c, hemi, radius_mm, FSAVERAGE_TO_MNI152[:3] @ [*c, 1.0]))
    return out


def coordinate_regions(coords_mm, radius_mm: float = 5.0, names=None) -> list[Region]:
    """Regions around MNI152 coordinates (hemisphere by the sign of x; x = 0 is left).

    Parameters
    ----------
    coords_mm : (n, 3) mm, MNI152
    radius_mm : float
        Patch radius on the white surface.
    names : sequence of n str, optional
        Default ``"coord_001"``, ...
    """
    c = np.asarray(coords_mm, float)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ShapeError("coords_mm", c.shape, "(n, 3) MNI152 coordinates in mm")
    if not np.all(np.isfinite(c)):
        raise ParameterError("coords_mm", c.tolist(), "finite coordinates")
    _check_radius(radius_mm)
    if names is None:
        names = [f"coord_{i + 1:03d}" for i in range(len(c))]
    names = [str(n) for n in names]
    if len(names) != len(c) or len(set(names)) != len(names):
        raise ParameterError("names", names, f"{len(c)} unique names")
    fs = c @ _MNI152_TO_FSAVERAGE[:3, :3].T + _MNI152_TO_FSAVERAGE[:3, 3]
    return [_patch(n, f, _hemi_of(p[0]), radius_mm, p) for n, f, p in zip(names, fs, c)]


@functools.cache
def _roi_table(name):
    text = resources.files("biosim").joinpath(f"data/anatomy/{name}.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r["name"] for r in rows], np.array([[float(r[k]) for k in "xyz"] for r in rows])


def roi_set_regions(name: str, radius_mm: float = 5.0) -> list[Region]:
    """The regions of a published ROI set: ``"dosenbach160"``, ``"power264"`` or
    ``"seitzman300"`` (names ``"<set>_<number>"`` in the published order)."""
    if name not in ROI_SETS:
        raise ParameterError("roi_set", name, f"one of {sorted(ROI_SETS)}")
    names, coords = _roi_table(name)
    return coordinate_regions(coords, radius_mm, names)


def region_voxel_weights(
    regions, anatomy: Anatomy, radius_mm: float = 3.0, transform=None, depth_mm: float = 1.5
):
    """Grey-matter voxel weights of regions on a voxel grid.

    A voxel belongs to a region when its centre lies within ``radius_mm`` of one of the
    patch's vertices moved ``depth_mm`` outward along their normals (from the white
    surface into the middle of the ~2.5 mm cortex), mapped to MNI152 by
    ``FSAVERAGE_TO_MNI152``; for an empty patch, within ``radius_mm`` of its coordinate.
    The voxel containing each such point is always included. Its weight is
    its grey-matter fraction, split evenly between the regions it belongs to, so the
    weights of a voxel over all regions sum to at most its grey-matter fraction.

    Parameters
    ----------
    regions : sequence of Region
    anatomy : Anatomy
        On the target grid (e.g. ``mni_anatomy().resample(...)``).
    radius_mm : float
    transform : (4, 4), optional
        Head (MNI152 mm) -> grid frame (mm), as for :meth:`Anatomy.resample`.
    depth_mm : float
        Outward shift of the white-surface vertices, mm.

    Returns
    -------
    scipy.sparse.csr_matrix
        (n_regions, n_voxels) float32; voxels in C order of ``anatomy.shape``.
    """
    from scipy import sparse
    from scipy.spatial import cKDTree

    _check_radius(radius_mm)
    if not np.isfinite(depth_mm) or abs(depth_mm) > 5:
        raise ParameterError("depth_mm", depth_mm, "a shift in [-5, 5] mm")
    move = np.eye(4) if transform is None else np.asarray(transform, float)
    if move.shape != (4, 4):
        raise ShapeError("transform", move.shape, "(4, 4)")
    gm = np.asarray(anatomy.fraction("gm"), np.float32).ravel()
    shape = anatomy.shape
    inv = np.linalg.inv(np.asarray(anatomy.affine, float))
    cand = np.flatnonzero(gm > 0)
    ijk = np.stack(np.unravel_index(cand, shape), 1)
    aff = np.asarray(anatomy.affine, float)
    tree = cKDTree(ijk @ aff[:3, :3].T + aff[:3, 3])
    surf = _surface()
    to_grid = move @ FSAVERAGE_TO_MNI152
    rows, cols = [], []
    for r, reg in enumerate(regions):
        if len(reg.vertices):
            mid = surf.positions[reg.vertices] * 1000.0 + depth_mm * surf.normals[reg.vertices]
            pts = mid @ to_grid[:3, :3].T + to_grid[:3, 3]
        else:
            pts = (move[:3, :3] @ reg.center_mni + move[:3, 3])[None]
        hits = set()
        for h in tree.query_ball_point(pts, radius_mm):
            hits.update(cand[h].tolist())
        own = np.rint(pts @ inv[:3, :3].T + inv[:3, 3]).astype(int)
        ok = np.all((own >= 0) & (own < shape), axis=1)
        hits.update(np.ravel_multi_index(own[ok].T, shape).tolist())
        hits = np.fromiter(hits, int)
        rows.append(np.full(hits.size, r))
        cols.append(hits)
    rows = np.concatenate(rows) if rows else np.zeros(0, int)
    cols = np.concatenate(cols) if cols else np.zeros(0, int)
    n_vox = int(np.prod(shape))
    member = sparse.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, cols)), shape=(len(regions), n_vox)
    )
    count = np.asarray(member.sum(0)).ravel()
    scale = np.where(count > 0, gm / np.maximum(count, 1), 0).astype(np.float32)
    w = member.multiply(scale[None, :]).tocsr().astype(np.float32)
    w.eliminate_zeros()
    return w


def region_names_help() -> str:
    """One paragraph on the region names accepted (for command-line help)."""
    return (
        "Regions: cortical landmarks "
        + ", ".join(LANDMARKS_MNI)
        + " (left hemisphere; append -lh or -rh to choose), or every region of a published "
        "ROI set: dosenbach160 (Dosenbach et al. 2010, 160 ROIs), power264 (Power et al. "
        "2011, 264 ROIs), seitzman300 (Seitzman et al. 2020, 300 ROIs), named "
        "<set>_<number> (e.g. power264_001); or MNI152 coordinates in mm."
    )


__all__ = [
    "ROI_SETS",
    "Region",
    "coordinate_regions",
    "landmark_regions",
    "region_names_help",
    "region_voxel_weights",
    "roi_set_regions",
]
