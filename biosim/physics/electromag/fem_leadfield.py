"""FEM forward model for EEG and MEG on tetrahedral head meshes.

Transfer-matrix approach (Wolters et al. 2004; Gencer & Acar 2004): the
potential of any source is ``u = K^-1 b(source)`` with K the stiffness matrix
of :mod:`biosim.physics.fem`, so a linear read-out ``r . u`` equals
``(K^-1 r) . b``: one solve per sensor (``T = K^-1 R^T``, (n_dofs, C)) and
then ``gain = b^T T`` for every source, with b sparse.  The source models
give b for a unit dipole q at r0:

``"partial_integration"``
    ``b_i = q . grad phi_i(r0)`` (Weinstein et al. 2000).
``"venant"``
    monopoles at the mesh node nearest r0 and its neighbours whose moments
    up to order 2 match the dipole (Buchner et al. 1997; Vorwerk et al. 2019),
    ``b_i = load_i``.
``"subtraction"`` (localized)
    ``u = w + eta u_inf`` with ``u_inf`` the analytic dipole potential of an
    unbounded medium of the source tissue's conductivity and ``eta`` a P1
    cut-off (1 on a patch of about three edge lengths around r0, 0 outside and
    on the outermost tissue); the correction w solves ``K w = b`` with b a
    surface integral over the patch boundary plus volume integrals over the
    transition layer and the patch's other tissues (:func:`subtraction_loads`;
    cf. Wolters et al. 2007, Hoeltershinken et al. 2024).  The sensors lie
    outside the patch and read w.

EEG: each electrode reads the FEM potential at its closest point on the outer
boundary, minus the area-weighted mean of the outer boundary potential (the
sphere series' and BEM's convention), then the sensors' reference.  MEG:
``B = B0 - mu0/(4 pi) int sigma grad u x (r - r') / |r - r'|^3 dV'``
(Geselowitz 1970) with B0 the infinite-medium field of the dipole; the volume
term of each channel is a linear functional ``s . u`` of the potential, so MEG
uses transfer matrices too (one solve per channel: cheaper than the volume
integral per source once sources outnumber channels).  With the localized
subtraction the currents ``-sigma grad(eta u_inf)`` have compact support, so
they add only the field of ``-(sigma - sigma_inf) grad(eta u_inf)`` where the
patch crosses tissues.

Differentiable: :meth:`FEMForward.gain` with ``conductivities`` (per-tissue,
a JAX array) solves through :func:`biosim.physics.fem.make_differentiable_solve`,
so ``jax.grad`` of a loss of the gain with respect to tissue conductivities
costs one adjoint solve per sensor.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..._core.errors import ParameterError
from ..._core.precision import require_float64
from ...geometry.mesh import TriangleMesh
from ..fem import FEMSolver, FEMSpace, locate_points, make_differentiable_solve
from ..fem.assembly import edge_index, tet_rule_deg2
from .bem_integrals import triangle_rule
from .bem_sensors import closest_points, primary_meg_gain
from .sensors import EEGSensors, MEGSensors

MU0 = 4e-7 * np.pi
SOURCE_MODELS = ("partial_integration", "venant", "subtraction")


# ---------------------------------------------------------------- mesh topology
def element_neighbours(tets):
    """(m, 4) index of the element across the face opposite each local vertex (-1: boundary)."""
    m = len(tets)
    faces = np.sort(np.stack([np.delete(tets, k, axis=1) for k in range(4)], axis=1), axis=2)
    n = int(tets.max()) + 1
    key = (faces[..., 0] * n + faces[..., 1]) * n + faces[..., 2]
    flat = key.ravel()
    order = np.argsort(flat, kind="stable")
    s = flat[order]
    same = np.flatnonzero(s[1:] == s[:-1])
    nb = np.full(4 * m, -1)
    a, b = order[same], order[same + 1]
    nb[a] = b // 4
    nb[b] = a // 4
    return nb.reshape(m, 4)


def outer_boundary(tets, neighbours):
    """Outer boundary triangles (f, 3) of the mesh, ordered with outward normals."""
    e, k = np.nonzero(neighbours < 0)
    fk = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])  # outward for positive tets
    return tets[e[:, None], fk[k]]


# ---------------------------------------------------------------- read-outs
def _face_values(space, faces, bary):
    """Dofs (f, k) and values (f, k) of the trace basis at barycentric points on faces."""
    if space.order == 1:
        return faces, bary
    n = len(space.nodes)
    pairs = np.sort(faces[:, [[0, 1], [1, 2], [0, 2]]], axis=2).reshape(-1, 2)
    e = n + edge_index(space.edges[0], pairs, n).reshape(-1, 3)
    lam = bary
    vals = np.concatenate([lam * (2 * lam - 1), 4 * lam[:, [0, 1, 0]] * lam[:, [1, 2, 2]]], axis=1)
    return np.concatenate([faces, e], axis=1), vals


def eeg_readout(space: FEMSpace, boundary, electrodes):
    """(C, n_dofs) read-out: FEM potential at each electrode's closest boundary point
    minus the area-weighted mean over the outer boundary."""
    surf = TriangleMesh(space.nodes, boundary, name="outer boundary")
    f, bary, _ = closest_points(surf, np.asarray(electrodes, float))
    dofs, vals = _face_values(space, boundary[f], bary)
    rows = np.repeat(np.arange(len(f)), dofs.shape[1])
    r = sp.csr_matrix((vals.ravel(), (rows, dofs.ravel())), shape=(len(f), space.n_dofs))
    # area-weighted mean of the trace (exact integral of the P1/P2 trace)
    x = space.nodes[boundary]
    area = 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1)
    w = np.zeros(space.n_dofs)
    mid = np.full((len(boundary), 3), 1.0 / 3.0)
    qp, qw = triangle_rule("3")
    for b, wq in zip(qp, qw):
        d, v = _face_values(space, boundary, np.broadcast_to(b, mid.shape).copy())
        np.add.at(w, d.ravel(), (wq * area[:, None] * v).ravel())
    w /= area.sum()
    return r.toarray() - w[None, :]


def meg_volume_functionals(
    space: FEMSpace, sensors: MEGSensors, labels_index, n_tissues, chunk=2048
):
    """Per tissue t, the (n_dofs, C) matrix ``S_t`` with the secondary field of
    channel c equal to ``sum_t sigma_t S_t[:, c] . u`` (T per V per S/m).

    ``s_c . u = -mu0/(4 pi) int sigma grad u . (sum_p w_p R_p x n_p / R_p^3)``, with
    ``R_p = r_p - x`` (coil integration points r_p, normals n_p, weights w_p), by
    the 4-point degree-2 rule in each element."""

    pts = np.asarray(sensors.points, float)
    nrm = np.asarray(sensors.normals, float)
    wc = sp.csr_matrix(
        (np.asarray(sensors.weights, float), (np.arange(len(pts)), np.asarray(sensors.channel))),
        shape=(len(pts), sensors.n_channels),
    )
    bary, wq = tet_rule_deg2()
    m = space.n_elements
    dofs = space.element_dofs
    out = np.zeros((n_tissues, space.n_dofs, sensors.n_channels))
    xe = space.nodes[space.tets]
    for s0 in range(0, m, chunk):
        idx = np.arange(s0, min(m, s0 + chunk))
        acc = np.zeros((len(idx), dofs.shape[1], sensors.n_channels))
        for q in range(len(wq)):
            x = np.einsum("i,mik->mk", bary[q], xe[idx])
            r = pts[None] - x[:, None]  # (mc, P, 3)
            a = np.cross(r, nrm[None]) / np.linalg.norm(r, axis=2, keepdims=True) ** 3
            v = (wc.T @ a.transpose(1, 0, 2).reshape(len(pts), -1)).reshape(-1, len(idx), 3)
            g = space.basis_gradients(idx, np.broadcast_to(bary[q], (len(idx), 4)))
            acc += wq[q] * np.einsum("m,mik,cmk->mic", space.volumes[idx], g, v)
        acc *= -MU0 / (4 * np.pi)
        for t in range(n_tissues):
            sel = labels_index[idx] == t
            np.add.at(out[t], dofs[idx[sel]].ravel(), acc[sel].reshape(-1, sensors.n_channels))
    return out


# ---------------------------------------------------------------- source models
def partial_integration_rhs(space: FEMSpace, positions):
    """Sparse (n_dofs, 3 S) loads ``q . grad phi_i(r0)`` for unit dipoles along x, y, z."""
    elem, bary = locate_points(space, positions)
    g = space.basis_gradients(elem, bary)  # (S, k, 3)
    dofs = space.element_dofs[elem]
    k = dofs.shape[1]
    rows = np.repeat(dofs, 3, axis=1).ravel()
    cols = (3 * np.arange(len(elem))[:, None, None] + np.arange(3)[None, None]).repeat(k, 1)
    return sp.csr_matrix((g.ravel(), (rows, cols.ravel())), shape=(space.n_dofs, 3 * len(elem)))


def _node_neighbours(tets, n):
    pairs = tets[:, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]].reshape(-1, 2)
    a = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return ((a + a.T) > 0).tocsr()


def venant_rhs(space: FEMSpace, positions, adjacency, node_tree, regularization=1e-6):
    """Sparse (n_dofs, 3 S) St. Venant monopole loads (Buchner et al. 1997).

    For the node nearest each source and its neighbours x_j, the loads q_j
    minimise ``|X q - t|^2 + lambda |W q|^2`` with X the moments
    ``((x_j - r0)/a)^m`` per axis for m = 0, 1, 2, t = (0, e_k / a, 0),
    W = diag(|x_j - r0| / a) and a the largest distance (Vorwerk et al. 2019)."""
    pos = np.asarray(positions, float)
    _, near = node_tree.query(pos)
    rows, cols, vals = [], [], []
    for s, (r0, n0) in enumerate(zip(pos, near)):
        nb = adjacency.indices[adjacency.indptr[n0] : adjacency.indptr[n0 + 1]]
        j = np.concatenate([[n0], nb])
        d = space.nodes[j] - r0
        a = np.max(np.linalg.norm(d, axis=1))
        dd = d / a
        x = np.concatenate([np.ones((1, len(j))), dd.T, (dd**2).T], axis=0)  # (7, n)
        t = np.zeros((7, 3))
        t[1:4] = np.eye(3) / a
        w = np.linalg.norm(dd, axis=1)
        lhs = x.T @ x + regularization * np.diag(w**2)
        q = np.linalg.solve(lhs, x.T @ t)  # (n, 3)
        rows.append(np.repeat(j, 3))
        cols.append(np.tile(3 * s + np.arange(3), len(j)))
        vals.append(q.ravel())
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(space.n_dofs, 3 * len(pos)),
    )


def tet_rule_collapsed(n=2):
    """Conical-product rule on the tetrahedron (Stroud 1971): barycentric points
    (n^3, 4) and weights summing to 1, exact for polynomials of degree 2n - 3."""
    x, w = np.polynomial.legendre.leggauss(n)
    x, w = 0.5 * (x + 1), 0.5 * w
    a, b, c = (g.ravel() for g in np.meshgrid(x, x, x, indexing="ij"))
    wa, wb, wc = (g.ravel() for g in np.meshgrid(w, w, w, indexing="ij"))
    px, py, pz = a, b * (1 - a), c * (1 - a) * (1 - b)
    wt = 6.0 * wa * wb * wc * (1 - a) ** 2 * (1 - b)
    return np.stack([1 - px - py - pz, px, py, pz], axis=1), wt


def tet_rule_refined(n=3, level=1):
    """:func:`tet_rule_collapsed` on the 8**level children of a regular (red)
    refinement of the tetrahedron: barycentric points and weights (sum 1)."""
    b, w = tet_rule_collapsed(n)
    corners = [np.eye(4)]
    mid = lambda v, i, j: 0.5 * (v[i] + v[j])
    for _ in range(level):
        nxt = []
        for v in corners:
            m01, m02, m03 = mid(v, 0, 1), mid(v, 0, 2), mid(v, 0, 3)
            m12, m13, m23 = mid(v, 1, 2), mid(v, 1, 3), mid(v, 2, 3)
            nxt += [
                np.stack(c)
                for c in (
                    (v[0], m01, m02, m03), (m01, v[1], m12, m13), (m02, m12, v[2], m23),
                    (m03, m13, m23, v[3]), (m01, m02, m03, m13), (m01, m02, m12, m13),
                    (m02, m03, m13, m23), (m02, m12, m13, m23),
                )
            ]  # fmt: skip
        corners = nxt
    pts = np.concatenate([b @ c for c in corners])
    wts = np.tile(w, len(corners)) / len(corners)
    return pts, wts


class SubtractionTopology:
    """Mesh data the localized subtraction needs (built once per mesh)."""

    def __init__(self, space: FEMSpace, neighbours, tissue_index, outer_tissues):
        self.space = space
        self.neighbours = neighbours
        self.tissue = np.asarray(tissue_index)
        tets, n = space.tets, len(space.nodes)
        m = len(tets)
        self.node_elements = sp.csr_matrix(
            (np.ones(4 * m), (tets.ravel(), np.repeat(np.arange(m), 4))), shape=(n, m)
        )
        outer = np.isin(self.tissue, outer_tissues)
        self.outer_node = np.zeros(n, bool)
        self.outer_node[tets[outer].ravel()] = True
        self.outer_element = outer
        self.node_tree = cKDTree(space.nodes)
        x = space.nodes[tets]
        self.diameter = np.max(
            np.linalg.norm(x[:, [0, 0, 0, 1, 1, 2]] - x[:, [1, 2, 3, 2, 3, 3]], axis=2), axis=1
        )
        self.centroid = x.mean(axis=1)


@dataclasses.dataclass(frozen=True)
class SubtractionLoads:
    """Localized-subtraction loads ``b = const + sum_p (sigma_a / sigma_b) parts[p]``
    over tissue pairs ``pairs[p] = (a, b)`` (element tissue, source tissue; indices
    into the forward model's tissues), each (n_dofs, 3 S), and the MEG field of
    the conductivity jumps ``sum_p (sigma_a / sigma_b - 1) fields[p]`` (C, S, 3)."""

    const: object
    pairs: tuple
    parts: tuple
    fields: tuple

    def loads(self, sigma):
        b = self.const
        for (a, c), part in zip(self.pairs, self.parts):
            b = b + (sigma[a] / sigma[c]) * part
        return b

    def jump_field(self, sigma):
        out = 0.0
        for (a, c), f in zip(self.pairs, self.fields):
            if f is not None:
                out = out + (sigma[a] / sigma[c] - 1.0) * f
        return out


def subtraction_loads(
    topo: SubtractionTopology, positions, radius, meg=None, near_factor=1.0, batch=256
):
    """Loads of the localized subtraction approach for unit dipoles along x, y, z.

    ``u = w + eta u_inf``: ``u_inf`` the dipole potential of an unbounded
    medium of the source tissue's conductivity sigma_inf; ``eta`` the P1
    cut-off equal to 1 at the nodes within ``radius`` of r0 and at the nodes of
    the elements around the source element (never at nodes of the outermost
    tissues, so the sensors read w), 0 elsewhere.  With I the elements where
    ``eta = 1`` and T those where it varies, the correction w solves
    ``K w = b`` with

    ``b_i = -closed_int_{dI} sigma_inf (n . grad u_inf) phi_i
    - int_I (sigma - sigma_inf) grad u_inf . grad phi_i
    - int_T sigma grad(eta u_inf) . grad phi_i``

    (the subtraction of Wolters et al. 2007 restricted to the patch, cf.
    Hoeltershinken et al. 2024).  The currents ``-sigma grad(eta u_inf)`` have
    compact support, so their magnetic field is that of
    ``-(sigma - sigma_inf) grad(eta u_inf)`` only.  Elements closer to r0 than
    ``near_factor`` diameters get an 8-fold refined quadrature.

    Sources are processed ``batch`` at a time, vectorised: the patches of a
    batch are one sparse node x source matrix, and every element/face term is
    one array operation over all (element, source) pairs of the batch.
    """
    space = topo.space
    pos = np.asarray(positions, float)
    elem, _ = locate_points(space, pos)
    if np.any(topo.outer_element[elem]):
        bad = int(np.flatnonzero(topo.outer_element[elem])[0])
        raise ParameterError("positions", f"source {bad} in the outer tissue", "sources inside")
    radius = np.broadcast_to(np.asarray(radius, float), (len(pos),))
    acc, facc = {}, {}
    for s0 in range(0, len(pos), batch):
        sl = slice(s0, min(s0 + batch, len(pos)))
        _subtraction_batch(topo, pos[sl], elem[sl], radius[sl], s0, len(pos), meg, near_factor,
                           acc, facc)  # fmt: skip

    def build(key):
        rows, src, vals = (np.concatenate(a) for a in acc[key])
        return sp.csr_matrix(
            (vals.ravel(), (np.repeat(rows, 3), (3 * src[:, None] + np.arange(3)).ravel())),
            shape=(space.n_dofs, 3 * len(pos)),
        )

    const = build("const") if "const" in acc else sp.csr_matrix((space.n_dofs, 3 * len(pos)))
    pairs = tuple(sorted(k for k in acc if k != "const"))
    return SubtractionLoads(
        const, pairs, tuple(build(k) for k in pairs), tuple(facc.get(k) for k in pairs)
    )


_FACE_OF = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])


def _subtraction_batch(topo, pos, elem, radius, s0, n_total, meg, near_factor, acc, facc):
    """Localized-subtraction terms of sources ``s0 + arange(len(pos))`` appended to
    ``acc`` (key -> rows, sources, values) and ``facc`` (MEG fields), vectorised."""
    space = topo.space
    tets, inc = space.tets, topo.node_elements
    n, nb_src = len(space.nodes), len(pos)
    jj = np.arange(nb_src)
    t0 = topo.tissue[elem]
    # patch nodes: within the radius, or of the elements around the source element
    near = topo.node_tree.query_ball_point(pos, radius)
    r_near = np.concatenate([np.asarray(a, int) for a in near])
    c_near = np.repeat(jj, [len(a) for a in near])
    a0 = sp.csr_matrix((np.ones(4 * nb_src), (tets[elem].ravel(), np.repeat(jj, 4))), (n, nb_src))
    ring_el = (inc.T @ a0) > 0  # (m, B)
    ring = (inc @ ring_el.astype(float)).tocoo()
    eta = np.zeros((n, nb_src), bool)
    eta[r_near, c_near] = True
    eta[ring.row, ring.col] = True
    eta[topo.outer_node] = False
    en, ej = np.nonzero(eta)
    count = (inc.T @ sp.csr_matrix((np.ones(len(en)), (en, ej)), (n, nb_src))).tocoo()
    ce, cj, cv = count.row, count.col, np.rint(count.data).astype(int)
    inner = cv == 4
    ie, ij = ce[inner], cj[inner]
    te, tj = ce[~inner], cj[~inner]
    inner_key = np.sort(ie * nb_src + ij)

    def is_inner(e, j):
        k = e * nb_src + j
        i = np.minimum(np.searchsorted(inner_key, k), len(inner_key) - 1)
        return (e >= 0) & (inner_key[i] == k)

    ok = is_inner(elem, jj)
    if not np.all(ok):
        bad = s0 + int(np.flatnonzero(~ok)[0])
        raise ParameterError("positions", f"source {bad}", "a source away from the outer tissue")
    # surface term on the boundary of I
    qp, qw = triangle_rule("7")
    fe = np.repeat(ie, 4)
    fj = np.repeat(ij, 4)
    fk = np.tile(np.arange(4), len(ie))
    sel = ~is_inner(topo.neighbours[fe, fk], fj)
    fe, fj, fk = fe[sel], fj[sel], fk[sel]
    g = space.gradients[fe, fk]
    gn = np.linalg.norm(g, axis=1)
    normal = -g / gn[:, None]
    area = 3.0 * space.volumes[fe] * gn
    fnodes = tets[fe[:, None], _FACE_OF[fk]]
    nf, nq = len(fe), len(qw)
    x = np.einsum("qi,fik->fqk", qp, space.nodes[fnodes])
    d = x - pos[fj][:, None]
    r = np.linalg.norm(d, axis=2)
    nd = np.einsum("fk,fqk->fq", normal, d)
    flux = (normal[:, None] / r[..., None] ** 3 - 3 * d * (nd / r**5)[..., None]) / (4 * np.pi)
    wq = area[:, None] * qw[None]
    dofs, phi = _face_values(space, np.repeat(fnodes, nq, axis=0), np.tile(qp, (nf, 1)))
    nbf = dofs.shape[1]
    val = -np.matmul(phi.reshape(nf, nq, nbf).transpose(0, 2, 1), wq[..., None] * flux)
    dofs = dofs.reshape(nf, nq, nbf)[:, 0]
    _add(acc, "const", dofs.ravel(), s0 + np.repeat(fj, nbf), val.reshape(-1, 3))
    # volume terms: I elements of another tissue, and T
    jump = topo.tissue[ie] != t0[ij]
    vol_e = np.concatenate([ie[jump], te])
    vol_j = np.concatenate([ij[jump], tj])
    is_t = np.concatenate([np.zeros(int(jump.sum()), bool), np.ones(len(te), bool)])
    dist = np.linalg.norm(topo.centroid[vol_e] - pos[vol_j], axis=1)
    close = dist < near_factor * topo.diameter[vol_e]
    eye = np.eye(3)
    for sel_close, (tb, tw) in zip((False, True), (tet_rule_deg2(), tet_rule_refined(3, 1))):
        sel = close == sel_close
        if not np.any(sel):
            continue
        els, js, tflag = vol_e[sel], vol_j[sel], is_t[sel]
        nel, nq = len(els), len(tw)
        te_q = np.repeat(els, nq)
        tq = np.repeat(tflag, nq)
        tbary = np.tile(tb, (nel, 1))
        x = np.einsum("qi,qik->qk", tbary, space.nodes[tets[te_q]])
        d = x - pos[np.repeat(js, nq)]
        r = np.linalg.norm(d, axis=1)
        u1 = d / (4 * np.pi * r[:, None] ** 3)  # sigma_inf u_inf per dipole axis
        gu1 = (eye[None] / r[:, None, None] ** 3 - 3 * d[:, :, None] * d[:, None, :] /
               r[:, None, None] ** 5) / (4 * np.pi)  # (Q, axis, 3)  # fmt: skip
        et = eta[tets[te_q], np.repeat(js, nq)[:, None]].astype(float)
        eta_q = np.where(tq, np.einsum("qi,qi->q", tbary, et), 1.0)
        geta = np.einsum("qi,qik->qk", et, space.gradients[te_q]) * tq[:, None]
        gq = u1[:, :, None] * geta[:, None, :] + eta_q[:, None, None] * gu1
        wv = np.tile(tw, nel) * space.volumes[te_q]
        if space.order == 1:  # constant basis gradients: sum the field over the points first
            wg = (wv[:, None, None] * gq).reshape(nel, nq, 3, 3).sum(axis=1)  # (n_el, axis, 3)
            contrib = -np.matmul(space.gradients[els], wg.transpose(0, 2, 1))
        else:
            gphi = space.basis_gradients(te_q, tbary)
            contrib = -np.matmul(gphi, (wv[:, None, None] * gq).transpose(0, 2, 1))
            contrib = contrib.reshape(nel, nq, -1, 3).sum(axis=1)  # (n_el, nb, 3)
        dofs = space.element_dofs[els]
        nbe = dofs.shape[1]
        ta = topo.tissue[els]
        tsrc = t0[js]
        key = ta * 1000 + tsrc
        for k in np.unique(key):
            m_ = key == k
            a_, c_ = int(k // 1000), int(k % 1000)
            src = s0 + np.repeat(js[m_], nbe)
            _add(acc, (a_, c_), dofs[m_].ravel(), src, contrib[m_].reshape(-1, 3))
            # I elements (eta = 1): -(sigma/sigma_inf - 1) gu1 = ratio * (-gu1) + gu1
            mi = m_ & ~tflag
            if np.any(mi):
                _add(acc, "const", dofs[mi].ravel(), s0 + np.repeat(js[mi], nbe),
                     -contrib[mi].reshape(-1, 3))  # fmt: skip
            if meg is not None and a_ != c_:
                mq = np.repeat(m_, nq)
                f = facc.setdefault((a_, c_), np.zeros((meg.n_channels, n_total, 3)))
                f[:, s0 : s0 + nb_src] += _transition_field_by_source(
                    meg, x[mq], wv[mq], gq[mq], np.repeat(js, nq)[mq], nb_src
                )


def _add(acc, key, rows, src, vals):
    r = acc.setdefault(key, ([], [], []))
    r[0].append(rows)
    r[1].append(src)
    r[2].append(vals)


def _transition_field_by_source(meg, x, w, gq, src, n_src, chunk=4096):
    """Magnetic field ``-mu0/(4 pi) sum_q w_q gq_q x (r_p - x_q) / |r_p - x_q|^3`` of
    the currents ``gq`` (Q, axis, 3) at points ``x`` (Q, 3) with weights ``w``,
    summed per source ``src`` (Q,): (C, n_src, 3) T/(A m) per dipole axis."""
    pts = np.asarray(meg.points, float)
    nrm = np.asarray(meg.normals, float)
    out = np.zeros((len(pts), n_src, 3))
    for q0 in range(0, len(x), chunk):
        q = slice(q0, q0 + chunk)
        r = pts[:, None] - x[None, q]  # (P, Q, 3)
        kern = r / np.linalg.norm(r, axis=2, keepdims=True) ** 3
        rn = np.cross(kern, nrm[:, None])  # (g x R) . n_p = g . (R x n_p)
        val = -MU0 / (4 * np.pi) * np.einsum("q,qkj,pqj->qpk", w[q], gq[q], rn)
        onehot = sp.csr_matrix(
            (np.ones(len(val)), (src[q], np.arange(len(val)))), shape=(n_src, len(val))
        )
        out += (onehot @ val.reshape(len(val), -1)).reshape(n_src, len(pts), 3).transpose(1, 0, 2)
    chan = np.zeros((meg.n_channels, n_src, 3))
    np.add.at(chan, np.asarray(meg.channel), np.asarray(meg.weights, float)[:, None, None] * out)
    return chan


def sparse_combination_product(parts, t, coef):
    """``sum_p coef_p (B_p^T t)^T`` (C, 3 S) for fixed scipy sparse ``B_p`` (n, 3 S),
    differentiable in the JAX arrays t (n, C) and coef (P,) (one host callback
    each way, no compilation per sparsity pattern)."""
    shape_out = jax.ShapeDtypeStruct((t.shape[1], parts[0].shape[1]), jnp.float64)

    def fwd_np(t_, c_):
        t_ = np.asarray(t_)
        return sum(float(c) * np.asarray((b.T @ t_).T) for b, c in zip(parts, c_))

    def bwd_np(t_, c_, g_):
        g_ = np.asarray(g_)
        dt = sum(float(c) * np.asarray(b @ g_.T) for b, c in zip(parts, c_))
        dc = np.array([np.sum(np.asarray(b.T @ np.asarray(t_)).T * g_) for b in parts])
        return dt, dc

    @jax.custom_vjp
    def f(t_, c_):
        return jax.pure_callback(fwd_np, shape_out, t_, c_)

    def f_fwd(t_, c_):
        return f(t_, c_), (t_, c_)

    def f_bwd(res, g_):
        t_, c_ = res
        shapes = (
            jax.ShapeDtypeStruct(t_.shape, jnp.float64),
            jax.ShapeDtypeStruct(c_.shape, jnp.float64),
        )
        return jax.pure_callback(bwd_np, shapes, t_, c_, g_)

    f.defvjp(f_fwd, f_bwd)
    return f(t, coef)


# ---------------------------------------------------------------- forward model
@dataclasses.dataclass(frozen=True, eq=False)
class FEMForward:
    """FEM forward model (EEG and/or MEG) of a labelled tetrahedral head.

    Build with :meth:`create`; channels are EEG first, then MEG (as
    :class:`SphereForward` and :class:`BEMForward`).
    """

    space: FEMSpace
    tissues: tuple
    conductivities: np.ndarray
    eeg: EEGSensors | None
    meg: MEGSensors | None
    source_model: str
    transfer: np.ndarray  # (n_dofs, C_eeg + C_meg)
    readout: np.ndarray | None  # (C_eeg, n_dofs)
    meg_functionals: np.ndarray | None  # (n_tissues, n_dofs, C_meg)
    neighbours: np.ndarray
    labels_index: np.ndarray
    sigma_elements: np.ndarray
    patch_radius: float | None
    timings: dict

    @classmethod
    def create(
        cls,
        mesh,
        conductivities: dict,
        eeg: EEGSensors | None = None,
        meg: MEGSensors | None = None,
        source_model="subtraction",
        order=1,
        method="auto",
        patch_radius=None,
        tensors=None,
    ) -> FEMForward:
        """Transfer matrices of a head mesh.

        Parameters
        ----------
        mesh : TetMesh
        conductivities : dict
            ``{tissue tag: S/m}`` for every label of the mesh.
        eeg, meg : sensors (at least one)
        source_model : {"subtraction", "venant", "partial_integration"}
        order : {1, 2}
        method : FEMSolver method ("auto", "direct", "amg")
        patch_radius : float, m
            Localized-subtraction patch radius (default: 3 x the mean edge length).
        tensors : array (m, 3, 3), optional
            Anisotropic conductivity per element (S/m) replacing the tissue values
            where given (e.g. from :func:`~biosim.physics.fem.volume_normalized_conductivity`);
            not differentiable through :meth:`gain`.
        """
        require_float64("FEMForward")
        if eeg is None and meg is None:
            raise ParameterError("eeg/meg", None, "at least one sensor set")
        if source_model not in SOURCE_MODELS:
            raise ParameterError("source_model", source_model, f"one of {SOURCE_MODELS}")
        if tensors is not None and (meg is not None or source_model == "subtraction"):
            raise ParameterError(
                "tensors", "anisotropic conductivity", "EEG with venant/partial_integration"
            )
        space = FEMSpace(mesh, order)
        labels = space.labels
        tissues = tuple(sorted(int(t) for t in np.unique(labels)))
        missing = [t for t in tissues if t not in conductivities]
        if missing:
            raise ParameterError("conductivities", sorted(conductivities), f"values for {missing}")
        sig_t = np.array([float(conductivities[t]) for t in tissues])
        if not np.all(np.isfinite(sig_t)) or np.any(sig_t <= 0):
            raise ParameterError("conductivities", conductivities, "finite values > 0 S/m")
        lab_idx = np.searchsorted(np.asarray(tissues), labels)
        sigma = sig_t[lab_idx] if tensors is None else np.asarray(tensors, float)
        timings = {}
        t0 = time.perf_counter()
        nb = element_neighbours(space.tets)
        boundary = outer_boundary(space.tets, nb)
        solver = FEMSolver(space, sigma, method=method)
        timings["setup"] = time.perf_counter() - t0
        rhs, readout, mfun = [], None, None
        if eeg is not None:
            readout = eeg_readout(space, boundary, eeg.positions)
            rhs.append(readout.T)
        if meg is not None:
            t1 = time.perf_counter()
            mfun = meg_volume_functionals(space, meg, lab_idx, len(tissues))
            rhs.append(np.einsum("t,tnc->nc", sig_t, mfun))
            timings["meg_functionals"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        transfer = solver.solve(np.concatenate(rhs, axis=1))
        timings["transfer"] = time.perf_counter() - t1
        timings["solver"] = solver.method
        if patch_radius is None:
            e = space.edges[0]
            patch_radius = 3.0 * float(
                np.mean(np.linalg.norm(space.nodes[e[:, 0]] - space.nodes[e[:, 1]], axis=1))
            )
        return cls(
            space, tissues, sig_t, eeg, meg, source_model, transfer, readout, mfun, nb,
            lab_idx, sigma, patch_radius, timings,
        )  # fmt: skip

    @property
    def n_eeg(self):
        return self.eeg.n_channels if self.eeg is not None else 0

    @property
    def channel_names(self):
        return (self.eeg.names if self.eeg else ()) + (self.meg.names if self.meg else ())

    @property
    def channel_kinds(self):
        return (("eeg",) * self.eeg.n_channels if self.eeg else ()) + (
            self.meg.kinds if self.meg else ()
        )

    def source_matrix(self, positions):
        """Loads of unit dipoles along x, y, z: sparse (n_dofs, 3 S), or
        :class:`SubtractionLoads` for the localized subtraction."""
        pos = np.asarray(positions, float)
        if pos.ndim != 2 or pos.shape[1] != 3 or not np.all(np.isfinite(pos)):
            raise ParameterError("positions", f"shape {pos.shape}", "finite (S, 3) in m")
        key = (self.source_model, pos.shape, hash(pos.tobytes()))
        cached = getattr(self, "_last_loads", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        loads = self._loads(pos)
        object.__setattr__(self, "_last_loads", (key, loads))
        return loads

    def _loads(self, pos):
        if self.source_model == "partial_integration":
            return partial_integration_rhs(self.space, pos)
        if self.source_model == "venant":
            adj = _node_neighbours(self.space.tets, len(self.space.nodes))
            return venant_rhs(self.space, pos, adj, cKDTree(self.space.nodes))
        topo = getattr(self, "_topology", None)
        if topo is None:
            outer = np.unique(self.labels_index[np.flatnonzero(np.any(self.neighbours < 0, 1))])
            topo = SubtractionTopology(self.space, self.neighbours, self.labels_index, outer)
            object.__setattr__(self, "_topology", topo)
        return subtraction_loads(topo, pos, self.patch_radius, meg=self.meg)

    def gain(self, positions, conductivities=None):
        """Gain (C, S, 3), V/(A m) for EEG and T/(A m) for MEG.

        ``conductivities``: optional per-tissue values (JAX array, order of
        :attr:`tissues`) to differentiate with respect to; default the model's.
        """
        loads = self.source_matrix(positions)
        pos = jnp.asarray(positions, float)
        if conductivities is None:
            return self._assemble(loads, self.conductivities, self.transfer, pos, numeric=True)
        sig = jnp.asarray(conductivities, jnp.float64)
        if sig.shape != (len(self.tissues),):
            raise ParameterError(
                "conductivities", f"shape {sig.shape}", f"({len(self.tissues)},) per tissue"
            )
        cached = getattr(self, "_traced_fn", None)
        if cached is None or cached[0] is not loads:
            solve = getattr(self, "_solve", None)
            if solve is None:
                solve = make_differentiable_solve(self.space)
                object.__setattr__(self, "_solve", solve)

            def fn(sig_, pos_, readout, mfun, lab):
                rhs = []
                if readout is not None:
                    rhs.append(readout.T)
                if mfun is not None:
                    rhs.append(jnp.einsum("t,tnc->nc", sig_, mfun))
                t = solve(sig_[lab], jnp.concatenate(rhs, axis=1))
                return self._assemble(loads, sig_, t, pos_, numeric=False)

            cached = (loads, jax.jit(fn))
            object.__setattr__(self, "_traced_fn", cached)
        mfun = None if self.meg is None else jnp.asarray(self.meg_functionals)
        readout = None if self.eeg is None else jnp.asarray(self.readout)
        return cached[1](sig, pos, readout, mfun, jnp.asarray(self.labels_index))

    def _assemble(self, loads, sig, t, pos, numeric):
        """Gain from the loads and the transfer matrix t (numeric: numpy, else traced)."""
        if isinstance(loads, SubtractionLoads):
            parts = (loads.const,) + loads.parts
            ratios = [sig[a] / sig[c] for a, c in loads.pairs]
            extra = loads.jump_field(sig) if self.meg is not None else None
        else:
            parts, ratios, extra = (loads,), [], None
        n_src = parts[0].shape[1] // 3
        if numeric:
            g = sum(float(c) * np.asarray((b.T @ t).T) for b, c in zip(parts, [1.0] + ratios))
            g = jnp.asarray(g)
        else:
            coef = jnp.concatenate([jnp.ones(1), jnp.stack(ratios)]) if ratios else jnp.ones(1)
            g = sparse_combination_product(parts, t, coef)
        g = g.reshape(-1, n_src, 3)
        out = []
        if self.eeg is not None:
            ref = jnp.asarray(self.eeg.reference_matrix())
            out.append(jnp.einsum("ij,jsk->isk", ref, g[: self.n_eeg]))
        if self.meg is not None:
            total = g[self.n_eeg :] + primary_meg_gain(self.meg, pos)
            if extra is not None:
                total = total + jnp.asarray(extra)
            out.append(total)
        return jnp.concatenate(out, axis=0)

    def eeg_gain(self, positions):
        if self.eeg is None:
            raise ParameterError("eeg", None, "an FEMForward with EEG sensors")
        return self.gain(positions)[: self.n_eeg]

    def meg_gain(self, positions):
        if self.meg is None:
            raise ParameterError("meg", None, "an FEMForward with MEG sensors")
        return self.gain(positions)[self.n_eeg :]
