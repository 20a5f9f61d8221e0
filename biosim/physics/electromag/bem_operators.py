"""Galerkin boundary-integral operators on closed triangle meshes.

Discretisation of the symmetric BEM (Kybic et al. 2005, IEEE TMI 24:12):
potentials are P1 (piecewise linear, one value per vertex), normal currents
P0 (one value per triangle).  Three conductivity-independent operator kinds
between two surfaces A (test) and B (trial):

* ``S_AB[a, b] = int_{T_a} int_{T_b} G(x - y) dy dx`` (P0-P0 single layer);
* ``D_AB[a, j] = int_{T_a} int_B phi_j(y) dG(x - y)/dn_y dy dx`` (P0-P1 double
  layer; the adjoint operator D* is its transpose);
* ``N_AB[i, j] = -int_A int_B G(x - y) curl phi_i(x) . curl phi_j(y)`` (P1-P1
  hypersingular operator through the Nedelec/Maue integration by parts,
  ``curl phi = n x grad phi``, constant on each triangle), so
  ``N_AB = -sum_c C_A,c^T S_AB C_B,c``.

With per-vertex currents (``flux="p1"``) the single and double layers are
also built P1-P1 (:func:`single_layer_matrix_p1`, :func:`double_layer_matrix_p1`,
analytic inner integral :func:`.bem_integrals.single_layer_p1`).

Well-separated triangle pairs use a 3-point (degree 2) Gauss rule on both
triangles with the plain kernels.  Near pairs (centroid distance below
``near_factor`` times the sum of the largest circumradii; self and adjacent
pairs included) use the degree-5 7-point rule on 4 sub-triangles of the test
triangle and the analytic inner integral (:mod:`.bem_integrals`); their
values replace the far-field ones.  Quadrature is converged: on 3 x 642
spheres a 7-point far rule, a wider near zone and 64 sub-triangles change
the lead fields by < 1e-4 relative.  Kernel evaluations run in jitted JAX
chunks of fixed size (bounded memory) on the thread pool.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..._core.parallel import run_chunks
from ...geometry.mesh import TriangleMesh
from .bem_integrals import double_layer_p1, single_layer_p0, single_layer_p1, triangle_rule

#: default quadrature: far pairs (Gauss x Gauss, plain kernel) / near pairs
#: (Gauss outer x analytic inner): (order, subdivision level)
FAR_RULE = ("3", 0)
NEAR_RULE = ("7", 1)


def triangles(mesh: TriangleMesh):
    return np.asarray(mesh.vertices)[np.asarray(mesh.faces)]


def _qpoints(tri, rule):
    """Quadrature points (nt, Q, 3) and weights times area (nt, Q)."""
    bary, w = triangle_rule(*rule)
    pts = np.einsum("qk,tkj->tqj", bary, tri)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return pts, area[:, None] * w[None, :]


def _unit_normals(tri):
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


# ---- far field: Gauss rule on both triangles, plain kernels (coincident points masked;
# ---- such pairs are always near pairs, whose values are replaced below)
def _far_s(pa, wa, pb, wb):
    """pa (..., Qa, 3), pb (..., Qb, 3) -> (...): sum w w' G(x - y)."""
    d = pa[..., :, None, :] - pb[..., None, :, :]
    r = jnp.sqrt(jnp.sum(d * d, -1))
    ok = r > 0
    k = jnp.where(ok, 1.0 / jnp.where(ok, r, 1.0), 0.0) / (4 * np.pi)
    return jnp.einsum("...q,...qr,...r->...", wa, k, wb)


def _far_d(pa, wa, pb, wb, nb, lam):
    """-> (..., 3): sum w w' lambda_k(y) (x - y).n_b / (4 pi |x - y|^3)."""
    d = pa[..., :, None, :] - pb[..., None, :, :]
    r2 = jnp.sum(d * d, -1)
    ok = r2 > 0
    inv = jax.lax.rsqrt(jnp.where(ok, r2, 1.0))  # rsqrt: cheaper than r2**-1.5
    inv3 = jnp.where(ok, inv * inv * inv, 0.0)
    k = jnp.sum(d * nb[..., None, None, :], -1) * inv3  # (..., Qa, Qb)
    t = jnp.sum(wa[..., :, None] * k, axis=-2) * wb  # (..., Qb)
    return (t @ lam) / (4 * np.pi)


def _sizes(tri):
    c = tri.mean(axis=1)
    return c, np.max(np.linalg.norm(tri - c[:, None], axis=2), axis=1)


def near_pairs(tri_a, tri_b, near_factor):
    """Index pairs (a, b) of triangles with centroids closer than
    ``near_factor`` times the sum of the largest circumradii."""
    ca, ra = _sizes(tri_a)
    cb, rb = _sizes(tri_b)
    radius = near_factor * (ra.max() + rb.max())
    lists = cKDTree(cb).query_ball_point(ca, radius)
    a = np.repeat(np.arange(len(ca)), [len(x) for x in lists])
    b = (
        np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
        if len(a)
        else np.zeros(0, int)
    )
    return a.astype(np.int64), b


