"""The virtual subject's anatomy: tissue volume fractions on a voxel grid in MNI152 space.

:func:`mni_anatomy` loads the shipped 1 mm atlas (``biosim/data/anatomy``, built by
``meshes/make_mni_anatomy.py`` from the MNI152 ICBM 2009 grey/white matter probability
maps and biosim's template head; sources and licences in ``biosim/data/README.md``).
:meth:`Anatomy.resample` gives partial-volume fractions on any scanner grid, with the head
moved by a rigid transform; :func:`epi_grid` builds the usual axial slab.

Frames: MNI152 (RAS, mm) for voxel grids; the EEG/MEG head models and the cortical
surface use fsaverage's MNI305 frame, mapped here by :data:`FSAVERAGE_TO_MNI152`.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import ParameterError, ShapeError

#: Tissue classes, in the order of :attr:`Anatomy.fractions` (soft = scalp, muscle, fat
#: and other soft tissue; air = air inside the head: sinuses, nasal cavity, mastoid air
#: cells, ear canals). Space outside the head (background air) is ``1 - sum``.
TISSUES = ("gm", "wm", "csf", "bone", "soft", "air")

#: fsaverage surface RAS (MNI305, mm) -> MNI152 (mm): FreeSurfer's published transform
#: (FreeSurfer wiki, "CoordinateSystems", item 8a; derived from
#: ``$FREESURFER_HOME/average/mni152.register.dat``).
FSAVERAGE_TO_MNI152 = np.array(
    [
        [0.9975, -0.0073, 0.0176, -0.0429],
        [0.0146, 1.0009, -0.0024, 1.5496],
        [-0.0130, -0.0093, 0.9971, 1.1840],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
FSAVERAGE_TO_MNI152.setflags(write=False)


def _check_affine(name, affine):
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise ShapeError(name, a.shape, "a finite 4x4 affine (voxel -> mm)")
    if not np.allclose(a[3], (0, 0, 0, 1)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ParameterError(name, a.tolist(), "an invertible affine with last row (0, 0, 0, 1)")
    return a


def _check_shape3(name, shape):
    s = tuple(int(n) for n in np.atleast_1d(shape))
    if len(s) != 3 or min(s) < 1 or s != tuple(np.atleast_1d(shape)):
        raise ParameterError(name, shape, "3 positive integers (nx, ny, nz)")
    return s


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Tissue volume fractions on a voxel grid.

    Attributes
    ----------
    fractions : (6, nx, ny, nz) float32
        Volume fraction of each tissue of :data:`TISSUES` in each voxel, in [0, 1],
        summing to at most 1 (the rest is air outside the head).
    affine : (4, 4)
        Voxel index -> MNI152 position, mm (RAS).
    """

    fractions: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        f = np.asarray(self.fractions)
        if f.ndim != 4 or f.shape[0] != len(TISSUES):
            raise ShapeError("fractions", f.shape, f"({len(TISSUES)}, nx, ny, nz)")
        _check_affine("affine", self.affine)

    @property
    def shape(self) -> tuple:
        """Grid shape (nx, ny, nz)."""
        return tuple(self.fractions.shape[1:])

    @property
    def voxel_size_mm(self) -> np.ndarray:
        """(3,) voxel edge lengths, mm."""
        return np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0)

    def fraction(self, tissue: str) -> np.ndarray:
        """The (nx, ny, nz) fraction map of one tissue of :data:`TISSUES`."""
        if tissue not in TISSUES:
            raise ParameterError("tissue", tissue, f"one of {TISSUES}")
        return self.fractions[TISSUES.index(tissue)]

    def brain_mask(self, threshold: float = 0.5) -> np.ndarray:
        """Voxels whose grey matter + white matter + CSF fraction exceeds ``threshold``."""
        return self.fractions[:3].sum(0) > threshold

    def head_mask(self, threshold: float = 0.5) -> np.ndarray:
        """Voxels more than ``threshold`` inside the head (any tissue, sinuses included)."""
        return self.fractions.sum(0) > threshold

    def resample(self, affine, shape, transform=None, supersample: int = 3) -> Anatomy:
        """Partial-volume fractions on another voxel grid.

        Each target voxel is the mean of the (trilinearly interpolated) source fractions
        at ``supersample**3`` points spread evenly over it, so tissue volume is conserved
        up to the sampling error of the partial-volume boundary voxels. Compiled with
        ``jax.jit`` per target shape (a new head position does not recompile); large grids
        go in slabs of slices (8 million sub-points each). 80 x 80 x 40 from the 1 mm atlas:
        0.2-0.3 s on a shared CPU, plus ~0.5 s of compilation on the first call.

        Parameters
        ----------
        affine : (4, 4)
            Target voxel index -> mm (the scanner frame; MNI152 when ``transform`` is None).
        shape : 3 ints
            Target grid shape.
        transform : (4, 4), optional
            Rigid head -> scanner transform (mm): the anatomy at MNI152 point ``p`` appears
            at ``transform @ p`` (e.g. ``RigidMotion.matrices`` with translations in mm).
        supersample : int
            Sample points per voxel edge (1 = voxel centres only).

        Returns
        -------
        Anatomy
            On the target grid, with ``affine`` as given.
        """
        affine = _check_affine("affine", affine)
        shape = _check_shape3("shape", shape)
        if int(supersample) != supersample or supersample < 1:
            raise ParameterError("supersample", supersample, "a positive integer")
        move = np.eye(4) if transform is None else _check_affine("transform", transform)
        # target voxel index -> source voxel index
        t2s = np.linalg.inv(np.asarray(self.affine, float)) @ np.linalg.inv(move) @ affine
        src = self.__dict__.get("_channels_last")
        if src is None:  # (n_voxels, 6) float32 copy for the gathers, made once per Anatomy
            src = jnp.asarray(np.moveaxis(np.asarray(self.fractions, np.float32), 0, -1))
            src = src.reshape(-1, len(TISSUES))
            object.__setattr__(self, "_channels_last", src)
        s = int(supersample)
        # slabs of slices with at most _MAX_POINTS sub-points each (bounded memory), all of
        # one shape so they share one compiled function
        nz = max(1, min(shape[2], _MAX_POINTS // (shape[0] * shape[1] * s**3)))
        slabs = []
        for z0 in range(0, shape[2], nz):
            shift = np.eye(4)
            shift[2, 3] = z0
            t = jnp.asarray(t2s @ shift, jnp.float32)
            slabs.append(np.asarray(_resample(src, self.shape, t, (*shape[:2], nz), s)))
        out = np.concatenate(slabs, axis=3)[..., : shape[2]] if len(slabs) > 1 else slabs[0]
        return Anatomy(out, affine)


_MAX_POINTS = 8_000_000


@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def _resample(src, src_shape, t2s, shape, s):
    """Mean of trilinear samples of ``src`` ((n, channels), C order of ``src_shape``) at
    ``s**3`` points per target voxel; ``t2s`` maps target to source voxel indices."""
    off = (jnp.arange(s, dtype=jnp.float32) + 0.5) / s - 0.5
    ax = [(jnp.arange(n, dtype=jnp.float32)[:, None] + off).reshape(-1) for n in shape]
    # the sub-points of all voxels form a regular grid s times finer than the target's
    c = (
        t2s[:3, 0, None, None, None] * ax[0][None, :, None, None]
        + t2s[:3, 1, None, None, None] * ax[1][None, None, :, None]
        + t2s[:3, 2, None, None, None] * ax[2][None, None, None, :]
        + t2s[:3, 3, None, None, None]
    ).reshape(3, -1)
    i0 = jnp.floor(c)
    w = c - i0
    i0 = i0.astype(jnp.int32)
    out = jnp.zeros((c.shape[1], src.shape[1]), jnp.float32)
    for corner in range(8):
        d = ((corner >> 2) & 1, (corner >> 1) & 1, corner & 1)
        weight = jnp.ones(c.shape[1], jnp.float32)
        flat = jnp.zeros(c.shape[1], jnp.int32)
        for a in range(3):
            i = i0[a] + d[a]
            weight = weight * jnp.where(
                (i >= 0) & (i < src_shape[a]), w[a] if d[a] else 1 - w[a], 0
            )
            flat = flat * src_shape[a] + jnp.clip(i, 0, src_shape[a] - 1)
        out = out + weight[:, None] * src[flat]
    out = out.reshape(shape[0], s, shape[1], s, shape[2], s, -1).mean((1, 3, 5))
    return jnp.moveaxis(out, -1, 0)


@jax.jit
def _to_channels_last(q):
    flat = jnp.moveaxis(q, 0, -1).reshape(-1, q.shape[0])
    return flat.astype(jnp.float32) * jnp.float32(1.0 / 255.0)


@functools.lru_cache(maxsize=1)
def mni_anatomy() -> Anatomy:
    """The shipped 1 mm MNI152 tissue atlas (read-only arrays, cached).

    Grey and white matter from the MNI152 ICBM 2009 symmetric probability maps; CSF,
    skull, scalp/soft tissue and the air spaces from biosim's template head
    (``meshes/make_mni_anatomy.py``; ``biosim/data/README.md``).
    """
    import io
    import lzma

    path = resources.files("biosim").joinpath("data/anatomy/mni152_tissue_1mm.npz.xz")
    with path.open("rb") as fh:
        raw = lzma.decompress(fh.read())
    with np.load(io.BytesIO(raw)) as npz:
        q = npz["fractions"]
        shape = q.shape[1:]
        affine = np.array(npz["affine"], float)
    del raw
    # one float32 copy, channels last, shared by the numpy view and the jax gathers
    src = _to_channels_last(jnp.asarray(q))
    del q
    view = np.asarray(src).reshape(*shape, len(TISSUES))
    if np.shares_memory(view, np.asarray(src)):
        fractions = np.moveaxis(view, -1, 0)
    else:  # pragma: no cover - a backend that copies
        fractions = np.moveaxis(view, -1, 0).copy()
    fractions.setflags(write=False)
    affine.setflags(write=False)
    anatomy = Anatomy(fractions, affine)
    object.__setattr__(anatomy, "_channels_last", src)
    return anatomy


def epi_grid(matrix, n_slices: int, voxel_size_mm, center_mm=(0.0, -16.5, 5.5)):
    """An axial EPI grid in MNI152 mm (slice axis z, along B0).

    Parameters
    ----------
    matrix : (nx, ny) ints
        In-plane matrix (x: left -> right, y: posterior -> anterior).
    n_slices : int
        Number of axial slices (z: inferior -> superior).
    voxel_size_mm : float or (3,) floats
        Voxel size (slice thickness + gap as the third entry), mm.
    center_mm : (3,) floats
        Grid centre, MNI152 mm; the default is the centre of the bounding box of the
        shipped atlas's brain (grey + white matter > 0.5: x -71..71, y -106..73, z -71..82).

    Returns
    -------
    affine : (4, 4)
        Voxel index -> mm.
    shape : tuple of 3 ints
    """
    m = tuple(np.atleast_1d(matrix))
    if len(m) != 2 or any(int(n) != n or n < 1 for n in m):
        raise ParameterError("matrix", matrix, "2 positive integers (nx, ny)")
    if int(n_slices) != n_slices or n_slices < 1:
        raise ParameterError("n_slices", n_slices, "a positive integer")
    vs = np.broadcast_to(np.asarray(voxel_size_mm, float), (3,)).copy()
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ParameterError("voxel_size_mm", voxel_size_mm, "positive voxel sizes in mm")
    c = np.asarray(center_mm, float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ParameterError("center_mm", center_mm, "a finite (3,) position in mm")
    shape = (int(m[0]), int(m[1]), int(n_slices))
    affine = np.diag([*vs, 1.0])
    affine[:3, 3] = c - vs * (np.array(shape) - 1) / 2.0
    return affine, shape
