"""Checks of head-model surfaces, each failure a GeometryError naming the
surface and the place (users' most common BEM complaints).

* closed and manifold: every edge shared by exactly two faces, with opposite
  orientation (consistent winding);
* outward: positive enclosed volume;
* nested: every vertex of the inner surface inside the outer one (solid-angle
  winding number; van Oosterom & Strackee 1983), at least ``min_gap`` m from
  it (exact point-to-triangle distances on nearby triangles);
* points inside a compartment (sources inside the brain surface, sensors
  outside the scalp).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from .._core.errors import GeometryError
from .mesh import TriangleMesh


def check_closed_manifold(mesh: TriangleMesh):
    f = mesh.faces
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    keys, counts = np.unique(undirected, axis=0, return_counts=True)
    if np.any(counts != 2):
        e = keys[np.argmax(counts != 2)]
        kind = (
            "a hole (edge used once)"
            if counts[np.argmax(counts != 2)] == 1
            else "a non-manifold edge (used by more than two faces)"
        )
        raise GeometryError(
            f"surface {mesh.name!r} is not closed: {kind} between vertices "
            f"{int(e[0])} and {int(e[1])} at {np.round(mesh.vertices[e[0]], 4).tolist()} m"
        )
    d_keys, d_counts = np.unique(directed, axis=0, return_counts=True)
    if np.any(d_counts != 1):
        e = d_keys[np.argmax(d_counts != 1)]
        raise GeometryError(
            f"surface {mesh.name!r} has inconsistent triangle orientation at the "
            f"edge between vertices {int(e[0])} and {int(e[1])} at "
            f"{np.round(mesh.vertices[e[0]], 4).tolist()} m"
        )


def check_outward(mesh: TriangleMesh):
    if mesh.volume <= 0:
        raise GeometryError(
            f"surface {mesh.name!r} is oriented inward (enclosed volume "
            f"{mesh.volume:.3e} m^3); reverse its faces"
        )


@jax.jit
def _winding_chunk(p, v):
    """Winding numbers of points p (c, 3) for triangles v (m, 3, 3)."""
    a, b, c = (v[None, :, k, :] - p[:, None, :] for k in range(3))
    la, lb, lc = (jnp.sqrt(jnp.sum(x * x, -1)) for x in (a, b, c))
    num = jnp.sum(a * jnp.cross(b, c), -1)
    den = la * lb * lc + jnp.sum(a * b, -1) * lc + jnp.sum(a * c, -1) * lb + jnp.sum(b * c, -1) * la
    return jnp.sum(2 * jnp.arctan2(num, den), 1) / (4 * jnp.pi)


def winding_number(mesh: TriangleMesh, points, chunk=256):
    """Solid-angle winding number of points (n, 3): ~1 inside, ~0 outside
    (van Oosterom & Strackee 1983 solid angle of each triangle; jitted over
    fixed-size chunks of points, the last one padded).  Concrete inputs only;
    evaluated eagerly even inside a ``jit`` trace (geometry checks of a
    traced model)."""
    p = np.atleast_2d(np.asarray(points, float))
    n = len(p)
    chunk = max(1, min(chunk, n))
    pad = (-n) % chunk
    padded = np.concatenate([p, np.repeat(p[-1:], pad, axis=0)]) if pad else p
    with jax.ensure_compile_time_eval():
        v = jnp.asarray(mesh.vertices[mesh.faces], dtype=jnp.float64)  # (m, 3, 3)
        out = [
            np.asarray(_winding_chunk(jnp.asarray(padded[s : s + chunk]), v))
            for s in range(0, len(padded), chunk)
        ]
    return np.concatenate(out)[:n]


def _point_triangle_distance(p, a, b, c):
    """Exact distance from points p (n, 3) to triangles (a, b, c) (n, 3) each (Eberly)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.sum(ab * ap, 1), np.sum(ac * ap, 1)
    bp, cp = p - b, p - c
    d3, d4 = np.sum(ab * bp, 1), np.sum(ac * bp, 1)
    d5, d6 = np.sum(ab * cp, 1), np.sum(ac * cp, 1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    v = np.where(denom != 0, vb / np.where(denom != 0, denom, 1), 0)
    w = np.where(denom != 0, vc / np.where(denom != 0, denom, 1), 0)
    closest = a + ab * v[:, None] + ac * w[:, None]  # interior projection
    # regions outside the triangle: clamp onto edges / vertices
    cand = [closest]
    for s, e in ((a, b), (b, c), (c, a)):
        t = np.clip(
            np.sum((p - s) * (e - s), 1) / np.maximum(np.sum((e - s) ** 2, 1), 1e-300), 0, 1
        )
        cand.append(s + (e - s) * t[:, None])
    inside = (va >= 0) & (vb >= 0) & (vc >= 0) & (denom > 0)
    dists = np.stack([np.linalg.norm(p - q, axis=1) for q in cand[1:]], 1).min(1)
    return np.where(inside, np.linalg.norm(p - closest, axis=1), dists)


def distance_to_surface(mesh: TriangleMesh, points, k=12):
    """Distance (m) from points to the surface (exact over the triangles around the k
    nearest vertices)."""
    p = np.atleast_2d(np.asarray(points, float))
    vt = {}
    for fi, face in enumerate(mesh.faces):
        for vi in face:
            vt.setdefault(int(vi), []).append(fi)
    _, idx = cKDTree(mesh.vertices).query(p, k=min(k, len(mesh.vertices)))
    best = np.full(len(p), np.inf)
    tri = mesh.vertices[mesh.faces]
    for col in range(idx.shape[1]):
        faces = [vt[int(i)] for i in idx[:, col]]
        width = max(len(x) for x in faces)
        fidx = np.array([x + [x[-1]] * (width - len(x)) for x in faces])
        for j in range(width):
            t = tri[fidx[:, j]]
            best = np.minimum(best, _point_triangle_distance(p, t[:, 0], t[:, 1], t[:, 2]))
    return best


def check_nested(inner: TriangleMesh, outer: TriangleMesh, min_gap=0.001):
    """Raise unless ``inner`` lies inside ``outer`` with at least ``min_gap`` m between them."""
    wn = winding_number(outer, inner.vertices)
    bad = np.flatnonzero(wn < 0.5)
    if bad.size:
        raise GeometryError(
            f"surface {inner.name!r} is not completely inside {outer.name!r}: "
            f"{bad.size} vertices outside, e.g. vertex {int(bad[0])} at "
            f"{np.round(inner.vertices[bad[0]], 4).tolist()} m"
        )
    d = distance_to_surface(outer, inner.vertices)
    if d.min() < min_gap:
        i = int(np.argmin(d))
        raise GeometryError(
            f"surfaces {inner.name!r} and {outer.name!r} are {d[i] * 1e3:.2f} mm apart "
            f"at {np.round(inner.vertices[i], 4).tolist()} m, less than the minimum "
            f"gap of {min_gap * 1e3:.2f} mm"
        )


def check_head_model(surfaces, min_gap=0.001):
    """Every surface closed, manifold and outward; consecutive surfaces nested."""
    for s in surfaces:
        check_closed_manifold(s)
        check_outward(s)
    for inner, outer in zip(surfaces, surfaces[1:]):
        check_nested(inner, outer, min_gap)


def check_points_inside(mesh: TriangleMesh, points, what="source"):
    wn = winding_number(mesh, points)
    bad = np.flatnonzero(wn < 0.5)
    if bad.size:
        raise GeometryError(
            f"{what} {int(bad[0])} at {np.round(np.atleast_2d(points)[bad[0]], 4).tolist()} m "
            f"is outside surface {mesh.name!r} ({bad.size} in all)"
        )


def check_points_outside(mesh: TriangleMesh, points, what="sensor"):
    wn = winding_number(mesh, points)
    bad = np.flatnonzero(wn > 0.5)
    if bad.size:
        raise GeometryError(
            f"{what} {int(bad[0])} at {np.round(np.atleast_2d(points)[bad[0]], 4).tolist()} m "
            f"is inside surface {mesh.name!r} ({bad.size} in all)"
        )
