"""B0 field maps from susceptibility maps (Fourier dipole kernel).

A susceptibility distribution chi(r) (ppm, SI volume susceptibility) in a field B0 along
the unit vector b shifts the local (Lorentz-sphere corrected) field by

``dB/B0 = IFFT[ D(k) FFT[chi] ]``,  ``D(k) = 1/3 - (k.b)^2 / |k|^2``,  ``D(0) = 0``

(Salomir, de Senneville & Moonen 2003, Concepts Magn Reson B 19:26; Marques & Bowtell
2005, Concepts Magn Reson B 25:65), to first order in chi. Arrays are padded with their
edge values (``pad`` times their size) so the periodic FFT does not wrap the field around
and a head cut by the grid (the neck) continues beyond it.

The grid axes are the frame of ``b``: voxel sizes are given per axis and ``b0_direction``
is in grid axes (z = third axis). Everything is differentiable with ``jax`` with respect to
``chi``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ..._core.units import GAMMA_BAR_PROTON
from ..._core.validation import check_all_finite, check_positive, check_range

#: Index pairs of :func:`field_shift_components` (xx, yy, zz, xy, xz, yz).
COMPONENTS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _unit(b):
    b = np.asarray(b, float)
    n = np.linalg.norm(b) if b.shape == (3,) and np.all(np.isfinite(b)) else 0.0
    if n == 0:
        raise ParameterError("b0_direction", b.tolist(), "a finite non-zero 3-vector")
    return b / n


def _voxel(voxel_size):
    v = np.broadcast_to(np.asarray(voxel_size, float), (3,)).copy()
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ParameterError("voxel_size", voxel_size, "positive voxel sizes in m")
    return v


def _wavevectors(shape, voxel_size):
    ks = np.meshgrid(
        *(np.fft.fftfreq(n, d) for n, d in zip(shape[:2], voxel_size[:2])),
        np.fft.rfftfreq(shape[2], voxel_size[2]),
        indexing="ij",
    )
    k2 = ks[0] ** 2 + ks[1] ** 2 + ks[2] ** 2
    k2[0, 0, 0] = 1.0  # D(0) is set to 0 below
    return ks, k2


def dipole_kernel(shape, voxel_size, b0_direction=(0.0, 0.0, 1.0)) -> np.ndarray:
    """The unit dipole kernel ``D(k) = 1/3 - (k.b)^2/|k|^2`` (``D(0) = 0``) on the
    ``rfftn`` frequency grid of an array of ``shape`` (3 ints) with ``voxel_size`` (m)."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ParameterError("shape", shape, "3 positive integers")
    b = _unit(b0_direction)
    ks, k2 = _wavevectors(shape, _voxel(voxel_size))
    kb = ks[0] * b[0] + ks[1] * b[1] + ks[2] * b[2]
    d = 1.0 / 3.0 - kb**2 / k2
    d[0, 0, 0] = 0.0
    return d


