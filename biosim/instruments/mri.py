"""The virtual MRI scanner: tissue maps + hemodynamics -> 4D EPI time series.

:class:`MRIScanner` combines a sequence (:class:`GradientEchoEPI` or
:class:`SpinEchoEPI`), the closed-form steady state of its excitation
(spoiled GRE / spin echo with finite TR), EPI image formation with the fast line
model of :func:`biosim.physics.mri.image_formation.epi_hybrid` (T2* or T2/R2'
decay and off-resonance along the echo train, batched over slices and chunks of
volumes, each voxel as ``SUBVOXELS`` sources along phase encode in its share of
the field), BOLD as a change of the relaxation rate, partial volume by tissue
compartment, rigid head motion with spin history, a B0 field that moves with the
head, through-slice dephasing, a hook for physiological fluctuations, and
thermal noise.

BOLD coupling: the hemodynamic model gives the fractional signal change
``b(t)`` that a GRE acquisition at the model's echo time ``TE_ref`` would see.
The scanner converts it to the relaxation-rate change that produces it,
``dR2*(t) = -ln(1 + b(t)) / TE_ref``, and applies that inside image formation
at its own TE, so a different TE scales the BOLD effect physically.  For spin
echo only the fraction ``se_fraction`` (default 0.5, the capillary
dynamic-averaging share at 3 T; see ``bold_biophysics``) is irreversible.

Motion: the head frame is the tissue grid's frame at zero motion (positions in m
through the acquisition affine).  Slice ``k`` of volume ``v`` is acquired at
``v TR + slice_time[k]`` with the pose of that instant; the object (transverse
magnetisation at TE, relaxation rates, off-resonance) is sampled at the head
positions that sit in that slice's voxels by trilinear interpolation, which
blurs the moved object by the 2-voxel triangle kernel (none at integer shifts,
most at half-voxel shifts).  Spin history: each head voxel's longitudinal
magnetisation is tracked through the excitations it actually receives (ideal
boxcar slice profile: the slice whose centre is nearest), ``Mz+ = Mz- cos(flip)``
and ``Mz -> M0 + (Mz - M0) exp(-dt / T1)`` in between (Friston et al. 1996, MRM
35:346); the signal scales with ``Mz-`` relative to the steady state.  A scanner
slice that samples (through the trilinear band) a head voxel excited by a
neighbouring slice uses the ratio before that voxel's own excitation nearest in
time, so a constant offset leaves the steady state unchanged.  For spin
echo the excitation is 90 deg and the refocusing pulse's effect on ``Mz`` is
neglected.

Field: the off-resonance ``gamma_bar B0 b^T F b`` follows the head's
orientation; GRE signal is multiplied by ``|sinc(dF/dz * slice_thickness * TE)|``
(through-slice dephasing, dF/dz along the slice normal at the current pose).  A
spin echo refocuses that static dephasing at TE; its residual along the echo
train (lines away from TE) is not modelled.

Cost: the object is formed per chunk of volumes (static head) or per volume on a
band of ``2w + 1`` head slices per scanner slice (moving head, ``w`` the largest
through-slice displacement in slices, at least 1), then
:func:`~biosim.physics.mri.image_formation.epi_hybrid` runs batched over all
slices; memory stays bounded by the chunk (about 1.5 million voxels).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ParameterError
from .._core.progress import progress
from .._core.units import DEG, GAMMA_BAR_PROTON
from .._core.validation import check_positive, check_range
from ..physics.mri import image_formation as imf
from ..physics.mri import signal_equations as se
from ..physics.mri.tissue import FIELD_STRENGTH_RANGE


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


GAMMA_BAR = GAMMA_BAR_PROTON  # Hz/T
_SIX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))  # xx, yy, zz, xy, xz, yz


@dataclasses.dataclass(frozen=True)
class TissueMaps:
    """Per-voxel tissue properties on the acquisition grid (X, Y, n_slices).

    ``m0`` (a.u.), ``t1``, ``t2``, ``t2star`` (s) are (X, Y, Z), or (C, X, Y, Z)
    for C partial-volume compartments (then ``m0`` already includes each
    compartment's volume fraction and the voxel's signal is the sum of the
    compartments' signals).  ``off_resonance`` (Hz) is (X, Y, Z) and moves with
    the head.
    """

    m0: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t2star: np.ndarray
    off_resonance: np.ndarray

    def __post_init__(self):
        shape = np.shape(self.m0)
        if len(shape) not in (3, 4):
            raise ParameterError("m0", f"array of shape {shape}", "(X, Y, Z) or (C, X, Y, Z)")
        for f in dataclasses.fields(self):
            arr = np.asarray(getattr(self, f.name), dtype=float)
            want = shape[-3:] if f.name == "off_resonance" else shape
            if arr.shape != want:
                raise ParameterError(f.name, f"array of shape {arr.shape}", f"shape {want}")
            if not np.all(np.isfinite(arr)):
                raise ParameterError(f.name, "array with non-finite values", "finite values")
        for name in ("t1", "t2", "t2star"):
            check_positive(name, getattr(self, name), "s")
        if np.any(np.asarray(self.m0) < 0):
            raise ParameterError("m0", "negative values", "m0 >= 0")
        if np.any(np.asarray(self.t2star) > np.asarray(self.t2)):
            raise ParameterError("t2star", "values above T2", "T2* <= T2")

    @property
    def shape(self) -> tuple:
        """Spatial shape (X, Y, Z)."""
        return np.shape(self.off_resonance)

    def compartments(self):
        """``(m0, t1, t2, t2star)`` as (C, X, Y, Z) float arrays (C = 1 without compartments)."""
        out = [np.asarray(getattr(self, n), dtype=float) for n in ("m0", "t1", "t2", "t2star")]
        return [a[None] if a.ndim == 3 else a for a in out]


@dataclasses.dataclass(frozen=True)
class FieldMap:
    """Susceptibility-induced B0 shift in the head frame, relative (ppm).

    ``components`` (6, X, Y, Z) are ``(xx, yy, zz, xy, xz, yz)`` of the symmetric
    tensor F such that, with B0 along the unit vector ``b`` of the head frame,
    the relative shift is ``b^T F b`` (``b = R^T z`` for head rotation R; F_zz at
    rest).  The off-resonance is ``gamma_bar * B0 * shift * 1e-6`` Hz.
    """

    components: np.ndarray

    def __post_init__(self):
        c = np.asarray(self.components, dtype=float)
        if c.ndim != 4 or c.shape[0] != 6:
            raise ParameterError("components", f"array of shape {c.shape}", "(6, X, Y, Z) ppm")
        if not np.all(np.isfinite(c)):
            raise ParameterError("components", "array with non-finite values", "finite ppm")

    @classmethod
    def from_zz(cls, shift) -> FieldMap:
        """A field map with only ``F_zz = shift`` (ppm, (X, Y, Z))."""
        shift = np.asarray(shift, dtype=float)
        comp = np.zeros((6,) + shift.shape)
        comp[2] = shift
        return cls(comp)

    def shift(self, b) -> np.ndarray:
        """Relative shift (ppm, (X, Y, Z)) for B0 along the head-frame unit vector ``b``."""
        return np.tensordot(_field_weights(b), np.asarray(self.components, float), axes=1)


def _field_weights(b):
    """Weights of (xx, yy, zz, xy, xz, yz) in ``b^T F b``."""
    b = np.asarray(b, dtype=float)
    return np.array([b[i] * b[j] * (1.0 if i == j else 2.0) for i, j in _SIX])


@dataclasses.dataclass(frozen=True)
class RegionBOLD:
    """BOLD of brain regions, without a dense 4D array.

    Parameters
    ----------
    times : array (n_t,)
        Increasing times, s (the acquisition's slice times must lie within).
    fraction : array (n_t, R)
        Fractional GRE BOLD change of each region at the reference echo time.
    weights : scipy.sparse matrix (R, X*Y*Z)
        Volume fraction of each voxel (C-order ravel of (X, Y, Z)) occupied by
        region r's grey matter.
    compartment : int
        The tissue compartment the regions belong to (grey matter, 0).
    compartment_fraction : array (X*Y*Z,), optional
        That compartment's volume fraction of each voxel; default the weights'
        column sums (regions that tile the compartment).  Region r's dR2* acts on
        the share ``weights[r] / compartment_fraction`` of the compartment.
    """

    times: np.ndarray
    fraction: np.ndarray
    weights: object
    compartment: int = 0
    compartment_fraction: np.ndarray | None = None

    def __post_init__(self):
        import scipy.sparse as sp

        t = np.asarray(self.times, dtype=float)
        if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0) or not np.all(np.isfinite(t)):
            raise ParameterError(
                "times", f"array of shape {t.shape}", "increasing times (n_t >= 2)"
            )
        f = np.asarray(self.fraction, dtype=float)
        if f.ndim != 2 or f.shape[0] != t.size:
            raise ParameterError("fraction", f"array of shape {f.shape}", f"shape ({t.size}, R)")
        if not np.all(np.isfinite(f)) or np.any(f <= -1):
            raise ParameterError("fraction", "values <= -1 or non-finite", "finite values > -1")
        if not sp.issparse(self.weights) or self.weights.shape[0] != f.shape[1]:
            raise ParameterError(
                "weights", type(self.weights).__name__, f"a scipy.sparse matrix ({f.shape[1]}, N)"
            )
        w = self.weights.tocsr()
        if w.nnz and (np.any(w.data < 0) or np.any(w.data > 1) or not np.all(np.isfinite(w.data))):
            raise ParameterError("weights", "values outside [0, 1]", "volume fractions in [0, 1]")
        if int(self.compartment) != self.compartment or self.compartment < 0:
            raise ParameterError("compartment", self.compartment, "a compartment index >= 0")
        total = np.asarray(w.sum(axis=0)).ravel()
        if self.compartment_fraction is not None:
            cf = np.asarray(self.compartment_fraction, dtype=float)
            if cf.shape != total.shape:
                raise ParameterError(
                    "compartment_fraction", f"array of shape {cf.shape}", f"shape {total.shape}"
                )
            if np.any(total > cf * (1 + 1e-9) + 1e-12):
                raise ParameterError(
                    "compartment_fraction",
                    "values below the regions' summed weights",
                    "each voxel's compartment fraction >= the sum of its region weights",
                )

    @property
    def n_regions(self) -> int:
        return int(np.shape(self.fraction)[1])

    def shares(self):
        """Sparse (R, N) share of each voxel's compartment held by region r."""
        import scipy.sparse as sp

        w = self.weights.tocsr().astype(float)
        cf = (
            np.asarray(w.sum(axis=0)).ravel()
            if self.compartment_fraction is None
            else np.asarray(self.compartment_fraction, dtype=float)
        )
        inv = np.divide(1.0, cf, out=np.zeros_like(cf), where=cf > 0)
        return (w @ sp.diags(inv)).tocsc()

    def d_r2star(self, times, reference_echo_time) -> np.ndarray:
        """dR2* (1/s) of every region at ``times`` (...,), shape (..., R), linear in time."""
        t = np.asarray(times, dtype=float)
        tt = np.asarray(self.times, dtype=float)
        if np.any(t < tt[0]) or np.any(t > tt[-1]):
            raise ParameterError(
                "region_bold.times",
                f"[{tt[0]:g}, {tt[-1]:g}] s",
                f"a span covering the acquisition ({t.min():g} to {t.max():g} s)",
            )
        d = -np.log1p(np.asarray(self.fraction, dtype=float)) / reference_echo_time
        flat = t.ravel()
        out = np.stack([np.interp(flat, tt, d[:, r]) for r in range(d.shape[1])], -1)
        return out.reshape(t.shape + (d.shape[1],))


@dataclasses.dataclass(frozen=True)
class MRIAcquisition:
    """A reconstructed time series and what a lab's file would say about it."""

    magnitude: np.ndarray  # float32 (Nx, Ny, n_slices, n_volumes)
    phase: np.ndarray | None  # rad, same shape, only with keep_phase
    affine: np.ndarray  # voxel -> mm (RAS), 4 x 4
    sidecar: dict  # BIDS keys


SUBVOXELS = 4  # default sources per voxel along phase encode (see epi_hybrid)
_SLICE_BATCH = 8  # slices per batch in the motion path: temporaries stay cache-sized


def _sample_bands(tinv, arrays, w, k0=0):
    """Trilinear samples (Z, X, Y) of band arrays (2w+1, Z, X, Y) at the head-voxel
    positions ``tinv[k] @ (x, y, k, 1)`` of every scanner slice k (band j of slice
    k is head slice k + j - w; points outside the grid see zeros).  ``arrays`` hold
    scanner slices ``k0, k0 + 1, ...`` and ``tinv`` their transforms."""
    nb, nz, nx, ny = arrays[0].shape
    zr = np.arange(nz)
    ks = zr + k0
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    u = [
        tinv[:, r, 0, None, None] * ii
        + tinv[:, r, 1, None, None] * jj
        + (tinv[:, r, 2] * ks + tinv[:, r, 3])[:, None, None]
        for r in range(3)
    ]
    ux = np.clip(u[0], -1.0, nx)
    uy = np.clip(u[1], -1.0, ny)
    uz = u[2] - ks[:, None, None] + w  # band coordinate, in [0, 2w) by the choice of w
    fx, fy, fz = np.floor(ux), np.floor(uy), np.floor(uz)
    wx = (ux - fx).astype(np.float32)
    wy = (uy - fy).astype(np.float32)
    wz = (uz - fz).astype(np.float32)
    px, py = nx + 3, ny + 3  # one zero column before, two after (x = n is a corner)
    base = (
        ((fz.astype(np.int64) * nz + zr[:, None, None]) * px + fx.astype(np.int64) + 1) * py
        + fy.astype(np.int64)
        + 1
    )
    flats = []
    for arr in arrays:
        if arr is None:
            flats.append(None)
            continue
        pad = np.zeros((nb, nz, px, py), arr.dtype)
        pad[:, :, 1 : nx + 1, 1 : ny + 1] = arr
        flats.append(pad.ravel())
    outs = [None if f is None else np.zeros((nz, nx, ny), f.dtype) for f in flats]
    for dz, gz in ((0, 1 - wz), (1, wz)):
        for dx, gx in ((0, 1 - wx), (1, wx)):
            gzx = gz * gx
            for dy, gy in ((0, 1 - wy), (1, wy)):
                wt = gzx * gy
                idx = base + (dz * nz * px * py + dx * py + dy)
                for f, o in zip(flats, outs, strict=True):
                    if f is not None:
                        o += f[idx] * wt
    return outs


def _band_take(arr, kh):
    """``arr[:, kh]`` for (n, Z, X, Y) maps and head-slice indices ``kh`` (2w+1, Z),
    linearly extrapolated beyond the slab so that finite differences across its
    edges equal the one-sided ones."""
    nz = arr.shape[1]
    out = arr[:, np.clip(kh, 0, nz - 1)]
    if nz > 1:
        below, above = kh < 0, kh >= nz
        step0 = arr[:, 1] - arr[:, 0]
        step1 = arr[:, nz - 1] - arr[:, nz - 2]
        for j, k in zip(*np.nonzero(below), strict=True):
            out[:, j, k] = arr[:, 0] + kh[j, k] * step0
        for j, k in zip(*np.nonzero(above), strict=True):
            out[:, j, k] = arr[:, nz - 1] + (kh[j, k] - nz + 1) * step1
    return out


def _zxy(a):
    """(..., X, Y, Z) -> (..., Z, X, Y)."""
    return np.moveaxis(np.asarray(a), -1, -3)


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
    se_fraction : float
        Share of the BOLD dR2* that a spin echo does not refocus.
    seed : int
    """

    field_strength: float = 3.0
    sequence: GradientEchoEPI = dataclasses.field(default_factory=GradientEchoEPI)
    noise_std: float = 0.0
    drift: float = 0.0
    se_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self):
        check_range("field_strength", self.field_strength, *FIELD_STRENGTH_RANGE, "T")
        check_range("noise_std", self.noise_std, 0.0, np.inf)
        check_range("se_fraction", self.se_fraction, 0.0, 1.0)

    def affine(self, shape):
        """Default voxel -> mm affine of the acquisition grid, centred at voxel shape // 2."""
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
        *,
        region_bold: RegionBOLD | None = None,
        motion=None,
        field: FieldMap | None = None,
        fluctuation=None,
        keep_phase: bool = False,
        affine=None,
        chunk_volumes: int | None = None,
        subvoxels: int = SUBVOXELS,
    ) -> MRIAcquisition:
        """Acquire a time series.

        Parameters
        ----------
        tissue : TissueMaps
            Maps (X, Y, n_slices), or (C, X, Y, n_slices) by compartment, on the
            acquisition grid (the head frame at zero motion).
        bold_fraction : array (n_volumes, X, Y, n_slices), optional
            Fractional BOLD change per voxel and volume from the hemodynamic
            model at GRE echo time ``reference_echo_time`` (s), already at the
            volumes' acquisition times; acts on every compartment of the voxel.
        reference_echo_time : float
            s.
        n_volumes : int, optional
            Required unless ``bold_fraction`` is given.
        show_progress : bool
            Progress bar over chunks of volumes.
        region_bold : RegionBOLD, optional
            BOLD of regions (instead of ``bold_fraction``), evaluated at each
            slice's acquisition time.
        motion : biosim.geometry.motion.RigidMotion, optional
            Head pose over the run; its times must cover the acquisition.
        field : FieldMap, optional
            Susceptibility field (head frame); off-resonance and, for GRE,
            through-slice dephasing ``|sinc(dF/dz * slice_thickness * TE)|``.
        fluctuation : callable, optional
            ``fluctuation(volume_indices (n,), slice_times (n, n_slices) s)`` ->
            (n, X, Y, n_slices) fractional gain minus one per head-frame voxel
            (e.g. :class:`biosim.instruments.mri_noise.FluctuationModel`).
        keep_phase : bool
            Also return the phase images.
        affine : array (4, 4), optional
            Voxel -> mm of the acquisition grid (default :meth:`affine`).
        chunk_volumes : int, optional
            Volumes formed at once (default: about 1.5 million voxels).
        subvoxels : int
            Sources per voxel along phase encode in image formation (see
            :func:`~biosim.physics.mri.image_formation.epi_hybrid`); more than one
            removes the stripes that a non-uniform field paints on point sources.
        """
        from ..geometry.motion import RigidMotion

        seq = self.sequence
        shape = (seq.matrix[0], seq.matrix[1], seq.n_slices)
        nx, ny, nz = shape
        if not isinstance(tissue, TissueMaps):
            raise ParameterError("tissue", type(tissue).__name__, "a TissueMaps")
        if tissue.shape != shape:
            raise ParameterError(
                "tissue", f"maps of shape {tissue.shape}", f"shape {shape} (matrix x n_slices)"
            )
        check_positive("reference_echo_time", reference_echo_time, "s")
        if bold_fraction is not None and region_bold is not None:
            raise ParameterError("region_bold", "given with bold_fraction", "one of the two")
        if bold_fraction is not None:
            bold_fraction = np.asarray(bold_fraction, dtype=float)
            if bold_fraction.ndim != 4 or bold_fraction.shape[1:] != shape:
                raise ParameterError(
                    "bold_fraction",
                    f"array of shape {bold_fraction.shape}",
                    f"shape (n_volumes,) + {shape}",
                )
            if np.any(bold_fraction <= -1) or not np.all(np.isfinite(bold_fraction)):
                raise ParameterError(
                    "bold_fraction", "values <= -1 or non-finite", "finite values > -1"
                )
            if n_volumes is not None and int(n_volumes) != bold_fraction.shape[0]:
                raise ParameterError(
                    "n_volumes", n_volumes, f"{bold_fraction.shape[0]} (bold_fraction's length)"
                )
            n_vol = bold_fraction.shape[0]
        else:
            if n_volumes is None or int(n_volumes) != n_volumes or n_volumes < 1:
                raise ParameterError(
                    "n_volumes", n_volumes, "a positive number of volumes without bold_fraction"
                )
            n_vol = int(n_volumes)
        m0, t1, t2, t2s = tissue.compartments()
        n_comp = m0.shape[0]
        nvox = nx * ny * nz
        if region_bold is not None:
            if not isinstance(region_bold, RegionBOLD):
                raise ParameterError("region_bold", type(region_bold).__name__, "a RegionBOLD")
            if region_bold.weights.shape[1] != nvox:
                raise ParameterError(
                    "region_bold.weights",
                    f"matrix of shape {region_bold.weights.shape}",
                    f"({region_bold.n_regions}, {nvox}) = regions x voxels of {shape}",
                )
            if region_bold.compartment >= n_comp:
                raise ParameterError(
                    "region_bold.compartment", region_bold.compartment, f"< {n_comp} compartments"
                )
        st = np.asarray(seq.slice_times(), dtype=float)
        t_all = np.arange(n_vol)[:, None] * seq.tr + st[None, :]  # (n_vol, nz)
        if motion is not None:
            if not isinstance(motion, RigidMotion):
                raise ParameterError("motion", type(motion).__name__, "a RigidMotion")
            mt = np.asarray(motion.times, dtype=float)
            if mt[0] > t_all.min() or mt[-1] < t_all.max():
                raise ParameterError(
                    "motion.times",
                    f"[{mt[0]:g}, {mt[-1]:g}] s",
                    f"a span covering the acquisition (0 to {t_all.max():g} s)",
                )
        if field is not None:
            if not isinstance(field, FieldMap):
                raise ParameterError("field", type(field).__name__, "a FieldMap")
            if np.shape(field.components)[1:] != shape:
                raise ParameterError(
                    "field.components",
                    f"array of shape {np.shape(field.components)}",
                    f"(6,) + {shape}",
                )
        if fluctuation is not None and not callable(fluctuation):
            raise ParameterError("fluctuation", type(fluctuation).__name__, "a callable")
        aff = self.affine(shape) if affine is None else np.asarray(affine, dtype=float)
        if (
            aff.shape != (4, 4)
            or not np.all(np.isfinite(aff))
            or abs(np.linalg.det(aff[:3, :3])) < 1e-12
            or not np.allclose(aff[3], [0, 0, 0, 1])
        ):
            raise ParameterError("affine", "this matrix", "an invertible 4 x 4 voxel -> mm affine")
        if chunk_volumes is None:
            chunk_volumes = max(1, int(1.5e6 // nvox))
        if int(chunk_volumes) != chunk_volumes or chunk_volumes < 1:
            raise ParameterError("chunk_volumes", chunk_volumes, "a positive integer")
        chunk_volumes = int(chunk_volumes)
        if int(subvoxels) != subvoxels or subvoxels < 1:
            raise ParameterError("subvoxels", subvoxels, "a positive integer")

        # static head-frame maps, (C, Z, X, Y)
        te = seq.te
        ss = np.asarray(seq.steady_state(m0, t1, t2, t2s), dtype=float)
        r2 = 1.0 / t2
        r2p = 1.0 / t2s - r2
        base = ss * np.exp(-te * (r2 if seq.spin_echo else r2 + r2p))
        st_maps = {
            "base": _zxy(base),
            "r2": _zxy(r2),
            "r2p": _zxy(r2p),
            "t1": _zxy(t1),
        }
        hz_per_ppm = GAMMA_BAR * self.field_strength * 1e-6
        off0 = _zxy(np.asarray(tissue.off_resonance, dtype=float))
        fcomp = None if field is None else _zxy(np.asarray(field.components, dtype=float))
        spacing = np.linalg.norm(aff[:3, :3], axis=0) * 1e-3  # m per voxel step
        d_region = shares = None
        if region_bold is not None:
            d_region = region_bold.d_r2star(t_all, reference_echo_time)  # (n_vol, nz, R)
            cols = region_bold.shares()
            grid = np.arange(nx * ny) * nz
            shares = [cols[:, grid + k].T.tocsr() for k in range(nz)]  # (X*Y, R) per slice
        vol_times = np.arange(n_vol) * seq.tr
        gain = 1.0 + self.drift * vol_times  # physiological noise: the fluctuation hook
        rng = np.random.default_rng(self.seed)  # thermal noise
        ctx = dict(
            maps=st_maps,
            off0=off0,
            fcomp=fcomp,
            hz=hz_per_ppm,
            spacing=spacing,
            d_region=d_region,
            shares=shares,
            region_comp=None if region_bold is None else int(region_bold.compartment),
            bold=bold_fraction,
            te_ref=reference_echo_time,
        )
        motion_state = None
        if motion is not None:
            motion_state = self._initial_spin_state(ctx, motion, aff, t_all, st)

        out = np.empty(shape + (n_vol,), np.float32)
        phase = np.empty(shape + (n_vol,), np.float32) if keep_phase else None
        starts = range(0, n_vol, chunk_volumes)
        for v0 in progress(
            starts, total=len(starts), desc="MRI volumes", disable=not show_progress
        ):
            v1 = min(n_vol, v0 + chunk_volumes)
            vols = np.arange(v0, v1)
            fl = None
            if fluctuation is not None:
                fl = np.asarray(fluctuation(vols, t_all[v0:v1]), dtype=float)
                if fl.shape != (v1 - v0,) + shape:
                    raise ParameterError(
                        "fluctuation", f"output of shape {fl.shape}", f"shape {(v1 - v0,) + shape}"
                    )
                if not np.all(np.isfinite(fl)) or np.any(fl <= -1):
                    raise ParameterError(
                        "fluctuation", "output <= -1 or non-finite", "finite gains - 1 > -1"
                    )
                fl = _zxy(fl)
            if motion is None:
                s, rate, rev, df = self._static_chunk(ctx, vols, fl)
            else:
                s, rate, rev, df = self._moving_chunk(ctx, vols, fl, t_all, motion_state)
            s *= gain[v0:v1, None, None, None]
            lines = imf.epi_hybrid(
                s,
                rate,
                seq.echo_spacing,
                off_resonance=df,
                r2prime=rev if seq.spin_echo else 0.0,
                spin_echo=seq.spin_echo,
                dtype=np.complex64,
                subvoxels=int(subvoxels),
                echo_time=seq.te,
            )
            img = imf.reconstruct_hybrid(lines)  # (n, Z, X, Y)
            if self.noise_std > 0:
                noise = rng.standard_normal((2,) + img.shape, dtype=np.float32)
                img += self.noise_std * (noise[0] + 1j * noise[1])
            out[..., v0:v1] = np.transpose(np.abs(img), (2, 3, 1, 0))
            if keep_phase:
                phase[..., v0:v1] = np.transpose(np.angle(img), (2, 3, 1, 0))
        sidecar = {
            "RepetitionTime": float(seq.tr),
            "EchoTime": float(seq.te),
            "FlipAngle": float(seq.flip_angle),
            "MagneticFieldStrength": float(self.field_strength),
            "SliceTiming": [float(t) for t in st],
            "PulseSequenceType": "SE-EPI" if seq.spin_echo else "GRE-EPI",
            "EffectiveEchoSpacing": float(seq.echo_spacing),
            "TotalReadoutTime": float((ny - 1) * seq.echo_spacing),
            "PhaseEncodingDirection": "j",
            "Manufacturer": "biosim",
            "ManufacturersModelName": "virtual MRI scanner",
        }
        return MRIAcquisition(out, phase, aff, sidecar)

    # -- the object at the echo time -------------------------------------------------

    def _band_object(self, state, h, d_dense, region, fl, df, dfdz):
        """Transverse magnetisation at TE (complex), echo-train rate and reversible
        rate (spin echo) on the (C, 2w+1, Z, X, Y) bands, float32: the compartments'
        signals times spin history ``h`` summed, rates signal-weighted, region BOLD
        on its compartment, dense BOLD, fluctuations, GRE dropout and TE phase."""
        seq = self.sequence
        bm = state["band"]
        k_irr = self.se_fraction if seq.spin_echo else 1.0
        k_rev = 1.0 - self.se_fraction
        csum = lambda a, b: np.einsum("c...,c...->...", a, b)  # noqa: E731
        s = csum(bm["base"], h)
        sr = csum(bm["base_irr"], h)
        srv = csum(bm["base_rev"], h) if seq.spin_echo else None
        if region is not None:
            c, g, wd = region
            hbc, gm1 = bm["base"][c] * h[c], g - 1.0
            s += hbc * gm1
            sr += hbc * (gm1 * bm["irr"][c] + g * (k_irr * wd))
            if srv is not None:
                srv += hbc * (gm1 * bm["r2p"][c] + g * (k_rev * wd))
        inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        rate = sr * inv
        rev = None if srv is None else srv * inv
        if d_dense is not None:
            s *= np.exp(-seq.te * k_irr * d_dense)
            rate += k_irr * d_dense
            if rev is not None:
                rev += k_rev * d_dense
        if fl is not None:
            s *= 1.0 + fl
        if seq.spin_echo:
            return s.astype(np.complex64), rate, rev
        x = np.float32(np.pi * seq.slice_thickness * seq.te) * dfdz
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = np.where(x == 0, np.float32(1.0), np.abs(np.sin(x) / x))
        # the TE phase is applied after the moved positions are sampled (from the sampled
        # field): interpolating phase-wrapped values between voxels would lose amplitude
        # depending on the sub-voxel position of the head
        return (s * drop).astype(np.complex64), rate, rev

    def _static_sums(self, ctx):
        """Compartment sums of the motionless object (Z, X, Y), float32: signal at TE,
        signal-weighted rates, the region compartment's own terms, the GRE
        dropout-and-phase factor and the off-resonance."""
        if "static" in ctx:
            return ctx["static"]
        seq = self.sequence
        m = ctx["maps"]
        irr = m["r2"] if seq.spin_echo else m["r2"] + m["r2p"]
        rev = m["r2p"]
        s0 = m["base"].sum(0)
        inv = np.divide(1.0, s0, out=np.zeros_like(s0), where=s0 > 0)
        df = ctx["off0"]
        if ctx["fcomp"] is not None:
            df = df + ctx["hz"] * ctx["fcomp"][2]
        if seq.spin_echo:
            factor = np.ones(df.shape, np.complex64)
        else:
            nz = seq.n_slices
            dfdz = np.gradient(df, axis=0) / ctx["spacing"][2] if nz > 1 else np.zeros_like(df)
            factor = np.abs(np.sinc(dfdz * seq.slice_thickness * seq.te)) * np.exp(
                -2j * np.pi * seq.te * df
            )
        f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
        out = {
            "s0": f32(s0),
            "rate0": f32((m["base"] * irr).sum(0) * inv),
            "rev0": f32((m["base"] * rev).sum(0) * inv),
            "factor": factor.astype(np.complex64),
            "df": f32(df),
        }
        c = ctx["region_comp"]
        if c is not None:
            out.update(base_c=f32(m["base"][c]), irr_c=f32(irr[c]), rev_c=f32(rev[c]))
        ctx["static"] = out
        return out

    def _static_chunk(self, ctx, vols, fl):
        """The motionless object of volumes ``vols`` (n, Z, X, Y): the compartment sums
        are fixed; BOLD changes them per slice time (region) or volume (dense)."""
        seq = self.sequence
        nx, ny, nz = seq.matrix[0], seq.matrix[1], seq.n_slices
        n = len(vols)
        st = self._static_sums(ctx)
        k_irr = self.se_fraction if seq.spin_echo else 1.0
        k_rev = 1.0 - self.se_fraction
        shape = (n, nz, nx, ny)
        if ctx["bold"] is not None:
            d = (-np.log1p(_zxy(ctx["bold"][vols])) / ctx["te_ref"]).astype(np.float32)
            s = st["s0"] * np.exp(-seq.te * k_irr * d)
            rate = st["rate0"] + k_irr * d
            rev = st["rev0"] + k_rev * d
        elif ctx["d_region"] is not None:
            g = np.empty(shape, np.float32)
            wd = np.empty(shape, np.float32)
            for k in range(nz):
                d = ctx["d_region"][vols, k]  # (n, R)
                e = np.exp(-seq.te * k_irr * d)
                g[:, k] = (ctx["shares"][k] @ (e - 1).T).T.reshape(n, nx, ny) + 1.0
                wd[:, k] = (ctx["shares"][k] @ (e * d).T).T.reshape(n, nx, ny) / g[:, k]
            bc = st["base_c"]
            s = st["s0"] + bc * (g - 1)
            inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
            rate = (st["s0"] * st["rate0"] + bc * ((g - 1) * st["irr_c"] + g * k_irr * wd)) * inv
            rev = (st["s0"] * st["rev0"] + bc * ((g - 1) * st["rev_c"] + g * k_rev * wd)) * inv
        else:
            s = np.broadcast_to(st["s0"], shape)
            rate = np.broadcast_to(st["rate0"], shape)
            rev = np.broadcast_to(st["rev0"], shape)
        if fl is not None:
            s = s * (1.0 + fl.astype(np.float32))
        return (
            s * st["factor"],
            rate,
            rev if seq.spin_echo else None,
            np.broadcast_to(st["df"], shape),
        )

    # -- motion -------------------------------------------------------------------------

    def _flip_cos(self):
        seq = self.sequence
        return 0.0 if seq.spin_echo else float(np.cos(seq.flip_angle * DEG))

    def _initial_spin_state(self, ctx, motion, aff, t_all, st):
        """Transforms of every slice time, the band half-width, shifted static maps, and
        the steady state under the pose at the first excitation: each head voxel last
        excited one TR before its slice's time, ``Mz+ = Mz_ss cos(flip)`` (relative to
        M0); voxels outside the slab fully relaxed."""
        seq = self.sequence
        nx, ny, nz = seq.matrix[0], seq.matrix[1], seq.n_slices
        cos_a = self._flip_cos()
        a_m = np.diag([1e-3, 1e-3, 1e-3, 1.0]) @ aff
        a_inv = np.linalg.inv(a_m)
        mats = motion.matrices(t_all)  # (n_vol, nz, 4, 4) head -> scanner, m
        fwd = a_inv @ mats @ a_m  # head voxel -> scanner voxel
        inv = np.linalg.inv(fwd)
        # band half-width: how far (in head slices) a slice's voxels reach
        corners = np.array([[x, y] for x in (0, nx - 1) for y in (0, ny - 1)], float)
        k = np.arange(nz)[None, :, None]
        uz = (
            inv[..., 2, 0, None] * corners[:, 0]
            + inv[..., 2, 1, None] * corners[:, 1]
            + inv[..., 2, 2, None] * k
            + inv[..., 2, 3, None]
        )
        # slice k samples head slices k - w .. k + w; excitations reach as far
        w = max(1, int(np.ceil(np.max(np.abs(uz - k)) - 1e-9)))
        kh = np.arange(nz)[None, :] + np.arange(2 * w + 1)[:, None] - w  # (2w+1, Z)
        valid = (kh >= 0) & (kh < nz)
        khc = np.clip(kh, 0, nz - 1)
        maps = ctx["maps"]
        e1 = np.exp(-seq.tr / maps["t1"])
        m_ss = (1 - e1) / (1 - e1 * cos_a)
        f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
        band = {key: f32(m[:, khc]) for key, m in maps.items()}  # (C, 2w+1, Z, X, Y)
        band["base"] *= valid[:, :, None, None]
        band["irr"] = band["r2"] if seq.spin_echo else band["r2"] + band["r2p"]
        band["base_irr"] = band["base"] * band["irr"]
        band["base_rev"] = band["base"] * band["r2p"]
        band_batches = [  # contiguous per batch of scanner slices (see _moving_chunk)
            {key: np.ascontiguousarray(m[:, :, k0 : k0 + _SLICE_BATCH]) for key, m in band.items()}
            for k0 in range(0, nz, _SLICE_BATCH)
        ]
        fcomp = None if ctx["fcomp"] is None else f32(_band_take(ctx["fcomp"], kh))
        off_band = f32(_band_take(ctx["off0"][None], kh)[0])

        def along_z(a):  # central differences along the head's slices, on the whole grid
            return np.gradient(a, axis=1) if a.shape[1] > 1 else np.zeros_like(a)

        fcomp_dz = None if ctx["fcomp"] is None else f32(_band_take(along_z(ctx["fcomp"]), kh))
        off_dz = f32(_band_take(along_z(ctx["off0"][None]), kh)[0])
        fwd0 = fwd.reshape(-1, 4, 4)[np.argmin(t_all)]
        kk, ii, jj = np.meshgrid(np.arange(nz), np.arange(nx), np.arange(ny), indexing="ij")
        zs = fwd0[2, 0] * ii + fwd0[2, 1] * jj + fwd0[2, 2] * kk + fwd0[2, 3]
        slice_of = np.floor(zs + 0.5).astype(int)
        inside = (slice_of >= 0) & (slice_of < nz)
        t_last = np.where(inside, st[np.clip(slice_of, 0, nz - 1)] - seq.tr, -np.inf)
        m_last = np.where(inside, m_ss * cos_a, 1.0)
        ii2, jj2 = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
        return {
            "m_ss": f32(m_ss),
            "r1": f32(1.0 / maps["t1"]),
            "m_last": f32(m_last),
            "t_last": np.array(t_last, dtype=float),
            "fwd": fwd,
            "inv": inv,
            "mats": mats,
            "w": w,
            "kh": kh,
            "khc": khc,
            "valid": valid,
            "band_batches": band_batches,
            "fcomp": fcomp,
            "off": off_band,
            "fcomp_dz": fcomp_dz,
            "off_dz": off_dz,
            "pix": (ii2.astype(float), jj2.astype(float)),
        }

    def _spin_history(self, state, v, t_v):
        """Relative longitudinal magnetisation just before each slice time of volume v,
        (C, 2w+1, Z, X, Y) in band layout (scanner slice k, head slice k + j - w),
        and the excitations of that volume applied to the state."""
        seq = self.sequence
        nz = seq.n_slices
        w, fwd = state["w"], state["fwd"][v]
        ii, jj = state["pix"]
        cos_a = self._flip_cos()
        n_comp = state["r1"].shape[0]
        zr = np.arange(nz)
        # slot layout: head slice kh, candidate scanner slice k = kh + o, o in [-w, w]
        k_slot = zr[None, :] + np.arange(-w, w + 1)[:, None]  # (2w+1, Z)
        ok = (k_slot >= 0) & (k_slot < nz)
        kc = np.clip(k_slot, 0, nz - 1)
        t_slot = t_v[kc]  # invalid slots: never a hit, their h unused
        f = fwd[kc]  # (2w+1, Z, 4, 4)
        zs = (
            f[..., 2, 0, None, None] * ii
            + f[..., 2, 1, None, None] * jj
            + (f[..., 2, 2] * zr + f[..., 2, 3])[..., None, None]
        )
        hits = (np.floor(zs + 0.5) == k_slot[..., None, None]) & ok[..., None, None]
        order = np.argsort(np.where(ok, t_slot, np.inf), axis=0, kind="stable")
        h_slot = np.empty((n_comp, 2 * w + 1, nz) + ii.shape, np.float32)
        m_last, t_last, m_ss = state["m_last"], state["t_last"], state["m_ss"]
        rate1 = state["r1"]
        cos32 = np.float32(cos_a)
        for z0 in range(0, nz, _SLICE_BATCH):  # a few head slices at a time (cache)
            zb = slice(z0, min(nz, z0 + _SLICE_BATCH))
            zi = zr[zb]
            ml, tl, r1b, mssb = m_last[:, zb], t_last[zb], rate1[:, zb], m_ss[:, zb]
            for r in range(2 * w + 1):
                o = order[r, zb]
                t_r = t_slot[o, zi][:, None, None]
                dt = (t_r - tl).astype(np.float32)
                m_before = np.exp(-dt * r1b)
                m_before *= ml - 1.0
                m_before += 1.0
                h_slot[:, o, zi] = m_before / mssb
                hit = hits[o, zi]
                m_before *= cos32
                np.copyto(ml, m_before, where=hit)
                np.copyto(tl, np.broadcast_to(t_r, tl.shape), where=hit)
        state["m_last"], state["t_last"] = m_last, t_last
        # A scanner slice samples a head voxel through the trilinear band even when the
        # voxel's centre lies in a neighbouring slice; those spins' history is the
        # voxel's own: use the ratio before the voxel's excitation nearest in time
        # (1 for spins that stay put, whichever slice excites them).  Voxels that no
        # slice excites in this volume keep their magnetisation at the slot's time.
        n_hits = hits.sum(axis=0)
        one = n_hits == 1  # the usual case: every slot takes the one excitation's ratio
        h_hit = np.einsum("crzxy,rzxy->czxy", h_slot, hits.astype(np.float32))
        h_slot[:, :, one] = h_hit[:, None, one]
        many = np.nonzero(n_hits > 1)  # excited twice in the volume: the nearest in time
        if many[0].size:
            hm = h_slot[:, :, many[0], many[1], many[2]]  # (C, 2w+1, n)
            tm = t_slot[:, many[0]]  # (2w+1, n)
            cost = np.where(
                hits[:, many[0], many[1], many[2]][None],
                np.abs(tm[:, None] - tm[None, :]),
                np.inf,
            )  # (slot, hit slot, n)
            src = np.argmin(cost, axis=1)  # (2w+1, n)
            h_slot[:, :, many[0], many[1], many[2]] = np.take_along_axis(hm, src[None], axis=1)
        # band layout: scanner slice k, band j <-> head slice kh = k + j - w, slot o = w - j
        h = np.empty((n_comp, 2 * w + 1, nz) + ii.shape, np.float32)
        for j in range(2 * w + 1):
            kh = zr + j - w
            sel = (kh >= 0) & (kh < nz)
            h[:, j, sel] = h_slot[:, 2 * w - j, kh[sel]]
            h[:, j, ~sel] = 1.0  # beyond the slab (no signal there)
        return h

    def _moving_chunk(self, ctx, vols, fl, t_all, state):
        """The moving object of volumes ``vols`` (n, Z, X, Y), volume by volume (spin
        history is sequential), the slices of a volume at once."""
        seq = self.sequence
        nx, ny, nz = seq.matrix[0], seq.matrix[1], seq.n_slices
        w, khc = state["w"], state["khc"]
        nb = 2 * w + 1
        ii, jj = state["pix"]
        out_s = np.empty((len(vols), nz, nx, ny), np.complex64)
        out_p = np.empty((len(vols), nz, nx, ny), np.complex64)  # rate + i df
        out_rev = np.empty((len(vols), nz, nx, ny), np.float32) if seq.spin_echo else None
        for a, v in enumerate(vols):
            t_v = t_all[v]
            h = self._spin_history(state, v, t_v)
            d_dense = None
            if ctx["bold"] is not None:
                d = -np.log1p(_zxy(ctx["bold"][v])) / ctx["te_ref"]
                d_dense = d[khc].astype(np.float32)
            region = None
            if ctx["d_region"] is not None:
                k_irr = self.se_fraction if seq.spin_echo else 1.0
                g = np.ones((nb, nz, nx, ny), np.float32)
                wd = np.zeros((nb, nz, nx, ny), np.float32)
                d_all = ctx["d_region"][v]  # (Z, R)
                e_all = np.exp(-seq.te * k_irr * d_all)
                for kh in range(nz):
                    ks = kh + np.arange(-w, w + 1)  # scanner slices sampling head slice kh
                    sel = (ks >= 0) & (ks < nz)
                    ks = ks[sel]
                    js = (kh - ks + w).astype(int)
                    e, d = e_all[ks].T, d_all[ks].T  # (R, n)
                    gg = (ctx["shares"][kh] @ (e - 1)).T.reshape(-1, nx, ny) + 1.0
                    g[js, ks] = gg
                    wd[js, ks] = (ctx["shares"][kh] @ (e * d)).T.reshape(-1, nx, ny) / gg
                region = (ctx["region_comp"], g, wd)
            df = state["off"].copy()
            gz = state["off_dz"].copy()  # along head slices: central on the whole grid
            mats = state["mats"][v]  # (Z, 4, 4)
            if state["fcomp"] is not None:
                wts = np.stack([_field_weights(mats[k, 2, :3]) for k in range(nz)], 1)  # (6, Z)
                wts = wts.astype(np.float32)
                df = df + ctx["hz"] * np.einsum("ik,ijkxy->jkxy", wts, state["fcomp"])
                gz = gz + ctx["hz"] * np.einsum("ik,ijkxy->jkxy", wts, state["fcomp_dz"])
            tinv = state["inv"][v]  # (Z, 4, 4)
            fl_band = None if fl is None else fl[a][khc].astype(np.float32)
            if nb > 1:
                gx, gy = np.gradient(df, axis=(2, 3))
                col = tinv[:, :3, 2].astype(np.float32)  # d(head index)/d(scanner slice)
                dfdz = (
                    gx * col[:, 0, None, None]
                    + gy * col[:, 1, None, None]
                    + gz * col[:, 2, None, None]
                ) / ctx["spacing"][2]
            else:
                dfdz = np.zeros_like(df)
            for k0 in range(0, nz, _SLICE_BATCH):  # a few scanner slices at a time
                kb = slice(k0, min(nz, k0 + _SLICE_BATCH))
                sub = dict(state, band=state["band_batches"][k0 // _SLICE_BATCH])
                s, rate, rev = self._band_object(
                    sub,
                    h[:, :, kb],
                    None if d_dense is None else d_dense[:, kb],
                    None if region is None else (region[0], region[1][:, kb], region[2][:, kb]),
                    None if fl_band is None else fl_band[:, kb],
                    df[:, kb],
                    dfdz[:, kb],
                )
                # trilinear sampling of each slice's band at the moved positions (the
                # band arrays get a zero border in x and y: every corner index is valid)
                acc_s, acc_p, acc_r = _sample_bands(
                    tinv[kb], (s, (rate + 1j * df[:, kb]).astype(np.complex64), rev), w, k0
                )
                if not seq.spin_echo:  # the TE phase of the sampled field
                    ph = np.float32(-2 * np.pi * seq.te) * acc_p.imag
                    acc_s = acc_s * (np.cos(ph) + 1j * np.sin(ph)).astype(np.complex64)
                out_s[a, kb] = acc_s
                out_p[a, kb] = acc_p
                if out_rev is not None:
                    out_rev[a, kb] = acc_r
        return out_s, out_p.real, out_rev, out_p.imag
