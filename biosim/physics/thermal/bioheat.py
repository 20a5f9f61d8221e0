"""Pennes bioheat equation on a regular grid, implicit in time, differentiable (JAX).

Pennes (1948, J Appl Physiol 1:93)::

    rho c dT/dt = div(k grad T) + w_b rho_b c_b (T_a - T) + Q

In the temperature rise ``theta = T - T_a`` the equation is linear; it is discretised with
conservative finite volumes (face conductivities the harmonic mean of the neighbours';
``theta = 0``, i.e. body temperature, on the grid's faces) and stepped with the theta
scheme (Crank-Nicolson by default; ``theta_implicit=1`` backward Euler), whose
symmetric-positive-definite system is solved by Jacobi-preconditioned conjugate gradients
(:func:`jax.scipy.sparse.linalg.cg`, differentiated implicitly).  Unconditionally stable:
the step is set by accuracy, not by a CFL limit.

For a continuous wave of pressure amplitude ``p`` the heat source is ``Q = alpha p^2 /
(rho c)`` (plane-wave intensity ``p^2 / (2 rho c)``, absorbed at ``2 alpha`` with alpha in
Np/m): :func:`acoustic_heat_source`.  Sonication schedules (:class:`SonicationSchedule`)
scale Q by the fraction of each step the transducer is on.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError, ShapeError
from ..._core.pytree import pytree_dataclass, static_field
from ..._core.validation import check_all_finite, check_nonnegative, check_positive
from .tissue import BLOOD, tissue_property_maps

__all__ = [
    "ThermalMaps",
    "SonicationSchedule",
    "BioheatResult",
    "acoustic_heat_source",
    "thermal_maps_from_labels",
    "solve_bioheat",
    "bioheat_gaussian",
]

#: Arterial (body) temperature, degC.
BODY_TEMPERATURE = 37.0


@pytree_dataclass
class ThermalMaps:
    """Thermal properties on a regular grid (2D or 3D), SI units.

    Attributes
    ----------
    density : array
        kg/m^3.
    specific_heat : array
        J/(kg K).
    conductivity : array
        W/(m K).
    perfusion_rate : array
        Pennes w_b, 1/s.
    spacing : float (static)
        m.
    blood_heat_capacity : float
        rho_b c_b of blood, J/(m^3 K) (IT'IS blood by default).
    """

    density: object
    specific_heat: object
    conductivity: object
    perfusion_rate: object
    spacing: float = static_field(default=1e-3)
    blood_heat_capacity: float = BLOOD.density * BLOOD.specific_heat

    def __post_init__(self):
        shape = np.shape(self.density)
        if len(shape) not in (2, 3):
            raise ShapeError("density", shape, "a 2D or 3D grid")
        for name in ("specific_heat", "conductivity", "perfusion_rate"):
            if np.shape(getattr(self, name)) != shape:
                raise ShapeError(name, np.shape(getattr(self, name)), f"{shape} like density")

    @property
    def shape(self) -> tuple:
        return tuple(np.shape(self.density))

    def check(self) -> None:
        """ParameterError for a non-positive density, heat capacity or conductivity, a
        negative perfusion or a non-finite value (concrete arrays only)."""
        check_positive("spacing", self.spacing, "m")
        check_positive("density", self.density, "kg/m^3")
        check_positive("specific_heat", self.specific_heat, "J/(kg K)")
        check_positive("conductivity", self.conductivity, "W/(m K)")
        check_nonnegative("perfusion_rate", self.perfusion_rate, "1/s")
        check_positive("blood_heat_capacity", self.blood_heat_capacity, "J/(m^3 K)")


def thermal_maps_from_labels(labels, label_names, spacing, table=None) -> ThermalMaps:
    """:class:`ThermalMaps` of a label volume from IT'IS tissue values
    (:func:`~biosim.physics.thermal.tissue.tissue_property_maps`)."""
    rho, c, k, w = tissue_property_maps(labels, label_names, table)
    maps = ThermalMaps(rho, c, k, w, float(spacing))
    maps.check()
    return maps


def acoustic_heat_source(pressure_amplitude, attenuation, density, sound_speed):
    """Absorbed power density ``Q = alpha p^2 / (rho c)`` of a continuous wave, W/m^3.

    Parameters
    ----------
    pressure_amplitude : array
        Peak pressure amplitude p, Pa.
    attenuation : array
        Absorption coefficient alpha, Np/m.
    density, sound_speed : arrays
        kg/m^3, m/s.
    """
    check_all_finite(pressure_amplitude=pressure_amplitude, attenuation=attenuation)
    check_nonnegative("attenuation", attenuation, "Np/m")
    check_positive("density", density, "kg/m^3")
    check_positive("sound_speed", sound_speed, "m/s")
    p = jnp.asarray(pressure_amplitude)
    return jnp.asarray(attenuation) * p * p / (jnp.asarray(density) * jnp.asarray(sound_speed))


@dataclasses.dataclass(frozen=True)
class SonicationSchedule:
    """When the transducer emits: pulses grouped in bursts within a sonication window.

    Emission starts at ``onset`` and stops at ``onset + duration``.  Inside, pulses of
    ``pulse_duration`` repeat at ``pulse_repetition_frequency``; with ``burst_duration``
    set, the pulse train itself is on for ``burst_duration`` every ``burst_interval``
    (e.g. the 0.3 s of 1 kHz pulses every 2 s... of a TUS protocol).
    ``pulse_duration=None`` is continuous emission.

    Parameters
    ----------
    duration : float
        Sonication window, s.
    onset : float
        s.
    pulse_duration : float or None
        s.
    pulse_repetition_frequency : float
        Hz (needed with ``pulse_duration``).
    burst_duration, burst_interval : float or None
        s.
    """

    duration: float
    onset: float = 0.0
    pulse_duration: float | None = None
    pulse_repetition_frequency: float | None = None
    burst_duration: float | None = None
    burst_interval: float | None = None

    def __post_init__(self):
        check_positive("duration", self.duration, "s")
        check_nonnegative("onset", self.onset, "s")
        if self.pulse_duration is not None:
            check_positive("pulse_duration", self.pulse_duration, "s")
            if self.pulse_repetition_frequency is None:
                raise ParameterError(
                    "pulse_repetition_frequency", None, "a PRF (Hz) with pulse_duration"
                )
            check_positive("pulse_repetition_frequency", self.pulse_repetition_frequency, "Hz")
            if self.pulse_duration * self.pulse_repetition_frequency > 1 + 1e-12:
                raise ParameterError(
                    "pulse_duration",
                    self.pulse_duration,
                    f"at most the pulse period 1/PRF = {1 / self.pulse_repetition_frequency:g} s",
                )
        if (self.burst_duration is None) != (self.burst_interval is None):
            raise ParameterError(
                "burst_interval", self.burst_interval, "given together with burst_duration"
            )
        if self.burst_duration is not None:
            check_positive("burst_duration", self.burst_duration, "s")
            check_positive("burst_interval", self.burst_interval, "s")
            if self.burst_duration > self.burst_interval:
                raise ParameterError(
                    "burst_duration", self.burst_duration, "at most burst_interval"
                )

    @property
    def duty_cycle(self) -> float:
        """Fraction of the sonication window spent emitting (long-window limit)."""
        d = 1.0
        if self.pulse_duration is not None:
            d *= self.pulse_duration * self.pulse_repetition_frequency
        if self.burst_duration is not None:
            d *= self.burst_duration / self.burst_interval
        return d

    def _pulses_on(self, u):
        if self.pulse_duration is None:
            return u
        period = 1.0 / self.pulse_repetition_frequency
        k = np.floor(u * self.pulse_repetition_frequency + 1e-9)  # whole periods (round-off safe)
        return k * self.pulse_duration + np.clip(u - k * period, 0.0, self.pulse_duration)

    def on_time(self, t):
        """Cumulative emission time up to ``t`` (s), exact."""
        v = np.clip(np.asarray(t, float) - self.onset, 0.0, self.duration)
        if self.burst_duration is None:
            return self._pulses_on(v)
        period = self.burst_interval
        k = np.floor(v / period + 1e-9)
        return k * self._pulses_on(self.burst_duration) + self._pulses_on(
            np.clip(v - k * period, 0.0, self.burst_duration)
        )

    def on_fraction(self, times):
        """Fraction of each interval ``[times[i], times[i+1]]`` spent emitting."""
        t = np.asarray(times, float)
        if t.ndim != 1 or len(t) < 2 or np.any(np.diff(t) <= 0):
            raise ParameterError("times", t.shape, "an increasing 1D time axis")
        return np.diff(self.on_time(t)) / np.diff(t)


@pytree_dataclass
class BioheatResult:
    """Output of :func:`solve_bioheat`.

    Attributes
    ----------
    times : (n_frames,) s
        Times of the saved frames.
    delta_t : (n_frames, *grid) K
        Temperature rise above ``T_a`` at those times.
    max_delta_t : grid, K
        Peak rise over all steps.
    cem43 : grid, min
        Thermal dose (cumulative equivalent minutes at 43 degC) over all steps.
    """

    times: object
    delta_t: object
    max_delta_t: object
    cem43: object


def _divergence_flux(theta, k, h):
    """div(k grad theta) with harmonic face conductivities and theta = 0 outside."""
    out = jnp.zeros_like(theta)
    for ax in range(theta.ndim):
        pad = [(0, 0)] * theta.ndim
        pad[ax] = (1, 1)
        tp = jnp.pad(theta, pad)  # zero ghosts (Dirichlet, body temperature)
        kp = jnp.pad(k, pad, mode="edge")
        lo = [slice(None)] * theta.ndim
        hi = [slice(None)] * theta.ndim
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        kf = 2.0 * kp[tuple(lo)] * kp[tuple(hi)] / (kp[tuple(lo)] + kp[tuple(hi)])
        flux = kf * (tp[tuple(hi)] - tp[tuple(lo)])  # n+1 faces along ax
        lo2 = [slice(None)] * theta.ndim
        hi2 = [slice(None)] * theta.ndim
        lo2[ax], hi2[ax] = slice(0, -1), slice(1, None)
        out = out + flux[tuple(hi2)] - flux[tuple(lo2)]
    return out / (h * h)


def _face_sum(k):
    """Sum of the face conductivities around each voxel (the stencil's diagonal x h^2)."""
    s = jnp.zeros_like(k)
    for ax in range(k.ndim):
        pad = [(0, 0)] * k.ndim
        pad[ax] = (1, 1)
        kp = jnp.pad(k, pad, mode="edge")
        lo = [slice(None)] * k.ndim
        hi = [slice(None)] * k.ndim
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        kf = 2.0 * kp[tuple(lo)] * kp[tuple(hi)] / (kp[tuple(lo)] + kp[tuple(hi)])
        s = s + kf[tuple(lo)] + kf[tuple(hi)]
    return s


@functools.partial(
    jax.jit, static_argnames=("tol", "n_frames", "steps_per_frame", "theta_implicit", "maxiter")
)
def _run(
    maps, q, fractions, theta0, dt, t_a, tol, n_frames, steps_per_frame, theta_implicit, maxiter
):
    h = maps.spacing
    cap = maps.density * maps.specific_heat
    perf = maps.perfusion_rate * maps.blood_heat_capacity
    k = maps.conductivity
    a_impl = theta_implicit * dt
    a_expl = (1.0 - theta_implicit) * dt
    diag = cap + a_impl * (perf + _face_sum(k) / (h * h))

    def op(x):  # (perfusion - conduction) x
        return perf * x - _divergence_flux(x, k, h)

    def lhs(x):
        return cap * x + a_impl * op(x)

    def precond(x):
        return x / diag

    def step(carry, frac):
        th, tmax, dose = carry
        rhs = cap * th - a_expl * op(th) + dt * frac * q
        new, _ = jax.scipy.sparse.linalg.cg(lhs, rhs, x0=th, tol=tol, maxiter=maxiter, M=precond)
        temp = t_a + new
        r = jnp.where(temp >= 43.0, 0.5, 0.25)
        dose = dose + (dt / 60.0) * r ** (43.0 - temp)
        return (new, jnp.maximum(tmax, new), dose), None

    def frame(carry, fr):
        carry, _ = jax.lax.scan(step, carry, fr)
        return carry, carry[0]

    init = (theta0, theta0, jnp.zeros_like(theta0))
    (_, tmax, dose), frames = jax.lax.scan(
        frame, init, fractions.reshape(n_frames, steps_per_frame)
    )
    return frames, tmax, dose


def solve_bioheat(
    maps: ThermalMaps,
    heat_source,
    duration: float,
    dt: float,
    schedule=None,
    frame_interval: float | None = None,
    initial_rise=None,
    arterial_temperature: float = BODY_TEMPERATURE,
    theta_implicit: float = 0.5,
    tol: float = 1e-6,
    maxiter: int = 200,
) -> BioheatResult:
    """Integrate Pennes' bioheat equation for ``duration`` seconds.

    Parameters
    ----------
    maps : ThermalMaps
    heat_source : array like the grid
        Q while the transducer emits, W/m^3 (:func:`acoustic_heat_source`).
    duration, dt : float
        Simulated time and time step, s (``duration`` a multiple of ``dt``).
    schedule : SonicationSchedule or sequence of them, optional
        Q is scaled by the fraction of each step spent emitting (summed over disjoint
        schedules, e.g. one per sonication block); None: always on.
    frame_interval : float, optional
        Interval of the saved temperature frames, s (a multiple of ``dt``); default: one
        frame at the end.
    initial_rise : array, optional
        Temperature rise above ``arterial_temperature`` at t = 0, K (default 0).
    arterial_temperature : float
        T_a, degC (also the temperature on the grid's faces).
    theta_implicit : float
        0.5 Crank-Nicolson (second order), 1 backward Euler (first order, monotone).
    tol, maxiter
        Relative residual and iteration cap of the conjugate-gradient solve per step.

    Returns
    -------
    BioheatResult
        Frames at ``frame_interval, 2 frame_interval, ...`` (s), the peak rise and the
        CEM43 dose (rectangle rule over the steps, Sapareto & Dewey 1984).
    """
    maps.check()
    shape = maps.shape
    check_positive("duration", duration, "s")
    check_positive("dt", dt, "s")
    if not 0.5 <= theta_implicit <= 1.0:
        raise ParameterError("theta_implicit", theta_implicit, "a value in [0.5, 1]")
    check_positive("tol", tol)
    n_steps = int(round(duration / dt))
    if n_steps < 1 or abs(n_steps * dt - duration) > 1e-9 * duration:
        raise ParameterError("duration", duration, f"a positive multiple of dt = {dt:g} s")
    fi = duration if frame_interval is None else frame_interval
    spf = int(round(fi / dt))
    if spf < 1 or abs(spf * dt - fi) > 1e-9 * fi or n_steps % spf:
        raise ParameterError(
            "frame_interval", frame_interval, f"a multiple of dt dividing duration {duration:g} s"
        )
    if np.shape(heat_source) != shape:
        raise ShapeError("heat_source", np.shape(heat_source), f"{shape} like the maps")
    check_all_finite(heat_source=heat_source, arterial_temperature=arterial_temperature)
    times = np.arange(n_steps + 1) * dt
    if schedule is None:
        frac = np.ones(n_steps)
    else:
        schedules = (schedule,) if isinstance(schedule, SonicationSchedule) else tuple(schedule)
        frac = sum((s.on_fraction(times) for s in schedules), np.zeros(n_steps))
        if np.any(frac > 1 + 1e-9):
            raise ParameterError("schedule", "overlapping sonications", "disjoint schedules")
    q = jnp.asarray(heat_source)
    dtype = jnp.result_type(q, maps.density)
    theta0 = jnp.zeros(shape, dtype) if initial_rise is None else jnp.asarray(initial_rise, dtype)
    if theta0.shape != shape:
        raise ShapeError("initial_rise", theta0.shape, f"{shape} like the maps")
    frames, tmax, dose = _run(
        maps,
        q,
        jnp.asarray(frac, dtype),
        theta0,
        dt,
        arterial_temperature,
        float(tol),
        n_steps // spf,
        spf,
        float(theta_implicit),
        int(maxiter),
    )
    return BioheatResult(np.arange(1, n_steps // spf + 1) * spf * dt, frames, tmax, dose)


def bioheat_gaussian(r2, t, amplitude, width, diffusivity, perfusion_decay, ndim):
    """Exact rise of a Gaussian initial condition in an infinite homogeneous medium.

    ``theta(r, 0) = A exp(-r^2 / (2 s^2))`` evolves under ``d theta/dt = D lap theta - m
    theta`` (m = w_b rho_b c_b / (rho c)) as::

        theta(r, t) = A (s^2 / (s^2 + 2 D t))^(d/2) exp(-r^2 / (2 (s^2 + 2 D t))) exp(-m t)

    Parameters
    ----------
    r2 : array
        Squared distance from the centre, m^2.
    t : float
        s.
    amplitude, width : float
        A (K) and s (m).
    diffusivity : float
        D = k / (rho c), m^2/s.
    perfusion_decay : float
        m, 1/s.
    ndim : int
        d.
    """
    s2 = width**2 + 2.0 * diffusivity * t
    return (
        amplitude
        * (width**2 / s2) ** (ndim / 2.0)
        * np.exp(-np.asarray(r2) / (2.0 * s2))
        * np.exp(-perfusion_decay * t)
    )
