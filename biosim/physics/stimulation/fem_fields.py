"""TMS and TES electric fields on tetrahedral heads (the shared FEM core, P1 or P2).

TMS (quasi-static, Heller & van Hulsteyn 1992; Windhoff et al. 2013 for the FEM form)::

    div(sigma grad phi) = -div(sigma dA/dt),   sigma (grad phi + dA/dt) . n = 0 on the scalp,
    E = -dA/dt - grad phi.

The weak form ``int sigma grad phi . grad v = int sigma E_p . grad v`` with the primary
field ``E_p = -dA/dt`` at the 4-point degree-2 quadrature points of every element is
:func:`biosim.physics.fem.divergence_rhs`; the secondary field ``-grad phi`` is the FEM
part, while ``-dA/dt`` is always evaluated exactly (Biot-Savart) where the field is
wanted.  Fields come per element (at the centroid), at arbitrary points from the FEM
gradient, or from a *recovered* nodal gradient of phi: per tissue compartment, a
least-squares linear fit to the element gradients of the patch around each node
(superconvergent patch recovery, Zienkiewicz & Zhu 1992), interpolated linearly.

TES: current-controlled electrodes (see :mod:`.electrodes`); a montage is the
superposition of unit solutions (+1 A at electrode k, -1 A at the reference electrode),
all computed with one factorisation.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..._core.errors import GeometryError, ParameterError
from ..fem import FEMSolver, FEMSpace, divergence_rhs, element_quadrature, locate_points
from ..fem.assembly import check_conductivity, edge_index
from .coils import Coil, CoilPlacement, check_coil_outside, transform_coil, vector_potential
from .electrodes import Electrode, Montage, check_currents, electrode_footprint

# 6-point degree-4 rule on the triangle (Dunavant 1985): barycentric points, weights (sum 1)
_A1, _W1 = 0.445948490915965, 0.223381589678011
_A2, _W2 = 0.091576213509771, 0.109951743655322
_TRI_PTS = np.array(
    [
        [_A1, _A1, 1 - 2 * _A1],
        [_A1, 1 - 2 * _A1, _A1],
        [1 - 2 * _A1, _A1, _A1],
        [_A2, _A2, 1 - 2 * _A2],
        [_A2, 1 - 2 * _A2, _A2],
        [1 - 2 * _A2, _A2, _A2],
    ]
)
_TRI_W = np.array([_W1] * 3 + [_W2] * 3)
_TRI_EDGES = np.array([[0, 1], [1, 2], [0, 2]])


def _face_basis(order):
    """Values (q, k) of the k trace basis functions at the triangle quadrature points."""
    lam = _TRI_PTS
    if order == 1:
        return lam
    a, b = _TRI_EDGES[:, 0], _TRI_EDGES[:, 1]
    return np.concatenate([lam * (2 * lam - 1), 4 * lam[:, a] * lam[:, b]], axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class Scalp:
    """Outer boundary triangles of a head mesh: node indices (f, 3), centroids, outward
    unit normals, areas (m^2), and area-weighted vertex normals."""

    faces: np.ndarray
    centroids: np.ndarray
    normals: np.ndarray
    areas: np.ndarray
    vertex_ids: np.ndarray
    vertex_normals: np.ndarray

    @classmethod
    def of(cls, nodes, faces) -> Scalp:
        x = nodes[faces]
        cr = np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])
        area = 0.5 * np.linalg.norm(cr, axis=1)
        normals = cr / (2 * area[:, None])
        vid = np.unique(faces)
        vn = np.zeros((len(nodes), 3))
        for i in range(3):
            np.add.at(vn, faces[:, i], cr)
        vn = vn[vid] / np.linalg.norm(vn[vid], axis=1, keepdims=True)
        return cls(faces, x.mean(axis=1), normals, area, vid, vn)


@dataclasses.dataclass(frozen=True, eq=False)
class StimulationField:
    """A solved stimulation problem: the FEM potential and, for TMS, the coil.

    Use :meth:`element_field`, :meth:`field_at` and :meth:`recovered_field_at` (V/m).
    """

    model: StimulationModel
    potential: np.ndarray  # (n_dofs,) V
    coil: Coil | None = None
    didt: float = 0.0

    def primary(self, points):
        """-dA/dt (V/m) at points (p, 3); zeros for TES."""
        pts = np.asarray(points, float).reshape(-1, 3)
        if self.coil is None:
            return np.zeros_like(pts)
        return -self.didt * np.asarray(vector_potential(self.coil, pts))

    def element_field(self):
        """E (m, 3) in V/m at the element centroids."""
        sp_ = self.model.space
        cent = sp_.nodes[sp_.tets].mean(axis=1)
        bary = np.full((sp_.n_elements, 4), 0.25)
        g = sp_.basis_gradients(np.arange(sp_.n_elements), bary)
        grad = np.einsum("mik,mi->mk", g, self.potential[sp_.element_dofs])
        return self.primary(cent) - grad

    def field_at(self, points, elements=None, bary=None):
        """E (p, 3) in V/m at points inside the head from the FEM gradient (P1: constant
        per element; P2: linear)."""
        pts = np.asarray(points, float).reshape(-1, 3)
        if elements is None:
            elements, bary = locate_points(self.model.space, pts)
        g = self.model.space.basis_gradients(elements, bary)
        u = self.potential[self.model.space.element_dofs[elements]]
        return self.primary(pts) - np.einsum("pik,pi->pk", g, u)

    def recovered_field_at(self, points, elements=None, bary=None):
        """E (p, 3) in V/m with the recovered (superconvergent patch) gradient of phi,
        interpolated linearly inside each element from the nodal values of its own
        compartment (P1; with P2 the FEM gradient itself, :meth:`field_at`)."""
        pts = np.asarray(points, float).reshape(-1, 3)
        if self.model.order == 2:  # the P2 gradient is already continuous-accurate
            return self.field_at(pts, elements, bary)
        if elements is None:
            elements, bary = locate_points(self.model.space, pts)
        grad = self.model.recovered_gradient(self.potential)  # dict label -> (n, 3)
        labels = self.model.space.labels[elements]
        out = np.zeros((len(pts), 3))
        tets = self.model.space.tets[elements]
        for lab, gn in grad.items():
            sel = labels == lab
            out[sel] = np.einsum("pi,pik->pk", bary[sel], gn[tets[sel]])
        return self.primary(pts) - out

    def delivered_currents(self):
        """TES: the current (A) each electrode delivers into the head (complete electrode
        model or Neumann), from the solution."""
        if self.coil is not None:
            raise ParameterError("field", "a TMS field", "a TES solution")
        return self._currents


class StimulationModel:
    """A head mesh with its conductivity and a factorised FEM solver, for TMS and TES.

    Parameters
    ----------
    mesh : TetMesh
        Tetrahedral head (m), positively oriented.
    sigma : array (m,) or (m, 3, 3)
        Conductivity per element, S/m (isotropic or anisotropic tensors; see
        :func:`biosim.physics.fem.tissue_conductivity`).
    order : {1, 2}
        Lagrange order of the potential.
    method : {"auto", "direct", "amg"}
        Linear solver (:class:`biosim.physics.fem.FEMSolver`).
    """

    def __init__(self, mesh, sigma, order=1, method="auto"):
        self.mesh = mesh
        self.space = FEMSpace(mesh, order)
        self.sigma = check_conductivity(self.space, sigma)
        self.method = method
        self.solver = FEMSolver(self.space, self.sigma, method=method)
        self.scalp = Scalp.of(self.space.nodes, np.asarray(mesh.boundary_faces()))

    @property
    def order(self):
        return self.space.order

    # ------------------------------------------------------------------ TMS
    def check_coil(self, coil: Coil, placement: CoilPlacement | None, min_distance=0.0):
        """Raise :class:`GeometryError` if the placed coil intersects the head."""
        check_coil_outside(
            coil,
            placement,
            self.space.nodes[self.scalp.vertex_ids],
            self.scalp.vertex_normals,
            min_distance,
        )

    def scalp_point(self, target):
        """The scalp point over a target inside the head, and the outward scalp normal there.

        The line through ``target`` (3,) m along the normal of the nearest scalp node is
        intersected with the mesh's scalp triangles and the outermost crossing kept (for
        a point just outside the scalp, e.g. an EEG position, its projection); the normal
        is the linear interpolation of the area-weighted node normals at the hit.  Feed both to
        :func:`biosim.physics.stimulation.place_coil`.

        Returns
        -------
        point, normal : arrays (3,), m and unit
        """
        t = np.asarray(target, float)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ParameterError("target", t.tolist(), "a finite point (3,) in m")
        nodes = self.space.nodes
        vid = self.scalp.vertex_ids
        u = self.scalp.vertex_normals[np.argmin(np.linalg.norm(nodes[vid] - t, axis=1))]
        tri = nodes[self.scalp.faces]
        e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        p = np.cross(u, e2)
        det = np.einsum("ij,ij->i", e1, p)
        ok = np.abs(det) > 1e-30
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = t - tri[:, 0]
        a = np.einsum("ij,ij->i", s, p) * inv
        q = np.cross(s, e1)
        b = (q @ u) * inv
        dist = np.einsum("ij,ij->i", e2, q) * inv
        hit = ok & (a >= -1e-12) & (b >= -1e-12) & (a + b <= 1 + 1e-12)
        if not hit.any():
            raise GeometryError(f"no scalp triangle on the line through {t.tolist()} m")
        k = np.flatnonzero(hit)[np.argmax(dist[hit])]  # the outermost crossing
        point = t + dist[k] * u
        lam = np.array([1 - a[k] - b[k], a[k], b[k]])
        vn = np.zeros((len(nodes), 3))
        vn[vid] = self.scalp.vertex_normals
        n = lam @ vn[self.scalp.faces[k]]
        return point, n / np.linalg.norm(n)

    def tms_rhs(self, coil: Coil, placement: CoilPlacement | None = None, didt=1.0):
        """Load vector of the primary field of a placed coil (A)."""
        c = coil if placement is None else transform_coil(coil, placement)
        q = element_quadrature(self.space)  # (m, 4, 3)
        ep = -didt * np.asarray(vector_potential(c, q.reshape(-1, 3))).reshape(q.shape)
        return divergence_rhs(self.space, self.sigma, ep)

    def tms(self, coil: Coil, placement: CoilPlacement | None = None, didt=1.0, check=True):
        """Solve the TMS problem for a placed coil; returns a :class:`StimulationField`.

        ``didt`` in A/s.  With ``check``, a coil that intersects the head raises
        :class:`GeometryError`.
        """
        if not np.isfinite(didt):
            raise ParameterError("didt", didt, "a finite dI/dt in A/s")
        if check:
            self.check_coil(coil, placement)
        c = coil if placement is None else transform_coil(coil, placement)
        phi = self.solver.solve(self.tms_rhs(c, None, didt))
        return StimulationField(self, phi, c, float(didt))

    # ------------------------------------------------------------------ recovery
    def recovered_gradient(self, potential):
        """Recovered gradient of a potential at the nodes, per compartment:
        ``{label: (n_nodes, 3)}`` (V/m; zero at nodes outside the compartment)."""
        key = id(potential)
        cache = self.__dict__.setdefault("_rec_cache", {})
        if key in cache and cache[key][0] is potential:
            return cache[key][1]
        sp_ = self.space
        g = sp_.basis_gradients(np.arange(sp_.n_elements), np.full((sp_.n_elements, 4), 0.25))
        ge = np.einsum("mik,mi->mk", g, np.asarray(potential)[sp_.element_dofs])
        out = {}
        cent = sp_.nodes[sp_.tets].mean(axis=1)
        for lab in np.unique(sp_.labels):
            out[int(lab)] = _patch_recovery(
                sp_.nodes, sp_.tets, sp_.volumes, cent, ge, sp_.labels == lab
            )
        cache.clear()
        cache[key] = (potential, out)
        return out

    # ------------------------------------------------------------------ TES
    @cached_property
    def _face_dofs(self):
        """P2: edge unknown of each scalp-triangle edge (f, 3); P1: unused."""
        if self.order == 1:
            return None
        f = self.scalp.faces
        pairs = np.sort(f[:, _TRI_EDGES].reshape(-1, 2), axis=1)
        n = len(self.space.nodes)
        return (n + edge_index(self.space.edges[0], pairs, n)).reshape(-1, 3)

    def _trace_dofs(self, faces_idx):
        f = self.scalp.faces[faces_idx]
        if self.order == 1:
            return f
        return np.concatenate([f, self._face_dofs[faces_idx]], axis=1)

    def _electrode_terms(self, el: Electrode, tolerance):
        idx = electrode_footprint(
            el, self.scalp.centroids, self.scalp.normals, self.scalp.areas, tolerance
        )
        n = self.space.n_dofs
        if el.shape == "point":
            # nearest scalp node of the nearest triangle
            f = self.scalp.faces[idx[0]]
            k = f[np.argmin(np.linalg.norm(self.space.nodes[f] - np.asarray(el.center), axis=1))]
            # a point current: the load is the test functions at the node (P2 edge
            # functions vanish at vertices)
            b = np.zeros(n)
            b[k] = 1.0
            return idx, b, None, 0.0
        dofs = self._trace_dofs(idx)  # (f, k)
        phi = _face_basis(self.order)  # (q, k)
        area = self.scalp.areas[idx]
        total = float(area.sum())
        bvec = np.zeros(n)
        np.add.at(bvec, dofs.ravel(), (area[:, None] * (_TRI_W @ phi)[None, :]).ravel())
        if el.contact_impedance == 0:
            return idx, bvec / total, None, total
        mloc = np.einsum("q,qi,qj->ij", _TRI_W, phi, phi)  # per unit area
        rows = np.repeat(dofs, dofs.shape[1], axis=1).ravel()
        cols = np.tile(dofs, (1, dofs.shape[1])).ravel()
        vals = (area[:, None, None] * mloc[None]).ravel()
        mass = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        return idx, bvec, mass, total

    def tes(self, montage: Montage, tolerance=0.005):
        """Solve a TES montage; returns a :class:`StimulationField` with
        :meth:`StimulationField.delivered_currents`.

        Electrodes more than ``tolerance`` (m) from the scalp raise
        :class:`GeometryError`.
        """
        cur = check_currents(montage.currents, len(montage.electrodes))
        sols, delivered = self.tes_unit_solutions(montage.electrodes, tolerance)
        phi = sols @ cur[:-1]
        res = StimulationField(self, phi)
        object.__setattr__(res, "_currents", delivered @ cur[:-1])
        return res

    def tes_unit_solutions(self, electrodes, tolerance=0.005):
        """Potentials (n_dofs, e - 1) for +1 A at electrode k and -1 A at the last
        electrode (k = 0 .. e-2), and the currents each electrode then delivers
        (e, e - 1).  A montage with currents I (summing to zero) is ``sols @ I[:-1]``."""
        electrodes = tuple(electrodes)
        if len(electrodes) < 2:
            raise ParameterError("electrodes", len(electrodes), "at least two electrodes")
        terms = [self._electrode_terms(e, tolerance) for e in electrodes]
        _check_overlap(electrodes, terms)
        n = self.space.n_dofs
        cem = [k for k, t in enumerate(terms) if t[2] is not None]
        ne = len(electrodes)
        # unit right-hand sides on the potential block, or on the CEM rows
        if not cem:
            rhs = np.stack([terms[k][1] - terms[-1][1] for k in range(ne - 1)], axis=1)
            phi = self.solver.solve(rhs)
            delivered = np.zeros((ne, ne - 1))
            delivered[: ne - 1] = np.eye(ne - 1)
            delivered[-1] = -1.0
            return phi, delivered
        # complete electrode model: [K + sum M_e / z_e, -b_e / z_e; -b_e^T / z_e, A_e / z_e]
        z = np.array([electrodes[k].contact_impedance for k in cem])
        kmat = self.solver.matrix.tocsr().copy()
        for j, k in enumerate(cem):
            kmat = kmat + terms[k][2] / z[j]
        bmat = sp.csr_matrix(np.stack([terms[k][1] / z[j] for j, k in enumerate(cem)], axis=1))
        dmat = sp.diags([terms[k][3] / z[j] for j, k in enumerate(cem)])
        big = sp.bmat([[kmat, -bmat], [-bmat.T, dmat]], format="csc")
        nb = big.shape[0]
        rhs = np.zeros((nb, ne - 1))
        pos = {k: n + j for j, k in enumerate(cem)}

        def load(k, s, col):
            if k in pos:
                rhs[pos[k], col] += s
            else:
                rhs[:n, col] += s * terms[k][1]

        for col in range(ne - 1):
            load(col, 1.0, col)
            load(ne - 1, -1.0, col)
        keep = np.ones(nb, bool)
        keep[0] = False  # ground node 0
        red = big[keep][:, keep].tocsc()
        sol = np.zeros((nb, ne - 1))
        sol[keep] = _sym_solve(red, rhs[keep], self.solver.method)
        phi = sol[:n]
        delivered = np.zeros((ne, ne - 1))
        delivered[: ne - 1] = np.eye(ne - 1)
        delivered[-1] = -1.0
        for j, k in enumerate(cem):  # the complete electrode model: from the solution
            delivered[k] = (terms[k][3] * sol[pos[k]] - terms[k][1] @ phi) / z[j]
        return phi, delivered


def _sym_solve(matrix, rhs, method):
    if method == "amg" or (method == "auto" and matrix.shape[0] > 60_000):
        import pyamg

        ml = pyamg.smoothed_aggregation_solver(matrix.tocsr(), symmetry="symmetric")
        out = np.zeros_like(rhs)
        for j in range(rhs.shape[1]):
            out[:, j] = ml.solve(rhs[:, j], tol=1e-11, accel="cg", maxiter=2000)
        return out
    lu = spla.splu(matrix, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    return lu.solve(np.ascontiguousarray(rhs))


def _check_overlap(electrodes, terms):
    seen = {}
    for k, t in enumerate(terms):
        if electrodes[k].shape == "point":
            continue
        for f in t[0]:
            if f in seen:
                raise GeometryError(
                    f"electrodes {electrodes[seen[f]].name!r} and {electrodes[k].name!r} "
                    "overlap on the scalp"
                )
            seen[int(f)] = k


def _patch_recovery(nodes, tets, vol, cent, ge, sel):
    """Superconvergent patch recovery of element gradients ``ge`` (m, 3) over the
    elements ``sel`` of one compartment: at each node, the value at the node of the
    volume-weighted least-squares linear fit to the centroid samples of its patch;
    nodes whose patch cannot determine a linear fit, or whose fit lies further from the
    patch average than twice the largest deviation of the patch samples from it (a
    one-sided extrapolation), get the weighted average."""
    n = len(nodes)
    t = tets[sel]
    c, g, w = cent[sel], ge[sel], vol[sel]
    ata = np.zeros((n, 4, 4))
    atb = np.zeros((n, 4, 3))
    den = np.zeros(n)
    avg = np.zeros((n, 3))
    for i in range(4):
        node = t[:, i]
        p = np.concatenate([np.ones((len(t), 1)), (c - nodes[node]) * 1e2], axis=1)  # cm
        np.add.at(ata, node, w[:, None, None] * p[:, :, None] * p[:, None, :])
        np.add.at(atb, node, w[:, None, None] * p[:, :, None] * g[:, None, :])
        np.add.at(den, node, w)
        np.add.at(avg, node, w[:, None] * g)
    used = den > 0
    out = np.zeros((n, 3))
    out[used] = avg[used] / den[used, None]
    idx = np.flatnonzero(used)
    a = ata[idx]
    scale = a[:, 0, 0]
    cond_ok = np.linalg.cond(a / scale[:, None, None]) < 1e8
    good = idx[cond_ok]
    if len(good):
        sol = np.linalg.solve(ata[good], atb[good])
        # limiter: a fit that lands further from the patch average than twice the largest
        # deviation of the patch's own samples is an extrapolation from a thin one-sided
        # patch (e.g. a node touched by one or two elements of a staircase compartment)
        spread = np.zeros(n)
        for i in range(4):
            np.maximum.at(
                spread, t[:, i], np.linalg.norm(g - avg[t[:, i]] / den[t[:, i], None], axis=1)
            )
        dev = np.linalg.norm(sol[:, 0] - out[good], axis=1)
        keep = dev <= 2.0 * spread[good] + 1e-12 * np.abs(out[good]).max(initial=0.0)
        out[good[keep]] = sol[keep, 0]
    return out


def surface_field(field: StimulationField, vertices, normals, recovered=True):
    """E on a surface (e.g. the mid-cortical layer): vectors (v, 3), the normal component
    E . n (v,) and the tangential magnitude (v,), V/m.  ``normals`` are unit normals."""
    v = np.asarray(vertices, float).reshape(-1, 3)
    nrm = np.asarray(normals, float).reshape(-1, 3)
    nrm = nrm / np.linalg.norm(nrm, axis=1, keepdims=True)
    e = field.recovered_field_at(v) if recovered else field.field_at(v)
    en = np.einsum("ij,ij->i", e, nrm)
    et = np.linalg.norm(e - en[:, None] * nrm, axis=1)
    return e, en, et


def field_on_grid(field: StimulationField, shape, affine, recovered=True):
    """Sample E on a voxel grid (e.g. to write a NIfTI with :func:`biosim.io.nifti.write_nifti`).

    Parameters
    ----------
    shape : (3,) ints
    affine : (4, 4)
        Voxel index -> position in **m**.

    Returns
    -------
    values : array (X, Y, Z, 3), V/m (0 outside the head)
    mask : bool array (X, Y, Z), voxels inside the head
    """
    shape = tuple(int(s) for s in shape)
    aff = np.asarray(affine, float)
    if len(shape) != 3 or aff.shape != (4, 4):
        raise ParameterError("affine", f"shape {aff.shape}", "a (4, 4) affine and a 3-D shape")
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
    sp_ = field.model.space
    inside = _inside_mesh(sp_, xyz)
    out = np.zeros((len(xyz), 3))
    if inside.any():
        elements, bary = locate_points(sp_, xyz[inside])
        fn = field.recovered_field_at if recovered else field.field_at
        out[inside] = fn(xyz[inside], elements, bary)
    return out.reshape(shape + (3,)), inside.reshape(shape)


def _inside_mesh(space, pts):
    """Which points lie in some element (k-nearest-centroid search with barycentric test)."""
    tree = space.centroid_tree
    k = min(32, space.n_elements)
    _, cand = tree.query(pts, k=k)
    x0 = space.nodes[space.tets[cand, 0]]
    lam = np.einsum("pkij,pkj->pki", space.gradients[cand][:, :, 1:], pts[:, None] - x0)
    lam = np.concatenate([1 - lam.sum(-1, keepdims=True), lam], axis=-1)
    return np.any(lam.min(-1) >= -1e-9, axis=1)
