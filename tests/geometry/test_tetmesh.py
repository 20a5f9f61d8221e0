"""Labelled tetrahedral meshes: nested spheres, checks, gmsh/vtu I/O."""

import meshio
import numpy as np
import pytest

from biosim._core.errors import ParameterError
from biosim.geometry.tetmesh import (
    TISSUE_TAGS,
    MeshError,
    TetMesh,
    check_tet_mesh,
    read_tet_mesh,
    sphere_tet_mesh,
    template_head_tet_mesh,
    write_tet_mesh,
)

RADII = (0.078, 0.080, 0.086, 0.092)  # DUNEuro's 4-shell sphere
H = 0.014


@pytest.fixture(scope="module")
def four_shell():
    return sphere_tet_mesh(RADII, edge_length=H)


def test_tissue_tags_are_simnibs():
    assert (TISSUE_TAGS["wm"], TISSUE_TAGS["gm"], TISSUE_TAGS["csf"]) == (1, 2, 3)
    assert (TISSUE_TAGS["bone"], TISSUE_TAGS["scalp"]) == (4, 5)
    assert (TISSUE_TAGS["compact_bone"], TISSUE_TAGS["spongy_bone"]) == (7, 8)


def test_sphere_mesh_is_valid_and_conforming(four_shell):
    m = four_shell
    check_tet_mesh(m)  # orientation, quality, conformity, tags
    assert m.tags == (2, 3, 4, 5)
    assert np.all(m.volumes > 0)
    q = m.quality()
    # measured: min dihedral ~1.4 deg (CSF prisms 2 mm thick under 14 mm triangles)
    assert q.dihedral_min_deg > 0.5 and q.radius_ratio_mean > 0.5
    assert 10_000 < m.n_tets < 30_000


def test_interfaces_lie_on_the_spheres_and_are_oriented(four_shell):
    m = four_shell
    for (a, b), r in zip([(2, 3), (3, 4), (4, 5)], RADII[:3]):
        f = m.interface_faces(a, b)
        assert len(f) > 100
        np.testing.assert_allclose(np.linalg.norm(m.nodes[f], axis=2), r, rtol=1e-13)
        p = m.nodes[f]
        normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        assert np.all(np.einsum("ij,ij->i", normal, p.mean(axis=1)) > 0)  # from a into b
        # a closed surface: reversed pair gives the same triangles reversed
        assert len(m.interface_faces(b, a)) == len(f)
    assert len(m.interface_faces(2, 5)) == 0
    bf = m.boundary_faces()
    np.testing.assert_allclose(np.linalg.norm(m.nodes[bf], axis=2), RADII[3], rtol=1e-13)
    p = m.nodes[bf]
    flux = np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]))
    np.testing.assert_allclose(flux.sum() / 6, m.volumes.sum(), rtol=1e-12)  # outward


def test_label_volumes_against_the_spheres(four_shell):
    """Each region is bounded by polyhedra inscribed in its spheres: its volume
    error is at most the sagitta of the longest edge times the sphere's area."""
    m = four_shell
    edge = np.linalg.norm(
        m.nodes[m.tets[:, [0, 0, 0, 1, 1, 2]]] - m.nodes[m.tets[:, [1, 2, 3, 2, 3, 3]]], axis=2
    )
    lmax = edge.max()
    inner = 0.0
    for tag, r in zip((2, 3, 4, 5), RADII):
        exact_ball = 4 / 3 * np.pi * r**3
        bound = 4 * np.pi * r**2 * lmax**2 / (8 * r)  # area x sagitta of a chord lmax
        got_ball = sum(m.label_volume(t) for t in (2, 3, 4, 5) if t <= tag)
        assert 0 < exact_ball - got_ball < bound
        inner = exact_ball
    assert inner > 0
    assert m.label_volume("gm") == pytest.approx(m.label_volume(2))


