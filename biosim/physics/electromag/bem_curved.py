"""Galerkin BEM blocks on curved elements (:mod:`biosim.geometry.curved`).

Each coarse triangle is the union of four flat sub-triangles whose edge
vertices lie on the smooth surface; the unknowns stay those of the coarse
mesh (P1 potentials, P0 or P1 normal currents), the coarse hat functions being
linear on every sub-triangle (:data:`~biosim.geometry.curved.CHILD_BARY`).
The blocks are those of :mod:`.bem_operators` (same shapes and meaning),
integrated over the curved surface:

* far pairs: the flat triangles' 3-point (degree 2) rule, corrected for the
  curvature by the difference of the centroid rule on the four curved and on
  the four flat sub-triangles (the correction is first order in the bending,
  so the cheap rule's own error enters only at second order), for all pairs.
  On 3 x 642 spheres the lead fields are within 1e-4 (EEG) and 3e-4 (MEG) of
  a converged quadrature; ``far_base=None`` (the centroid rule alone on the
  curved elements) leaves 1.3e-3 and 3e-2.  On the flat terms the hat curls
  are constant, so their N is their P0 single layer times curl products, and
  only hats 1 and 2 are integrated (the three curls sum to zero);
* distant pairs (beyond ``distant_factor`` = 4 times the sum of the largest
  circumradii): the far rule condensed to 4 points per element
  (:func:`distant_rule`: the flat rule mapped onto the curved element, plus
  the remainder's monopole and dipole moments), 16 kernel evaluations per
  pair instead of 41; the lead fields stay within 3e-6 (EEG) and 2e-4 (MEG)
  of the far rule's (``distant_factor=None`` uses the far rule for all
  pairs).  The dense row blocks of this rule keep the trial triangles as the
  last axis and floor the kernel distance (:data:`R2_FLOOR`) instead of
  masking coincident points;
* near pairs (centroid distance below ``near_factor`` = 1.5 times the sum of
  the largest circumradii): the degree-5 7-point rule on each test
  sub-triangle (on each of its four halves for elements of one surface sharing
  a vertex, whose sub-triangles touch) times the analytic inner integrals
  (:mod:`.bem_integrals`) over the four trial sub-triangles; the
  principal-value double layer of a sub-triangle on itself is zero.

One kernel pass per pair of surfaces gives the single layer (P0-P0 or P1-P1)
and the hypersingular operator ``N_ij = -int int G curl phi_i . curl phi_j``
(the coarse curls are piecewise constant on the sub-triangles), a second pass
the double layer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.parallel import run_chunks
from ...geometry.curved import CHILD_BARY, CurvedMesh, curved_refinement
from .bem_integrals import FOUR_PI, double_layer_p1, single_layer_p1, triangle_rule
from .bem_operators import corner_matrix, near_pairs

#: quadrature: (order, subdivision level) on each sub-triangle for far pairs
#: (the correction of the flat rule FAR_BASE on the flat triangle) and near
#: pairs (test side; one level finer for touching elements)
FAR_RULE = ("1", 0)
FAR_BASE = ("3", 0)
NEAR_RULE = ("7", 0)
#: pairs farther apart than this many times the sum of the largest circumradii
#: use the condensed rule (:func:`distant_rule`); None: the far rule everywhere
DISTANT_FACTOR = 4.0
#: the condensed rule is used only where the pairs within DISTANT_FACTOR are at
#: most this fraction of all pairs (on coarse meshes most pairs lie within it, and
#: computing them with both rules would cost more than it saves)
DISTANT_MAX_FRACTION = 0.2


def element_rule(cm: CurvedMesh, rule, flat=False):
    """Quadrature on the curved elements: ``rule`` on each of the four
    sub-triangles of every coarse triangle (``flat``: on the flat coarse
    triangle itself).

    Returns points (nt, Q', 3), weights with area (nt, Q'), coarse hat values
    (Q', 3), coarse hat curls ``n x grad phi_k`` (nt, Q', 3 hats, 3) (1/m),
    normals (nt, Q', 3) and the sub-triangle of each point (Q',), with Q' = 4 Q
    (Q if ``flat``).
    """
    bary, wq = triangle_rule(*rule)
    if flat:
        sub, child_bary = cm.coarse.vertices[cm.coarse.faces][:, None], np.eye(3)[None]
    else:
        sub, child_bary = cm.child_triangles(), CHILD_BARY  # (nt, 4, 3, 3)
    nt, nc, q = sub.shape[0], sub.shape[1], len(wq)
    pts = np.einsum("qr,tcrj->tcqj", bary, sub).reshape(nt, nc * q, 3)
    nvec = np.cross(sub[:, :, 1] - sub[:, :, 0], sub[:, :, 2] - sub[:, :, 0])  # (nt, nc, 3)
    two_area = np.linalg.norm(nvec, axis=-1)
    nrm = nvec / two_area[..., None]
    w = (0.5 * two_area[:, :, None] * wq[None, None]).reshape(nt, nc * q)
    lam = np.einsum("qr,crk->cqk", bary, child_bary).reshape(nc * q, 3)
    # curl of the local hat r of a flat triangle: -(y_{r+2} - y_{r+1}) / (2 A)
    local = np.stack(
        [
            -(sub[:, :, (r + 2) % 3] - sub[:, :, (r + 1) % 3]) / two_area[..., None]
            for r in range(3)
        ],
        axis=2,
    )  # (nt, nc, 3r, 3)
    curl_child = np.einsum("crk,tcrj->tckj", child_bary, local)  # (nt, nc, 3k, 3)
    curl = np.repeat(curl_child, q, axis=1)
    return pts, w, lam, curl, np.repeat(nrm, q, axis=1), np.repeat(np.arange(nc), q)


def _stack_weights(w, lam, curl):
    """(nt, Q, 13): w, w lambda_k (3), w curl_k (3 x 3) per point."""
    nt, q = w.shape
    return np.concatenate(
        [w[..., None], w[..., None] * lam[None], (w[..., None, None] * curl).reshape(nt, q, 9)],
        axis=-1,
    )


def _columns(w, lam, curl, nrm):
    """(nt, Q, 22): the stacked weights (13) and the normal-weighted hat weights
    ``w lambda_l n_d`` (3 x 3) of the double layer's trial side."""
    nt, q = w.shape
    vec = (w[..., None, None] * lam[None, :, :, None] * nrm[:, :, None, :]).reshape(nt, q, 9)
    return np.concatenate([_stack_weights(w, lam, curl), vec], axis=-1)


