"""Realistic template head: inner skull, outer skull and scalp of fsaverage.

Three closed, outward, nested surfaces in fsaverage's MRI (surface RAS =
MNI305) frame, in m -- the frame of :func:`biosim.geometry.source_space.cortical_surface`
-- at matched resolutions (642, 2562 or 10242 vertices per surface, all three
layers on the same icosphere triangulation).  They are built by
``meshes/make_template_head.py`` from the fsaverage inner-skull and head
surfaces that ship with MNE-Python (method, provenance, licences and measured
remeshing errors: ``biosim/data/head/README.md``) and read here with numpy
only.  The shipped surfaces pass :func:`biosim.geometry.checks.check_head_model`
with a 2 mm minimum gap; every fsaverage5 white-surface vertex is inside the
inner skull.

EEG electrodes are mapped to the MRI frame (biosim's 10-20/10-05 montage
files are already in fsaverage's MRI frame, biosemi64 and easycap-M1 in a
spherical frame mapped with their fiducials; positions in MNE's head frame
use fsaverage's head -> MRI transform) and projected onto the template scalp
along rays from the template centre, so they lie exactly on the scalp mesh.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from .._core.errors import GeometryError, ParameterError
from .mesh import TriangleMesh

#: Vertices per surface of the shipped resolutions (icosphere subdivisions 3, 4, 5).
SIZES = (642, 2562, 10242)
#: Layer names, innermost first.
LAYERS = ("inner_skull", "outer_skull", "scalp")
#: Montage files shipped in ``biosim/data/montages`` (MNE head frame, m).
MONTAGE_FILES = ("standard_1020", "standard_1005", "biosemi64", "easycap-M1")


@functools.lru_cache(maxsize=1)
def _data():
    with resources.files("biosim").joinpath("data/head/template_head.npz").open("rb") as fh:
        with np.load(fh) as npz:
            return {k: np.array(npz[k]) for k in npz.files}


def _check_size(n_vertices):
    if n_vertices not in SIZES:
        raise ParameterError("n_vertices", n_vertices, f"one of {SIZES} vertices per surface")


def template_head(n_vertices: int = 2562, layers: int = 3) -> list[TriangleMesh]:
    """The template head's surfaces, innermost first.

    Parameters
    ----------
    n_vertices : {642, 2562, 10242}
        Vertices per surface (1280, 5120 or 20480 triangles).
    layers : {3, 1}
        3: inner skull, outer skull, scalp (EEG/MEG three-compartment BEM);
        1: inner skull only (single-compartment MEG BEM).

    Returns
    -------
    list of TriangleMesh
        Vertices in m (fsaverage MRI frame), faces counter-clockwise seen
        from outside; named ``"inner_skull"``, ``"outer_skull"``, ``"scalp"``.
    """
    _check_size(n_vertices)
    if layers not in (1, 3):
        raise ParameterError(
            "layers", layers, "3 (inner skull, outer skull, scalp) or 1 (inner skull)"
        )
    d = _data()
    faces = d[f"faces_{n_vertices}"].astype(np.int64)
    return [
        TriangleMesh(d[f"{name}_{n_vertices}"].astype(float), faces, name)
        for name in LAYERS[:layers]
    ]


def head_to_mri() -> np.ndarray:
    """fsaverage's head -> MRI (surface RAS) rigid transform, (4, 4), translations in m.

    From MNE-Python's ``fsaverage-trans.fif``; maps positions in MNE's head
    frame (nasion on +y, LPA-RPA on x), the frame of biosim's montages, to
    the template's frame.
    """
    return _data()["head_to_mri"].copy()


def template_fiducials() -> dict:
    """fsaverage's LPA, nasion and RPA (m, MRI frame) from ``fsaverage-fiducials.fif``."""
    f = _data()["fiducials_mri"]
    return {"LPA": f[0].copy(), "nasion": f[1].copy(), "RPA": f[2].copy()}


def template_center() -> np.ndarray:
    """Centre (m, MRI frame) from which every template surface is star-shaped."""
    return _data()["center"].copy()


def _outermost_hit(mesh: TriangleMesh, center, directions):
    """Largest t > 0 with center + t u on the mesh, per unit direction u (Moller-Trumbore)."""
    tri = mesh.vertices[mesh.faces] - center
    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    out = np.full(len(directions), -np.inf)
    for i, u in enumerate(directions):
        p = np.cross(u, e2)
        det = np.einsum("ij,ij->i", e1, p)
        ok = np.abs(det) > 1e-30
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = -a
        bu = np.einsum("ij,ij->i", s, p) * inv
        q = np.cross(s, e1)
        bv = (q @ u) * inv
        t = np.einsum("ij,ij->i", e2, q) * inv
        hit = ok & (bu >= -1e-12) & (bv >= -1e-12) & (bu + bv <= 1 + 1e-12) & (t > 0)
        if hit.any():
            out[i] = t[hit].max()
    return out


