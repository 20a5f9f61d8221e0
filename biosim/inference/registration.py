"""Rigid registration of volumes: motion parameters from an fMRI series.

Each volume ``I_t`` is aligned to a reference ``I_0`` by the rigid transform
``T`` (the six parameters of :mod:`biosim.geometry.motion`: translations in m,
pitch/roll/yaw in rad, about the grid's centre) minimising the sum of squared
differences ``sum_x (I_t(T x) - I_0(x))^2`` over a mask, by Gauss-Newton
(Levenberg-Marquardt) with the Jacobian from JAX through trilinear
interpolation -- the least-squares criterion of SPM's realignment (Friston et
al. 1995, Human Brain Mapping 3:165).  If the head moved by ``M_t`` (head ->
scanner) and the reference was taken at ``M_0``, ``T = M_t M_0^{-1}``: the
estimate is the motion relative to the reference volume.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from .._core.errors import ParameterError
from .._core.validation import check_all_finite


def _rotation(angles):
    cx, cy, cz = jnp.cos(angles)
    sx, sy, sz = jnp.sin(angles)
    rx = jnp.array([[1.0, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = jnp.array([[cy, 0, sy], [0, 1.0, 0], [-sy, 0, cy]])
    rz = jnp.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
    return rx @ ry @ rz


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


def _residual_fn(reference, affine_m, mask_idx, center):
    """Jitted ``residual(p, moving)`` and its Jacobian in ``p`` (one compilation per series)."""
    inv = jnp.asarray(np.linalg.inv(affine_m))
    points = jnp.asarray((affine_m[:3, :3] @ mask_idx.T).T + affine_m[:3, 3])  # (n, 3) m
    ref_values = jnp.asarray(reference[tuple(mask_idx.T.astype(int))])
    center = jnp.asarray(center)

    def residual(p, moving):
        r = _rotation(p[3:])
        moved = (points - center) @ r.T + center + p[:3]
        vox = moved @ inv[:3, :3].T + inv[:3, 3]
        values = map_coordinates(moving, list(vox.T), order=1, mode="nearest")
        return values - ref_values

    return jax.jit(residual), jax.jit(jax.jacfwd(residual))


def realign(
    volumes,
    affine,
    reference: int = 0,
    mask=None,
    smoothing: float = 1.0,
    max_iterations: int = 30,
    max_points: int = 20000,
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
    idx = np.argwhere(mask)
    stride = 1
    while len(idx) > max_points:
        stride += 1
        idx = np.argwhere(mask[::stride, ::stride, ::stride]) * stride
    idx = idx.astype(float)
    center = aff_m[:3, :3] @ ((np.array(data.shape[:3]) - 1) / 2) + aff_m[:3, 3]
    scale = np.r_[np.full(3, 1e-3), np.full(3, 1e-2)]  # m and rad of similar effect
    params = np.zeros((n_vol, 6))
    cost = np.zeros(n_vol)
    start = np.zeros(6)
    res, jac = _residual_fn(ref, aff_m, idx, center)
    for t in range(n_vol):
        if t == reference:
            continue
        moving = jnp.asarray(smooth(data[..., t]))
        fit = least_squares(
            lambda q: np.asarray(res(jnp.asarray(q * scale), moving)),
            start / scale,
            jac=lambda q: np.asarray(jac(jnp.asarray(q * scale), moving)) * scale,
            method="lm",
            max_nfev=max_iterations,
        )
        params[t] = fit.x * scale
        cost[t] = np.sqrt(np.mean(fit.fun**2))
        start = params[t]  # motion is continuous: start from the previous volume
    return Realignment(params, center, cost)