def _mapped_rule(cm: CurvedMesh, rule):
    """``rule`` (barycentric on the coarse triangle) mapped onto the curved
    elements: each point to its place on the sub-triangle that contains it,
    with that sub-triangle's Jacobian, normal and coarse hat curls.  Returns
    points, weights, hat values, curls and normals like :func:`element_rule`."""
    bary, wq = triangle_rule(*rule)
    sub = cm.child_triangles()  # (nt, 4, 3, 3)
    child = np.where(bary.max(axis=1) >= 0.5, np.argmax(bary, axis=1), 3)
    local = np.stack([np.linalg.solve(CHILD_BARY[c].T, b) for b, c in zip(bary, child)])  # (Q, 3)
    pts = np.einsum("qr,tqrj->tqj", local, sub[:, child])
    nvec = np.cross(sub[:, :, 1] - sub[:, :, 0], sub[:, :, 2] - sub[:, :, 0])
    two_area = np.linalg.norm(nvec, axis=-1)  # (nt, 4)
    nrm = (nvec / two_area[..., None])[:, child]
    w = 2.0 * two_area[:, child] * wq[None]  # 4 A_child wq
    curl = element_rule(cm, ("1", 0))[3][:, child]  # (nt, Q, 3, 3)
    return pts, w, bary, curl, nrm


def distant_rule(cm: CurvedMesh, base=FAR_BASE, corr=FAR_RULE, lift=0.5):
    """The far rule condensed for distant pairs: 4 points per element.

    The far rule R is the flat triangle's rule ``base`` plus the curvature
    correction (``corr`` on the curved minus on the flat sub-triangles).  The
    condensed rule is ``base`` mapped onto the curved element
    (:func:`_mapped_rule`), which carries most of the bending, plus the
    remainder R - mapped condensed to its monopole and dipole moments about the
    centroid (per weight column), carried by the mapped points and one point
    lifted ``lift`` circumradii off the triangle along its normal (a 4 x 4
    moment system per element).  Far from the element only the remainder's
    neglected quadrupole differs from R: relative order h / d of a small
    remainder at distance d.

    Returns points (nt, 4, 3), stacked weights (nt, 4, 13) and normal-weighted
    hat weights (nt, 4, 3 hats, 3).
    """
    tri = cm.coarse.vertices[cm.coarse.faces]
    cen = tri.mean(axis=1)
    rho = np.max(np.linalg.norm(tri - cen[:, None], axis=2), axis=1)

    def moments(p, w, lam, curl, nrm, sign=1.0):
        col = sign * _columns(w, lam, curl, nrm)  # (nt, Q, 22)
        return col, col.sum(axis=1), np.einsum("tqc,tqd->tcd", col, p - cen[:, None])

    _, m0, m1 = moments(*element_rule(cm, base, flat=True)[:5])
    for mesh, sign in ((cm, 1.0), (curved_refinement(cm.coarse, curved=False), -1.0)):
        _, a0, a1 = moments(*element_rule(mesh, corr)[:5], sign)
        m0, m1 = m0 + a0, m1 + a1
    mp = _mapped_rule(cm, base)
    col, b0, b1 = moments(*mp)
    flat_n = element_rule(cm, ("1", 0), flat=True)[4][:, 0]
    pts = np.concatenate(
        [mp[0], (cen + lift * rho[:, None] * flat_n)[:, None]], axis=1
    )  # (nt, 4, 3)
    amat = np.ones((len(tri), 4, 4))
    amat[:, 1:, :] = np.transpose(pts - cen[:, None], (0, 2, 1))
    rhs = np.concatenate([(m0 - b0)[:, None], np.transpose(m1 - b1, (0, 2, 1))], axis=1)
    wts = np.linalg.solve(amat, rhs)  # (nt, 4, 22)
    wts[:, :3] += col
    return pts, wts[..., :13], wts[..., 13:].reshape(len(tri), 4, 3, 3)


