"""Labelled tetrahedral meshes: the volume conductors of FEM head models.

:class:`TetMesh` holds nodes (n, 3) in m, positively oriented tetrahedra
(m, 4) and one tissue tag per tetrahedron, with SimNIBS' tag numbers
(:data:`TISSUE_TAGS`: WM 1, GM 2, CSF 3, bone 4, scalp 5, ...; surfaces in
SimNIBS files carry the tag + 1000).

Builders
--------
:func:`sphere_tet_mesh` meshes nested spheres (e.g. DUNEuro's 4-shell model,
radii 78/80/86/92 mm) with every interface node exactly on its sphere;
:func:`template_head_tet_mesh` meshes the template head.  Both use one
generator written for biosim (no GPL/AGPL mesher; scipy only), built in a
reference ball and mapped radially onto the interfaces (spheres, or the
template's star-shaped surfaces):

- a core of body-centred cubic lattice points (its Delaunay cells are
  congruent tetrahedra with dihedral angles of 60 and 90 deg) inside a sphere
  S0 of golden-angle (Fibonacci) points, joined to it by a Delaunay band
  (qhull through :class:`scipy.spatial.Delaunay`), improved by 3 rounds of
  optimal-Delaunay (ODT) smoothing (Chen & Xu 2004) and 2 of sliver removal by
  random perturbation (Li 2000);
- outside S0, shells on the same directions -- the interfaces and sub-layers
  about one edge length apart -- joined by prisms cut into 3 tetrahedra with
  consistent diagonals, so every interface is a union of mesh faces by
  construction (no layer is too thin: a 2 mm CSF layer is one sub-layer);
- where the map folds a few elements (the template's skull base), the core
  nodes are moved by a small linear programme per node (untangling).

Meshes are positively oriented (checked before they are returned) and
conforming by construction (:func:`check_tet_mesh` verifies it); quality and
timings: ``benchmarks/tetmesh.py``.

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
_EDGE_FACE_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


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
        _, first, inv, cnt = np.unique(
            _row_keys(key, self.n_nodes), return_index=True, return_inverse=True, return_counts=True
        )
        uniq = key[first]
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
        return _hull_faces(self.tets)

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
        n = self.n_nodes
        hit = np.isin(_row_keys(np.sort(fa, axis=1), n), _row_keys(np.sort(fb, axis=1), n))
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


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _sphere_directions(n, rng):
    """n near-uniform unit vectors (golden-angle lattice), randomly rotated."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    rho = np.sqrt(1.0 - z * z)
    phi = _GOLDEN * k
    u = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    return u @ _random_rotation(rng).T


def _n_on_sphere(r, h):
    """Vertices of a sphere of radius r triangulated with edges ~h (2N - 4
    equilateral triangles of area sqrt(3) h^2 / 4)."""
    return max(12, int(round(8 * np.pi * r * r / (np.sqrt(3) * h * h))))


def _bcc_points(radius, a):
    """Body-centred cubic lattice points (cube edge a) strictly inside ``radius``."""
    m = int(np.ceil(radius / a)) + 1
    g = np.arange(-m, m + 1) * a
    corners = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = np.concatenate([corners, corners + a / 2])
    return pts[np.linalg.norm(pts, axis=1) < radius]


def _prism_tets(faces, bottom, top):
    """Split the prisms over ``faces`` (k, 3 direction indices) between two shells
    (node index arrays ``bottom``, ``top`` per direction) into 3 tetrahedra each.

    Every quadrilateral side (directions i < j) is cut along the diagonal from
    the bottom node of i to the top node of j, whichever prism it belongs to,
    so neighbouring prisms share their faces (Dompierre et al. 1999, Int. J.
    Numer. Meth. Eng., "How to subdivide pyramids, prisms and hexahedra into
    tetrahedra").
    """
    f = np.sort(faces, axis=1)
    p, q, r = f[:, 0], f[:, 1], f[:, 2]
    pb, qb, rb, pt, qt, rt = bottom[p], bottom[q], bottom[r], top[p], top[q], top[r]
    return np.concatenate(
        [
            np.stack([pb, qb, rb, rt], axis=1),
            np.stack([pb, qb, qt, rt], axis=1),
            np.stack([pb, pt, qt, rt], axis=1),
        ]
    )


