"""FEM lead fields on a coarse 4-shell sphere against the exact series (EEG)
and Sarvas' formula (MEG), per source model; the conductivity gradient against
finite differences.  The convergence study is in the slow tests and
benchmarks/leadfield_fem.py."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import biosim  # noqa: F401  (float64)
from biosim._core.errors import ParameterError
from biosim.geometry.tetmesh import sphere_tet_mesh
from biosim.physics.electromag import EEGSensors, SphereHead, eeg_gain, meg_gain, opm_array
from biosim.physics.electromag.fem_leadfield import FEMForward, subtraction_loads

RADII = (0.078, 0.080, 0.086, 0.092)
SIGMA = (0.33, 1.79, 0.01, 0.43)
TAGS = {2: 0.33, 3: 1.79, 4: 0.01, 5: 0.43}


def _electrodes(n=32, seed=1):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 3))
    v[:, 2] = np.abs(v[:, 2])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return EEGSensors(tuple(f"E{i}" for i in range(n)), RADII[-1] * v)


def _rdm_mag(a, b):
    a, b = np.ravel(a), np.ravel(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return np.linalg.norm(a / na - b / nb), na / nb


@pytest.fixture(scope="module")
def model():
    mesh = sphere_tet_mesh(RADII, edge_length=10e-3)
    eeg = _electrodes()
    meg = opm_array(12, scalp_radius=RADII[-1], axes="radial")
    return FEMForward.create(mesh, TAGS, eeg=eeg, meg=meg, source_model="subtraction")


@pytest.fixture(scope="module")
def dipoles():
    d = np.array([0.3, 0.4, 0.866])
    d /= np.linalg.norm(d)
    pos = RADII[0] * np.array([0.3, 0.6, 0.85])[:, None] * d
    return pos, d


def test_eeg_per_source_model_against_the_exact_sphere(model, dipoles):
    pos, d = dipoles
    head = SphereHead.create(RADII, SIGMA)
    ref = np.einsum(
        "ij,jsk->isk", model.eeg.reference_matrix(), eeg_gain(head, model.eeg.positions, pos)
    )
    # measured on this 34 K-tet mesh (10 mm edges), worst of the three dipoles:
    # RDM subtraction 0.008, St. Venant 0.044, partial integration 0.094; |1-MAG| <= 0.014
    limits = {"subtraction": 0.012, "venant": 0.08, "partial_integration": 0.15}
    for name, lim in limits.items():
        fwd = dataclasses.replace(model, source_model=name)
        g = np.asarray(fwd.eeg_gain(pos))
        assert g.shape == (model.eeg.n_channels, len(pos), 3)
        for s in range(len(pos)):
            rdm, mag = _rdm_mag(g[:, s], ref[:, s])
            assert rdm < lim and abs(1 - mag) < lim, (name, s, rdm, mag)


def test_meg_against_sarvas(model, dipoles):
    pos, d = dipoles
    tan = np.cross(d, [0.0, 0.0, 1.0])
    tan /= np.linalg.norm(tan)
    g = np.asarray(model.meg_gain(pos))
    ref = np.asarray(meg_gain(model.meg, pos))
    for s in range(len(pos)):
        rdm, mag = _rdm_mag(g[:, s] @ tan, ref[:, s] @ tan)
        # measured: RDM <= 0.0011, |1-MAG| <= 0.0006, radial/tangential <= 0.0013
        assert rdm < 0.005 and abs(1 - mag) < 0.005, (s, rdm, mag)
        # a radial dipole in a sphere produces no field outside (Sarvas)
        assert np.linalg.norm(g[:, s] @ d) < 0.005 * np.linalg.norm(ref[:, s] @ tan)


def test_subtraction_loads_do_not_depend_on_the_batching(model, dipoles):
    # sources are processed in vectorised batches: one at a time gives the same loads
    pos = dipoles[0]
    model.source_matrix(pos)  # builds the mesh topology
    topo = model._topology
    a = subtraction_loads(topo, pos, model.patch_radius, meg=model.meg, batch=1)
    b = subtraction_loads(topo, pos, model.patch_radius, meg=model.meg, batch=256)
    assert a.pairs == b.pairs and len(a.pairs) > 0
    for x, y in zip((a.const,) + a.parts, (b.const,) + b.parts):
        assert abs(x - y).max() <= 1e-12 * abs(x).max()
    for x, y in zip(a.fields, b.fields):
        assert (x is None) == (y is None)
        if x is not None:
            assert np.abs(x - y).max() <= 1e-12 * np.abs(x).max()


def test_conductivity_gradient_matches_finite_differences(dipoles):
    # the adjoint-vs-FD identity holds on any mesh: a coarse one (16 mm edges,
    # ~9 K tets) and 8 electrodes keep the traced solves cheap
    pos = dipoles[0][1:2]
    mesh = sphere_tet_mesh(RADII, edge_length=16e-3)
    fwd = FEMForward.create(mesh, TAGS, eeg=_electrodes(8), source_model="subtraction")
    w = jnp.asarray(np.random.default_rng(3).standard_normal((fwd.eeg.n_channels, 1, 3)))

    def loss(sig):
        return jnp.sum(w * fwd.gain(pos, conductivities=sig))

    sig = jnp.asarray(fwd.conductivities)
    g = jax.grad(loss)(sig)
    skull = fwd.tissues.index(4)
    h = 1e-4 * sig[skull]
    e = jnp.zeros_like(sig).at[skull].set(h)
    fd = (loss(sig + e) - loss(sig - e)) / (2 * h)
    assert abs(g[skull] - fd) < 1e-5 * abs(fd)
    # the traced gain equals the stored transfer-matrix gain
    assert np.allclose(fwd.gain(pos, conductivities=sig), fwd.gain(pos), rtol=1e-8, atol=0)


def test_bad_input(model):
    with pytest.raises(ParameterError):
        FEMForward.create(model.space.mesh, {2: 0.33}, eeg=model.eeg)
    with pytest.raises(ParameterError):
        FEMForward.create(model.space.mesh, TAGS)
    with pytest.raises(ParameterError):
        FEMForward.create(model.space.mesh, TAGS, eeg=model.eeg, source_model="dipole")
    with pytest.raises(ParameterError):
        model.gain(np.array([[0.2, 0.0, 0.0]]))  # outside the head
    with pytest.raises(ParameterError):
        model.gain(np.array([[0.0, 0.0, 0.089]]))  # in the scalp


@pytest.mark.slow
def test_convergence_under_refinement_per_source_model():
    """Worst RDM over radial and tangential dipoles at eccentricities 0.3-0.95
    decreases from 8 mm to 5 mm edges; subtraction <= 0.01 at 5 mm (~200 K tets)."""
    eeg = _electrodes(64)
    head = SphereHead.create(RADII, SIGMA)
    ecc = np.array([0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    d = np.array([0.3, 0.4, 0.866])
    d /= np.linalg.norm(d)
    tan = np.cross(d, [0.0, 0.0, 1.0])
    tan /= np.linalg.norm(tan)
    pos = RADII[0] * ecc[:, None] * d
    ref = np.einsum("ij,jsk->isk", eeg.reference_matrix(), eeg_gain(head, eeg.positions, pos))
    worst = {}
    for h in (8e-3, 5e-3):
        fwd = FEMForward.create(sphere_tet_mesh(RADII, edge_length=h), TAGS, eeg=eeg)
        for name in ("subtraction", "venant", "partial_integration"):
            g = np.asarray(dataclasses.replace(fwd, source_model=name).gain(pos))
            errs = [
                max(
                    _rdm_mag(g[:, s] @ q, ref[:, s] @ q)[0],
                    abs(1 - _rdm_mag(g[:, s] @ q, ref[:, s] @ q)[1]),
                )
                for s in range(len(pos))
                for q in (d, tan)
            ]
            worst[name, h] = max(errs)
    for name in ("subtraction", "venant", "partial_integration"):
        assert worst[name, 5e-3] < worst[name, 8e-3], worst
    assert worst["subtraction", 5e-3] < 0.01, worst
    assert worst["subtraction", 5e-3] < worst["venant", 5e-3] < worst["partial_integration", 5e-3]


@pytest.mark.slow
def test_p2_subtraction_is_more_accurate_than_p1():
    eeg = _electrodes(32)
    head = SphereHead.create(RADII, SIGMA)
    pos = RADII[0] * np.array([[0.2, 0.3, 0.5], [0.5, -0.3, 0.6]])
    ref = np.einsum("ij,jsk->isk", eeg.reference_matrix(), eeg_gain(head, eeg.positions, pos))
    mesh = sphere_tet_mesh(RADII, edge_length=10e-3)
    err = {}
    for order in (1, 2):
        g = np.asarray(FEMForward.create(mesh, TAGS, eeg=eeg, order=order).gain(pos))
        err[order] = max(_rdm_mag(g[:, s], ref[:, s])[0] for s in range(len(pos)))
    assert err[2] < err[1], err
