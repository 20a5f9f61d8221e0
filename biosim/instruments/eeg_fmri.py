"""Simultaneous EEG-fMRI: the artifacts the scanner induces in the EEG.

Each electrode's lead forms a loop with effective area vector a_i (m^2) at
position r_i.  By Faraday's law the loop picks up ``EMF_i = -dPhi_i/dt``.

* Gradient artifact: the imaging gradients add Bz = G(t) . r to B0, so
  ``Phi_i = (G(t) . r_i) a_i,z`` and ``EMF_i = -(dG/dt . r_i) a_i,z`` (Anami et
  al. 2003; Yan et al. 2009).  The EPI gradient waveforms (trapezoidal
  readout in x, phase blips in y, slice selection in z) repeat every slice, so
  the artifact is slice-locked and deterministic; it is computed at 20 kHz
  and averaged over each EEG sample (the amplifier's anti-alias integration).
* Ballistocardiogram (BCG): each heartbeat rotates the head slightly (a nod
  of ~1e-3 rad about the left-right axis, peaking ~0.2 s after the R peak),
  rotating every loop in B0: ``EMF_i = -B0 dtheta/dt ((u x a_i) . z)``
  (Mullinger et al. 2013).  Beat-to-beat variability: R-R intervals and nod
  amplitudes vary randomly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ParameterError
from .._core.validation import check_nonnegative, check_positive


@dataclasses.dataclass(frozen=True)
class EPIGradients:
    """Simplified single-shot EPI gradient train of one slice (T/m, s).

    A slice-selection lobe on z, then ``n_lines`` readout lobes on x of
    alternating sign, each ``echo_spacing`` long, with a phase-encode blip on y
    at the end of each.  The train starts ``readout_start`` after the slice's
    excitation (None: 1 ms after the slice-selection lobe).
    :meth:`for_sequence` builds the train of an actual EPI sequence.
    """

    readout_amplitude: float = 0.025  # T/m
    echo_spacing: float = 5e-4  # s (one readout lobe)
    ramp_time: float = 1e-4  # s
    n_lines: int = 16
    slice_amplitude: float = 0.01  # T/m
    slice_duration: float = 3e-3  # s
    blip_amplitude: float = 0.01  # T/m
    blip_duration: float = 1e-4  # s
    readout_start: float | None = None  # s after excitation

    def __post_init__(self):
        for name in ("readout_amplitude", "echo_spacing", "slice_duration", "blip_duration"):
            check_positive(name, getattr(self, name), "")
        if int(self.n_lines) != self.n_lines or self.n_lines < 1:
            raise ParameterError("n_lines", self.n_lines, "a positive integer")
        if not 0 < self.ramp_time <= self.echo_spacing / 2:
            raise ParameterError(
                "ramp_time",
                self.ramp_time,
                f"a ramp in (0, echo_spacing / 2 = {self.echo_spacing / 2:g}] s",
            )
        if self.readout_start is not None:
            check_nonnegative("readout_start", self.readout_start, "s")

    @classmethod
    def for_sequence(cls, sequence) -> EPIGradients:
        """The gradient train of an EPI sequence (:class:`biosim.instruments.mri.GradientEchoEPI`
        or ``SpinEchoEPI``): one readout lobe per phase-encode line (``matrix[1]``) at its
        echo spacing, timed so that the centre of k-space is read at TE."""
        n_lines = int(sequence.matrix[1])
        return cls(
            echo_spacing=sequence.echo_spacing,
            n_lines=n_lines,
            ramp_time=min(1e-4, sequence.echo_spacing / 4),
            blip_duration=min(1e-4, sequence.echo_spacing / 4),
            readout_start=sequence.te - (n_lines // 2) * sequence.echo_spacing,
        )

    def waveform(self, slice_period, fs=20_000.0):
        """Gradient (n, 3) over one slice period sampled at ``fs``."""
        n = int(round(slice_period * fs))
        t = np.arange(n) / fs
        g = np.zeros((n, 3))
        # slice selection (z) then the readout train (x) with blips (y)
        g[t < self.slice_duration, 2] = self.slice_amplitude
        start = self.slice_duration + 1e-3 if self.readout_start is None else self.readout_start
        if start + self.n_lines * self.echo_spacing > slice_period:
            raise ParameterError(
                "slice_period",
                slice_period,
                f">= the EPI echo train of one slice "
                f"({start + self.n_lines * self.echo_spacing:g} s)",
            )
        for k in range(self.n_lines):
            t0 = start + k * self.echo_spacing
            local = t - t0
            ramp = np.clip(np.minimum(local, self.echo_spacing - local) / self.ramp_time, 0, 1)
            on = (local >= 0) & (local < self.echo_spacing)
            g[on, 0] += (-1) ** k * self.readout_amplitude * ramp[on]
            blip = (local >= self.echo_spacing - self.blip_duration) & (local < self.echo_spacing)
            g[blip, 1] += self.blip_amplitude
        return g, fs


def lead_loops(n_channels, mean_area=5e-4, seed=0):
    """Random effective loop-area vectors (n, 3) in m^2 (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n_channels, 3))
    return (
        mean_area
        * v
        / np.linalg.norm(v, axis=1, keepdims=True)
        * rng.uniform(0.5, 1.5, (n_channels, 1))
    )


