"""MEG forward model of a spherically symmetric conductor (Sarvas 1987).

For a current dipole q at r0 inside any spherically symmetric conductor
centred at the origin, the magnetic field outside it does not depend on the
conductivities or radii (Sarvas 1987, Phys Med Biol 32:11, eq. 25)::

    B(r) = mu0 / (4 pi F^2) (F q x r0 - ((q x r0) . r) grad F)
    F      = a (r a + r^2 - r0 . r),     a = r - r0,  a = |a|,  r = |r|
    grad F = (a^2 / r + (a . r) / a + 2 a + 2 r) r - (a + 2 r + (a . r) / a) r0

so a radial dipole (q parallel to r0) produces no external field.  The gain
of each channel integrates B . n over its coil points (:mod:`.sensors`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import GeometryError
from ..._core.parallel import map_over_sources
from ..._core.units import MU0
from ..._core.validation import check_all_finite, is_concrete


def _sarvas_f(r, r0):
    """F and the coefficients of grad F = c_r r - c_0 r0 at points r (P, 3)."""
    a_vec = r - r0
    a = jnp.linalg.norm(a_vec, axis=-1)
    rn = jnp.linalg.norm(r, axis=-1)
    adotr = jnp.sum(a_vec * r, -1)
    f = a * (rn * a + rn**2 - r @ r0)
    c_r = a**2 / rn + adotr / a + 2 * a + 2 * rn
    c_0 = a + 2 * rn + adotr / a
    return f, c_r, c_0


def sarvas_field_matrix(points, r0):
    """Field per unit dipole: array (P, 3 field components, 3 dipole axes), T/(A m).

    ``points`` (P, 3) and ``r0`` (3,) are relative to the sphere centre (m).
    """
    check_all_finite(points=points, r0=r0)
    r = points
    f, c_r, c_0 = _sarvas_f(r, r0)
    grad_f = c_r[:, None] * r - c_0[:, None] * r0  # (P, 3)
    eye = jnp.eye(3)
    q_x_r0 = jnp.cross(eye, r0)  # (3 dipole axes, 3)
    term1 = f[:, None, None] * q_x_r0[None]  # (P, axes, 3)
    term2 = (r @ q_x_r0.T)[:, :, None] * grad_f[:, None, :]  # (P, axes, 3)
    b = MU0 / (4 * jnp.pi) * (term1 - term2) / (f**2)[:, None, None]
    return jnp.transpose(b, (0, 2, 1))  # (P, field, axis)


def _point_leads(rel, normals, p):
    """Lead vectors (P, 3) of B . n at points ``rel`` for a dipole at ``p``.

    Using (q x r0) . n = q . (r0 x n) and (q x r0) . r = q . (r0 x r), Sarvas'
    formula projected on n is linear in q with coefficient vector
    mu0 / (4 pi F^2) [F (r0 x n) - (grad F . n) (r0 x r)].
    """
    f, c_r, c_0 = _sarvas_f(rel, p)
    gradf_n = c_r * jnp.sum(rel * normals, -1) - c_0 * (normals @ p)
    lead = f[:, None] * jnp.cross(p, normals) - gradf_n[:, None] * jnp.cross(p, rel)
    return MU0 / (4 * jnp.pi) * lead / (f**2)[:, None]


@partial(jax.jit, static_argnames=("n_channels", "chunk"))
def _meg_gain(points, normals, weights, channel, positions, center, n_channels, chunk=64):
    rel = points - center

    def one(p):
        lead = _point_leads(rel, normals, p - center) * weights[:, None]
        return jax.ops.segment_sum(lead, channel, num_segments=n_channels)  # (C, 3)

    n = positions.shape[0]
    pad = (-n) % chunk
    padded = jnp.concatenate(
        [positions, jnp.broadcast_to(center + jnp.array([0, 0, 1e-3]), (pad, 3))]
    )
    blocks = padded.reshape(-1, chunk, 3)
    out = jax.lax.map(jax.vmap(one), blocks).reshape(-1, n_channels, 3)[:n]
    return jnp.transpose(out, (1, 0, 2))  # (C, n_src, 3)


def meg_gain(sensors, positions, center=(0.0, 0.0, 0.0), inner_radius=None):
    """Sarvas gain (n_channels, n_sources, 3) in T/(A m) (T/(m A m) for planar gradiometers).

    Parameters
    ----------
    sensors : MEGSensors
    positions : (n_sources, 3) m
    center : (3,) m, centre of the spherical conductor
    inner_radius : float, optional
        Radius that sources must lie inside (e.g. the brain shell), m.
    """
    check_all_finite(positions=positions, center=center)
    positions = jnp.atleast_2d(jnp.asarray(positions, float))
    center = jnp.asarray(center, float)
    if is_concrete(positions) and is_concrete(center):
        rel = np.asarray(positions) - np.asarray(center)
        r_pts = np.linalg.norm(np.asarray(sensors.points) - np.asarray(center), axis=1)
        r_src = np.linalg.norm(rel, axis=1)
        if inner_radius is not None and np.any(r_src >= inner_radius):
            i = int(np.argmax(r_src >= inner_radius))
            raise GeometryError(
                f"dipole {i} at {r_src[i]:.4f} m from the centre is outside the "
                f"innermost shell (radius {inner_radius:.4f} m)"
            )
        if np.any(r_src[:, None] >= r_pts.min()):
            raise GeometryError(
                "a dipole lies farther from the sphere centre than a MEG coil point; "
                "sensors must be outside the head"
            )
    args = (
        jnp.asarray(sensors.points, float),
        jnp.asarray(sensors.normals, float),
        jnp.asarray(sensors.weights, float),
        jnp.asarray(sensors.channel),
    )
    return map_over_sources(
        lambda pos: _meg_gain(*args, pos, center, sensors.n_channels), positions
    )
