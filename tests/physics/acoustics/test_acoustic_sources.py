"""Transducer geometry, band-limited source maps and O'Neil's solution (no wave simulation)."""

import math

import numpy as np
import pytest

from biosim._core.errors import ParameterError
from biosim.physics.acoustics import (
    Grid,
    bowl,
    combine,
    element_centres,
    linear_array,
    oneil_on_axis,
    piston,
    sample_points,
    source_map,
)


def test_bowl_points_lie_on_the_cap_with_its_area():
    R, A = 20e-3, 16e-3
    focus = np.array([1e-3, -2e-3, 3e-3])
    axis = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
    tr = bowl(focus, axis, R, A, point_spacing=0.2e-3, n_elements=32)
    pts = np.asarray(tr.points)
    assert np.allclose(np.linalg.norm(pts - focus, axis=1), R, rtol=0, atol=1e-12)
    cos_max = math.sqrt(1 - (A / 2 / R) ** 2)
    assert np.all((pts - focus) @ axis <= -R * cos_max + 1e-12)  # behind the focus, in the cap
    area = 2 * math.pi * R**2 * (1 - cos_max)
    assert abs(float(np.sum(tr.weights)) - area) < 1e-12 * area
    per_el = np.bincount(np.asarray(tr.element), weights=np.asarray(tr.weights))
    assert per_el.shape == (32,) and per_el.max() < 3 * per_el.min()  # rim patches are smaller
    centres = np.asarray(element_centres(tr))
    assert np.all(np.linalg.norm(centres - focus, axis=1) < R)  # centroids inside the sphere
    arc = bowl([0.0, 0.0], [0.0, 1.0], R, A, point_spacing=0.1e-3)
    assert abs(float(np.sum(arc.weights)) - 2 * R * math.asin(A / 2 / R)) < 1e-12
    with pytest.raises(ParameterError, match="aperture"):
        bowl(focus, axis, R, 3 * R, point_spacing=1e-3)


def test_source_map_conserves_strength_and_is_the_adjoint_of_sampling():
    grid = Grid(shape=(40, 36), spacing=0.25e-3, pml_size=8)
    arr = combine(
        linear_array([-1.1e-3, 0.07e-3], [1, 0], 4, 0.6e-3, 0.5e-3, point_spacing=0.1e-3),
        piston([1.3e-3, 0.0], [1, 1], 1.0e-3, point_spacing=0.1e-3),
    )
    rng = np.random.default_rng(1)
    arr = arr.with_drive(amplitude=rng.uniform(0.5, 2, 5), phase=rng.uniform(-3, 3, 5))
    smap = np.asarray(source_map(arr, grid))
    cell = np.prod(grid.spacing)
    drive = np.asarray(arr.amplitude * np.exp(1j * arr.phase))
    strength = np.sum(np.asarray(arr.weights) * drive[np.asarray(arr.element)])
    assert abs(smap.sum() * cell - strength) < 1e-12 * abs(strength)  # partition of unity
    field = rng.standard_normal(grid.shape) + 1j * rng.standard_normal(grid.shape)
    per_element = np.asarray(sample_points(field, arr, grid))
    w_el = np.bincount(np.asarray(arr.element), weights=np.asarray(arr.weights))
    lhs = np.sum(smap * field) * cell
    rhs = np.sum(drive * w_el * per_element)
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)
    # a point on a grid node is a single grid delta
    node = piston([grid.axes()[0][20], grid.axes()[1][18]], [1, 0], 1e-3, point_spacing=2e-3)
    m = np.asarray(source_map(node, grid))
    assert np.count_nonzero(np.abs(m) > 1e-9 * np.abs(m).max()) == 1


def test_oneil_on_axis_limit_and_far_field():
    R, A, f, c = 64e-3, 64e-3, 5e5, 1500.0
    at_focus = oneil_on_axis(R, R, A, f, c, 1.0)
    near = oneil_on_axis(np.array([R - 1e-7, R + 1e-7]), R, A, f, c, 1.0)
    assert np.allclose(near, at_focus, rtol=1e-5)
    k, h = 2 * math.pi * f / c, R - math.sqrt(R**2 - (A / 2) ** 2)
    assert abs(at_focus - k * h) < 1e-12
    z = 5e3  # far field: |p| -> 2 p0 R |sin(k h / 2)| / z
    far = 2 * R * abs(math.sin(k * h / 2)) / z
    assert abs(oneil_on_axis(z, R, A, f, c, 1.0) / far - 1) < 1e-3
