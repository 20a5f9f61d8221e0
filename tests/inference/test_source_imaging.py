"""Source imaging on sphere lead fields: MNE/dSPM/sLORETA vs MNE-Python, eLORETA
exactness, localisation over a source grid, LCMV."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.inference.beamformer import lcmv_weights, neural_activity_index
from biosim.inference.covariance import empirical_covariance, ledoit_wolf, whitener
from biosim.inference.metrics import localization_error, spatial_dispersion
from biosim.inference.minimum_norm import apply_inverse, make_inverse_operator
from biosim.physics.electromag import meg_gain, sensors


@pytest.fixture(scope="module")
def setup():
    helmet = sensors.squid_helmet_306(accuracy="point").select(["mag"])
    rng = np.random.default_rng(0)
    d = rng.normal(size=(150, 3))
    pos = d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(0.03, 0.07, (150, 1))
    pos[:, 2] = np.abs(pos[:, 2])
    g = np.asarray(meg_gain(helmet, pos))
    tang = np.cross(pos, [0.0, 0.0, 1.0])
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    gf = np.einsum("csk,sk->cs", g, tang)  # tangential fixed orientation
    noise = np.diag(rng.uniform(0.5, 2.0, helmet.n_channels) * (20e-15) ** 2)
    return helmet, pos, g, gf, tang, noise


def test_whitener_and_covariance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4000)) * np.arange(1, 6)[:, None]
    c = empirical_covariance(x)
    w, r = whitener(c)
    np.testing.assert_allclose(w @ c @ w.T, np.eye(5), atol=1e-10)
    lw, shrink = ledoit_wolf(x[:, :20])
    assert 0 < shrink < 1 and np.all(np.linalg.eigvalsh(lw) > 0)


@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA", "eLORETA"])
def test_localisation_over_source_grid(setup, method):
    helmet, pos, g, gf, tang, noise = setup
    inv = make_inverse_operator(gf, noise, depth=0.8, snr=3.0)
    errs, disp = [], []
    for k in range(0, 150, 10):
        y = gf[:, k : k + 1] * 1e-8  # 10 nA m, noiseless
        est = apply_inverse(inv, y, method)[:, 0]
        errs.append(localization_error(est, pos, k))
        disp.append(spatial_dispersion(est, pos, k))
    if method == "eLORETA":
        assert max(errs) < 1e-12  # exact localisation (Pascual-Marqui)
    if method in ("dSPM", "sLORETA"):
        assert np.median(errs) < 0.015
    assert np.all(np.isfinite(disp))


@pytest.mark.crosscheck
@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA"])
def test_equals_mne_python(setup, method):
    mne = pytest.importorskip("mne")
    helmet, pos, g, gf, tang, noise = setup
    from biosim.io.mne_interop import point_magnetometer_info

    info = point_magnetometer_info(helmet)
    names = info["ch_names"]
    src = mne.setup_volume_source_space(
        pos=dict(rr=pos, nn=tang), sphere=(0, 0, 0, 0.09), mindist=0.0, exclude=0.0, verbose=False
    )
    fwd = mne.make_forward_solution(
        info, None, src, mne.make_sphere_model((0, 0, 0), None), eeg=False, verbose=False
    )
    gain = fwd["sol"]["data"].reshape(len(names), -1, 3)  # same gain for both packages
    cov = mne.Covariance(noise, names, [], [], nfree=1000)
    inv_mne = mne.minimum_norm.make_inverse_operator(
        info, fwd, cov, loose=1.0, depth=None, verbose=False
    )
    y = gain[:, [3, 40, 77], 0].copy() * 1e-8 + 1e-13 * np.random.default_rng(2).normal(
        size=(len(names), 3)
    )
    evoked = mne.EvokedArray(y, info, nave=1, verbose=False)
    stc = mne.minimum_norm.apply_inverse(
        evoked, inv_mne, lambda2=1 / 9, method=method, pick_ori="vector", verbose=False
    )
    ours = apply_inverse(make_inverse_operator(gain, noise, depth=None, snr=3.0), y, method)
    np.testing.assert_allclose(ours, stc.data, rtol=1e-6, atol=1e-6 * np.abs(stc.data).max())


def test_lcmv_recovers_a_source(setup):
    helmet, pos, g, gf, tang, noise = setup
    rng = np.random.default_rng(3)
    s = np.sin(2 * np.pi * 10 * np.arange(2000) / 1000) * 2e-8
    y = gf[:, [25]] * s + rng.multivariate_normal(np.zeros(len(noise)), noise, 2000).T
    c = empirical_covariance(y)
    nai = neural_activity_index(gf, c, noise)
    assert localization_error(nai, pos, 25) < 0.02
    w = lcmv_weights(gf, c)
    np.testing.assert_allclose(np.einsum("sac,cs->s", w, gf)[25], 1.0, rtol=1e-10)  # unit gain


def test_bad_input(setup):
    helmet, pos, g, gf, tang, noise = setup
    with pytest.raises(ParameterError, match="noise_cov"):
        make_inverse_operator(gf, noise[:5, :5])
    inv = make_inverse_operator(gf, noise)
    with pytest.raises(ParameterError, match="method"):
        apply_inverse(inv, gf[:, :1], "MUSIC")
    with pytest.raises(ParameterError, match="data"):
        apply_inverse(inv, np.full((gf.shape[0], 1), np.nan))