def single_layer_matrix(
    mesh_a: TriangleMesh,
    mesh_b: TriangleMesh,
    same=False,
    chunk=64,
    near_factor=1.5,
    far_rule=FAR_RULE,
    near_rule=NEAR_RULE,
):
    """P0-P0 single-layer Galerkin matrix ``S_AB`` (nt_a, nt_b), m^3."""
    ta, tb = triangles(mesh_a), triangles(mesh_b)
    pa, wa = _qpoints(ta, far_rule)
    pb, wb = _qpoints(tb, far_rule)
    pbj, wbj = jnp.asarray(pb), jnp.asarray(wb)
    rows = jax.jit(lambda p, w: _far_s(p[:, None], w[:, None], pbj[None], wbj[None]))
    S = run_chunks(rows, [pa, wa], len(ta), chunk)
    a, b = near_pairs(ta, tb, near_factor)
    pn, wn = _qpoints(ta, near_rule)
    hi = run_chunks(_sl_pairs, [pn[a], wn[a], tb[b]], len(a), 4096)
    S[a, b] = hi
    if same:
        S = 0.5 * (S + S.T)
    return S


@jax.jit
def _sl_pairs(pts, wts, tri_b):
    """(npairs,): Gauss outer rule x analytic inner single layer."""
    return jnp.einsum("pq,pq->p", wts, single_layer_p0(pts, tri_b[:, None]))


@functools.partial(jax.jit, static_argnames=("same",))
def _dl_pairs(pts, wts, tri_b, a, b, same):
    vals = jnp.einsum("pq,pqk->pk", wts, double_layer_p1(pts, tri_b[:, None]))
    if same:
        vals = jnp.where((a == b)[:, None], 0.0, vals)
    return vals


def _far_setup(mesh_a, mesh_b, far_rule):
    """Triangles, trial faces and vertex count, far-rule points and weights of
    both meshes, the rule's barycentric coordinates (jax) and trial normals."""
    ta, tb = triangles(mesh_a), triangles(mesh_b)
    pa, wa = _qpoints(ta, far_rule)
    pb, wb = _qpoints(tb, far_rule)
    lam = jnp.asarray(triangle_rule(*far_rule)[0])
    return (
        ta,
        tb,
        np.asarray(mesh_b.faces),
        len(mesh_b.vertices),
        pa,
        wa,
        pb,
        wb,
        lam,
        _unit_normals(tb),
    )


def double_layer_matrix(
    mesh_a: TriangleMesh,
    mesh_b: TriangleMesh,
    same=False,
    chunk=32,
    near_factor=1.5,
    far_rule=FAR_RULE,
    near_rule=NEAR_RULE,
):
    """P0-P1 double-layer Galerkin matrix ``D_AB`` (nt_a, nv_b), m^2 (zero
    self-triangle terms: the principal value on a flat triangle)."""
    ta, tb, fb, nv, pa, wa, pb, wb, lam, nb_ = _far_setup(mesh_a, mesh_b, far_rule)
    pbj, wbj, nbj = jnp.asarray(pb), jnp.asarray(wb), jnp.asarray(nb_)
    fbj = jnp.asarray(fb.ravel())

    @jax.jit
    def rows(p, w):
        vals = _far_d(p[:, None], w[:, None], pbj[None], wbj[None], nbj[None], lam)  # (c, nb, 3)
        flat = vals.reshape(vals.shape[0], -1).T  # (nb*3, c)
        return jax.ops.segment_sum(flat, fbj, num_segments=nv).T

    D = run_chunks(rows, [pa, wa], len(ta), chunk)
    a, b = near_pairs(ta, tb, near_factor)
    pn, wn = _qpoints(ta, near_rule)
    hi = run_chunks(
        lambda p, w, t, x, y: _dl_pairs(p, w, t, x, y, same),
        [pn[a], wn[a], tb[b], a, b],
        len(a),
        4096,
    )
    far_pair = jax.jit(lambda p, w, q, v, nb: _far_d(p, w, q, v, nb, lam))
    lo = run_chunks(far_pair, [pa[a], wa[a], pb[b], wb[b], nb_[b]], len(a), 4096)
    diff = hi - lo
    for k in range(3):
        np.add.at(D, (a, fb[b, k]), diff[:, k])
    return D


# ---- P1 test (and trial) functions for the normal current ("flux='p1'")
def corner_matrix(mesh: TriangleMesh):
    """Sparse (nv, 3 nt) sum over triangle corners: row ``faces[a, k]``,
    column ``3 a + k``."""
    f = np.asarray(mesh.faces)
    nt, nv = f.shape[0], len(mesh.vertices)
    return sp.csr_matrix((np.ones(3 * nt), (f.ravel(), np.arange(3 * nt))), shape=(nv, 3 * nt))


