"""SPM12-style DCM for fMRI: the bilinear-reduction integrator (exactness,
convergence of RK4 to it, small-amplitude agreement with the nonlinear model,
gradients), the spm12 convention, sampling delays, confounds in variational
Laplace, SPM's data treatment, and (when Octave and SPM12 are present) the
comparison with SPM12's ``spm_dcm_estimate``."""

import os
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import ParameterError
from biosim.inference.dcm import DCMStructure, invert, predict_bold, spm_prepare_data
from biosim.inference.dcm.model import bilinear_reduction, expm_augmented, trajectory
from biosim.physics.hemodynamics.bold import bold_signal
from biosim.physics.neural import NeuralParams

TR, NM, T = 3.22, 4, 30


def _inputs():
    t = np.arange(T * NM) * TR / NM
    u = np.zeros((T * NM, 2))
    u[:, 0] = (t % 40) < 20
    u[:, 1] = ((t % 80) < 40) * u[:, 0]
    return u


def _structure(**kw):
    a = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
    b = np.zeros((2, 3, 3), bool)
    b[1, 1, 0] = True
    b[1, 1, 1] = True  # a modulated self-connection (log scale)
    c = np.zeros((3, 2), bool)
    c[0, 0] = True
    return DCMStructure(a, b, c, tr=TR, n_micro=NM, **kw)


def _theta(s, c_scale=1.0, self_mod=-0.3):
    a = np.array([[0.1, -0.1, 0.0], [0.4, -0.2, -0.1], [0.0, 0.3, 0.0]])
    b = np.zeros((2, 3, 3))
    b[1, 1, 0], b[1, 1, 1] = 0.4, self_mod
    c = np.zeros((3, 2))
    c[0, 0] = c_scale
    return jnp.asarray(
        s.pack(
            NeuralParams(a, b, c, np.zeros((3, 3, 3))),
            transit=[0.05, -0.05, 0.02],
            decay=0.03,
            epsilon=0.1,
        )
    )


def test_exponential_step_is_exact():
    s = _structure(integrator="spm", convention="spm12")
    c0, j0, bu, kk = bilinear_reduction(_theta(s), s)
    u = jnp.array([1.0, 1.0])
    jac, c = j0 + jnp.einsum("j,jab->ab", u, kk), c0 + bu @ u
    for h in (TR / 16, TR / NM, TR):
        aug = jnp.zeros((16, 16)).at[1:, 0].set(c).at[1:, 1:].set(jac) * h
        ref = jsl.expm(aug)
        err = float(jnp.max(jnp.abs(expm_augmented(c, jac, h) - ref)))
        assert err < 1e-13 * float(jnp.max(jnp.abs(ref))), (h, err)
    # far too long a step: NaN (a rejected step in the inversion), not a wrong value
    assert np.all(np.isnan(expm_augmented(c, jac, 200.0)))


def test_bilinear_reduction_matches_spm_analytic_jacobian():
    """J0 and K_j against the closed forms of SPM12's spm_fx_fmri at rest."""
    s = _structure(integrator="spm", convention="spm12")
    theta = _theta(s)
    neural, transit, decay, _ = s.unpack(theta)
    c0, j0, bu, kk = bilinear_reduction(theta, s)
    n = 3
    a = np.asarray(neural.A)
    ee = a - np.diag(np.diag(a)) + np.diag(-0.5 * np.exp(np.diag(a)))
    np.testing.assert_allclose(j0[:n, :n], ee, rtol=1e-13)
    np.testing.assert_allclose(c0, 0.0, atol=1e-15)
    np.testing.assert_allclose(bu[:n], np.asarray(neural.C) / 16, rtol=1e-13)
    b1 = np.asarray(neural.B[1])
    k_expected = b1 - np.diag(np.diag(b1)) + np.diag(np.diag(ee) * np.diag(b1))
    np.testing.assert_allclose(kk[1, :n, :n], k_expected, rtol=1e-13, atol=1e-15)
    # hemodynamic block of region 0 (s, ln f, ln v, ln q) at rest, SPM12 closed forms
    sd, tt, h2, a_, e0 = (
        0.64 * np.exp(float(decay[0])),
        2.0 * np.exp(float(transit[0])),
        0.32,
        0.32,
        0.4,
    )
    blk = np.asarray(j0[n : n + 4, n : n + 4])
    expected = np.array(
        [
            [-sd, -h2, 0, 0],
            [1, 0, 0, 0],
            [0, 1 / tt, -1 / (tt * a_), 0],
            [0, (e0 + (1 - e0) * np.log(1 - e0)) / (tt * e0), (1 - 1 / a_) / tt, -1 / tt],
        ]
    )
    np.testing.assert_allclose(blk, expected, rtol=1e-12, atol=1e-14)


