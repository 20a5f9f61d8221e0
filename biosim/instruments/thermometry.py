"""PRFS MR thermometry: temperature maps -> complex GRE images -> temperature maps.

The scanner acquires a spoiled gradient-echo image every ``frame_interval`` seconds; its
magnitude is the spoiled-GRE steady state of the tissue (:func:`~biosim.physics.mri.
signal_equations.spoiled_gre`, relaxation times of :mod:`biosim.physics.mri.tissue`) and
its phase carries the proton-resonance-frequency shift of the temperature rise
(:func:`~biosim.physics.mri.prfs.prfs_phase`: ``gamma alpha B0 TE dT``), a B0 drift
(``drift`` Hz/s, uniform, plus ``drift_gradient`` Hz/(m s) along the first axis), rigid
head translation (a random walk of ``motion`` mm per frame, applied as a Fourier shift of
the complex image) and complex Gaussian noise (``snr``: magnitude SNR of the brightest
voxel).  :meth:`PRFSThermometry.reconstruct` returns the temperature rise by baseline
subtraction with the drift estimated in a reference region of unheated tissue
(:func:`~biosim.physics.mri.prfs.temperature_change`), and :func:`thermometry_error`
scores it against the truth.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from .._core.errors import ParameterError, ShapeError
from .._core.units import DEG
from .._core.validation import check_all_finite, check_nonnegative, check_positive, check_range
from ..physics.mri import signal_equations as se
from ..physics.mri.prfs import ALPHA_TISSUE, prfs_phase, temperature_change, temperature_noise
from ..physics.mri.tissue import FIELD_STRENGTH_RANGE

__all__ = ["PRFSThermometry", "ThermometrySeries", "ThermometryError", "thermometry_error"]


@dataclasses.dataclass(frozen=True)
class ThermometrySeries:
    """A PRFS thermometry acquisition.

    Attributes
    ----------
    images : (n_frames, *grid) complex64
        Frame 0 is the baseline (before heating).
    times : (n_frames,) s
    motion : (n_frames, ndim) m
        Head translation at each frame (truth).
    """

    images: np.ndarray
    times: np.ndarray
    motion: np.ndarray


@dataclasses.dataclass(frozen=True)
class PRFSThermometry:
    """A GRE PRFS thermometry protocol (SI units, flip angle in degrees).

    Parameters
    ----------
    field_strength : float
        T.
    te, tr : float
        Echo and repetition time of the GRE, s.
    flip_angle : float
        Degrees.
    frame_interval : float
        Time between thermometry frames, s.
    snr : float
        Magnitude SNR of the brightest voxel (noise std per real/imaginary channel =
        max magnitude / snr); ``inf`` for noise-free images.
    drift : float
        Uniform B0 drift, Hz/s.
    drift_gradient : float
        Linear B0 drift along the first grid axis, Hz/(m s).
    motion : float
        Standard deviation of the per-frame step of a random-walk translation, m.
    alpha : float
        PRF coefficient, 1/degC (brain, Ishihara et al. 1995).
    seed : int
    """

    field_strength: float = 3.0
    te: float = 0.012
    tr: float = 0.03
    flip_angle: float = 20.0
    frame_interval: float = 1.0
    snr: float = 40.0
    drift: float = 0.0
    drift_gradient: float = 0.0
    motion: float = 0.0
    alpha: float = ALPHA_TISSUE["brain"]
    seed: int = 0

    def __post_init__(self):
        check_range("field_strength", self.field_strength, *FIELD_STRENGTH_RANGE, "T")
        check_positive("tr", self.tr, "s")
        if not 0 < self.te < self.tr:
            raise ParameterError("te", self.te, f"an echo time in (0, TR = {self.tr}) s")
        check_range("flip_angle", self.flip_angle, 0.0, 90.0, "deg")
        check_positive("frame_interval", self.frame_interval, "s")
        if not self.snr > 0:  # inf allowed: noise-free images
            raise ParameterError("snr", self.snr, "a positive SNR (inf: no noise)")
        check_all_finite(drift=self.drift, drift_gradient=self.drift_gradient, alpha=self.alpha)
        check_nonnegative("motion", self.motion, "m")
        if self.alpha == 0:
            raise ParameterError("alpha", self.alpha, "a non-zero PRF coefficient")

    def magnitude(self, m0, t1, t2star):
        """Spoiled-GRE steady-state magnitude; arrays (C, *grid) summed over compartments
        C (m0 already weighted by each compartment's volume fraction)."""
        s = se.spoiled_gre(
            jnp.asarray(m0),
            jnp.asarray(t1),
            jnp.asarray(t2star),
            self.tr,
            self.te,
            self.flip_angle * DEG,
        )
        return np.asarray(jnp.sum(jnp.abs(s), axis=0))

    @property
    def temperature_std(self) -> float:
        """Noise std of a temperature map at the brightest voxel, K (Conturo & Smith)."""
        return float(temperature_noise(self.field_strength, self.te, self.snr, self.alpha))

    def acquire(self, delta_t, magnitude, spacing, background_phase=None) -> ThermometrySeries:
        """Complex images of temperature-rise frames.

        Parameters
        ----------
        delta_t : (n, *grid) K
            Temperature rise at frames ``1..n`` (at ``k frame_interval``); a baseline frame
            (rise 0) is acquired first.
        magnitude : grid
            Image magnitude (:meth:`magnitude`).
        spacing : float
            Voxel size, m (for motion and the drift gradient).
        background_phase : grid, optional
            Static phase (rad; e.g. the off-resonance of the head's susceptibility x TE).
        """
        dtemp = np.asarray(delta_t, np.float32)
        mag = np.asarray(magnitude, np.float32)
        if dtemp.ndim != mag.ndim + 1 or dtemp.shape[1:] != mag.shape:
            raise ShapeError("delta_t", dtemp.shape, f"(n_frames, *{mag.shape})")
        check_all_finite(delta_t=dtemp, magnitude=mag)
        check_positive("spacing", spacing, "m")
        rng = np.random.default_rng(self.seed)
        n = len(dtemp) + 1
        times = np.arange(n) * self.frame_interval
        ndim = mag.ndim
        steps = rng.normal(0.0, self.motion, (n, ndim)) if self.motion > 0 else np.zeros((n, ndim))
        steps[0] = 0.0
        shifts = np.cumsum(steps, axis=0)
        x = (np.arange(mag.shape[0]) - (mag.shape[0] - 1) / 2) * spacing
        x = x.reshape((-1,) + (1,) * (ndim - 1))
        base_phase = 0.0 if background_phase is None else np.asarray(background_phase, float)
        sigma = float(mag.max()) / self.snr if np.isfinite(self.snr) else 0.0
        freqs = np.meshgrid(*[np.fft.fftfreq(s, spacing) for s in mag.shape], indexing="ij")
        images = np.empty((n, *mag.shape), np.complex64)
        for i in range(n):
            dt_i = np.zeros(mag.shape, np.float32) if i == 0 else dtemp[i - 1]
            df = (self.drift + self.drift_gradient * x) * times[i]
            phase = (
                np.asarray(prfs_phase(dt_i, self.field_strength, self.te, self.alpha))
                + 2 * np.pi * df * self.te
                + base_phase
            )
            img = mag * np.exp(1j * phase)
            if np.any(shifts[i] != 0):
                ramp = np.exp(-2j * np.pi * sum(f * s for f, s in zip(freqs, shifts[i])))
                img = np.fft.ifftn(np.fft.fftn(img) * ramp)
            if sigma > 0:
                img = img + sigma * (
                    rng.standard_normal(mag.shape) + 1j * rng.standard_normal(mag.shape)
                )
            images[i] = img
        return ThermometrySeries(images, times, shifts)

    def reconstruct(self, series: ThermometrySeries, reference_mask=None) -> np.ndarray:
        """Temperature rise of frames ``1..n`` against frame 0, K, with the mean phase of
        ``reference_mask`` (unheated tissue) removed from every frame (drift correction)."""
        base = series.images[0]
        return np.stack(
            [
                np.asarray(
                    temperature_change(
                        img,
                        base,
                        self.field_strength,
                        self.te,
                        self.alpha,
                        reference_mask,
                    )
                )
                for img in series.images[1:]
            ]
        )


@dataclasses.dataclass(frozen=True)
class ThermometryError:
    """Reconstructed - true temperature rise, K.

    Attributes
    ----------
    rmse : float
        Over ``mask`` and every frame.
    peak_error : float
        Reconstructed minus true rise at the hottest true voxel and frame in ``mask``.
    bias : float
        Mean error over ``mask`` and frames.
    per_frame_rmse : (n,) array
    """

    rmse: float
    peak_error: float
    bias: float
    per_frame_rmse: np.ndarray


def thermometry_error(reconstructed, truth, mask) -> ThermometryError:
    """Error of reconstructed temperature maps against the truth inside ``mask``."""
    rec, tru = np.asarray(reconstructed, float), np.asarray(truth, float)
    if rec.shape != tru.shape:
        raise ShapeError("truth", tru.shape, f"{rec.shape} like reconstructed")
    m = np.asarray(mask, bool)
    if m.shape != rec.shape[1:] or not m.any():
        raise ParameterError("mask", m.shape, f"a non-empty mask of shape {rec.shape[1:]}")
    err = (rec - tru)[:, m]
    return ThermometryError(
        float(np.sqrt(np.mean(err**2))),
        float(err.flat[np.argmax(tru[:, m])]),
        float(err.mean()),
        np.sqrt(np.mean(err**2, axis=1)),
    )