def _far_s11(pa, wa, lam_a, pb, wb, lam_b):
    """pa (c, Qa, 3), pb (nb, Qb, 3) -> (c, 3, nb, 3): sum w w' lam lam' G."""
    d = pa[:, :, None, None, :] - pb[None, None]
    r2 = jnp.sum(d * d, -1)
    ok = r2 > 0
    k = jnp.where(ok, jax.lax.rsqrt(jnp.where(ok, r2, 1.0)), 0.0) / (4 * np.pi)  # (c, Qa, nb, Qb)
    left = wa[:, :, None] * lam_a[None]  # (c, Qa, 3)
    right = wb[:, :, None] * lam_b[None]  # (nb, Qb, 3)
    return jnp.einsum("cqk,cqbr,brl->ckbl", left, k, right)


def _far_d11(pa, wa, lam_a, pb, wb, nb, lam_b):
    """pa (c, Qa, 3), pb (nb, Qb, 3) -> (c, 3, nb, 3): sum w w' lam lam' dG/dn_y."""
    d = pa[:, :, None, None, :] - pb[None, None]
    r2 = jnp.sum(d * d, -1)
    ok = r2 > 0
    inv = jax.lax.rsqrt(jnp.where(ok, r2, 1.0))
    inv3 = jnp.where(ok, inv * inv * inv, 0.0)
    k = jnp.sum(d * nb[None, None, :, None, :], -1) * inv3 / (4 * np.pi)
    left = wa[:, :, None] * lam_a[None]
    right = wb[:, :, None] * lam_b[None]
    return jnp.einsum("cqk,cqbr,brl->ckbl", left, k, right)


def _far_pairs11(pa, wa, pb, wb, nb, lam, with_normals):
    """The far-rule values of :func:`_far_s11` / :func:`_far_d11` for a list of
    (test, trial) triangle pairs: pa (P, Qa, 3), pb (P, Qb, 3) -> (P, 3, 3)."""
    d = pa[:, :, None, :] - pb[:, None, :, :]
    r2 = jnp.sum(d * d, -1)
    ok = r2 > 0
    inv = jax.lax.rsqrt(jnp.where(ok, r2, 1.0))
    if with_normals:
        k = jnp.where(ok, inv * inv * inv, 0.0) * jnp.sum(d * nb[:, None, None, :], -1)
    else:
        k = jnp.where(ok, inv, 0.0)
    left = wa[:, :, None] * lam[None]
    right = wb[:, :, None] * lam[None]
    return jnp.einsum("pqk,pqr,prl->pkl", left, k, right) / (4 * np.pi)


def _p1_p1_matrix(
    mesh_a,
    mesh_b,
    far_kernel,
    near_pairs_fn,
    chunk,
    near_factor,
    far_rule,
    near_rule,
    with_normals,
    with_p0=False,
):
    """Shared driver for the P1-P1 blocks: far rule on all pairs, then near
    pairs replaced by outer rule x analytic inner integral; corner values
    summed to vertices on both sides.  ``with_p0`` also returns the P0-P0
    block, the sum over both triangles' corners (the hat functions sum to 1)."""
    ta, tb, fb, nv_b, pa, wa, pb, wb, lam, nb_ = _far_setup(mesh_a, mesh_b, far_rule)
    pbj, wbj, nbj = jnp.asarray(pb), jnp.asarray(wb), jnp.asarray(nb_)
    fbj = jnp.asarray(fb.ravel())

    @jax.jit
    def rows(p, w):
        if with_normals:
            vals = far_kernel(p, w, lam, pbj, wbj, nbj, lam)
        else:
            vals = far_kernel(p, w, lam, pbj, wbj, lam)  # (c, 3, nb, 3)
        c = vals.shape[0]
        flat = vals.reshape(c * 3, -1).T  # (nb*3, 3c)
        p1 = jax.ops.segment_sum(flat, fbj, num_segments=nv_b).T.reshape(c, 3, nv_b)
        return (p1, jnp.sum(vals, axis=(1, 3))) if with_p0 else p1

    if with_p0:
        R, S0 = run_chunks(rows, [pa, wa], len(ta), chunk, n_out=2)
    else:
        R = run_chunks(rows, [pa, wa], len(ta), chunk)
    R = R.reshape(3 * len(ta), nv_b)
    a, b = near_pairs(ta, tb, near_factor)
    pn, wn = _qpoints(ta, near_rule)
    lam_n = triangle_rule(*near_rule)[0]
    hi = run_chunks(
        lambda p, w, t, x, y: near_pairs_fn(p, w, jnp.asarray(lam_n), t, x, y),
        [pn[a], wn[a], tb[b], a, b],
        len(a),
        2048,
    )  # (P, 3, 3)
    lo_fn = jax.jit(lambda p, w, q, v, n_: _far_pairs11(p, w, q, v, n_, lam, with_normals))
    lo = run_chunks(lo_fn, [pa[a], wa[a], pb[b], wb[b], nb_[b]], len(a), 2048)
    diff = hi - lo
    out = np.asarray(corner_matrix(mesh_a) @ R)
    del R
    fa = np.asarray(mesh_a.faces)
    rows = np.broadcast_to(fa[a][:, :, None], diff.shape).ravel()
    cols = np.broadcast_to(fb[b][:, None, :], diff.shape).ravel()
    out += sp.csr_matrix((diff.ravel(), (rows, cols)), shape=out.shape).toarray()  # sums duplicates
    if with_p0:
        S0[a, b] += diff.sum(axis=(1, 2))  # (a, b) pairs are unique
        return out, S0
    return out