_SLIVER_DEG = 10.0


def _min_dihedral(points, tets):
    """Smallest dihedral angle (deg) of every tetrahedron."""
    p = points[tets]
    n = np.stack([np.cross(p[:, j] - p[:, i], p[:, k] - p[:, i]) for i, j, k in _FACES], axis=1)
    n /= np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-300)
    cos = np.stack([-np.einsum("ij,ij->i", n[:, a], n[:, b]) for a, b in _EDGE_FACE_PAIRS], axis=1)
    return np.degrees(np.arccos(np.clip(cos.max(axis=1), -1.0, 1.0)))


def _remove_slivers(points, tets, n_on_sphere, radius, h, rng, rounds):
    """Sliver removal by random perturbation (Li 2000): move the vertices of
    tetrahedra with a dihedral angle below 10 deg by up to 0.15 h (the first
    ``n_on_sphere`` points, on the sphere of ``radius``, slide on it) and
    re-triangulate; ``rounds`` rounds, keeping the best; the other points stay
    0.3 h inside the sphere, so that its triangulation is the mesh's boundary.
    Modifies ``points``."""
    from scipy.spatial import Delaunay

    # ODT smoothing of the band (Chen & Xu 2004): move each free node near the
    # sphere to the volume-weighted mean of its tetrahedra's circumcentres
    band = np.flatnonzero(np.linalg.norm(points, axis=1) > radius - 3 * h)
    band = band[band >= n_on_sphere]
    for _ in range(_ODT_ROUNDS):
        cc = _circumcentres(points, tets)
        vol = np.abs(_signed_volumes(points, tets))
        num = np.zeros_like(points)
        den = np.zeros(len(points))
        for j in range(4):
            np.add.at(num, tets[:, j], vol[:, None] * cc)
            np.add.at(den, tets[:, j], vol)
        new = num[band] / den[band, None]
        r = np.linalg.norm(new, axis=1)
        points[band] = new * np.minimum(1.0, (radius - 0.3 * h) / r)[:, None]
        tets = _orient(points, Delaunay(points).simplices.astype(np.int64))
    best = (np.inf, points.copy(), tets)
    for k in range(rounds + 1):
        sliver = _min_dihedral(points, tets) < _SLIVER_DEG
        if sliver.sum() < best[0]:
            best = (sliver.sum(), points.copy(), tets)
        moved = np.unique(tets[sliver])
        if len(moved) == 0 or k == rounds:
            break
        points[moved] += rng.uniform(-0.15 * h, 0.15 * h, (len(moved), 3))
        on = moved[moved < n_on_sphere]  # these slide on their sphere
        points[on] *= (radius / np.linalg.norm(points[on], axis=1))[:, None]
        inside = moved[moved >= n_on_sphere]  # the others stay 0.3 h inside it
        r = np.linalg.norm(points[inside], axis=1)
        points[inside] *= np.minimum(1.0, (radius - 0.3 * h) / r)[:, None]
        tets = _orient(points, Delaunay(points).simplices.astype(np.int64))
    points[:] = best[1]
    return best[2]


_ODT_ROUNDS = 3


def _circumcentres(points, tets):
    p = points[tets]
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    num = (
        np.einsum("ij,ij->i", a, a)[:, None] * np.cross(b, c)
        + np.einsum("ij,ij->i", b, b)[:, None] * np.cross(c, a)
        + np.einsum("ij,ij->i", c, c)[:, None] * np.cross(a, b)
    )
    den = 2 * np.einsum("ij,ij->i", a, np.cross(b, c))
    return p[:, 0] + num / den[:, None]


def _hull_faces(tets):
    """Faces (k, 3) that belong to one tetrahedron only."""
    f = tets[:, _FACES].reshape(-1, 3)
    keys = _row_keys(np.sort(f, axis=1), int(tets.max()) + 1)
    _, inv, cnt = np.unique(keys, return_inverse=True, return_counts=True)
    return f[cnt[inv.reshape(-1)] == 1]


