"""Labelled tetrahedral meshes: the volume conductors of FEM head models.

:class:`TetMesh` holds nodes (n, 3) in m, positively oriented tetrahedra
(m, 4) and one tissue tag per tetrahedron, with SimNIBS' tag numbers
(:data:`TISSUE_TAGS`: WM 1, GM 2, CSF 3, bone 4, scalp 5, ...; surfaces in
SimNIBS files carry the tag + 1000).

Builders
--------
:func:`sphere_tet_mesh` meshes nested spheres (e.g. DUNEuro's 4-shell model,
radii 78/80/86/92 mm) with every interface node exactly on its sphere;
:func:`template_head_tet_mesh` meshes the template head.  Both use the same
generator, written for biosim (no GPL/AGPL mesher): points on concentric
shells -- a golden-angle (Fibonacci) lattice on each interface and on
intermediate shells spaced about one edge length apart -- joined by a
Delaunay tetrahedralisation (qhull through :class:`scipy.spatial.Delaunay`).
The Delaunay mesh contains each interface's triangulation when the
neighbouring shells are further than about a triangle's circumradius from it;
:func:`sphere_tet_mesh` verifies this (no tetrahedron has nodes strictly on
both sides of an interface) and raises otherwise.  The template head is the
same shell mesh mapped radially onto its star-shaped surfaces.

I/O
---
:func:`read_tet_mesh` / :func:`write_tet_mesh`: binary gmsh 2.2 (``.msh``,
tags as physical and geometrical tags, as SimNIBS writes them) and ``.vtu``
(cell data ``gmsh:physical``), through meshio, with mm in the file and m in
memory.  meshio 5.3 writes broken ASCII gmsh with numpy 2: only binary is
written.

Checks
------
:func:`check_tet_mesh` raises :class:`MeshError` naming the first offending
element: inverted or degenerate tetrahedra, non-conforming faces (a face
shared by more than two tetrahedra, or an internal face seen from one side
only: hanging nodes), unreferenced nodes, unknown tags.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np

from .._core.errors import GeometryError, ParameterError

#: SimNIBS tissue tags (name -> tag), the single source of truth for tet labels.
#: Surfaces in SimNIBS ``.msh`` files carry the tag + 1000.
TISSUE_TAGS = types.MappingProxyType(
    {
        "wm": 1,
        "gm": 2,
        "csf": 3,
        "bone": 4,
        "scalp": 5,
        "eyes": 6,
        "compact_bone": 7,
        "spongy_bone": 8,
        "blood": 9,
        "muscle": 10,
    }
)
_TAG_NAMES = {v: k for k, v in TISSUE_TAGS.items()}
_SURFACE_TAG_OFFSET = 1000
_MM = 1e-3
_UNITS = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}
#: tet faces opposite vertex 0..3, ordered so that their normals point out of a
#: positively oriented tetrahedron
_FACES = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])


class MeshError(GeometryError):
    """A tetrahedral mesh is invalid (inverted, degenerate, non-conforming, ...)."""


def _signed_volumes(nodes, tets):
    p = nodes[tets]
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0


@dataclasses.dataclass(frozen=True)
class TetMesh:
    """Labelled tetrahedral mesh.

    Parameters
    ----------
    nodes : array (n, 3), m
    tets : array (m, 4) of int
        Node indices, positively oriented (``(p1 - p0) . ((p2 - p0) x (p3 - p0)) > 0``).
    labels : array (m,) of int
        Tissue tag of each tetrahedron (:data:`TISSUE_TAGS`).

    Construction checks shapes, index ranges and finiteness only; run
    :func:`check_tet_mesh` for orientation, quality and conformity.
    """

    nodes: np.ndarray
    tets: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        v = np.ascontiguousarray(self.nodes, dtype=np.float64)
        t = np.ascontiguousarray(self.tets, dtype=np.int64)
        lab = np.ascontiguousarray(self.labels)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4:
            raise ParameterError("nodes", f"array of shape {v.shape}", "shape (n, 3), n >= 4")
        if not np.all(np.isfinite(v)):
            i = int(np.flatnonzero(~np.all(np.isfinite(v), axis=1))[0])
            raise ParameterError("nodes", f"node {i} = {v[i].tolist()}", "finite coordinates (m)")
        if t.ndim != 2 or t.shape[1] != 4 or len(t) == 0:
            raise ParameterError("tets", f"array of shape {t.shape}", "shape (m, 4), m >= 1")
        if t.min() < 0 or t.max() >= len(v):
            i = int(np.flatnonzero((t.min(axis=1) < 0) | (t.max(axis=1) >= len(v)))[0])
            raise ParameterError(
                "tets", f"tet {i} = {t[i].tolist()}", f"node indices in [0, {len(v) - 1}]"
            )
        if lab.shape != (len(t),) or not np.issubdtype(lab.dtype, np.integer):
            raise ParameterError(
                "labels", f"array of shape {lab.shape}, dtype {lab.dtype}", f"({len(t)},) integers"
            )
        object.__setattr__(self, "nodes", v)
        object.__setattr__(self, "tets", t)
        object.__setattr__(self, "labels", lab.astype(np.int32))

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_tets(self) -> int:
        return len(self.tets)

    @property
    def volumes(self) -> np.ndarray:
        """Signed volumes (m^3), positive for positively oriented tetrahedra."""
        return _signed_volumes(self.nodes, self.tets)

    @property
    def centroids(self) -> np.ndarray:
        """(m, 3) centroids, m."""
        return self.nodes[self.tets].mean(axis=1)

    @property
    def tags(self) -> tuple:
        """Tissue tags present, ascending."""
        return tuple(int(t) for t in np.unique(self.labels))

    def label_volume(self, tag) -> float:
        """Total volume (m^3) of the tetrahedra tagged ``tag`` (an int or a
        :data:`TISSUE_TAGS` name)."""
        tag = _tag(tag)
        return float(np.sum(np.abs(self.volumes[self.labels == tag])))

    def _faces(self):
        """All tet faces (4m, 3), outward from their tet, with their tet index."""
        f = self.tets[:, _FACES].reshape(-1, 3)
        owner = np.repeat(np.arange(self.n_tets), 4)
        return f, owner

    def _face_pairs(self):
        """Unique faces: (sorted faces, owners (k, 2) with -1 where one-sided, first
        oriented face per unique face, count per unique face)."""
        f, owner = self._faces()
        key = np.sort(f, axis=1)
        uniq, first, inv, cnt = np.unique(
            key, axis=0, return_index=True, return_inverse=True, return_counts=True
        )
        inv = inv.reshape(-1)
        order = np.argsort(inv, kind="stable")
        starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        own = np.full((len(uniq), 2), -1, dtype=np.int64)
        own[:, 0] = owner[order[starts]]
        two = cnt >= 2
        own[two, 1] = owner[order[starts[two] + 1]]
        return uniq, own, f[first], cnt

    def boundary_faces(self) -> np.ndarray:
        """Outer surface triangles (k, 3), counter-clockwise seen from outside
        (outward normals): faces that belong to one tetrahedron only."""
        f, _ = self._faces()
        key = np.sort(f, axis=1)
        _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
        return f[cnt[inv.reshape(-1)] == 1]

    def interface_faces(self, label_a, label_b) -> np.ndarray:
        """Triangles (k, 3) shared by a ``label_a`` and a ``label_b`` tetrahedron,
        oriented with their normal pointing from ``label_a`` into ``label_b``."""
        a, b = _tag(label_a), _tag(label_b)
        f, owner = self._faces()
        lab = self.labels[owner]
        sel_a = lab == a
        fa, fb = f[sel_a], f[lab == b]
        if len(fa) == 0 or len(fb) == 0:
            return np.zeros((0, 3), np.int64)
        ka, kb = np.sort(fa, axis=1), np.sort(fb, axis=1)
        kb_set = np.unique(kb, axis=0)
        # rows of ka that appear in kb: via a structured view
        dt = np.dtype([("a", np.int64), ("b", np.int64), ("c", np.int64)])
        hit = np.isin(
            np.ascontiguousarray(ka).view(dt).ravel(), np.ascontiguousarray(kb_set).view(dt)
        )
        return fa[hit]

    def radius_ratios(self) -> np.ndarray:
        """Normalised radius ratio 3 r_in / r_circ of every tetrahedron (1 for the
        regular tetrahedron, 0 for a flat one)."""
        p = self.nodes[self.tets]
        vol = np.abs(self.volumes)
        area = sum(
            0.5 * np.linalg.norm(np.cross(p[:, j] - p[:, i], p[:, k] - p[:, i]), axis=1)
            for i, j, k in _FACES
        )
        r_in = 3 * vol / area
        a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
        num = (
            np.einsum("ij,ij->i", a, a)[:, None] * np.cross(b, c)
            + np.einsum("ij,ij->i", b, b)[:, None] * np.cross(c, a)
            + np.einsum("ij,ij->i", c, c)[:, None] * np.cross(a, b)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            r_circ = np.linalg.norm(num, axis=1) / (12 * vol)
            return np.where(vol > 0, 3 * r_in / r_circ, 0.0)

    def dihedral_angles(self) -> np.ndarray:
        """(m, 6) dihedral angles (rad) at the six edges of every tetrahedron."""
        p = self.nodes[self.tets]
        n = np.stack(
            [
                np.cross(p[:, j] - p[:, i], p[:, k] - p[:, i])
                for i, j, k in _FACES  # outward normals of the faces opposite 0..3
            ],
            axis=1,
        )
        n = n / np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-300)
        pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
        cos = np.stack([-np.einsum("ij,ij->i", n[:, a], n[:, b]) for a, b in pairs], axis=1)
        return np.arccos(np.clip(cos, -1.0, 1.0))

    def quality(self) -> TetQuality:
        """Quality summary (:class:`TetQuality`)."""
        rr = self.radius_ratios()
        dih = np.degrees(self.dihedral_angles())
        e = (
            self.nodes[self.tets[:, [0, 0, 0, 1, 1, 2]]]
            - self.nodes[self.tets[:, [1, 2, 3, 2, 3, 3]]]
        )
        le = np.linalg.norm(e, axis=2)
        return TetQuality(
            n_nodes=self.n_nodes,
            n_tets=self.n_tets,
            radius_ratio_min=float(rr.min()),
            radius_ratio_mean=float(rr.mean()),
            dihedral_min_deg=float(dih.min()),
            dihedral_max_deg=float(dih.max()),
            edge_mean=float(le.mean()),
            edge_max=float(le.max()),
            fraction_dihedral_below_10deg=float(np.mean(dih.min(axis=1) < 10.0)),
        )


@dataclasses.dataclass(frozen=True)
class TetQuality:
    """Quality figures of a :class:`TetMesh` (radius ratio 1 and dihedral angles of
    70.5 deg for the regular tetrahedron; edge lengths in m)."""

    n_nodes: int
    n_tets: int
    radius_ratio_min: float
    radius_ratio_mean: float
    dihedral_min_deg: float
    dihedral_max_deg: float
    edge_mean: float
    edge_max: float
    fraction_dihedral_below_10deg: float


def _tag(tag) -> int:
    if isinstance(tag, str):
        if tag not in TISSUE_TAGS:
            raise ParameterError("tag", tag, f"one of {sorted(TISSUE_TAGS)} or an integer tag")
        return TISSUE_TAGS[tag]
    if isinstance(tag, (bool, np.bool_)) or int(tag) != tag:
        raise ParameterError("tag", tag, "an integer tissue tag or a TISSUE_TAGS name")
    return int(tag)


# ----------------------------------------------------------------------------- generator
_GOLDEN = np.pi * (3.0 - 5**0.5)


def _shell_points(n, rng):
    """n near-uniform unit vectors (golden-angle lattice), randomly rotated."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    rho = np.sqrt(1.0 - z * z)
    phi = _GOLDEN * k
    u = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return u @ q.T