#: (m^2) floor of the squared distance in the distant rule's kernels: points of
#: distinct elements are farther apart; coincident points (a triangle with
#: itself, a near pair replaced later by the same floored value) stay finite
R2_FLOOR = 1e-12


def _dist_kernel_s(pa, pb):
    d = pa[..., :, None, :] - pb[..., None, :, :]
    return jax.lax.rsqrt(jnp.maximum(jnp.sum(d * d, -1), R2_FLOOR)) / FOUR_PI


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
    flat = jnp.transpose(vals, (2, 3, 0, 1)).reshape(nb * 3, c * kk)  # (nb*3, c*K)
    out = jax.ops.segment_sum(flat, faces_b.ravel(), num_segments=nv_b)  # (nv_b, c*K)
    return out.T.reshape(c, kk, nv_b)


def _sum_test_corners(rows, mesh_a):
    """rows (nt_a, 3, X) -> (nv_a, X) summed into the test vertices."""
    nt = rows.shape[0]
    return np.asarray(corner_matrix(mesh_a) @ rows.reshape(3 * nt, -1))


def _add_pairs(out, a_idx, b_idx, diff, faces_a=None, faces_b=None):
    """Add per-pair (P,), (P, 3) or (P, 3, 3) corrections into ``out`` (dense)."""
    if diff.ndim == 1:
        out[a_idx, b_idx] += diff  # (a, b) pairs are unique
        return
    if diff.ndim == 2:  # (P, 3 trial corners), P0 test
        rows = np.broadcast_to(a_idx[:, None], diff.shape)
        cols = faces_b[b_idx]
    else:
        rows = np.broadcast_to(faces_a[a_idx][:, :, None], diff.shape)
        cols = np.broadcast_to(faces_b[b_idx][:, None, :], diff.shape)
    lin = (rows.astype(np.int64) * out.shape[1] + cols).ravel()
    out += np.bincount(lin, weights=np.asarray(diff, float).ravel(), minlength=out.size).reshape(
        out.shape
    )


def _near_s(pts, wts, sub_b, curl_b):
    """Near pairs, single-layer pass: pts (P, Qn, 3), stacked weights wts (P, Qn, 13),
    trial sub-triangles (P, 4, 3, 3), trial coarse curls per sub-triangle (P, 4, 3, 3)
    -> S0 (P,), S11 (P, 3, 3), N (P, 3, 3)."""
    i1 = single_layer_p1(pts[:, :, None, :], sub_b[:, None])  # (P, Qn, 4, 3)
    i0 = jnp.sum(i1, axis=-1)  # the hats sum to 1: int G    (P, Qn, 4)
    i1c = jnp.einsum("pqcr,crl->pql", i1, jnp.asarray(CHILD_BARY))  # coarse trial hats
    ic = jnp.einsum("pqc,pclj->pqlj", i0, curl_b)  # int G curl phi_l
    s0 = jnp.einsum("pq,pqc->p", wts[..., 0], i0)
    s11 = jnp.einsum("pqk,pql->pkl", wts[..., 1:4], i1c)
    ca = wts[..., 4:].reshape(wts.shape[:2] + (3, 3))
    n = -jnp.einsum("pqkj,pqlj->pkl", ca, ic)
    return s0, s11, n


def _near_d(pts, wts, sub_b, child_q, a, b, same):
    """Near pairs, double-layer pass -> D0 (P, 3) (P0 test), D11 (P, 3, 3) (P1 test)."""
    dl = double_layer_p1(pts[:, :, None, :], sub_b[:, None])  # (P, Qn, 4, 3)
    if same:
        self_sub = (a == b)[:, None, None] & (
            child_q[None, :, None] == jnp.arange(4)[None, None, :]
        )
        dl = jnp.where(self_sub[..., None], 0.0, dl)
    dlc = jnp.einsum("pqcr,crl->pql", dl, jnp.asarray(CHILD_BARY))
    return jnp.einsum("pq,pql->pl", wts[..., 0], dlc), jnp.einsum(
        "pqk,pql->pkl", wts[..., 1:4], dlc
    )