@jax.jit
def _sl11_pairs(pts, wts, lam_a, tri_b, a, b):
    inner = single_layer_p1(pts, tri_b[:, None])  # (P, Q, 3b)
    return jnp.einsum("pq,qk,pql->pkl", wts, lam_a, inner)


@functools.partial(jax.jit, static_argnames=("same",))
def _dl11_pairs(pts, wts, lam_a, tri_b, a, b, same):
    vals = jnp.einsum("pq,qk,pql->pkl", wts, lam_a, double_layer_p1(pts, tri_b[:, None]))
    if same:
        vals = jnp.where((a == b)[:, None, None], 0.0, vals)
    return vals


def single_layer_matrix_p1(
    mesh_a: TriangleMesh,
    mesh_b: TriangleMesh,
    same=False,
    chunk=32,
    near_factor=1.5,
    far_rule=FAR_RULE,
    near_rule=NEAR_RULE,
    with_p0=False,
):
    """P1-P1 single-layer Galerkin matrix (nv_a, nv_b), m^3:
    ``int_A int_B phi_i(x) G(x - y) phi_j(y) dy dx``; with ``with_p0`` also
    the P0-P0 matrix of :func:`single_layer_matrix` from the same kernel
    evaluations."""
    out = _p1_p1_matrix(
        mesh_a,
        mesh_b,
        _far_s11,
        _sl11_pairs,
        chunk,
        near_factor,
        far_rule,
        near_rule,
        with_normals=False,
        with_p0=with_p0,
    )
    sym = (lambda m: 0.5 * (m + m.T)) if same else (lambda m: m)
    return (sym(out[0]), sym(out[1])) if with_p0 else sym(out)


def double_layer_matrix_p1(
    mesh_a: TriangleMesh,
    mesh_b: TriangleMesh,
    same=False,
    chunk=32,
    near_factor=1.5,
    far_rule=FAR_RULE,
    near_rule=NEAR_RULE,
):
    """P1-P1 double-layer Galerkin matrix (nv_a, nv_b), m^2:
    ``int_A phi_i(x) int_B phi_j(y) dG(x - y)/dn_y dy dx`` (zero self-triangle terms)."""
    return _p1_p1_matrix(
        mesh_a,
        mesh_b,
        _far_d11,
        lambda p, w, length, t, x, y: _dl11_pairs(p, w, length, t, x, y, same),
        chunk,
        near_factor,
        far_rule,
        near_rule,
        with_normals=True,
    )


def curl_matrices(mesh: TriangleMesh):
    """Sparse (nt, nv) matrices C_c, c = x, y, z: the surface curl ``n x grad phi_j``
    of each hat function on each triangle (1/m)."""
    tri = triangles(mesh)
    f = np.asarray(mesh.faces)
    nvec = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    two_area = np.linalg.norm(nvec, axis=1)
    nt, nv = f.shape[0], len(mesh.vertices)
    rows = np.repeat(np.arange(nt), 3)
    out = []
    # n x grad(lambda_k) = -(y_{k+2} - y_{k+1}) / (2 A)
    curls = np.stack(
        [-(tri[:, (k + 2) % 3] - tri[:, (k + 1) % 3]) / two_area[:, None] for k in range(3)], axis=1
    )  # (nt, 3, 3)
    for c in range(3):
        out.append(sp.csr_matrix((curls[:, :, c].ravel(), (rows, f.ravel())), shape=(nt, nv)))
    return out


def hypersingular_matrix(S_ab, curls_a, curls_b):
    """P1-P1 hypersingular Galerkin matrix from the P0 single-layer block (1/m)."""
    out = 0.0
    for ca, cb in zip(curls_a, curls_b):
        left = np.asarray(ca.T @ S_ab)  # (nv_a, nt_b)
        out = out - np.asarray((cb.T @ left.T).T)  # (nv_a, nv_b)
    return out
