"""Whole-brain linear network: the exact discretisation against a fine ODE
integration, the stationary covariance against the continuous Lyapunov
equation, the step response against -A^-1 C u, and the distance rule."""

import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import solve_continuous_lyapunov

from biosim import ParameterError
from biosim.physics.neural import (
    NetworkParams,
    distance_connectivity,
    network_matrices,
    network_response,
    read_connectivity,
    simulate_network,
    stationary_covariance,
)


@pytest.fixture(scope="module")
def positions():
    rng = np.random.default_rng(3)
    return rng.normal(0.0, 0.03, (6, 3))


def _asymmetric(n, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.0, 1.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.6)
    np.fill_diagonal(w, 0.0)
    return w


def test_distance_rule_is_symmetric_zero_diagonal_and_decreasing(positions):
    w = distance_connectivity(positions, length_scale=0.02)
    np.testing.assert_array_equal(w, w.T)
    assert np.all(np.diag(w) == 0)
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    off = ~np.eye(len(w), dtype=bool)
    np.testing.assert_allclose(w[off], np.exp(-d[off] / 0.02), rtol=1e-14)
    order = np.argsort(d[off])
    assert np.all(np.diff(w[off][order]) <= 0)  # weaker with distance
    # homotopic boost: a left region and its mirror image on the right
    pos = np.array([[-0.04, 0.0, 0.0], [0.04, 0.001, 0.0], [-0.04, 0.03, 0.0]])
    wh = distance_connectivity(pos, 0.02, homotopic=0.5)
    w0 = distance_connectivity(pos, 0.02)
    assert wh[0, 1] == pytest.approx(w0[0, 1] + 0.5) and wh[1, 0] == wh[0, 1]
    assert wh[0, 2] == w0[0, 2] and wh[1, 2] == w0[1, 2]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"positions": np.zeros((3, 2))}, "positions"),
        ({"positions": np.full((3, 3), np.nan)}, "positions"),
        ({"length_scale": 0.0}, "length_scale"),
        ({"homotopic": -1.0}, "homotopic"),
    ],
)
def test_distance_rule_rejects_bad_input(kwargs, name, positions):
    args = {"positions": positions, **kwargs}
    with pytest.raises(ParameterError) as err:
        distance_connectivity(**args)
    assert err.value.name == name


