"""Sensor functionals of the symmetric BEM (:mod:`.bem`): what each sensor
reads from the surface unknowns.

EEG: the scalp potential at each electrode's closest point on the scalp
mesh, by Green's representation in the scalp compartment (default) or by P1
interpolation.  MEG: Geselowitz (1970),
``B(r) = B0(r) - mu0/(4 pi) sum_i (s_i - s_{i+1}) int_{S_i} V(r') n' x (r - r') / |r - r'|^3 dS'``
with the primary field ``B0 = mu0/(4 pi) q x (r - r0) / |r - r0|^3``,
integrated with a degree-5 rule on each triangle (the 15-point smooth rule
on curved elements), subdivided for triangles close to a coil point, at the
coil integration points of :class:`~.sensors.MEGSensors`.

``ops`` is a :class:`~.bem.BEMOperators` throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..._core.errors import ParameterError
from ..._core.parallel import run_chunks
from ...geometry.mesh import TriangleMesh
from . import bem_curved
from .bem_integrals import (
    double_layer_p0,
    double_layer_p1,
    single_layer_p0,
    single_layer_p1,
    triangle_rule,
)
from .bem_operators import triangles
from .sensors import MEGSensors

MU0_OVER_4PI = 1e-7


def closest_points(mesh: TriangleMesh, points, k=16):
    """Closest point on ``mesh`` for each point: (face index, barycentric (3,))."""
    tri = triangles(mesh)
    cent = tri.mean(axis=1)
    _, cand = cKDTree(cent).query(points, k=min(k, len(cent)))
    cand = np.atleast_2d(cand)
    best_d = np.full(len(points), np.inf)
    best_f = np.zeros(len(points), int)
    best_b = np.zeros((len(points), 3))
    for j in range(cand.shape[1]):
        f = cand[:, j]
        a, b, c = tri[f, 0], tri[f, 1], tri[f, 2]
        q, bary = _closest_on_triangle(points, a, b, c)
        d = np.linalg.norm(points - q, axis=1)
        better = d < best_d
        best_d[better], best_f[better], best_b[better] = d[better], f[better], bary[better]
    return best_f, best_b, best_d


def _closest_on_triangle(p, a, b, c):
    """Closest points (n, 3) on triangles and their barycentric coordinates."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    # barycentric of the projection
    nn = np.einsum("ij,ij->i", n, n)
    ap = p - a
    v = np.einsum("ij,ij->i", np.cross(ap, ac), n) / nn
    w = np.einsum("ij,ij->i", np.cross(ab, ap), n) / nn
    u = 1 - v - w
    bary = np.stack([u, v, w], axis=1)
    inside = (bary >= 0).all(axis=1)
    q = a + v[:, None] * ab + w[:, None] * ac
    best_q, best_b = q.copy(), bary.copy()
    best_d = np.where(inside, np.linalg.norm(p - q, axis=1), np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        x0, x1 = (a, b, c)[i], (a, b, c)[j]
        e = x1 - x0
        t = np.clip(np.einsum("ij,ij->i", p - x0, e) / np.einsum("ij,ij->i", e, e), 0, 1)
        qe = x0 + t[:, None] * e
        d = np.linalg.norm(p - qe, axis=1)
        better = (~inside) & (d < best_d)
        be = np.zeros((len(p), 3))
        be[:, i], be[:, j] = 1 - t, t
        best_q[better], best_b[better], best_d[better] = qe[better], be[better], d[better]
    return best_q, best_b


EEG_READOUTS = ("representation", "interpolation")


def eeg_functional(ops, electrodes, readout="representation"):
    """Electrode potentials as functionals of the BEM unknowns: ``(F_V, F_p)``,
    each (n_elec, n_dof), the rows being ``F_V + F_p / sigma_N`` (sigma_N the
    scalp's conductivity, S/m).

    ``readout="interpolation"``: the P1 interpolation of the scalp potential at
    each electrode's closest point ``x`` on the scalp (barycentric weights; on
    curved elements at the closest point of the curved scalp), ``F_p = 0``.
    This is what OpenMEEG and MNE-Python read.

    ``readout="representation"`` (default): Green's representation of the
    potential in the scalp compartment, evaluated at ``x`` on its outer
    boundary S_N (no current leaves the head, p_N = 0):

    ``c(x) V(x) = -int_{S_N} V dG/dn' + int_{S_N-1} V dG/dn' - int_{S_N-1} G p / sigma_N``,

    ``G = 1/(4 pi |x - y|)``, normals outward, the principal value on S_N and
    ``c(x) = -int_{S_N} dG/dn'`` the interior solid-angle fraction (1/2 inside
    a flat face), all integrals analytic on the flat triangles
    (:mod:`.bem_integrals`).  Exact for the exact solution, so its lead fields
    converge to the same values, but the electrode no longer reads the P1
    interpolant between nodes: near the electrode the double-layer kernel on
    a smooth scalp is only ``1/(8 pi R r)`` (weakly singular), so the
    interpolation error of a sharply peaked scalp potential enters with a
    small weight and the smooth remainder of the functional inherits the
    Galerkin solution's superconvergence (the classical post-processing of
    boundary-element solutions by the representation formula).  On 3 x 642
    nested spheres it halves EEG RDM at eccentricity 0.9-0.95, on 3 x 2562 it
    divides it by about three (benchmarks/README.md).  It needs the scalp
    compartment to be free of sources, i.e. two or more surfaces.
    """
    if readout not in EEG_READOUTS:
        raise ParameterError(
            "eeg_readout",
            readout,
            "'representation' (Green's representation in the "
            "scalp compartment) or 'interpolation' (P1 interpolation at the electrode)",
        )
    n = ops.n_surfaces
    if readout == "representation" and n == 1:
        raise ParameterError(
            "eeg_readout",
            readout,
            "'interpolation' for a single-surface head (its "
            "scalp compartment holds the sources, whose direct potential the "
            "representation would need)",
        )
    scalp_cm = None if ops.curved is None else ops.curved[-1]
    scalp = ops.surfaces[-1] if scalp_cm is None else scalp_cm.fine
    f, bary, _ = closest_points(scalp, np.asarray(electrodes, float))
    faces = np.asarray(scalp.faces)
    v_off, p_off = ops.offsets()
    f_v = np.zeros((len(f), int(p_off[-1])))
    f_p = np.zeros_like(f_v)
    if readout == "interpolation":
        w = np.zeros((len(f), len(scalp.vertices)))
        for k in range(3):
            np.add.at(w, (np.arange(len(f)), faces[f, k]), bary[:, k])
        if scalp_cm is not None:
            w = np.asarray((scalp_cm.prolongation.T @ w.T).T)
        f_v[:, v_off[-2] : v_off[-1]] = w
        return f_v, f_p
    x = np.einsum("ek,ekj->ej", bary, np.asarray(scalp.vertices)[faces[f]])
    dl, dl0 = _layer_rows(x, triangles(scalp), "double")
    c = -dl0.sum(axis=1)  # interior solid-angle fraction at x
    f_v[:, v_off[-2] : v_off[-1]] = -_to_unknowns(dl, scalp_cm, "p1", ops.surfaces[-1]) / c[:, None]
    cm = None if ops.curved is None else ops.curved[-2]  # the scalp compartment's inner boundary
    inner = ops.surfaces[-2]
    tri = triangles(inner if cm is None else cm.fine)
    dl, _ = _layer_rows(x, tri, "double")
    f_v[:, v_off[-3] : v_off[-2]] = _to_unknowns(dl, cm, "p1", inner) / c[:, None]
    sl, _ = _layer_rows(x, tri, "single_" + ops.flux)
    f_p[:, p_off[-2] : p_off[-1]] = -_to_unknowns(sl, cm, ops.flux, inner) / c[:, None]
    return f_v, f_p


def _to_unknowns(vals, cm, basis, mesh):
    """Per-triangle values (n, nt[, 3]) of a flat mesh (or of a curved mesh's
    sub-triangles) summed onto the unknowns' basis ("p1": hats, "p0": faces)."""
    if basis == "p0":
        out = vals
        return out if cm is None else np.asarray((cm.aggregation.T @ out.T).T)
    tri_mesh = mesh if cm is None else cm.fine
    faces = np.asarray(tri_mesh.faces)
    nv = len(tri_mesh.vertices)
    out = np.zeros((vals.shape[0], nv))
    for k in range(3):
        out += np.asarray(
            sp.csr_matrix(
                (np.ones(len(faces)), (faces[:, k], np.arange(len(faces)))), shape=(nv, len(faces))
            )
            @ vals[:, :, k].T
        ).T
    return out if cm is None else np.asarray((cm.prolongation.T @ out.T).T)


def _layer_rows(x, tri, kind, chunk=8, block=512):
    """Analytic layer potentials of every triangle at the points ``x`` (n, 3):
    "double": (hats' double layer (n, nt, 3), P0 double layer (n, nt)) with
    zero on the triangles whose plane contains the point (the principal
    value); "single_p0": ((n, nt), None); "single_p1": ((n, nt, 3), None).
    Evaluated in blocks of ``chunk`` points x ``block`` triangles (the last
    ones padded), so one compilation serves every mesh."""
    fn = _LAYER_KERNELS[kind]
    nt = len(tri)
    pad = -nt % block
    tri = np.concatenate([tri, np.repeat(tri[-1:], pad, axis=0)]) if pad else tri

    def on_block(t):
        return lambda p: fn(p, t)

    parts = [
        run_chunks(on_block(jnp.asarray(tri[b : b + block])), [x], len(x), chunk, n_out=2)
        for b in range(0, len(tri), block)
    ]
    first = np.concatenate([p[0] for p in parts], axis=1)[:, :nt]
    second = np.concatenate([p[1] for p in parts], axis=1)[:, :nt] if kind == "double" else None
    return first, second


def _in_plane(x, tri):
    nvec = jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    two_area = jnp.linalg.norm(nvec, axis=-1)
    h = jnp.sum((x[:, None, :] - tri[None, :, 0]) * (nvec / two_area[:, None])[None], -1)
    return jnp.abs(h) < 1e-9 * jnp.sqrt(two_area)[None]


def _double_rows(x, tri):
    d1 = jax.vmap(lambda p: double_layer_p1(p, tri))(x)
    d0 = jax.vmap(lambda p: double_layer_p0(p, tri))(x)
    flat = _in_plane(x, tri)
    return jnp.where(flat[..., None], 0.0, d1), jnp.where(flat, 0.0, d0)


_LAYER_KERNELS = {
    "double": jax.jit(_double_rows),
    "single_p0": jax.jit(lambda x, tri: (jax.vmap(lambda p: single_layer_p0(p, tri))(x), x[:, :1])),
    "single_p1": jax.jit(lambda x, tri: (jax.vmap(lambda p: single_layer_p1(p, tri))(x), x[:, :1])),
}


@jax.jit
def _geselowitz_rows(pts, nrm, qp, qw, lam, tri_normals):
    """(chunk, nt, 3): int_T phi_k (m_p . (n' x (r_p - r'))) / |r_p - r'|^3 dS'."""
    d = pts[:, None, None, :] - qp[None]  # (c, nt, Q, 3)
    inv = jax.lax.rsqrt(jnp.sum(d * d, -1))
    cr = jnp.cross(tri_normals[None], d)  # n' x (r - r'), normals (nt, Q, 3)
    val = jnp.einsum("cj,ctqj->ctq", nrm, cr) * (inv * inv * inv) * qw[None]
    return jnp.einsum("ctq,qk->ctk", val, lam)


@jax.jit
def _geselowitz_pairs(pts, nrm, qp, qw, lam, tri_normals):
    """(npairs, 3): the same for a list of (point, triangle) pairs."""
    d = pts[:, None, :] - qp  # (P, Q, 3)
    inv = jax.lax.rsqrt(jnp.sum(d * d, -1))
    cr = jnp.cross(tri_normals, d)  # normals (P, Q, 3)
    val = jnp.einsum("pj,pqj->pq", nrm, cr) * (inv * inv * inv) * qw
    return val @ lam


def meg_surface_functionals(ops, sensors: MEGSensors, near_factor=4.0, chunk=32, near_level=3):
    """Per surface i, the (n_channels, nv_i) matrix
    ``mu0/(4 pi) sum_p w_p int_{S_i} phi_j (m_p . (n' x (r_p - r')))/|r_p - r'|^3``.

    The field is ``B = B0 - sum_i (s_i - s_{i+1}) K_i V_i``.  Degree-5 (7-point)
    rule on every triangle; for (point, triangle) pairs closer than
    ``near_factor`` triangle sizes the rule is applied on 4**near_level
    sub-triangles instead.
    """
    pts = np.asarray(sensors.points, float)
    nrm = np.asarray(sensors.normals, float)
    wts = np.asarray(sensors.weights, float)
    chan = np.asarray(sensors.channel)
    out = []
    for i, surf in enumerate(ops.surfaces):
        cm = None if ops.curved is None else ops.curved[i]
        per_point = _geselowitz_vertices(surf, pts, nrm, near_factor, chunk, near_level, cm)
        ch = np.zeros((sensors.n_channels, per_point.shape[1]))
        np.add.at(ch, chan, wts[:, None] * per_point)
        out.append(MU0_OVER_4PI * ch)
    return out


def _geselowitz_vertices(surf, pts, nrm, near_factor, chunk, near_level, cm=None):
    """(n_points, nv): ``int_S phi_j (m_p . (n' x (r_p - r'))) / |r_p - r'|^3`` per
    integration point and hat function (7-point rule, subdivided near the point).

    With ``cm`` (the surface's :class:`~biosim.geometry.curved.CurvedMesh`) the
    integral is over the curved elements, for the coarse hats: far from the
    point the flat triangle's 7-point rule plus the curvature correction of
    :mod:`.bem_curved`, near it the 7-point rule on the sub-triangles
    subdivided ``near_level - 1`` times (the flat triangle's resolution)."""
    tri = triangles(surf)
    if cm is None:
        bary, w = triangle_rule("7", 0)
        bary_n, w_n = triangle_rule("7", near_level)
        nvec = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        area = 0.5 * np.linalg.norm(nvec, axis=1)
        unit = nvec / (2 * area[:, None])
        qp = np.einsum("qk,tkj->tqj", bary, tri)
        qw = area[:, None] * w[None]
        qn = np.broadcast_to(unit[:, None], qp.shape)

        def near_rule(tt):
            return (
                np.einsum("qk,tkj->tqj", bary_n, tri[tt]),
                area[tt, None] * w_n[None],
                bary_n,
                np.broadcast_to(unit[tt, None], (len(tt), len(w_n), 3)),
            )
    else:
        qp, qw, bary, qn = bem_curved.smooth_rule(cm)
        pn, wn, lam_n, _, nn, _ = bem_curved.element_rule(cm, ("7", near_level - 1))

        def near_rule(tt):
            return pn[tt], wn[tt], lam_n, nn[tt]

    qp_j, qw_j, qn_j = jnp.asarray(qp), jnp.asarray(qw), jnp.asarray(qn)
    fn = jax.jit(lambda p, m: _geselowitz_rows(p, m, qp_j, qw_j, jnp.asarray(bary), qn_j))
    vals = run_chunks(fn, [pts, nrm], len(pts), chunk)  # (P, nt, 3)
    # near pairs: replace the 7-point value by the subdivided rule
    cent = tri.mean(axis=1)
    size = np.max(np.linalg.norm(tri - cent[:, None], axis=2), axis=1)
    lists = cKDTree(cent).query_ball_point(pts, near_factor * size.max())
    pp = np.repeat(np.arange(len(pts)), [len(x) for x in lists])
    if pp.size:
        tt = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
        qpn, qwn, lam_near, qnn = near_rule(tt)
        hi = run_chunks(
            lambda p, m, q, ww, tn: _geselowitz_pairs(p, m, q, ww, jnp.asarray(lam_near), tn),
            [pts[pp], nrm[pp], qpn, qwn, qnn],
            len(pp),
            1024,
        )
        vals[pp, tt] = hi
    return _to_unknowns(vals, None, "p1", surf)


def meg_functional(ops, sigma, surface_functionals, xp=np):
    """(n_channels, n_dof) map from the BEM unknowns to the volume-current field."""
    n = ops.n_surfaces
    s = [sigma[i] for i in range(n)] + [0.0]
    parts = [-(s[i] - s[i + 1]) * surface_functionals[i] for i in range(n)]
    n_p = sum(ops.n_flux)
    parts.append(xp.zeros((surface_functionals[0].shape[0], n_p)))
    return xp.concatenate(parts, axis=1)


def _primary_rows(points, normals, pos):
    """(P, 3): B0(point) . normal for unit dipoles along x, y, z at ``pos``."""
    d = points - pos
    r3 = jnp.sum(d * d, -1) ** 1.5
    # (e_k x d) . m = e_k . (d x m)
    return MU0_OVER_4PI * jnp.cross(d, normals) / r3[:, None]


def primary_meg_gain(sensors: MEGSensors, positions):
    """(n_channels, n_sources, 3) infinite-medium field B0 (T/(A m))."""
    pts = jnp.asarray(sensors.points, float)
    nrm = jnp.asarray(sensors.normals, float)
    w = jnp.asarray(sensors.weights, float)
    chan = jnp.asarray(sensors.channel)
    per = jax.vmap(lambda p: _primary_rows(pts, nrm, p), out_axes=1)(positions)  # (P, S, 3)
    return jax.ops.segment_sum(w[:, None, None] * per, chan, num_segments=sensors.n_channels)
