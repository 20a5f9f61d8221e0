"""Time-domain k-space pseudospectral solver of linear acoustics.

First-order system on staggered grids (Tabei et al. 2002; Treeby et al. 2012,
k-Wave):

    du/dt = -grad(p) / rho0
    drho_d/dt = -rho0 du_d/dx_d + S_M / ndim            (split density, one per axis)
    p = c0^2 [rho + tau L1(rho0 div u) - eta L2 rho]

with the power-law absorption and dispersion operators of Treeby & Cox (2010),
L1 = (-nabla^2)^(y/2 - 1), L2 = (-nabla^2)^((y - 1)/2), tau = -2 alpha0 c0^(y-1),
eta = 2 alpha0 c0^y tan(pi y / 2).  Spatial derivatives are spectral with the
k-space correction kappa = sinc(c_ref |k| dt / 2) (c_ref the largest sound
speed), so the scheme is exact in time for homogeneous lossless media.  A
split-field perfectly matched layer with a quartic profile absorbs outgoing
waves.

Continuous-wave sources are mass sources S_M = 2 p_s(t) W(x) / c0, where W is
the band-limited surface density of the transducer (1/m, see
:mod:`.sources`), so that a flat source of pressure amplitude p_s launches
waves of amplitude p_s (the k-Wave "additive" pressure source).  The amplitude
and phase at steady state are a single-frequency DFT over the last whole
periods: p(x, t) = Re(P(x) exp(i omega t)).

Everything is differentiable with respect to the medium maps and the source
(amplitudes and phases); the time loop is a scan over periods whose bodies are
rematerialised (``jax.checkpoint``), so reverse mode stores one field state per
period rather than per step.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from biosim._core.errors import ConvergenceError, ParameterError
from biosim._core.pytree import pytree_dataclass, static_field
from biosim._core.validation import is_concrete

from .medium import Grid, Medium, db_to_neper

__all__ = ["CWField", "CWSettings", "cw_settings", "simulate_cw", "source_term_grid"]


@pytree_dataclass
class CWField:
    """Continuous-wave pressure field at steady state.

    Attributes
    ----------
    amplitude : Array
        Pressure amplitude |P|, Pa, shape ``grid.shape``.
    phase : Array
        Phase of P, rad, with p(x, t) = amplitude cos(omega t + phase).
    grid : Grid
        The grid the field lives on (static).
    frequency : float
        Drive frequency, Hz (static).
    """

    amplitude: Any
    phase: Any
    grid: Grid = static_field()
    frequency: float = static_field()

    @property
    def complex(self) -> Any:
        """Complex pressure P = amplitude exp(i phase), Pa."""
        return self.amplitude * jnp.exp(1j * self.phase)


@pytree_dataclass
class CWSettings:
    """Time stepping of a continuous-wave run (all static).

    Attributes
    ----------
    dt : float
        Time step, s (an integer fraction of the period).
    steps_per_period : int
        Time steps per acoustic period.
    n_settle_periods : int
        Periods simulated before the DFT window (including the ramp).
    n_dft_periods : int
        Periods in the DFT window.
    n_ramp_periods : int
        Periods of the raised-cosine ramp of the source amplitude.
    c_ref : float
        Reference sound speed of the k-space correction, m/s.
    cfl : float
        Courant number c_ref dt / min(spacing).
    ppw : float
        Points per wavelength at the lowest sound speed.
    dtype : str
        "float64" or "float32".
    """

    dt: float = static_field()
    steps_per_period: int = static_field()
    n_settle_periods: int = static_field()
    n_dft_periods: int = static_field()
    n_ramp_periods: int = static_field()
    c_ref: float = static_field()
    cfl: float = static_field()
    ppw: float = static_field()
    dtype: str = static_field(default="float64")

    @property
    def n_steps(self) -> int:
        """Total number of time steps."""
        return (self.n_settle_periods + self.n_dft_periods) * self.steps_per_period


def _amplification(c, rho, a_np, y, c_ref, dt, k):
    """Largest |eigenvalue| of the one-step map of the scheme for homogeneous
    (c, rho, alpha0 in Np/((rad/s)^y m)) at wavenumbers ``k`` (1D modal analysis)."""
    kap = np.sinc(c_ref * k * dt / (2 * np.pi))
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = np.where(k > 0, k ** (y - 2.0), 0.0)
        l2 = np.where(k > 0, k ** (y - 1.0), 0.0)
    tau = -2.0 * a_np * c ** (y - 1.0)
    eta = 2.0 * a_np * c**y * math.tan(math.pi * y / 2.0)
    dp = 1j * k * kap  # derivative symbols (the staggering shifts cancel in the product)
    dm = 1j * k * kap
    a = c**2 * (1.0 - eta * l2)
    b = c**2 * tau * l1 * rho * dm
    # state (rho^n, u^{n-1/2}) -> (rho^{n+1}, u^{n+1/2})
    m11 = -(dt / rho) * dp * a
    m12 = 1.0 - (dt / rho) * dp * b
    m = np.empty(k.shape + (2, 2), dtype=complex)
    m[..., 1, 0] = m11
    m[..., 1, 1] = m12
    m[..., 0, 0] = 1.0 - dt * rho * dm * m11
    m[..., 0, 1] = -dt * rho * dm * m12
    return float(np.max(np.abs(np.linalg.eigvals(m))))


def _check_stable(medium: Medium, grid: Grid, dt: float, c_ref: float, cfl: float) -> None:
    """Modal analysis of the one-step map at the extreme media values; raise if any
    wavenumber up to the grid's largest is amplified."""
    c = np.asarray(medium.sound_speed, dtype=float)
    c_min, c_max = float(c.min()), float(c.max())
    if c_ref < c_max:
        raise ParameterError("c_ref", c_ref, f">= the largest sound speed {c_max:g} m/s")
    k = np.linspace(0.0, math.pi * math.sqrt(grid.ndim) / min(grid.spacing), 513)
    a_np = db_to_neper(np.asarray(medium.alpha0, dtype=float), medium.alpha_power)
    rho = np.asarray(medium.density, dtype=float)
    worst = 0.0
    for cc in {c_min, c_max}:
        for rr in {float(rho.min()), float(rho.max())}:
            for aa in {0.0, float(np.max(a_np))}:
                worst = max(worst, _amplification(cc, rr, aa, medium.alpha_power, c_ref, dt, k))
    if worst > 1.0 + 1e-9:
        raise ParameterError(
            "cfl",
            cfl,
            f"a smaller Courant number: dt = {dt:.3g} s amplifies some wavenumbers by "
            f"{worst:.6f} per step (unstable with this attenuation)",
        )


