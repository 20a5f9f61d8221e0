"""FEM core: assembly against scikit-fem, manufactured and exact solutions
(isotropic and anisotropic, P1 and P2), the coordinate-scaling identity of a
homogeneous anisotropic medium, load helpers, solvers and the adjoint gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skfem
from skfem.helpers import grad

import biosim  # noqa: F401  (float64)
from biosim._core.errors import ParameterError
from biosim.geometry.tetmesh import TetMesh
from biosim.physics import fem


def _box(n, lengths=(1.0, 1.0, 1.0), labels=None):
    m = skfem.MeshTet.init_tensor(*(np.linspace(0, L, n + 1) for L in lengths))
    nodes, tets = m.p.T.copy(), m.t.T.astype(np.int64)
    x = nodes[tets]
    det = np.linalg.det(np.stack([x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]], 2))
    tets[det < 0] = tets[det < 0][:, [0, 2, 1, 3]]
    lab = np.full(len(tets), 2, np.int32) if labels is None else labels(nodes[tets].mean(1))
    return TetMesh(nodes, tets, lab)


@pytest.fixture(scope="module")
def box4():
    return _box(4, labels=lambda c: np.where(c[:, 0] < 0.5, 2, 3).astype(np.int32))


def test_p1_p2_stiffness_match_scikit_fem_isotropic_and_tensor(box4):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((box4.n_tets, 3, 3))
    sig = np.einsum("mij,mkj->mik", a, a) + 0.1 * np.eye(3)
    for order, elem in ((1, skfem.ElementTetP1()), (2, skfem.ElementTetP2())):
        space = fem.FEMSpace(box4, order)
        basis = skfem.Basis(skfem.MeshTet(box4.nodes.T, box4.tets.T), elem, intorder=2)
        nq = basis.X.shape[1]
        comps = {
            f"s{i}{j}": np.repeat(sig[:, i, j][:, None], nq, 1) for i in range(3) for j in range(3)
        }

        @skfem.BilinearForm
        def form(u, v, w):
            gu, gv = grad(u), grad(v)
            return sum(w[f"s{i}{j}"] * gu[j] * gv[i] for i in range(3) for j in range(3))

        ref = form.assemble(basis, **comps).toarray()
        p = space.skfem_permutation
        ours = np.zeros_like(ref)
        ours[np.ix_(p, p)] = ref
        k = fem.assemble_stiffness(space, sig).toarray()
        assert np.abs(k - ours).max() < 1e-12 * np.abs(ref).max()
        assert np.abs(k.sum(axis=1)).max() < 1e-12 * np.abs(ref).max()  # constants: null space


def _cos_solution(order, n, sigma_diag):
    """-div(S grad u) = f on the unit cube with zero normal current,
    u = cos(pi x) cos(pi y) cos(pi z), S = diag(sigma): the isotropic problem on
    the box scaled by 1/sqrt(sigma) per axis (coordinate scaling)."""
    mesh = _box(n)
    space = fem.FEMSpace(mesh, order)
    s = np.asarray(sigma_diag, float)
    sig = np.tile(np.diag(s), (mesh.n_tets, 1, 1))
    basis = space.skfem_basis

    @skfem.LinearForm
    def load(v, w):
        x, y, z = w.x
        return s.sum() * np.pi**2 * np.cos(np.pi * x) * np.cos(np.pi * y) * np.cos(np.pi * z) * v

    b = np.zeros(space.n_dofs)
    b[space.skfem_permutation] = load.assemble(basis)
    u = fem.solve_potential(space, sig, b)
    xd = np.concatenate(
        [mesh.nodes, 0.5 * (mesh.nodes[space.edges[0][:, 0]] + mesh.nodes[space.edges[0][:, 1]])]
    )[: space.n_dofs]
    exact = np.prod(np.cos(np.pi * xd), axis=1)
    err = (u - u.mean()) - (exact - exact.mean())
    return np.abs(err).max()


def test_anisotropic_manufactured_solution_converges_p1_and_p2():
    s = (1.0, 4.0, 0.25)
    e1 = [_cos_solution(1, n, s) for n in (4, 8)]
    e2 = [_cos_solution(2, n, s) for n in (2, 4)]
    assert e1[1] < 0.35 * e1[0]  # second order at the nodes (ratio ~1/4)
    assert e2[1] < 0.2 * e2[0]  # P2 third order or better at the nodes
    assert e2[1] < e1[0]  # P2 beats P1 on the same mesh (n = 4)


def test_coordinate_scaling_identity_of_anisotropic_stiffness(box4):
    # K(mesh, S) = det(S^1/2) K(mesh scaled by S^-1/2, 1): the anisotropic
    # medium is an isotropic one in scaled coordinates (exact, element by element)
    s = np.array([2.0, 0.5, 3.0])
    rot = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    sig = rot @ np.diag(s) @ rot.T
    scale = rot @ np.diag(s**-0.5) @ rot.T
    scaled = TetMesh(box4.nodes @ scale.T, box4.tets, box4.labels)
    for order in (1, 2):
        ka = fem.assemble_stiffness(box4, np.tile(sig, (box4.n_tets, 1, 1)), order=order)
        ki = fem.assemble_stiffness(scaled, np.ones(box4.n_tets), order=order)
        assert abs(ka - np.sqrt(np.prod(s)) * ki).max() < 1e-12 * abs(ka).max()


def test_dti_mappings():
    rng = np.random.default_rng(2)
    q = np.linalg.qr(rng.standard_normal((5, 3, 3)))[0]
    ev = np.array([[1.0, 2.0, 7.0]] * 5) * 1e-9
    d = np.einsum("mij,mj,mkj->mik", q, ev, q)
    vn = fem.volume_normalized_conductivity(d, 0.33)
    assert np.allclose(np.linalg.det(vn), 0.33**3)
    assert np.allclose(
        np.einsum("mij,mj->mi", vn, q[:, :, 2]), q[:, :, 2] * 0.33 * 7 / 14 ** (1 / 3)
    )
    fr = fem.fixed_ratio_conductivity(d, 0.33, ratio=10)
    w = np.linalg.eigvalsh(fr)
    assert np.allclose(w[:, 2] / w[:, 0], 10) and np.allclose(np.prod(w, 1), 0.33**3)
    assert np.allclose(np.einsum("mij,mj->mi", fr, q[:, :, 2]), w[:, 2:] * q[:, :, 2])
    with pytest.raises(ParameterError):
        fem.volume_normalized_conductivity(-d, 0.33)


def test_impressed_uniform_current_is_cancelled_and_boundary_injection(box4):
    # uniform impressed current sigma F in an insulated conductor: u = F . x (exact in P1, P2)
    sig = np.where(box4.labels == 2, 0.3, 0.3)
    f = np.array([1.0, -2.0, 0.5])
    for order in (1, 2):
        space = fem.FEMSpace(box4, order)
        b = fem.divergence_rhs(space, sig, np.tile(f, (box4.n_tets, 1)))
        u = fem.solve_potential(space, sig, b)
        e = fem.element_field(space, u)
        assert np.abs(e - f).max() < 1e-9
    b = fem.divergence_rhs(box4, sig, np.tile(f, (box4.n_tets, 1)))
    nodal = fem.recovered_nodal_field(box4, fem.solve_potential(box4, sig, b))
    assert np.abs(nodal - f).max() < 1e-9 and b.shape == (box4.n_nodes,)
    # current in through x = 0, out through x = 1: u = -j x / sigma
    bf = box4.boundary_faces()
    xc = box4.nodes[bf].mean(axis=1)[:, 0]
    j = np.where(xc < 1e-9, 2.0, 0.0) - np.where(xc > 1 - 1e-9, 2.0, 0.0)
    for order in (1, 2):
        b = fem.boundary_current_rhs(box4, bf, j, order=order)
        assert abs(b.sum()) < 1e-12 and abs(b[b > 0].sum() - 2.0) < 1e-12
        u = fem.solve_potential(box4, sig, b, order=order)
        e = fem.element_field(box4, u, order=order)
        assert np.abs(e - [-2.0 / 0.3, 0, 0]).max() < 1e-9


def test_amg_and_direct_agree_and_bad_input():
    mesh = _box(6)
    sig = np.linspace(0.2, 1.0, mesh.n_tets)
    rng = np.random.default_rng(3)
    b = rng.standard_normal((mesh.n_nodes, 2))
    b -= b.mean(0)
    ud = fem.FEMSolver(mesh, sig, method="direct").solve(b)
    amg = fem.FEMSolver(mesh, sig, method="amg", tol=1e-12)
    ua = amg.solve(b)
    assert np.abs(ua - ud).max() < 1e-8 * np.abs(ud).max() and amg.iterations
    with pytest.raises(ParameterError):
        fem.FEMSolver(mesh, -sig)
    with pytest.raises(ParameterError):
        fem.FEMSolver(mesh, sig).solve(np.full(mesh.n_nodes, np.nan))
    with pytest.raises(ParameterError):
        fem.FEMSpace(mesh, order=3)
    with pytest.raises(ParameterError):
        fem.tissue_conductivity(mesh.labels, {1: 0.3})


def test_adjoint_gradient_matches_finite_differences(box4):
    space = fem.FEMSpace(box4)
    solve = fem.make_differentiable_solve(space)
    idx = jnp.asarray(box4.labels == 3, int)
    rng = np.random.default_rng(4)
    b = rng.standard_normal((box4.n_nodes, 2))
    b = jnp.asarray(b - b.mean(0))
    w = jnp.asarray(rng.standard_normal((box4.n_nodes, 2)))

    @jax.jit
    def loss(st):
        return jnp.sum(w * solve(st[idx], b)) + jnp.sum(solve(st[idx], b)[:10] ** 2)

    st = jnp.array([0.33, 1.79])
    g = jax.grad(loss)(st)
    for i in range(2):
        h = 1e-5 * st[i]
        e = jnp.zeros(2).at[i].set(h)
        fd = (loss(st + e) - loss(st - e)) / (2 * h)
        assert abs(g[i] - fd) < 1e-6 * abs(fd)
    # tensor conductivity: directional derivative
    sig = jnp.tile(jnp.diag(jnp.array([0.3, 0.5, 0.7])), (box4.n_tets, 1, 1))
    dsig = jnp.tile(
        jnp.array([[0.1, 0.02, 0.0], [0.02, -0.05, 0.03], [0.0, 0.03, 0.08]]), (box4.n_tets, 1, 1)
    )
    lt = jax.jit(lambda s: jnp.sum(w * solve(s, b)))
    gt = jax.grad(lt)(sig)
    fd = (lt(sig + 1e-6 * dsig) - lt(sig - 1e-6 * dsig)) / 2e-6
    assert abs(jnp.sum(gt * dsig) - fd) < 1e-6 * abs(fd)
