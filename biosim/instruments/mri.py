"""The virtual MRI scanner: tissue maps + hemodynamics -> 4D EPI time series.

:class:`MRIScanner` combines a sequence (:class:`GradientEchoEPI` or
:class:`SpinEchoEPI`), the closed-form steady state of its excitation
(spoiled GRE / spin echo with finite TR), per-slice EPI image formation
(T2* or T2/R2' decay and off-resonance along the echo train), BOLD as a change
of the relaxation rate, thermal noise, slow drift and physiological noise.

BOLD coupling: the hemodynamic model gives the fractional signal change
``b(t)`` that a GRE acquisition at the model's echo time ``TE_ref`` would see.
The scanner converts it to the relaxation-rate change that produces it,
``dR2*(t) = -ln(1 + b(t)) / TE_ref``, and applies that inside image formation
at its own TE, so a different TE scales the BOLD effect physically.  For spin
echo only the fraction ``se_fraction`` (default 0.5, the capillary
dynamic-averaging share at 3 T; see ``bold_biophysics``) is irreversible.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from .._core.errors import ParameterError
from .._core.progress import progress
from .._core.units import DEG
from .._core.validation import check_positive, check_range
from ..physics.mri import image_formation as imf
from ..physics.mri import signal_equations as se


@dataclasses.dataclass(frozen=True)
class GradientEchoEPI:
    """Single-shot GRE-EPI (all times in s, lengths in m, flip in degrees).

    Parameters
    ----------
    tr, te : float
        Repetition and echo time.
    flip_angle : float
        Degrees, in (0, 180].
    matrix : (int, int)
        In-plane matrix (Nx readout, Ny phase encode), even, >= 4.
    fov : (float, float)
        In-plane field of view, m.
    n_slices : int
    slice_thickness : float
        m.
    echo_spacing : float
        Time between phase-encode lines, s.
    slice_order : {"ascending", "descending", "interleaved"}
    """

    tr: float = 2.0
    te: float = 0.03
    flip_angle: float = 77.0
    matrix: tuple = (64, 64)
    fov: tuple = (0.192, 0.192)
    n_slices: int = 32
    slice_thickness: float = 0.003
    echo_spacing: float = 5e-4
    slice_order: str = "interleaved"

    spin_echo = False

    def __post_init__(self):
        check_positive("tr", self.tr, "s")
        if not 0 < self.te < self.tr:
            raise ParameterError("te", self.te, f"an echo time in (0, TR = {self.tr}) s")
        check_range("flip_angle", self.flip_angle, 0.0, 180.0, "deg")
        if self.flip_angle == 0:
            raise ParameterError("flip_angle", 0.0, "a flip angle in (0, 180] deg")
        if len(self.matrix) != 2 or any(int(m) != m or m < 4 or m % 2 for m in self.matrix):
            raise ParameterError("matrix", self.matrix, "two even integers >= 4")
        if len(self.fov) != 2:
            raise ParameterError("fov", self.fov, "two lengths in m")
        check_positive("fov", self.fov, "m")
        if int(self.n_slices) != self.n_slices or self.n_slices < 1:
            raise ParameterError("n_slices", self.n_slices, "a positive integer")
        check_positive("slice_thickness", self.slice_thickness, "m")
        check_positive("echo_spacing", self.echo_spacing, "s")
        ny = self.matrix[1]
        if self.te < (ny // 2) * self.echo_spacing:
            raise ParameterError(
                "te",
                self.te,
                f">= {ny // 2} x echo_spacing = "
                f"{(ny // 2) * self.echo_spacing:g} s (time to reach k-space centre)",
            )
        readout = self.te + (ny - ny // 2) * self.echo_spacing
        if readout * self.n_slices > self.tr:
            raise ParameterError(
                "tr", self.tr, f">= n_slices x per-slice time = {readout * self.n_slices:g} s"
            )
        if self.slice_order not in ("ascending", "descending", "interleaved"):
            raise ParameterError(
                "slice_order", self.slice_order, "'ascending', 'descending' or 'interleaved'"
            )

    def slice_times(self):
        return imf.slice_timing(self.tr, self.n_slices, self.slice_order)

    def steady_state(self, m0, t1, t2, t2star):
        return se.spoiled_gre(m0, t1, t2star, self.tr, 0.0, self.flip_angle * DEG)


@dataclasses.dataclass(frozen=True)
class SpinEchoEPI(GradientEchoEPI):
    """Single-shot SE-EPI (90 deg excitation, refocusing at TE/2)."""

    flip_angle: float = 90.0
    te: float = 0.07

    spin_echo = True

    def steady_state(self, m0, t1, t2, t2star):
        return se.spin_echo(m0, t1, t2, self.tr, 0.0)


@dataclasses.dataclass(frozen=True)
class TissueMaps:
    """Per-voxel tissue properties, arrays of shape (Nx, Ny, n_slices).

    m0 (a.u.), t1, t2, t2star (s), off_resonance (Hz).
    """

    m0: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t2star: np.ndarray
    off_resonance: np.ndarray

    def __post_init__(self):
        shape = np.shape(self.m0)
        for f in dataclasses.fields(self):
            arr = np.asarray(getattr(self, f.name), dtype=float)
            if arr.shape != shape:
                raise ParameterError(
                    f.name, f"array of shape {arr.shape}", f"shape {shape} like m0"
                )
            if not np.all(np.isfinite(arr)):
                raise ParameterError(f.name, "array with non-finite values", "finite values")
        for name in ("t1", "t2", "t2star"):
            check_positive(name, getattr(self, name), "s")
        if np.any(np.asarray(self.t2star) > np.asarray(self.t2)):
            raise ParameterError("t2star", "values above T2", "T2* <= T2")


@dataclasses.dataclass(frozen=True)
class MRIAcquisition:
    """A reconstructed time series and what a lab's file would say about it."""

    magnitude: np.ndarray  # (Nx, Ny, n_slices, n_volumes)
    phase: np.ndarray  # rad, same shape
    affine: np.ndarray  # voxel -> mm (RAS), 4 x 4
    sidecar: dict  # BIDS keys


