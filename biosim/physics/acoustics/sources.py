"""Ultrasound transducers placed off-grid without staircasing.

A :class:`Transducer` is a cloud of surface integration points (positions,
area elements, element index) with one complex drive (amplitude, phase) per
element.  :func:`source_map` spreads each point onto the grid with a
band-limited interpolant (a separable windowed sinc, Lanczos kernel, normalised
to unit sum), which is the off-grid source of Wise et al. (2019, J. Acoust.
Soc. Am. 146, 278) truncated to a local stencil.  The map is the surface
density of the transducer (1/m) times the element pressure amplitudes, so
that the solver's mass source launches waves of the element's pressure.

Constructors: :func:`bowl` (focused bowl, or an arc in 2D, optionally split
into elements), :func:`piston` (flat disc or segment), :func:`linear_array`,
:func:`point_source`; :func:`combine` joins transducers into a phased array.
:func:`oneil_on_axis` is O'Neil's (1949) on-axis pressure of a focused bowl.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from biosim._core.errors import ParameterError, ShapeError
from biosim._core.pytree import pytree_dataclass, static_field
from biosim._core.validation import check_positive, is_concrete

from .medium import Grid

__all__ = [
    "Transducer",
    "bowl",
    "piston",
    "linear_array",
    "point_source",
    "combine",
    "source_map",
    "sample_points",
    "element_centres",
    "focus_phases",
    "oneil_on_axis",
]

#: Half-width of the band-limited interpolation stencil, grid points.
_STENCIL = 4
_CHUNK = 4096


@pytree_dataclass
class Transducer:
    """Surface integration points and per-element drives of a transducer.

    Attributes
    ----------
    points : Array, shape (P, ndim)
        Positions of the surface integration points, m.
    weights : Array, shape (P,)
        Area (3D) or length (2D) element of each point, m^(ndim-1).
    element : Array of int, shape (P,)
        Element index of each point.
    amplitude : Array, shape (E,)
        Surface pressure amplitude of each element, Pa.
    phase : Array, shape (E,)
        Drive phase of each element, rad (p_s = amplitude cos(omega t + phase)).
    n_elements : int
        Number of elements E (static).
    """

    points: Any
    weights: Any
    element: Any
    amplitude: Any
    phase: Any
    n_elements: int = static_field(default=1)

    @property
    def ndim(self) -> int:
        """Spatial dimension (2 or 3)."""
        return int(np.shape(self.points)[1])

    def with_drive(self, amplitude: Any = None, phase: Any = None) -> Transducer:
        """The same transducer with new element amplitudes (Pa) and/or phases (rad)."""
        a = self.amplitude if amplitude is None else jnp.broadcast_to(amplitude, (self.n_elements,))
        p = self.phase if phase is None else jnp.broadcast_to(phase, (self.n_elements,))
        return Transducer(self.points, self.weights, self.element, a, p, self.n_elements)


def _make(points, weights, element, n_el, amplitude, phase) -> Transducer:
    amp = jnp.broadcast_to(jnp.asarray(amplitude, dtype=float), (n_el,))
    ph = jnp.broadcast_to(jnp.asarray(phase, dtype=float), (n_el,))
    return Transducer(
        points=jnp.asarray(points, dtype=float),
        weights=jnp.asarray(weights, dtype=float),
        element=jnp.asarray(element, dtype=jnp.int32),
        amplitude=amp,
        phase=ph,
        n_elements=int(n_el),
    )


def _unit(name, v, nd):
    v = np.asarray(v, dtype=float)
    if v.shape != (nd,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        raise ParameterError(name, v.tolist(), f"a non-zero finite vector of length {nd}")
    return v / np.linalg.norm(v)


def _frame(axis):
    """Two unit vectors orthogonal to ``axis`` (3D) or one (2D)."""
    if axis.size == 2:
        return (np.array([-axis[1], axis[0]]),)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def _assign_elements(local, centres):
    """Index of the nearest element centre for each point (Voronoi patches)."""
    d = ((local[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return np.argmin(d, axis=1)


def bowl(
    focus: Any,
    direction: Any,
    radius_of_curvature: float,
    aperture: float,
    *,
    point_spacing: float,
    amplitude: Any = 1.0,
    phase: Any = 0.0,
    n_elements: int = 1,
) -> Transducer:
    """Spherical focused bowl (3D) or circular arc (2D).

    Parameters
    ----------
    focus : array_like, shape (ndim,)
        Geometric focus (centre of curvature), m.
    direction : array_like, shape (ndim,)
        Beam axis, from the bowl towards the focus.
    radius_of_curvature : float
        m.
    aperture : float
        Aperture diameter, m (at most twice the radius of curvature).
    point_spacing : float
        Spacing of the surface integration points, m (about half the grid step).
    amplitude, phase : array_like
        Surface pressure (Pa) and phase (rad), per element or shared.
    n_elements : int
        Split the surface into this many elements of about equal area (Voronoi
        patches around equal-area seeds), each with its own drive.
    """
    focus = np.asarray(focus, dtype=float)
    nd = focus.size
    if nd not in (2, 3):
        raise ShapeError("focus", focus.shape, "a 2D or 3D position")
    axis = _unit("direction", direction, nd)
    check_positive("radius_of_curvature", radius_of_curvature, "m")
    check_positive("point_spacing", point_spacing, "m")
    if not (0 < aperture <= 2 * radius_of_curvature):
        raise ParameterError("aperture", aperture, f"in (0, {2 * radius_of_curvature:g}] m")
    if int(n_elements) != n_elements or n_elements < 1:
        raise ParameterError("n_elements", n_elements, "a positive integer")
    R = float(radius_of_curvature)
    th_max = math.asin(min(1.0, aperture / (2 * R)))
    frame = _frame(axis)
    if nd == 2:
        n = max(2, int(math.ceil(2 * th_max * R / point_spacing)))
        th = -th_max + (np.arange(n) + 0.5) * (2 * th_max / n)
        dirs = -np.cos(th)[:, None] * axis + np.sin(th)[:, None] * frame[0]
        w = np.full(n, 2 * th_max * R / n)
        seeds = -th_max + (np.arange(n_elements) + 0.5) * (2 * th_max / n_elements)
        elem = _assign_elements(th[:, None], seeds[:, None])
    else:
        area = 2 * math.pi * R**2 * (1 - math.cos(th_max))
        n = max(8, int(math.ceil(area / point_spacing**2)))

        def cap(m):
            i = np.arange(m) + 0.5
            cos_t = 1 - (1 - math.cos(th_max)) * i / m
            sin_t = np.sqrt(1 - cos_t**2)
            phi = i * math.pi * (3 - math.sqrt(5))
            return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=-1)

        local = cap(n)
        dirs = -local[:, 2:3] * axis + local[:, 0:1] * frame[0] + local[:, 1:2] * frame[1]
        w = np.full(n, area / n)
        elem = _assign_elements(local, cap(n_elements)) if n_elements > 1 else np.zeros(n, int)
    points = focus + R * dirs
    return _make(points, w, elem, n_elements, amplitude, phase)


def piston(
    centre: Any,
    normal: Any,
    diameter: float,
    *,
    point_spacing: float,
    amplitude: Any = 1.0,
    phase: Any = 0.0,
) -> Transducer:
    """Flat piston: a disc (3D) or a segment (2D) of the given diameter (m)."""
    centre = np.asarray(centre, dtype=float)
    nd = centre.size
    if nd not in (2, 3):
        raise ShapeError("centre", centre.shape, "a 2D or 3D position")
    axis = _unit("normal", normal, nd)
    check_positive("diameter", diameter, "m")
    check_positive("point_spacing", point_spacing, "m")
    frame = _frame(axis)
    if nd == 2:
        n = max(1, int(math.ceil(diameter / point_spacing)))
        s = -diameter / 2 + (np.arange(n) + 0.5) * diameter / n
        pts = centre + s[:, None] * frame[0]
        w = np.full(n, diameter / n)
    else:
        m = max(1, int(math.ceil(diameter / point_spacing)))
        s = -diameter / 2 + (np.arange(m) + 0.5) * diameter / m
        a, b = np.meshgrid(s, s, indexing="ij")
        keep = a**2 + b**2 <= (diameter / 2) ** 2
        a, b = a[keep], b[keep]
        pts = centre + a[:, None] * frame[0] + b[:, None] * frame[1]
        w = np.full(a.size, math.pi * diameter**2 / 4 / a.size)
    return _make(pts, w, np.zeros(len(w), int), 1, amplitude, phase)


def linear_array(
    centre: Any,
    normal: Any,
    n_elements: int,
    pitch: float,
    element_width: float,
    *,
    point_spacing: float,
    element_height: float | None = None,
    amplitude: Any = 1.0,
    phase: Any = 0.0,
) -> Transducer:
    """Flat linear phased array of ``n_elements`` strips (m), elevation ``element_height`` in 3D."""
    centre = np.asarray(centre, dtype=float)
    nd = centre.size
    axis = _unit("normal", normal, nd)
    if int(n_elements) != n_elements or n_elements < 1:
        raise ParameterError("n_elements", n_elements, "a positive integer")
    if not (0 < element_width <= pitch):
        raise ParameterError("element_width", element_width, f"in (0, pitch = {pitch:g}] m")
    check_positive("point_spacing", point_spacing, "m")
    frame = _frame(axis)
    m = max(1, int(math.ceil(element_width / point_spacing)))
    s = -element_width / 2 + (np.arange(m) + 0.5) * element_width / m
    offs = (np.arange(n_elements) - (n_elements - 1) / 2) * pitch
    lat = (offs[:, None] + s[None, :]).ravel()
    elem = np.repeat(np.arange(n_elements), m)
    if nd == 2:
        pts = centre + lat[:, None] * frame[0]
        w = np.full(lat.size, element_width / m)
    else:
        if element_height is None or element_height <= 0:
            raise ParameterError("element_height", element_height, "a positive height in m (3D)")
        h = max(1, int(math.ceil(element_height / point_spacing)))
        e = -element_height / 2 + (np.arange(h) + 0.5) * element_height / h
        pts = (
            centre
            + np.repeat(lat, h)[:, None] * frame[0]
            + np.tile(e, lat.size)[:, None] * frame[1]
        )
        elem = np.repeat(elem, h)
        w = np.full(pts.shape[0], element_width * element_height / (m * h))
    return _make(pts, w, elem, n_elements, amplitude, phase)


def point_source(position: Any, *, weight: float, amplitude: Any = 1.0, phase: Any = 0.0):
    """A single band-limited point; ``weight`` is its area (m^2, 3D) or length (m, 2D)."""
    pos = np.asarray(position, dtype=float).reshape(1, -1)
    check_positive("weight", weight, "m^(ndim-1)")
    return _make(pos, [weight], [0], 1, amplitude, phase)


def combine(*transducers: Transducer) -> Transducer:
    """Join transducers into one phased array (elements numbered in order)."""
    if not transducers:
        raise ParameterError("transducers", (), "at least one transducer")
    offs = np.cumsum([0] + [t.n_elements for t in transducers])
    return Transducer(
        points=jnp.concatenate([t.points for t in transducers]),
        weights=jnp.concatenate([t.weights for t in transducers]),
        element=jnp.concatenate([t.element + o for t, o in zip(transducers, offs)]),
        amplitude=jnp.concatenate([t.amplitude for t in transducers]),
        phase=jnp.concatenate([t.phase for t in transducers]),
        n_elements=int(offs[-1]),
    )


def element_centres(transducer: Transducer) -> Any:
    """Area-weighted centroid of each element, shape (E, ndim), m."""
    w = transducer.weights
    tot = jax.ops.segment_sum(w, transducer.element, transducer.n_elements)
    s = jax.ops.segment_sum(
        w[:, None] * transducer.points, transducer.element, transducer.n_elements
    )
    return s / tot[:, None]


def focus_phases(transducer: Transducer, target: Any, sound_speed: float, frequency: float):
    """Geometric focusing phases k |x_e - target| (rad) for a homogeneous medium."""
    k = 2 * math.pi * frequency / sound_speed
    d = jnp.linalg.norm(element_centres(transducer) - jnp.asarray(target), axis=-1)
    return k * d


def _check_inside(transducer: Transducer, grid: Grid) -> None:
    if transducer.ndim != grid.ndim:
        raise ShapeError("transducer", transducer.ndim, f"a {grid.ndim}D transducer")
    if not is_concrete(transducer.points):
        return
    pts = np.asarray(transducer.points)
    lo, hi = grid.interior_bounds()
    for ax in range(grid.ndim):
        if grid.pml_size[ax] == 0:
            continue
        margin = _STENCIL * grid.spacing[ax]
        bad = (pts[:, ax] < lo[ax] + margin) | (pts[:, ax] > hi[ax] - margin)
        if np.any(bad):
            raise ParameterError(
                "transducer.points",
                f"{int(bad.sum())} point(s) at axis-{ax} coordinates outside the grid interior",
                f"points within [{lo[ax] + margin:.4g}, {hi[ax] - margin:.4g}] m on axis {ax} "
                f"(outside the PML, {_STENCIL} points clear of it)",
            )


def _stencils(points, grid: Grid):
    """Per-axis stencil indices (P, 2K) and normalised Lanczos weights (P, 2K)."""
    K = _STENCIL
    offs = jnp.arange(-K + 1, K + 1)
    idx, wts = [], []
    for ax in range(grid.ndim):
        u = (points[:, ax] - grid.origin[ax]) / grid.spacing[ax]
        i0 = jnp.floor(u).astype(jnp.int32)
        ii = i0[:, None] + offs[None, :]
        r = u[:, None] - ii
        w = jnp.sinc(r) * jnp.sinc(r / K)
        w = w / jnp.sum(w, axis=1, keepdims=True)
        idx.append(jnp.mod(ii, grid.shape[ax]))
        wts.append(w)
    return idx, wts


def _flat(idx, wts, grid: Grid):
    """Flattened grid indices and weights of the tensor-product stencil, (P, (2K)^ndim)."""
    P = idx[0].shape[0]
    if grid.ndim == 2:  # works on NumPy and JAX arrays alike
        flat = idx[0][:, :, None] * grid.shape[1] + idx[1][:, None, :]
        w = wts[0][:, :, None] * wts[1][:, None, :]
    else:
        flat = (idx[0][:, :, None, None] * grid.shape[1] + idx[1][:, None, :, None]) * grid.shape[
            2
        ] + idx[2][:, None, None, :]
        w = wts[0][:, :, None, None] * wts[1][:, None, :, None] * wts[2][:, None, None, :]
    return flat.reshape(P, -1), w.reshape(P, -1)


def _chunks(transducer: Transducer, values):
    """Pad the point arrays to whole chunks: (n_chunks, C, ...)."""
    P = transducer.points.shape[0]
    C = min(_CHUNK, P)
    n = -(-P // C)
    pad = n * C - P
    pts = jnp.pad(transducer.points, ((0, pad), (0, 0)), mode="edge")
    vals = jnp.pad(values, (0, pad))
    return pts.reshape(n, C, -1), vals.reshape(n, C)


@partial(jax.jit, static_argnames=("grid",))
def _scatter(pts, vals, grid: Grid):
    cell = float(np.prod(grid.spacing))

    def body(acc, chunk):
        p, v = chunk
        idx, wts = _stencils(p, grid)
        flat, w = _flat(idx, wts, grid)
        return acc.at[flat.ravel()].add((v[:, None] * w).ravel()), None

    acc0 = jnp.zeros(int(np.prod(grid.shape)), dtype=jnp.result_type(vals.dtype, jnp.complex64))
    if pts.shape[0] == 1:
        acc, _ = body(acc0, (pts[0], vals[0]))
    else:
        acc, _ = jax.lax.scan(body, acc0, (pts, vals))
    return acc.reshape(grid.shape) / cell


def _scatter_numpy(points, vals, grid: Grid):
    """NumPy version of :func:`_scatter` for concrete transducers (no compilation)."""
    K = _STENCIL
    offs = np.arange(-K + 1, K + 1)
    out = np.zeros(int(np.prod(grid.shape)), dtype=complex)
    for start in range(0, points.shape[0], _CHUNK):
        p = points[start : start + _CHUNK]
        v = vals[start : start + _CHUNK]
        idx, wts = [], []
        for ax in range(grid.ndim):
            u = (p[:, ax] - grid.origin[ax]) / grid.spacing[ax]
            ii = np.floor(u).astype(np.int64)[:, None] + offs[None, :]
            r = u[:, None] - ii
            w = np.sinc(r) * np.sinc(r / K)
            idx.append(np.mod(ii, grid.shape[ax]))
            wts.append(w / w.sum(axis=1, keepdims=True))
        flat, w = _flat(idx, wts, grid)
        np.add.at(out, np.asarray(flat).ravel(), (v[:, None] * np.asarray(w)).ravel())
    return out.reshape(grid.shape) / float(np.prod(grid.spacing))


def source_map(transducer: Transducer, grid: Grid) -> Any:
    """Complex surface-source map on ``grid`` (Pa/m).

    Sum over surface points of dA a_e exp(i phi_e) times the band-limited
    delta at the point (a separable Lanczos-windowed sinc, 1/m^ndim).
    Differentiable with respect to the drives, weights and point positions.
    """
    _check_inside(transducer, grid)
    drive = transducer.amplitude * jnp.exp(1j * transducer.phase)
    vals = transducer.weights * drive[transducer.element]
    if is_concrete(transducer):
        return jnp.asarray(_scatter_numpy(np.asarray(transducer.points), np.asarray(vals), grid))
    pts, vals = _chunks(transducer, vals)
    return _scatter(pts, vals, grid)


@partial(jax.jit, static_argnames=("grid",))
def _gather(field, pts, grid: Grid):
    flat_field = jnp.ravel(field)

    def body(_, p):
        idx, wts = _stencils(p, grid)
        flat, w = _flat(idx, wts, grid)
        return None, jnp.sum(flat_field[flat] * w, axis=1)

    if pts.shape[0] == 1:
        return body(None, pts[0])[1].reshape(-1)
    return jax.lax.scan(body, None, pts)[1].reshape(-1)


def sample_points(field: Any, transducer: Transducer, grid: Grid) -> Any:
    """Element averages of a grid field (real or complex), shape (E,).

    The field is interpolated at every surface point with the same band-limited
    kernel as :func:`source_map` (its adjoint) and averaged per element with the
    area weights.
    """
    _check_inside(transducer, grid)
    pts, _ = _chunks(transducer, transducer.weights)
    vals = _gather(field, pts, grid)[: transducer.points.shape[0]]
    w = transducer.weights
    num = jax.ops.segment_sum(w * vals, transducer.element, transducer.n_elements)
    den = jax.ops.segment_sum(w, transducer.element, transducer.n_elements)
    return num / den


def oneil_on_axis(
    z: Any, radius_of_curvature: float, aperture: float, frequency: float, sound_speed: float, p0
):
    """O'Neil's (1949) on-axis pressure amplitude of a focused bowl (Pa).

    Parameters
    ----------
    z : array_like
        Distance from the bowl's apex along the axis, m.
    radius_of_curvature, aperture : float
        m (aperture is the diameter).
    frequency, sound_speed : float
        Hz, m/s.
    p0 : float
        Surface pressure amplitude, Pa.

    Notes
    -----
    |p(z)| = 2 p0 / |1 - z/R| |sin(k (sqrt((z - h)^2 + a^2) - z) / 2)|, h = R - sqrt(R^2 - a^2),
    with the limit p0 k h at z = R.
    """
    z = np.asarray(z, dtype=float)
    R, a = float(radius_of_curvature), aperture / 2.0
    k = 2 * math.pi * frequency / sound_speed
    h = R - math.sqrt(R**2 - a**2)
    delta = np.sqrt((z - h) ** 2 + a**2) - z
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.abs(2 * p0 / (1 - z / R) * np.sin(k * delta / 2))
    return np.where(np.isclose(z, R, rtol=0, atol=1e-12), p0 * k * h, p)
