"""Joint EEG-fMRI DCM: one neural mass for the ERPs and the BOLD, one inversion."""

import jax.numpy as jnp
import numpy as np
import pytest

from biosim import ParameterError
from biosim.inference.dcm import (
    ERPStructure,
    JointStructure,
    fit_joint,
    neuronal_drive,
    predict_joint,
    region_lead_field,
    simulate_joint,
)
from biosim.inference.dcm.joint import _model_for
from biosim.inference.dcm.variational_laplace import _compiled


def _structure(n_scans=80):
    f = np.array([[0, 0], [1, 0]], bool)
    b = np.zeros((1, 2, 2), bool)
    b[0, 1, 0] = b[0, 0, 1] = True
    erp = ERPStructure(
        f,
        f.T,
        np.zeros((2, 2), bool),
        b,
        np.array([[True], [False]]),
        design=[[0.0], [1.0]],
        dt=0.004,
        n_samples=40,
        n_sub=2,
        onset=0.04,
    )
    rng = np.random.default_rng(0)
    onsets = np.sort(rng.uniform(0, 150, 40))
    kind = rng.integers(0, 2, 40)
    return JointStructure(erp, (onsets[kind == 0], onsets[kind == 1]), n_scans=n_scans, tr=2.0)


def _truth(js):
    b = np.zeros((1, 2, 2))
    b[0, 1, 0], b[0, 0, 1] = 0.6, -0.4
    return js.pack(
        coupling=[0.4, 0.6],
        transit=[0.05, -0.05],
        decay=[0.0, 0.05],
        A_forward=[[0, 0], [0.3, 0]],
        A_backward=[[0, -0.2], [0, 0]],
        B=b,
        L=[3.0, 8.0],
    )


@pytest.fixture(scope="module")
def fitted():
    js = _structure()
    lf = region_lead_field(["V1-lh", "V5-lh"], n_channels=24)
    truth = _truth(js)
    _, _, clean_eeg, _ = simulate_joint(js, truth, lf)
    y_eeg, y_bold, _, clean_bold = simulate_joint(
        js, truth, lf, seed=1, bold_snr=5, eeg_noise_std=0.05 * clean_eeg.std()
    )
    return js, lf, truth, y_eeg, y_bold, clean_bold, fit_joint(js, y_eeg, lf, y_bold, max_iter=64)


def test_simulated_bold_is_event_related(fitted):
    js, _, _, _, _, clean_bold, _ = fitted
    assert clean_bold.shape == (80, 2)
    assert 0.05 < clean_bold.std(0).min() and clean_bold.max() < 5.0  # percent
    # each trial delivers a unit-area drive: the stimulus integrates to the trial count
    s = js.stimulus()
    np.testing.assert_allclose(s.sum(0) * js.tr / js.n_micro, [o.size for o in js.onsets])


def test_joint_recovery(fitted):
    js, lf, truth, y_eeg, y_bold, _, res = fitted
    assert res.vl.converged
    bl, sd = res.blocks(), res.posterior_sd()
    assert bl["B"][0, 1, 0] == pytest.approx(0.6, abs=0.1)
    assert bl["coupling"][0] == pytest.approx(0.4, abs=0.15)
    assert np.all(bl["coupling"] > 0)
    # the identifiable neurovascular quantity: the hemodynamic drive each trial delivers,
    # beta_i r_ic (beta and the dipole gain trade off against the size of x9, see notes)
    drive = np.asarray(neuronal_drive(res.vl.mean, js))
    np.testing.assert_allclose(drive, np.asarray(neuronal_drive(truth, js)), rtol=0.2)
    # the hemodynamic parameters stay near the truth
    for name in ("transit", "decay"):
        np.testing.assert_allclose(
            bl[name], js.unpack(truth)[2 if name == "transit" else 3], atol=0.1
        )
    # both modalities are explained
    eeg, bold = predict_joint(
        jnp.asarray(res.vl.mean), js, jnp.asarray(lf), jnp.asarray(js.stimulus())
    )
    assert np.linalg.norm(np.asarray(eeg) - y_eeg) / np.linalg.norm(y_eeg) < 0.12
    assert np.linalg.norm(np.asarray(bold) - y_bold) / np.linalg.norm(y_bold) < 0.35
    assert sd["coupling"][0] < 1.0  # prior SD 1


def test_free_energy_increases_over_accepted_iterations(fitted):
    h = fitted[-1].vl.history
    assert len(h) > 3 and np.all(np.diff(h) >= 0)


def test_jacobian_used_by_vl_matches_finite_differences(fitted):
    """The joint model's forward-mode Jacobian (as compiled for the fit) against central
    differences; the log-likelihood gradient is J' Pi e."""
    js, lf, truth, _, _, _, res = fitted
    f = _compiled(_model_for(js, 80))
    args = (
        jnp.asarray(res.modes.T @ lf),
        jnp.asarray(js.stimulus()),
        jnp.asarray(res.scale_eeg),
        jnp.asarray(res.scale_bold),
    )
    theta0 = jnp.asarray(truth) * 0.9 + 0.013
    _, jac = f(theta0, *args)
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = jnp.asarray(rng.normal(size=theta0.size))
        fd = (f(theta0 + 1e-5 * v, *args)[0] - f(theta0 - 1e-5 * v, *args)[0]) / 2e-5
        jv = jnp.einsum("tkp,p->tk", jac, v)
        assert float(jnp.linalg.norm(jv - fd) / jnp.linalg.norm(fd)) < 1e-6


def test_bad_input():
    js = _structure()
    lf = np.ones((6, 2))
    with pytest.raises(ParameterError, match="onsets"):
        JointStructure(js.erp, (np.array([1.0]),), n_scans=80)
    with pytest.raises(ParameterError, match="onsets"):
        JointStructure(js.erp, (np.array([1.0]), np.array([500.0])), n_scans=80)
    with pytest.raises(ParameterError, match="y_bold"):
        fit_joint(js, np.zeros((2, 40, 6)), lf, np.zeros((79, 2)))
    odd = _structure(n_scans=79)
    with pytest.raises(ParameterError, match="n_scans"):
        fit_joint(odd, np.ones((2, 40, 6)), lf, np.ones((79, 2)))