def _row_keys(rows, n):
    """One sortable key per row of small non-negative integers (< n)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if float(n) ** rows.shape[1] < 2.0**62:
        key = np.zeros(len(rows), np.int64)
        for j in range(rows.shape[1]):
            key = key * n + rows[:, j]
        return key
    return rows.view(np.dtype((np.void, 8 * rows.shape[1]))).ravel()


def _orient(points, tets):
    neg = _signed_volumes(points, tets) < 0
    tets[neg] = tets[neg][:, [0, 2, 1, 3]]
    return tets


def _layered_star_mesh(interfaces, mean_radii, tags, h, band, seed, sliver_rounds=2):
    """Conforming mesh of nested star-shaped layers about the origin.

    Parameters
    ----------
    interfaces : list of callables
        ``R_i(u) -> (n,) radii`` of the interfaces for unit directions ``u`` (n, 3),
        ascending (innermost first); ``R_0`` bounds the innermost layer.
    mean_radii : list of float
        Typical radius of every interface (sets the sub-layer counts).
    tags : list of int
        Tag of each layer (inside interface i, outside i - 1).
    h : float
        Edge length.
    band : int
        Prism sub-layers inside the innermost interface.

    Construction (reference space = a ball; the map to the geometry is radial):

    1. inner core: a body-centred cubic lattice (cube edge 1.1 h, edges 0.95-1.1 h;
       its Delaunay cells are congruent, dihedral angles 60 and 90 deg) kept
       0.8 h inside a sphere S0 carrying Fibonacci points; the Delaunay mesh of
       both fills S0, its boundary is S0's triangulation; the band next to S0 is
       smoothed (ODT) and its slivers perturbed away;
    2. outside S0, the same directions on every shell: ``band`` shells in the
       innermost layer, then every layer split into max(1, round(thickness / h))
       sub-layers; prisms between consecutive shells, cut into 3 tetrahedra
       each with consistent diagonals (conforming by construction);
    3. the shell at direction u and fraction a of layer i sits at
       ``R_{i-1}(u) + a (R_i(u) - R_{i-1}(u))``; a core point at radius
       rho |S0| is scaled by ``(R_0(u) / r_0)^rho`` (r_0 the mean radius): uniform
       at the centre, radial at S0, radius increasing with rho wherever
       R_0(u) > r_0 / e.  Interface nodes lie exactly on their interface.
    """
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    r1 = mean_radii[0]
    band = int(min(band, max(0, int(r1 / h) - 2)))
    s0 = r1 - band * h  # reference radius of S0 (the core's sphere)
    lam = s0 / r1
    # angular resolution: edges ~h on the innermost interface
    n_dir = _n_on_sphere(r1, h)
    u = _sphere_directions(n_dir, rng)
    core = _bcc_points(s0 - 0.8 * h, 1.1 * h) @ _random_rotation(rng).T
    # where the lattice is cut, its square faces are cocircular (degenerate for
    # Delaunay: qhull would return flat tetrahedra): move the outer lattice
    # points to generic positions
    outer = np.linalg.norm(core, axis=1) > s0 - 2.5 * h
    core[outer] += rng.uniform(-0.1 * h, 0.1 * h, (int(outer.sum()), 3))
    ref_inner = np.concatenate([s0 * u, core])
    inner_tets = _orient(ref_inner, Delaunay(ref_inner).simplices.astype(np.int64))
    inner_tets = _remove_slivers(ref_inner, inner_tets, n_dir, s0, h, rng, sliver_rounds)
    hull = _hull_faces(inner_tets)
    u = ref_inner[:n_dir] / s0
    core = ref_inner[n_dir:]
    if hull.max() >= n_dir:
        raise MeshError("the core lattice reached the core's boundary sphere (internal error)")
    # shells: (layer index, fraction in the layer); shell 0 is S0 (layer 0, fraction lam)
    shells = [(0, lam)]
    shells += [(0, lam + (1 - lam) * j / band) for j in range(1, band + 1)]
    for i in range(1, len(mean_radii)):
        k = max(1, int(round((mean_radii[i] - mean_radii[i - 1]) / h)))
        shells += [(i, j / k) for j in range(1, k + 1)]
    n_core = len(core)
    n_nodes = n_dir + n_core + n_dir * (len(shells) - 1)
    shell_nodes = [np.arange(n_dir)] + [
        n_dir + n_core + n_dir * (j - 1) + np.arange(n_dir) for j in range(1, len(shells))
    ]
    tets = [inner_tets]
    labels = [np.full(len(inner_tets), tags[0], np.int32)]
    ref_nodes = np.zeros((n_nodes, 3))
    ref_nodes[: n_dir + n_core] = ref_inner
    for j in range(1, len(shells)):
        ref_nodes[shell_nodes[j]] = (s0 + j * h) * u
        t = _prism_tets(hull, shell_nodes[j - 1], shell_nodes[j])
        tets.append(_orient(ref_nodes, t))
        labels.append(np.full(len(t), tags[shells[j][0]], np.int32))
    tets = np.concatenate(tets)
    labels = np.concatenate(labels)
    # radial map to the geometry
    radii_at = [fn(u) for fn in interfaces]
    nodes = np.zeros((n_nodes, 3))
    for j, (i, a) in enumerate(shells):
        lo = radii_at[i - 1] if i > 0 else np.zeros(n_dir)
        r = lo + a * (radii_at[i] - lo)
        nodes[shell_nodes[j]] = r[:, None] * u
    rc = np.linalg.norm(core, axis=1)
    safe = np.maximum(rc, 1e-300)[:, None]
    uc = np.where(rc[:, None] > 0, core / safe, np.array([0.0, 0.0, 1.0]))
    # the core is blended from a uniform scaling at the centre (where the radial
    # map, direction-dependent, would be singular) to the radial map at S0
    k = interfaces[0](uc) / mean_radii[0]
    scale = lam * mean_radii[0] / s0 * k ** (rc / s0)
    nodes[n_dir : n_dir + n_core] = (rc * scale)[:, None] * uc
    free = np.zeros(n_nodes, bool)
    free[n_dir : n_dir + n_core] = True
    radial = np.zeros(n_nodes, bool)
    radial[:n_dir] = band > 0  # S0 (not an interface when band > 0)
    nodes = _untangle(nodes, tets, free, radial)
    return nodes, tets, labels


def _untangle(nodes, tets, free, radial, sweeps=40):
    """Untangle the few elements a strongly varying radial map folds (at the
    skull base).  Every movable node of an inverted tetrahedron -- ``free``
    nodes in any direction, ``radial`` ones along their ray from the origin --
    moves, within half its mean edge length, to the point maximising the
    smallest volume of its tetrahedra: a linear programme, as each volume is
    linear in the node's position (Freitag & Plassmann 2000, Int. J. Numer. Meth.
    Eng. 49:109).  A move is kept when it leaves fewer inverted tetrahedra
    around the node, or as many with a larger smallest volume; after 5 sweeps
    the neighbours move too."""
    from scipy.optimize import linprog

    vol = _signed_volumes(nodes, tets)
    if np.all(vol > 0):
        return nodes
    nodes = nodes.copy()
    flat = tets.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(len(nodes) + 1))
    movable = free | radial

    def incident(n):
        return order[starts[n] : starts[n + 1]] // 4

    for sweep in range(sweeps):
        bad = np.flatnonzero(_signed_volumes(nodes, tets) <= 0)
        if len(bad) == 0:
            break
        cand = np.unique(tets[bad])
        if sweep >= 5:
            cand = np.unique(np.concatenate([tets[incident(n)].ravel() for n in cand]))
        for n in cand[movable[cand]]:
            inc = incident(n)
            t = tets[inc]
            pos = np.argmax(t == n, axis=1)
            # V = g . (p - a) / 6, g the reversed outward normal of the face opposite n
            f = np.take_along_axis(t, _FACES[pos], axis=1)
            pa, pb, pc = nodes[f[:, 0]], nodes[f[:, 1]], nodes[f[:, 2]]
            g = -np.cross(pb - pa, pc - pa)
            basis = np.eye(3) if free[n] else (nodes[n] / np.linalg.norm(nodes[n]))[None, :]
            reach = 0.5 * np.linalg.norm(nodes[t] - nodes[n], axis=2).sum() / (3 * len(inc))
            # in units of reach (volumes of order 1: the solver's tolerances are absolute)
            v0 = np.einsum("ij,ij->i", g, nodes[n] - pa) / (6 * reach**3)
            # variables (d, s): maximise s subject to v0 + g.(B^T d)/6 >= s, |d| <= 1
            gb = g @ basis.T / (6 * reach**2)
            res = linprog(
                np.r_[np.zeros(len(basis)), -1.0],
                A_ub=np.hstack([-gb, np.ones((len(inc), 1))]),
                b_ub=v0,
                bounds=[(-1.0, 1.0)] * len(basis) + [(None, None)],
            )
            if res.success:
                v1 = v0 + gb @ res.x[:-1]
                k0, k1 = np.sum(v0 <= 0), np.sum(v1 <= 0)
                if k1 < k0 or (k1 == k0 and v1.min() > v0.min()):
                    nodes[n] = nodes[n] + reach * (basis.T @ res.x[:-1])
    return nodes


def _check_radii_tags(radii, tags, edge_length):
    r = np.asarray(radii, float)
    if r.ndim != 1 or not 1 <= len(r) <= 8 or not np.all(np.isfinite(r)):
        raise ParameterError("radii", radii, "1 to 8 finite radii in m (3 or 4 for a head)")
    if np.any(r <= 0):
        raise ParameterError("radii", radii, "positive radii in m")
    asc = bool(np.all(np.diff(r) > 0))
    desc = bool(np.all(np.diff(r) < 0))
    if len(r) > 1 and not (asc or desc):
        raise ParameterError("radii", radii, "strictly increasing or strictly decreasing radii")
    if tags is None:
        defaults = {1: (2,), 2: (2, 4), 3: (2, 4, 5), 4: (2, 3, 4, 5)}
        if len(r) not in defaults:
            raise ParameterError("tags", None, f"{len(r)} tissue tags (no default for this count)")
        tags = defaults[len(r)] if asc or len(r) == 1 else defaults[len(r)][::-1]
    if isinstance(tags, (str, int)) or len(tags) != len(r):
        raise ParameterError("tags", tags, f"{len(r)} tags, one per radius")
    t = [_tag(x) for x in tags]
    if not (np.isfinite(edge_length) and edge_length > 0):
        raise ParameterError("edge_length", edge_length, "a positive edge length in m")
    if edge_length > r.min():
        raise ParameterError(
            "edge_length", edge_length, f"at most the smallest radius ({r.min()} m)"
        )
    order = np.argsort(r)
    return r[order], [t[i] for i in order]


def sphere_tet_mesh(
    radii, tags=None, edge_length=4e-3, center=(0.0, 0.0, 0.0), band=2, seed=0
) -> TetMesh:
    """Conforming tetrahedral mesh of nested spheres.

    Parameters
    ----------
    radii : sequence of float, m
        Sphere radii, ascending or descending (e.g. ``(0.078, 0.080, 0.086, 0.092)``
        for DUNEuro's 4-shell model).
    tags : sequence of int or str, optional
        Tissue tag of the region *inside* each radius (and outside the next
        smaller one), in the same order as ``radii``.  Default, innermost first:
        4 spheres GM 2, CSF 3, bone 4, scalp 5; 3 spheres GM 2, bone 4, scalp 5.
    edge_length : float, m
        Target edge length h.  Every layer is split into max(1, round(t / h))
        sub-layers (so a 2 mm CSF layer is one sub-layer thick at any h > 1.3 mm).
        For the 4-shell model: 11.5 k tetrahedra at 16 mm, 58 k at 8 mm, 121 k at
        6 mm, 0.52 M at 3.7 mm (``benchmarks/tetmesh.py``); about
        12 V / h^3 for a ball of volume V, plus the thin layers' prisms.
    center : (3,) m
    band : int
        Sub-layers of prisms inside the innermost sphere, between it and the
        body-centred cubic core.
    seed : int
        Seed of the random rotations of the lattices (the mesh is deterministic).

    Returns
    -------
    TetMesh
        Conforming, positively oriented; every node of an interface lies on its
        sphere; the innermost region is a body-centred cubic lattice core
        (congruent, well-shaped tetrahedra) joined by a Delaunay band to
        radially stacked prisms (3 tetrahedra each) in the outer layers.
    """
    r, t = _check_radii_tags(radii, tags, edge_length)
    c = np.asarray(center, float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ParameterError("center", center, "a finite position (3,) in m")
    if int(band) != band or band < 0:
        raise ParameterError("band", band, "a non-negative integer")
    fns = [(lambda u, rr=rr: np.full(len(u), rr)) for rr in r]
    nodes, tets, labels = _layered_star_mesh(fns, list(r), t, float(edge_length), band, seed)
    _check_orientation(nodes, tets, f"radii {r.tolist()} m, edge_length {edge_length} m")
    return TetMesh(nodes + c, tets, labels)


def _check_orientation(nodes, tets, what):
    vol = _signed_volumes(nodes, tets)
    if np.any(vol <= 0):
        i = int(np.flatnonzero(vol <= 0)[0])
        raise MeshError(
            f"tetrahedron {i} is inverted or flat after mapping the reference mesh to the "
            f"geometry ({what}; {int((vol <= 0).sum())} such): use a smaller edge_length"
        )


# ----------------------------------------------------------------------------- template head
class _RadialSurface:
    """A closed surface star-shaped from the origin as a radial function r(u):
    the distance along the ray of unit direction u to the surface (largest hit)."""

    def __init__(self, vertices, faces):
        from scipy.spatial import cKDTree

        self.tri = vertices[faces]  # (k, 3, 3), origin = star centre
        cen = self.tri.mean(axis=1)
        self.tree = cKDTree(cen / np.linalg.norm(cen, axis=1, keepdims=True))

    def _hit(self, u, cand):
        """Ray-triangle distances (Moller-Trumbore) of rays u (n, 3) against
        candidate faces cand (n, k); -inf where missed."""
        tri = self.tri[cand]  # (n, k, 3, 3)
        a = tri[:, :, 0]
        e1, e2 = tri[:, :, 1] - a, tri[:, :, 2] - a
        uu = np.broadcast_to(u[:, None, :], a.shape)
        p = np.cross(uu, e2)
        det = np.einsum("nkj,nkj->nk", e1, p)
        ok = np.abs(det) > 1e-30
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = -a
        bu = np.einsum("nkj,nkj->nk", s, p) * inv
        q = np.cross(s, e1)
        bv = np.einsum("nkj,nkj->nk", q, uu) * inv
        t = np.einsum("nkj,nkj->nk", e2, q) * inv
        eps = 1e-9
        hit = ok & (bu >= -eps) & (bv >= -eps) & (bu + bv <= 1 + eps) & (t > 0)
        return np.where(hit, t, -np.inf).max(axis=1)

    def __call__(self, u):
        u = np.asarray(u, float)
        r = np.full(len(u), -np.inf)
        todo = np.arange(len(u))
        for k in (8, 32, 128):
            if len(todo) == 0:
                break
            _, cand = self.tree.query(u[todo], k=min(k, len(self.tri)))
            r[todo] = self._hit(u[todo], cand)
            todo = todo[~np.isfinite(r[todo])]
        if len(todo):
            raise GeometryError(f"{len(todo)} rays from the centre miss a head surface")
        return r


def _atlas_brain_labels(points_mm_fs, samples):
    """WM 1 / GM 2 / CSF 3 from biosim's MNI152 tissue atlas: the largest of the
    three fractions averaged over ``samples`` points per element (fsaverage mm);
    CSF where the atlas has no brain tissue."""
    from scipy.ndimage import map_coordinates

    from .anatomy import FSAVERAGE_TO_MNI152, TISSUES, mni_anatomy

    anat = mni_anatomy()
    to_vox = np.linalg.inv(np.asarray(anat.affine)) @ FSAVERAGE_TO_MNI152
    p = points_mm_fs.reshape(-1, 3)
    ijk = p @ to_vox[:3, :3].T + to_vox[:3, 3]
    frac = np.stack(
        [
            map_coordinates(anat.fraction(t), ijk.T, order=1, mode="constant", cval=0.0)
            for t in ("wm", "gm", "csf")
        ],
        axis=1,
    ).reshape(-1, samples, 3)
    assert TISSUES[:3] == ("gm", "wm", "csf")
    f = frac.mean(axis=1)
    lab = np.array([1, 2, 3], np.int32)[np.argmax(f, axis=1)]
    return np.where(f.sum(axis=1) < 0.05, np.int32(3), lab)


def template_head_tet_mesh(
    edge_length=4e-3, tissues=True, n_vertices=10242, band=2, seed=0
) -> TetMesh:
    """Conforming tetrahedral mesh of the template head (fsaverage MRI frame, m).

    The inner skull, outer skull and scalp of
    :func:`biosim.geometry.template_head.template_head` bound the brain, skull
    (tag 4) and scalp (tag 5); every surface is star-shaped from
    :func:`~biosim.geometry.template_head.template_center`, so the shell
    generator of :func:`sphere_tet_mesh` is mapped onto them along rays from the
    centre (nodes of an interface lie on the surface's triangles).  Layers are
    split into round(mean thickness / h) sub-layers (skull ~6 mm, scalp ~16 mm
    on average; the scalp's sub-layers stretch to ~20 mm in the neck and face).

    Parameters
    ----------
    edge_length : float, m
        Target edge length h: 19 k tetrahedra at 12 mm, 60 k at 8 mm, 0.44 M
        at 4 mm (``benchmarks/tetmesh.py``).
    tissues : bool
        Label the brain's tetrahedra WM 1 / GM 2 / CSF 3 by the largest fraction
        of biosim's MNI152 tissue atlas (:func:`biosim.geometry.anatomy.mni_anatomy`,
        mapped by ``FSAVERAGE_TO_MNI152``) averaged over 5 points per element;
        False: the whole brain is GM 2.  The labels follow the elements (a
        staircase at h, not the cortical surface).
    n_vertices : {642, 2562, 10242}
        Resolution of the template surfaces the interfaces are placed on.
    band, seed : int
        As in :func:`sphere_tet_mesh`.

    Returns
    -------
    TetMesh
    """
    from .template_head import SIZES, template_center, template_head

    if n_vertices not in SIZES:
        raise ParameterError("n_vertices", n_vertices, f"one of {SIZES}")
    if not (np.isfinite(edge_length) and 1e-3 <= edge_length <= 2e-2):
        raise ParameterError("edge_length", edge_length, "an edge length in [0.001, 0.02] m")
    if int(band) != band or band < 0:
        raise ParameterError("band", band, "a non-negative integer")
    c = template_center()
    surfaces = template_head(n_vertices)
    fns = [_RadialSurface(s.vertices - c, s.faces) for s in surfaces]
    rad = [np.linalg.norm(s.vertices - c, axis=1) for s in surfaces]
    mean_radii = [float(np.mean(rad[0]))]
    for lo, hi in zip(rad[:-1], rad[1:]):
        mean_radii.append(mean_radii[-1] + float(np.mean(hi - lo)))
    nodes, tets, labels = _layered_star_mesh(
        fns, mean_radii, [2, 4, 5], float(edge_length), int(band), seed
    )
    _check_orientation(nodes, tets, f"template head, edge_length {edge_length} m")
    nodes = nodes + c
    if tissues:
        brain = np.flatnonzero(labels == 2)
        p = nodes[tets[brain]]
        cen = p.mean(axis=1, keepdims=True)
        pts = np.concatenate([cen, 0.5 * (cen + p)], axis=1) * 1e3
        labels = labels.copy()
        labels[brain] = _atlas_brain_labels(pts, 5)
    return TetMesh(nodes, tets, labels)


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
    _, inv, ecnt = np.unique(_row_keys(und, mesh.n_nodes), return_inverse=True, return_counts=True)
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
    # the format's own reader: meshio.read() prints and calls sys.exit on a bad file
    reader = meshio.gmsh.read if path.suffix.lower() == ".msh" else meshio.vtu.read
    try:
        m = reader(str(path))
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
