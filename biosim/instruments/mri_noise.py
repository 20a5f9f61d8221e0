"""Realistic fMRI noise: a generator of fractional fluctuations, and its fit to data.

The model follows the components users know from neuRosim (Welvaert et al. 2011,
J Stat Softw 44(10)) and BrainIAK fmrisim (Ellis et al. 2020, PLoS Comput Biol
16:e1007549): thermal (system) noise, temporally autocorrelated (AR) fluctuations
that are spatially smooth, low-frequency drift, and physiological noise locked to
the cardiac and respiratory cycles.  Physiological terms use the RETROICOR phase
model (Glover, Li & Ress 2000, MRM 44:162): a low-order Fourier series in the
cardiac phase (linear between R-peaks) and the respiratory phase, evaluated at the
time each slice is acquired, so they alias at the TR exactly as in a real scan.

:class:`FluctuationModel` is the scanner's hook: ``model(volume_indices,
slice_times)`` gives the fractional gain minus one of every head-frame voxel for
those volumes, chunk by chunk, with the AR state carried, and equal to one call
over all volumes.  Thermal noise is not part of it: the scanner adds complex
Gaussian noise of std :meth:`NoiseParameters.thermal_std` per real channel.

:func:`fit_noise` estimates :class:`NoiseParameters` from a 4D series (an array or
a NIfTI file), fmrisim-style, so a simulation can be given the noise of a user's
own data.

How a scanner uses it (times in s from the run's start, on the clock of the
physiological recordings)::

    model = FluctuationModel(params, shape, voxel_size, n_volumes * tr, tissue,
                             cardiac_peaks=peaks, respiration=breath, seed=seed)
    for chunk in chunks:                       # consecutive volume numbers
        gain = 1 + model(chunk, slice_times[chunk])   # (n_chunk, X, Y, Z)
        ...                                    # proton density * gain, image formation,
                                               # complex noise of params.thermal_std(S)
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
from scipy import fft as sfft
from scipy.signal import lfilter

from .._core.errors import ParameterError
from .._core.validation import check_finite, check_positive, check_range

_SIGMA_PER_FWHM = 1.0 / np.sqrt(8.0 * np.log(2.0))
DRIFT_CUTOFF = 1.0 / 128.0  # Hz: SPM's default high-pass period (128 s)
CARDIAC_HARMONICS = (1.0, 0.5)  # relative amplitudes of the 1st and 2nd harmonic
RESPIRATORY_HARMONICS = (1.0, 0.3)


@dataclasses.dataclass(frozen=True)
class NoiseParameters:
    """Noise of an fMRI series (fractions of the mean signal; SI units).

    Parameters
    ----------
    sfnr : float
        Signal-to-fluctuation-noise ratio of brain-tissue voxels: mean signal over
        the std of the non-thermal fluctuations (AR + cardiac + respiratory) after
        the drift is removed, e.g. 70 at 3 T.  Thermal noise is excluded (it is
        ``snr``), so the measured temporal SNR of a voxel is
        ``(sfnr**-2 + snr**-2) ** -0.5``.
    snr : float
        Thermal noise: mean brain signal over the std of the complex Gaussian noise
        per real channel (real or imaginary part) of the image.  A magnitude image
        shows that std where the signal is high, and a Rayleigh distribution
        (std ``sigma * sqrt(2 - pi/2)``) where there is no signal.
    ar : tuple of float
        AR coefficients of the fluctuations at the TR, e.g. ``(0.5,)``; ``()`` for
        white fluctuations.  The process must be stationary.
    fwhm : float
        Spatial smoothness of the fluctuations, m: FWHM of the Gaussian kernel that
        turns white noise into them (the convention of Forman et al. 1995 and
        AFNI 3dFWHMx).  0 for spatially white fluctuations.
    drift : float
        Std over the run of the low-frequency drift, fraction of the mean.  The
        drift is a random combination of the discrete cosine basis below
        1/128 Hz (SPM's high-pass convention), the same in every voxel.
    cardiac : float
        RMS fractional amplitude of the cardiac term in brain tissue (CSF is
        ``csf_gain`` times higher, see :class:`FluctuationModel`).
    respiratory : float
        RMS fractional amplitude of the respiratory term in brain tissue.  Only
        the signal-intensity effect is modelled here; the respiratory B0 shift is
        :func:`respiratory_field_shift`, for the image formation.
    """

    sfnr: float = 70.0
    snr: float = 100.0
    ar: tuple[float, ...] = (0.5,)
    fwhm: float = 0.005
    drift: float = 0.01
    cardiac: float = 0.0
    respiratory: float = 0.0

    def __post_init__(self):
        check_range("sfnr", self.sfnr, 2.0, np.inf)
        check_range("snr", self.snr, 1.0, np.inf)
        check_range("fwhm", self.fwhm, 0.0, 0.1, "m")
        check_range("drift", self.drift, 0.0, 0.5)
        check_range("cardiac", self.cardiac, 0.0, 0.5)
        check_range("respiratory", self.respiratory, 0.0, 0.5)
        ar = tuple(float(a) for a in np.atleast_1d(np.asarray(self.ar, float)))
        check_finite("ar", ar)
        object.__setattr__(self, "ar", ar)
        if ar and not _is_stationary(ar):
            raise ParameterError("ar", ar, "coefficients of a stationary AR process")
        if self.physio_variance() >= self.sfnr**-2:
            raise ParameterError(
                "cardiac, respiratory",
                (self.cardiac, self.respiratory),
                f"cardiac**2 + respiratory**2 below 1/sfnr**2 = {self.sfnr**-2:.3g}",
            )

    def physio_variance(self) -> float:
        """Fractional variance of the physiological terms in brain tissue."""
        return float(self.cardiac**2 + self.respiratory**2)

    def ar_std(self) -> float:
        """Fractional std of the AR component (total fluctuation minus physiology)."""
        return float(np.sqrt(self.sfnr**-2 - self.physio_variance()))

    def thermal_std(self, mean_signal: float) -> float:
        """Thermal noise std per real channel for a brain of mean ``mean_signal``."""
        return float(mean_signal) / self.snr


@dataclasses.dataclass(frozen=True)
class NoiseTissue:
    """Where physiological noise acts: tissue fractions (0..1) per voxel.

    Parameters
    ----------
    brain : array (X, Y, Z)
        Brain tissue (grey + white matter) fraction.
    csf : array (X, Y, Z)
        Cerebrospinal fluid fraction (pulsation near ventricles, cisterns and
        large vessels is strongest; Dagli et al. 1999, NeuroImage 9:407).
    """

    brain: np.ndarray
    csf: np.ndarray

    def __post_init__(self):
        for name in ("brain", "csf"):
            arr = np.asarray(getattr(self, name), float)
            check_range(name, arr, 0.0, 1.0)
            object.__setattr__(self, name, arr)
        if self.brain.shape != self.csf.shape or self.brain.ndim != 3:
            raise ParameterError(
                "csf", f"shape {self.csf.shape}", f"a 3D map of shape {self.brain.shape}"
            )


@dataclasses.dataclass(frozen=True)
class RespiratoryTrace:
    """A breathing trace: phase and depth sampled on a fine time grid.

    Parameters
    ----------
    times : array (n,)
        Sample times, s, increasing.
    phase : array (n,)
        Unwrapped respiratory phase, rad (0 mod 2 pi at the start of inspiration).
    amplitude : array (n,)
        Breath depth relative to its mean (mean 1, positive).
    """

    times: np.ndarray
    phase: np.ndarray
    amplitude: np.ndarray

    def belt(self) -> np.ndarray:
        """The belt signal (relative chest expansion) at ``times``."""
        return -self.amplitude * np.cos(self.phase)


def respiratory_trace(
    duration, rate=0.25, seed=0, rate_variability=0.1, depth_variability=0.2, sample_rate=25.0
) -> RespiratoryTrace:
    """A breathing trace with a slowly varying rate and depth.

    Parameters
    ----------
    duration : float
        s.
    rate : float
        Mean breathing rate, Hz (0.2-0.3 Hz at rest).
    rate_variability, depth_variability : float
        Relative std of the rate and depth, which wander with a correlation time
        of about 20 s.
    sample_rate : float
        Hz.
    """
    check_positive("duration", duration, "s")
    check_range("rate", rate, 0.02, 2.0, "Hz")
    check_range("rate_variability", rate_variability, 0.0, 0.5)
    check_range("depth_variability", depth_variability, 0.0, 0.5)
    check_range("sample_rate", sample_rate, 4.0 * rate, 1e4, "Hz")
    rng = np.random.default_rng([int(seed), 7])
    dt = 1.0 / sample_rate
    times = np.arange(int(np.ceil(duration / dt)) + 1) * dt
    wander = [_slow_noise(rng, times.size, dt, 20.0) for _ in range(2)]
    inst_rate = rate * np.exp(rate_variability * wander[0])
    phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.concatenate(
        [[0.0], np.cumsum(0.5 * (inst_rate[1:] + inst_rate[:-1])) * dt]
    )
    depth = np.exp(depth_variability * wander[1])
    return RespiratoryTrace(times, phase, depth / depth.mean())


def _slow_noise(rng, n, dt, tau):
    """Unit-variance Gaussian noise with an exponential correlation time ``tau`` (AR(1))."""
    a = np.exp(-dt / tau)
    e = rng.standard_normal(n) * np.sqrt(1 - a * a)
    out = np.empty(n)
    out[0] = rng.standard_normal()
    for i in range(1, n):
        out[i] = a * out[i - 1] + e[i]
    return out


def respiratory_phase(trace, times) -> np.ndarray:
    """Respiratory phase (rad, in [0, 2 pi)) at ``times`` (s).

    ``trace`` is a :class:`RespiratoryTrace` or ``(rate Hz, phase rad)`` for a
    steady rhythm ``2 pi rate t + phase``.
    """
    times = np.asarray(times, float)
    check_finite("times", times)
    if isinstance(trace, RespiratoryTrace):
        if times.size and (times.min() < trace.times[0] or times.max() > trace.times[-1]):
            raise ParameterError(
                "times",
                f"[{times.min():g}, {times.max():g}] s",
                f"within the respiratory trace [{trace.times[0]:g}, {trace.times[-1]:g}] s",
            )
        ph = np.interp(times, trace.times, trace.phase)
    else:
        rate, phase0 = _steady(trace)
        ph = 2 * np.pi * rate * times + phase0
    return np.mod(ph, 2 * np.pi)


def _respiratory_depth(trace, times):
    if isinstance(trace, RespiratoryTrace):
        return np.interp(times, trace.times, trace.amplitude)
    return np.ones_like(times)


def _steady(trace):
    try:
        rate, phase0 = (float(v) for v in trace)
    except (TypeError, ValueError):
        raise ParameterError(
            "respiration", trace, "a RespiratoryTrace or (rate Hz, phase rad)"
        ) from None
    check_range("respiration rate", rate, 0.0, 5.0, "Hz")
    return rate, phase0


def respiratory_field_shift(trace, times, peak_shift=0.01) -> np.ndarray:
    """Respiration-induced B0 offset (Hz), for the image formation.

    Chest expansion shifts the field in the head by about 0.01 ppm peak to peak at
    3 T (Raj, Anderson & Gore 2001, Phys Med Biol 46:3331); this returns
    ``peak_shift * depth * belt / 2`` (``peak_shift`` in Hz, peak to peak).
    """
    times = np.asarray(times, float)
    ph = respiratory_phase(trace, times)
    return -0.5 * peak_shift * _respiratory_depth(trace, times) * np.cos(ph)


def cardiac_phase(r_peaks, times) -> np.ndarray:
    """Cardiac phase (rad, in [0, 2 pi)) at ``times``, linear between R-peaks.

    ``2 pi (t - t_k) / (t_{k+1} - t_k)`` with ``t_k`` the last R-peak at or before
    ``t`` (Glover, Li & Ress 2000).  Before the first and after the last peak the
    neighbouring R-R interval is extended.
    """
    peaks = np.asarray(r_peaks, float)
    times = np.asarray(times, float)
    check_finite("r_peaks", peaks)
    check_finite("times", times)
    if peaks.ndim != 1 or peaks.size < 2 or np.any(np.diff(peaks) <= 0):
        raise ParameterError("r_peaks", peaks, "at least two increasing R-peak times (s)")
    k = np.clip(np.searchsorted(peaks, times, side="right") - 1, 0, peaks.size - 2)
    frac = (times - peaks[k]) / (peaks[k + 1] - peaks[k])
    return np.mod(2 * np.pi * frac, 2 * np.pi)


def _is_stationary(ar) -> bool:
    # roots of z^p - a1 z^(p-1) - ... - ap inside the unit circle
    roots = np.roots(np.r_[1.0, -np.asarray(ar, float)])
    return bool(np.all(np.abs(roots) < 1 - 1e-9))


def ar_autocovariance(ar, n_lags) -> np.ndarray:
    """Autocovariance at lags 0..n_lags-1 of an AR process with unit innovations."""
    ar = np.asarray(ar, float)
    rmax = float(np.max(np.abs(np.roots(np.r_[1.0, -ar])))) if ar.size else 0.0
    n = n_lags + 50 + (int(min(1e6, np.log(1e-17) / np.log(rmax))) if rmax > 0 else 0)
    delta = np.zeros(n)
    delta[0] = 1.0
    h = lfilter([1.0], np.r_[1.0, -ar], delta)
    return np.array([np.dot(h[: n - k], h[k:]) for k in range(n_lags)])


class _Smoother:
    """Spatially smooth unit-variance Gaussian fields on a grid.

    The filter is designed on the grid so that the field's autocorrelation at every
    lag is exactly the sampled Gaussian ``exp(-d**2 / (4 s**2))`` of white noise
    smoothed by a Gaussian kernel of std ``s`` (even for a FWHM near the voxel size,
    where sampling the continuous transfer function would not be); white noise on a
    grid padded by 5 ``s`` is filtered by FFT and cropped, so the field is
    stationary and does not wrap around.
    """

    def __init__(self, shape, voxel_size, fwhm):
        self.shape = tuple(int(s) for s in shape)
        sigma = fwhm * _SIGMA_PER_FWHM
        if sigma == 0:
            self.padded, self.transfer = self.shape, None
            return
        pad = [int(np.ceil(5 * sigma / d)) for d in voxel_size]
        self.padded = tuple(sfft.next_fast_len(n + p, real=True) for n, p in zip(shape, pad))
        transfer = 1.0
        for ax, (n, d) in enumerate(zip(self.padded, voxel_size)):
            lag = np.minimum(np.arange(n), n - np.arange(n)) * d
            acf = np.exp(-(lag**2) / (4 * sigma**2))
            spec = np.clip(np.real(np.fft.fft(acf)), 0.0, None)
            if ax == 2:
                spec = spec[: n // 2 + 1]
            transfer = transfer * np.sqrt(spec).reshape([-1 if i == ax else 1 for i in range(3)])
        self.transfer = transfer

    def __call__(self, rng, n=None):
        lead = () if n is None else (n,)
        white = rng.standard_normal(lead + self.padded)
        if self.transfer is None:
            return white
        axes = tuple(range(-3, 0))
        out = sfft.irfftn(sfft.rfftn(white, axes=axes) * self.transfer, self.padded, axes=axes)
        x, y, z = self.shape
        return out[..., :x, :y, :z]


def _dct_basis(times, duration, cutoff=DRIFT_CUTOFF, minimum=1):
    """Discrete cosine drift basis cos(pi k t / T), k = 1..K with k / (2 T) < cutoff
    (at least ``minimum`` columns).  At ``t = (n + 1/2) TR`` and ``T = N TR`` it spans
    SPM's (and :func:`biosim.inference.design.cosine_drifts`') high-pass set."""
    n_basis = max(minimum, int(np.floor(2 * duration * cutoff)))
    k = np.arange(1, n_basis + 1)
    return np.cos(np.pi * np.multiply.outer(np.asarray(times, float) / duration, k))


class FluctuationModel:
    """Multiplicative fractional fluctuations per head-frame voxel.

    ``model(volume_indices, slice_times)`` returns ``gain - 1`` for those
    volumes: AR fluctuations (spatially smoothed to ``params.fwhm``, one field per
    volume), plus cardiac and respiratory RETROICOR terms and the drift evaluated at
    each slice's acquisition time.  Volumes are generated in order with the AR state
    carried between calls, so consecutive chunks equal one call over all volumes;
    the innovation of volume ``v`` depends only on ``(seed, v)``, so any call is
    deterministic for a seed (asking for an earlier volume restarts the recursion).

    Parameters
    ----------
    params : NoiseParameters
    shape : tuple (X, Y, Z)
        Head-frame grid; Z is the slice axis of ``slice_times``.
    voxel_size : array (3,)
        m.
    duration : float
        Run length, s (sets the drift's cosine basis).
    tissue : NoiseTissue, optional
        Where physiological noise acts; default brain tissue everywhere.  The
        physiological weight of a voxel is ``brain + csf_gain * csf``.
    cardiac_peaks : array, optional
        R-peak times, s from the start of the run (e.g.
        :func:`biosim.instruments.eeg_fmri.cardiac_r_peaks`, the peaks that drive the
        EEG's ballistocardiogram); required when ``params.cardiac > 0``.
    respiration : RespiratoryTrace or (rate Hz, phase rad), optional
        Same clock; required when ``params.respiratory > 0``.
    csf_gain : float
        Physiological noise in CSF relative to brain tissue.
    seed : int
    """

    def __init__(
        self,
        params: NoiseParameters,
        shape: tuple[int, int, int],
        voxel_size,
        duration: float,
        tissue: NoiseTissue | None = None,
        cardiac_peaks=None,
        respiration=None,
        csf_gain: float = 3.0,
        seed: int = 0,
    ):
        if not isinstance(params, NoiseParameters):
            raise ParameterError("params", type(params).__name__, "NoiseParameters")
        shape = tuple(int(s) for s in np.atleast_1d(shape))
        if len(shape) != 3 or min(shape) < 1:
            raise ParameterError("shape", shape, "three positive grid sizes (X, Y, Z)")
        voxel_size = np.broadcast_to(np.asarray(voxel_size, float), (3,)).copy()
        check_range("voxel_size", voxel_size, 1e-5, 0.05, "m")
        check_positive("duration", duration, "s")
        check_range("csf_gain", csf_gain, 0.0, 100.0)
        if tissue is not None:
            if not isinstance(tissue, NoiseTissue):
                raise ParameterError("tissue", type(tissue).__name__, "NoiseTissue or None")
            if tissue.brain.shape != shape:
                raise ParameterError("tissue", f"maps of shape {tissue.brain.shape}", f"{shape}")
        if params.cardiac > 0 and cardiac_peaks is None:
            raise ParameterError("cardiac_peaks", None, "R-peak times when params.cardiac > 0")
        if params.respiratory > 0 and respiration is None:
            raise ParameterError("respiration", None, "a trace when params.respiratory > 0")
        if cardiac_peaks is not None:
            cardiac_phase(cardiac_peaks, [0.0])  # validates
            cardiac_peaks = np.asarray(cardiac_peaks, float)
        if respiration is not None and not isinstance(respiration, RespiratoryTrace):
            respiration = _steady(respiration)
        self.params, self.shape, self.voxel_size = params, shape, voxel_size
        self.duration, self.seed = float(duration), int(seed)
        self.cardiac_peaks, self.respiration = cardiac_peaks, respiration
        self._smooth = _Smoother(shape, voxel_size, params.fwhm)
        ar = np.asarray(params.ar, float)
        self._ar = ar
        p = ar.size
        acov = ar_autocovariance(ar, max(p, 1))
        self._scale = params.ar_std() / np.sqrt(acov[0])
        self._init_chol = (
            np.linalg.cholesky(acov[np.abs(np.subtract.outer(np.arange(p), np.arange(p)))])
            if p
            else None
        )
        # physiological weights and per-voxel phase offsets (smooth, ~pi/4 spread)
        if tissue is None:
            weight = np.ones(shape)
        else:
            weight = tissue.brain + csf_gain * tissue.csf
        rng = np.random.default_rng([self.seed, 2])
        wide = _Smoother(shape, voxel_size, 0.03) if params.physio_variance() > 0 else None
        self._physio = []
        for amp, harmonics, name in (
            (params.cardiac, CARDIAC_HARMONICS, "cardiac"),
            (params.respiratory, RESPIRATORY_HARMONICS, "respiratory"),
        ):
            if amp == 0:
                continue
            c = np.asarray(harmonics) / np.sqrt(0.5 * np.sum(np.square(harmonics)))
            c = c[:, None, None, None]
            theta = rng.uniform(0, 2 * np.pi, len(c))[:, None, None, None]
            theta = theta + np.pi / 4 * wide(rng, len(c))
            self._physio.append(
                (name, amp * weight * c * np.cos(theta), amp * weight * c * np.sin(theta))
            )
        # drift: random cosine combination with unit std over the run
        rng = np.random.default_rng([self.seed, 3])
        n_basis = _dct_basis([0.0], self.duration).shape[1]
        coef = rng.standard_normal(n_basis)
        fine = _dct_basis(np.linspace(0, self.duration, 4097), self.duration) @ coef
        self._drift_coef = params.drift * coef / fine.std()
        self._reset()

    def _reset(self):
        p = self._ar.size
        if p:
            fields = self._smooth(np.random.default_rng([self.seed, 0]), p)
            # state[0] is the most recent value x_{v-1}
            self._state = np.tensordot(self._init_chol, fields, axes=1)[::-1].copy()
        else:
            self._state = np.zeros((0,) + self.shape)
        self._next = 0

    def _advance(self):
        e = self._smooth(np.random.default_rng([self.seed, 1, self._next]))
        x = e + np.tensordot(self._ar, self._state, axes=1) if self._ar.size else e
        if self._ar.size:
            self._state = np.concatenate([x[None], self._state[:-1]])
        self._next += 1
        return x

    def drift(self, times) -> np.ndarray:
        """The global fractional drift at ``times`` (s)."""
        return _dct_basis(times, self.duration) @ self._drift_coef

    def physiological(self, slice_times) -> np.ndarray:
        """Cardiac + respiratory fractional terms (n, X, Y, Z) at ``slice_times`` (n, Z)."""
        slice_times = np.asarray(slice_times, float)
        out = np.zeros((slice_times.shape[0],) + self.shape)
        for name, ac, as_ in self._physio:
            if name == "cardiac":
                phase, depth = cardiac_phase(self.cardiac_peaks, slice_times), 1.0
            else:
                phase = respiratory_phase(self.respiration, slice_times)
                depth = _respiratory_depth(self.respiration, slice_times)[:, None, None, :]
            term = 0.0
            for m in range(ac.shape[0]):
                cm = np.cos((m + 1) * phase)[:, None, None, :]
                sm = np.sin((m + 1) * phase)[:, None, None, :]
                term = term + cm * ac[m] - sm * as_[m]
            out += depth * term
        return out

    def __call__(self, volume_indices, slice_times) -> np.ndarray:
        """Fractional gain minus one, (n_chunk, X, Y, Z) float32.

        Parameters
        ----------
        volume_indices : array of int (n_chunk,)
            Strictly increasing volume numbers (0-based).
        slice_times : array (n_chunk, Z) or (n_chunk,)
            Acquisition time of each slice of those volumes, s (a 1D array gives
            one time per volume).
        """
        idx = np.asarray(volume_indices)
        if idx.ndim == 1 and idx.size == 0:
            idx = idx.astype(int)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or np.any(idx < 0):
            raise ParameterError("volume_indices", idx, "a 1D array of non-negative integers")
        if np.any(np.diff(idx) <= 0):
            raise ParameterError("volume_indices", idx, "strictly increasing volume numbers")
        st = np.asarray(slice_times, float)
        if st.ndim == 1:
            st = np.repeat(st[:, None], self.shape[2], axis=1)
        if st.shape != (idx.size, self.shape[2]):
            raise ParameterError(
                "slice_times", f"shape {np.shape(slice_times)}", f"({idx.size}, {self.shape[2]})"
            )
        check_finite("slice_times", st)
        if idx.size == 0:
            return np.empty((0,) + self.shape, np.float32)
        out = self.physiological(st)  # first: a time outside the traces fails early
        out += self.drift(st)[:, None, None, :]
        if idx[0] < self._next:
            self._reset()
        for i, v in enumerate(idx):
            while self._next < v:
                self._advance()
            out[i] += self._scale * self._advance()
        return out.astype(np.float32)


# ---------------------------------------------------------------------------------------
# fitting


def _load(data, tr, voxel_size):
    if isinstance(data, (str, Path)):
        try:
            import nibabel as nib
        except ImportError:
            raise ImportError(
                "fit_noise on a file needs nibabel (pip install nibabel), "
                "or pass the data as an array with tr and voxel_size"
            ) from None
        path = Path(data)
        if not path.exists():
            raise ParameterError("data", path, "an existing 4D NIfTI file")
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj, float)
        zooms = img.header.get_zooms()
        space, time_unit = img.header.get_xyzt_units()
        to_m = {"mm": 1e-3, "meter": 1.0, "micron": 1e-6}.get(space, 1e-3)
        to_s = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(time_unit, 1.0)
        if voxel_size is None:
            voxel_size = np.asarray(zooms[:3], float) * to_m
        if tr is None and len(zooms) > 3 and zooms[3] > 0:
            tr = float(zooms[3]) * to_s
    else:
        arr = np.asarray(data, float)
    if arr.ndim != 4 or arr.shape[3] < 20:
        raise ParameterError("data", f"shape {arr.shape}", "(X, Y, Z, T) with T >= 20 volumes")
    check_finite("data", arr)
    if tr is None:
        raise ParameterError("tr", None, "the repetition time in s (not in the file header)")
    check_range("tr", tr, 1e-3, 100.0, "s")
    if voxel_size is None:
        raise ParameterError("voxel_size", None, "the voxel size in m (3 values)")
    voxel_size = np.broadcast_to(np.asarray(voxel_size, float), (3,)).copy()
    check_range("voxel_size", voxel_size, 1e-5, 0.05, "m")
    return arr, float(tr), voxel_size


def _intensity_threshold(values):
    """Ridler-Calvard (isodata) threshold: midway between the means of the two classes."""
    t = float(np.mean(values))
    for _ in range(100):
        low, high = values[values <= t], values[values > t]
        if low.size == 0 or high.size == 0:
            break
        new = 0.5 * (low.mean() + high.mean())
        if abs(new - t) <= 1e-9 * max(abs(t), 1.0):
            break
        t = new
    return t


def _dilate(mask, n):
    out = mask.copy()
    for _ in range(n):
        grown = out.copy()
        for ax in range(3):
            grown |= np.roll(out, 1, ax) | np.roll(out, -1, ax)
        out = grown
    return out


def _toeplitz(acov):
    n = acov.size
    return acov[np.abs(np.subtract.outer(np.arange(n), np.arange(n)))]


def _model_autocovariance(ar, var_f, thermal, n):
    """Autocovariance (lags 0..n-1) of AR fluctuations of variance ``var_f`` plus white
    thermal noise of variance ``thermal``."""
    if var_f > 0 and np.size(ar) and _is_stationary(ar):
        g = ar_autocovariance(ar, n)
        g = var_f * g / g[0]
    else:
        g = np.zeros(n)
        g[0] = max(var_f, 0.0)
    g[0] += thermal
    return g


def _detrended_autocovariance(acov, q, n_lag):
    """Expected biased sample autocovariance (lags 0..n_lag-1) of ``(I - Q Q') y`` for
    ``y`` with Toeplitz autocovariance ``acov`` (lags 0..n-1); ``Q`` orthonormal.

    With ``G = Gamma Q`` and ``M = Q' G`` the residual covariance is
    ``Gamma - Q G' - G Q' + Q M Q'``; its k-th diagonal sums are O(n m) each.
    """
    n = acov.size
    g = _toeplitz(acov) @ q
    qm = q @ (q.T @ g)
    out = np.empty(n_lag)
    for k in range(n_lag):
        out[k] = (
            (n - k) * acov[k]
            - np.sum(q[: n - k] * g[k:])
            - np.sum(g[: n - k] * q[k:])
            + np.sum(qm[: n - k] * q[k:])
        ) / n
    return out


def _toeplitz_quadratic(basis, acov):
    """sum_k b_k' Gamma b_k for the Toeplitz autocovariance ``acov`` (lags 0..n-1)."""
    return float(np.sum(basis * (_toeplitz(acov) @ basis)))


def _physio_regressors(times, cardiac_peaks, respiration):
    """RETROICOR regressors (T, 4 + 4): cos/sin of 1st and 2nd harmonics of the cardiac
    and respiratory phases at ``times``; a missing recording gives no columns."""
    cols = []
    for kind, rec in (("cardiac", cardiac_peaks), ("respiratory", respiration)):
        if rec is None:
            continue
        ph = cardiac_phase(rec, times) if kind == "cardiac" else respiratory_phase(rec, times)
        for m in (1, 2):
            cols += [np.cos(m * ph), np.sin(m * ph)]
    return np.column_stack(cols) if cols else np.zeros((len(times), 0))


def fit_noise(
    data,
    tr: float | None = None,
    mask=None,
    voxel_size=None,
    ar_order: int = 1,
    cardiac_peaks=None,
    respiration=None,
    slice_timing=None,
) -> NoiseParameters:
    """Estimate :class:`NoiseParameters` from a magnitude fMRI series.

    Parameters
    ----------
    data : array (X, Y, Z, T) or path
        Magnitude images, or a 4D NIfTI file (needs nibabel; the TR and voxel size
        come from its header unless given).
    tr : float
        s; required for an array.
    mask : bool array (X, Y, Z), optional
        Brain voxels; by default the mean image thresholded midway between
        the mean brain and background intensities (Ridler & Calvard 1978).
    voxel_size : array (3,), optional
        m; required for an array.
    ar_order : int
        Order of the AR model.
    cardiac_peaks : array, optional
        Recorded R-peak times, s (0 = first volume's start).  With it, and/or
        ``respiration``, the physiological amplitudes are fitted (RETROICOR, Glover
        et al. 2000); without, ``cardiac`` and ``respiratory`` are 0 and their
        variance is counted in ``sfnr`` and the AR model.
    respiration : RespiratoryTrace or (rate Hz, phase rad), optional
    slice_timing : array (Z,), optional
        Acquisition time of each slice after the volume's start, s (BIDS
        ``SliceTiming``; default 0), where the physiological phases are evaluated.

    Returns
    -------
    NoiseParameters
        An infinite ``sfnr`` (no fluctuations above the thermal noise) or ``snr``
        (no background to measure it) is returned as 1e9, with a warning.

    Notes
    -----
    Per brain voxel the series is divided by its mean and a constant plus the
    cosine basis below 1/128 Hz (and the RETROICOR regressors of its slice, when
    given) is regressed out.  Thermal noise ``sigma`` comes from the background
    (voxels at least two voxels from the mask) as the Rayleigh estimate
    ``sqrt(mean(M**2) / 2)``, so ``snr = mean brain / sigma``.  The residual's
    autocovariance averaged over the brain, with the thermal variance removed from
    lag 0 (white noise adds only there), gives the AR coefficients by Yule-Walker;
    the regressors' share of the noise (``tr(Q' Gamma Q)`` for that model) is put
    back by a fixed-point iteration.  The drift and physiological amplitudes are the
    RMS over the brain of their fitted terms, less the noise those regressors hold
    (0 when below it).  ``sfnr`` counts the AR and physiological variance.
    Smoothness follows Forman et al. 1995 (AFNI 3dFWHMx): per axis
    ``FWHM = dx sqrt(-2 ln 2 / ln(1 - var(dr) / (2 var(r))))`` with the thermal
    share taken out of both variances, and the geometric mean of the three axes.
    """
    arr, tr, voxel_size = _load(data, tr, voxel_size)
    if int(ar_order) != ar_order or not 0 <= ar_order <= 10:
        raise ParameterError("ar_order", ar_order, "an integer in [0, 10]")
    ar_order = int(ar_order)
    n_t, n_z = arr.shape[3], arr.shape[2]
    times = np.arange(n_t) * tr
    physio_given = cardiac_peaks is not None or respiration is not None
    if slice_timing is None:
        slice_timing = np.zeros(n_z)
    slice_timing = np.asarray(slice_timing, float)
    if slice_timing.shape != (n_z,):
        raise ParameterError("slice_timing", slice_timing, f"{n_z} slice times (s)")
    check_range("slice_timing", slice_timing, 0.0, tr, "s")
    if respiration is not None and not isinstance(respiration, RespiratoryTrace):
        respiration = _steady(respiration)
    mean_img = arr.mean(axis=3)
    if mask is None:
        mask = mean_img > _intensity_threshold(mean_img.ravel())
    else:
        mask = np.asarray(mask, bool)
        if mask.shape != arr.shape[:3]:
            raise ParameterError("mask", f"shape {mask.shape}", f"{arr.shape[:3]}")
    mask = mask & (mean_img > 0)
    if mask.sum() < 10:
        raise ParameterError("mask", f"{int(mask.sum())} voxels", "at least 10 brain voxels")
    mean_brain = float(mean_img[mask].mean())

    # thermal noise from the background (Rayleigh)
    bg = arr[~_dilate(mask, 2)]
    sigma = float(np.sqrt(np.mean(bg**2) / 2)) if bg.size else 0.0
    if sigma == 0.0 or bg.size < 100:
        warnings.warn(
            "fit_noise: no usable background (outside the brain); thermal noise is "
            "counted in sfnr and snr is set to infinity",
            stacklevel=2,
        )
        sigma = 0.0
    snr = mean_brain / sigma if sigma > 0 else np.inf

    # regress out drift (and physiology) slice by slice; orthonormal columns:
    # [constant, drift (K), cardiac (0 or 4), respiratory (0 or 4)]
    mu = mean_img[mask]
    y = arr[mask] / mu[:, None]  # (V, T) fractional
    thermal = (sigma / mu) ** 2
    thermal_mean = float(thermal.mean())
    slice_of = np.nonzero(mask)[2]
    drift_basis = np.column_stack([np.ones(n_t), _dct_basis(times + 0.5 * tr, n_t * tr, minimum=0)])
    n_drift = drift_basis.shape[1]
    n_card = 4 if cardiac_peaks is not None else 0
    blocks = {"drift": slice(1, n_drift), "cardiac": slice(n_drift, n_drift + n_card)}
    blocks["respiratory"] = slice(n_drift + n_card, None)
    resid = np.empty_like(y)
    power = {name: np.zeros(y.shape[0]) for name in blocks}
    groups = []  # (Q, number of voxels)
    for z in range(n_z) if physio_given else [None]:
        sel = slice_of == z if z is not None else np.ones(y.shape[0], bool)
        if not sel.any():
            continue
        regs = (
            _physio_regressors(times + slice_timing[z], cardiac_peaks, respiration)
            if physio_given
            else np.zeros((n_t, 0))
        )
        q, _ = np.linalg.qr(np.column_stack([drift_basis, regs]))
        if z is None:  # one group: no copies
            coef = y @ q
            resid = np.subtract(y, coef @ q.T, out=resid)
        else:
            coef = y[sel] @ q
            resid[sel] = y[sel] - coef @ q.T
        for name, cols in blocks.items():
            power[name][sel] = np.sum(coef[:, cols] ** 2, axis=1) / n_t
        groups.append((q, int(sel.sum())))
    n_vox = sum(n for _, n in groups)

    def expected(g, n_lag):
        return sum(n * _detrended_autocovariance(g, q, n_lag) for q, n in groups) / n_vox

    def held(g, cols):
        return sum(n * _toeplitz_quadratic(q[:, cols], g) for q, n in groups) / (n_vox * n_t)

    # autocovariance averaged over brain voxels (biased estimator, lags 0..p)
    n_lag = max(ar_order + 1, 2)
    acov = np.array(
        [np.mean(np.sum(resid[:, : n_t - k] * resid[:, k:], 1) / n_t) for k in range(n_lag)]
    )

    def fluct_fit(acov_total):
        g = acov_total.copy()
        g[0] = g[0] - thermal_mean
        if g[0] <= 0:
            return np.zeros(ar_order), 0.0
        if ar_order == 0:
            return np.zeros(0), g[0]
        r = g[: ar_order + 1] / g[0]
        toe = r[np.abs(np.subtract.outer(np.arange(ar_order), np.arange(ar_order)))]
        return np.linalg.solve(toe, r[1 : ar_order + 1]), g[0]

    # the regressors took part of the noise, most at low frequency, so the residual's
    # autocovariance is biased; correct it for the fitted model by a fixed-point
    # iteration: observed + (model - what the model leaves after the regression)
    ar, var_f = fluct_fit(acov)
    for _ in range(8):
        g_total = _model_autocovariance(ar, var_f, thermal_mean, n_t)
        ar, var_f = fluct_fit(acov + g_total[:n_lag] - expected(g_total, n_lag))
    g_total = _model_autocovariance(ar, var_f, thermal_mean, n_t)
    amplitude = {
        name: float(np.sqrt(max(np.mean(power[name]) - held(g_total, cols), 0.0)))
        for name, cols in blocks.items()
    }
    total_var = var_f + amplitude["cardiac"] ** 2 + amplitude["respiratory"] ** 2
    sfnr = 1.0 / np.sqrt(total_var) if total_var > 0 else np.inf
    if not np.isfinite(sfnr):
        warnings.warn(
            "fit_noise: no fluctuations above thermal noise; sfnr set to 1e9", stacklevel=2
        )

    # smoothness (Forman 1995) of the residual, thermal share removed: detrending
    # scales the fluctuations in both variances alike (separable), and leaves
    # (n - n_regressors) / n of the white thermal noise
    n_reg = groups[0][0].shape[1]
    full = np.zeros(arr.shape[:3] + (n_t,), np.float32)
    full[mask] = resid
    sq = np.zeros(arr.shape[:3])
    sq[mask] = np.sum(resid**2, axis=1) / n_t
    therm = np.zeros(arr.shape[:3])
    therm[mask] = thermal * (n_t - n_reg) / n_t
    fwhms = []
    for ax in range(3):
        if arr.shape[ax] < 2:
            continue
        lo = tuple(slice(0, -1) if i == ax else slice(None) for i in range(3))
        hi = tuple(slice(1, None) if i == ax else slice(None) for i in range(3))
        pair = mask[lo] & mask[hi]
        if pair.sum() < 10:
            continue
        diff = np.diff(full, axis=ax)
        var_d = np.sum(np.square(diff, out=diff), axis=3, dtype=float)[pair].mean() / n_t
        var = 0.5 * (sq[lo][pair] + sq[hi][pair]).mean()
        th = 0.5 * (therm[lo][pair] + therm[hi][pair]).mean()
        var, var_d = var - th, var_d - 2 * th
        ratio = 1 - var_d / (2 * var) if var > 0 else 0.0
        fwhms.append(
            voxel_size[ax] * np.sqrt(-2 * np.log(2) / np.log(ratio)) if 0 < ratio < 1 else 0.0
        )
    fwhm = float(np.exp(np.mean(np.log(fwhms)))) if fwhms and min(fwhms) > 0 else 0.0
    return NoiseParameters(
        sfnr=float(sfnr) if np.isfinite(sfnr) else 1e9,
        snr=float(snr) if np.isfinite(snr) else 1e9,
        ar=tuple(float(a) for a in ar),
        fwhm=min(fwhm, 0.1),
        drift=min(amplitude["drift"], 0.5),
        cardiac=min(amplitude["cardiac"], 0.5),
        respiratory=min(amplitude["respiratory"], 0.5),
    )
