"""Acoustic media: Aubry 2003 CT mapping, ITRUSST layered skulls, the template head."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.acoustics.media import (
    ITRUSST_LAYERS,
    TEMPLATE_LABELS,
    db_to_neper,
    hounsfield_to_acoustic,
    layered_skull,
    spherical_skull,
    template_head_media,
)


def test_aubry_porosity_mapping_end_points_and_midpoint():
    hu = np.array([[-200.0, 0.0, 500.0, 1000.0, 1500.0]])
    m = hounsfield_to_acoustic(hu, 1e-3)
    # psi = 1 - HU/1000 clamped: water at <= 0 HU, dense bone at >= 1000 HU
    np.testing.assert_allclose(m.density[0], [1000, 1000, 1550, 2100, 2100])
    np.testing.assert_allclose(m.sound_speed[0], [1500, 1500, 2200, 2900, 2900])
    # alpha = 2 + 78 psi^0.5 dB/cm at 1 MHz in bone; soft tissue alpha_min
    np.testing.assert_allclose(m.alpha_coeff[0], [2, 2, 2 + 78 * np.sqrt(0.5), 2, 2])
    # 1 dB/cm = 100 / 8.686 Np/m
    assert float(db_to_neper(1.0)) == pytest.approx(11.5129, rel=1e-4)


def test_user_table_interpolates_and_refuses_extrapolation():
    table = [[-1000, 1500, 1000, 0.0], [0, 1500, 1000, 0.5], [2000, 3100, 2200, 10.0]]
    m = hounsfield_to_acoustic(np.array([[1000.0, -500.0]]), 1e-3, method="table", table=table)
    np.testing.assert_allclose(m.sound_speed[0], [2300, 1500])
    np.testing.assert_allclose(m.alpha_coeff[0], [5.25, 0.25])
    with pytest.raises(ParameterError, match="hu"):
        hounsfield_to_acoustic(np.array([[2500.0]]), 1e-3, method="table", table=table)
    with pytest.raises(ParameterError, match="method"):
        hounsfield_to_acoustic(np.zeros((2, 2)), 1e-3, method="guess")


def test_flat_layered_skull_has_the_itrusst_layers():
    m = layered_skull((40, 4), 0.5e-3, skin_depth=5e-3, frequency=500e3, alpha_power=2.0)
    col = m.labels[:, 0]
    # 10 voxels of water, 8 skin (4 mm), 3 cortical, 8 trabecular, 2 cortical, then brain
    assert list(np.bincount(col)) == [10, 8, 5, 8, 9]
    np.testing.assert_array_equal(col[10:18], 1)
    np.testing.assert_array_equal(col[21:29], 3)
    for lab, name in enumerate(("water", "skin", "cortical", "trabecular", "brain")):
        sel = m.labels == lab
        assert np.all(m.sound_speed[sel] == ITRUSST_LAYERS[name].sound_speed)
        # the tabulated attenuation at 500 kHz is recovered
        np.testing.assert_allclose(
            m.attenuation(500e3)[sel], db_to_neper(ITRUSST_LAYERS[name].alpha_db_cm)
        )


def test_curved_skull_shells():
    m = spherical_skull(
        (64, 64), 1e-3, (31.5e-3, 31.5e-3), 30e-3, thicknesses=(3e-3, 2e-3, 3e-3, 2e-3)
    )
    r = np.hypot(*np.meshgrid(np.arange(64) - 31.5, np.arange(64) - 31.5, indexing="ij"))
    assert np.all(m.labels[r > 30.5] == 0)
    assert np.all(m.labels[(r > 27.5) & (r < 29.5)] == 1)
    assert np.all(m.labels[(r > 22.5) & (r < 24.5)] == 3)
    assert np.all(m.labels[r < 19.5] == 4)
    with pytest.raises(ParameterError, match="thicknesses"):
        spherical_skull((8, 8), 1e-3, (4, 4), 5e-3)


@pytest.mark.slow  # the end-to-end ultrasound test builds the template head's media too
def test_template_head_skull_on_an_acoustic_grid():
    # a 2 mm grid through the vertex (z 50 -> 108 mm): water above, skin, bone, brain below
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-10.0, -20.0, 50.0)
    m = template_head_media(affine, (10, 10, 30))
    names = [TEMPLATE_LABELS[i] for i in np.unique(m.labels)]
    assert {"water", "skin", "cortical", "brain"} <= set(names)
    col = m.labels[5, 5]
    top, bottom = col[-1], col[0]
    assert TEMPLATE_LABELS[top] == "water" and TEMPLATE_LABELS[bottom] == "brain"
    bone = np.isin(m.labels, [2, 3])
    assert np.all(m.sound_speed[bone] >= 2300) and m.spacing == pytest.approx(2e-3)
    with pytest.raises(ParameterError, match="affine"):
        template_head_media(np.diag([1.0, 2.0, 2.0, 1.0]), (4, 4, 4))
