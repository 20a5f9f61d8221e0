"""Analytic potentials of flat triangles and triangle quadrature rules (BEM kernels).

The kernel is the Laplace Green function ``G(r) = 1 / (4 pi |r|)``.  For a
flat triangle T with vertices y1, y2, y3 (counter-clockwise seen from the
side its normal n points to) and an observation point x:

* :func:`single_layer_p0` -- ``int_T G(x - y) dy`` (constant density), the
  closed form of Graglia (1993) / de Munck (1992):
  ``4 pi I = sum_e P_e ln((R+ + l+) / (R- + l-)) - |h| Omega``, with P_e the
  signed in-plane distance of x to edge e, l+- the edge-end coordinates along
  the edge, R+- the distances to the edge ends and h the height of x above
  the plane.
* :func:`solid_angle` -- van Oosterom & Strackee (1983), IEEE TBME 30:125:
  ``tan(Omega / 2) = a.(b x c) / (abc + (a.b)c + (a.c)b + (b.c)a)``.
* :func:`double_layer_p1` -- ``int_T lambda_k(y) dG(x - y)/dn_y dy`` for the
  three barycentric (hat) functions lambda_k (de Munck 1992, IEEE TBME 39:986):
  ``-(lambda_k(x_p) Omega + h grad(lambda_k) . sum_e m_e gamma_e) / (4 pi)``
  where x_p is the projection of x on the plane, m_e the outward in-plane
  edge normals and ``gamma_e = int_e ds / |x - y|``.

All functions broadcast over leading axes (``x`` (..., 3), ``tri``
(..., 3, 3)) and are differentiable in x and in the vertices (the singular
logarithms are guarded with the double-``where`` idiom).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

FOUR_PI = 4.0 * np.pi


def _dot(a, b):
    return jnp.sum(a * b, axis=-1)


def _safe_norm(v, eps=1e-300):
    sq = _dot(v, v)
    safe = jnp.where(sq > eps, sq, 1.0)
    return jnp.where(sq > eps, jnp.sqrt(safe), 0.0)


def solid_angle(x, tri):
    """Signed solid angle (sr) of triangle ``tri`` seen from ``x``.

    Positive when x lies on the side opposite to the triangle's normal (for a
    closed outward surface: +4 pi summed over the faces for x inside).
    """
    a, b, c = (tri[..., k, :] - x for k in range(3))
    la, lb, lc = _safe_norm(a), _safe_norm(b), _safe_norm(c)
    num = _dot(a, jnp.cross(b, c))
    den = la * lb * lc + _dot(a, b) * lc + _dot(a, c) * lb + _dot(b, c) * la
    return 2.0 * jnp.arctan2(num, den)


def _edge_terms(x, tri):
    """Per-edge quantities: P_e (signed in-plane distance), gamma_e = int_e 1/R,
    outward in-plane normals m_e, unit normal n, height h, area."""
    y = [tri[..., k, :] for k in range(3)]
    nvec = jnp.cross(y[1] - y[0], y[2] - y[0])
    two_area = _safe_norm(nvec)
    n = nvec / two_area[..., None]
    h = _dot(x - y[0], n)
    P, gamma, m = [], [], []
    for k in range(3):
        a, b = y[k], y[(k + 1) % 3]
        e = b - a
        le = _safe_norm(e)
        t = e / le[..., None]
        me = jnp.cross(t, n)  # outward in-plane normal
        lm = _dot(a - x, t)  # l- (signed, edge start)
        lp = _dot(b - x, t)  # l+ (edge end)
        rm = _safe_norm(a - x)
        rp = _safe_norm(b - x)
        pe = _dot(a - x, me)
        # ln((R+ + l+)/(R- + l-)) == ln((R- - l-)/(R+ - l+)); take the form
        # whose arguments stay away from cancellation
        use_plus = (lm + lp) >= 0
        num = jnp.where(use_plus, rp + lp, rm - lm)
        den = jnp.where(use_plus, rm + lm, rp - lp)
        ok = (num > 1e-300) & (den > 1e-300)
        g = jnp.where(ok, jnp.log(jnp.where(ok, num, 1.0) / jnp.where(ok, den, 1.0)), 0.0)
        P.append(pe)
        gamma.append(g)
        m.append(me)
    return jnp.stack(P, -1), jnp.stack(gamma, -1), jnp.stack(m, -2), n, h, two_area


def single_layer_p0(x, tri):
    """``int_T G(x - y) dy`` for a unit constant density on ``tri`` (m)."""
    P, gamma, _, _, h, _ = _edge_terms(x, tri)
    omega = jnp.abs(solid_angle(x, tri))
    return (jnp.sum(P * gamma, axis=-1) - jnp.abs(h) * omega) / FOUR_PI


def single_layer_p1(x, tri):
    """``int_T lambda_k(y) G(x - y) dy`` for k = 0, 1, 2 -> (..., 3) (m).

    ``lambda_k(y) = lambda_k(x_p) + grad(lambda_k) . (y - x_p)`` with the
    in-plane moment (Wilton et al. 1984, IEEE TAP 32:276, eq. 9)
    ``int_T (y - x_p) / |x - y| dy = 1/2 sum_e m_e ((P_e^2 + h^2) gamma_e
    + l+ R+ - l- R-)``.
    """
    P, gamma, m, n, h, two_area = _edge_terms(x, tri)
    omega = jnp.abs(solid_angle(x, tri))
    i0 = (jnp.sum(P * gamma, axis=-1) - jnp.abs(h) * omega) / FOUR_PI
    y = [tri[..., k, :] for k in range(3)]
    ends = []
    for k in range(3):
        a, b = y[k], y[(k + 1) % 3]
        e = b - a
        t = e / _safe_norm(e)[..., None]
        lm, lp = _dot(a - x, t), _dot(b - x, t)
        ends.append(lp * _safe_norm(b - x) - lm * _safe_norm(a - x))
    ends = jnp.stack(ends, -1)
    coef = 0.5 * ((P * P + (h * h)[..., None]) * gamma + ends)  # (..., 3 edges)
    moment = jnp.sum(m * coef[..., None], axis=-2) / FOUR_PI  # (..., 3)
    grads = hat_gradients(tri)
    lam = jnp.stack([_dot(grads[..., k, :], x - tri[..., (k + 1) % 3, :]) for k in range(3)], -1)
    return lam * i0[..., None] + jnp.einsum("...kj,...j->...k", grads, moment)


def hat_gradients(tri):
    """In-plane gradients (..., 3, 3) of the three barycentric functions (1/m)."""
    y = [tri[..., k, :] for k in range(3)]
    nvec = jnp.cross(y[1] - y[0], y[2] - y[0])
    two_area = _safe_norm(nvec)
    n = nvec / two_area[..., None]
    return jnp.stack(
        [jnp.cross(n, y[(k + 2) % 3] - y[(k + 1) % 3]) / two_area[..., None] for k in range(3)],
        axis=-2,
    )


def double_layer_p1(x, tri):
    """``int_T lambda_k(y) dG(x - y)/dn_y dy`` for k = 0, 1, 2 -> (..., 3).

    Zero for x in the plane of the triangle (the principal value used on the
    triangle itself).
    """
    P, gamma, m, n, h, two_area = _edge_terms(x, tri)
    omega = solid_angle(x, tri)
    grads = hat_gradients(tri)  # (..., 3, 3)
    lam = jnp.stack([_dot(grads[..., k, :], x - tri[..., (k + 1) % 3, :]) for k in range(3)], -1)
    mg = jnp.sum(m * gamma[..., None], axis=-2)  # sum_e m_e gamma_e  (..., 3)
    corr = h[..., None] * jnp.einsum("...kj,...j->...k", grads, mg)
    return -(lam * omega[..., None] + corr) / FOUR_PI


def double_layer_p0(x, tri):
    """``int_T dG(x - y)/dn_y dy = -Omega / (4 pi)``."""
    return -solid_angle(x, tri) / FOUR_PI


# --------------------------------------------------------------------------
# quadrature on triangles (barycentric points, weights summing to 1)


def _radon7():
    s15 = np.sqrt(15.0)
    a1, a2 = (6 - s15) / 21, (6 + s15) / 21
    w1, w2 = (155 - s15) / 1200, (155 + s15) / 1200
    pts = [(1 / 3, 1 / 3, 1 / 3)]
    wts = [9 / 40]
    for a, w in ((a1, w1), (a2, w2)):
        for k in range(3):
            p = [a, a, a]
            p[k] = 1 - 2 * a
            pts.append(tuple(p))
            wts.append(w)
    return np.array(pts), np.array(wts)


def _strang3():
    pts = np.array([(2 / 3, 1 / 6, 1 / 6), (1 / 6, 2 / 3, 1 / 6), (1 / 6, 1 / 6, 2 / 3)])
    return pts, np.full(3, 1 / 3)


def _subdivide(pts, wts, level):
    """Apply a rule on each of the 4**level congruent sub-triangles."""
    for _ in range(level):
        new_p, new_w = [], []
        corners = np.eye(3)
        mids = [(corners[i] + corners[j]) / 2 for i, j in ((0, 1), (1, 2), (2, 0))]
        subs = [
            (corners[0], mids[0], mids[2]),
            (mids[0], corners[1], mids[1]),
            (mids[2], mids[1], corners[2]),
            (mids[1], mids[2], mids[0]),
        ]
        for s in subs:
            s = np.array(s)
            new_p.append(pts @ s)
            new_w.append(wts / 4)
        pts, wts = np.concatenate(new_p), np.concatenate(new_w)
    return pts, wts


def triangle_rule(order="7", level=0):
    """Barycentric points (Q, 3) and weights (Q,) (summing to 1).

    ``order`` "1" (centroid), "3" (Strang-Fix, degree 2) or "7" (Radon,
    degree 5); ``level`` subdivides the triangle 4**level times.
    """
    if order == "1":
        pts, wts = np.array([(1 / 3, 1 / 3, 1 / 3)]), np.ones(1)
    elif order == "3":
        pts, wts = _strang3()
    elif order == "7":
        pts, wts = _radon7()
    else:
        raise ValueError(order)
    return _subdivide(pts, wts, level)