class CurvedElements:
    """Quadrature of one curved surface: the far-field terms (rule, sign), the
    near-field test rules and the trial sub-triangles."""

    def __init__(self, cm: CurvedMesh, far_rule=FAR_RULE, near_rule=NEAR_RULE, far_base=FAR_BASE):
        self.cm = cm

        def term(mesh, rule, flat, sign, const_curl=False):
            p, w, lam, curl, nrm, _ = element_rule(mesh, rule, flat)
            # on a flat coarse triangle the hat curls are constant: (nt, 3, 3), and
            # the N integral of the term is its P0 single layer times curl products
            c = jnp.asarray(curl[:, 0]) if const_curl else None
            return (
                jnp.asarray(p),
                jnp.asarray(_stack_weights(w, lam, curl)),
                jnp.asarray(nrm),
                sign,
                c,
            )

        self.far = [term(cm, far_rule, False, 1.0)]
        if far_base is not None:  # flat rule + (curved - flat sub-triangles) with the cheap rule
            flat_sub = curved_refinement(cm.coarse, curved=False)
            self.far += [
                term(cm, far_base, True, 1.0, True),
                term(flat_sub, far_rule, False, -1.0, True),
            ]
            self.dist = tuple(jnp.asarray(x) for x in distant_rule(cm, far_base, far_rule))
            self.dist_minor = tuple(
                jnp.moveaxis(x, 0, -1) for x in self.dist
            )  # trial triangles last
        else:
            self.dist = self.dist_minor = None
        p, w, lam, curl, _, child = element_rule(cm, near_rule)
        self.near = (jnp.asarray(p), jnp.asarray(_stack_weights(w, lam, curl)), jnp.asarray(child))
        p, w, lam, curl, _, child = element_rule(cm, (near_rule[0], near_rule[1] + 1))
        self.touch = (jnp.asarray(p), jnp.asarray(_stack_weights(w, lam, curl)), jnp.asarray(child))
        self.sub = jnp.asarray(cm.child_triangles())
        self.sub_curl = jnp.asarray(element_rule(cm, ("1", 0))[3])  # (nt, 4, 3, 3): per child
        self.coarse_tri = cm.coarse.vertices[cm.coarse.faces]
        self.faces = np.asarray(cm.coarse.faces)
        self.nv = len(cm.coarse.vertices)
        self.nt = len(self.faces)


def _zones(ea, eb, same, near_factor):
    """Near pairs of coarse triangles (centroid distance below ``near_factor``
    times the sum of the largest circumradii), split into touching ones (the
    same surface, sharing a vertex) and the others."""
    a, b = near_pairs(ea.coarse_tri, eb.coarse_tri, near_factor)
    touch = np.zeros(len(a), bool)
    if same:
        touch = (ea.faces[a][:, :, None] == eb.faces[b][:, None, :]).any(axis=(1, 2))
    return (a[touch], b[touch]), (a[~touch], b[~touch])


def _far_s(terms_a, terms_b, rows_a=None, rows_b=None, p1=False):
    """Far-rule single layer (S0, or S11 with ``p1``) and hypersingular operator N
    summed over the far-field terms: for a chunk of test triangles against all
    trial ones ((c, nb) or (c, nb, 3, 3), and (c, nb, 3, 3)), or, with index
    arrays rows_a/rows_b, for a list of pairs ((P,) or (P, 3, 3), and (P, 3, 3))."""
    pairs = rows_b is not None
    sub = "p" if pairs else "cb"
    left, right = ("p", "p") if pairs else ("c", "b")
    out_s = out_n = 0.0
    s0_const, curls = 0.0, None  # terms with constant curls: N from their P0 single layer
    for (pa, wa, _, sign, ca0), (pb, wb, _, _, cb0) in zip(terms_a, terms_b):
        if pairs:
            pa, wa, pb, wb = pa[rows_a], wa[rows_a], pb[rows_b], wb[rows_b]
            k = _far_kernel_s(pa, pb)  # (P, Qa, Qb)
        else:
            k = _far_kernel_s(pa[:, None], pb[None])  # (c, nb, Qa, Qb)
        s0 = None
        if ca0 is not None and cb0 is not None:
            s0 = jnp.einsum(
                f"{left}q,{sub}qr,{right}r->{sub}", wa[..., 0], k, wb[..., 0], optimize="optimal"
            )
            s0_const = s0_const + sign * s0
            curls = (ca0[rows_a], cb0[rows_b]) if pairs else (ca0, cb0)
        else:  # hats 1, 2 only (below)
            ca = wa[..., 7:].reshape(wa.shape[:2] + (2, 3))
            cb = wb[..., 7:].reshape(wb.shape[:2] + (2, 3))
            out_n = out_n - sign * jnp.einsum(
                f"{left}qkj,{sub}qr,{right}rlj->{sub}kl", ca, k, cb, optimize="optimal"
            )
        if p1:
            out_s = out_s + sign * jnp.einsum(
                f"{left}qk,{sub}qr,{right}rl->{sub}kl",
                wa[..., 1:4],
                k,
                wb[..., 1:4],
                optimize="optimal",
            )
        else:
            if s0 is None:
                s0 = jnp.einsum(
                    f"{left}q,{sub}qr,{right}r->{sub}",
                    wa[..., 0],
                    k,
                    wb[..., 0],
                    optimize="optimal",
                )
            out_s = out_s + sign * s0
    if curls is not None:
        out_n = out_n - jnp.einsum(
            f"{sub},{left}kj,{right}lj->{sub}kl",
            s0_const,
            curls[0][..., 1:, :],
            curls[1][..., 1:, :],
        )
    return out_s, _complete_hats(out_n)


