"""fMRI noise: generator speed and fit_noise accuracy against the truth that made the data.

Cases (one run):

1. Generation of the fractional fluctuations (spatially smooth AR(2), cardiac and
   respiratory RETROICOR terms at 36 slice times, drift) on a 64 x 64 x 36 grid,
   200 volumes in chunks of 20: seconds per volume.
2. Round trip: the same model on an ellipsoidal brain (signal 1000) in a
   background, complex thermal noise, magnitude; ``fit_noise`` with and without the
   recorded physiology.  Reference: the plain estimators of fmrisim's approach
   re-implemented here without bias corrections (SFNR = mean / std of the detrended
   series, thermal noise included; AR from the residual's Yule-Walker equations; FWHM
   by Forman's formula on the raw residual).  BrainIAK fmrisim itself is not run (it
   needs MPI and is not installed here).  Accuracy is the relative error against the
   set parameters.
"""

from __future__ import annotations

import time

import numpy as np

import biosim  # noqa: F401
from biosim.instruments.eeg_fmri import cardiac_r_peaks
from biosim.instruments.mri_noise import (
    FluctuationModel,
    NoiseParameters,
    fit_noise,
    respiratory_trace,
)

SHAPE = (64, 64, 36)
VOX = np.array([3e-3, 3e-3, 3.5e-3])
TR, N_T = 2.0, 200
TRUE = NoiseParameters(
    sfnr=70.0, snr=80.0, ar=(0.45, 0.15), fwhm=6e-3, drift=0.01, cardiac=0.006, respiratory=0.004
)


def plain_estimates(data, mask, tr):
    """fmrisim-style estimates without corrections (reference)."""
    n_t = data.shape[3]
    mu = data.mean(3)
    y = data[mask] / mu[mask][:, None]
    k = np.arange(1, int(2 * n_t * tr / 128) + 1)
    basis = np.column_stack([np.ones(n_t), np.cos(np.pi * np.outer(np.arange(n_t) + 0.5, k) / n_t)])
    q, _ = np.linalg.qr(basis)
    r = y - (y @ q) @ q.T
    sfnr = 1 / np.sqrt(np.mean(r**2))
    g = [np.mean(r[:, k:] * r[:, : n_t - k]) for k in range(3)]
    toe = np.array([[g[0], g[1]], [g[1], g[0]]])
    ar = np.linalg.solve(toe, g[1:])
    full = np.zeros(data.shape)
    full[mask] = r
    fw = []
    for ax, d in enumerate(VOX):
        lo = tuple(slice(0, -1) if i == ax else slice(None) for i in range(3))
        hi = tuple(slice(1, None) if i == ax else slice(None) for i in range(3))
        pair = mask[lo] & mask[hi]
        a, b = full[lo][pair], full[hi][pair]
        ratio = 1 - np.mean((a - b) ** 2) / (np.mean(a**2) + np.mean(b**2))
        fw.append(d * np.sqrt(-2 * np.log(2) / np.log(ratio)))
    return sfnr, ar, float(np.exp(np.mean(np.log(fw))))


def main():
    duration = N_T * TR + 5
    peaks, breath = cardiac_r_peaks(duration, seed=0), respiratory_trace(duration, seed=0)
    timing = np.arange(SHAPE[2]) * TR / SHAPE[2]
    slice_times = np.arange(N_T)[:, None] * TR + timing[None]
    t0 = time.perf_counter()
    model = FluctuationModel(
        TRUE, SHAPE, VOX, N_T * TR, cardiac_peaks=peaks, respiration=breath, seed=0
    )
    fluct = np.concatenate(
        [model(np.arange(a, a + 20), slice_times[a : a + 20]) for a in range(0, N_T, 20)]
    )
    t_gen = time.perf_counter() - t0
    print(
        f"generate {SHAPE} x {N_T} volumes: {t_gen:.2f} s ({1e3 * t_gen / N_T:.1f} ms per volume)"
    )

    g = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]].astype(float)
    c = (np.array(SHAPE) - 1) / 2
    brain = sum(((g[i] - c[i]) / (0.4 * SHAPE[i])) ** 2 for i in range(3)) < 1
    s0 = np.where(brain, 1000.0, 0.0)[..., None]
    rng = np.random.default_rng(1)
    sigma = TRUE.thermal_std(1000.0)
    noise = sigma * (
        rng.standard_normal(s0.shape[:3] + (N_T,)) + 1j * rng.standard_normal(s0.shape[:3] + (N_T,))
    )
    data = np.abs(s0 * (1 + np.moveaxis(fluct, 0, -1)) + noise)
    del noise, fluct

    def rel(value, true):
        return f"{value / true - 1:+.3f}"

    for label, kwargs in (
        ("with physiology", dict(cardiac_peaks=peaks, respiration=breath, slice_timing=timing)),
        ("blind", {}),
    ):
        t0 = time.perf_counter()
        fit = fit_noise(data, TR, voxel_size=VOX, ar_order=2, **kwargs)
        t_fit = time.perf_counter() - t0
        print(
            f"fit_noise {label}: {t_fit:.2f} s; rel. errors sfnr {rel(fit.sfnr, TRUE.sfnr)}, "
            f"snr {rel(fit.snr, TRUE.snr)}, fwhm {rel(fit.fwhm, TRUE.fwhm)}, "
            f"drift {rel(fit.drift, TRUE.drift)}, cardiac {fit.cardiac:.4f} (set 0.006), "
            f"respiratory {fit.respiratory:.4f} (set 0.004), ar {np.round(fit.ar, 3)} "
            f"(set {TRUE.ar})"
        )
    t0 = time.perf_counter()
    sfnr, ar, fwhm = plain_estimates(data, brain, TR)
    t_plain = time.perf_counter() - t0
    print(
        f"plain estimators: {t_plain:.2f} s; rel. errors sfnr {rel(sfnr, TRUE.sfnr)} "
        f"(expected with thermal {rel(1 / np.hypot(1 / TRUE.sfnr, 1 / TRUE.snr), TRUE.sfnr)}), "
        f"fwhm {rel(fwhm, TRUE.fwhm)}, ar {np.round(ar, 3)}"
    )


if __name__ == "__main__":
    main()
