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

    def record(self, potentials, names, start=0, out=None):
        """Amplify ``potentials`` (n_channels, n_times), already sampled at
        :meth:`sample_times`, and return the recorded data (V).

        ``start`` is the index of the first sample in the session, so a session
        can be recorded chunk by chunk: the noise of sample k is drawn from a
        generator keyed by (``seed``, k // :attr:`NOISE_BLOCK`) and the mains by
        its own generator, so the recording is identical in one call or in pieces.
        ``out``: a float64 (n_channels, n_times) buffer to write into (may be
        ``potentials`` itself).
        """
        p = np.asarray(potentials, dtype=float)
        if p.ndim != 2:
            raise ParameterError("potentials", f"array of shape {p.shape}", "(n_channels, n_times)")
        n_ch, n_t = p.shape
        start = int(start)
        if start < 0:
            raise ParameterError("start", start, "a non-negative sample index")
        v = np.empty((n_ch, n_t)) if out is None else out
        if v is not p:
            v[...] = p
        self.add_noise(v, start)
        if self.line_noise > 0:
            mains = np.random.default_rng([self.seed, 1])
            amp = self.line_noise * mains.uniform(0.5, 1.5, n_ch)[:, None]
            t = np.arange(start, start + n_t) / self.sample_rate
            v += amp * np.sin(2 * np.pi * self.line_frequency * t + mains.uniform(0, 2 * np.pi))
        if n_t and (v.max() > self.range_v or v.min() < -self.range_v):
            ch = int(np.argmax(np.abs(v).max(axis=1) > self.range_v))
            raise ParameterError(
                "range_v",
                self.range_v,
                f"a range above the signal of channel {names[ch]} "
                f"({np.abs(v[ch]).max():.3g} V); the amplifier would saturate",
            )
        lsb = 2 * self.range_v / 2 ** int(self.bit_depth)
        v /= lsb
        np.round(v, out=v)
        v *= lsb
        return v

    #: Samples per block of the noise generator (see :meth:`record`).
    NOISE_BLOCK = 1024

    def add_noise(self, v, start):
        """Add the input-referred white noise of samples ``start`` ... to ``v``
        (n_channels, n_times) in place (V): block b of :attr:`NOISE_BLOCK` samples
        comes from generator (seed, 0, b) (standard normals drawn in float32,
        Ziggurat, scaled in float64)."""
        if self.noise_density == 0:
            return v
        n_ch, n_t = v.shape
        sigma = self.noise_density * np.sqrt(self.sample_rate / 2)
        nb = self.NOISE_BLOCK
        for b in range(start // nb, (start + n_t - 1) // nb + 1 if n_t else 0):
            rng = np.random.default_rng([self.seed, 0, b])
            block = rng.standard_normal((n_ch, nb), dtype=np.float32)
            lo, hi = max(start, b * nb), min(start + n_t, (b + 1) * nb)
            part = block[:, lo - b * nb : hi - b * nb]
            part *= np.float32(sigma)
            v[:, lo - start : hi - start] += part
        return v

    def noise(self, n_channels, start, n_times):
        """The input-referred white noise (n_channels, n_times) of samples ``start`` ... (V)."""
        return self.add_noise(np.zeros((n_channels, n_times)), start)