def _complete_hats(n2):
    """(..., 2, 2) entries of hats 1, 2 -> (..., 3, 3): the curls of the three
    hats of a triangle sum to zero pointwise, so row and column 0 are minus the
    sums of the others (N 1 = 0 exactly, and 4/9 of the products)."""
    top = jnp.concatenate([-jnp.sum(n2, axis=-2, keepdims=True), n2], axis=-2)  # (..., 3, 2)
    return jnp.concatenate([-jnp.sum(top, axis=-1, keepdims=True), top], axis=-1)


def _far_d(terms_a, terms_b, rows_a=None, rows_b=None, p1=False):
    """Far-rule double layer summed over the far-field terms, like :func:`_far_s`:
    D0 ((c, nb, 3) or (P, 3)) or, with ``p1``, D11 ((c, 3, nb, 3) or (P, 3, 3))."""
    pairs = rows_b is not None
    out = 0.0
    for (pa, wa, _, sign, _), (pb, wb, nb, _, _) in zip(terms_a, terms_b):
        if pairs:
            pa, wa, pb, wb, nb = pa[rows_a], wa[rows_a], pb[rows_b], wb[rows_b], nb[rows_b]
            k = _far_kernel_d(pa, pb, nb)  # (P, Qa, Qb)
            spec = "pqk,pqr,prl->pkl" if p1 else "pq,pqr,prl->pl"
        else:
            k = _far_kernel_d(pa[:, None], pb[None], nb[None])  # (c, nb, Qa, Qb)
            spec = "cqk,cbqr,brl->ckbl" if p1 else "cq,cbqr,brl->cbl"
        left = wa[..., 1:4] if p1 else wa[..., 0]
        out = out + sign * jnp.einsum(spec, left, k, wb[..., 1:4], optimize="optimal")
    return out


def _dist_s(da, db, rows_a, rows_b, p1=False):
    """Single layer and hypersingular operator of the pairs (rows_a, rows_b) by
    the condensed distant rule (:func:`distant_rule`): (P,) or (P, 3, 3), and (P, 3, 3)."""
    (pa, wa, _), (pb, wb, _) = da, db
    pa, wa, pb, wb = pa[rows_a], wa[rows_a], pb[rows_b], wb[rows_b]
    k = _dist_kernel_s(pa, pb)  # (P, Qa, Qb)
    ca = wa[..., 7:].reshape(wa.shape[:2] + (2, 3))
    cb = wb[..., 7:].reshape(wb.shape[:2] + (2, 3))
    n = -jnp.einsum("pqkj,pqr,prlj->pkl", ca, k, cb, optimize="optimal")
    if p1:
        s_val = jnp.einsum("pqk,pqr,prl->pkl", wa[..., 1:4], k, wb[..., 1:4], optimize="optimal")
    else:
        s_val = jnp.einsum("pq,pqr,pr->p", wa[..., 0], k, wb[..., 0], optimize="optimal")
    return s_val, _complete_hats(n)


def _dist_d(da, db, rows_a, rows_b, p1=False):
    """Double layer of the pairs by the condensed distant rule: (P, 3) or (P, 3, 3)."""
    (pa, wa, _), (pb, _, vb) = da, db
    pa, wa, pb, vb = pa[rows_a], wa[rows_a], pb[rows_b], vb[rows_b]
    d = pa[:, :, None, :] - pb[:, None, :, :]  # (P, Qa, Qb, 3)
    inv = jax.lax.rsqrt(jnp.maximum(jnp.sum(d * d, -1), R2_FLOOR))
    f = d * (inv * inv * inv / FOUR_PI)[..., None]
    if p1:
        return jnp.einsum("pqk,pqrd,prld->pkl", wa[..., 1:4], f, vb, optimize="optimal")
    return jnp.einsum("pq,pqrd,prld->pl", wa[..., 0], f, vb, optimize="optimal")


