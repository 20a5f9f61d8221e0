"""Rigid coregistration: fiducials (Kabsch/Horn) and iterative closest point.

:func:`kabsch` finds the rotation R and translation t minimising
sum ||R p_i + t - q_i||^2 for paired points (Kabsch 1976; Horn 1987);
:func:`icp` aligns digitised head points to a scalp mesh: with faces, each
point is matched to the tangent plane of its nearest vertex and the rigid
update minimises the point-to-plane distances (Chen & Medioni 1992), which
converges much faster than point-to-point matching on smooth heads; without
faces, nearest-vertex matching with Kabsch updates (Besl & McKay 1992).
The RMS residual is reported.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .._core.errors import ConvergenceError, ParameterError


def kabsch(source, target, weights=None):
    """(R, t) with R source + t ~ target (points (n, 3))."""
    p = np.asarray(source, float)
    q = np.asarray(target, float)
    if p.shape != q.shape or p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 3:
        raise ParameterError("source/target", f"shapes {p.shape}, {q.shape}", "equal (n >= 3, 3)")
    w = np.ones(len(p)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    pc, qc = w @ p, w @ q
    h = (p - pc).T @ ((q - qc) * w[:, None])
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, qc - r @ pc


def apply_transform(points, r, t):
    return np.asarray(points) @ np.asarray(r).T + t


def _rodrigues(omega):
    theta = np.linalg.norm(omega)
    if theta < 1e-15:
        return np.eye(3)
    k = omega / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def _point_to_plane_step(p, q, n):
    """Linearised point-to-plane update (Chen & Medioni 1992): minimise
    sum ((p + w x p + t - q) . n)^2 over the small rotation w and translation t."""
    a = np.c_[np.cross(p, n), n]
    b = -np.sum((p - q) * n, 1)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    r = _rodrigues(x[:3])
    return r, x[3:]


def icp(points, surface_vertices, surface_faces=None, init=None, max_iter=500, tol=1e-6):
    """Align ``points`` to a surface.

    Returns
    -------
    R, t : rotation and translation mapping points onto the surface
    rms : RMS distance (m) from the transformed points to the surface

    Converges when the RMS changes by less than ``tol`` relative to itself, or the
    update is negligible (< 1e-7 rad and 1e-8 m).
    """
    pts = np.asarray(points, float)
    verts = np.asarray(surface_vertices, float)
    r, t = (np.eye(3), np.zeros(3)) if init is None else init
    normals = None
    if surface_faces is not None:
        f = np.asarray(surface_faces)
        fn = np.cross(verts[f[:, 1]] - verts[f[:, 0]], verts[f[:, 2]] - verts[f[:, 0]])
        normals = np.zeros_like(verts)
        for k in range(3):
            np.add.at(normals, f[:, k], fn)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    tree = cKDTree(verts)
    prev = np.inf
    for _ in range(max_iter):
        moved = apply_transform(pts, r, t)
        _, idx = tree.query(moved)
        closest = verts[idx]
        if normals is not None:
            n = normals[idx]
            closest = moved - np.sum((moved - closest) * n, 1, keepdims=True) * n
        dist = np.linalg.norm(moved - closest, axis=1)
        rms = float(np.sqrt(np.mean(dist**2)))
        if normals is not None:
            dr, dt = _point_to_plane_step(moved, verts[idx], normals[idx])
        else:
            dr, dt = kabsch(moved, closest)
        r, t = dr @ r, dr @ t + dt
        step_angle = np.arccos(np.clip((np.trace(dr) - 1) / 2, -1, 1))
        if abs(prev - rms) < tol * max(rms, 1e-12) or (
            step_angle < 1e-7 and np.linalg.norm(dt) < 1e-8
        ):
            return r, t, rms
        prev = rms
    raise ConvergenceError(f"ICP did not converge in {max_iter} iterations (RMS {prev:.2e} m)")
