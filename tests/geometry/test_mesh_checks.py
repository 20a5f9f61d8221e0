"""Triangle meshes, icospheres, I/O and head-model checks."""

import numpy as np
import pytest

from biosim import GeometryError, ParameterError
from biosim.geometry.checks import (
    check_closed_manifold,
    check_head_model,
    check_nested,
    check_outward,
    check_points_inside,
    check_points_outside,
    distance_to_surface,
    winding_number,
)
from biosim.geometry.mesh import (
    TriangleMesh,
    fibonacci_sphere,
    icosphere,
    nested_spheres,
    read_mesh,
    write_mesh,
)


@pytest.mark.parametrize("sub, n", [(0, 12), (1, 42), (2, 162), (3, 642), (4, 2562)])
def test_icosphere_counts_area_and_volume(sub, n):
    s = icosphere(sub, radius=0.09)
    assert len(s.vertices) == n and len(s.faces) == 2 * n - 4
    np.testing.assert_allclose(np.linalg.norm(s.vertices, axis=1), 0.09)
    check_closed_manifold(s)
    check_outward(s)
    if sub >= 3:
        assert s.volume == pytest.approx(4 / 3 * np.pi * 0.09**3, rel=0.02)
        assert s.areas.sum() == pytest.approx(4 * np.pi * 0.09**2, rel=0.01)


@pytest.mark.parametrize("n", [12, 500, 1280])
def test_fibonacci_sphere_any_vertex_count(n):
    s = fibonacci_sphere(n, radius=0.08, center=(0.01, 0.0, 0.0))
    assert len(s.vertices) == n and len(s.faces) == 2 * n - 4
    np.testing.assert_allclose(np.linalg.norm(s.vertices - [0.01, 0.0, 0.0], axis=1), 0.08)
    check_closed_manifold(s)
    check_outward(s)
    if n >= 500:  # inscribed near-uniform polyhedron: volume deficit ~ 6/n (icospheres alike)
        assert 4 / n < 1 - s.volume / (4 / 3 * np.pi * 0.08**3) < 8 / n
    layers = nested_spheres([0.078, 0.083, 0.09], n_vertices=n)
    assert [len(x.vertices) for x in layers] == [n] * 3
    if n >= 500:
        check_head_model(layers)
    with pytest.raises(ParameterError, match="n_vertices"):
        fibonacci_sphere(11)
    with pytest.raises(ParameterError, match="radius"):
        fibonacci_sphere(100, radius=-1.0)


def test_checks_name_the_surface_and_the_place():
    s = icosphere(2, 0.09, name="scalp")
    holed = TriangleMesh(s.vertices, s.faces[1:], "scalp")
    with pytest.raises(GeometryError, match="'scalp' is not closed: a hole"):
        check_closed_manifold(holed)
    flipped = TriangleMesh(s.vertices, np.r_[s.faces[:1, ::-1], s.faces[1:]], "scalp")
    with pytest.raises(GeometryError, match="inconsistent triangle orientation"):
        check_closed_manifold(flipped)
    with pytest.raises(GeometryError, match="oriented inward"):
        check_outward(TriangleMesh(s.vertices, s.faces[:, ::-1], "scalp"))
    brain, skull, scalp = nested_spheres([0.078, 0.083, 0.09], subdivisions=3)
    check_head_model([brain, skull, scalp])
    with pytest.raises(GeometryError, match="'inner_skull' is not completely inside 'outer_skull'"):
        check_nested(brain.scaled(1.08), skull)
    with pytest.raises(GeometryError, match="mm apart"):
        check_nested(brain, skull, min_gap=0.006)
    with pytest.raises(GeometryError, match="source 1 .* outside surface 'inner_skull'"):
        check_points_inside(brain, [[0, 0, 0.05], [0, 0, 0.08]])
    with pytest.raises(GeometryError, match="sensor 0 .* inside surface 'scalp'"):
        check_points_outside(scalp, [[0, 0, 0.085]])
    with pytest.raises(ParameterError, match="radii"):
        nested_spheres([0.09, 0.08])


def test_winding_number_and_distance():
    s = icosphere(3, 0.09)
    wn = winding_number(s, [[0, 0, 0], [0.05, 0.02, 0.0], [0, 0, 0.2]])
    np.testing.assert_allclose(wn, [1, 1, 0], atol=1e-9)
    pts = np.array([[0, 0, 0.05], [0.03, 0.0, 0.0], [0.0, 0.0, 0.12]])
    d = distance_to_surface(s, pts)
    # the polyhedron is inscribed in the sphere: it lies inside it by at most the sagitta
    # of its edges, e^2 / (8 R)
    v, f = s.vertices, s.faces
    edge = np.linalg.norm(v[f[:, 0]] - v[f[:, 1]], axis=1).max()
    sagitta = edge**2 / (8 * 0.09)
    exact = np.abs(0.09 - np.linalg.norm(pts, axis=1))
    assert np.all(np.abs(d - exact) <= sagitta)


def test_mesh_io_roundtrip_binary_and_units(tmp_path):
    s = icosphere(2, 0.09, name="scalp")
    for ext in (".stl", ".ply"):
        path = write_mesh(s, tmp_path / f"scalp{ext}", units="mm")
        back = read_mesh(path, units="mm")
        assert len(back.faces) == len(s.faces)
        assert np.abs(np.linalg.norm(back.vertices, axis=1) - 0.09).max() < 1e-6
    with pytest.raises(FileNotFoundError):
        read_mesh(tmp_path / "missing.stl")
    with pytest.raises(ParameterError, match="faces"):
        TriangleMesh(s.vertices, np.array([[0, 1, 99999]]))