def cw_settings(
    medium: Medium,
    grid: Grid,
    frequency: float,
    *,
    cfl: float = 0.3,
    min_ppw: float = 3.0,
    n_dft_periods: int = 3,
    n_ramp_periods: int = 3,
    settle_time: float | None = None,
    c_ref: float | None = None,
    dtype: str = "float64",
) -> CWSettings:
    """Choose and check the time stepping of a continuous-wave run.

    Parameters
    ----------
    medium : Medium
        Concrete (not traced) medium.
    grid : Grid
        Computational grid.
    frequency : float
        Drive frequency, Hz.
    cfl : float
        Target Courant number c_max dt / dx (the step is shortened so that a
        period holds a whole number of steps).
    min_ppw : float
        Smallest accepted number of grid points per wavelength at the lowest
        sound speed; coarser grids are refused.
    n_dft_periods, n_ramp_periods : int
        Periods in the DFT window and in the source's raised-cosine ramp.
    settle_time : float, optional
        Time simulated before the DFT window, s; default: the ramp plus 1.5
        times the transit time of the grid diagonal at the lowest sound speed.
    c_ref : float, optional
        Reference sound speed of the k-space correction (default: the largest).
    dtype : {"float64", "float32"}
        Working precision of the time loop.

    Raises
    ------
    ParameterError
        Under-resolved grids (fewer than ``min_ppw`` points per wavelength),
        Courant numbers outside (0, 1], or time steps for which the scheme's
        one-step map amplifies some wavenumber (unstable).
    """
    if not is_concrete(medium):
        raise ParameterError(
            "medium", "traced", "concrete values: call cw_settings outside jit/grad and pass it"
        )
    medium.check_shape(grid)
    if not (frequency > 0 and math.isfinite(frequency)):
        raise ParameterError("frequency", frequency, "a positive frequency in Hz")
    if not (0.0 < cfl <= 1.0):
        raise ParameterError("cfl", cfl, "a Courant number in (0, 1]")
    if dtype not in ("float64", "float32"):
        raise ParameterError("dtype", dtype, "'float64' or 'float32'")
    for name, n in (("n_dft_periods", n_dft_periods), ("n_ramp_periods", n_ramp_periods)):
        if int(n) != n or n < (1 if name == "n_dft_periods" else 0):
            raise ParameterError(name, n, "a whole number of periods (>= 1 for the DFT)")
    c = np.asarray(medium.sound_speed, dtype=float)
    c_min, c_max = float(c.min()), float(c.max())
    dx_min, dx_max = min(grid.spacing), max(grid.spacing)
    ppw = c_min / (frequency * dx_max)
    if ppw < min_ppw:
        raise ParameterError(
            "grid.spacing",
            grid.spacing,
            f"at most {c_min / (frequency * min_ppw) * 1e3:.4g} mm for {min_ppw:g} points per "
            f"wavelength at {frequency:g} Hz and c = {c_min:g} m/s (got {ppw:.3g} points)",
        )
    c_ref = c_max if c_ref is None else float(c_ref)
    if c_ref < c_max:
        raise ParameterError("c_ref", c_ref, f">= the largest sound speed {c_max:g} m/s")
    period = 1.0 / frequency
    spp = int(math.ceil(period / (cfl * dx_min / c_max)))
    dt = period / spp
    _check_stable(medium, grid, dt, c_ref, cfl)
    if settle_time is None:
        diag = math.sqrt(sum((n * d) ** 2 for n, d in zip(grid.shape, grid.spacing)))
        settle_time = n_ramp_periods * period + 1.5 * diag / c_min
    if not (settle_time >= 0):
        raise ParameterError("settle_time", settle_time, "a time >= 0 s")
    n_settle = max(int(math.ceil(settle_time / period)), int(n_ramp_periods))
    return CWSettings(
        dt=dt,
        steps_per_period=spp,
        n_settle_periods=n_settle,
        n_dft_periods=int(n_dft_periods),
        n_ramp_periods=int(n_ramp_periods),
        c_ref=c_ref,
        cfl=c_max * dt / dx_min,
        ppw=ppw,
        dtype=dtype,
    )