def test_radii_order_and_default_tags():
    a = sphere_tet_mesh((0.085, 0.088, 0.092), edge_length=0.02, center=(0.01, 0, 0))
    b = sphere_tet_mesh((0.092, 0.088, 0.085), edge_length=0.02, center=(0.01, 0, 0))
    assert a.tags == (2, 4, 5)
    np.testing.assert_array_equal(a.tets, b.tets)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.centroids.mean(axis=0), [0.01, 0, 0], atol=2e-3)
    c = sphere_tet_mesh((0.092, 0.085), tags=("csf", "wm"), edge_length=0.02)
    assert c.tags == (1, 3)
    assert c.label_volume("wm") == pytest.approx(4 / 3 * np.pi * 0.085**3, rel=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(radii=(0.08, 0.09, 0.085)),
        dict(radii=(0.08, -0.09)),
        dict(radii=(0.08, 0.09), tags=(2,)),
        dict(radii=(0.08, 0.09), tags=("gm", "brain")),
        dict(radii=(0.08, 0.09), edge_length=0.0),
        dict(radii=(0.08, 0.09), edge_length=0.1),
        dict(radii=(0.08, 0.09), center=(0, 0)),
    ],
)
def test_sphere_mesh_bad_input(kwargs):
    kwargs.setdefault("edge_length", 0.02)
    with pytest.raises(ParameterError):
        sphere_tet_mesh(**kwargs)


def _orient(nodes, tets):
    """Positively orient tetrahedra (swap two nodes of the negative ones)."""
    tets = np.array(tets)
    p = np.asarray(nodes)[tets]
    vol = np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))
    tets[vol < 0] = tets[vol < 0][:, [0, 2, 1, 3]]
    return tets


def _two_tets():
    nodes = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], float) * 1e-2
    return TetMesh(nodes, [[0, 1, 2, 3], [4, 3, 2, 1]], [2, 3])


def test_check_accepts_two_tets_and_names_bad_elements():
    m = _two_tets()
    check_tet_mesh(m)
    assert len(m.boundary_faces()) == 6 and len(m.interface_faces(2, 3)) == 1
    inv = TetMesh(m.nodes, [[0, 1, 2, 3], [4, 2, 3, 1]], [2, 3])
    with pytest.raises(MeshError, match="tetrahedron 1 is inverted"):
        check_tet_mesh(inv)
    flat_nodes = m.nodes.copy()
    flat_nodes[4] = (flat_nodes[1] + flat_nodes[2] + flat_nodes[3]) / 3 + 1e-12
    with pytest.raises(MeshError, match="tetrahedron 1 is (degenerate|inverted)"):
        check_tet_mesh(TetMesh(flat_nodes, m.tets, m.labels))
    with pytest.raises(MeshError, match="tetrahedron 1 has tag 42"):
        check_tet_mesh(TetMesh(m.nodes, m.tets, [2, 42]))
    check_tet_mesh(TetMesh(m.nodes, m.tets, [2, 42]), tags=(2, 42))
    extra = np.vstack([m.nodes, [[0.5, 0.5, 0.5]]])
    with pytest.raises(MeshError, match="node 5 is not used"):
        check_tet_mesh(TetMesh(extra, m.tets, m.labels))
    with pytest.raises(MeshError, match="repeats a node"):
        check_tet_mesh(TetMesh(m.nodes, [[0, 1, 2, 3], [4, 3, 3, 1]], [2, 3]))


def test_check_finds_non_conforming_faces():
    # a square split along one diagonal above and along the other below
    sq = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    nodes = np.vstack([sq, [[0.5, 0.5, 1], [0.5, 0.5, -1]]]) * 1e-2
    tets = [[0, 1, 2, 4], [0, 2, 3, 4], [0, 1, 3, 5], [1, 2, 3, 5]]
    m = TetMesh(nodes, tets, [2, 2, 3, 3])
    m = TetMesh(nodes, _orient(m.nodes, m.tets.copy()), m.labels)
    with pytest.raises(MeshError, match="non-conforming"):
        check_tet_mesh(m)
    # a hanging node: one tet above face (0, 1, 2), two below it split at the midpoint of 0-1
    nodes = np.array(
        [[0, 0, 0], [2, 0, 0], [0, 2, 0], [0.5, 0.5, 1], [1, 0, 0], [0.5, 0.5, -1]], float
    )
    tets = _orient(nodes, np.array([[0, 1, 2, 3], [0, 4, 2, 5], [4, 1, 2, 5]]))
    with pytest.raises(MeshError, match="tetrahedron 0"):
        check_tet_mesh(TetMesh(nodes * 1e-2, tets, [2, 3, 3]))
    # overlapping elements: one face shared by three tetrahedra
    nodes = np.array(
        [[0, 0, 0], [2, 0, 0], [0, 2, 0], [0.5, 0.5, 1], [0.5, 0.5, -1], [0.4, 0.4, 2]]
    )
    tets = _orient(nodes, np.array([[0, 1, 2, 3], [0, 1, 2, 4], [0, 1, 2, 5]]))
    with pytest.raises(MeshError, match="shared by 3 tetrahedra"):
        check_tet_mesh(TetMesh(nodes * 1e-2, tets, [2, 3, 3]))


