"""Two-state DCM for fMRI (Marreiros et al. 2008): SPM's ``spm_fx_fmri``
values (stored from Octave), the zero-input equilibrium, the constant-input
steady state, agreement with an independent reference integration, and
gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.integrate import solve_ivp

from biosim import ParameterError
from biosim.inference.dcm import DCMStructure, predict_bold
from biosim.inference.dcm.model import _equations, trajectory, two_state_rhs
from biosim.physics.neural import NeuralParams

TR, NM = 2.0, 4


def _structure(with_d=True, **kw):
    a = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
    b = np.zeros((2, 3, 3), bool)
    b[1, 1, 0] = b[1, 2, 2] = True
    c = np.zeros((3, 2), bool)
    c[0, 0] = c[2, 1] = True
    d = np.zeros((3, 3, 3), bool)
    d[2, 1, 0] = with_d
    kw = dict(dict(tr=TR, n_micro=NM, neural_model="two_state", convention="spm25"), **kw)
    return DCMStructure(a, b, c, d, **kw)


def _theta(s):
    a = np.array([[0.1, -0.3, 0.0], [0.5, -0.2, 0.2], [0.0, 0.4, 0.05]])
    b = np.zeros((2, 3, 3))
    b[1, 1, 0], b[1, 2, 2] = 0.6, -0.4
    c = np.zeros((3, 2))
    c[0, 0], c[2, 1] = 0.8, 0.3
    d = np.zeros((3, 3, 3))
    d[2, 1, 0] = 0.7
    return jnp.asarray(
        s.pack(NeuralParams(a, b, c, d), transit=[0.05, -0.05, 0.02], decay=0.03, epsilon=0.1)
    )


# spm_fx_fmri(x, u, P) of SPM25 under Octave 7.3 for the parameters of _theta
# (switched-off A entries at -32), u = [1; 0.5] and the state x (3 x 6, SPM's
# layout [x_E, s, ln f, ln v, ln q, x_I]) below; f(:) column by column.  Script:
#   P.A = [0.1 -0.3 -32; 0.5 -0.2 0.2; -32 0.4 0.05]; P.B = zeros(3,3,2);
#   P.B(2,1,2) = 0.6; P.B(3,3,2) = -0.4; P.C = [0.8 0; 0 0; 0 0.3];
#   P.D = zeros(3,3,3); P.D(2,1,3) = 0.7; P.transit = [0.05; -0.05; 0.02];
#   P.decay = 0.03; P.epsilon = 0.1; f = spm_fx_fmri(x, [1; 0.5], P, struct());
_X_SPM = np.array(
    [
        [0.3, 0.1, 0.05, 0.02, -0.03, 0.2],
        [-0.2, -0.05, 0.02, 0.01, 0.01, 0.1],
        [0.4, 0.2, -0.1, 0.03, 0.02, -0.3],
    ]
)
_F_SPM = np.array(
    [
        [-0.14614972846893348, 0.26126148665949089, -0.19564406832509162],
        [0.21764415898664718, -0.17348988372204932, 0.29855384588244283],
        [0.095122942450071399, -0.04900993366533777, 0.22103418361512955],
        [-0.0061646907561914771, -0.0060065540908368926, -0.092006582763820843],
        [-0.00053259042883586471, -0.014102809431970922, -0.053576725752495044],
        [0.099999999999999978, -0.30000000000000004, 0.69999999999999996],
    ]
).T


def _to_biosim(x):
    """SPM's (n, 6) state -> biosim's [x_E, x_I, (s, ln f, ln v, ln q) per region]."""
    return np.concatenate([x[:, 0], x[:, 5], x[:, 1:5].ravel()])


def test_equations_match_spm_fx_fmri():
    s = _structure()

    @jax.jit
    def f_at(theta, x, u):
        return _equations(theta, s)[0](x, u)

    f = np.asarray(f_at(_theta(s), jnp.asarray(_to_biosim(_X_SPM)), jnp.array([1.0, 0.5])))
    np.testing.assert_allclose(f, _to_biosim(_F_SPM), rtol=1e-13, atol=1e-15)


@pytest.mark.slow
def test_rest_is_an_equilibrium_and_steady_state_is_analytic():
    s = _structure(with_d=False, integrator="rk4", substeps=2)
    theta = _theta(s)
    rhs, _ = _equations(theta, s)
    assert float(jnp.max(jnp.abs(rhs(jnp.zeros(s.n_states), jnp.zeros(2))))) == 0.0
    assert float(jnp.max(jnp.abs(predict_bold(theta, jnp.zeros((20 * NM, 2)), s)))) == 0.0
    # constant input 2
    u = np.array([0.0, 1.0])
    states = trajectory(theta, jnp.tile(jnp.asarray(u), (150 * NM, 1)), s)
    x_end = np.asarray(states[-1])
    neural, *_ = s.unpack(theta)
    a = np.where(s.a, np.asarray(neural.A), -32.0) + u[1] * np.asarray(neural.B[1])
    g = np.exp(a) / 8
    # dx_I = 0 -> x_I = x_E; dx_E = 0 -> (offdiag(G) - I/2 - diag(G)) x_E = -C u / 16
    lin = g - np.diag(np.diag(g)) - 0.5 * np.eye(3) - np.diag(np.diag(g))
    x_star = np.linalg.solve(lin, -np.asarray(neural.C) @ u / 16)
    np.testing.assert_allclose(x_end[:3], x_star, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(x_end[3:6], x_star, rtol=1e-6, atol=1e-12)
    assert np.all(np.abs(x_end[6::4]) < 1e-6 * np.max(np.abs(x_star)))  # vasodilatory signal


@pytest.mark.slow
def test_neural_states_match_a_reference_integration():
    """RK4 (TR/4, 2 and 4 substeps) against scipy's DOP853 on an independent
    NumPy transcription of the two-state equations (Marreiros et al. 2008):
    fourth-order convergence to the reference."""
    s = _structure(integrator="rk4", substeps=4)
    theta = _theta(s)
    n_steps = 40 * NM
    t_step = np.arange(n_steps) * TR / NM
    u = np.stack([(t_step % 20) < 10, (t_step % 40) < 20], 1).astype(float)
    states = np.asarray(trajectory(theta, jnp.asarray(u), s))[1:, :6]
    coarse = np.asarray(trajectory(theta, jnp.asarray(u), s.replace(substeps=2)))[1:, :6]
    neural, *_ = s.unpack(theta)
    a0 = np.where(s.a, np.asarray(neural.A), -32.0)
    b, c, d = (np.asarray(m) for m in (neural.B, neural.C, neural.D))

    def f(t, z):
        ui = u[min(int(t / (TR / NM) + 1e-9), n_steps - 1)]
        xe, xi = z[:3], z[3:]
        g = np.exp(a0 + np.tensordot(ui, b, 1) + np.tensordot(xe, d, 1)) / 8
        dxe = (g - np.diag(np.diag(g))) @ xe - 0.5 * xe - np.diag(g) * xi + c @ ui / 16
        return np.concatenate([dxe, xe - xi])

    z, ref = np.zeros(6), []
    for k in range(n_steps):  # one solve per constant-input interval
        sol = solve_ivp(f, (t_step[k], t_step[k] + TR / NM), z, "DOP853", rtol=1e-12, atol=1e-14)
        z = sol.y[:, -1]
        ref.append(z)
    ref = np.array(ref)
    err_fine, err_coarse = np.max(np.abs(states - ref)), np.max(np.abs(coarse - ref))
    assert err_fine < 1e-5 * np.max(np.abs(ref))
    assert 12 < err_coarse / err_fine < 20  # 2^4


@pytest.mark.slow
def test_gradient_of_two_state_bold():
    s = _structure(integrator="rk4", delays=1.0)
    u = jnp.asarray(np.stack([np.arange(8 * NM) % 8 < 4, np.ones(8 * NM)], 1).astype(float))
    theta0 = _theta(s)
    y = np.asarray(predict_bold(theta0, u, s)) + 1e-3

    def loglik(theta):
        return -0.5 * jnp.sum((100 * (y - predict_bold(theta, u, s))) ** 2)

    check_grads(loglik, (theta0 * 0.9 + 0.01,), order=1, modes=["fwd"], atol=1e-5, rtol=1e-4)


def test_jacobian_at_rest_and_checks():
    """The Jacobian at rest (what the ``"spm"`` integrator's bilinear reduction
    uses): [[offdiag(G) - I/2, -diag(G)], [I, -I]] in the neural block."""
    s = _structure()
    theta = _theta(s)
    jac = jax.jit(lambda th: jax.jacfwd(_equations(th, s)[0])(jnp.zeros(s.n_states), jnp.zeros(2)))(
        theta
    )
    neural, *_ = s.unpack(theta)
    g = np.exp(np.where(s.a, np.asarray(neural.A), -32.0)) / 8
    top = np.hstack([g - np.diag(np.diag(g)) - 0.5 * np.eye(3), -np.diag(np.diag(g))])
    np.testing.assert_allclose(jac[:3, :6], top, rtol=1e-13)
    np.testing.assert_allclose(jac[3:6, :6], np.hstack([np.eye(3), -np.eye(3)]), rtol=1e-13)
    assert s.n_states == 18 and s.n_neural == 2
    with pytest.raises(ParameterError, match="neural_model"):
        _structure(neural_model="three_state")
    dx = two_state_rhs(
        jnp.ones(3),
        jnp.zeros(3),
        jnp.zeros(2),
        jnp.asarray(np.log(8 * g)),
        jnp.zeros((2, 3, 3)),
        jnp.zeros((3, 2)),
        jnp.zeros((3, 3, 3)),
    )
    np.testing.assert_allclose(dx, np.concatenate([top[:, :3].sum(1), np.ones(3)]), rtol=1e-13)