def gradient_artifact(
    positions,
    loops,
    gradients: EPIGradients,
    slice_period,
    n_slices_total,
    sample_times,
    t_start=0.0,
    sample_interval=None,
    out=None,
):
    """Gradient artifact (C, T) in V at EEG ``sample_times`` (true time, s).

    Slices are acquired back to back from ``t_start`` with period ``slice_period``.
    Each sample is the EMF averaged over [t, t + ``sample_interval``) (the
    amplifier's integrate-and-dump; default: the spacing of ``sample_times``).
    Every sample is computed on its own, so a session can be computed in time
    chunks (pass ``sample_interval``) with the same values as in one call
    (``out``: a (C, T) float64 buffer for the result).  Since
    ``EMF_i = -(dG/dt . r_i) a_i,z``, the three gradient axes are integrated
    once and projected onto the channels.
    """
    g, fs = gradients.waveform(slice_period)
    dgdt = np.gradient(g, 1 / fs, axis=0)  # (n, 3) T/m/s
    coupling = -np.asarray(positions, float).T * np.asarray(loops, float)[:, 2]  # (3, C) m^3
    period_n = dgdt.shape[0]
    t = np.asarray(sample_times, float) - t_start
    if sample_interval is None:
        sample_interval = np.median(np.diff(t)) if len(t) > 1 else 1 / fs
    dt_sample = float(sample_interval)
    cum = np.concatenate([np.zeros((1, 3)), np.cumsum(dgdt, 0)]) / fs  # (n + 1, 3) T/m
    inside = (t >= 0) & (t < n_slices_total * slice_period)
    # average of dG/dt over each sample interval [t, t + dt) (integrate-and-dump)
    phase0 = np.mod(t, slice_period) * fs
    phase1 = phase0 + dt_sample * fs

    def integral(ph):
        whole = np.floor(ph / period_n)
        frac = ph - whole * period_n
        i = np.minimum(frac.astype(np.intp), period_n - 1)
        w = (frac - i)[:, None] / fs
        return whole[:, None] * cum[-1] + cum[i] + w * dgdt[i]

    mean_dgdt = (integral(phase1) - integral(phase0)) * (inside / dt_sample)[:, None]  # (T, 3)
    return np.matmul(coupling.T, mean_dgdt.T, out=out)


def cardiac_r_peaks(duration, mean_rr=0.9, rr_std=0.05, seed=0):
    """R-peak times (s) with beat-to-beat variability."""
    rng = np.random.default_rng(seed)
    rr = rng.normal(mean_rr, rr_std, int(duration / (mean_rr - 3 * rr_std)) + 2)
    peaks = 0.3 + np.cumsum(rr)
    return peaks[peaks < duration]


def bcg_artifact(
    loops, field_strength, r_peaks, sample_times, nod=1e-3, amp_std=0.1, seed=0, out=None
):
    """Ballistocardiogram (C, T) in V: a cardiac-locked nod about the left-right (x) axis.

    Each beat's nod amplitude is drawn up front (one per R peak, in order), and a
    beat contributes to the samples within 10 nod widths of its peak only (the
    rest is below 2e-22 of the peak), so a session can be computed in time chunks
    with the same values as in one call (``out``: a (C, T) float64 buffer for the
    result).
    """
    rng = np.random.default_rng(seed)
    r_peaks = np.asarray(r_peaks, float)
    amps = nod * rng.normal(1.0, amp_std, len(r_peaks))
    t = np.asarray(sample_times, float)
    theta_dot = np.zeros_like(t)
    w = 0.06  # s, width of the nod
    centres = r_peaks + 0.2
    lo = np.searchsorted(t, centres - 10 * w, side="left")
    hi = np.searchsorted(t, centres + 10 * w, side="right")
    for a, c, i0, i1 in zip(amps, centres, lo, hi):
        if i1 > i0:
            s = t[i0:i1] - c
            # theta = a exp(-s^2 / (2 w^2)) -> dtheta/dt
            theta_dot[i0:i1] += a * (-s / w**2) * np.exp(-(s**2) / (2 * w**2))
    coupling = np.cross([1.0, 0.0, 0.0], np.asarray(loops))[:, 2]  # (u x a_i) . z
    return np.multiply.outer(-field_strength * coupling, theta_dot, out=out)
