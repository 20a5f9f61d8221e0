"""TMS coils: wire paths and magnetic-dipole sets, placement, and the primary field dA/dt.

A :class:`Coil` lives in its own frame: the coil face is the plane z = 0, the head lies
towards -z, and +y is the handle direction.  It holds straight wire segments (start,
end, signed number of turns carried) and/or magnetic dipoles (position, moment per unit
coil current, A m^2 / A = m^2).  A :class:`CoilPlacement` (a rotation and a translation)
maps it into head coordinates; :func:`place_coil` builds one from a scalp point, the
outward normal, a handle angle and the coil-scalp distance, differentiably.

The magnetic vector potential per unit current of a straight segment from a to b is
(e.g. Hanson & Hirshman 2002, Phys. Plasmas 9:4410)::

    A(r) = mu0 / (4 pi) * u * ln((R_a + R_b + L) / (R_a + R_b - L))
         = mu0 / (4 pi) * u * 2 artanh(L / (R_a + R_b))

with u = (b - a) / L, R_a = |r - a|, R_b = |r - b|; that of a magnetic dipole m at r0 is
``mu0 / (4 pi) m x (r - r0) / |r - r0|^3``.  The primary electric field is
``-dA/dt = -A * dI/dt`` (V/m).
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import GeometryError, ParameterError
from ..._core.pytree import pytree_dataclass, static_field
from ..._core.validation import check_all_finite, check_positive, check_shape, is_concrete

MU0 = 4e-7 * np.pi  # T m / A (the classical value SimNIBS uses)

_EMPTY = np.zeros((0, 3))


@pytree_dataclass
class Coil:
    """A TMS coil in its own frame (m; face at z = 0, head towards -z, handle +y).

    Parameters
    ----------
    seg_start, seg_end : array (ns, 3)
        Straight wire segments, m; the current flows from start to end.
    seg_weight : array (ns,)
        Current carried by each segment per unit coil current (turns, signed).
    dip_pos : array (nd, 3)
        Magnetic dipole positions, m.
    dip_moment : array (nd, 3)
        Dipole moments per unit coil current, m^2 (A m^2 per A).
    didt_max : float
        Largest rate of change of the coil current the stimulator delivers, A/s
        (from a ``.ccd`` header; 0 when unknown).
    name : str
        Label (static).
    """

    seg_start: jax.Array
    seg_end: jax.Array
    seg_weight: jax.Array
    dip_pos: jax.Array
    dip_moment: jax.Array
    didt_max: float = 0.0
    name: str = static_field(default="coil")

    @property
    def n_segments(self) -> int:
        return int(np.shape(self.seg_start)[0])

    @property
    def n_dipoles(self) -> int:
        return int(np.shape(self.dip_pos)[0])

    def points(self) -> jax.Array:
        """All geometric points of the coil (segment ends and dipole positions), m."""
        return jnp.concatenate([self.seg_start, self.seg_end, self.dip_pos], axis=0)


def _coil(
    seg_start=_EMPTY,
    seg_end=_EMPTY,
    seg_weight=None,
    dip_pos=_EMPTY,
    dip_moment=_EMPTY,
    didt_max=0.0,
    name="coil",
) -> Coil:
    seg_start = np.asarray(seg_start, float).reshape(-1, 3)
    seg_end = np.asarray(seg_end, float).reshape(-1, 3)
    if seg_weight is None:
        seg_weight = np.ones(len(seg_start))
    seg_weight = np.asarray(seg_weight, float).reshape(-1)
    dip_pos = np.asarray(dip_pos, float).reshape(-1, 3)
    dip_moment = np.asarray(dip_moment, float).reshape(-1, 3)
    check_all_finite(
        seg_start=seg_start,
        seg_end=seg_end,
        seg_weight=seg_weight,
        dip_pos=dip_pos,
        dip_moment=dip_moment,
    )
    if len(seg_end) != len(seg_start) or len(seg_weight) != len(seg_start):
        raise ParameterError(
            "seg_end",
            f"{len(seg_end)} segments",
            f"as many ends and weights as starts ({len(seg_start)})",
        )
    if len(dip_moment) != len(dip_pos):
        raise ParameterError(
            "dip_moment", f"{len(dip_moment)} moments", f"one per dipole position ({len(dip_pos)})"
        )
    if len(seg_start) + len(dip_pos) == 0:
        raise ParameterError("coil", "no segments and no dipoles", "at least one source")
    if len(seg_start):
        lengths = np.linalg.norm(seg_end - seg_start, axis=1)
        if np.any(lengths <= 0):
            i = int(np.argmin(lengths))
            raise ParameterError(f"segment {i}", "zero length", "distinct start and end points")
    return Coil(
        jnp.asarray(seg_start),
        jnp.asarray(seg_end),
        jnp.asarray(seg_weight),
        jnp.asarray(dip_pos),
        jnp.asarray(dip_moment),
        float(didt_max),
        name,
    )


def coil_from_points(paths, weights=None, closed=True, name="user coil") -> Coil:
    """A wire coil from polylines.

    Parameters
    ----------
    paths : array (n, 3) or list of arrays (n_i, 3)
        Wire paths in the coil frame, m (current flows along the point order).
    weights : float or sequence, optional
        Current per unit coil current in each path (turns, signed); default 1.
    closed : bool
        Join each path's last point to its first.
    """
    if isinstance(paths, np.ndarray) or (len(paths) and np.ndim(paths[0]) == 1):
        paths = [paths]
    weights = np.ones(len(paths)) if weights is None else np.broadcast_to(weights, len(paths))
    starts, ends, w = [], [], []
    for k, (path, wk) in enumerate(zip(paths, weights)):
        p = np.asarray(path, float)
        if p.ndim != 2 or p.shape[1] != 3 or len(p) < 2:
            raise ParameterError(f"paths[{k}]", f"array of shape {p.shape}", "shape (n >= 2, 3)")
        q = np.vstack([p, p[:1]]) if closed else p
        starts.append(q[:-1])
        ends.append(q[1:])
        w.append(np.full(len(q) - 1, float(wk)))
    return _coil(np.vstack(starts), np.vstack(ends), np.concatenate(w), name=name)


def _ring(radius, n_segments, center=(0.0, 0.0, 0.0), sense=1.0):
    phi = sense * np.linspace(0.0, 2 * np.pi, n_segments, endpoint=False)
    return np.stack(
        [
            center[0] + radius * np.cos(phi),
            center[1] + radius * np.sin(phi),
            np.full(n_segments, center[2]),
        ],
        axis=1,
    )


def _winding_radii(inner_radius, outer_radius, n_turns):
    check_positive("outer_radius", outer_radius, "m")
    check_positive("n_turns", n_turns)
    if n_turns == 1:
        return np.array(
            [outer_radius if inner_radius is None else 0.5 * (inner_radius + outer_radius)]
        )
    if inner_radius is None or not 0 < inner_radius < outer_radius:
        raise ParameterError(
            "inner_radius",
            inner_radius,
            f"a value in (0, outer_radius = {outer_radius}) m for several turns",
        )
    return np.linspace(inner_radius, outer_radius, int(n_turns))


def circular_coil(
    outer_radius=0.045, inner_radius=None, n_turns=1, n_segments=64, height=0.0
) -> Coil:
    """A flat circular coil of ``n_turns`` concentric rings (wire paths).

    The current runs counter-clockwise seen from +z (its moment points to +z).

    Parameters
    ----------
    outer_radius, inner_radius : float
        Radii of the outermost and innermost ring, m.
    n_turns : int
        Number of rings (equally spaced in radius).
    n_segments : int
        Straight segments per ring.
    height : float
        z of the winding plane, m (the coil face is z = 0).
    """
    radii = _winding_radii(inner_radius, outer_radius, n_turns)
    rings = [_ring(r, n_segments, (0.0, 0.0, height)) for r in radii]
    return coil_from_points(rings, name="circular")


def figure8_coil(
    outer_radius=0.045, inner_radius=None, n_turns=1, n_segments=64, height=0.0
) -> Coil:
    """A figure-8 coil: two coplanar circular windings side by side along x, touching at
    the origin, with opposite currents.  Under the centre the currents of both wings flow
    along +y (so E points along -y there when dI/dt > 0)."""
    radii = _winding_radii(inner_radius, outer_radius, n_turns)
    x0 = float(np.max(radii))
    # wing at -x: counter-clockwise (current at x = 0 flows +y); wing at +x: clockwise
    rings = [_ring(r, n_segments, (-x0, 0.0, height), +1.0) for r in radii]
    rings += [_ring(r, n_segments, (x0, 0.0, height), -1.0) for r in radii]
    return coil_from_points(rings, name="figure-8")


def dipole_coil(positions, moments, didt_max=0.0, name="dipole coil") -> Coil:
    """A coil given as magnetic dipoles (positions m, moments m^2 per unit current)."""
    return _coil(dip_pos=positions, dip_moment=moments, didt_max=didt_max, name=name)


def _disk_dipoles(radius, n_rings, center, sense):
    """Dipoles tiling a disk of the given radius (equal-area annuli x angular sectors),
    whose moments sum to ``sense * pi radius^2`` along z."""
    pos, mom = [], []
    edges = radius * np.sqrt(np.linspace(0.0, 1.0, n_rings + 1))
    for i in range(n_rings):
        n_ang = max(1, 6 * i)
        r_mid = np.sqrt(0.5 * (edges[i] ** 2 + edges[i + 1] ** 2)) if i else 0.0
        area = np.pi * (edges[i + 1] ** 2 - edges[i] ** 2) / n_ang
        phi = (np.arange(n_ang) + 0.5) * 2 * np.pi / n_ang
        pos.append(
            np.stack(
                [
                    center[0] + r_mid * np.cos(phi),
                    center[1] + r_mid * np.sin(phi),
                    np.full(n_ang, center[2]),
                ],
                axis=1,
            )
        )
        mom.append(np.tile([0.0, 0.0, sense * area], (n_ang, 1)))
    return np.vstack(pos), np.vstack(mom)


def circular_dipole_coil(
    outer_radius=0.045, inner_radius=None, n_turns=1, n_rings=8, height=0.0
) -> Coil:
    """The dipole model of :func:`circular_coil`: each ring replaced by dipoles tiling
    its disk (moment = area element x unit current)."""
    radii = _winding_radii(inner_radius, outer_radius, n_turns)
    parts = [_disk_dipoles(r, n_rings, (0.0, 0.0, height), 1.0) for r in radii]
    return dipole_coil(
        np.vstack([p for p, _ in parts]),
        np.vstack([m for _, m in parts]),
        name="circular (dipoles)",
    )


def figure8_dipole_coil(
    outer_radius=0.045, inner_radius=None, n_turns=1, n_rings=8, height=0.0
) -> Coil:
    """The dipole model of :func:`figure8_coil`."""
    radii = _winding_radii(inner_radius, outer_radius, n_turns)
    x0 = float(np.max(radii))
    parts = [_disk_dipoles(r, n_rings, (-x0, 0.0, height), 1.0) for r in radii]
    parts += [_disk_dipoles(r, n_rings, (x0, 0.0, height), -1.0) for r in radii]
    return dipole_coil(
        np.vstack([p for p, _ in parts]),
        np.vstack([m for _, m in parts]),
        name="figure-8 (dipoles)",
    )


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def read_ccd(path) -> Coil:
    """Read a SimNIBS ``.ccd`` coil file (magnetic dipoles).

    The text format: comment lines starting with ``#`` (optional ``key=value`` pairs such
    as ``dIdtmax=147e6`` are kept: ``dIdtmax`` in A/s), one line with the number of
    dipoles, then one line ``x y z mx my mz`` per dipole (positions m, moments m^2 per
    unit current).
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError("path", path, "an existing .ccd file")
    didt_max = 0.0
    count = None
    rows = []
    for k, line in enumerate(path.read_text().splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = re.search(r"dIdtmax\s*=\s*(" + _NUM + ")", s)
            if m:
                didt_max = float(m.group(1))
            continue
        fields = s.replace(",", " ").split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise ParameterError(f"{path.name} line {k}", s, "numbers") from None
        if count is None and len(values) == 1:
            count = int(values[0])
            continue
        if len(values) != 6:
            raise ParameterError(f"{path.name} line {k}", s, "6 numbers: x y z mx my mz")
        rows.append(values)
    if not rows:
        raise ParameterError("path", path, "a .ccd file with at least one dipole")
    if count is not None and count != len(rows):
        raise ParameterError(
            f"{path.name} dipole count", count, f"the number of dipole lines ({len(rows)})"
        )
    data = np.asarray(rows)
    return dipole_coil(data[:, :3], data[:, 3:], didt_max=didt_max, name=path.stem)


def write_ccd(coil: Coil, path) -> None:
    """Write the dipoles of ``coil`` as a ``.ccd`` file (atomically)."""
    from ..._core.atomic import atomic_write_text

    if coil.n_dipoles == 0:
        raise ParameterError("coil", coil.name, "a coil with magnetic dipoles")
    pos, mom = np.asarray(coil.dip_pos), np.asarray(coil.dip_moment)
    lines = [f"# {coil.name}; dIdtmax={coil.didt_max:.6g}", str(len(pos))]
    lines += [" ".join(f"{v:.10e}" for v in (*p, *m)) for p, m in zip(pos, mom)]
    atomic_write_text(path, "\n".join(lines) + "\n")


@pytree_dataclass
class CoilPlacement:
    """Rigid transform coil frame -> head frame: x_head = rotation @ x_coil + origin.

    Parameters
    ----------
    rotation : array (3, 3)
        Columns are the coil x, y (handle) and z (away from the head) axes in head
        coordinates.
    origin : array (3,)
        Coil-frame origin in head coordinates, m.
    """

    rotation: jax.Array
    origin: jax.Array


def place_coil(center, normal, angle=0.0, distance=0.0, reference=(0.0, 1.0, 0.0)):
    """Place a coil over a scalp point, differentiably.

    Parameters
    ----------
    center : array (3,)
        Point on the scalp, m.
    normal : array (3,)
        Outward scalp normal there (normalised here).
    angle : float
        Handle rotation about the normal, rad, measured from ``reference`` projected on the
        tangent plane.
    distance : float
        Gap between scalp and coil face, m.
    reference : array (3,)
        Direction that sets angle 0 (must not be parallel to ``normal``).

    Returns
    -------
    CoilPlacement
    """
    if is_concrete((center, normal, distance)):
        check_shape("center", np.asarray(center), (3,))
        check_shape("normal", np.asarray(normal), (3,))
        check_all_finite(center=center, normal=normal, angle=angle, distance=distance)
        if float(np.asarray(distance)) < 0:
            raise ParameterError("distance", float(distance), "a non-negative gap, m")
    n = jnp.asarray(normal, float)
    n = n / jnp.linalg.norm(n)
    ref = jnp.asarray(reference, float)
    t1 = ref - jnp.dot(ref, n) * n
    if is_concrete((n, ref)) and float(jnp.linalg.norm(t1)) < 1e-6:
        raise ParameterError(
            "reference",
            np.asarray(reference).tolist(),
            "a direction not parallel to the scalp normal",
        )
    t1 = t1 / jnp.linalg.norm(t1)
    t2 = jnp.cross(n, t1)
    y = jnp.cos(angle) * t1 + jnp.sin(angle) * t2  # handle direction
    x = jnp.cross(y, n)
    rot = jnp.stack([x, y, n], axis=1)
    origin = jnp.asarray(center, float) + distance * n
    return CoilPlacement(rot, origin)


def place_on_sphere(theta, phi, angle=0.0, distance=0.0, radius=0.095, center=(0.0, 0.0, 0.0)):
    """:func:`place_coil` over the point (theta, phi) (polar, azimuth; rad) of a sphere of
    the given radius (m) and centre; angle 0 points the handle along +theta (south)
    except at the poles, where it points along +x rotated by phi."""
    n = jnp.stack([jnp.sin(theta) * jnp.cos(phi), jnp.sin(theta) * jnp.sin(phi), jnp.cos(theta)])
    e_theta = jnp.stack(
        [jnp.cos(theta) * jnp.cos(phi), jnp.cos(theta) * jnp.sin(phi), -jnp.sin(theta)]
    )
    c = jnp.asarray(center, float) + radius * n
    e_phi = jnp.cross(n, e_theta)
    y = jnp.cos(angle) * e_theta + jnp.sin(angle) * e_phi
    x = jnp.cross(y, n)
    return CoilPlacement(jnp.stack([x, y, n], axis=1), c + distance * n)


def transform_coil(coil: Coil, placement: CoilPlacement) -> Coil:
    """The coil moved into head coordinates (differentiable in the placement)."""
    R, o = placement.rotation, placement.origin
    return Coil(
        coil.seg_start @ R.T + o,
        coil.seg_end @ R.T + o,
        coil.seg_weight,
        coil.dip_pos @ R.T + o,
        coil.dip_moment @ R.T,
        coil.didt_max,
        coil.name,
    )


def _segment_potential(points, a, b, w):
    """A per unit current from segments (a, b, weights w) at points (n, 3)."""
    d = b - a
    L = jnp.linalg.norm(d, axis=1)
    u = d / L[:, None]

    def at(r):
        ra = jnp.linalg.norm(r - a, axis=1)
        rb = jnp.linalg.norm(r - b, axis=1)
        g = 2.0 * jnp.arctanh(L / (ra + rb))
        return (MU0 / (4 * jnp.pi)) * jnp.sum((w * g)[:, None] * u, axis=0)

    return jax.lax.map(at, points, batch_size=256)


def _dipole_potential(points, pos, mom):
    def at(r):
        d = r - pos
        inv3 = jnp.sum(d * d, axis=1) ** -1.5
        return (MU0 / (4 * jnp.pi)) * jnp.sum(jnp.cross(mom, d) * inv3[:, None], axis=0)

    return jax.lax.map(at, points, batch_size=256)


@jax.jit
def _potential(coil: Coil, points):
    out = jnp.zeros_like(points)
    if coil.seg_start.shape[0]:
        out = out + _segment_potential(points, coil.seg_start, coil.seg_end, coil.seg_weight)
    if coil.dip_pos.shape[0]:
        out = out + _dipole_potential(points, coil.dip_pos, coil.dip_moment)
    return out


def vector_potential(coil: Coil, points, placement: CoilPlacement | None = None):
    """Magnetic vector potential per unit coil current, T m / A, at points (n, 3) (m).

    Segments use the closed-form straight-wire potential, dipoles the point-dipole one;
    points on a wire or a dipole give inf (keep evaluation points off the coil).
    """
    points = jnp.asarray(points, float)
    if is_concrete(points):
        check_shape("points", points, (None, 3))
        check_all_finite(points=points)
    if placement is not None:
        coil = transform_coil(coil, placement)
    return _potential(coil, points.reshape(-1, 3)).reshape(points.shape)


def dadt(coil: Coil, points, didt=1.0, placement: CoilPlacement | None = None):
    """dA/dt (V/m) at points (n, 3) for a coil current changing at ``didt`` A/s.

    The primary electric field is ``-dadt``.
    """
    return didt * vector_potential(coil, points, placement)


def check_coil_outside(
    coil: Coil, placement: CoilPlacement | None, surface_nodes, surface_normals, min_distance=0.0
) -> None:
    """Raise :class:`GeometryError` if any coil point lies inside the head surface.

    ``surface_nodes`` (k, 3) and outward ``surface_normals`` (k, 3) sample the scalp; a
    coil point is inside when it lies behind its nearest surface node's tangent plane, or
    closer to the surface than ``min_distance`` (m).
    """
    from scipy.spatial import cKDTree

    c = coil if placement is None else transform_coil(coil, placement)
    pts = np.asarray(c.points())
    nodes = np.asarray(surface_nodes, float)
    normals = np.asarray(surface_normals, float)
    dist, idx = cKDTree(nodes).query(pts)
    signed = np.einsum("ij,ij->i", pts - nodes[idx], normals[idx])
    bad = np.flatnonzero((signed < 0) | (dist < min_distance))
    if bad.size:
        i = int(bad[np.argmin(signed[bad])])
        raise GeometryError(
            f"coil {c.name!r} intersects the head: its point {i} at "
            f"{np.round(pts[i] * 1e3, 2).tolist()} mm is {signed[i] * 1e3:.2f} mm from the "
            f"scalp (outside = positive; at least {min_distance * 1e3:g} mm required)"
        )