def test_tetmesh_rejects_bad_arrays():
    nodes = _two_tets().nodes
    with pytest.raises(ParameterError, match="tets"):
        TetMesh(nodes, [[0, 1, 2, 7]], [2])
    with pytest.raises(ParameterError, match="labels"):
        TetMesh(nodes, [[0, 1, 2, 3]], [2, 3])
    bad = nodes.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ParameterError, match="node 2"):
        TetMesh(bad, [[0, 1, 2, 3]], [2])


@pytest.mark.parametrize("suffix", [".msh", ".vtu"])
def test_write_read_round_trip_in_mm(four_shell, tmp_path, suffix):
    path = write_tet_mesh(four_shell, tmp_path / f"head{suffix}")
    raw = meshio.read(path)
    np.testing.assert_allclose(raw.points, four_shell.nodes * 1e3, rtol=1e-15)  # mm in file
    back = read_tet_mesh(path)
    np.testing.assert_allclose(back.nodes, four_shell.nodes, rtol=1e-15, atol=1e-17)
    np.testing.assert_array_equal(back.tets, four_shell.tets)
    np.testing.assert_array_equal(back.labels, four_shell.labels)
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind
    if suffix == ".msh":
        assert path.read_bytes().startswith(b"$MeshFormat\n2.2 1 8\n")  # binary gmsh 2.2
        np.testing.assert_array_equal(raw.cell_data["gmsh:geometrical"][0], four_shell.labels)


def test_read_simnibs_like_msh_with_surfaces(tmp_path):
    m = _two_tets()
    extra = np.vstack([m.nodes, [[9, 9, 9]]]) * 1e3  # a node used by a point element only
    bf = m.boundary_faces()
    mm = meshio.Mesh(
        extra,
        [("vertex", np.array([[5]])), ("triangle", bf), ("tetra", m.tets)],
        cell_data={
            "gmsh:physical": [np.array([99]), np.full(len(bf), 1005), m.labels],
            "gmsh:geometrical": [np.array([99]), np.full(len(bf), 1005), m.labels],
        },
    )
    path = tmp_path / "simnibs.msh"
    meshio.write(path, mm, file_format="gmsh22", binary=True)
    back, surfaces = read_tet_mesh(path, return_surfaces=True)
    assert back.n_nodes == 5 and back.n_tets == 2
    np.testing.assert_allclose(back.nodes, m.nodes, atol=1e-15)
    np.testing.assert_array_equal(back.labels, [2, 3])
    assert list(surfaces) == [1005]
    np.testing.assert_array_equal(surfaces[1005], bf)
    check_tet_mesh(back)


def test_io_bad_input(tmp_path):
    with pytest.raises(ParameterError, match="path"):
        write_tet_mesh(_two_tets(), tmp_path / "a.stl")
    with pytest.raises(FileNotFoundError):
        read_tet_mesh(tmp_path / "missing.msh")
    (tmp_path / "junk.msh").write_bytes(b"$MeshFormat\n2.2 1 8\n garbage")
    with pytest.raises(ParameterError, match="path"):
        read_tet_mesh(tmp_path / "junk.msh")
    with pytest.raises(ParameterError, match="units"):
        write_tet_mesh(_two_tets(), tmp_path / "a.msh", units="inch")


@pytest.mark.slow
def test_template_head_mesh():
    from biosim.geometry.template_head import template_center, template_head

    m = template_head_tet_mesh(edge_length=0.012)
    check_tet_mesh(m)
    assert m.tags == (1, 2, 3, 4, 5)
    surfaces = template_head(10242)
    c = template_center()
    # nodes of the skull/scalp interfaces lie on the template surfaces' triangles
    from biosim.geometry.checks import distance_to_surface

    for (a, b), s in zip([(4, 5)], surfaces[1:2]):
        f = m.interface_faces(a, b)
        d = distance_to_surface(s, m.nodes[np.unique(f)])
        assert d.max() < 1e-6
    vol_brain = sum(m.label_volume(t) for t in (1, 2, 3))
    assert vol_brain == pytest.approx(surfaces[0].volume, rel=0.02)
    assert m.label_volume(4) == pytest.approx(surfaces[1].volume - surfaces[0].volume, rel=0.03)
    assert m.label_volume(5) == pytest.approx(surfaces[2].volume - surfaces[1].volume, rel=0.03)
    assert m.label_volume("gm") > m.label_volume("wm") > m.label_volume("csf") > 0
    assert np.linalg.norm(m.nodes - c, axis=1).max() < 0.16
