"""Closed-form stimulation fields used as oracles.

* :func:`loop_vector_potential`: the vector potential of a circular current loop,
  ``A_phi = mu0 I / (pi k) sqrt(a / rho) [(1 - k^2/2) K(k) - E(k)]`` with
  ``k^2 = 4 a rho / ((a + rho)^2 + z^2)`` (Jackson, Classical Electrodynamics, 3rd ed.,
  eq. 5.37), K and E the complete elliptic integrals.
* :func:`sphere_tms_field`: the TMS electric field inside a spherically symmetric
  conductor for magnetic dipoles outside it (Heller & van Hulsteyn 1992, Biophys. J.
  63:129).  It does not depend on the radial conductivity profile::

      E(r) = -mu0 dI/dt / (4 pi F^2) [F r x m - (m . grad_r0 F) r x r0]

  with ``a = r0 - r``, ``F = |a| (|r0| |a| + |r0|^2 - r0 . r)`` and
  ``grad_r0 F = (|a|^2/|r0| + a.r0/|a| + 2|a| + 2|r0|) r0 - (|a| + 2|r0| + a.r0/|a|) r``
  (the Sarvas 1987 terms; the formula is the reciprocal of the MEG sphere field).
  It has no radial component.
* :func:`sphere_tes_potential`: the potential of point electrodes on concentric
  spheres (Rush & Driscoll 1968): in each shell ``u_n(r) = a r^n + b r^-(n+1)`` times
  ``P_n(cos gamma)``, continuity of potential and normal current at every interface and
  ``sigma_N du_n/dr = I (2n+1) / (4 pi R_N^2)`` at the scalp (the Legendre expansion of a
  point current).  The ratio b / (a r^(2n+1)) is propagated outward (never overflows)
  and the amplitude back inward.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ellipe, ellipk

from ..._core.errors import GeometryError, ParameterError
from ..._core.validation import check_all_finite, check_shape, is_concrete
from ..electromag.sphere_eeg import SphereHead
from .coils import MU0, Coil, CoilPlacement, transform_coil
from .electrodes import check_currents


def loop_vector_potential(points, radius, current=1.0):
    """Vector potential (T m) of a circular loop of radius ``radius`` (m) in the plane
    z = 0 centred at the origin, current ``current`` (A) counter-clockwise about +z.

    NumPy only (an oracle); points (n, 3) in m.
    """
    p = np.asarray(points, float).reshape(-1, 3)
    rho = np.hypot(p[:, 0], p[:, 1])
    z = p[:, 2]
    a = float(radius)
    m = 4 * a * rho / ((a + rho) ** 2 + z**2)
    k = np.sqrt(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_phi = (
            MU0 * current / (np.pi * k) * np.sqrt(a / rho) * ((1 - 0.5 * m) * ellipk(m) - ellipe(m))
        )
    a_phi = np.where(rho > 0, a_phi, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ex = np.where(rho > 0, -p[:, 1] / rho, 0.0)
        ey = np.where(rho > 0, p[:, 0] / rho, 0.0)
    return np.stack([a_phi * ex, a_phi * ey, np.zeros_like(a_phi)], axis=1)


def _hvh_one(r, r0, m):
    a_vec = r0 - r
    a = jnp.linalg.norm(a_vec)
    rn0 = jnp.linalg.norm(r0)
    adr0 = jnp.dot(a_vec, r0)
    F = a * (rn0 * a + rn0**2 - jnp.dot(r0, r))
    gF = (a**2 / rn0 + adr0 / a + 2 * a + 2 * rn0) * r0 - (a + 2 * rn0 + adr0 / a) * r
    return -(MU0 / (4 * jnp.pi)) / F**2 * (F * jnp.cross(r, m) - jnp.dot(m, gF) * jnp.cross(r, r0))


@jax.jit
def _hvh(points, pos, mom):
    def at(r):
        return jnp.sum(jax.vmap(lambda p, m: _hvh_one(r, p, m))(pos, mom), axis=0)

    return jax.lax.map(at, points, batch_size=128)


def sphere_tms_field(
    coil: Coil,
    points,
    didt=1.0,
    placement: CoilPlacement | None = None,
    center=(0.0, 0.0, 0.0),
    outer_radius=None,
):
    """Induced electric field (V/m) in a spherically symmetric conductor (Heller & van
    Hulsteyn 1992) for a dipole coil; any radial conductivity profile gives the same
    field.

    Parameters
    ----------
    coil : Coil
        Must hold magnetic dipoles (use the ``*_dipole_coil`` models for wire coils).
    points : array (n, 3)
        Evaluation points inside the sphere, m.
    didt : float
        dI/dt, A/s.
    placement : CoilPlacement, optional
    center : array (3,)
        Sphere centre, m.
    outer_radius : float, optional
        When given, dipoles inside this radius and points outside it raise errors.
    """
    if coil.n_dipoles == 0 or coil.n_segments:
        raise ParameterError("coil", coil.name, "a coil made of magnetic dipoles only")
    c = coil if placement is None else transform_coil(coil, placement)
    center = jnp.asarray(center, float)
    pts = jnp.asarray(points, float)
    if is_concrete(pts):
        check_shape("points", pts, (None, 3))
        check_all_finite(points=pts)
    pos = c.dip_pos - center
    if outer_radius is not None and is_concrete((pos, pts)):
        rd = np.linalg.norm(np.asarray(pos), axis=1)
        if np.any(rd <= outer_radius):
            raise GeometryError(
                f"coil {c.name!r} intersects the head: a dipole lies {rd.min() * 1e3:.2f} mm "
                f"from the centre, inside the {outer_radius * 1e3:g} mm sphere"
            )
        rp = np.linalg.norm(np.asarray(pts - center), axis=1)
        if np.any(rp > outer_radius):
            raise ParameterError(
                "points",
                f"max radius {rp.max():g} m",
                f"points inside the sphere (radius {outer_radius:g} m)",
            )
    return didt * _hvh(pts - center, pos, c.dip_moment)


def _tes_radial(head: SphereHead, r, n_max: int):
    """u_n(r) / I and r du_n/dr / I for n = 1..n_max at radii r (k,): the radial factor of
    the potential of a unit point current at the scalp.  Returns two (k, n_max) arrays."""
    R = jnp.asarray(head.radii, float)
    s = jnp.asarray(head.conductivities, float)
    n = jnp.arange(1, n_max + 1, dtype=float)
    N = R.shape[0]
    # outward sweep: admittance y = sigma r u'/u, continuous across interfaces; in shell k
    # t_k = b / (a R_k^(2n+1)) at its outer radius R_k
    y = s[0] * n
    ts = [jnp.zeros_like(n)]
    for k in range(1, N):
        t_in = (s[k] * n - y) / (y + s[k] * (n + 1))
        t = t_in * (R[k - 1] / R[k]) ** (2 * n + 1)
        y = s[k] * (n - (n + 1) * t) / (1 + t)
        ts.append(t)
    u_at = [None] * N  # u at the outer radius of each shell
    u_at[N - 1] = (2 * n + 1) / (4 * jnp.pi * R[N - 1] * y)
    for k in range(N - 1, 0, -1):
        q = R[k - 1] / R[k]
        u_at[k - 1] = u_at[k] * (q**n + ts[k] * q ** (-(n + 1))) / (1 + ts[k])
    r = jnp.asarray(r, float)[:, None]
    u = jnp.zeros((r.shape[0], n_max))
    du = jnp.zeros((r.shape[0], n_max))
    for k in range(N):
        q = r / R[k]
        if k == 0:
            lo, hi = q**n, jnp.zeros_like(q * n)
        else:  # clamp to the shell so that masked-out points cannot overflow
            q = jnp.clip(q, R[k - 1] / R[k], 1.0)
            lo, hi = q**n, ts[k] * q ** (-(n + 1))
        inside = (r <= R[k]) & (r > R[k - 1]) if k else (r <= R[k])
        u = jnp.where(inside, u_at[k] * (lo + hi) / (1 + ts[k]), u)
        du = jnp.where(inside, u_at[k] * (n * lo - (n + 1) * hi) / (1 + ts[k]), du)
    return u, du


def _legendre(x, n_max):
    """P_n and P_n' for n = 1..n_max at x (k,) -> two (k, n_max) arrays (Bonnet's
    recursion and P'_(n+1) = P'_(n-1) + (2n + 1) P_n)."""

    def body(carry, n):
        p_prev, p, dp_prev, dp = carry
        p_next = ((2 * n + 1) * x * p - n * p_prev) / (n + 1)
        dp_next = dp_prev + (2 * n + 1) * p
        return (p, p_next, dp, dp_next), (p, dp)

    one, zero = jnp.ones_like(x), jnp.zeros_like(x)
    _, (ps, dps) = jax.lax.scan(body, (one, x, zero, one), jnp.arange(1.0, n_max + 1))
    return ps.T, dps.T


def _check_tes(head, electrodes, currents, points):
    el = jnp.asarray(electrodes, float).reshape(-1, 3)
    cur = jnp.asarray(currents, float).reshape(-1)
    pts = jnp.asarray(points, float).reshape(-1, 3)
    if is_concrete((el, cur, pts)):
        check_all_finite(electrodes=el, currents=cur, points=pts)
        if el.shape[0] != cur.shape[0]:
            raise ParameterError(
                "currents", f"{cur.shape[0]} values", f"one per electrode ({el.shape[0]})"
            )
        check_currents(cur, el.shape[0])
        rp = np.linalg.norm(np.asarray(pts - head.center), axis=1)
        if np.any(rp >= float(head.radii[-1])):
            raise ParameterError(
                "points",
                f"max radius {rp.max():g} m",
                f"points inside the outer sphere ({float(head.radii[-1]):g} m)",
            )
    return el, cur, pts


def sphere_tes_potential(head: SphereHead, electrodes, currents, points, n_terms=300):
    """Potential (V) of point electrodes on a concentric-sphere head (Rush & Driscoll
    1968).

    Parameters
    ----------
    head : SphereHead
        Shell radii (increasing) and conductivities; electrodes are projected radially
        onto the outer surface.
    electrodes : array (e, 3)
        Electrode positions, m.
    currents : array (e,)
        Injected currents, A; must sum to zero.
    points : array (n, 3)
        Evaluation points strictly inside the outer sphere, m.
    n_terms : int
        Legendre degrees summed; the series converges like (r / R_N)^n.

    Returns
    -------
    array (n,)
        Potential, V (the n = 0 term vanishes because the currents balance).
    """
    el, cur, pts = _check_tes(head, electrodes, currents, points)
    return _tes_potential(head, el, cur, pts, int(n_terms))


def _geometry(head, el, pts):
    c = jnp.asarray(head.center, float)
    p = pts - c
    r = jnp.linalg.norm(p, axis=1)
    e = el - c
    e_hat = e / jnp.linalg.norm(e, axis=1, keepdims=True)
    p_hat = p / jnp.where(r > 0, r, 1.0)[:, None]
    cosg = jnp.clip(p_hat @ e_hat.T, -1.0, 1.0)  # (n, e)
    return r, p_hat, e_hat, cosg


@partial(jax.jit, static_argnums=4)
def _tes_potential(head, el, cur, pts, n_terms):
    r, _, _, cosg = _geometry(head, el, pts)
    u, _ = _tes_radial(head, r, n_terms)
    P, _ = _legendre(cosg.reshape(-1), n_terms)
    return jnp.einsum("nl,nel,e->n", u, P.reshape(cosg.shape + (n_terms,)), cur)


@partial(jax.jit, static_argnums=4)
def _tes_field(head, el, cur, pts, n_terms):
    # grad (u_n(r) P_n(cos g)) = u_n' P_n r_hat + u_n / r P_n'(cos g) (e_hat - cos g r_hat)
    r, p_hat, e_hat, cosg = _geometry(head, el, pts)
    u, du = _tes_radial(head, r, n_terms)
    P, dP = _legendre(cosg.reshape(-1), n_terms)
    P = P.reshape(cosg.shape + (n_terms,))
    dP = dP.reshape(cosg.shape + (n_terms,))
    radial = jnp.einsum("nl,nel,e->ne", du, P, cur) / r[:, None]  # d/dr, per electrode
    tang = jnp.einsum("nl,nel,e->ne", u, dP, cur) / r[:, None]
    grad = (
        jnp.sum(radial, 1)[:, None] * p_hat
        + tang @ e_hat
        - jnp.sum(tang * cosg, 1)[:, None] * p_hat
    )
    return -grad


def sphere_tes_field(head: SphereHead, electrodes, currents, points, n_terms=300):
    """Electric field -grad(potential) (V/m) of :func:`sphere_tes_potential`, by
    automatic differentiation of the series; points (n, 3) in m -> (n, 3)."""
    el, cur, pts = _check_tes(head, electrodes, currents, points)
    return _tes_field(head, el, cur, pts, int(n_terms))