def project_to_scalp(points, n_vertices: int = 2562, frame: str = "mri") -> np.ndarray:
    """Project points onto the template scalp along rays from :func:`template_center`.

    Parameters
    ----------
    points : array (n, 3), m
    n_vertices : {642, 2562, 10242}
        Resolution of the scalp mesh the points are placed on.
    frame : {"mri", "head"}
        Frame of ``points``: the template's MRI frame, or MNE's head frame
        (converted with :func:`head_to_mri`).

    Returns
    -------
    array (n, 3), m
        Points on the scalp triangles (MRI frame).
    """
    _check_size(n_vertices)
    if frame not in ("mri", "head"):
        raise ParameterError("frame", frame, '"mri" or "head"')
    p = np.asarray(points, float)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ParameterError("points", f"array of shape {p.shape}", "shape (n, 3), n >= 1")
    if not np.all(np.isfinite(p)):
        raise ParameterError("points", "non-finite coordinates", "finite positions in m")
    if frame == "head":
        t = head_to_mri()
        p = p @ t[:3, :3].T + t[:3, 3]
    c = template_center()
    rel = p - c
    rho = np.linalg.norm(rel, axis=1)
    if np.any(rho < 1e-6):
        i = int(np.argmin(rho))
        raise ParameterError(
            "points",
            f"point {i} at the template centre {c.tolist()} m",
            "points away from the centre (their direction defines the projection)",
        )
    u = rel / rho[:, None]
    scalp = template_head(n_vertices)[2]
    t = _outermost_hit(scalp, c, u)
    if not np.all(np.isfinite(t)):
        raise GeometryError(
            f"the ray from the template centre towards point {int(np.argmin(t))} "
            "misses the scalp mesh"
        )
    return c + t[:, None] * u


def _read_montage(name):
    text = (resources.files("biosim") / "data" / "montages" / f"{name}.tsv").read_text()
    rows = [ln.split("\t") for ln in text.strip().splitlines()[1:]]
    return [r[0] for r in rows], np.array([[float(v) for v in r[1:]] for r in rows])


def montage_to_mri(name: str) -> np.ndarray:
    """(4, 4) transform (m) from the native frame of a shipped montage file to the template.

    MNE-Python (>= 1.13) gives the 10-20 and 10-05 positions in fsaverage's
    MRI frame (the transform is the identity) and biosemi64 / easycap-M1 in a
    spherical frame with its own fiducials (MNE's fiducial-based native ->
    head transform, then :func:`head_to_mri`).
    """
    if name not in MONTAGE_FILES:
        raise ParameterError("name", name, f"one of {MONTAGE_FILES}")
    return _data()[f"montage_to_mri_{name}"].copy()


def template_electrodes(montage="standard_1020", channels=None, n_vertices: int = 2562, frame=None):
    """EEG electrodes of a montage placed on the template scalp.

    Parameters
    ----------
    montage : str or sensors
        A montage shipped with biosim (:data:`MONTAGE_FILES`), or any object
        with ``names`` and ``positions`` (n, 3) m, e.g.
        ``biosim.physics.electromag.montage.standard_montage("standard_1010")``
        (whose positions are in fsaverage's MRI frame: pass ``frame="mri"``).
    channels : list of str, optional
        Keep only these electrodes, in this order.
    n_vertices : {642, 2562, 10242}
        Resolution of the scalp mesh the electrodes are placed on.
    frame : None, "mri", "head" or array (4, 4)
        Frame of the positions: None for a shipped montage name (its own
        transform, :func:`montage_to_mri`); for an object, "mri" (template /
        fsaverage MRI frame), "head" (MNE's head frame) or a 4x4 transform
        (m) to the MRI frame.

    Returns
    -------
    names : list of str
    positions : array (n, 3)
        m, MRI frame, on the scalp triangles of ``template_head(n_vertices)``.
    """
    _check_size(n_vertices)
    if isinstance(montage, str):
        if montage not in MONTAGE_FILES:
            raise ParameterError(
                "montage",
                montage,
                f"one of {MONTAGE_FILES} or an object with names "
                "and positions (e.g. standard_montage('standard_1010'), frame='mri')",
            )
        if frame is not None:
            raise ParameterError("frame", frame, "None for a shipped montage (its frame is known)")
        names, pos = _read_montage(montage)
        transform = montage_to_mri(montage)
    elif hasattr(montage, "names") and hasattr(montage, "positions"):
        names, pos = list(montage.names), np.asarray(montage.positions, float)
        if isinstance(frame, str) and frame in ("mri", "head"):
            transform = np.eye(4) if frame == "mri" else head_to_mri()
        elif frame is not None and not isinstance(frame, str) and np.shape(frame) == (4, 4):
            transform = np.asarray(frame, float)
        else:
            raise ParameterError(
                "frame",
                frame,
                '"mri", "head" or a (4, 4) transform for an object with names and positions',
            )
    else:
        raise ParameterError(
            "montage", montage, "a montage name or an object with names and positions"
        )
    if channels is not None:
        missing = [c for c in channels if c not in names]
        if missing:
            raise ParameterError("channels", missing[0], "electrode names of the montage")
        idx = [names.index(c) for c in channels]
        names, pos = [names[i] for i in idx], pos[idx]
    pos = pos @ transform[:3, :3].T + transform[:3, 3]
    return list(names), project_to_scalp(pos, n_vertices, frame="mri")
