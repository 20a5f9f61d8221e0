"""Virtual MEG system: sensor noise and mains interference on top of the field.

The sensors (SQUID magnetometers, planar or axial gradiometers, OPMs) and
their white-noise floors come from :mod:`biosim.physics.electromag.sensors`;
this module samples the field and adds what the electronics and the room add.
Typical floors: SQUID magnetometers ~3 fT/sqrt(Hz), planar gradiometers
~3 fT/cm/sqrt(Hz), OPMs ~15 fT/sqrt(Hz) (Boto et al. 2018, Nature 555:657).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ParameterError
from .._core.validation import check_nonnegative, check_positive


@dataclasses.dataclass(frozen=True)
class MEGSystem:
    """Acquisition settings of a MEG system.

    Parameters
    ----------
    sample_rate : float
        Hz.
    noise_scale : float
        Multiplies every channel's white-noise floor (1: the sensor's nominal
        floor, 0: noise-free).
    noise_floor : float or None
        Overrides the floor of magnetometers/OPMs, T/sqrt(Hz) (gradiometers
        keep theirs, scaled by ``noise_scale``).
    line_noise : float
        Mains field amplitude at the magnetometers, T (gradiometers see it
        divided by 1 m: a uniform field has no gradient, so they get 1 %).
    line_frequency : float
        50 or 60 Hz.
    seed : int
    """

    sample_rate: float = 1000.0
    noise_scale: float = 1.0
    noise_floor: float | None = None
    line_noise: float = 0.0
    line_frequency: float = 50.0
    seed: int = 0

    def __post_init__(self):
        check_positive("sample_rate", self.sample_rate, "Hz")
        check_nonnegative("noise_scale", self.noise_scale, "")
        if self.noise_floor is not None:
            check_positive("noise_floor", self.noise_floor, "T/sqrt(Hz)")
        check_nonnegative("line_noise", self.line_noise, "T")
        if self.line_frequency not in (50.0, 60.0):
            raise ParameterError("line_frequency", self.line_frequency, "50 or 60 Hz")

    def sample_times(self, duration):
        """Sample times (s) over ``duration`` s."""
        return np.arange(int(np.floor(duration * self.sample_rate))) / self.sample_rate

    def channel_noise(self, sensors):
        """White-noise standard deviation per channel and sample (T or T/m)."""
        floor = np.asarray(sensors.noise_floor(), float)
        if self.noise_floor is not None:
            floor = np.where([k != "grad" for k in sensors.kinds], self.noise_floor, floor)
        return self.noise_scale * floor * np.sqrt(self.sample_rate / 2)

    #: Samples per block of the noise generator (see :meth:`record`).
    NOISE_BLOCK = 1024

    def record(self, field, sensors, start=0, out=None):
        """Recorded data (n_channels, n_times): ``field`` (T, T/m) plus noise.

        ``start`` is the index of the first sample in the session, so a session
        can be recorded chunk by chunk with the same result as in one call: the
        noise of sample k comes from a generator keyed by (``seed``, k //
        :attr:`NOISE_BLOCK`), the mains from its own generator.  ``out``: a float64
        (n_channels, n_times) buffer to write into (may be ``field`` itself).
        """
        field = np.asarray(field, float)
        if field.ndim != 2 or field.shape[0] != sensors.n_channels:
            raise ParameterError(
                "field", f"array of shape {field.shape}", f"shape ({sensors.n_channels}, n_times)"
            )
        start = int(start)
        if start < 0:
            raise ParameterError("start", start, "a non-negative sample index")
        n_ch, n_t = field.shape
        sigma = self.channel_noise(sensors)[:, None]
        if out is None:
            out = field.copy()
        elif out is not field:
            out[...] = field
        nb = self.NOISE_BLOCK
        for b in range(start // nb, (start + n_t - 1) // nb + 1 if n_t else 0):
            block = np.random.default_rng([self.seed, 0, b]).standard_normal((n_ch, nb))
            lo, hi = max(start, b * nb), min(start + n_t, (b + 1) * nb)
            out[:, lo - start : hi - start] += sigma * block[:, lo - b * nb : hi - b * nb]
        if self.line_noise > 0:
            mains = np.random.default_rng([self.seed, 1])
            t = np.arange(start, start + n_t) / self.sample_rate
            gain = np.where([k == "grad" for k in sensors.kinds], 0.01, 1.0)
            phase = mains.uniform(0, 2 * np.pi)
            out += (self.line_noise * gain * mains.uniform(0.5, 1.5, sensors.n_channels))[
                :, None
            ] * np.sin(2 * np.pi * self.line_frequency * t + phase)
        return out