def _padded(chi, pad):
    """``chi`` padded by ``pad`` times its size, half before and half after each axis,
    with its edge values (the surroundings continue as at the border: air stays air, a
    neck cut by the grid continues), and the pad widths."""
    chi = jnp.asarray(chi)
    if chi.ndim != 3:
        raise ParameterError("chi_ppm", chi.shape, "a 3-D susceptibility map")
    check_all_finite(chi_ppm=chi)
    pad = float(pad)
    if not np.isfinite(pad) or pad < 0:
        raise ParameterError("pad", pad, "a non-negative fraction of the grid size")
    widths = [(w // 2, w - w // 2) for w in (int(np.ceil(pad * n)) for n in chi.shape)]
    return jnp.pad(chi, widths, mode="edge"), widths


def _convolve(padded, widths, kernel):
    out = jnp.fft.irfftn(jnp.fft.rfftn(padded) * kernel, s=padded.shape)
    return out[tuple(slice(a, n - b) for (a, b), n in zip(widths, padded.shape))]


def field_shift(chi_ppm, voxel_size, b0_direction=(0.0, 0.0, 1.0), pad: float = 1.0):
    """Relative field shift dB/B0 (ppm) of a susceptibility map (ppm).

    Parameters
    ----------
    chi_ppm : (nx, ny, nz)
        Volume susceptibility, ppm (SI).
    voxel_size : float or (3,) floats
        m.
    b0_direction : (3,)
        Direction of B0 in grid axes.
    pad : float
        Padding as a fraction of each grid dimension (1.0 doubles the grid), with the
        map's edge values. The periodic images it leaves are small for compact sources
        (a sphere's 1/r^3 field: < 0.2 %) but not for long ones (an infinite cylinder's
        1/r^2 field: 2.5 % at pad 1, 0.7 % at pad 3).

    Returns
    -------
    (nx, ny, nz) ppm, Lorentz-sphere corrected (0 inside a uniform sphere).
    """
    padded, widths = _padded(chi_ppm, pad)
    kernel = dipole_kernel(padded.shape, voxel_size, b0_direction)
    return _convolve(padded, widths, jnp.asarray(kernel))


def field_map_hz(chi_ppm, voxel_size, field_strength, b0_direction=(0.0, 0.0, 1.0), pad=1.0):
    """Off-resonance (Hz) of a susceptibility map (ppm) at ``field_strength`` (T):
    ``gamma_bar B0 dB/B0`` with gamma_bar = 42.577 MHz/T."""
    check_positive("field_strength", field_strength, "T")
    return (
        GAMMA_BAR_PROTON
        * field_strength
        * 1e-6
        * field_shift(chi_ppm, voxel_size, b0_direction, pad)
    )


def field_shift_components(chi_ppm, voxel_size, pad: float = 1.0):
    """Field-shift tensor maps for any B0 direction.

    Returns ``F`` (6, nx, ny, nz) ppm, components xx, yy, zz, xy, xz, yz of
    ``F_ij = IFFT[(delta_ij/3 - k_i k_j/|k|^2) FFT[chi]]``, so that the shift for a unit B0
    direction ``b`` (grid axes) is ``b^T F b`` (:func:`shift_for_direction`) -- exactly
    :func:`field_shift` with ``b0_direction=b``. For a rotated head (head -> scanner
    rotation R, B0 along the scanner z), ``b = R.T @ z`` in the head frame.
    """
    padded, widths = _padded(chi_ppm, pad)
    ks, k2 = _wavevectors(padded.shape, _voxel(voxel_size))
    spec = jnp.fft.rfftn(padded)
    crop = tuple(slice(a, n - b) for (a, b), n in zip(widths, padded.shape))
    out = []
    for i, j in COMPONENTS:
        kern = (1.0 / 3.0 if i == j else 0.0) - ks[i] * ks[j] / k2
        kern[0, 0, 0] = 0.0
        out.append(jnp.fft.irfftn(spec * jnp.asarray(kern), s=padded.shape)[crop])
    return jnp.stack(out)


def shift_for_direction(components, b):
    """``b^T F b`` (ppm) from :func:`field_shift_components` for a B0 direction ``b``."""
    b = _unit(b)
    f = jnp.asarray(components)
    if f.shape[0] != len(COMPONENTS):
        raise ParameterError("components", f.shape, "(6, ...) maps xx, yy, zz, xy, xz, yz")
    w = [b[i] * b[j] * (1.0 if i == j else 2.0) for i, j in COMPONENTS]
    return jnp.tensordot(jnp.asarray(w), f, axes=1)


def through_slice_dephasing(field_hz, voxel_size, echo_time, slice_axis: int = 2):
    """Signal fraction left at TE by the through-slice field gradient.

    A linear field variation ``G_f = d(field)/dz`` (Hz/m, central differences) across a
    rectangular slice profile of thickness ``dz`` dephases the voxel to
    ``|sinc(G_f dz TE)|`` (``sinc(x) = sin(pi x)/(pi x)``; Frahm, Merboldt & Haenicke 1988,
    MRM 6:474; Deichmann, Josephs, Hutton et al. 2002, NeuroImage 15:120).

    Parameters
    ----------
    field_hz : (nx, ny, nz) Hz
    voxel_size : float or (3,) floats
        m; the entry along ``slice_axis`` is the slice thickness (and the sampling step).
    echo_time : float
        s.
    slice_axis : {0, 1, 2}

    Returns
    -------
    (nx, ny, nz) in [0, 1].
    """
    f = jnp.asarray(field_hz)
    if f.ndim != 3:
        raise ParameterError("field_hz", f.shape, "a 3-D field map")
    if slice_axis not in (0, 1, 2):
        raise ParameterError("slice_axis", slice_axis, "0, 1 or 2")
    check_all_finite(field_hz=f)
    check_range("echo_time", echo_time, 0.0, 1.0, "s")
    dz = _voxel(voxel_size)[slice_axis]
    g = jnp.gradient(f, dz, axis=slice_axis)
    return jnp.abs(jnp.sinc(g * dz * echo_time))


def shim(field_hz, mask, order: int = 1, voxel_size=1.0):
    """The field left after an ideal shim: the least-squares fit over ``mask`` of the
    spherical-harmonic-like polynomials up to ``order`` (0: the frequency adjustment
    only; 1: + linear gradients; 2: + the five second-order terms) is subtracted everywhere.

    Parameters
    ----------
    field_hz : (nx, ny, nz)
    mask : (nx, ny, nz) bool
        Shim volume (e.g. the brain).
    order : {0, 1, 2}
    voxel_size : float or (3,)
        Grid spacing (only scales the fitted coefficients).
    """
    f = np.asarray(field_hz, float)
    m = np.asarray(mask, bool)
    if f.ndim != 3 or m.shape != f.shape:
        raise ParameterError("mask", m.shape, f"a boolean mask of the field's shape {f.shape}")
    if order not in (0, 1, 2):
        raise ParameterError("order", order, "0, 1 or 2")
    check_all_finite(field_hz=f)
    if m.sum() < 10:
        raise ParameterError("mask", int(m.sum()), "at least 10 voxels to shim over")
    v = _voxel(voxel_size)
    x, y, z = (
        (np.arange(n) - (n - 1) / 2) * d
        for n, d in zip(f.shape, v)  # centred coordinates keep the fit well conditioned
    )
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    terms = [np.ones_like(X)]
    if order >= 1:
        terms += [X, Y, Z]
    if order >= 2:
        terms += [X * Y, X * Z, Y * Z, X**2 - Y**2, 2 * Z**2 - X**2 - Y**2]
    a = np.stack([t[m] for t in terms], 1)
    coef, *_ = np.linalg.lstsq(a, f[m], rcond=None)
    return f - np.tensordot(coef, np.stack(terms), axes=1)
