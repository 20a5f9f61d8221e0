"""Image formation: tissue maps -> Cartesian EPI k-space -> reconstructed image.

Single-shot 2D EPI: phase-encode line ``m`` (0..Ny-1) is acquired at
``t_m = TE + (m - Ny/2) * echo_spacing`` and readout sample ``n`` at
``t_m + (n - Nx/2) * dwell``.  The k-space signal is the exact discrete sum
(no FFT shortcut, because the sampling time varies over k-space)::

    s(kx, ky) = sum_r rho(r) exp(-t(k) [R2*(r) + 2 pi i df(r)]) exp(-2 pi i k . r)

so T2* decay along the echo train blurs the image in the phase-encode
direction and off-resonance ``df`` shifts it there by
``df * Ny * echo_spacing`` pixels (EPI distortion).  For a spin echo the
reversible part R2' is refocused at TE: the decay is
``exp(-t R2 - |t - TE| R2')``.  Complex Gaussian thermal noise is added in
k-space; the inverse FFT gives a complex image whose magnitude is Rician.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ..._core.validation import check_all_finite, check_nonnegative, check_positive


def _axis(n, fov):
    """Pixel centres (m) and k-space samples (1/m) of an n-point axis, DC at n//2."""
    x = (np.arange(n) - n // 2) * fov / n
    k = (np.arange(n) - n // 2) / fov
    return x, k


def sampling_times(matrix, echo_time, echo_spacing):
    """Acquisition time (s) of each k-space sample, shape (Nx, Ny)."""
    nx, ny = matrix
    dwell = echo_spacing / nx
    tm = echo_time + (np.arange(ny) - ny // 2) * echo_spacing
    tn = (np.arange(nx) - nx // 2) * dwell
    return tn[:, None] + tm[None, :]


@partial(jax.jit, static_argnames=("spin_echo",))
def _kspace(rho, r2, r2prime, df, times, xs, ys, kx, ky, echo_time, spin_echo):
    # phase of each (k, r) pair: separable encoding, non-separable decay
    enc_x = jnp.exp(-2j * jnp.pi * jnp.outer(kx, xs))  # (Nkx, Nx)
    enc_y = jnp.exp(-2j * jnp.pi * jnp.outer(ky, ys))  # (Nky, Ny)
    t = times[:, :, None, None]  # (Nkx, Nky, 1, 1)
    if spin_echo:
        decay = jnp.exp(-t * r2 - jnp.abs(t - echo_time) * r2prime - 2j * jnp.pi * df * t)
    else:
        decay = jnp.exp(-t * (r2 + r2prime) - 2j * jnp.pi * df * t)
    weighted = rho * decay  # (Nkx, Nky, Nx, Ny)
    return jnp.einsum("abxy,ax,by->ab", weighted, enc_x, enc_y)


def epi_kspace(
    proton_density,
    r2,
    fov,
    echo_time,
    echo_spacing,
    off_resonance=0.0,
    r2prime=0.0,
    spin_echo=False,
):
    """Simulated EPI k-space of one slice.

    Parameters
    ----------
    proton_density : array (Nx, Ny)
        Transverse magnetisation at the start of the readout (e.g. the
        steady-state signal of the sequence), arbitrary units.
    r2 : array (Nx, Ny)
        Irreversible relaxation rate, 1/s (R2* for GRE when r2prime = 0).
    fov : (float, float)
        Field of view, m.
    echo_time, echo_spacing : float
        s.
    off_resonance : array (Nx, Ny) or float
        Hz.
    r2prime : array or float
        Reversible rate R2', 1/s (refocused at TE in spin echo).
    spin_echo : bool

    Returns
    -------
    complex array (Nx, Ny), k-space with DC at (Nx//2, Ny//2).
    """
    check_all_finite(
        proton_density=proton_density,
        r2prime=r2prime,
        off_resonance=off_resonance,
        fov=fov,
        echo_time=echo_time,
    )
    rho = jnp.asarray(proton_density)
    if rho.ndim != 2:
        raise ParameterError("proton_density", f"array of shape {rho.shape}", "a 2D slice (Nx, Ny)")
    nx, ny = rho.shape
    check_positive("echo_spacing", echo_spacing, "s")
    check_nonnegative("r2", r2, "1/s")
    if echo_time < (ny // 2) * echo_spacing:
        raise ParameterError(
            "echo_time",
            echo_time,
            f">= {ny // 2} x echo_spacing = {(ny // 2) * echo_spacing:g} s so the "
            "centre of k-space can be reached",
        )
    xs, kx = _axis(nx, fov[0])
    ys, ky = _axis(ny, fov[1])
    times = sampling_times((nx, ny), echo_time, echo_spacing)
    bc = lambda a: jnp.broadcast_to(jnp.asarray(a, float), rho.shape)  # noqa: E731
    return _kspace(
        rho,
        bc(r2),
        bc(r2prime),
        bc(off_resonance),
        jnp.asarray(times),
        jnp.asarray(xs),
        jnp.asarray(ys),
        jnp.asarray(kx),
        jnp.asarray(ky),
        echo_time,
        bool(spin_echo),
    )


def add_thermal_noise(kspace, noise_std, key):
    """Add circular complex Gaussian noise of standard deviation ``noise_std``
    per real/imaginary channel in the image domain (scaled for the FFT)."""
    check_all_finite(noise_std=noise_std)
    n = kspace.shape[0] * kspace.shape[1]
    kr, ki = jax.random.split(key)
    scale = noise_std * jnp.sqrt(n)
    return kspace + scale * (
        jax.random.normal(kr, kspace.shape) + 1j * jax.random.normal(ki, kspace.shape)
    )


def reconstruct(kspace):
    """Inverse FFT of centred k-space to the complex image (same centring)."""
    return jnp.fft.fftshift(
        jnp.fft.ifft2(jnp.fft.ifftshift(kspace, axes=(0, 1)), axes=(0, 1)), axes=(0, 1)
    )


def slice_timing(tr, n_slices, order="ascending"):
    """Acquisition time (s) of each slice within the TR.

    ``order``: "ascending", "descending" or "interleaved" (odd slices 0, 2,
    4... first, then 1, 3, 5...).
    """
    check_positive("tr", tr, "s")
    step = tr / n_slices
    if order == "ascending":
        rank = np.arange(n_slices)
    elif order == "descending":
        rank = np.arange(n_slices)[::-1]
    elif order == "interleaved":
        seq = list(range(0, n_slices, 2)) + list(range(1, n_slices, 2))
        rank = np.argsort(seq)
    else:
        raise ParameterError("order", order, "'ascending', 'descending' or 'interleaved'")
    return rank * step