def test_rk4_on_the_bilinear_system_converges_to_the_spm_integrator():
    """The exponential step is the exact flow of the reduced system: RK4 on it
    converges at fourth order."""
    s = _structure(integrator="spm", convention="spm12")
    theta = _theta(s)
    u = jnp.asarray(_inputs())
    ref = trajectory(theta, u, s)
    c0, j0, bu, kk = bilinear_reduction(theta, s)

    def rk4(nsub):
        h = TR / NM / nsub

        def step(x, ui):
            jac, c = j0 + jnp.einsum("j,jab->ab", ui, kk), c0 + bu @ ui
            f = lambda z: c + jac @ z  # noqa: E731
            for _ in range(nsub):
                k1 = f(x)
                k2 = f(x + 0.5 * h * k1)
                k3 = f(x + 0.5 * h * k2)
                k4 = f(x + h * k3)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            return x, x

        _, xs = jax.lax.scan(step, jnp.zeros(15), u)
        return xs

    errs = [float(jnp.max(jnp.abs(rk4(k) - ref[1:]))) for k in (2, 4, 8)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert errs[-1] < 1e-6 * float(jnp.max(jnp.abs(ref)))
    assert np.all(orders > 3.7) and np.all(orders < 4.3), orders


def test_spm_integrator_agrees_with_exact_integration_at_small_amplitude():
    """The bilinear reduction linearises the Balloon model about rest: its error
    relative to the exact (RK4) BOLD falls linearly with the response amplitude.
    (Without modulation of a self-connection: the reduction also linearises
    exp(A_ii + u B_ii) in u, an error that does not vanish with the amplitude.)"""
    s_spm = _structure(integrator="spm", convention="spm12", delays=TR / 2)
    s_rk = s_spm.replace(integrator="rk4", substeps=8)
    u = jnp.asarray(_inputs())
    rel = []
    for scale in (0.04, 0.02, 0.01):
        theta = _theta(s_spm, scale, self_mod=0.0)
        y_s = predict_bold(theta, u, s_spm)
        y_r = predict_bold(theta, u, s_rk)
        rel.append(float(jnp.max(jnp.abs(y_s - y_r)) / jnp.max(jnp.abs(y_r))))
    assert rel[-1] < 2e-3
    ratios = np.array(rel[:-1]) / np.array(rel[1:])
    assert np.all(ratios > 1.8) and np.all(ratios < 2.2), ratios


def test_rk4_substeps_converge():
    s = _structure(convention="spm12", delays=1.0)
    theta, u = _theta(s), jnp.asarray(_inputs())
    ys = [predict_bold(theta, u, s.replace(substeps=k)) for k in (2, 4, 8)]
    e1, e2 = float(jnp.max(jnp.abs(ys[0] - ys[2]))), float(jnp.max(jnp.abs(ys[1] - ys[2])))
    assert e2 < e1 / 8 and e2 < 1e-6 * float(jnp.max(jnp.abs(ys[2])))


def test_gradient_through_spm_integrator():
    s = _structure(integrator="spm", convention="spm12", delays=TR / 2)
    u = jnp.asarray(_inputs()[: 6 * NM])
    theta0 = _theta(s)
    y = np.asarray(predict_bold(theta0, u, s)) + 1e-3

    def loglik(theta):
        return -0.5 * jnp.sum((100 * (y - predict_bold(theta, u, s))) ** 2)

    check_grads(loglik, (theta0 * 0.9 + 0.01,), order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-4)


def test_spm12_convention():
    s = _structure(convention="spm12")
    mean, var = s.prior()
    n_a = int(s.a.sum())
    off = (s.a & ~np.eye(3, dtype=bool)).ravel()[s.a.ravel()]
    np.testing.assert_allclose(mean[:n_a], np.where(off, 1 / 128, 0.0))
    assert np.all(mean[n_a:] == 0)
    # one decay, n transits, one epsilon: SPM12's hemodynamic parameters
    assert len(mean) == n_a + 2 + 1 + 3 + 1 + 1
    theta = _theta(s)
    _, transit, decay, eps = s.unpack(theta)
    np.testing.assert_allclose(decay, 0.03)
    np.testing.assert_allclose(s.pack(*s.unpack(theta)), theta)
    # spm_gx_fmri: k1 = 4.3 nu0 E0 TE, k2 = eps r0 E0 TE, k3 = 1 - eps at 1.5 T, TE 0.04
    p = s.bold_params(0.0)
    v, q = 1.1, 0.9
    expected = 4 * (4.3 * 40.3 * 0.4 * 0.04 * (1 - q) + 25 * 0.4 * 0.04 * (1 - q / v))
    assert 100 * float(bold_signal(v, q, p)) == pytest.approx(expected, rel=1e-12)
    mean_b, _ = _structure().prior()
    assert np.all(mean_b == 0) and len(mean_b) == len(mean) + 2


def test_sampling_delays():
    s = _structure(delays=None)
    np.testing.assert_array_equal(s.sample_index(3)[:, 0], [NM, 2 * NM, 3 * NM])
    s = _structure(delays=[0.0, TR / 2, TR])
    idx = s.sample_index(2)
    # SPM: D = max(round(delay / dt), 1); sample k at microtime index k * NM + D - 1
    np.testing.assert_array_equal(idx, [[0, 1, NM - 1], [NM, NM + 1, 2 * NM - 1]])
    with pytest.raises(ParameterError, match="delays"):
        _structure(delays=[1.0, 2.0])
    with pytest.raises(ParameterError, match="integrator"):
        _structure(integrator="euler")
    with pytest.raises(ParameterError, match="convention"):
        _structure(convention="spm8")


def test_confounds_match_linear_gaussian_posterior():
    """For a linear model the VL posterior with confounds is the analytic one
    (at the estimated noise precision), with SPM's 1e8 prior on the confounds."""
    rng = np.random.default_rng(3)
    n_t, k = 60, 2
    x = rng.normal(size=(n_t, 3))
    x0 = np.stack([np.ones(n_t), np.linspace(-1, 1, n_t)], axis=1)
    theta_true = np.array([0.5, -0.3, 0.2])
    w = jnp.asarray(rng.normal(size=(3, k)))
    y = (x @ theta_true)[:, None] * np.asarray(w).sum(0) + x0 @ rng.normal(size=(2, k)) * 5
    y += 0.1 * rng.normal(size=y.shape)
    xj = jnp.asarray(x)

    def model(theta):
        return (xj @ theta)[:, None] * w.sum(0)[None, :]

    r = invert(model, y, np.zeros(3), np.ones(3), confounds=x0)
    assert r.converged
    # analytic posterior of [theta, beta] with precisions exp(lambda)
    prec = np.exp(r.log_precision)
    ws = np.asarray(w).sum(0)
    rows, rhs_y, pw = [], [], []
    for i in range(k):
        blk = np.zeros((n_t, 3 + 2 * k))
        blk[:, :3] = x * ws[i]
        blk[:, 3 + 2 * i : 5 + 2 * i] = x0
        rows.append(blk)
        rhs_y.append(y[:, i])
        pw.append(np.full(n_t, prec[i]))
    design, yy, pw = np.vstack(rows), np.concatenate(rhs_y), np.concatenate(pw)
    prior_prec = np.diag(np.concatenate([np.ones(3), np.full(2 * k, 1e-8)]))
    post_prec = design.T @ (pw[:, None] * design) + prior_prec
    post_mean = np.linalg.solve(post_prec, design.T @ (pw * yy))
    post_cov = np.linalg.inv(post_prec)
    np.testing.assert_allclose(r.mean, post_mean[:3], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r.cov, post_cov[:3, :3], rtol=1e-6)
    np.testing.assert_allclose(r.confound_mean, post_mean[3:].reshape(k, 2).T, rtol=1e-6)
    # the free energy at a given point (init, no iterations) is the converged one at the optimum
    r0 = invert(model, y, np.zeros(3), np.ones(3), confounds=x0, init=r.mean, max_iter=0)
    assert r0.free_energy == pytest.approx(r.free_energy, abs=1e-6)
    np.testing.assert_allclose(r0.mean, r.mean, rtol=1e-12)


def test_spm_prepare_data():
    y = np.array([[1.0, 10.0], [3.0, 14.0], [2.0, 12.0]])
    yp, scale = spm_prepare_data(y)
    np.testing.assert_allclose(yp.mean(0), 0, atol=1e-14)
    assert scale == pytest.approx(4 / 4)  # range 4: unchanged
    yp, scale = spm_prepare_data(2 * y)
    assert scale == pytest.approx(0.5) and yp.max() - yp.min() == pytest.approx(4.0)


@pytest.mark.slow
@pytest.mark.crosscheck
def test_against_spm_under_octave():
    """The well-specified model of the panel in ``benchmarks/dcm_spm_octave.py``
    (SPM at $SPM_PATH or $SPM12_PATH: SPM25 or SPM12 r7771, detected)."""
    spm = os.environ.get("SPM_PATH") or os.environ.get("SPM12_PATH")
    if (
        shutil.which("octave") is None
        or not spm
        or not os.path.isfile(os.path.join(spm, "spm_dcm_estimate.m"))
    ):
        pytest.skip("needs octave on PATH and SPM at $SPM_PATH or $SPM12_PATH")
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "benchmarks"))
    import dcm_spm_octave

    out = dcm_spm_octave.compare_case("bilinear", spm, verbose=False)
    assert out["max_diff_sd"] < 0.1
    assert abs(out["dF"]) < 0.1
    assert abs(out["F_at_spm"] - out["spm"]["F"]) < 0.1


