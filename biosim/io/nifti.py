"""NIfTI-1 images of MRI time series (needs nibabel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.atomic import atomic_path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> Path:
    """Write a 3D or 4D image (float32) atomically.

    Parameters
    ----------
    path : Path
        ``.nii`` or ``.nii.gz``.
    data : array, shape (Nx, Ny, Nz[, Nt])
    affine : array (4, 4)
        Voxel to world (RAS) in mm.
    tr : float, optional
        Repetition time in s: the fourth zoom of a 4D image (units mm and s).
    """
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, np.float32), np.asarray(affine, float))
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms(tuple(img.header.get_zooms()[:3]) + (float(tr),))
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return Path(path)
