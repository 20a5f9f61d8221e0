"""Symmetric Galerkin BEM: analytic kernels, operator identities, accuracy
against the exact multi-shell sphere (EEG) and Sarvas (MEG), gradients, and
errors for broken head models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import biosim  # noqa: F401  (float64)
from biosim._core.errors import GeometryError, ParameterError
from biosim.geometry.mesh import TriangleMesh, icosphere, nested_spheres
from biosim.physics.electromag.bem import BEMForward, BEMOperators, meg_surface_functionals
from biosim.physics.electromag.bem_integrals import (
    double_layer_p0,
    double_layer_p1,
    single_layer_p0,
    single_layer_p1,
    solid_angle,
    triangle_rule,
)
from biosim.physics.electromag.bem_operators import (
    corner_matrix,
    curl_matrices,
    double_layer_matrix,
    double_layer_matrix_p1,
    single_layer_matrix,
    single_layer_matrix_p1,
)
from biosim.physics.electromag.bem_solve import _factor, solve_concrete
from biosim.physics.electromag.bem_system import (
    apply,
    blocks,
    conductivity_derivative,
    deflation_constant,
)
from biosim.physics.electromag.sensors import EEGSensors, opm_array, squid_helmet_306
from biosim.physics.electromag.sphere_eeg import SphereHead, eeg_gain
from biosim.physics.electromag.sphere_meg import meg_gain

RADII = (0.0783, 0.0828, 0.090)
SIGMA = (0.3, 0.006, 0.3)


def rdm_mag(u, v):
    u, v = np.ravel(u), np.ravel(v)
    return (
        np.linalg.norm(u / np.linalg.norm(u) - v / np.linalg.norm(v)),
        np.linalg.norm(u) / np.linalg.norm(v),
    )


def _electrodes(n=64, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(3 * n, 3))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    e = e[e[:, 2] > -0.3][:n] * RADII[-1]
    return EEGSensors(tuple(f"E{i}" for i in range(len(e))), e)


def _dipole(ecc, direction=(0.3, 0.2, 0.9)):
    d = np.asarray(direction, float)
    return (d / np.linalg.norm(d) * ecc * RADII[0])[None]


# ---------------------------------------------------------------- kernels
TRI = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [0.3, 0.9, 0.1]])


def _brute(x, tri=TRI, level=6):
    bary, w = triangle_rule("7", level)
    tri = np.asarray(tri)
    y = bary @ tri
    nvec = np.cross(tri[1] - tri[0], tri[2] - tri[0])
    area, n = np.linalg.norm(nvec) / 2, nvec / np.linalg.norm(nvec)
    r = np.linalg.norm(x - y, axis=1)
    sl = area * np.sum(w / r) / (4 * np.pi)
    dl = area * np.sum(bary * (w * ((x - y) @ n) / (4 * np.pi * r**3))[:, None], axis=0)
    sl1 = area * np.sum(bary * (w / r)[:, None], axis=0) / (4 * np.pi)
    return sl, dl, sl1


@pytest.mark.parametrize(
    "x", [(0.4, 0.3, 0.5), (2.0, 1.0, -0.3), (1.5, 1.5, 0.0), (0.2, -0.4, -0.2)]
)
def test_analytic_triangle_potentials_match_fine_quadrature(x):
    x = np.array(x)
    sl, dl, sl1 = _brute(x)
    assert float(single_layer_p0(jnp.asarray(x), TRI)) == pytest.approx(sl, rel=1e-9)
    np.testing.assert_allclose(np.asarray(single_layer_p1(jnp.asarray(x), TRI)), sl1, rtol=1e-9)
    np.testing.assert_allclose(
        np.asarray(double_layer_p1(jnp.asarray(x), TRI)), dl, rtol=1e-8, atol=1e-14
    )
    assert float(double_layer_p0(jnp.asarray(x), TRI)) == pytest.approx(
        dl.sum(), rel=1e-8, abs=1e-14
    )


def test_solid_angles_of_a_closed_surface():
    s = icosphere(2, 1.0)
    tri = jnp.asarray(s.vertices[s.faces])
    assert float(jnp.sum(solid_angle(jnp.array([0.1, -0.2, 0.3]), tri))) == pytest.approx(4 * np.pi)
    assert abs(float(jnp.sum(solid_angle(jnp.array([1.5, 0.2, 0.3]), tri)))) < 1e-12


def test_operator_identities_on_closed_surfaces():
    """D 1 = -1/2 on the surface itself, -1 inside another surface, 0 outside;
    the hypersingular operator annihilates constants; S is symmetric positive."""
    inner, outer = nested_spheres((0.05, 0.07), 2, names=("a", "b"))
    area_in = inner.areas
    d_self = double_layer_matrix(inner, inner, same=True)
    np.testing.assert_allclose(d_self.sum(axis=1), -0.5 * area_in, rtol=2e-3)
    d_out = double_layer_matrix(inner, outer)  # test on inner, trial on outer
    # far pairs use a 3 x 3 point Gauss rule: ~1e-4 relative quadrature error
    np.testing.assert_allclose(d_out.sum(axis=1), -area_in, rtol=3e-4)
    d_in = double_layer_matrix(outer, inner)
    assert np.max(np.abs(d_in.sum(axis=1))) < 1e-4 * outer.areas.max()
    s = single_layer_matrix(inner, inner, same=True)
    assert np.allclose(s, s.T) and np.linalg.eigvalsh(s).min() > 0
    for c in curl_matrices(inner):
        assert np.max(np.abs(c @ np.ones(len(inner.vertices)))) < 1e-9


def test_p1_flux_operators_reduce_to_p0_ones():
    """The hat functions sum to one: summing the P1-P1 blocks over the trial
    (test) vertices gives the P0 blocks' sums; D_P1 1 = -1/2 (vertex areas)
    on the surface itself; the P1 single layer is symmetric positive definite."""
    inner, outer = nested_spheres((0.05, 0.07), 2, names=("a", "b"))
    s1, s0 = single_layer_matrix_p1(inner, inner, same=True, with_p0=True)
    np.testing.assert_allclose(s0, single_layer_matrix(inner, inner, same=True), rtol=1e-12, atol=0)
    assert np.allclose(s1, s1.T) and np.linalg.eigvalsh(s1).min() > 0
    assert s1.sum() == pytest.approx(s0.sum(), rel=1e-12)
    corner = corner_matrix(inner)  # (nv, 3 nt)
    vertex_areas = corner @ np.repeat(inner.areas / 3, 3)
    s1_cross = single_layer_matrix_p1(inner, outer)
    np.testing.assert_allclose(
        s1_cross.sum(axis=0) @ np.ones(len(outer.vertices)),
        single_layer_matrix(inner, outer).sum(),
        rtol=1e-12,
    )
    d1_self = double_layer_matrix_p1(inner, inner, same=True)
    np.testing.assert_allclose(d1_self.sum(axis=1), -0.5 * vertex_areas, rtol=3e-3)
    d1_out = double_layer_matrix_p1(inner, outer)
    np.testing.assert_allclose(d1_out.sum(axis=1), -vertex_areas, rtol=3e-4)
    # summing over the test vertices gives the P0-test double layer
    np.testing.assert_allclose(
        d1_out.sum(axis=0), double_layer_matrix(inner, outer).sum(axis=0), rtol=1e-10, atol=1e-14
    )


# ---------------------------------------------------------------- sphere accuracy
@pytest.fixture(scope="module")
def sphere162():
    ops = BEMOperators.create(nested_spheres(RADII, 2))
    eeg = _electrodes()
    meg = squid_helmet_306(accuracy="point").select(("mag", "grad"))
    opms = opm_array(32, axes="radial")
    fwd = BEMForward.from_operators(ops, SIGMA, eeg=eeg, meg=meg)
    fwd_opm = BEMForward.from_operators(ops, SIGMA, meg=opms)
    return ops, eeg, meg, opms, fwd, fwd_opm


def test_symmetric_system_and_sizes(sphere162):
    ops = sphere162[0]
    assert ops.n_unknowns == 3 * 162 + 2 * 320
    avv, avp, app = blocks(ops, np.asarray(SIGMA))
    assert np.allclose(avv, avv.T) and np.allclose(app, app.T)
    # constant potential is the null space of the V block
    assert np.max(np.abs(avv @ np.ones(avv.shape[0]))) < 1e-9 * np.max(np.abs(avv))


def test_mixed_precision_solve_equals_double(sphere162):
    """Matrix-free float64 apply equals the dense blocks; the float32 factor with
    float64 iterative refinement reaches the float64 direct solution."""
    ops = sphere162[0]
    sig = np.asarray(SIGMA)
    avv, avp, app = blocks(ops, sig)
    c = deflation_constant(ops, sig)
    assert c == pytest.approx(np.mean(np.abs(np.diag(avv))) / len(avv), rel=1e-12)
    a = np.block([[avv - c, avp], [avp.T, app]])
    rhs = np.random.default_rng(1).normal(size=(ops.n_unknowns, 5))
    np.testing.assert_allclose(
        apply(ops, sig, rhs, c), a @ rhs, rtol=1e-12, atol=1e-12 * np.abs(a).max()
    )
    x_d = solve_concrete(ops, sig, rhs, precision="double")
    np.testing.assert_allclose(a @ x_d, rhs, atol=1e-9 * np.abs(rhs).max())
    x_m = solve_concrete(ops, sig, rhs)
    assert x_m.dtype == np.float64
    assert np.max(np.abs(x_m - x_d)) < 1e-8 * np.max(np.abs(x_d))
    x_tight = solve_concrete(ops, sig, rhs, rtol=1e-14)
    assert np.max(np.abs(x_tight - x_d)) < 1e-11 * np.max(np.abs(x_d))
    with pytest.raises(ParameterError, match="precision"):
        solve_concrete(ops, sig, rhs, precision="half")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_factorisation_works_in_place(sphere162, dtype):
    """The block LDL^T factors overwrite the blocks (no copies of the system's
    size: the peak memory of a solve is the blocks once) and still solve it."""
    ops = sphere162[0]
    avv, avp, app = blocks(ops, np.asarray(SIGMA), dtype=dtype)
    a = np.block([[avv, avp], [avp.T, app]]).astype(np.float64)
    c = deflation_constant(ops, SIGMA)
    a[: len(avv), : len(avv)] -= c
    avv -= dtype(c)
    memory = [avv, avp, app]
    solve = _factor(avv, avp, app)
    factors = [
        cell.cell_contents
        for cell in solve.__closure__
        if isinstance(cell.cell_contents, np.ndarray) and cell.cell_contents.ndim == 2
    ]
    assert len(factors) == 3
    assert all(any(np.shares_memory(f, m) for m in memory) for f in factors)
    rhs = np.random.default_rng(2).normal(size=(ops.n_unknowns, 3))
    tol = 1e-12 if dtype == np.float64 else 1e-4
    assert np.linalg.norm(a @ solve(rhs) - rhs) < tol * np.linalg.norm(rhs)


@pytest.mark.parametrize("ecc", [0.1, 0.5, 0.8])
def test_eeg_matches_three_shell_sphere(sphere162, ecc):
    _, eeg, _, _, fwd, _ = sphere162
    head = SphereHead.three_shell()
    pos = _dipole(ecc)
    g = np.asarray(fwd.eeg_gain(pos))[:, 0]
    ref = eeg.reference_matrix() @ np.asarray(eeg_gain(head, eeg.positions, pos))[:, 0]
    radial = pos[0] / np.linalg.norm(pos[0])
    tang = np.cross(radial, [0.0, 0.0, 1.0])
    tang /= np.linalg.norm(tang)
    # measured on 3 x 162 vertices: RDM 0.005/0.009/0.025, MAG 1.024-1.041
    tol_rdm = {0.1: 0.007, 0.5: 0.012, 0.8: 0.03}[ecc]
    for o in (radial, tang):
        rdm, mag = rdm_mag(g @ o, ref @ o)
        assert rdm < tol_rdm
        assert abs(mag - 1) < 0.045


@pytest.mark.parametrize("ecc", [0.1, 0.5, 0.8])
def test_meg_matches_sarvas(sphere162, ecc):
    _, _, meg, opms, fwd, fwd_opm = sphere162
    pos = _dipole(ecc)
    radial = pos[0] / np.linalg.norm(pos[0])
    tang = np.cross(radial, [0.0, 0.0, 1.0])
    tang /= np.linalg.norm(tang)
    # measured on 3 x 162 vertices: SQUID RDM 0.0042/0.0037/0.0080, OPM (6 mm above
    # the scalp) 0.0092/0.0017/0.0011; |1 - MAG| < 0.001
    tols = {
        "squid": {0.1: 0.006, 0.5: 0.006, 0.8: 0.012},
        "opm": {0.1: 0.012, 0.5: 0.004, 0.8: 0.004},
    }
    for f, sens, kind in ((fwd, meg, "squid"), (fwd_opm, opms, "opm")):
        g = np.asarray(f.meg_gain(pos))[:, 0] @ tang
        ref = np.asarray(meg_gain(sens, pos))[:, 0] @ tang
        rdm, mag = rdm_mag(g, ref)
        assert rdm < tols[kind][ecc]
        assert abs(mag - 1) < 0.003
    # a radial dipole in a sphere produces no external field: only discretisation error
    g_rad = np.asarray(fwd.meg_gain(pos))[:, 0] @ radial
    g_tan = np.asarray(fwd.meg_gain(pos))[:, 0] @ tang
    assert np.linalg.norm(g_rad) < 0.015 * np.linalg.norm(g_tan)


def test_unstructured_fibonacci_spheres_match_analytic():
    """Unstructured (Fibonacci-lattice) layers of 400 vertices, not icospheres."""
    fwd = BEMForward.create(
        nested_spheres(RADII, n_vertices=400),
        SIGMA,
        eeg=_electrodes(),
        meg=squid_helmet_306(accuracy="point").select(("mag", "grad")),
    )
    eeg, meg = fwd.eeg, fwd.meg
    # measured: EEG radial RDM 0.0047 / 0.0129, MAG 1.010 / 1.012; MEG RDM 0.0009 / 0.0019
    for ecc, tol_eeg, tol_meg in ((0.5, 0.007, 0.0015), (0.8, 0.018, 0.003)):
        pos = _dipole(ecc)
        radial = pos[0] / np.linalg.norm(pos[0])
        tang = np.cross(radial, [0.0, 0.0, 1.0])
        tang /= np.linalg.norm(tang)
        g = np.asarray(fwd.gain(pos))[:, 0]
        ref_e = (
            eeg.reference_matrix()
            @ np.asarray(eeg_gain(SphereHead.three_shell(), eeg.positions, pos))[:, 0]
        )
        ref_m = np.asarray(meg_gain(meg, pos))[:, 0]
        rdm, mag = rdm_mag(g[: eeg.n_channels] @ radial, ref_e @ radial)
        assert rdm < tol_eeg and abs(mag - 1) < 0.02
        rdm, mag = rdm_mag(g[eeg.n_channels :] @ tang, ref_m @ tang)
        assert rdm < tol_meg and abs(mag - 1) < 0.001


@pytest.fixture(scope="module")
def sphere162_p1():
    ops = BEMOperators.create(nested_spheres(RADII, 2), flux="p1")
    return ops, BEMForward.from_operators(
        ops,
        SIGMA,
        eeg=_electrodes(),
        meg=squid_helmet_306(accuracy="point").select(("mag", "grad")),
    )


@pytest.mark.parametrize("ecc", [0.5, 0.8])
def test_p1_flux_matches_analytic_and_p0(sphere162, sphere162_p1, ecc):
    """Per-vertex normal currents (3 x 162 + 2 x 162 unknowns instead of
    3 x 162 + 2 x 320): same accuracy against the 3-shell sphere and Sarvas
    as the per-triangle currents; the two agree to the discretisation error."""
    ops1, fwd1 = sphere162_p1
    fwd0 = sphere162[4]
    assert ops1.n_unknowns == 5 * 162 and ops1.n_flux == (162, 162)
    eeg, meg = fwd1.eeg, fwd1.meg
    pos = _dipole(ecc)
    radial = pos[0] / np.linalg.norm(pos[0])
    tang = np.cross(radial, [0.0, 0.0, 1.0])
    tang /= np.linalg.norm(tang)
    g1 = np.asarray(fwd1.gain(pos))[:, 0]
    g0 = np.asarray(fwd0.gain(pos))[:, 0]
    ref_e = (
        eeg.reference_matrix()
        @ np.asarray(eeg_gain(SphereHead.three_shell(), eeg.positions, pos))[:, 0]
    )
    ref_m = np.asarray(meg_gain(meg, pos))[:, 0]
    ne = eeg.n_channels
    # measured at 162 vertices, p1 / p0: radial EEG RDM 0.0091 / 0.0089 (ecc 0.5), 0.0244 / 0.0236
    # (0.8); tangential MEG RDM 0.0035 / 0.0037, 0.0078 / 0.0080; p1 vs p0 EEG 0.0020, 0.0031
    tol_e, tol_m, tol_01 = {0.5: (0.012, 0.005, 0.003), 0.8: (0.032, 0.011, 0.0045)}[ecc]
    for g in (g1, g0):
        assert rdm_mag(g[:ne] @ radial, ref_e @ radial)[0] < tol_e
        assert rdm_mag(g[ne:] @ tang, ref_m @ tang)[0] < tol_m
    assert rdm_mag(g1[:ne] @ radial, g0[:ne] @ radial)[0] < tol_01
    # the traced (exact source terms everywhere) path equals the concrete one
    g1_traced = np.asarray(jax.jit(fwd1.gain)(jnp.asarray(pos)))[:, 0]
    np.testing.assert_allclose(g1_traced, g1, rtol=1e-6, atol=1e-6 * np.abs(g1).max())


def test_gain_interface_matches_sphere_forward_layout(sphere162):
    _, eeg, meg, _, fwd, _ = sphere162
    g = fwd.gain(_dipole(0.5))
    assert g.shape == (eeg.n_channels + meg.n_channels, 1, 3)
    assert fwd.channel_kinds[: eeg.n_channels] == ("eeg",) * eeg.n_channels
    assert len(fwd.channel_names) == g.shape[0]


# ---------------------------------------------------------------- EEG readout
def _shell_field(x, outer=RADII[-1]):
    """u = z (1 + R^3 / (2 r^3)): harmonic for r > 0, du/dr = 0 on r = R (no
    current leaves the head); returns u and du/dr."""
    r = np.linalg.norm(x, axis=-1)
    z = x[..., 2]
    return z * (1 + outer**3 / (2 * r**3)), z / r * (1 - outer**3 / r**3)


@pytest.mark.parametrize("flux, geometry", [("p0", "flat"), ("p1", "matched"), ("p0", "curved")])
def test_representation_readout_reads_exact_traces(flux, geometry):
    """Green's representation in the scalp compartment, applied to the traces
    of a harmonic field of the scalp shell (nodal potentials on the scalp and
    outer skull, the outer skull's normal current sigma du/dn at the flux
    nodes), gives the field at the electrodes, converging as h^2 (measured
    1.2e-2 / 2.9e-3 of the field's maximum at 162 / 642 vertices, flat P0; the
    P1 interpolant of this smooth field 1.1e-2 / 2.6e-3), and reads a constant potential exactly
    wherever the electrode sits on its face (inside, on an edge, on a vertex)."""
    from biosim.physics.electromag.bem_sensors import eeg_functional

    e = _electrodes(24).positions
    errors = []
    for sub in (2, 3) if geometry != "curved" else (2,):
        ops = BEMOperators.create(nested_spheres(RADII, sub), flux=flux, geometry=geometry)
        f_v, f_p = eeg_functional(ops, e)
        v_off, p_off = ops.offsets()
        x = np.zeros(int(p_off[-1]))
        for i in (1, 2):
            v = np.asarray(ops.surfaces[i].vertices)
            x[v_off[i] : v_off[i + 1]] = _shell_field(
                v / np.linalg.norm(v, axis=1)[:, None] * RADII[i]
            )[0]
        mesh = ops.surfaces[1]
        nodes = mesh.vertices if flux == "p1" else mesh.vertices[mesh.faces].mean(axis=1)
        x[p_off[1] : p_off[2]] = (
            SIGMA[2] * _shell_field(nodes / np.linalg.norm(nodes, axis=1)[:, None] * RADII[1])[1]
        )
        exact = _shell_field(e)[0]
        errors.append(np.abs((f_v + f_p / SIGMA[2]) @ x - exact).max() / np.abs(exact).max())
        # constants, with electrodes on a vertex and on an edge midpoint of the scalp
        scalp = ops.surfaces[2]
        on_mesh = np.array([scalp.vertices[0], scalp.vertices[scalp.faces[5, :2]].mean(axis=0)])
        for pts in (e, on_mesh):
            f_v, f_p = eeg_functional(ops, pts)
            np.testing.assert_allclose(f_v[:, : v_off[-1]].sum(axis=1), 1.0, rtol=1e-10)
    assert errors[0] < 0.013
    if len(errors) > 1:
        assert errors[1] < 0.3 * errors[0]


def test_representation_readout_beats_interpolation_near_the_surface(sphere162):
    """On 3 x 162 vertices, over 12 directions at eccentricity 0.8, the
    representation readout lowers the EEG RDM against the exact sphere
    (measured mean / max 0.0137 / 0.0317 against 0.0232 / 0.0540 for the P1
    interpolant; |1 - MAG| at most 0.032 against 0.039)."""
    ops, eeg, *_ = sphere162
    head = SphereHead.three_shell()
    rng = np.random.default_rng(5)
    d = rng.normal(size=(12, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pos = 0.8 * RADII[0] * d
    ref = eeg.reference_matrix() @ np.asarray(eeg_gain(head, eeg.positions, pos)).reshape(
        eeg.n_channels, -1
    )
    scores = {}
    for readout in ("interpolation", "representation"):
        g = np.asarray(
            BEMForward.from_operators(ops, SIGMA, eeg=eeg, eeg_readout=readout).gain(pos)
        )
        g = g.reshape(eeg.n_channels, -1)
        scores[readout] = np.array([rdm_mag(g[:, k], ref[:, k]) for k in range(g.shape[1])])
    rep, itp = scores["representation"], scores["interpolation"]
    assert rep[:, 0].mean() < 0.75 * itp[:, 0].mean() and rep[:, 0].max() < 0.75 * itp[:, 0].max()
    assert np.abs(rep[:, 1] - 1).max() < np.abs(itp[:, 1] - 1).max() + 0.005


def test_eeg_readout_choices():
    """The default readout is the representation for nested heads and the
    interpolant for a single surface (whose compartment holds the sources);
    unknown readouts and the representation on one surface raise."""
    surfaces = nested_spheres((0.06, 0.075, 0.09), 1)
    eeg = _electrodes(8)
    eeg = EEGSensors(eeg.names, eeg.positions / RADII[-1] * 0.09)
    ops = BEMOperators.create(surfaces)
    default = np.asarray(
        BEMForward.from_operators(ops, SIGMA, eeg=eeg).eeg_gain(_dipole(0.5) * 0.7)
    )
    rep = np.asarray(
        BEMForward.from_operators(ops, SIGMA, eeg=eeg, eeg_readout="representation").eeg_gain(
            _dipole(0.5) * 0.7
        )
    )
    np.testing.assert_array_equal(default, rep)
    with pytest.raises(ParameterError, match="eeg_readout"):
        BEMForward.from_operators(ops, SIGMA, eeg=eeg, eeg_readout="nearest")
    one = BEMOperators.create(surfaces[-1:])
    BEMForward.from_operators(one, (0.3,), eeg=eeg)
    with pytest.raises(ParameterError, match="single-surface"):
        BEMForward.from_operators(one, (0.3,), eeg=eeg, eeg_readout="representation")


# ---------------------------------------------------------------- gradients
@pytest.fixture(scope="module")
def small():
    surfaces = nested_spheres((0.06, 0.075, 0.09), 1)
    ops = BEMOperators.create(surfaces)
    rng = np.random.default_rng(3)
    e = rng.normal(size=(12, 3))
    e = e / np.linalg.norm(e, axis=1, keepdims=True) * 0.09
    eeg = EEGSensors(tuple(f"E{i}" for i in range(12)), e)
    meg = opm_array(8, axes="radial")
    return ops, eeg, meg, meg_surface_functionals(ops, meg)


def test_gradient_wrt_skull_conductivity(small):
    ops, eeg, meg, mf = small
    pos = np.array([[0.01, 0.02, 0.03]])
    w = np.random.default_rng(0).normal(size=(eeg.n_channels + meg.n_channels, 1, 3))
    scale = np.concatenate([np.full(eeg.n_channels, 1e2), np.full(meg.n_channels, 1e10)])

    def loss(s_skull):
        sig = jnp.stack([0.3, s_skull, 0.3])
        g = BEMForward.from_operators(ops, sig, eeg=eeg, meg=meg, meg_functionals=mf).gain(pos)
        return jnp.sum(w * g * scale[:, None, None])

    grad = float(jax.grad(loss)(0.006))
    h = 1e-5
    fd = (float(loss(0.006 + h)) - float(loss(0.006 - h))) / (2 * h)  # concrete (LAPACK) path
    assert grad == pytest.approx(fd, rel=1e-5)


@pytest.mark.parametrize(
    "flux, geometry",
    [("p1", "flat"), ("p0", "curved"), pytest.param("p0", "matched", marks=pytest.mark.slow)],
)
def test_gradients_p1_flux_and_curved_elements(flux, geometry):
    """Conductivity and position gradients with per-vertex currents, and on
    curved elements and volume-matched surfaces, against finite differences of
    the concrete (LAPACK) path.  (The matched geometry is the flat P0 BEM on
    moved vertices, the traced path of test_gradient_wrt_skull_conductivity and
    test_gradient_wrt_source_position: slow only, 11-34 s of CPU.)"""
    surfaces = nested_spheres((0.06, 0.075, 0.09), 1)
    ops = BEMOperators.create(surfaces, flux=flux, geometry=geometry)
    meg = opm_array(8, axes="radial")
    e = np.random.default_rng(3).normal(size=(12, 3))
    eeg = EEGSensors(
        tuple(f"E{i}" for i in range(12)), e / np.linalg.norm(e, axis=1, keepdims=True) * 0.09
    )
    mf = meg_surface_functionals(ops, meg)
    w = np.random.default_rng(0).normal(size=(20, 2, 3))
    scale = np.concatenate([np.full(12, 1e2), np.full(8, 1e10)])

    def loss(s_skull, p):
        sig = jnp.stack([0.3, s_skull, 0.3])
        g = BEMForward.from_operators(ops, sig, eeg=eeg, meg=meg, meg_functionals=mf).gain(p)
        return jnp.sum(w * g * scale[:, None, None])

    pos = jnp.array([[0.01, 0.02, 0.03], [0.0, -0.02, 0.05]])
    g_sig, g_pos = jax.grad(loss, argnums=(0, 1))(0.006, pos)
    h = 1e-5
    fd = (float(loss(0.006 + h, pos)) - float(loss(0.006 - h, pos))) / (2 * h)
    assert float(g_sig) == pytest.approx(fd, rel=1e-5)
    h = 1e-6
    fd_pos = (
        float(loss(0.006, pos.at[1, 2].add(h))) - float(loss(0.006, pos.at[1, 2].add(-h)))
    ) / (2 * h)
    assert float(g_pos[1, 2]) == pytest.approx(fd_pos, rel=1e-5)


def test_gradient_wrt_scalp_conductivity_through_the_readout(small):
    """The representation readout depends on the scalp conductivity (its
    outer-skull current term is p / sigma_N): the EEG gradient with respect
    to sigma_N, through the readout and the solve, matches differences of the
    concrete path."""
    ops, eeg, _, _ = small
    pos = np.array([[0.01, 0.02, 0.03], [0.0, -0.03, 0.04]])
    w = np.random.default_rng(2).normal(size=(eeg.n_channels, 2, 3))

    def loss(s_scalp):
        sig = jnp.stack([0.3, 0.006, s_scalp])
        return 1e2 * jnp.sum(w * BEMForward.from_operators(ops, sig, eeg=eeg).gain(pos))

    grad = float(jax.grad(loss)(0.3))
    h = 1e-5
    fd = (float(loss(0.3 + h)) - float(loss(0.3 - h))) / (2 * h)
    assert grad == pytest.approx(fd, rel=1e-6)


def test_conductivity_derivative_matches_finite_differences(small):
    """d/dsigma_k of lam^T A(sigma) x from the blocks, against central
    differences of the matrix-free apply (A is linear in s_k and 1/s_k)."""
    ops = small[0]
    rng = np.random.default_rng(4)
    lam, x = rng.normal(size=(2, ops.n_unknowns, 3))
    sig = np.array([0.3, 0.006, 0.25])
    d = conductivity_derivative(ops, sig, lam, x)
    for k in range(3):
        h = 1e-6 * sig[k]
        up, dn = sig.copy(), sig.copy()
        up[k] += h
        dn[k] -= h
        fd = (np.sum(lam * apply(ops, up, x)) - np.sum(lam * apply(ops, dn, x))) / (2 * h)
        assert d[k] == pytest.approx(fd, rel=1e-6)


def test_adjoint_and_dense_conductivity_gradients_agree(small):
    """The reverse-mode rule around the LAPACK solve (default) and the dense JAX
    solve give the same values and gradients in all three conductivities,
    eagerly and under jit; bad ``derivatives`` is an error."""
    ops, eeg, meg, mf = small
    pos = np.array([[0.01, 0.02, 0.03], [-0.02, 0.0, 0.04]])
    w = np.random.default_rng(5).normal(size=(eeg.n_channels + meg.n_channels, 2, 3))
    scale = np.concatenate([np.full(eeg.n_channels, 1e2), np.full(meg.n_channels, 1e10)])

    def loss(sig, derivatives):
        g = BEMForward.from_operators(
            ops, sig, eeg=eeg, meg=meg, meg_functionals=mf, derivatives=derivatives
        ).gain(pos)
        return jnp.sum(w * g * scale[:, None, None]) ** 2

    sig = jnp.array([0.33, 0.0042, 0.3])
    v_a, g_a = jax.value_and_grad(loss)(sig, "adjoint")
    v_d, g_d = jax.value_and_grad(loss)(sig, "dense")
    assert float(v_a) == pytest.approx(float(v_d), rel=1e-9)
    np.testing.assert_allclose(np.asarray(g_a), np.asarray(g_d), rtol=1e-6)
    g_jit = jax.jit(jax.grad(lambda s: loss(s, "adjoint")))(sig)
    np.testing.assert_allclose(np.asarray(g_jit), np.asarray(g_a), rtol=1e-9)
    with pytest.raises(ParameterError, match="derivatives"):
        BEMForward.from_operators(ops, sig, eeg=eeg, derivatives="forward")


def test_gradient_wrt_source_position(small):
    ops, eeg, meg, mf = small
    fwd = BEMForward.from_operators(ops, SIGMA, eeg=eeg, meg=meg, meg_functionals=mf)
    w = np.random.default_rng(1).normal(size=(eeg.n_channels + meg.n_channels, 1, 3))
    scale = np.concatenate([np.full(eeg.n_channels, 1e2), np.full(meg.n_channels, 1e10)])

    def loss(p):
        return jnp.sum(w * fwd.gain(p[None]) * scale[:, None, None])

    p0 = jnp.array([0.01, 0.02, 0.03])
    grad = np.asarray(jax.grad(loss)(p0))
    h = 1e-6
    fd = [
        (float(loss(p0.at[k].add(h))) - float(loss(p0.at[k].add(-h)))) / (2 * h) for k in range(3)
    ]
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


# ---------------------------------------------------------------- errors
def test_broken_head_models_raise():
    good = nested_spheres((0.06, 0.075, 0.09), 1)
    with pytest.raises(GeometryError):  # not nested (order swapped)
        BEMOperators.create([good[1], good[0], good[2]])
    inward = TriangleMesh(good[0].vertices, good[0].faces[:, ::-1], "inner_skull")
    with pytest.raises(GeometryError):
        BEMOperators.create([inward, good[1], good[2]])
    open_mesh = TriangleMesh(good[1].vertices, good[1].faces[1:], "outer_skull")
    with pytest.raises(GeometryError):
        BEMOperators.create([good[0], open_mesh, good[2]])
    with pytest.raises(ParameterError):
        BEMOperators.create([good[0].vertices])
    with pytest.raises(ParameterError, match="flux"):
        BEMOperators.create(good, flux="p2")


def test_bad_sensors_sources_and_conductivities_raise(small):
    ops, eeg, meg, _ = small
    with pytest.raises(GeometryError):  # MEG sensors inside the scalp
        BEMForward.from_operators(ops, SIGMA, meg=opm_array(4, scalp_radius=0.07, standoff=0.0))
    inside = EEGSensors(("a", "b"), np.array([[0.0, 0.0, 0.05], [0.0, 0.0, 0.09]]))
    with pytest.raises(GeometryError):
        BEMForward.from_operators(ops, SIGMA, eeg=inside)
    with pytest.raises(ParameterError):
        BEMForward.from_operators(ops, (0.3, 0.006), eeg=eeg)
    with pytest.raises(ParameterError):
        BEMForward.from_operators(ops, (0.3, -0.006, 0.3), eeg=eeg)
    fwd = BEMForward.from_operators(ops, SIGMA, eeg=eeg)
    with pytest.raises(GeometryError):  # source outside the inner surface
        fwd.gain(np.array([[0.0, 0.0, 0.07]]))


@pytest.mark.slow
def test_convergence_642_vs_162_three_shell():
    """Refinement 162 -> 642 vertices per surface reduces EEG and MEG errors
    (measured 642: EEG RDM 0.0008/0.0021/0.0062/0.0094 at ecc 0.1/0.5/0.8/0.9,
    |1 - MAG| <= 0.01; MEG RDM <= 0.0015)."""
    head = SphereHead.three_shell()
    eeg = _electrodes()
    meg = squid_helmet_306()
    errs = {}
    for sub in (2, 3):
        fwd = BEMForward.create(nested_spheres(RADII, sub), SIGMA, eeg=eeg, meg=meg)
        errs[sub] = []
        for ecc in (0.1, 0.5, 0.8, 0.9):
            pos = _dipole(ecc)
            radial = pos[0] / np.linalg.norm(pos[0])
            tang = np.cross(radial, [0.0, 0.0, 1.0])
            tang /= np.linalg.norm(tang)
            g = np.asarray(fwd.gain(pos))[:, 0]
            ref = eeg.reference_matrix() @ np.asarray(eeg_gain(head, eeg.positions, pos))[:, 0]
            rdm, mag = rdm_mag(g[: eeg.n_channels] @ radial, ref @ radial)
            mrdm, _ = rdm_mag(
                g[eeg.n_channels :] @ tang, np.asarray(meg_gain(meg, pos))[:, 0] @ tang
            )
            errs[sub].append((rdm, abs(mag - 1), mrdm))
    e2, e3 = np.array(errs[2]), np.array(errs[3])
    assert np.all(e3 < e2)
    assert np.all(e3[:, 0] < np.array([0.0015, 0.003, 0.008, 0.012]))
    assert np.all(e3[:, 1] < 0.011) and np.all(e3[:, 2] < 0.002)
