"""The virtual EEG amplifier.

Turns scalp potentials (V) into what an amplifier records: a common
reference, input-referred white noise (V/sqrt(Hz) times sqrt(fs/2)), mains
interference at 50/60 Hz with per-channel amplitude, a clock that runs fast
or slow by ``clock_drift_ppm`` (samples are taken at t_k = k / (fs (1 + drift)))
and quantisation to the ADC resolution (``bit_depth`` bits over +-``range_v``;
values beyond the range are an error, never silently clipped).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ParameterError
from .._core.validation import check_nonnegative, check_positive


@dataclasses.dataclass(frozen=True)
class EEGAmplifier:
    """Amplifier settings.

    Parameters
    ----------
    sample_rate : float
        Hz.
    noise_density : float
        Input-referred noise, V/sqrt(Hz).
    line_noise : float
        Mains amplitude, V (0 for none).
    line_frequency : float
        50 or 60 Hz.
    clock_drift_ppm : float
        Amplifier clock error, parts per million.
    bit_depth : int
        ADC bits.
    range_v : float
        Full-scale range, +- V.
    seed : int
    """

    sample_rate: float = 500.0
    noise_density: float = 50e-9
    line_noise: float = 0.0
    line_frequency: float = 50.0
    clock_drift_ppm: float = 0.0
    bit_depth: int = 24
    range_v: float = 0.4
    seed: int = 0

    def __post_init__(self):
        check_positive("sample_rate", self.sample_rate, "Hz")
        check_nonnegative("noise_density", self.noise_density, "V/sqrt(Hz)")
        check_nonnegative("line_noise", self.line_noise, "V")
        if self.line_frequency not in (50.0, 60.0):
            raise ParameterError("line_frequency", self.line_frequency, "50 or 60 Hz")
        if not 8 <= int(self.bit_depth) <= 32:
            raise ParameterError("bit_depth", self.bit_depth, "an integer from 8 to 32")
        check_positive("range_v", self.range_v, "V")

    def sample_times(self, duration):
        """Device sample times (s, true time) over ``duration`` s."""
        n = int(np.floor(duration * self.sample_rate))
        return np.arange(n) / (self.sample_rate * (1 + self.clock_drift_ppm * 1e-6))

    def record(self, potentials, names):
        """Amplify ``potentials`` (n_channels, n_times), already sampled at
        :meth:`sample_times`, and return the recorded data (V)."""
        rng = np.random.default_rng(self.seed)
        v = np.asarray(potentials, float).copy()
        n_ch, n_t = v.shape
        t = np.arange(n_t) / self.sample_rate
        v += rng.normal(0.0, self.noise_density * np.sqrt(self.sample_rate / 2), v.shape)
        if self.line_noise > 0:
            amp = self.line_noise * rng.uniform(0.5, 1.5, n_ch)[:, None]
            v += amp * np.sin(2 * np.pi * self.line_frequency * t + rng.uniform(0, 2 * np.pi))
        lsb = 2 * self.range_v / 2 ** int(self.bit_depth)
        over = np.abs(v) > self.range_v
        if over.any():
            ch = int(np.argmax(over.any(axis=1)))
            raise ParameterError(
                "range_v",
                self.range_v,
                f"a range above the signal of channel {names[ch]} "
                f"({np.abs(v[ch]).max():.3g} V); the amplifier would saturate",
            )
        return np.round(v / lsb) * lsb