def _n_on_shell(r, h):
    # a triangulated sphere with N vertices has 2N - 4 triangles; equilateral of edge h
    return max(12, int(round(8 * np.pi * r * r / (np.sqrt(3) * h * h))))


def _shell_radii(interfaces, h):
    """Shells of the generator, ascending.

    Layer i (inside interface i) is split into k_i >= 1 sub-layers about ``h``
    thick.  Returns the physical radius of every shell, its radius in the
    reference space (where every sub-layer is exactly ``h`` thick, so that thin
    layers are inflated to one edge length) and the index of each interface
    among the shells.
    """
    phys, ref, idx = [], [], []
    lo, s = 0.0, 0.0
    for hi in interfaces:
        k = max(1, int(round((hi - lo) / h)))
        phys += [lo + (hi - lo) * j / k for j in range(1, k + 1)]
        ref += [s + h * j for j in range(1, k + 1)]
        s += h * k
        lo = hi
        idx.append(len(phys) - 1)
    return np.array(phys), np.array(ref), idx


def _shell_mesh(ref_radii, shell_counts, seed=0):
    """Delaunay mesh of points on concentric shells (reference radii) plus the centre.

    Returns unit directions (n, 3) (zero for the centre), the shell index of
    every node (-1 for the centre) and the tetrahedra (m, 4), positively
    oriented in the reference space.
    """
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    dirs = [np.zeros((1, 3))]
    shell = [np.full(1, -1)]
    for i, n in enumerate(shell_counts):
        dirs.append(_shell_points(n, rng))
        shell.append(np.full(n, i))
    u = np.concatenate(dirs)
    shell = np.concatenate(shell)
    rad = np.where(shell < 0, 0.0, np.asarray(ref_radii)[np.maximum(shell, 0)])
    ref_nodes = u * rad[:, None]
    tets = Delaunay(ref_nodes).simplices.astype(np.int64)
    neg = _signed_volumes(ref_nodes, tets) < 0
    tets[neg] = tets[neg][:, [0, 2, 1, 3]]
    return u, shell, tets