@dataclasses.dataclass(frozen=True)
class MRIScanner:
    """Virtual MRI scanner.

    Parameters
    ----------
    field_strength : float
        B0, T.
    sequence : GradientEchoEPI or SpinEchoEPI
    noise_std : float
        Thermal noise per real/imaginary channel in the image, same units as m0.
    drift : float
        Linear signal drift, fraction per second (scanner heating).
    physio_std : float
        Fractional std of physiological (respiratory/cardiac) fluctuations,
        modelled as a sum of a 0.3 Hz and a 1.1 Hz sinusoid aliased at TR.
    se_fraction : float
        Share of the BOLD dR2* that a spin echo does not refocus.
    seed : int
    """

    field_strength: float = 3.0
    sequence: GradientEchoEPI = dataclasses.field(default_factory=GradientEchoEPI)
    noise_std: float = 0.0
    drift: float = 0.0
    physio_std: float = 0.0
    se_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self):
        check_range("field_strength", self.field_strength, 0.05, 11.7, "T")
        check_range("noise_std", self.noise_std, 0.0, np.inf)
        check_range("physio_std", self.physio_std, 0.0, 1.0)
        check_range("se_fraction", self.se_fraction, 0.0, 1.0)

    def affine(self, shape):
        seq = self.sequence
        vox = (
            np.array([seq.fov[0] / seq.matrix[0], seq.fov[1] / seq.matrix[1], seq.slice_thickness])
            * 1e3
        )
        aff = np.diag(np.r_[vox, 1.0])
        aff[:3, 3] = -vox * (np.array(shape[:3]) // 2)
        return aff

    def acquire(
        self,
        tissue: TissueMaps,
        bold_fraction=None,
        reference_echo_time=0.04,
        n_volumes=None,
        show_progress=False,
    ) -> MRIAcquisition:
        """Acquire a time series.

        Parameters
        ----------
        tissue : TissueMaps
            Maps of shape (Nx, Ny, n_slices) matching the sequence matrix.
        bold_fraction : array (n_volumes, Nx, Ny, n_slices), optional
            Fractional BOLD change per voxel and volume from the hemodynamic
            model at GRE echo time ``reference_echo_time`` (s), already at the
            volumes' acquisition times.
        n_volumes : int, optional
            Required when ``bold_fraction`` is None.
        """
        seq = self.sequence
        shape = (seq.matrix[0], seq.matrix[1], seq.n_slices)
        if np.shape(tissue.m0) != shape:
            raise ParameterError(
                "tissue",
                f"maps of shape {np.shape(tissue.m0)}",
                f"shape {shape} (matrix x n_slices)",
            )
        if bold_fraction is None:
            if n_volumes is None:
                raise ParameterError(
                    "n_volumes", None, "a number of volumes when bold_fraction is None"
                )
            bold_fraction = np.zeros((int(n_volumes),) + shape)
        bold_fraction = np.asarray(bold_fraction, dtype=float)
        if bold_fraction.shape[1:] != shape:
            raise ParameterError(
                "bold_fraction",
                f"array of shape {bold_fraction.shape}",
                f"shape (n_volumes,) + {shape}",
            )
        if np.any(bold_fraction <= -1) or not np.all(np.isfinite(bold_fraction)):
            raise ParameterError(
                "bold_fraction", "values <= -1 or non-finite", "finite values > -1"
            )
        check_positive("reference_echo_time", reference_echo_time, "s")
        n_vol = bold_fraction.shape[0]
        rho = np.asarray(seq.steady_state(tissue.m0, tissue.t1, tissue.t2, tissue.t2star))
        r2 = 1.0 / np.asarray(tissue.t2)
        r2p = 1.0 / np.asarray(tissue.t2star) - r2
        d_r2 = -np.log1p(bold_fraction) / reference_echo_time
        key = jax.random.PRNGKey(self.seed)
        times = np.arange(n_vol) * seq.tr
        rng = np.random.default_rng(self.seed)
        phase0 = rng.uniform(0, 2 * np.pi, 2)
        physio = (
            self.physio_std
            * (
                np.sin(2 * np.pi * 0.3 * times + phase0[0])
                + np.sin(2 * np.pi * 1.1 * times + phase0[1])
            )
            / np.sqrt(2)
        )
        gain = (1.0 + self.drift * times) * (1.0 + physio)
        out = np.empty(shape + (n_vol,), complex)
        for v in progress(range(n_vol), total=n_vol, desc="MRI volumes", disable=not show_progress):
            for z in range(seq.n_slices):
                if seq.spin_echo:
                    r2_irr = r2[..., z] + self.se_fraction * d_r2[v, ..., z]
                    r2_rev = r2p[..., z] + (1 - self.se_fraction) * d_r2[v, ..., z]
                else:
                    r2_irr = r2[..., z] + r2p[..., z] + d_r2[v, ..., z]
                    r2_rev = 0.0
                k = imf.epi_kspace(
                    rho[..., z] * gain[v],
                    r2_irr,
                    seq.fov,
                    seq.te,
                    seq.echo_spacing,
                    off_resonance=tissue.off_resonance[..., z],
                    r2prime=r2_rev,
                    spin_echo=seq.spin_echo,
                )
                if self.noise_std > 0:
                    key, sub = jax.random.split(key)
                    k = imf.add_thermal_noise(k, self.noise_std, sub)
                out[..., z, v] = np.asarray(imf.reconstruct(k))
        sidecar = {
            "RepetitionTime": float(seq.tr),
            "EchoTime": float(seq.te),
            "FlipAngle": float(seq.flip_angle),
            "MagneticFieldStrength": float(self.field_strength),
            "SliceTiming": [float(t) for t in seq.slice_times()],
            "PulseSequenceType": "SE-EPI" if seq.spin_echo else "GRE-EPI",
            "EffectiveEchoSpacing": float(seq.echo_spacing),
            "PhaseEncodingDirection": "j",
            "Manufacturer": "biosim",
            "ManufacturersModelName": "virtual MRI scanner",
        }
        return MRIAcquisition(np.abs(out), np.angle(out), self.affine(shape), sidecar)