def _sum_trial_corners_minor(vals, faces_b, nv_b):
    """vals (c, K, 3 corners, nb) -> (c, K, nv_b): corner values summed into the trial vertices."""
    c, kk, _, nb = vals.shape
    flat = jnp.transpose(vals, (2, 3, 0, 1)).reshape(3 * nb, c * kk)  # corner-major
    out = jax.ops.segment_sum(flat, faces_b.T.ravel(), num_segments=nv_b)
    return out.T.reshape(c, kk, nv_b)


def _complete_hats_kl(n2):
    """(c, 2, 2, nb) entries of hats 1, 2 -> (c, 3, 3, nb), as :func:`_complete_hats`."""
    top = jnp.concatenate([-jnp.sum(n2, axis=1, keepdims=True), n2], axis=1)
    return jnp.concatenate([-jnp.sum(top, axis=2, keepdims=True), top], axis=2)


@functools.partial(jax.jit, static_argnames=("nv_b", "p1"))
def _rows_s_dist(idx, da, dbm, faces_b, nv_b, p1):
    """Distant-rule single layer and hypersingular rows of the test triangles
    ``idx`` against all trial ones, summed into the trial vertices (see
    :func:`_rows_s`).  The trial arrays ``dbm`` have the trial triangles last
    ((Q, 3, nb), (Q, 13, nb)), so the sums over the few points vectorise over
    the trial triangles, and the coincident points of a triangle with itself
    get the floored distance of :func:`_dist_kernel_s` instead of a mask."""
    pa, wa = da[0][idx], da[1][idx]  # (c, Qa, 3), (c, Qa, 13)
    pb, wb, _ = dbm
    d = pa[:, :, None, :, None] - pb[None, None]  # (c, Qa, Qb, 3, nb)
    k = jax.lax.rsqrt(jnp.maximum(jnp.sum(d * d, axis=3), R2_FLOOR)) / FOUR_PI  # (c, Qa, Qb, nb)
    c, qa = pa.shape[:2]
    u = jnp.sum(k[:, :, :, None, :] * wb[None, None, :, 7:], axis=2)  # (c, Qa, 6, nb)
    ca = wa[:, :, 7:].reshape(c, qa, 2, 1, 3, 1)
    n2 = -jnp.sum(ca * u.reshape(c, qa, 1, 2, 3, -1), axis=(1, 4))  # (c, 2, 2, nb)
    n_rows = _sum_trial_corners_minor(_complete_hats_kl(n2), faces_b, nv_b)
    if p1:
        t = jnp.sum(k[:, :, :, None, :] * wb[None, None, :, 1:4], axis=2)  # (c, Qa, 3, nb)
        s11 = jnp.sum(wa[:, :, 1:4, None, None] * t[:, :, None], axis=1)  # (c, 3, 3, nb)
        return _sum_trial_corners_minor(s11, faces_b, nv_b), n_rows
    s0 = jnp.sum(wa[:, :, 0, None, None] * k * wb[None, None, :, 0], axis=(1, 2))  # (c, nb)
    return s0, n_rows


@functools.partial(jax.jit, static_argnames=("nv_b", "p1"))
def _rows_d_dist(idx, da, dbm, faces_b, nv_b, p1):
    """Distant-rule double-layer rows (P0 test: (c, nv_b); P1 test: (c, 3, nv_b)),
    trial triangles last as in :func:`_rows_s_dist`."""
    pa, wa = da[0][idx], da[1][idx]
    pb, _, vb = dbm  # vb (Qb, 3 hats, 3, nb)
    d = pa[:, :, None, :, None] - pb[None, None]  # (c, Qa, Qb, 3, nb)
    inv = jax.lax.rsqrt(jnp.maximum(jnp.sum(d * d, axis=3), R2_FLOOR))
    f = d * (inv * inv * inv / FOUR_PI)[:, :, :, None]  # (c, Qa, Qb, 3, nb)
    if p1:
        g = jnp.sum(f[:, :, :, None] * vb[None, None], axis=4)  # (c, Qa, Qb, 3 hats, nb)
        t = jnp.sum(g, axis=2)
        d11 = jnp.sum(wa[:, :, 1:4, None, None] * t[:, :, None], axis=1)  # (c, 3, 3, nb)
        return _sum_trial_corners_minor(d11, faces_b, nv_b)
    f0 = jnp.sum(wa[:, :, 0, None, None, None] * f, axis=1)  # test weights first: (c, Qb, 3, nb)
    d0 = jnp.sum(f0[:, :, None] * vb[None], axis=(1, 3))  # (c, 3 hats, nb)
    return _sum_trial_corners_minor(d0[:, None], faces_b, nv_b)[:, 0]


