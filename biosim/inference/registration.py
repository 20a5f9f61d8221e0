"""Rigid registration of volumes: motion parameters from an fMRI series.

Each volume ``I_t`` is aligned to a reference ``I_0`` by the rigid transform
``T`` (the six parameters of :mod:`biosim.geometry.motion`: translations in m,
pitch/roll/yaw in rad, about the grid's centre) minimising the sum of squared
differences ``sum_x (I_t(T x) - I_0(x))^2`` over a mask, by Gauss-Newton
(Levenberg-Marquardt) -- the least-squares criterion of SPM's realignment
(Friston et al. 1995, Human Brain Mapping 3:165).  ``I_t`` is interpolated by
cubic B-splines and the Jacobian is the interpolated image gradient times the
derivative of ``T x`` (trilinear interpolation biases sub-voxel estimates
towards zero: its blur depends on the shift; Unser 1999, IEEE Signal Processing
Magazine 16:22).  If the head moved by ``M_t`` (head -> scanner) and the
reference was taken at ``M_0``, ``T = M_t M_0^{-1}``: the estimate is the motion
relative to the reference volume.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ParameterError
from .._core.validation import check_all_finite
from ..geometry.motion import rotation_matrix


def _rotation_derivatives(angles) -> np.ndarray:
    """d R / d angle_i (3, 3, 3) for R = Rx Ry Rz, by central differences of the
    closed form (exact to ~1e-10)."""
    h = 1e-6
    out = np.empty((3, 3, 3))
    for i in range(3):
        d = np.zeros(3)
        d[i] = h
        out[i] = (rotation_matrix(angles + d) - rotation_matrix(angles - d)) / (2 * h)
    return out


class _SplineVolume:
    """Cubic B-spline interpolation of a volume and of its gradient (voxel units)."""

    def __init__(self, volume):
        from scipy.ndimage import spline_filter

        self.coef = spline_filter(np.asarray(volume, float), order=3, mode="nearest")

    def values_and_gradient(self, vox):
        """Values (n,) and gradient (n, 3) per voxel at points ``vox`` (n, 3)."""
        from scipy.ndimage import map_coordinates

        pts = vox.T
        value = map_coordinates(self.coef, pts, order=3, mode="nearest", prefilter=False)
        grad = np.empty((vox.shape[0], 3))
        h = 0.05  # voxels: central differences of the smooth spline
        for a in range(3):
            step = np.zeros((3, 1))
            step[a] = h
            hi = map_coordinates(self.coef, pts + step, order=3, mode="nearest", prefilter=False)
            lo = map_coordinates(self.coef, pts - step, order=3, mode="nearest", prefilter=False)
            grad[:, a] = (hi - lo) / (2 * h)
        return value, grad


@dataclasses.dataclass(frozen=True)
class Realignment:
    """Estimated motion of each volume relative to the reference.

    Attributes
    ----------
    parameters : array (n_volumes, 6)
        Translations (m) and pitch, roll, yaw (rad), the layout of
        :attr:`biosim.geometry.motion.RigidMotion.parameters`.
    center : array (3,)
        Centre of rotation, m (scanner frame).
    cost : array (n_volumes,)
        Final root-mean-square residual inside the mask, image units.
    """

    parameters: np.ndarray
    center: np.ndarray
    cost: np.ndarray


def realign(
    volumes,
    affine,
    reference: int = 0,
    mask=None,
    smoothing: float = 1.0,
    max_iterations: int = 30,
    max_points: int = 10000,
) -> Realignment:
    """Rigid motion of every volume of a 4D series relative to one of them.

    Parameters
    ----------
    volumes : array (X, Y, Z, T)
        Magnitude images.
    affine : array (4, 4)
        Voxel -> mm (the NIfTI affine).
    reference : int
        Index of the reference volume.
    mask : bool array (X, Y, Z), optional
        Voxels in the cost; default: the reference above 20 % of its 99th percentile.
    smoothing : float
        Gaussian smoothing (voxels, std) of every volume before matching.
    max_iterations : int
        Levenberg-Marquardt iterations per volume.
    max_points : int
        The cost is sampled on at most this many mask voxels (a regular sub-grid, as
        SPM's sampling separation), which bounds the time per volume.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.optimize import least_squares

    data = np.asarray(volumes, dtype=float)
    if data.ndim != 4 or min(data.shape[:3]) < 2:
        raise ParameterError("volumes", f"array of shape {data.shape}", "a 4D series (X, Y, Z, T)")
    check_all_finite(volumes=data, affine=affine)
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4):
        raise ParameterError("affine", f"array of shape {aff.shape}", "a 4 x 4 matrix")
    n_vol = data.shape[3]
    if not 0 <= reference < n_vol:
        raise ParameterError("reference", reference, f"a volume index in [0, {n_vol})")
    if int(max_points) != max_points or max_points < 10:
        raise ParameterError("max_points", max_points, "an integer >= 10")
    if smoothing < 0:
        raise ParameterError("smoothing", smoothing, "a non-negative width in voxels")
    aff_m = aff.copy()
    aff_m[:3] *= 1e-3

    def smooth(v):
        return gaussian_filter(v, smoothing) if smoothing > 0 else v

    ref = smooth(data[..., reference])
    if mask is None:
        mask = ref > 0.2 * np.percentile(ref, 99)
    mask = np.asarray(mask, bool)
    if mask.shape != data.shape[:3] or mask.sum() < 10:
        raise ParameterError(
            "mask", f"{mask.sum()} voxels", "a mask of the volume grid, >= 10 voxels"
        )
    mask = mask.copy()
    mask[:, :, [0, -1]] = False  # the first and last slices have no neighbour beyond
    shape3 = np.array(data.shape[:3])
    idx = np.argwhere(mask)
    stride = 1
    while len(idx) > max_points:
        stride += 1
        idx = np.argwhere(mask[::stride, ::stride, ::stride]) * stride
    idx = idx.astype(float)
    center = aff_m[:3, :3] @ ((np.array(data.shape[:3]) - 1) / 2) + aff_m[:3, 3]
    scale = np.r_[np.full(3, 1e-3), np.full(3, 1e-2)]  # m and rad of similar effect
    points = idx @ aff_m[:3, :3].T + aff_m[:3, 3]  # (n, 3) m
    ref_values = ref[tuple(idx.T.astype(int))]
    to_vox = np.linalg.inv(aff_m)
    params = np.zeros((n_vol, 6))
    cost = np.zeros(n_vol)
    start = np.zeros(6)
    for t in range(n_vol):
        if t == reference:
            continue
        moving = _SplineVolume(smooth(data[..., t]))
        cache = {}

        def evaluate(q, moving=moving, cache=cache):
            key = q.tobytes()
            if key not in cache:
                p = q * scale
                r = rotation_matrix(p[3:])
                rel = points - center
                moved = rel @ r.T + center + p[:3]
                vox = moved @ to_vox[:3, :3].T + to_vox[:3, 3]
                value, grad = moving.values_and_gradient(vox)
                # points carried outside the volume (through the slab's ends) see no data:
                # they leave the cost rather than match extrapolated values
                inside = np.all((vox >= 0) & (vox <= np.array(shape3) - 1), axis=1)
                value = np.where(inside, value, ref_values)
                grad = grad * inside[:, None]
                g_m = grad @ to_vox[:3, :3]  # per m
                d_rot = _rotation_derivatives(p[3:])  # (3, 3, 3)
                jac = np.empty((len(points), 6))
                jac[:, :3] = g_m
                for i in range(3):
                    jac[:, 3 + i] = np.einsum("nk,nk->n", g_m, rel @ d_rot[i].T)
                cache.clear()
                cache[key] = (value - ref_values, jac * scale)
            return cache[key]

        fit = least_squares(
            lambda q: evaluate(q)[0],
            start / scale,
            jac=lambda q: evaluate(q)[1],
            method="lm",
            max_nfev=max_iterations,
        )
        params[t] = fit.x * scale
        cost[t] = np.sqrt(np.mean(fit.fun**2))
        start = params[t]  # motion is continuous: start from the previous volume
    return Realignment(params, center, cost)