def _layers_of_nodes(shell, interface_shells, n_shells):
    """Per node, the range [lo, hi] of layers it may belong to (layer i is inside
    interface i and outside interface i - 1)."""
    layer_of_shell = np.searchsorted(np.asarray(interface_shells), np.arange(n_shells), "left")
    lo = np.where(shell < 0, 0, layer_of_shell[np.maximum(shell, 0)])
    on = np.isin(shell, interface_shells)
    hi = np.where(on, lo + 1, lo)
    return lo, hi


def _verify_conforming(tets, lo, hi):
    """Index of the first tetrahedron crossing an interface, or None."""
    bad = lo[tets].max(axis=1) > hi[tets].min(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def _check_radii_tags(radii, tags, edge_length):
    r = np.asarray(radii, float)
    if r.ndim != 1 or len(r) not in (1, 2, 3, 4, 5, 6) or not np.all(np.isfinite(r)):
        raise ParameterError("radii", radii, "1 to 6 finite radii in m (3 or 4 for a head)")
    if np.any(r <= 0):
        raise ParameterError("radii", radii, "positive radii in m")
    asc = np.all(np.diff(r) > 0)
    desc = np.all(np.diff(r) < 0)
    if len(r) > 1 and not (asc or desc):
        raise ParameterError("radii", radii, "strictly increasing or strictly decreasing radii")
    if tags is None:
        defaults = {1: (2,), 2: (2, 4), 3: (2, 4, 5), 4: (2, 3, 4, 5)}
        if len(r) not in defaults:
            raise ParameterError("tags", None, f"{len(r)} tissue tags (no default for this count)")
        tags = defaults[len(r)] if asc or len(r) == 1 else defaults[len(r)][::-1]
    t = [_tag(x) for x in tags]
    if len(t) != len(r):
        raise ParameterError("tags", tags, f"{len(r)} tags, one per radius")
    if not (np.isfinite(edge_length) and edge_length > 0):
        raise ParameterError("edge_length", edge_length, "a positive edge length in m")
    order = np.argsort(r)
    return r[order], [t[i] for i in order]


def sphere_tet_mesh(radii, tags=None, edge_length=4e-3, center=(0.0, 0.0, 0.0), seed=0):
    """Conforming tetrahedral mesh of nested spheres.

    Parameters
    ----------
    radii : sequence of float, m
        Sphere radii, ascending or descending (e.g. ``(0.078, 0.080, 0.086, 0.092)``).
    tags : sequence of int or str, optional
        Tissue tag of the shell *inside* each radius (and outside the next smaller
        one), in the same order as ``radii``.  Default, innermost first: 4 spheres
        GM 2, CSF 3, bone 4, scalp 5; 3 spheres GM 2, bone 4, scalp 5.
    edge_length : float, m
        Target edge length.  Layers are split into sub-layers about one edge
        thick (a thin layer, e.g. 2 mm of CSF, has one sub-layer whatever its
        thickness).  About ``12 V / edge_length^3`` tetrahedra for a ball of
        volume V: 92 mm radius, 4 mm -> ~0.6 M... see ``benchmarks``.
    center : (3,) m
    seed : int
        Seed of the random rotation of each shell's lattice (deterministic).

    Returns
    -------
    TetMesh
        Every node of an interface lies on its sphere (to rounding), every
        interface is a union of mesh faces (checked), tetrahedra positively
        oriented.

    Raises
    ------
    MeshError
        When the Delaunay mesh does not contain an interface (a layer much
        thinner than ``edge_length`` next to another thin layer): choose a
        smaller ``edge_length``.
    """
    r, t = _check_radii_tags(radii, tags, edge_length)
    c = np.asarray(center, float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ParameterError("center", center, "a finite position (3,) in m")
    h = float(edge_length)
    u, shell, tets, lo = _layered_mesh(r, h, seed)
    phys, _, _ = _shell_radii(r, h)
    rad = np.where(shell < 0, 0.0, phys[np.maximum(shell, 0)])
    nodes = c + u * rad[:, None]
    _check_orientation(nodes, tets, f"radii {r.tolist()} m, edge_length {h} m")
    labels = np.asarray(t, np.int32)[lo[tets].max(axis=1)]
    return TetMesh(nodes, tets, labels)


def _layered_mesh(interfaces, h, seed):
    """Reference-space shell mesh of layers bounded by ``interfaces`` (ascending
    physical radii); verified conforming.  Returns directions, shell index per
    node, tets and the lowest layer of each node."""
    phys, ref, iface = _shell_radii(interfaces, h)
    counts = [_n_on_shell(x, h) for x in phys]
    u, shell, tets = _shell_mesh(ref, counts, seed)
    lo, hi = _layers_of_nodes(shell, iface, len(phys))
    bad = _verify_conforming(tets, lo, hi)
    if bad is not None:
        raise MeshError(
            f"tetrahedron {bad} crosses an interface (radii {list(interfaces)}, edge_length "
            f"{h}): the Delaunay mesh lost part of an interface; change edge_length or seed"
        )
    return u, shell, tets, lo


def _check_orientation(nodes, tets, what):
    vol = _signed_volumes(nodes, tets)
    if np.any(vol <= 0):
        i = int(np.flatnonzero(vol <= 0)[0])
        raise MeshError(
            f"tetrahedron {i} is inverted or flat after mapping the reference mesh to the "
            f"geometry ({what}; {int((vol <= 0).sum())} such): use a smaller edge_length"
        )


# ----------------------------------------------------------------------------- checks
def check_tet_mesh(mesh: TetMesh, tags=None, min_quality=1e-6) -> TetMesh:
    """Check a tetrahedral mesh; raise :class:`MeshError` naming the first bad element.

    Parameters
    ----------
    mesh : TetMesh
    tags : iterable of int, optional
        Allowed tissue tags (default: the values of :data:`TISSUE_TAGS`).
    min_quality : float
        Smallest allowed scaled volume ``6 sqrt(2) V / l_rms^3`` (1 for the
        regular tetrahedron): below it a tetrahedron is degenerate.

    Checks, in order: labels in ``tags``; every node used by a tetrahedron;
    no inverted (negative volume) or degenerate tetrahedron; every face shared by
    at most two tetrahedra; the one-sided faces form closed, consistently
    oriented surfaces (each edge used once in each direction) none of which
    encloses zero volume -- an internal face seen from one side only (a hanging
    node, two different triangulations of one quadrilateral) breaks one of
    these.

    Returns
    -------
    TetMesh
        ``mesh``, unchanged.
    """
    if not isinstance(mesh, TetMesh):
        raise ParameterError("mesh", type(mesh).__name__, "a TetMesh")
    allowed = set(TISSUE_TAGS.values()) if tags is None else {_tag(x) for x in tags}
    bad = ~np.isin(mesh.labels, list(allowed))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MeshError(
            f"tetrahedron {i} has tag {int(mesh.labels[i])}, not one of {sorted(allowed)} "
            f"({int(bad.sum())} such tetrahedra)"
        )
    used = np.zeros(mesh.n_nodes, bool)
    used[mesh.tets.ravel()] = True
    if not used.all():
        i = int(np.flatnonzero(~used)[0])
        raise MeshError(
            f"node {i} is not used by any tetrahedron ({int((~used).sum())} unreferenced nodes)"
        )
    if np.any(np.sort(mesh.tets, axis=1)[:, 1:] == np.sort(mesh.tets, axis=1)[:, :-1]):
        st = np.sort(mesh.tets, axis=1)
        i = int(np.flatnonzero(np.any(st[:, 1:] == st[:, :-1], axis=1))[0])
        raise MeshError(f"tetrahedron {i} repeats a node: {mesh.tets[i].tolist()}")
    vol = mesh.volumes
    e = mesh.nodes[mesh.tets[:, [0, 0, 0, 1, 1, 2]]] - mesh.nodes[mesh.tets[:, [1, 2, 3, 2, 3, 3]]]
    l_rms = np.sqrt(np.mean(np.sum(e * e, axis=2), axis=1))
    scaled = 6 * np.sqrt(2) * vol / np.maximum(l_rms, 1e-300) ** 3
    if np.any(scaled <= -min_quality):
        i = int(np.flatnonzero(scaled <= -min_quality)[0])
        raise MeshError(
            f"tetrahedron {i} is inverted (volume {vol[i]:.3e} m^3; "
            f"{int((scaled <= -min_quality).sum())} inverted)"
        )
    if np.any(np.abs(scaled) < min_quality):
        i = int(np.flatnonzero(np.abs(scaled) < min_quality)[0])
        raise MeshError(
            f"tetrahedron {i} is degenerate (scaled volume {scaled[i]:.2e} < {min_quality}; "
            f"nodes {mesh.tets[i].tolist()})"
        )
    _check_faces(mesh)
    return mesh


def _check_faces(mesh):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    uniq, own, oriented, cnt = mesh._face_pairs()
    if np.any(cnt > 2):
        k = int(np.flatnonzero(cnt > 2)[0])
        raise MeshError(
            f"face {uniq[k].tolist()} of tetrahedron {int(own[k, 0])} is shared by "
            f"{int(cnt[k])} tetrahedra (at most 2): overlapping elements"
        )
    one = cnt == 1
    bf, bown = oriented[one], own[one, 0]
    # directed edges of the one-sided faces: each must appear once in each direction
    de = np.concatenate([bf[:, [0, 1]], bf[:, [1, 2]], bf[:, [2, 0]]])
    face_of = np.tile(np.arange(len(bf)), 3)
    und = np.sort(de, axis=1)
    _, inv, ecnt = np.unique(und, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    fwd = de[:, 0] < de[:, 1]
    nf = np.bincount(inv, weights=fwd, minlength=len(ecnt))
    badedge = (ecnt != 2) | (nf != 1)
    if badedge.any():
        j = int(np.flatnonzero(badedge[inv])[0])
        raise MeshError(
            f"tetrahedron {int(bown[face_of[j]])}: its face {bf[face_of[j]].tolist()} is on "
            f"the mesh boundary but edge {de[j].tolist()} is shared by {int(ecnt[inv[j]])} "
            "boundary faces: non-conforming (a hanging node) or non-manifold mesh"
        )
    # connected components of the boundary: none may enclose zero volume
    g = coo_matrix((np.ones(len(face_of)), (face_of, inv)), shape=(len(bf), len(ecnt)))
    ff = (g.tocsr() @ g.T.tocsr()).tocsr()
    ncomp, comp = connected_components(ff, directed=False)
    p = mesh.nodes[bf]
    cross = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    vol6 = np.einsum("ij,ij->i", p[:, 0] - mesh.nodes.mean(axis=0), cross)
    cv = np.bincount(comp, weights=vol6, minlength=ncomp) / 6.0
    ca = np.bincount(comp, weights=area, minlength=ncomp)
    flat = np.abs(cv) <= 1e-6 * ca**1.5
    if flat.any():
        k = int(np.flatnonzero(flat)[0])
        j = int(np.flatnonzero(comp == k)[0])
        raise MeshError(
            f"tetrahedron {int(bown[j])}: its face {bf[j].tolist()} is inside the mesh but "
            "belongs to one tetrahedron only (a non-conforming interface: the tetrahedra on "
            "the other side use different faces there)"
        )


# ----------------------------------------------------------------------------- I/O
def _meshio_format(path):
    suffix = Path(path).suffix.lower()
    if suffix == ".msh":
        return "gmsh22"
    if suffix == ".vtu":
        return "vtu"
    raise ParameterError("path", str(path), "a .msh (gmsh 2.2 binary) or .vtu file name")


def write_tet_mesh(mesh: TetMesh, path, units="mm") -> Path:
    """Write a :class:`TetMesh` atomically: binary gmsh 2.2 (``.msh``) or ``.vtu``.

    Coordinates are written in ``units`` (default mm, as SimNIBS); tags as
    ``gmsh:physical`` and ``gmsh:geometrical`` cell data (the element's physical
    and elementary tags in ``.msh``).
    """
    import meshio

    from .._core.atomic import atomic_path

    if not isinstance(mesh, TetMesh):
        raise ParameterError("mesh", type(mesh).__name__, "a TetMesh")
    if units not in _UNITS:
        raise ParameterError("units", units, f"one of {sorted(_UNITS)}")
    fmt = _meshio_format(path)
    path = Path(path)
    lab = mesh.labels.astype(np.int32)
    m = meshio.Mesh(
        mesh.nodes / _UNITS[units],
        [("tetra", mesh.tets)],
        cell_data={"gmsh:physical": [lab], "gmsh:geometrical": [lab.copy()]},
    )
    with atomic_path(path) as tmp:
        if fmt == "gmsh22":
            meshio.write(tmp, m, file_format="gmsh22", binary=True)
        else:
            meshio.write(tmp, m, file_format="vtu", binary=True, compression="zlib")
    return path


def read_tet_mesh(path, units="mm", return_surfaces=False):
    """Read a labelled tetrahedral mesh (gmsh ``.msh`` or ``.vtu``) written in ``units``.

    Tetrahedra keep their physical tag (``gmsh:physical``; else
    ``gmsh:geometrical``; else 1).  Other cells (SimNIBS' surface triangles
    tagged 1001.., points, lines) are dropped, with the nodes they alone use.

    Parameters
    ----------
    path : path-like
    units : {"mm", "m", "cm"}
        Length unit of the file (SimNIBS writes mm).
    return_surfaces : bool
        Also return the surface triangles as ``{tag: (k, 3) node indices}``
        (indices into the returned mesh's nodes; triangles on dropped nodes removed).

    Returns
    -------
    TetMesh, or (TetMesh, dict)
    """
    import meshio

    if units not in _UNITS:
        raise ParameterError("units", units, f"one of {sorted(_UNITS)}")
    path = Path(path)
    _meshio_format(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file {str(path)!r} does not exist")
    try:
        m = meshio.read(path)
    except Exception as err:  # meshio raises many types on a corrupt file
        raise ParameterError(
            "path", str(path), f"a readable mesh file ({type(err).__name__}: {str(err)[:200]})"
        ) from err
    tets, labels, tris, tri_tags = [], [], [], []
    for i, block in enumerate(m.cells):
        tag = None
        for key in ("gmsh:physical", "gmsh:geometrical"):
            if key in m.cell_data:
                tag = np.asarray(m.cell_data[key][i])
                break
        if tag is None:
            tag = np.ones(len(block.data), np.int32)
        if block.type == "tetra":
            tets.append(block.data)
            labels.append(tag)
        elif block.type == "triangle":
            tris.append(block.data)
            tri_tags.append(tag)
        elif block.type in ("tetra10",):
            raise ParameterError("path", str(path), "linear tetrahedra (found 10-node tetra10)")
    if not tets:
        raise ParameterError("path", str(path), "a file with tetrahedra")
    tets = np.concatenate(tets).astype(np.int64)
    labels = np.concatenate(labels).astype(np.int32)
    used = np.zeros(len(m.points), bool)
    used[tets.ravel()] = True
    new = np.cumsum(used) - 1
    mesh = TetMesh(m.points[used, :3] * _UNITS[units], new[tets], labels)
    if not return_surfaces:
        return mesh
    surf = {}
    if tris:
        tr = np.concatenate(tris).astype(np.int64)
        tt = np.concatenate(tri_tags).astype(np.int64)
        keep = used[tr].all(axis=1)
        for tag in np.unique(tt[keep]):
            surf[int(tag)] = new[tr[keep & (tt == tag)]]
    return mesh, surf