_pairs_dist_s = jax.jit(lambda x, y, da, db, p1: _dist_s(da, db, x, y, p1), static_argnames="p1")
_pairs_dist_d = jax.jit(lambda x, y, da, db, p1: _dist_d(da, db, x, y, p1), static_argnames="p1")


@functools.partial(jax.jit, static_argnames=("nv_b", "p1"))
def _rows_s(idx, far_a, far_b, faces_b, nv_b, p1):
    """Far-rule single layer and hypersingular rows of the test triangles ``idx``
    against all trial triangles, summed into the trial vertices."""
    terms = [
        (p[idx], w[idx], n[idx], sg, None if c is None else c[idx]) for p, w, n, sg, c in far_a
    ]
    s_val, n = _far_s(terms, far_b, p1=p1)  # (c, nb) | (c, nb, 3, 3)
    n_rows = _sum_trial_corners(jnp.moveaxis(n, 1, 2), faces_b, nv_b)  # (c, 3, nv_b)
    if p1:
        return _sum_trial_corners(jnp.moveaxis(s_val, 1, 2), faces_b, nv_b), n_rows
    return s_val, n_rows


@functools.partial(jax.jit, static_argnames=("nv_b", "p1"))
def _rows_d(idx, far_a, far_b, faces_b, nv_b, p1):
    """Far-rule double-layer rows (P0 test: (c, nv_b); P1 test: (c, 3, nv_b))."""
    terms = [
        (p[idx], w[idx], n[idx], sg, None if c is None else c[idx]) for p, w, n, sg, c in far_a
    ]
    d = _far_d(terms, far_b, p1=p1)
    if p1:
        return _sum_trial_corners(d, faces_b, nv_b)
    return _sum_trial_corners(d[:, None], faces_b, nv_b)[:, 0]


_pairs_far_s = jax.jit(
    lambda x, y, far_a, far_b, p1: _far_s(far_a, far_b, x, y, p1), static_argnames="p1"
)
_pairs_far_d = jax.jit(
    lambda x, y, far_a, far_b, p1: _far_d(far_a, far_b, x, y, p1), static_argnames="p1"
)


@jax.jit
def _pairs_near_s(x, y, pts, wts, sub_b, curl_b):
    return _near_s(pts[x], wts[x], sub_b[y], curl_b[y])


@functools.partial(jax.jit, static_argnames=("same",))
def _pairs_near_d(x, y, pts, wts, child, sub_b, same):
    return _near_d(pts[x], wts[x], sub_b[y], child, x, y, same)


def _correction_zones(ea, eb, same, near_factor, distant_factor):
    """The pairs whose dense-pass values are replaced: touching and other near
    pairs (exact inner integrals, :func:`_zones`) and, with the condensed
    distant rule, the remaining pairs within ``distant_factor`` (far rule)."""
    touch, near = _zones(ea, eb, same, near_factor)
    if distant_factor is None:
        return touch, near, None
    x, y = near_pairs(ea.coarse_tri, eb.coarse_tri, distant_factor)
    if (
        len(x) > DISTANT_MAX_FRACTION * ea.nt * eb.nt
    ):  # coarse mesh: few distant pairs, not worth it
        return touch, near, None
    inner = np.concatenate([touch[0], near[0]]) * eb.nt + np.concatenate([touch[1], near[1]])
    mid = ~np.isin(x * eb.nt + y, inner)
    return touch, near, (x[mid], y[mid])


def _apply(out, parts, faces_a, faces_b):
    """Add the per-pair corrections ``parts`` [(x, y, diff), ...] into ``out``."""
    parts = [q for q in parts if len(q[0])]
    if parts:
        x, y, diff = (np.concatenate([q[k] for q in parts]) for k in range(3))
        _add_pairs(out, x, y, diff, faces_a, faces_b)