def _pml_profile(n, pml, alpha, c_ref, dx, dt, staggered):
    """exp(-sigma dt / 2) of the quartic PML along one axis (k-Wave's profile)."""
    x = np.arange(n, dtype=float) + (0.5 if staggered else 0.0)
    sigma = np.zeros(n)
    if pml > 0:
        left = np.clip((pml - x) / pml, 0.0, None)
        right = np.clip((x - (n - 1 - pml)) / pml, 0.0, None)
        sigma = alpha * (c_ref / dx) * (left**4 + right**4)
    return np.exp(-sigma * dt / 2.0)


def _operators(grid: Grid, settings: CWSettings):
    """Static spectral operators (NumPy, rfft layout over all axes).

    The staggered derivative symbols i k exp(+-i k dx / 2) kappa are returned as
    per-axis 1D factors (broadcastable) and the k-space correction kappa as one
    real array, so that no full-grid complex operator is stored.
    """
    nd = grid.ndim
    ks = []
    for ax, (n, d) in enumerate(zip(grid.shape, grid.spacing)):
        if ax == nd - 1:
            k = 2 * np.pi * np.fft.rfftfreq(n, d)
        else:
            k = 2 * np.pi * np.fft.fftfreq(n, d)
        ks.append(k)
    kgrid = np.meshgrid(*ks, indexing="ij")
    kmag = np.sqrt(sum(k**2 for k in kgrid))
    kappa = np.sinc(settings.c_ref * kmag * settings.dt / (2 * np.pi))
    src_kappa = np.cos(settings.c_ref * kmag * settings.dt / 2.0)
    ddx_pos, ddx_neg = [], []
    for ax, d in enumerate(grid.spacing):
        k = ks[ax]  # the Nyquist component is kept: on staggered grids it is representable
        shape = [1] * nd
        shape[ax] = len(k)
        kk = k.reshape(shape)
        ddx_pos.append(1j * kk * np.exp(1j * kk * d / 2))
        ddx_neg.append(1j * kk * np.exp(-1j * kk * d / 2))
    pml, pml_sg = [], []
    for ax, (n, d, p) in enumerate(zip(grid.shape, grid.spacing, grid.pml_size)):
        shape = [1] * nd
        shape[ax] = n
        args = (n, p, grid.pml_alpha, settings.c_ref, d, settings.dt)
        pml.append(_pml_profile(*args, staggered=False).reshape(shape))
        pml_sg.append(_pml_profile(*args, staggered=True).reshape(shape))
    return kmag, kappa, ddx_pos, ddx_neg, src_kappa, pml, pml_sg