def test_read_connectivity_formats_and_errors(tmp_path):
    w = _asymmetric(4)
    np.save(tmp_path / "w.npy", w)
    np.savetxt(tmp_path / "w.csv", w, delimiter=",")
    np.savetxt(tmp_path / "w.tsv", w, delimiter="\t")
    np.savetxt(tmp_path / "w.txt", w)
    for name in ("w.npy", "w.csv", "w.tsv", "w.txt"):
        np.testing.assert_allclose(read_connectivity(tmp_path / name, 4), w, rtol=1e-15)
    bad = w.copy()
    bad[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    bad[1, 2] = -1.0
    np.save(tmp_path / "neg.npy", bad)
    (tmp_path / "text.csv").write_text("a,b\n1,2\n")
    for name, pattern in [
        ("w.npy", "a 5 x 5 matrix"),
        ("nan.npy", "finite weights"),
        ("neg.npy", "non-negative"),
        ("text.csv", "readable matrix"),
        ("none.npy", "existing"),
    ]:
        with pytest.raises(ParameterError, match=pattern):
            read_connectivity(tmp_path / name, 5 if name == "w.npy" else 4)


@pytest.mark.parametrize("g", [1.0, 1.5, -0.1, np.nan])
def test_coupling_at_or_above_critical_is_refused(g):
    with pytest.raises(ParameterError, match="coupling"):
        NetworkParams(_asymmetric(3), g, 0.5, 0.1, np.zeros((3, 1)))


def test_slowest_mode_decays_at_one_minus_g_over_tau():
    for w in (
        _asymmetric(5),
        distance_connectivity(np.random.default_rng(1).normal(0, 0.03, (5, 3))),
    ):
        a = NetworkParams(w, 0.7, 0.5, 0.0, np.zeros((5, 1))).jacobian()
        assert np.max(np.linalg.eigvals(a).real) == pytest.approx(-(1 - 0.7) / 0.5, rel=1e-10)


@pytest.mark.parametrize("symmetric", [True, False])
def test_exact_discretisation_matches_a_fine_ode_integration(symmetric, positions):
    n = 6
    w = distance_connectivity(positions) if symmetric else _asymmetric(n)
    c = np.zeros((n, 2))
    c[0, 0], c[3, 1], c[5, 0] = 2.0, -1.0, 0.5
    p = NetworkParams(w, 0.8, 0.4, 0.0, c)
    dt, n_t = 0.05, 200
    t = np.arange(n_t) * dt
    u = np.stack([np.sin(0.7 * t) > 0, (t > 3.0) & (t < 6.0)], axis=1).astype(float)
    a = p.jacobian()
    ref = [np.zeros(n)]
    for k in range(n_t - 1):
        sol = solve_ivp(
            lambda _, z, k=k: a @ z + c @ u[k],
            (0.0, dt),
            ref[-1],
            rtol=1e-11,
            atol=1e-13,
            method="DOP853",
        )
        ref.append(sol.y[:, -1])
    ref = np.array(ref)
    for method in ("auto", "modal", "sequential"):
        z = simulate_network(p, u, dt, method=method)
        assert np.max(np.abs(z - ref)) < 1e-8 * np.abs(ref).max(), method


def test_step_response_converges_to_minus_a_inverse_c_u():
    n = 5
    p = NetworkParams(_asymmetric(n, 2) + 0.05, 0.6, 0.3, 0.0, np.eye(n)[:, :2] * 1.5)
    u = np.tile([1.0, 0.4], (600, 1))
    z = simulate_network(p, u, 0.02)
    expected = -np.linalg.solve(p.jacobian(), p.input_gain @ u[0])
    np.testing.assert_allclose(z[-1], expected, rtol=1e-6)
    assert np.all(np.abs(z[-1]) > 0.01)  # coupling spreads the input to undriven regions


def test_discrete_noise_keeps_the_continuous_stationary_covariance(positions):
    """S = Phi S Phi^T + Q exactly: Van Loan's Q is the exact one-step covariance."""
    p = NetworkParams(_asymmetric(6, 4), 0.7, 0.5, 0.3, np.zeros((6, 1)))
    s = stationary_covariance(p)
    a = p.jacobian()
    np.testing.assert_allclose(a @ s + s @ a.T, -0.09 * np.eye(6), atol=1e-12)
    phi, _, q = network_matrices(p, 0.1)
    np.testing.assert_allclose(phi @ s @ phi.T + q, s, atol=1e-12 * np.abs(s).max())


@pytest.mark.parametrize("symmetric", [True, False])
def test_sample_covariance_matches_the_lyapunov_solution(symmetric, positions):
    n = 6
    w = distance_connectivity(positions) if symmetric else _asymmetric(n, 5)
    p = NetworkParams(w, 0.6, 0.2, 0.5, np.zeros((n, 1)))
    dt, n_t = 0.05, 200_000  # 10000 s, about 20000 correlation times
    z = simulate_network(p, np.zeros((n_t, 1)), dt, seed=1)
    s = solve_continuous_lyapunov(p.jacobian(), -0.25 * np.eye(n))
    sample = np.cov(z.T)
    # sampling error of a variance over ~2e4 independent samples: ~1-2 %
    assert np.max(np.abs(sample - s)) < 0.05 * np.abs(s).max()
    assert np.abs(z.mean(0)).max() < 0.05 * np.sqrt(np.diag(s)).max()


def test_functional_connectivity_follows_structural_connectivity():
    rng = np.random.default_rng(7)
    pos = rng.normal(0.0, 0.035, (40, 3))
    w = distance_connectivity(pos, 0.02)
    p = NetworkParams(w, 0.9, 0.5, 0.1, np.zeros((40, 1)))
    z = simulate_network(p, np.zeros((6000, 1)), 0.1, seed=2)  # 600 s
    fc = np.corrcoef(z.T)
    iu = np.triu_indices(40, 1)
    r = np.corrcoef(fc[iu], w[iu])[0, 1]
    print(f"structure-function correlation r = {r:.2f}")
    assert r > 0.5, r
    # and the uncoupled network has none beyond chance
    p0 = NetworkParams(w, 0.0, 0.5, 0.1, np.zeros((40, 1)))
    fc0 = np.corrcoef(simulate_network(p0, np.zeros((6000, 1)), 0.1, seed=2).T)
    assert abs(np.corrcoef(fc0[iu], w[iu])[0, 1]) < 0.15


def test_bad_inputs_are_refused():
    p = NetworkParams(_asymmetric(3), 0.5, 0.5, 0.1, np.zeros((3, 2)))
    with pytest.raises(ParameterError, match="inputs"):
        simulate_network(p, np.zeros((10, 3)), 0.1)
    with pytest.raises(ParameterError, match="inputs"):
        simulate_network(p, np.full((10, 2), np.nan), 0.1)
    with pytest.raises(ParameterError, match="dt"):
        simulate_network(p, np.zeros((10, 2)), 0.0)
    with pytest.raises(ParameterError, match="input_gain"):
        NetworkParams(_asymmetric(3), 0.5, 0.5, 0.1, np.zeros((4, 2)))
    with pytest.raises(ParameterError, match="connectivity"):
        NetworkParams(-_asymmetric(3), 0.5, 0.5, 0.1, np.zeros((3, 2)))


def test_jax_response_equals_the_exact_recursion_and_has_gradients():
    from jax.test_util import check_grads

    n = 4
    w = _asymmetric(n, 6) + 0.05
    c = np.eye(n)[:, :2]
    u = np.tile([1.0, 0.5], (300, 1))  # a step: settles within 15 s
    u[:10] = 0.0
    ref = simulate_network(NetworkParams(w, 0.6, 0.4, 0.0, c), u, 0.05)
    z = np.asarray(network_response(w, 0.6, 0.4, c, u, 0.05))
    np.testing.assert_allclose(z, ref, atol=1e-12)

    def f(g, tau):
        return network_response(w, g, tau, c, u, 0.05)[-1].sum()

    check_grads(f, (0.6, 0.4), order=1, modes=["rev"], eps=1e-6)
    # steady state -A^-1 C u: d/dg = A^-1 (dA/dg) A^-1 C u with dA/dg = (A + I / tau) / g
    a = NetworkParams(w, 0.6, 0.4, 0.0, c).jacobian()
    zs = -np.linalg.solve(a, c @ u[-1])
    dzs = -np.linalg.solve(a, (a + np.eye(n) / 0.4) / 0.6 @ zs)
    grad = jax.grad(f)(0.6, 0.4)
    assert float(grad) == pytest.approx(dzs.sum(), rel=1e-4)  # t exp(-t) transient left
    with pytest.raises(ParameterError, match="coupling"):
        network_response(w, 1.2, 0.4, c, u, 0.05)


def test_network_integer_and_boolean_inputs_equal_float_inputs():
    w = np.array([[0.0, 1.0], [1.0, 0.0]])
    u = np.zeros((20, 1), int)
    u[3:9] = 1
    ref = np.asarray(network_response(w, 0.5, 0.1, np.ones((2, 1)), u * 1.0, 0.01))
    assert np.abs(ref).max() > 0
    for given in (u, u.astype(bool)):
        z = network_response(w, 0.5, 0.1, np.ones((2, 1), int), given, 0.01)
        np.testing.assert_array_equal(np.asarray(z), ref)
    params = NetworkParams(w, 0.5, 0.1, 0.0, np.ones((2, 1)))
    np.testing.assert_array_equal(
        simulate_network(params, u.astype(bool), 0.01, stationary_start=False),
        simulate_network(params, u * 1.0, 0.01, stationary_start=False),
    )
