"""FEM TMS and TES on a coarse 3-layer sphere: P2 against Heller-van Hulsteyn (also with
radially anisotropic conductivity, for which the sphere field is unchanged) and against the
Rush-Driscoll series; current conservation; clear errors."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim._core.errors import GeometryError
from biosim.geometry.tetmesh import sphere_tet_mesh
from biosim.physics.electromag.sphere_eeg import SphereHead
from biosim.physics.fem import tissue_conductivity
from biosim.physics.stimulation import (
    Montage,
    StimulationModel,
    disc_electrode,
    field_on_grid,
    figure8_dipole_coil,
    place_on_sphere,
    point_electrode,
    rect_electrode,
    sphere_tes_field,
    sphere_tms_field,
    surface_field,
)

RADII = (0.07, 0.08, 0.09)
SIGMA = {2: 0.33, 4: 0.01, 5: 0.43}


def rdm_mag(e, ref):
    """SimNIBS' relative difference measure and log magnitude ratio."""
    rdm = np.linalg.norm(e / np.linalg.norm(e) - ref / np.linalg.norm(ref))
    return rdm, np.log(np.linalg.norm(e) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def sphere():
    mesh = sphere_tet_mesh(RADII, edge_length=0.02)
    sigma = tissue_conductivity(mesh.labels, SIGMA)
    brain = mesh.labels == 2
    return mesh, sigma, brain, mesh.nodes[mesh.tets].mean(axis=1)[brain]


@pytest.fixture(scope="module")
def p1(sphere):
    mesh, sigma, _, _ = sphere
    return StimulationModel(mesh, sigma, order=1)


@pytest.fixture(scope="module")
def p2(sphere):
    mesh, sigma, _, _ = sphere
    return StimulationModel(mesh, sigma, order=2)


def _coil():
    return figure8_dipole_coil(0.035, n_rings=4), place_on_sphere(0.3, 0.5, 0.7, 0.006, 0.09)


def test_tms_p2_matches_heller_van_hulsteyn(sphere, p2):
    mesh, sigma, brain, pts = sphere
    coil, pl = _coil()
    ref = np.asarray(sphere_tms_field(coil, pts, 1e6, pl))
    f = p2.tms(coil, pl, didt=1e6)
    rdm, mag = rdm_mag(f.element_field()[brain], ref)
    assert rdm <= 0.02 and abs(mag) <= 0.02  # measured 0.0097, 2e-5
    # the coil must stay outside the head
    with pytest.raises(GeometryError, match="intersects the head"):
        p2.tms(coil, place_on_sphere(0.3, 0.5, 0.7, 0.0, 0.085))


@pytest.mark.slow
def test_tms_radially_anisotropic_sphere(sphere):
    mesh, sigma, brain, pts = sphere
    coil, pl = _coil()
    ref = np.asarray(sphere_tms_field(coil, pts, 1e6, pl))
    # a radially anisotropic skull (radial 0.002, tangential 0.02 S/m) leaves the sphere
    # field unchanged (E has no radial part); isotropic tensors reproduce the scalar case
    cent = mesh.nodes[mesh.tets].mean(axis=1)
    rhat = cent / np.linalg.norm(cent, axis=1, keepdims=True)
    rr = np.einsum("mi,mj->mij", rhat, rhat)
    tens = sigma[:, None, None] * np.eye(3)
    skull = mesh.labels == 4
    tens[skull] = 0.002 * rr[skull] + 0.02 * (np.eye(3) - rr[skull])
    fa = StimulationModel(mesh, tens, order=2).tms(coil, pl, didt=1e6)
    rdm_a, mag_a = rdm_mag(fa.element_field()[brain], ref)
    assert rdm_a <= 0.02 and abs(mag_a) <= 0.02


@pytest.mark.slow
def test_tms_p1_recovery_beats_element_field(sphere):
    mesh, sigma, brain, pts = sphere
    coil, pl = _coil()
    ref = np.asarray(sphere_tms_field(coil, pts, 1e6, pl))
    f = StimulationModel(mesh, sigma, order=1).tms(coil, pl, didt=1e6)
    r_el, _ = rdm_mag(f.element_field()[brain], ref)
    r_rec, _ = rdm_mag(f.recovered_field_at(pts), ref)
    assert r_rec < 0.75 * r_el  # measured 0.119 vs 0.170; the 0.02 bound needs finer meshes
    # samples on a surface and a voxel grid agree with the point evaluation
    v = pts[:5]
    e, en, et = surface_field(f, v, v)
    np.testing.assert_allclose(np.hypot(en, et), np.linalg.norm(e, axis=1), rtol=1e-12)
    aff = np.diag([0.01, 0.01, 0.01, 1.0])
    aff[:3, 3] = -0.1
    grid, mask = field_on_grid(f, (21, 21, 21), aff)
    assert mask[10, 10, 10] and not mask[0, 0, 0] and np.all(grid[~mask] == 0)
    np.testing.assert_allclose(grid[10, 10, 10], f.recovered_field_at([[0.0, 0.0, 0.0]])[0])


@pytest.mark.slow
def test_tes_p2_matches_rush_driscoll():
    """On a 12 mm mesh: at 20 mm the point electrodes' singularity leaves |ln MAG| 0.03."""
    mesh = sphere_tet_mesh(RADII, edge_length=0.012)
    brain = mesh.labels == 2
    pts = mesh.centroids[brain]
    p2 = StimulationModel(mesh, tissue_conductivity(mesh.labels, SIGMA), order=2)
    bn = np.unique(mesh.boundary_faces())

    def scalp_node(d):
        d = np.asarray(d, float) / np.linalg.norm(d)
        return mesh.nodes[bn[np.argmax(mesh.nodes[bn] @ d)]]

    ea, eb = scalp_node([0.3, 0.2, 1.0]), scalp_node([-0.5, 0.1, 0.6])
    head = SphereHead.create(RADII, [SIGMA[2], SIGMA[4], SIGMA[5]])
    ref = np.asarray(sphere_tes_field(head, np.stack([ea, eb]), [1e-3, -1e-3], pts))
    f = p2.tes(Montage.create([point_electrode(ea, "a"), point_electrode(eb, "b")], [1e-3, -1e-3]))
    rdm, mag = rdm_mag(f.element_field()[brain], ref)
    assert rdm <= 0.02 and abs(mag) <= 0.02


def test_tes_complete_electrode_model_conserves_current(sphere, p1):
    mesh = sphere[0]
    bn = np.unique(mesh.boundary_faces())

    def scalp_node(d):
        d = np.asarray(d, float) / np.linalg.norm(d)
        return mesh.nodes[bn[np.argmax(mesh.nodes[bn] @ d)]]

    ea, eb = scalp_node([0.3, 0.2, 1.0]), scalp_node([-0.5, 0.1, 0.6])
    # gel-covered electrodes (complete electrode model) deliver exactly their currents
    els = [
        disc_electrode(ea, 0.02, 0.003, 1.0, "a"),
        rect_electrode(eb, 0.04, 0.03, gel_thickness=0.004, gel_conductivity=2.0, name="b"),
        point_electrode(scalp_node([0.0, -1.0, 0.2]), "c"),
    ]
    cur = np.array([2e-3, -1.5e-3, -0.5e-3])
    g = p1.tes(Montage.create(els, cur))
    np.testing.assert_allclose(g.delivered_currents(), cur, atol=1e-6 * 2e-3)
    assert np.all(np.isfinite(g.element_field()))


def test_tes_errors(sphere, p1):
    mesh = sphere[0]
    top = mesh.nodes[np.argmax(mesh.nodes[:, 2])]
    with pytest.raises(ParameterError, match="sum to zero"):
        Montage.create([point_electrode(top), point_electrode(-top)], [1e-3, -0.9e-3])
    off = Montage.create([point_electrode(top * 1.2, "far"), point_electrode(-top)], [1, -1])
    with pytest.raises(GeometryError, match="off the scalp"):
        p1.tes(off)
    with pytest.raises(GeometryError, match="overlap"):
        p1.tes(Montage.create([disc_electrode(top, 0.03), disc_electrode(top, 0.03)], [1, -1]))


@pytest.mark.slow
def test_tms_convergence_p1_recovered_p2():
    """Refining 20 -> 12 mm lowers the P1 and recovered-P1 errors (measured 0.170 -> 0.119
    and 0.119 -> 0.06); P2 is under the 0.02 bound on both meshes."""
    coil, pl = _coil()
    errs = {}
    for h in (0.02, 0.012):
        mesh = sphere_tet_mesh(RADII, edge_length=h)
        sigma = tissue_conductivity(mesh.labels, SIGMA)
        brain = mesh.labels == 2
        pts = mesh.nodes[mesh.tets].mean(axis=1)[brain]
        ref = np.asarray(sphere_tms_field(coil, pts, 1e6, pl))
        f1 = StimulationModel(mesh, sigma, order=1).tms(coil, pl, didt=1e6)
        f2 = StimulationModel(mesh, sigma, order=2, method="amg").tms(coil, pl, didt=1e6)
        errs[h] = (
            rdm_mag(f1.element_field()[brain], ref)[0],
            rdm_mag(f1.recovered_field_at(pts), ref)[0],
            rdm_mag(f2.element_field()[brain], ref)[0],
        )
    coarse, fine = errs[0.02], errs[0.012]
    assert fine[0] < 0.85 * coarse[0] and fine[1] < 0.75 * coarse[1]
    assert coarse[2] <= 0.02 and fine[2] <= 0.02 and fine[2] < coarse[2]
    assert fine[1] < fine[0] and fine[2] < fine[1]


def test_scalp_point_projects_onto_the_mesh_scalp(p1):
    """On a sphere the point over a target is radial, on the r = 0.09 m scalp (up to the
    chord sagitta of the 20 mm triangles), with the radial outward normal; a point just
    outside projects back onto the scalp; bad input raises."""
    u = np.array([0.3, -0.4, 0.866])
    u /= np.linalg.norm(u)
    for r in (0.05, 0.0905):
        point, normal = p1.scalp_point(r * u)
        assert abs(np.linalg.norm(point) - 0.09) < 1.5e-3
        assert np.linalg.norm(np.cross(point / np.linalg.norm(point), u)) < 0.05
        assert normal @ u > 0.99
        assert abs(np.linalg.norm(normal) - 1) < 1e-12
    with pytest.raises(ParameterError):
        p1.scalp_point([0.0, np.nan, 0.0])