def source_term_grid(src_map: Any, medium: Medium, grid: Grid, settings: CWSettings) -> Any:
    """Complex mass-source map (kg/(m^3 s) per unit of the drive) from a surface source map.

    ``src_map`` is the complex band-limited surface density times the element
    pressure amplitudes (Pa/m); the result is 2 src_map / c0, filtered by the
    k-space source correction cos(c_ref |k| dt / 2).
    """
    kmag = _operators(grid, settings)[0]
    corr = jnp.asarray(np.cos(settings.c_ref * kmag * settings.dt / 2.0))
    s = 2.0 * src_map / medium.sound_speed
    axes = tuple(range(grid.ndim))
    re = jnp.fft.irfftn(corr * jnp.fft.rfftn(jnp.real(s), axes=axes), grid.shape, axes=axes)
    im = jnp.fft.irfftn(corr * jnp.fft.rfftn(jnp.imag(s), axes=axes), grid.shape, axes=axes)
    return re + 1j * im


def _run(
    medium: Medium,
    src_map: Any,
    grid: Grid,
    settings: CWSettings,
    frequency: float,
    absorbing: bool = True,
):
    """Time loop; returns the complex steady-state pressure P (Pa).

    Real FFTs (rfftn) throughout: one forward transform of p, ``ndim`` inverse
    transforms for grad p, ``ndim`` forward and ``ndim`` inverse for the split
    divergence (3 ndim + 1 per step); absorption adds two pairs for a general
    power y and none for y = 2 (L1 is then the identity on zero-mean fields and
    eta = 0).  The settling periods carry the field state only; the DFT
    accumulators exist only in the last ``n_dft_periods`` periods.
    """
    nd = grid.ndim
    axes = tuple(range(nd))
    rdt = jnp.float64 if settings.dtype == "float64" else jnp.float32
    cdt = jnp.complex128 if settings.dtype == "float64" else jnp.complex64
    kmag, kappa, ddx_pos, ddx_neg, _, pml, pml_sg = _operators(grid, settings)
    kappa = jnp.asarray(kappa, rdt)
    ddx_pos = [jnp.asarray(o, cdt) for o in ddx_pos]
    ddx_neg = [jnp.asarray(o, cdt) for o in ddx_neg]
    pml = [jnp.asarray(o, rdt) for o in pml]
    pml_sg = [jnp.asarray(o, rdt) for o in pml_sg]
    dt = settings.dt
    c = jnp.broadcast_to(medium.sound_speed, grid.shape).astype(rdt)
    rho0 = jnp.broadcast_to(medium.density, grid.shape).astype(rdt)
    c2 = c**2
    rho_sg = [0.5 * (rho0 + jnp.roll(rho0, -1, axis=ax)) for ax in range(nd)]
    dt_over_rho_sg = [(dt / r).astype(rdt) for r in rho_sg]
    dt_rho0 = (dt * rho0).astype(rdt)
    y = medium.alpha_power
    quadratic = float(y) == 2.0
    if absorbing:
        a_np = db_to_neper(jnp.broadcast_to(medium.alpha0, grid.shape), y)
        # The loss term is time-staggered (div u at n + 1/2 enters p at n + 1): with the
        # k-space propagator, a plane wave at the drive frequency (x = omega dt / 2) then
        # decays at sinc^2(x) cos(x) / cos(theta) times the model's rate, with
        # sin(theta) = (c_ref / c) sin(x) (modal analysis of the one-step map); dividing
        # tau by that factor makes the CW absorption exact at the drive frequency.
        half = math.pi * frequency * dt
        s_theta = jnp.clip(settings.c_ref / c * math.sin(half), 0.0, 0.999)
        lag = (math.sin(half) / half) ** 2 * math.cos(half) / jnp.sqrt(1.0 - s_theta**2)
        tau = (-2.0 * a_np * c ** (y - 1.0) / lag).astype(rdt)
        c2_tau = (c2 * tau).astype(rdt)
        if not quadratic:
            eta = (2.0 * a_np * c**y * math.tan(math.pi * y / 2.0)).astype(rdt)
            c2_eta = (c2 * eta).astype(rdt)
            with np.errstate(divide="ignore", invalid="ignore"):
                nab1 = jnp.asarray(np.where(kmag > 0, kmag ** (y - 2.0), 0.0), rdt)
                nab2 = jnp.asarray(np.where(kmag > 0, kmag ** (y - 1.0), 0.0), rdt)
    s = source_term_grid(src_map, medium, grid, settings) * (dt / nd)
    s_re, s_im = jnp.real(s).astype(rdt), jnp.imag(s).astype(rdt)
    omega = 2.0 * math.pi * frequency
    spp = settings.steps_per_period
    t_ramp = settings.n_ramp_periods / frequency

    def fft(a):
        return jnp.fft.rfftn(a, axes=axes)

    def ifft(a):
        return jnp.fft.irfftn(a, grid.shape, axes=axes)

    n_settle = settings.n_settle_periods
    block = max(1, int(math.ceil(math.sqrt(n_settle))))
    n_blocks = -(-n_settle // block)
    n_pad = n_blocks * block - n_settle  # extra settling periods so that blocks are whole

    def advance(state, n):
        """One time step n -> n + 1 of (u, rho_d, p)."""
        us, rhos, p = state
        t = (n - n_pad * spp) * dt  # time of the drive; the padded periods run before t = 0
        p_k = kappa * fft(p)
        us = tuple(
            pml_sg[d] * (pml_sg[d] * us[d] - dt_over_rho_sg[d] * ifft(ddx_pos[d] * p_k))
            for d in range(nd)
        )
        dus = tuple(ifft((kappa * ddx_neg[d]) * fft(us[d])) for d in range(nd))
        env = jnp.clip(t / t_ramp, 0.0, 1.0) if t_ramp > 0 else (t >= 0).astype(rdt)
        env = 0.5 * (1.0 - jnp.cos(jnp.pi * env))
        ph = omega * t
        a_re = (env * jnp.cos(ph)).astype(rdt)
        a_im = (env * jnp.sin(ph)).astype(rdt)
        rhos = tuple(
            pml[d] * (pml[d] * rhos[d] - dt_rho0 * dus[d]) + (a_re * s_re - a_im * s_im)
            for d in range(nd)
        )
        rho_tot = sum(rhos)
        if not absorbing:
            p = c2 * rho_tot
        elif quadratic:  # L1 = identity on the non-constant part, eta = 0
            q = rho0 * sum(dus)
            p = c2 * rho_tot + c2_tau * (q - jnp.mean(q))
        else:
            p = (
                c2 * rho_tot
                + c2_tau * ifft(nab1 * fft(rho0 * sum(dus)))
                - c2_eta * ifft(nab2 * fft(rho_tot))
            )
        return (us, rhos, p.astype(rdt)), ph

    def settle_step(state, n):
        return advance(state, n)[0], None

    def dft_step(carry, n):
        # single-frequency DFT over the last whole periods: P = (2/N) sum p exp(-i omega t)
        state, acc_re, acc_im = carry
        state, ph = advance(state, n)
        p = state[2]
        acc_re = acc_re + jnp.cos(ph).astype(rdt) * p
        acc_im = acc_im - jnp.sin(ph).astype(rdt) * p
        return (state, acc_re, acc_im), None

    @jax.checkpoint
    def settle_period(state, m):
        return jax.lax.scan(settle_step, state, m * spp + jnp.arange(1, spp + 1))[0], None

    @jax.checkpoint
    def settle_block(state, b):
        return jax.lax.scan(settle_period, state, b * block + jnp.arange(block))[0], None

    @jax.checkpoint
    def dft_period(carry, m):
        return jax.lax.scan(dft_step, carry, m * spp + jnp.arange(1, spp + 1))[0], None

    zero = jnp.zeros(grid.shape, rdt)
    state = (tuple(zero for _ in range(nd)), tuple(zero for _ in range(nd)), zero)
    state = jax.lax.scan(settle_block, state, jnp.arange(n_blocks))[0]
    first = n_blocks * block  # steps first * spp + 1 .. + n_dft * spp enter the DFT
    carry = (state, zero, zero)
    carry = jax.lax.scan(dft_period, carry, first + jnp.arange(settings.n_dft_periods))[0]
    _, acc_re, acc_im = carry
    return (acc_re + 1j * acc_im) * (2.0 / (spp * settings.n_dft_periods))


@partial(jax.jit, static_argnames=("grid", "settings", "frequency", "absorbing"))
def _run_jit(medium, src_map, grid, settings, frequency, absorbing):
    return _run(medium, src_map, grid, settings, frequency, absorbing)


def simulate_cw(
    medium: Medium,
    source: Any,
    grid: Grid,
    frequency: float,
    settings: CWSettings | None = None,
    **settings_kwargs: Any,
) -> CWField:
    """Steady-state continuous-wave pressure field of a source in a medium.

    Parameters
    ----------
    medium : Medium
        Sound speed, density and attenuation (scalars or maps of ``grid.shape``).
    source : Transducer or array_like
        A :class:`~biosim.physics.acoustics.sources.Transducer` (its band-limited
        map is built on ``grid``) or a complex surface-source map of ``grid.shape``
        (Pa/m: pressure amplitude times the surface density, see
        :func:`~biosim.physics.acoustics.sources.source_map`).
    grid : Grid
        Computational grid (PML inside).
    frequency : float
        Drive frequency, Hz (static).
    settings : CWSettings, optional
        Time stepping; default ``cw_settings(medium, grid, frequency, **settings_kwargs)``.
        Pass it explicitly when differentiating with respect to the medium.

    Returns
    -------
    CWField
        Amplitude (Pa) and phase (rad) with p(x, t) = amplitude cos(omega t + phase).

    Notes
    -----
    Differentiable (``jax.grad``) with respect to the medium maps and the
    source's amplitudes and phases; the time loop is checkpointed per period.
    """
    from .sources import Transducer, source_map  # noqa: PLC0415 (same package)

    if settings is None:
        settings = cw_settings(medium, grid, frequency, **settings_kwargs)
    elif settings_kwargs:
        raise ParameterError("settings_kwargs", sorted(settings_kwargs), "none when settings given")
    if is_concrete(medium):
        medium.check_shape(grid)
        # settings made for another medium: the stability check must hold for this one
        _check_stable(medium, grid, settings.dt, settings.c_ref, settings.cfl)
    src = source_map(source, grid) if isinstance(source, Transducer) else jnp.asarray(source)
    if tuple(src.shape) != grid.shape:
        raise ParameterError("source", tuple(src.shape), f"a source map of shape {grid.shape}")
    absorbing = not (is_concrete(medium.alpha0) and float(np.max(np.asarray(medium.alpha0))) == 0.0)
    p = _run_jit(medium, src, grid, settings, float(frequency), absorbing)
    if is_concrete(p) and not bool(jnp.all(jnp.isfinite(p))):
        raise ConvergenceError("the acoustic field became non-finite (unstable set-up)")
    return CWField(amplitude=jnp.abs(p), phase=jnp.angle(p), grid=grid, frequency=float(frequency))
