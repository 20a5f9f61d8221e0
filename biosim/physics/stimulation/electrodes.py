"""TES electrodes and montages.

An :class:`Electrode` is a point, a disc or a rectangle on the scalp, optionally under a
gel/sponge layer of thickness ``h`` (m) and conductivity ``sigma_gel`` (S/m).  On a
tetrahedral head its footprint is the set of outer boundary triangles whose centroids
fall inside the shape (measured in the tangent plane at the electrode centre).

Boundary conditions (current-controlled):

* point: the whole current enters at the boundary node nearest the centre;
* disc/rectangle without gel: a uniform normal current density I / area over the
  footprint (Neumann);
* disc/rectangle with gel: the complete electrode model (Somersalo, Cheney & Isaacson
  1992) with contact impedance ``z = h / sigma_gel`` (ohm m^2), the one-dimensional
  resistance of the gel layer: on the footprint the current density is
  ``(V_e - phi) / z`` with the metal potential ``V_e`` an unknown and the constraint
  ``integral (V_e - phi) / z dS = I_e``, so each electrode delivers exactly its current.

A :class:`Montage` is electrodes plus currents (A) that must sum to zero; its field is the
superposition of per-electrode solutions (``+1 A`` at electrode k, ``-1 A`` at the
reference electrode).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import GeometryError, ParameterError
from ..._core.pytree import pytree_dataclass, static_field
from ..._core.validation import check_all_finite, check_nonnegative, check_positive

_SHAPES = ("point", "disc", "rect")


@pytree_dataclass
class Electrode:
    """A TES electrode.

    Parameters
    ----------
    center : array (3,)
        Position on the scalp, m.
    size : array (2,)
        Disc: (radius, unused); rectangle: (width along ``direction``, height), m.
    direction : array (3,)
        In-plane direction of a rectangle's width (projected on the tangent plane).
    gel_thickness : float
        Gel/sponge thickness, m (0: no layer).
    gel_conductivity : float
        S/m.
    shape : str
        ``"point"``, ``"disc"`` or ``"rect"`` (static).
    name : str
        Label (static).
    """

    center: jax.Array
    size: jax.Array
    direction: jax.Array
    gel_thickness: float = 0.0
    gel_conductivity: float = 1.0
    shape: str = static_field(default="point")
    name: str = static_field(default="E")

    @property
    def contact_impedance(self) -> float:
        """Gel resistance times area, ohm m^2 (0 without a gel layer)."""
        return float(self.gel_thickness) / float(self.gel_conductivity)


def _center(center):
    c = np.asarray(center, float)
    if c.shape != (3,):
        raise ParameterError("center", f"array of shape {c.shape}", "shape (3,), m")
    check_all_finite(center=c)
    return c


def point_electrode(center, name="E") -> Electrode:
    """A point electrode at ``center`` (m)."""
    return Electrode(_center(center), np.zeros(2), np.array([1.0, 0, 0]), 0.0, 1.0, "point", name)


def disc_electrode(center, radius, gel_thickness=0.0, gel_conductivity=1.0, name="E") -> Electrode:
    """A disc electrode of ``radius`` (m), with an optional gel layer (m, S/m)."""
    check_positive("radius", radius, "m")
    check_nonnegative("gel_thickness", gel_thickness, "m")
    check_positive("gel_conductivity", gel_conductivity, "S/m")
    return Electrode(
        _center(center),
        np.array([float(radius), 0.0]),
        np.array([1.0, 0, 0]),
        float(gel_thickness),
        float(gel_conductivity),
        "disc",
        name,
    )


def rect_electrode(
    center,
    width,
    height,
    direction=(1.0, 0.0, 0.0),
    gel_thickness=0.0,
    gel_conductivity=1.0,
    name="E",
) -> Electrode:
    """A rectangular electrode (``width`` along ``direction`` x ``height``, m), e.g. a
    5 x 7 cm sponge with ``gel_thickness=0.003, gel_conductivity=1.0``."""
    check_positive("width", width, "m")
    check_positive("height", height, "m")
    check_nonnegative("gel_thickness", gel_thickness, "m")
    check_positive("gel_conductivity", gel_conductivity, "S/m")
    d = np.asarray(direction, float)
    if d.shape != (3,) or np.linalg.norm(d) == 0:
        raise ParameterError("direction", d.tolist(), "a non-zero 3-vector")
    return Electrode(
        _center(center),
        np.array([float(width), float(height)]),
        d / np.linalg.norm(d),
        float(gel_thickness),
        float(gel_conductivity),
        "rect",
        name,
    )


def check_currents(currents, n_electrodes: int, rtol: float = 1e-9):
    """Validate montage currents (A): finite, one per electrode, summing to zero."""
    cur = np.asarray(currents, float).reshape(-1)
    check_all_finite(currents=cur)
    if cur.size != n_electrodes:
        raise ParameterError(
            "currents", f"{cur.size} values", f"one per electrode ({n_electrodes})"
        )
    scale = float(np.max(np.abs(cur))) if cur.size else 0.0
    if scale == 0:
        raise ParameterError("currents", cur.tolist(), "at least one non-zero current")
    if abs(float(cur.sum())) > rtol * scale:
        raise ParameterError(
            "currents", cur.tolist(), f"currents that sum to zero (sum = {cur.sum():g} A)"
        )
    return cur


@pytree_dataclass
class Montage:
    """Electrodes and their currents (A, summing to zero)."""

    electrodes: tuple
    currents: jax.Array

    @classmethod
    def create(cls, electrodes, currents) -> Montage:
        electrodes = tuple(electrodes)
        if len(electrodes) < 2:
            raise ParameterError("electrodes", len(electrodes), "at least two electrodes")
        return cls(electrodes, jnp.asarray(check_currents(currents, len(electrodes))))


def hd_montage(
    center,
    normal,
    radius=0.05,
    current=2e-3,
    n_return=4,
    electrode_radius=0.006,
    gel_thickness=0.0,
    gel_conductivity=1.0,
    reference=(0.0, 1.0, 0.0),
    project=None,
) -> Montage:
    """An HD n x 1 montage: a centre electrode carrying ``current`` (A) and ``n_return``
    return electrodes (each ``-current / n_return``) on a ring of ``radius`` (m, along the
    tangent plane at ``center`` with outward ``normal``).  ``project`` (callable
    (k, 3) -> (k, 3)) maps the ring points onto the scalp, e.g. a sphere projection."""
    c = _center(center)
    n = np.asarray(normal, float)
    n = n / np.linalg.norm(n)
    t1 = np.asarray(reference, float) - np.dot(reference, n) * n
    if np.linalg.norm(t1) < 1e-9:
        raise ParameterError("reference", list(reference), "a direction not along the normal")
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(n, t1)
    ang = 2 * np.pi * np.arange(n_return) / n_return
    ring = c + radius * (np.cos(ang)[:, None] * t1 + np.sin(ang)[:, None] * t2)
    if project is not None:
        ring = np.asarray(project(ring), float)

    def make(p, name):
        if electrode_radius == 0:
            return point_electrode(p, name)
        return disc_electrode(p, electrode_radius, gel_thickness, gel_conductivity, name)

    els = [make(c, "centre")] + [make(p, f"return{k + 1}") for k, p in enumerate(ring)]
    cur = np.concatenate([[current], np.full(n_return, -current / n_return)])
    return Montage.create(els, cur)


def sphere_projector(radius, center=(0.0, 0.0, 0.0)):
    """A ``project`` callable for :func:`hd_montage`: radial projection onto a sphere."""
    c = np.asarray(center, float)

    def project(p):
        d = np.asarray(p, float) - c
        return c + radius * d / np.linalg.norm(d, axis=-1, keepdims=True)

    return project


def electrode_footprint(
    electrode: Electrode, face_centroids, face_normals, face_areas, tolerance=0.005
):
    """Indices of the scalp triangles under an electrode.

    Parameters
    ----------
    electrode : Electrode
    face_centroids, face_normals : array (f, 3)
        Outer boundary triangles (m; outward unit normals).
    face_areas : array (f,)
        m^2.
    tolerance : float
        Largest allowed distance from the electrode centre to the scalp, m.

    Returns
    -------
    array of int
        Face indices (one for a point electrode: the nearest face).

    Raises
    ------
    GeometryError
        The electrode is off the scalp, or its footprint covers no triangle.
    """
    c = np.asarray(electrode.center, float)
    fc = np.asarray(face_centroids, float)
    d = np.linalg.norm(fc - c, axis=1)
    i0 = int(np.argmin(d))
    gap = abs(float(np.dot(c - fc[i0], np.asarray(face_normals)[i0])))
    if d[i0] > tolerance + np.sqrt(2 * float(np.asarray(face_areas)[i0])) or gap > tolerance:
        raise GeometryError(
            f"electrode {electrode.name!r} at {np.round(c * 1e3, 2).tolist()} mm is off the "
            f"scalp: the nearest scalp triangle is {d[i0] * 1e3:.2f} mm away (allowed "
            f"{tolerance * 1e3:g} mm)"
        )
    if electrode.shape == "point":
        return np.array([i0])
    n = np.asarray(face_normals)[i0]
    rel = fc - c
    facing = np.asarray(face_normals) @ n > 0.3  # same side of the head
    rel_t = rel - (rel @ n)[:, None] * n
    if electrode.shape == "disc":
        inside = np.linalg.norm(rel_t, axis=1) <= float(electrode.size[0])
    else:
        u = np.asarray(electrode.direction, float)
        u = u - np.dot(u, n) * n
        if np.linalg.norm(u) < 1e-9:
            raise ParameterError("direction", u.tolist(), "a direction not along the normal")
        u /= np.linalg.norm(u)
        v = np.cross(n, u)
        inside = (np.abs(rel_t @ u) <= 0.5 * float(electrode.size[0])) & (
            np.abs(rel_t @ v) <= 0.5 * float(electrode.size[1])
        )
    idx = np.flatnonzero(inside & facing & (np.abs(rel @ n) < 0.5 * _extent(electrode)))
    if idx.size == 0:
        raise GeometryError(
            f"electrode {electrode.name!r} covers no scalp triangle (size "
            f"{np.round(np.asarray(electrode.size) * 1e3, 2).tolist()} mm): refine the mesh "
            "or use a point electrode"
        )
    return idx


def _extent(electrode: Electrode) -> float:
    s = np.asarray(electrode.size, float)
    return float(2 * s[0]) if electrode.shape == "disc" else float(np.hypot(*s))