def single_layer_and_hypersingular(
    ea: CurvedElements,
    eb: CurvedElements,
    same=False,
    p1=False,
    chunk=16,
    near_factor=1.5,
    distant_factor=DISTANT_FACTOR,
):
    """Curved-element single layer (P0-P0 (nt_a, nt_b) or, with ``p1``, P1-P1
    (nv_a, nv_b), m^3) and hypersingular operator (nv_a, nv_b), 1/m."""
    fbj = jnp.asarray(eb.faces)
    touch, near, mid = _correction_zones(
        ea, eb, same, near_factor, None if ea.dist is None else distant_factor
    )
    far = lambda i, j: _pairs_far_s(i, j, ea.far, eb.far, p1)
    if mid is not None:  # dense pass and the values it put at the corrected pairs
        rows = lambda i: _rows_s_dist(i, ea.dist, eb.dist_minor, fbj, eb.nv, p1)
        base = lambda i, j: _pairs_dist_s(i, j, ea.dist, eb.dist, p1)
    else:
        rows = lambda i: _rows_s(i, ea.far, eb.far, fbj, eb.nv, p1)
        base = far
    s_far, n_far = run_chunks(rows, [np.arange(ea.nt)], ea.nt, chunk, n_out=2)
    N = _sum_test_corners(n_far, ea.cm.coarse)
    S = _sum_test_corners(s_far, ea.cm.coarse) if p1 else np.array(s_far)
    n_parts, s_parts = [], []
    if mid is not None and len(mid[0]):  # the far rule itself within distant_factor
        full = run_chunks(far, list(mid), len(mid[0]), 2048, n_out=2)
        cond = run_chunks(base, list(mid), len(mid[0]), 2048, n_out=2)
        n_parts.append(mid + (full[1] - cond[1],))
        s_parts.append(mid + (full[0] - cond[0],))
    for (x, y), rule, chunk_pairs in zip((touch, near), (ea.touch, ea.near), (256, 1024)):
        if not len(x):
            continue
        hi = run_chunks(
            lambda i, j, r=rule: _pairs_near_s(i, j, r[0], r[1], eb.sub, eb.sub_curl),
            [x, y],
            len(x),
            chunk_pairs,
            n_out=3,
        )
        lo = run_chunks(base, [x, y], len(x), 2048, n_out=2)
        n_parts.append((x, y, hi[2] - lo[1]))
        s_parts.append((x, y, (hi[1] if p1 else hi[0]) - lo[0]))
    _apply(N, n_parts, ea.faces, eb.faces)
    _apply(S, s_parts, ea.faces, eb.faces)
    if same:
        S, N = 0.5 * (S + S.T), 0.5 * (N + N.T)
    return S, N


def double_layer(
    ea: CurvedElements,
    eb: CurvedElements,
    same=False,
    p1=False,
    chunk=16,
    near_factor=1.5,
    distant_factor=DISTANT_FACTOR,
):
    """Curved-element double layer: P0-P1 (nt_a, nv_b) or, with ``p1``, P1-P1
    (nv_a, nv_b), m^2 (principal value: zero on a sub-triangle itself)."""
    fbj = jnp.asarray(eb.faces)
    touch, near, mid = _correction_zones(
        ea, eb, same, near_factor, None if ea.dist is None else distant_factor
    )
    far = lambda i, j: _pairs_far_d(i, j, ea.far, eb.far, p1)
    if mid is not None:
        rows = lambda i: _rows_d_dist(i, ea.dist, eb.dist_minor, fbj, eb.nv, p1)
        base = lambda i, j: _pairs_dist_d(i, j, ea.dist, eb.dist, p1)
    else:
        rows = lambda i: _rows_d(i, ea.far, eb.far, fbj, eb.nv, p1)
        base = far
    d_far = run_chunks(rows, [np.arange(ea.nt)], ea.nt, chunk)
    D = _sum_test_corners(d_far, ea.cm.coarse) if p1 else np.array(d_far)
    parts = []
    if mid is not None and len(mid[0]):
        full = run_chunks(far, list(mid), len(mid[0]), 2048)
        cond = run_chunks(base, list(mid), len(mid[0]), 2048)
        parts.append(mid + (full - cond,))
    for (x, y), rule, chunk_pairs in zip((touch, near), (ea.touch, ea.near), (256, 1024)):
        if not len(x):
            continue
        hi = run_chunks(
            lambda i, j, r=rule: _pairs_near_d(i, j, r[0], r[1], r[2], eb.sub, same),
            [x, y],
            len(x),
            chunk_pairs,
            n_out=2,
        )
        lo = run_chunks(base, [x, y], len(x), 2048)
        parts.append((x, y, (hi[1] if p1 else hi[0]) - lo))
    _apply(D, parts, ea.faces, eb.faces)
    return D


def smooth_rule(cm):
    """Signed 15-point rule per curved element for smooth integrands (points,
    weights with area, coarse hat values, normals): the flat triangle's
    7-point rule plus the centroid rule on the four curved minus the four flat
    sub-triangles (the curvature correction of this module)."""
    parts = [
        element_rule(cm, ("7", 0), flat=True),
        element_rule(cm, FAR_RULE),
        element_rule(curved_refinement(cm.coarse, curved=False), FAR_RULE),
    ]
    signs = (1.0, 1.0, -1.0)
    qp = np.concatenate([p[0] for p in parts], axis=1)
    qw = np.concatenate([sg * p[1] for sg, p in zip(signs, parts)], axis=1)
    lam = np.concatenate([p[2] for p in parts], axis=0)
    nrm = np.concatenate([p[4] for p in parts], axis=1)
    return qp, qw, lam, nrm
