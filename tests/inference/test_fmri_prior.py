"""fMRI-informed source imaging: the gain, and the failure mode for fMRI-silent sources."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.inference.fmri_prior import fmri_masked_inverse, fmri_weights
from biosim.inference.metrics import localization_error, spatial_dispersion
from biosim.inference.minimum_norm import apply_inverse, make_inverse_operator
from biosim.physics.electromag import meg_gain, sensors


@pytest.fixture(scope="module")
def problem():
    helmet = sensors.squid_helmet_306(accuracy="point").select(["mag"])
    ax = np.arange(-0.06, 0.061, 0.012)
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    pos = g[
        (np.linalg.norm(g, axis=1) < 0.07) & (g[:, 2] > 0.0) & (np.linalg.norm(g, axis=1) > 0.02)
    ]
    lead = np.asarray(meg_gain(helmet, pos))
    tang = np.cross(pos, [0.0, 0.0, 1.0]) + 1e-9
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    gf = np.einsum("csk,sk->cs", lead, tang)
    noise = np.eye(helmet.n_channels) * (10e-15) ** 2
    return pos, gf, noise


def _data(gf, idx, rng, amp=10e-9):
    y = gf[:, idx].sum(1, keepdims=True) * amp
    return y + rng.normal(0, 10e-15, y.shape)


def test_soft_prior_focuses_and_hard_mask_fails_for_fmri_silent_source(problem):
    pos, gf, noise = problem
    rng = np.random.default_rng(0)
    true = 10
    d2 = np.sum((pos - pos[true]) ** 2, 1)
    active = d2 < 0.015**2  # fMRI blob around the source
    y = _data(gf, [true], rng)
    plain = apply_inverse(make_inverse_operator(gf, noise, snr=3.0), y, "MNE")[:, 0]
    soft = apply_inverse(
        make_inverse_operator(gf, noise, snr=3.0, source_weights=fmri_weights(active)), y, "MNE"
    )[:, 0]
    assert spatial_dispersion(soft, pos, true) < 0.8 * spatial_dispersion(plain, pos, true)
    # failure mode: the electrically active source is fMRI-silent, fMRI shows another region
    far = np.argmax(d2)
    wrong = np.sum((pos - pos[far]) ** 2, 1) < 0.015**2
    hard = fmri_masked_inverse(gf, noise, wrong, y, "MNE", snr=3.0)[:, 0]
    soft_wrong = apply_inverse(
        make_inverse_operator(gf, noise, snr=3.0, source_weights=fmri_weights(wrong)), y, "MNE"
    )[:, 0]
    err_hard = localization_error(hard, pos, true)
    err_soft = localization_error(soft_wrong, pos, true)
    assert err_hard > 0.05  # forced into the wrong region
    assert err_soft < err_hard  # the soft prior still finds it
    with pytest.raises(ParameterError, match="active"):
        fmri_masked_inverse(gf, noise, np.zeros(len(pos), bool), y)
    with pytest.raises(ParameterError, match="inactive_weight"):
        fmri_weights(active, 2.0)
