"""fMRI GLM: design matrices, OLS/AR(1) equal to nilearn, false-positive control, errors."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.inference.design import cosine_drifts, design_matrix
from biosim.inference.glm import fit_glm

TR, N = 2.0, 200
EVENTS = [dict(onset=o, duration=15.0, trial_type="task") for o in range(20, 380, 60)] + [
    dict(onset=o + 30, duration=0.0, trial_type="flash") for o in range(20, 380, 60)
]


def _ar1_noise(rng, n, v, rho):
    e = rng.normal(size=(n, v))
    for t in range(1, n):
        e[t] = rho * e[t - 1] + np.sqrt(1 - rho**2) * e[t]
    return e


def test_design_matrix_columns():
    x, names = design_matrix(
        N, TR, EVENTS, hrf_model="spm + derivative", confounds=np.zeros((N, 6))
    )
    assert names[:4] == ["flash", "flash_derivative", "task", "task_derivative"]
    assert names[-1] == "constant" and x.shape == (N, len(names))
    d = cosine_drifts(N, TR, 128.0)
    assert d.shape[1] == int(2 * N * TR / 128)
    np.testing.assert_allclose(d.T @ d, np.eye(d.shape[1]), atol=1e-10)
    # a long block plateaus at unit height (the HRF sums to one; short blocks overshoot
    # because its positive lobe sums to ~1.17)
    xl, nl = design_matrix(N, TR, [dict(onset=40.0, duration=200.0, trial_type="long")])
    plateau = xl[(np.arange(N) * TR > 120) & (np.arange(N) * TR < 230), nl.index("long")]
    np.testing.assert_allclose(plateau, 1.0, atol=0.01)
    xm, nm = design_matrix(N, TR, EVENTS, modulators={"flash": np.arange(6.0)})
    assert "flash_x_mod" in nm and abs(xm[:, nm.index("flash_x_mod")].sum()) < 1.0


def test_recovers_betas_and_detects_activation():
    rng = np.random.default_rng(0)
    x, names = design_matrix(N, TR, EVENTS)
    beta = np.zeros((x.shape[1], 50))
    beta[names.index("task"), :25] = 2.0
    y = x @ beta + _ar1_noise(rng, N, 50, 0.3) + 100.0
    for model in ("ols", "ar1"):
        res = fit_glm(y, x, model)
        c = np.zeros(x.shape[1])
        c[names.index("task")] = 1
        t, z = res.t_contrast(c)
        assert np.all(z[:25] > 5) and np.mean(np.abs(z[25:]) < 3.09) > 0.9
        f, zf = res.f_contrast(np.eye(x.shape[1])[[names.index("task"), names.index("flash")]])
        assert np.all(zf[:25] > 4)


def test_false_positive_rate_on_null_ar1_data():
    rng = np.random.default_rng(1)
    x, names = design_matrix(
        360, TR, [dict(onset=o, duration=15.0, trial_type="task") for o in range(20, 700, 60)]
    )
    y = _ar1_noise(rng, 360, 4000, 0.3)
    c = np.zeros(x.shape[1])
    c[names.index("task")] = 1
    rates = {m: np.mean(fit_glm(y, x, m).t_contrast(c)[1] > 3.09) for m in ("ols", "ar1")}
    corrected = fit_glm(y, x, "ar1", bias_correction=True)
    rates["ar1_corrected"] = np.mean(corrected.t_contrast(c)[1] > 3.09)
    assert rates["ar1"] < 2.5 * 0.001 + 0.001  # near nominal (binomial sd ~ 0.0005)
    assert rates["ols"] > rates["ar1"]  # OLS is liberal under AR(1) noise
    assert rates["ar1_corrected"] <= rates["ar1"]  # the bias-corrected rho is less liberal
    assert abs(np.mean(corrected.rho) - 0.3) < abs(np.mean(fit_glm(y, x, "ar1").rho) - 0.3)


@pytest.mark.crosscheck
def test_equals_nilearn_run_glm():
    pytest.importorskip("nilearn")
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    rng = np.random.default_rng(2)
    x, names = design_matrix(N, TR, EVENTS)
    y = x @ rng.normal(size=(x.shape[1], 300)) + _ar1_noise(rng, N, 300, 0.35)
    c = np.zeros(x.shape[1])
    c[names.index("task")] = 1
    for model in ("ols", "ar1"):
        labels, results = run_glm(y, x, noise_model=model)
        ours = fit_glm(y, x, model)
        theirs_beta = np.empty_like(ours.beta)
        for lab, r in results.items():
            theirs_beta[:, labels == lab] = r.theta
        con = compute_contrast(labels, results, c, stat_type="t")
        t_ours, _ = ours.t_contrast(c)
        tol = 1e-6 if model == "ols" else 1e-2
        np.testing.assert_allclose(
            ours.beta, theirs_beta, rtol=tol, atol=tol * np.abs(theirs_beta).max()
        )
        np.testing.assert_allclose(t_ours, con.stat(), rtol=tol)


def test_bad_input():
    x, _ = design_matrix(N, TR, EVENTS)
    with pytest.raises(ParameterError, match="y"):
        fit_glm(np.full((N, 3), np.nan), x)
    with pytest.raises(ParameterError, match="noise_model"):
        fit_glm(np.zeros((N, 3)), x, "ar2")
    with pytest.raises(ParameterError, match="modulators"):
        design_matrix(N, TR, EVENTS, modulators={"flash": [1.0, 2.0]})


def test_detection_rates_counts_and_errors():
    from biosim import ParameterError
    from biosim.inference.metrics import detection_rates

    stat = np.array([5.0, 4.0, 0.5, 3.5, 0.0, -2.0])
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    r = detection_rates(stat, truth, 3.1)
    assert (r.n_true_positive, r.n_false_positive, r.n_active, r.n_inactive) == (2, 1, 3, 3)
    assert r.sensitivity == pytest.approx(2 / 3) and r.false_positive_rate == pytest.approx(1 / 3)
    masked = detection_rates(stat, truth, 3.1, mask=np.array([1, 1, 1, 0, 1, 1], bool))
    assert masked.false_positive_rate == 0.0
    with pytest.raises(ParameterError, match="truth_mask"):
        detection_rates(stat, truth[:3], 3.1)


def test_gram_rss_equals_explicit_residuals_with_and_without_baseline():
    from biosim.inference.glm import GRAM_RSS_MAX_RATIO

    rng = np.random.default_rng(5)
    x, _ = design_matrix(N, TR, EVENTS)
    y = x @ rng.normal(size=(x.shape[1], 40)) + rng.normal(size=(N, 40))
    y[:, 20:] += 1e6  # raw-scanner baseline: y'y / RSS ~ 1e12, explicit residuals
    y[:, 30:] = x @ rng.normal(size=(x.shape[1], 10))  # exact fit: RSS ~ round-off
    fit = fit_glm(y, x, "ols")
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    r = y - x @ beta
    rss = np.sum(r**2, 0)
    df = N - np.linalg.matrix_rank(x)
    np.testing.assert_allclose(fit.dispersion[:30], rss[:30] / df, rtol=1e-10)
    assert np.all(fit.dispersion[30:] < 1e-20 * np.sum(y[:, 30:] ** 2, 0))
    assert np.sum(y[:, 20] ** 2) > GRAM_RSS_MAX_RATIO * rss[20]  # the fallback was exercised
    with pytest.raises(ParameterError, match="y"):
        fit_glm(np.where(np.arange(N)[:, None] == 3, np.inf, y), x, "ols")
