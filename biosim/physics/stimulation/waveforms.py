"""TMS pulse waveforms: coil current I(t) and its rate of change dI/dt(t).

The induced field is linear in dI/dt: ``E(r, t) = E_unit(r) * dI/dt(t)`` where ``E_unit``
is the field for dI/dt = 1 A/s.  Waveforms are normalised so that the peak of |dI/dt| is
``peak_didt`` (A/s), the number stimulators report (e.g. 1.4e8 A/s at 100 % output for a
figure-8 coil; SimNIBS' default is 1e6 A/s = 1 A/us).

* biphasic: one cycle of a damped-free LC discharge, ``I = I0 sin(2 pi t / T)`` for
  0 <= t <= T;
* monophasic: a quarter sine rise over ``rise_time`` followed by an exponential decay
  with time constant ``decay_time`` (the critically damped tail of monophasic
  stimulators).
"""

from __future__ import annotations

import jax.numpy as jnp

from ..._core.pytree import pytree_dataclass, static_field
from ..._core.validation import check_positive, check_range


@pytree_dataclass
class Pulse:
    """A TMS pulse shape.

    Parameters
    ----------
    kind : str
        ``"biphasic"`` or ``"monophasic"`` (static).
    duration : float
        Biphasic period T, or monophasic rise time, s.
    decay_time : float
        Monophasic decay time constant, s (unused for biphasic).
    peak_didt : float
        Peak |dI/dt|, A/s.
    """

    duration: float
    decay_time: float
    peak_didt: float
    kind: str = static_field(default="biphasic")

    def current(self, t):
        """Coil current I(t), A."""
        t = jnp.asarray(t, float)
        if self.kind == "biphasic":
            i0 = self.peak_didt * self.duration / (2 * jnp.pi)
            on = (t >= 0) & (t <= self.duration)
            return jnp.where(on, i0 * jnp.sin(2 * jnp.pi * t / self.duration), 0.0)
        tr, tau = self.duration, self.decay_time
        i0 = self.peak_didt * 2 * tr / jnp.pi  # peak of dI/dt = i0 * pi / (2 tr) at t = 0
        rise = i0 * jnp.sin(0.5 * jnp.pi * jnp.clip(t, 0.0, tr) / tr)
        tail = i0 * jnp.exp(-(t - tr) / tau)
        return jnp.where(t < 0, 0.0, jnp.where(t <= tr, rise, tail))

    def didt(self, t):
        """dI/dt(t), A/s."""
        t = jnp.asarray(t, float)
        if self.kind == "biphasic":
            on = (t >= 0) & (t <= self.duration)
            return jnp.where(on, self.peak_didt * jnp.cos(2 * jnp.pi * t / self.duration), 0.0)
        tr, tau = self.duration, self.decay_time
        i0 = self.peak_didt * 2 * tr / jnp.pi
        rise = self.peak_didt * jnp.cos(0.5 * jnp.pi * jnp.clip(t, 0.0, tr) / tr)
        tail = -(i0 / tau) * jnp.exp(-(t - tr) / tau)
        return jnp.where(t < 0, 0.0, jnp.where(t <= tr, rise, tail))


def biphasic_pulse(period=300e-6, peak_didt=1e6) -> Pulse:
    """One-cycle sinusoidal (biphasic) pulse of the given period (s) and peak dI/dt (A/s)."""
    check_positive("period", period, "s")
    check_positive("peak_didt", peak_didt, "A/s")
    return Pulse(float(period), 0.0, float(peak_didt), "biphasic")


def monophasic_pulse(rise_time=70e-6, decay_time=200e-6, peak_didt=1e6) -> Pulse:
    """Monophasic pulse: quarter-sine rise (s) then exponential decay (s); peak dI/dt
    (A/s) at t = 0."""
    check_positive("rise_time", rise_time, "s")
    check_positive("decay_time", decay_time, "s")
    check_positive("peak_didt", peak_didt, "A/s")
    return Pulse(float(rise_time), float(decay_time), float(peak_didt), "monophasic")


def stimulator_didt(output_fraction, didt_max):
    """dI/dt (A/s) at a fraction (0..1] of the stimulator's maximum ``didt_max`` (A/s)."""
    check_range("output_fraction", output_fraction, 0.0, 1.0)
    check_positive("output_fraction", output_fraction)
    check_positive("didt_max", didt_max, "A/s")
    return output_fraction * didt_max
