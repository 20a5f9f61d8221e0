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

Inner integrals are analytic (:mod:`.bem_integrals`); outer integrals use a
Gauss rule on each test triangle: a cheap rule for well-separated pairs and a
subdivided degree-5 rule for near pairs (centroid distance below
``near_factor`` times the local triangle size), the near-field correction
being added pair by pair.  Kernel evaluations run in jitted JAX chunks so the
working memory stays bounded (``chunk`` test triangles at a time).
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ...geometry.mesh import TriangleMesh
from .bem_integrals import double_layer_p1, single_layer_p0, triangle_rule

#: default quadrature: far pairs / near pairs (order, subdivision level)
FAR_RULE = ("3", 0)
NEAR_RULE = ("7", 2)


def triangles(mesh: TriangleMesh):
    return np.asarray(mesh.vertices)[np.asarray(mesh.faces)]


def _qpoints(tri, rule):
    """Quadrature points (nt, Q, 3) and weights times area (nt, Q)."""
    bary, w = triangle_rule(*rule)
    pts = np.einsum("qk,tkj->tqj", bary, tri)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return pts, area[:, None] * w[None, :]


@jax.jit
def _sl_rows(pts, wts, tri_b):
    """(chunk, nt_b): sum_q w_q int_{T_b} G(x_q - y) dy."""
    vals = single_layer_p0(pts[:, :, None, :], tri_b[None, None])      # (c, Q, nb)
    return jnp.einsum("cq,cqb->cb", wts, vals)


@functools.partial(jax.jit, static_argnames=("same",))
def _dl_rows(pts, wts, tri_b, rows, same):
    """(chunk, nt_b, 3) double-layer values; zero on the diagonal if ``same``."""
    vals = double_layer_p1(pts[:, :, None, :], tri_b[None, None])      # (c, Q, nb, 3)
    out = jnp.einsum("cq,cqbk->cbk", wts, vals)
    if same:
        mask = rows[:, None] == jnp.arange(tri_b.shape[0])[None, :]
        out = jnp.where(mask[..., None], 0.0, out)
    return out


@jax.jit
def _sl_pairs(pts, wts, tri_b):
    """Pairwise (npairs,) values for a list of (test points, trial triangle)."""
    return jnp.einsum("pq,pq->p", wts, single_layer_p0(pts, tri_b[:, None]))


@functools.partial(jax.jit, static_argnames=("same",))
def _dl_pairs(pts, wts, tri_b, a, b, same):
    vals = jnp.einsum("pq,pqk->pk", wts, double_layer_p1(pts, tri_b[:, None]))
    if same:
        vals = jnp.where((a == b)[:, None], 0.0, vals)
    return vals


def _sizes(tri):
    c = tri.mean(axis=1)
    return c, np.max(np.linalg.norm(tri - c[:, None], axis=2), axis=1)


def near_pairs(tri_a, tri_b, near_factor):
    """Index pairs (a, b) of triangles closer than ``near_factor`` sizes."""
    ca, ra = _sizes(tri_a)
    cb, rb = _sizes(tri_b)
    radius = near_factor * (ra.max() + rb.max())
    tree = cKDTree(cb)
    lists = tree.query_ball_point(ca, radius)
    a = np.repeat(np.arange(len(ca)), [len(x) for x in lists])
    b = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if len(a) else np.zeros(0, int)
    return a.astype(np.int64), b


def _chunked(fn, n, chunk):
    out = []
    for s in range(0, n, chunk):
        out.append(np.asarray(fn(s, min(s + chunk, n))))
    return np.concatenate(out, axis=0)


def _pad_call(fn, arrays, n, chunk):
    """Call jitted ``fn`` on fixed-size chunks (padding the last) to avoid retracing."""
    out = []
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        parts = [x[s:e] for x in arrays]
        if e - s < chunk:
            parts = [np.concatenate([p, np.repeat(p[-1:], chunk - (e - s), axis=0)]) for p in parts]
        out.append(np.asarray(fn(*parts))[: e - s])
    return np.concatenate(out, axis=0)


def single_layer_matrix(mesh_a: TriangleMesh, mesh_b: TriangleMesh, same=False, chunk=64,
                        near_factor=2.0, far_rule=FAR_RULE, near_rule=NEAR_RULE):
    """P0-P0 single-layer Galerkin matrix ``S_AB`` (nt_a, nt_b), m^3."""
    ta, tb = triangles(mesh_a), triangles(mesh_b)
    pf, wf = _qpoints(ta, far_rule)
    tbj = jnp.asarray(tb)
    S = _pad_call(lambda p, w: _sl_rows(p, w, tbj), [pf, wf], len(ta), chunk)
    a, b = near_pairs(ta, tb, near_factor)
    pn, wn = _qpoints(ta, near_rule)
    hi = _pad_call(_sl_pairs, [pn[a], wn[a], tb[b]], len(a), 4096)
    lo = _pad_call(_sl_pairs, [pf[a], wf[a], tb[b]], len(a), 4096)
    np.add.at(S, (a, b), hi - lo)
    if same:
        S = 0.5 * (S + S.T)
    return S


def double_layer_matrix(mesh_a: TriangleMesh, mesh_b: TriangleMesh, same=False, chunk=32,
                        near_factor=2.0, far_rule=FAR_RULE, near_rule=NEAR_RULE):
    """P0-P1 double-layer Galerkin matrix ``D_AB`` (nt_a, nv_b), m^2."""
    ta, tb = triangles(mesh_a), triangles(mesh_b)
    fb = np.asarray(mesh_b.faces)
    nv = len(mesh_b.vertices)
    pf, wf = _qpoints(ta, far_rule)
    tbj = jnp.asarray(tb)
    fbj = jnp.asarray(fb.ravel())

    @jax.jit
    def rows(p, w, r):
        vals = _dl_rows(p, w, tbj, r, same)                 # (c, nb, 3)
        flat = vals.reshape(vals.shape[0], -1).T            # (nb*3, c)
        return jax.ops.segment_sum(flat, fbj, num_segments=nv).T

    D = _pad_call(rows, [pf, wf, np.arange(len(ta))], len(ta), chunk)
    a, b = near_pairs(ta, tb, near_factor)
    pn, wn = _qpoints(ta, near_rule)
    hi = _pad_call(lambda p, w, t, x, y: _dl_pairs(p, w, t, x, y, same),
                   [pn[a], wn[a], tb[b], a, b], len(a), 4096)
    lo = _pad_call(lambda p, w, t, x, y: _dl_pairs(p, w, t, x, y, same),
                   [pf[a], wf[a], tb[b], a, b], len(a), 4096)
    diff = hi - lo
    for k in range(3):
        np.add.at(D, (a, fb[b, k]), diff[:, k])
    return D


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
    curls = np.stack([-(tri[:, (k + 2) % 3] - tri[:, (k + 1) % 3]) / two_area[:, None]
                      for k in range(3)], axis=1)                      # (nt, 3, 3)
    for c in range(3):
        out.append(sp.csr_matrix((curls[:, :, c].ravel(), (rows, f.ravel())), shape=(nt, nv)))
    return out


def hypersingular_matrix(S_ab, curls_a, curls_b):
    """P1-P1 hypersingular Galerkin matrix from the P0 single-layer block (1/m)."""
    out = 0.0
    for ca, cb in zip(curls_a, curls_b):
        left = np.asarray(ca.T @ S_ab)                 # (nv_a, nt_b)
        out = out - np.asarray((cb.T @ left.T).T)      # (nv_a, nv_b)
    return out
