"""Slice-timing correction: each slice (or region) resampled to the volume's start.

A 2D EPI acquires slice ``k`` at ``SliceTiming[k]`` s after the volume's start,
so a region's signal is sampled ``delay`` s late.  Shifting each time series by
``-delay`` with the Fourier shift theorem (band-limited interpolation, as SPM's
``spm_slice_timing``; Henson et al. 1999, NeuroImage 9:S125) puts every region
on the volume clock that models and designs assume.
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ParameterError
from .._core.validation import check_all_finite


def shift_series(y, delays, tr: float):
    """``y`` (n_scans, n) sampled ``delays`` (n,) s late -> the series at the scan times.

    The series is mirrored before the Fourier shift so that its ends do not wrap
    onto each other.
    """
    y = np.asarray(y, dtype=float)
    d = np.asarray(delays, dtype=float)
    if y.ndim != 2:
        raise ParameterError("y", f"array of shape {y.shape}", "(n_scans, n_series)")
    if d.shape != (y.shape[1],):
        raise ParameterError("delays", f"array of shape {d.shape}", f"shape ({y.shape[1]},)")
    check_all_finite(y=y, delays=d, tr=tr)
    if tr <= 0:
        raise ParameterError("tr", tr, "a positive repetition time in s")
    if np.any(np.abs(d) > tr):
        raise ParameterError("delays", d.tolist(), f"delays within one TR ({tr:g} s)")
    n = y.shape[0]
    padded = np.vstack([y, y[::-1]])  # even extension: no jump at the ends
    freqs = np.fft.rfftfreq(2 * n, d=tr)
    spectrum = np.fft.rfft(padded, axis=0) * np.exp(-2j * np.pi * freqs[:, None] * d[None, :])
    return np.fft.irfft(spectrum, n=2 * n, axis=0)[:n]


def region_delays(labels, slice_timing, weights=None) -> np.ndarray:
    """Mean acquisition delay (s) of each region's voxels: ``labels`` (X, Y, Z) with
    region r as r + 1, ``slice_timing`` (Z,) s, optional voxel ``weights`` (X, Y, Z)."""
    lab = np.asarray(labels)
    st = np.asarray(slice_timing, dtype=float)
    if lab.ndim != 3 or st.shape != (lab.shape[2],):
        raise ParameterError(
            "slice_timing", f"array of shape {st.shape}", f"one time per slice ({lab.shape[2]})"
        )
    w = np.ones(lab.shape) if weights is None else np.asarray(weights, dtype=float)
    times = np.broadcast_to(st[None, None, :], lab.shape)
    out = []
    for r in range(1, int(lab.max()) + 1):
        m = lab == r
        total = w[m].sum()
        if total <= 0:
            raise ParameterError("labels", f"region {r} without voxels", "voxels in every region")
        out.append(float((w[m] * times[m]).sum() / total))
    return np.array(out)
