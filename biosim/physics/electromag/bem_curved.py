"""Galerkin BEM blocks on curved elements (:mod:`biosim.geometry.curved`).

Each coarse triangle is the union of four flat sub-triangles whose edge
vertices lie on the smooth surface; the unknowns stay those of the coarse
mesh (P1 potentials, P0 or P1 normal currents), the coarse hat functions being
linear on every sub-triangle (:data:`~biosim.geometry.curved.CHILD_BARY`).
The blocks are those of :mod:`.bem_operators` (same shapes and meaning), now
integrated over the curved surface:

* far pairs: the centroid of every sub-triangle (4 points per element, with
  the sub-triangle's area, normal and the coarse hats' curls there);
* near pairs (centroids closer than ``near_factor`` times the sum of the
  largest circumradii): the degree-5 7-point rule on each test sub-triangle
  times the analytic inner integrals (:mod:`.bem_integrals`) over the four
  trial sub-triangles; the principal-value double layer of a sub-triangle on
  itself is zero.

One kernel pass per pair of surfaces gives the single layer (P0-P0 or P1-P1)
and the hypersingular operator ``N_ij = -int int G curl phi_i . curl phi_j``
(the coarse curls are piecewise constant on the sub-triangles), a second pass
the double layer.
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp
import scipy.sparse as sp

from ...geometry.curved import CHILD_BARY, CurvedMesh
from .bem_integrals import FOUR_PI, double_layer_p1, single_layer_p1, triangle_rule
from .bem_operators import _run_chunks, corner_matrix, near_pairs

FAR_RULE = ("1", 0)
NEAR_RULE = ("7", 0)


def element_rule(cm: CurvedMesh, rule):
    """Quadrature on the curved elements: ``rule`` on each of the four
    sub-triangles of every coarse triangle.

    Returns points (nt, 4Q, 3), weights with area (nt, 4Q), coarse hat values
    (4Q, 3), coarse hat curls ``n x grad phi_k`` (nt, 4Q, 3 hats, 3) (1/m),
    normals (nt, 4Q, 3) and the sub-triangle of each point (4Q,).
    """
    bary, wq = triangle_rule(*rule)
    sub = cm.child_triangles()                                          # (nt, 4, 3, 3)
    nt, q = sub.shape[0], len(wq)
    pts = np.einsum("qr,tcrj->tcqj", bary, sub).reshape(nt, 4 * q, 3)
    nvec = np.cross(sub[:, :, 1] - sub[:, :, 0], sub[:, :, 2] - sub[:, :, 0])    # (nt, 4, 3)
    two_area = np.linalg.norm(nvec, axis=-1)
    nrm = nvec / two_area[..., None]
    w = (0.5 * two_area[:, :, None] * wq[None, None]).reshape(nt, 4 * q)
    lam = np.einsum("qr,crk->cqk", bary, CHILD_BARY).reshape(4 * q, 3)
    # curl of the local hat r of a flat triangle: -(y_{r+2} - y_{r+1}) / (2 A)
    local = np.stack([-(sub[:, :, (r + 2) % 3] - sub[:, :, (r + 1) % 3]) / two_area[..., None]
                      for r in range(3)], axis=2)                       # (nt, 4, 3r, 3)
    curl_child = np.einsum("crk,tcrj->tckj", CHILD_BARY, local)         # (nt, 4, 3k, 3)
    curl = np.repeat(curl_child, q, axis=1)
    return pts, w, lam, curl, np.repeat(nrm, q, axis=1), np.repeat(np.arange(4), q)


def _stack_weights(w, lam, curl):
    """(nt, Q, 13): w, w lambda_k (3), w curl_k (3 x 3) per point."""
    nt, q = w.shape
    return np.concatenate([w[..., None], w[..., None] * lam[None], (w[..., None, None] * curl).reshape(
        nt, q, 9)], axis=-1)


def _contract_s(wa, tb):
    """Left stacked weights wa (..., Qa, 13) against the kernel already summed
    over the trial points with their stacked weights, tb (..., Qa, 13)
    -> (S0 (...), S11 (..., 3, 3), N (..., 3, 3))."""
    s0 = jnp.einsum("...q,...q->...", wa[..., 0], tb[..., 0])
    s11 = jnp.einsum("...qk,...ql->...kl", wa[..., 1:4], tb[..., 1:4])
    ca = wa[..., 4:].reshape(wa.shape[:-1] + (3, 3))
    cb = tb[..., 4:].reshape(tb.shape[:-1] + (3, 3))
    n = -jnp.einsum("...qkj,...qlj->...kl", ca, cb)
    return s0, s11, n


def _far_kernel_s(pa, pb):
    d = pa[..., :, None, :] - pb[..., None, :, :]
    r2 = jnp.sum(d * d, -1)
    ok = r2 > 0
    return jnp.where(ok, jax.lax.rsqrt(jnp.where(ok, r2, 1.0)), 0.0) / FOUR_PI


def _far_kernel_d(pa, pb, nb):
    d = pa[..., :, None, :] - pb[..., None, :, :]
    r2 = jnp.sum(d * d, -1)
    ok = r2 > 0
    inv = jax.lax.rsqrt(jnp.where(ok, r2, 1.0))
    return jnp.where(ok, inv * inv * inv, 0.0) * jnp.sum(d * nb[..., None, :, :], -1) / FOUR_PI


def _sum_trial_corners(vals, faces_b, nv_b):
    """vals (c, K, nb, 3) -> (c, K, nv_b): corner values summed into the trial vertices."""
    c, kk, nb, _ = vals.shape
    flat = jnp.transpose(vals, (2, 3, 0, 1)).reshape(nb * 3, c * kk)     # (nb*3, c*K)
    out = jax.ops.segment_sum(flat, faces_b.ravel(), num_segments=nv_b)  # (nv_b, c*K)
    return out.T.reshape(c, kk, nv_b)


def _sum_test_corners(rows, mesh_a):
    """rows (nt_a, 3, X) -> (nv_a, X) summed into the test vertices."""
    nt = rows.shape[0]
    return np.asarray(corner_matrix(mesh_a) @ rows.reshape(3 * nt, -1))


def _add_pairs(out, a_idx, b_idx, diff, faces_a=None, faces_b=None):
    """Add per-pair (P,), (P, 3) or (P, 3, 3) corrections into ``out`` (dense)."""
    if diff.ndim == 1:
        out[a_idx, b_idx] += diff                       # (a, b) pairs are unique
    elif diff.ndim == 2:                                # (P, 3 trial corners), P0 test
        for k in range(3):
            np.add.at(out, (a_idx, faces_b[b_idx, k]), diff[:, k])
    else:
        rows = np.broadcast_to(faces_a[a_idx][:, :, None], diff.shape).ravel()
        cols = np.broadcast_to(faces_b[b_idx][:, None, :], diff.shape).ravel()
        out += sp.csr_matrix((diff.ravel(), (rows, cols)), shape=out.shape).toarray()


@jax.jit
def _near_s(pts, wts, sub_b, curl_b):
    """Near pairs, single-layer pass: pts (P, Qn, 3), stacked weights wts (P, Qn, 13),
    trial sub-triangles (P, 4, 3, 3), trial coarse curls per sub-triangle (P, 4, 3, 3)
    -> S0 (P,), S11 (P, 3, 3), N (P, 3, 3)."""
    i1 = single_layer_p1(pts[:, :, None, :], sub_b[:, None])            # (P, Qn, 4, 3)
    i0 = jnp.sum(i1, axis=-1)                       # the hats sum to 1: int G    (P, Qn, 4)
    i1c = jnp.einsum("pqcr,crl->pql", i1, jnp.asarray(CHILD_BARY))      # coarse trial hats
    ic = jnp.einsum("pqc,pclj->pqlj", i0, curl_b)                       # int G curl phi_l
    s0 = jnp.einsum("pq,pqc->p", wts[..., 0], i0)
    s11 = jnp.einsum("pqk,pql->pkl", wts[..., 1:4], i1c)
    ca = wts[..., 4:].reshape(wts.shape[:2] + (3, 3))
    n = -jnp.einsum("pqkj,pqlj->pkl", ca, ic)
    return s0, s11, n


@functools.partial(jax.jit, static_argnames=("same",))
def _near_d(pts, wts, sub_b, child_q, a, b, same):
    """Near pairs, double-layer pass -> D0 (P, 3) (P0 test), D11 (P, 3, 3) (P1 test)."""
    dl = double_layer_p1(pts[:, :, None, :], sub_b[:, None])            # (P, Qn, 4, 3)
    if same:
        self_sub = (a == b)[:, None, None] & (child_q[None, :, None] == jnp.arange(4)[None, None, :])
        dl = jnp.where(self_sub[..., None], 0.0, dl)
    dlc = jnp.einsum("pqcr,crl->pql", dl, jnp.asarray(CHILD_BARY))
    return jnp.einsum("pq,pql->pl", wts[..., 0], dlc), jnp.einsum("pqk,pql->pkl", wts[..., 1:4], dlc)


class _Elements:
    """Far and near quadrature of one curved surface."""

    def __init__(self, cm: CurvedMesh, far_rule=FAR_RULE, near_rule=NEAR_RULE):
        self.cm = cm
        p, w, lam, curl, nrm, _ = element_rule(cm, far_rule)
        self.far_pts, self.far_w, self.far_nrm = p, _stack_weights(w, lam, curl), nrm
        p, w, lam, curl, _, child = element_rule(cm, near_rule)
        self.near_pts, self.near_w, self.near_child = p, _stack_weights(w, lam, curl), child
        self.sub = cm.child_triangles()
        _, _, _, curl, _, _ = element_rule(cm, ("1", 0))
        self.sub_curl = curl                                             # (nt, 4, 3, 3): 1 point per child
        self.coarse_tri = cm.coarse.vertices[cm.coarse.faces]
        self.faces = np.asarray(cm.coarse.faces)
        self.nv = len(cm.coarse.vertices)
        self.nt = len(self.faces)


def single_layer_and_hypersingular(ea: _Elements, eb: _Elements, same=False, p1=False,
                                   chunk=16, near_factor=1.5):
    """Curved-element single layer (P0-P0 (nt_a, nt_b) or, with ``p1``, P1-P1
    (nv_a, nv_b), m^3) and hypersingular operator (nv_a, nv_b), 1/m."""
    pbj, wbj = jnp.asarray(eb.far_pts), jnp.asarray(eb.far_w)
    fbj = jnp.asarray(eb.faces)

    @jax.jit
    def rows(p, w):
        k = _far_kernel_s(p[:, None], pbj[None])                         # (c, nb, Qa, Qb)
        tb = jnp.einsum("cbqr,brm->cbqm", k, wbj)                        # (c, nb, Qa, 13)
        s0, s11, n = _contract_s(jnp.broadcast_to(w[:, None], tb.shape), tb)   # (c, nb), (c, nb, 3, 3)
        n_rows = _sum_trial_corners(jnp.moveaxis(n, 1, 2), fbj, eb.nv)   # (c, 3, nv_b)
        if p1:
            return _sum_trial_corners(jnp.moveaxis(s11, 1, 2), fbj, eb.nv), n_rows
        return s0, n_rows

    s_far, n_far = _run_chunks(rows, [ea.far_pts, ea.far_w], ea.nt, chunk, n_out=2)
    a, b = near_pairs(ea.coarse_tri, eb.coarse_tri, near_factor)
    hi = _run_chunks(_near_s, [ea.near_pts[a], ea.near_w[a], eb.sub[b], eb.sub_curl[b]],
                     len(a), 1024, n_out=3)
    lo_fn = jax.jit(lambda p, w, q, v: _contract_s(
        w, jnp.einsum("pqr,prm->pqm", _far_kernel_s(p, q), v)))
    lo = _run_chunks(lo_fn, [ea.far_pts[a], ea.far_w[a], eb.far_pts[b], eb.far_w[b]], len(a), 2048,
                     n_out=3)
    N = _sum_test_corners(n_far, ea.cm.coarse)
    _add_pairs(N, a, b, hi[2] - lo[2], ea.faces, eb.faces)
    if p1:
        S = _sum_test_corners(s_far, ea.cm.coarse)
        _add_pairs(S, a, b, hi[1] - lo[1], ea.faces, eb.faces)
    else:
        S = np.array(s_far)
        _add_pairs(S, a, b, hi[0] - lo[0])
    if same:
        S, N = 0.5 * (S + S.T), 0.5 * (N + N.T)
    return S, N


def double_layer(ea: _Elements, eb: _Elements, same=False, p1=False, chunk=16, near_factor=1.5):
    """Curved-element double layer: P0-P1 (nt_a, nv_b) or, with ``p1``, P1-P1
    (nv_a, nv_b), m^2 (principal value: zero on a sub-triangle itself)."""
    pbj, wbj, nbj = jnp.asarray(eb.far_pts), jnp.asarray(eb.far_w), jnp.asarray(eb.far_nrm)
    fbj = jnp.asarray(eb.faces)

    @jax.jit
    def rows(p, w):
        k = _far_kernel_d(p[:, None], pbj[None], nbj[None])              # (c, nb, Qa, Qb)
        tb = jnp.einsum("cbqr,brl->cbql", k, wbj[..., 1:4])              # (c, nb, Qa, 3)
        if p1:
            vals = jnp.einsum("cqk,cbql->ckbl", w[..., 1:4], tb)         # (c, 3, nb, 3)
            return _sum_trial_corners(vals, fbj, eb.nv)
        vals = jnp.einsum("cq,cbql->cbl", w[..., 0], tb)[:, None]        # (c, 1, nb, 3)
        return _sum_trial_corners(vals, fbj, eb.nv)[:, 0]

    d_far = _run_chunks(rows, [ea.far_pts, ea.far_w], ea.nt, chunk)
    a, b = near_pairs(ea.coarse_tri, eb.coarse_tri, near_factor)
    child = jnp.asarray(ea.near_child)
    d0, d11 = _run_chunks(lambda p, w, s, x, y: _near_d(p, w, s, child, x, y, same),
                          [ea.near_pts[a], ea.near_w[a], eb.sub[b], a, b], len(a), 1024, n_out=2)

    def lo_fn(p, w, q, v, nb):
        tb = jnp.einsum("pqr,prl->pql", _far_kernel_d(p, q, nb), v[..., 1:4])
        return jnp.einsum("pq,pql->pl", w[..., 0], tb), jnp.einsum("pqk,pql->pkl", w[..., 1:4], tb)

    lo = _run_chunks(jax.jit(lo_fn), [ea.far_pts[a], ea.far_w[a], eb.far_pts[b], eb.far_w[b],
                                      eb.far_nrm[b]], len(a), 2048, n_out=2)
    if p1:
        D = _sum_test_corners(d_far, ea.cm.coarse)
        _add_pairs(D, a, b, d11 - lo[1], ea.faces, eb.faces)
    else:
        D = np.array(d_far)
        _add_pairs(D, a, b, d0 - lo[0], faces_b=eb.faces)
    return D
