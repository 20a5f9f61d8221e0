import numpy as np
import pytest

from biosim import ParameterError
from biosim.geometry.anatomy import FSAVERAGE_TO_MNI152, epi_grid, mni_anatomy
from biosim.geometry.regions import (
    coordinate_regions,
    landmark_regions,
    region_names_help,
    region_voxel_weights,
    roi_set_regions,
)
from biosim.geometry.source_space import LANDMARKS_MNI, cortical_surface


@pytest.fixture(scope="module")
def epi_anat():
    aff, shape = epi_grid((64, 76), 56, 2.5, center_mm=(0, -18, 4))
    return mni_anatomy().resample(aff, shape, supersample=2)


def test_landmark_regions_match_the_cortical_surface_patches():
    surf = cortical_surface("ico4")
    regions = landmark_regions(list(LANDMARKS_MNI) + ["V1-rh"])
    for reg in regions:
        key = reg.name if "-" in reg.name else f"{reg.name}-lh"
        idx = surf.regions[key]  # what experiment.subject.region_dipoles uses
        np.testing.assert_array_equal(reg.vertices, idx)
        np.testing.assert_allclose(reg.position, surf.positions[idx].mean(0), atol=1e-9)
        n = surf.normals[idx].mean(0)
        np.testing.assert_allclose(reg.orientation, n / np.linalg.norm(n), atol=1e-9)
    assert regions[-1].position[0] > 0 and regions[0].position[0] < 0
    with pytest.raises(ParameterError, match="region"):
        landmark_regions(["V7"])


def test_roi_sets_sizes_names_and_patches():
    for name, n in (("dosenbach160", 160), ("power264", 264), ("seitzman300", 300)):
        regs = roi_set_regions(name)
        assert len(regs) == n and len({r.name for r in regs}) == n
        assert all(r.name.startswith(name + "_") for r in regs)
        pos = np.array([r.position for r in regs])
        assert np.all(np.abs(pos) < 0.12)
        ori = np.array([r.orientation for r in regs])
        np.testing.assert_allclose(np.linalg.norm(ori, axis=1), 1, atol=1e-12)
    power = roi_set_regions("power264")
    np.testing.assert_allclose(power[0].center_mni, [-25, -98, -12])  # Power et al. ROI 1
    with pytest.raises(ParameterError, match="roi_set"):
        roi_set_regions("aal")
    assert "power264" in region_names_help() and "V1" in region_names_help()


def test_coordinate_regions_empty_patch_and_errors():
    deep = coordinate_regions([[-12.0, -18.0, 8.0]], radius_mm=3.0, names=["thal"])[0]
    assert deep.vertices.size == 0  # left thalamus: far from the white surface
    fs = np.linalg.inv(FSAVERAGE_TO_MNI152) @ [-12.0, -18.0, 8.0, 1.0]
    np.testing.assert_allclose(deep.position * 1000, fs[:3], atol=1e-9)
    assert abs(np.linalg.norm(deep.orientation) - 1) < 1e-12
    with pytest.raises(ParameterError, match="coords_mm"):
        coordinate_regions([1.0, 2.0, 3.0])
    with pytest.raises(ParameterError, match="names"):
        coordinate_regions([[1.0, 2.0, 3.0]] * 2, names=["a", "a"])
    with pytest.raises(ParameterError, match="radius_mm"):
        coordinate_regions([[1.0, 2.0, 3.0]], radius_mm=0)


def test_region_voxel_weights(epi_anat):
    regs = roi_set_regions("dosenbach160") + landmark_regions(["V1", "V1-rh"])
    w = region_voxel_weights(regs, epi_anat)
    assert w.shape == (len(regs), np.prod(epi_anat.shape)) and w.dtype == np.float32
    gm = epi_anat.fraction("gm").ravel()
    assert np.all(np.asarray(w.sum(0)).ravel() <= gm + 1e-6)
    assert np.all(np.diff(w.indptr) >= 1)  # every region has a grey-matter voxel
    # V1's voxels lie within the 15 mm patch (+3 mm, + half a voxel diagonal) of its centre
    v1 = w[len(regs) - 2].indices
    ijk = np.stack(np.unravel_index(v1, epi_anat.shape), 1)
    xyz = ijk @ epi_anat.affine[:3, :3].T + epi_anat.affine[:3, 3]
    d = np.linalg.norm(xyz - regs[-2].center_mni, axis=1)
    assert d.max() < 15 + 1.5 + 3 + 2.2 + 1.5  # patch, depth, radius, half voxel, MNI305->152
    assert np.all(xyz[:, 0] < 2)


def test_region_weights_move_with_the_head():
    aff, shape = epi_grid((24, 24), 12, 3.0, center_mm=(0, -80, 4))
    a = mni_anatomy()
    move = np.eye(4)
    move[2, 3] = 3.0  # the head 3 mm (one slice) up in the scanner
    regs = landmark_regions(["V1", "V1-rh"])
    still = region_voxel_weights(regs, a.resample(aff, shape, supersample=2))
    moved = region_voxel_weights(
        regs, a.resample(aff, shape, transform=move, supersample=2), transform=move
    )
    s = still.toarray().reshape(2, *shape)
    m = moved.toarray().reshape(2, *shape)
    assert s[0].sum() > 5 and s[1].sum() > 5  # voxels of grey matter in each V1
    np.testing.assert_allclose(m[..., 1:], s[..., :-1], atol=1e-5)
