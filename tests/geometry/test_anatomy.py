import time

import numpy as np
import pytest

from biosim import ParameterError
from biosim.geometry.anatomy import (
    FSAVERAGE_TO_MNI152,
    TISSUES,
    Anatomy,
    epi_grid,
    mni_anatomy,
)


@pytest.fixture(scope="module")
def anat():
    return mni_anatomy()


def test_shipped_atlas_fractions_and_volumes(anat):
    f = anat.fractions
    assert f.shape[0] == len(TISSUES) and f.dtype == np.float32
    assert not f.flags.writeable
    np.testing.assert_allclose(anat.voxel_size_mm, 1.0)
    assert f.min() >= 0 and f.max() <= 1
    assert f.sum(0).max() <= 1 + 1e-6
    litres = {t: float(anat.fraction(t).sum()) * 1e-6 for t in TISSUES}
    # MNI152 2009 is an enlarged average brain (~1.7 L of GM + WM; the MNI305/152 space
    # is ~1.2x Talairach in volume): GM ~1.0 L, WM ~0.67 L from the shipped probability maps
    assert 0.9 < litres["gm"] < 1.1 and 0.55 < litres["wm"] < 0.75
    assert 0.2 < litres["csf"] < 0.7 and 0.3 < litres["bone"] < 0.7
    assert 0.02 < litres["air"] < 0.1  # sinuses, nasal cavity, mastoids, ear canals
    # brain mask: about the intracranial volume of fsaverage's inner skull
    assert 1.8e6 < anat.brain_mask().sum() < 2.4e6
    assert anat.head_mask().sum() > anat.brain_mask().sum()
    # anterior commissure region is white matter, a point 30 mm above the vertex is outside
    ijk = np.rint(np.linalg.inv(anat.affine) @ [0, 0, 0, 1])[:3].astype(int)
    assert anat.fractions[:, ijk[0], ijk[1], ijk[2]].sum() > 0.99
    with pytest.raises(ParameterError, match="tissue"):
        anat.fraction("fat")


def test_fsaverage_to_mni152_inverts_the_published_reverse_transform():
    # FreeSurfer wiki CoordinateSystems 8b (MNI152 -> MNI305), rounded to 4 decimals
    reverse = np.array(
        [
            [1.0022, 0.0071, -0.0177, 0.0528],
            [-0.0146, 0.9990, 0.0027, -1.5519],
            [0.0129, 0.0094, 1.0027, -1.2012],
            [0, 0, 0, 1],
        ]
    )
    np.testing.assert_allclose(reverse @ FSAVERAGE_TO_MNI152, np.eye(4), atol=2e-4)
    # the wiki's worked example, (10, -20, 35) MNI152 -> (9.3131, -21.5849, 33.8345) MNI305,
    # to the rounding of the published matrices
    back = np.linalg.solve(FSAVERAGE_TO_MNI152, [10, -20, 35, 1])[:3]
    np.testing.assert_allclose(back, [9.3131, -21.5849, 33.8345], atol=2e-3)


def _small(seed=0):
    rng = np.random.default_rng(seed)
    f = rng.random((6, 12, 14, 10)).astype(np.float32)
    f /= f.sum(0) * 1.25
    return Anatomy(f, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_resample_identity_and_one_voxel_shift():
    a = _small()
    same = a.resample(a.affine, a.shape, supersample=1)
    np.testing.assert_allclose(same.fractions, a.fractions, atol=1e-6)
    # a head translation by one target voxel (3 mm along y) shifts the fractions one voxel
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    aff[:3, 3] = [1.0, 2.0, 1.5]
    base = a.resample(aff, (6, 6, 5))
    move = np.eye(4)
    move[1, 3] = 3.0
    moved = a.resample(aff, (6, 6, 5), transform=move)
    np.testing.assert_allclose(moved.fractions[:, :, 1:], base.fractions[:, :, :-1], atol=1e-6)


def test_resample_conserves_volume_and_is_fast(anat):
    aff, shape = epi_grid((80, 80), 64, 2.5, center_mm=(0, -18, 4))
    epi = anat.resample(aff, shape)  # compiles for this shape
    assert epi.shape == shape
    # a new head position reuses the compiled function: 80 x 80 x 64 (1.6x the 80 x 80 x 40
    # target of < 1 s) in ~0.9 s on one loaded core; 3 s leaves room for a busy CI machine
    move = np.eye(4)
    move[:3, 3] = [1.0, -2.0, 0.5]
    t0 = time.perf_counter()
    anat.resample(aff, shape, transform=move)
    assert time.perf_counter() - t0 < 3.0
    vox = np.prod(epi.voxel_size_mm)
    for t in ("gm", "wm"):  # the brain lies inside the 200 x 200 x 160 mm grid
        src = anat.fraction(t).sum()
        np.testing.assert_allclose(epi.fraction(t).sum() * vox, src, rtol=0.01)
    assert epi.fractions.sum(0).max() <= 1 + 1e-5


def test_epi_grid_and_errors():
    aff, shape = epi_grid((64, 64), 30, (3.0, 3.0, 4.0), center_mm=(0, 0, 0))
    assert shape == (64, 64, 30)
    centre = aff @ [31.5, 31.5, 14.5, 1]
    np.testing.assert_allclose(centre[:3], 0, atol=1e-12)
    np.testing.assert_allclose(np.diag(aff)[:3], [3, 3, 4])
    with pytest.raises(ParameterError, match="matrix"):
        epi_grid((64,), 30, 3.0)
    with pytest.raises(ParameterError, match="voxel_size_mm"):
        epi_grid((64, 64), 30, -3.0)
    with pytest.raises(ParameterError, match="supersample"):
        _small().resample(np.eye(4), (2, 2, 2), supersample=0)
    with pytest.raises(ParameterError, match="affine"):
        _small().resample(np.zeros((4, 4)), (2, 2, 2))
