"""BEM on user meshes read from files (mm, binary PLY): the same answer as the
in-memory surfaces, and clear errors for a broken file; BEM on the template head."""

import numpy as np
import pytest

from biosim import GeometryError
from biosim.geometry.mesh import TriangleMesh, nested_spheres, read_mesh, write_mesh
from biosim.geometry.template_head import template_electrodes, template_head
from biosim.physics.electromag import BEMForward, EEGSensors, SphereHead, eeg_gain

RADII = (0.0783, 0.0828, 0.09)
SIGMA = (0.3, 0.006, 0.3)


def _electrodes(n=32, r=0.09):
    i = np.arange(n) + 0.5
    z = 1 - i / n * 1.3
    phi = i * np.pi * (3 - np.sqrt(5))
    rho = np.sqrt(1 - z**2)
    return EEGSensors(
        tuple(f"E{k}" for k in range(n)),
        r * np.stack([rho * np.cos(phi), rho * np.sin(phi), z], 1),
        "average",
    )


def test_bem_from_mesh_files_equals_in_memory(tmp_path):
    surfaces = nested_spheres(RADII, subdivisions=2)
    paths = []
    for s in surfaces:
        paths.append(write_mesh(s, tmp_path / f"{s.name}.ply", units="mm"))
    loaded = [read_mesh(p, units="mm") for p in paths]
    eeg = _electrodes()
    src = np.array([[0.0, 0.02, 0.04], [0.01, -0.03, 0.02]])
    g_file = np.asarray(BEMForward.create(loaded, SIGMA, eeg=eeg).eeg_gain(src))
    g_mem = np.asarray(BEMForward.create(surfaces, SIGMA, eeg=eeg).eeg_gain(src))
    np.testing.assert_allclose(g_file, g_mem, rtol=1e-5, atol=1e-9 * np.abs(g_mem).max())
    exact = eeg.reference_matrix() @ np.asarray(
        eeg_gain(SphereHead.create(RADII, SIGMA), eeg.positions, src)
    ).reshape(32, -1)
    u, v = g_file.reshape(32, -1), exact
    rdm = np.linalg.norm(u / np.linalg.norm(u, axis=0) - v / np.linalg.norm(v, axis=0), axis=0)
    assert rdm.max() < 0.05  # 3 x 162 vertices


def test_inward_mesh_file_is_refused_by_name(tmp_path):
    surfaces = nested_spheres(RADII, subdivisions=1)
    flipped = TriangleMesh(surfaces[1].vertices, surfaces[1].faces[:, ::-1], "skull")
    write_mesh(flipped, tmp_path / "skull.ply", units="mm")
    bad = [surfaces[0], read_mesh(tmp_path / "skull.ply", units="mm"), surfaces[2]]
    with pytest.raises(GeometryError, match="skull"):
        BEMForward.create(bad, SIGMA, eeg=_electrodes())


def test_bem_on_the_template_head():
    """642-vertex template head, 10-20 electrodes on its scalp: an occipital dipole
    pointing backwards gives its largest potentials at occipital/parietal electrodes."""
    names, pos = template_electrodes("standard_1020", n_vertices=642)
    eeg = EEGSensors(tuple(names), pos, "average")
    fwd = BEMForward.create(template_head(642), (0.33, 0.0042, 0.33), eeg=eeg)
    occipital = np.array([[0.0, -0.075, 0.01]])  # under O1/Oz/O2
    g = np.asarray(fwd.eeg_gain(occipital))[:, 0, :]
    v = g @ np.array([0.0, -1.0, 0.0])  # moment pointing backwards
    top = [names[k] for k in np.argsort(v)[-3:]]
    assert set(top) & {"O1", "Oz", "O2", "P7", "P8"}, top
