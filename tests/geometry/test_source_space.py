import numpy as np
import pytest

from biosim import ParameterError
from biosim.geometry.source_space import cortical_surface, volume_grid


def test_cortical_surface_decimation_normals_and_regions():
    full = cortical_surface("ico5")
    assert full.n_sources == 20484
    ico3 = cortical_surface("ico3")
    assert ico3.n_sources == 1284
    # nested: ico3 vertices are the first vertices of ico5
    np.testing.assert_allclose(ico3.positions[:642], full.positions[:642])
    np.testing.assert_allclose(np.linalg.norm(full.normals, axis=1), 1.0, atol=1e-6)
    # outward on average: normals point away from each hemisphere's centroid
    for h in (0, 1):
        sel = full.hemisphere == h
        c = full.positions[sel].mean(0)
        assert np.mean(np.sum((full.positions[sel] - c) * full.normals[sel], 1)) > 0
    v1 = full.region_indices("V1-lh")
    assert v1.size > 50 and np.all(full.positions[v1, 1] < -0.07)
    assert np.all(full.positions[full.region_indices("M1-rh"), 0] > 0)
    with pytest.raises(ParameterError, match="region"):
        full.region_indices("V7-lh")
    with pytest.raises(ParameterError, match="decimation"):
        cortical_surface("oct6")


def test_volume_grid():
    g = volume_grid(0.01, radius=0.07)
    assert np.all(np.linalg.norm(g.positions, axis=1) < 0.07)
    assert abs(g.n_sources * 1e-6 - 4 / 3 * np.pi * 0.07**3) < 0.1 * 4 / 3 * np.pi * 0.07**3
    with pytest.raises(ParameterError, match="spacing"):
        volume_grid(-0.01, radius=0.07)