def test_sparse_neural_equations_match_dense():
    """The entry-by-entry neural equations (no D) equal ``neural_rhs`` on dense
    matrices (reached through a structure with a nonlinear term switched on at 0)."""
    from biosim.inference.dcm.model import _equations

    for conv in ("biosim", "spm12"):
        s = _structure(convention=conv)
        theta = _theta(s)
        d = np.zeros((3, 3, 3), bool)
        d[0, 1, 1] = True
        s_dense = DCMStructure(s.a, s.b, s.c, d, tr=TR, n_micro=NM, convention=conv)
        neural, transit, decay, eps = s.unpack(theta)
        theta_dense = jnp.asarray(s_dense.pack(neural, transit, decay, float(eps)))
        f_sparse, _ = _equations(theta, s)
        f_dense, _ = _equations(theta_dense, s_dense)
        x = jnp.asarray(np.random.default_rng(1).normal(size=15)) * 0.1
        for u in (jnp.array([1.0, 1.0]), jnp.array([0.3, 0.7])):
            np.testing.assert_allclose(f_sparse(x, u), f_dense(x, u), rtol=1e-13, atol=1e-16)


def _check_structured_jacobian(s):
    """``predict_bold_and_jacobian`` (structured RK4 sensitivities used by
    ``fit_dcm``) equals forward-mode autodiff through the whole integration."""
    from biosim.inference.dcm import predict_bold_and_jacobian

    mean, var = s.prior()
    theta = jnp.asarray(mean + 0.5 * np.sqrt(var) * np.random.default_rng(3).normal(size=mean.size))
    u = jnp.asarray(_inputs())
    y, jac = predict_bold_and_jacobian(theta, u, s)
    ref = jax.jacfwd(predict_bold)(theta, u, s)
    assert jac.shape == ref.shape == (T, s.n_regions, mean.size)
    assert float(jnp.max(jnp.abs(jac - ref))) < 1e-10 * float(jnp.max(jnp.abs(ref)))
    y_ref = predict_bold(theta, u, s)
    assert float(jnp.max(jnp.abs(y - y_ref))) < 1e-12 * float(jnp.max(jnp.abs(y_ref)))


def test_structured_jacobian_sparse_shared_decay():
    """4-region chain (df/dx applied entry by entry), a modulated self-connection,
    SPM12's shared decay, 2 RK4 substeps."""
    a = np.eye(4, dtype=bool) | np.eye(4, k=1, dtype=bool) | np.eye(4, k=-1, dtype=bool)
    b = np.zeros((2, 4, 4), bool)
    b[1, 1, 0] = b[1, 2, 2] = True
    c = np.zeros((4, 2), bool)
    c[0, 0] = True
    _check_structured_jacobian(
        DCMStructure(a, b, c, tr=TR, n_micro=NM, convention="spm12", substeps=2)
    )


@pytest.mark.slow
def test_structured_jacobian_dense_per_region_decay():
    """3 regions (dense df/dx), one decay per region (block-diagonal columns)."""
    _check_structured_jacobian(_structure())


@pytest.mark.slow
def test_jacobian_of_two_state_dcm_is_exact():
    """The structured path is for one-state equations; a two-state DCM must get
    the exact (forward-mode) Jacobian."""
    s = _structure()
    _check_structured_jacobian(
        DCMStructure(s.a, s.b, s.c, tr=TR, n_micro=NM, neural_model="two_state")
    )
