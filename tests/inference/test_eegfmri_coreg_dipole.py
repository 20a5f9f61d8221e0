"""Clock drift, coregistration (Kabsch, ICP) and dipole fitting."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import ParameterError
from biosim.geometry.coregistration import apply_transform, icp, kabsch
from biosim.inference.dipole_fit import fit_dipole, residual_objective
from biosim.inference.eegfmri.clock import estimate_clock_drift, resample_to_mri_clock
from biosim.physics.electromag import sensors
from biosim.physics.electromag.sphere_meg import _meg_gain


def test_clock_drift_residual_below_0p1_ms_over_20_min():
    rng = np.random.default_rng(0)
    tr, n_vol = 2.0, 600  # 20 minutes
    t_mri = np.arange(n_vol) * tr
    alpha, beta = 1 + 10e-6, 0.0123  # 10 ppm fast, 12.3 ms offset
    fs = 5000.0
    t_eeg = np.round((alpha * t_mri + beta + rng.normal(0, 20e-6, n_vol)) * fs) / fs  # sampled
    a, b, rms = estimate_clock_drift(t_mri, t_eeg)
    assert abs((a - alpha) * t_mri[-1] + (b - beta)) < 1e-4  # < 0.1 ms at the end
    assert np.max(np.abs(a * t_mri + b - (alpha * t_mri + beta))) < 1e-4
    # resampling restores a sine defined on the MRI clock
    t_dev = np.arange(0, 60, 1 / 500.0)  # EEG samples (EEG clock)
    sig = np.sin(2 * np.pi * 3.0 * (t_dev - beta) / alpha)[None]
    out, grid = resample_to_mri_clock(sig, t_dev, alpha, beta, 500.0)
    np.testing.assert_allclose(out[0, 10:-10], np.sin(2 * np.pi * 3.0 * grid[10:-10]), atol=1e-6)
    with pytest.raises(ParameterError, match="triggers"):
        estimate_clock_drift(t_mri, t_eeg[:-1])


def _rotation(deg_xyz):
    ax, ay, az = np.deg2rad(deg_xyz)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_kabsch_and_icp_recover_rigid_transform():
    import trimesh

    scalp = trimesh.creation.icosphere(subdivisions=4, radius=0.09)
    scalp.vertices[:, 1] *= 1.15  # head-like ellipsoid
    scalp.vertices[:, 2] *= 0.95
    rng = np.random.default_rng(1)
    on_scalp = scalp.vertices[rng.choice(len(scalp.vertices), 120, replace=False)]
    on_scalp = on_scalp[on_scalp[:, 2] > -0.01]  # digitised points on the upper head
    r_true, t_true = _rotation([4.0, -3.0, 6.0]), np.array([0.004, -0.006, 0.003])
    digitised = apply_transform(on_scalp, r_true.T, -r_true.T @ t_true)  # inverse transform
    r, t = kabsch(digitised[:3], on_scalp[:3])
    np.testing.assert_allclose(r, r_true, atol=1e-10)
    r, t, rms = icp(digitised, scalp.vertices, scalp.faces)
    angle = np.rad2deg(np.arccos(np.clip((np.trace(r.T @ r_true) - 1) / 2, -1, 1)))
    assert angle < 1.0 and np.linalg.norm(t - t_true) < 1e-3 and rms < 1e-3


@pytest.fixture(scope="module")
def meg():
    helmet = sensors.squid_helmet_306(accuracy="point").select(["mag"])
    args = (
        jnp.asarray(helmet.points),
        jnp.asarray(helmet.normals),
        jnp.asarray(helmet.weights),
        jnp.asarray(helmet.channel),
    )
    return lambda r: _meg_gain(*args, r[None], jnp.zeros(3), helmet.n_channels)[:, 0, :]


def test_dipole_fit_recovers_position_and_moment(meg):
    r_true, q_true = np.array([0.02, -0.01, 0.05]), np.array([1e-8, 2e-8, 0.0])
    q_true = q_true - (q_true @ r_true) / (r_true @ r_true) * r_true  # tangential
    rng = np.random.default_rng(2)
    b = np.asarray(meg(jnp.asarray(r_true))) @ q_true
    b = b + rng.normal(0, 0.01 * np.abs(b).max(), b.shape)
    starts = np.array([[0.0, 0.0, 0.04], [0.03, 0.03, 0.03], [-0.03, 0.0, 0.05]])
    fit = fit_dipole(meg, b / (0.01 * np.abs(b).max()), starts)
    assert np.linalg.norm(fit.position - r_true) < 2e-3
    assert fit.gof > 0.9 and np.isfinite(fit.confidence_volume) and fit.confidence_volume > 0


def test_dipole_objective_gradient(meg):
    b = np.asarray(meg(jnp.array([0.01, 0.02, 0.05]))) @ np.array([1.0, -1.0, 0.3]) * 1e12
    obj = residual_objective(meg, b)
    check_grads(
        obj,
        (jnp.array([0.015, 0.01, 0.045]),),
        order=1,
        modes=["rev"],
        atol=1e-4,
        rtol=1e-4,
        eps=1e-7,
    )


def test_two_dipoles_are_fitted_together(meg):
    r1, r2 = np.array([0.03, 0.0, 0.05]), np.array([-0.03, 0.01, 0.05])
    q1 = np.cross(r1, [0.0, 0.0, 1.0]) * 1e-6
    q2 = np.cross(r2, [0.0, 1.0, 0.0]) * 1e-6
    b = np.asarray(meg(jnp.asarray(r1))) @ q1 + np.asarray(meg(jnp.asarray(r2))) @ q2
    b = b / np.abs(b).max()
    starts = np.array([[0.02, 0.0, 0.04, -0.02, 0.0, 0.04], [0.0, 0.03, 0.05, 0.0, -0.03, 0.05]])
    fit = fit_dipole(meg, b, starts, n_dipoles=2)
    found = sorted(fit.position.tolist())
    truth = sorted([r1.tolist(), r2.tolist()])
    np.testing.assert_allclose(found, truth, atol=1e-3)
    assert fit.gof > 0.999
    with pytest.raises(ParameterError, match="starts"):
        fit_dipole(meg, b, np.zeros((1, 3)), n_dipoles=2)
