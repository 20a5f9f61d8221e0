"""Variational Laplace (Friston et al. 2007, NeuroImage 34:220; SPM's
``spm_nlsi_GN``) for y = g(theta) + e, e ~ N(0, Pi^-1), with

* Gaussian priors theta ~ N(mu_p, C_p) and log-precisions lambda ~ N(6, 1/128)
  per data column (region), Pi = diag(exp(lambda_i));
* E-step: Gauss-Newton on theta with the Jacobian from JAX forward-mode
  autodiff (no finite differences) and SPM's regularised step
  ``dtheta = (expm(t H) - I) H^-1 g`` (H the curvature, t = exp(v)),
  computed through the eigen-decomposition of H; v grows by 1/2 after an
  accepted step and falls by 2 after a rejected one (Levenberg-Marquardt-like);
* M-step: Newton ascent of lambda to its conditional optimum (SPM25
  ``spm_nlsi_GN``): with a_i = e_i'e_i + tr(J_i S_theta J_i') and
  Pi_i = exp(lambda_i), the gradient is N/2 - Pi_i a_i / 2 - (lambda_i - 6) / C_l
  and the curvature, by default, the *observed* one,
  -Pi_i a_i / 2 - 1/C_l (SPM25: ``dFdhh = dFdhh + diag(dFdh)``), which equals
  the expected (Fisher) curvature -N/2 - 1/C_l only where the model fits.
  SPM12 r7771 uses the expected curvature (``hyper_curvature="expected"``);
  when the model misfits, it is several times too small, the step overshoots
  and lambda oscillates around its optimum instead of converging.  Steps are
  clipped to +-1 and iterated (up to 16 times) until |dlambda| < 1e-4;
* the free energy under the Laplace approximation::

      F = -1/2 e' Pi e + 1/2 sum_i N_i lambda_i - N/2 log 2 pi
          - 1/2 dtheta' C_p^-1 dtheta - 1/2 log|C_p| + 1/2 log|S_theta|
          - 1/2 dlambda' C_l^-1 dlambda - 1/2 log|C_l| + 1/2 log|S_lambda|

  (accuracy minus complexity), with S_lambda the inverse of minus the
  curvature of the M-step (observed or expected).  Accepted iterations never
  decrease F.

Convergence (``VLResult.converged``/``reason``) is declared only at a point
where the M-step has converged (lambda at its conditional optimum, so F there
is what a re-evaluation at the returned mean gives) and either

* ``"F_converged"``: F gained less than ``tol`` over the last four accepted
  steps (the last iteration accepted), or
* ``"stationary"``: no Gauss-Newton step, from the full step down to a
  gradient step of size exp(-12), increases F (F is at a maximum along the
  ascent direction; ``VLResult.predicted_gain``, g' S_theta g / 2, says how
  far the accuracy-and-prior part alone would still climb: the rest of its
  gradient is balanced by that of log|S_theta|).

Otherwise the fit ends with ``converged=False`` and reason ``"max_iter"``
(which includes a noise step that never converges) or ``"evaluated"``
(``max_iter=0``).

Confounds (SPM's ``Y.X0``, e.g. a constant per region): ``confounds=X0``
(T, c) adds c coefficients per data column, y_i = g_i(theta) + X0 beta_i + e_i,
with the prior beta ~ N(0, 1e8) that ``spm_nlsi_GN`` gives them (initialised
by least squares on y, as SPM does); they enter the Gauss-Newton steps, the
posterior covariance and F like any other parameter, and the returned
``mean``/``cov`` are the marginal posterior of theta.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import ConvergenceError, ParameterError
from ..._core.parallel import single_threaded_blas
from ..._core.precision import require_float64
from ..._core.progress import task


@dataclasses.dataclass
class VLResult:
    """Posterior of a variational Laplace inversion."""

    mean: np.ndarray  # posterior mean of theta
    cov: np.ndarray  # posterior covariance of theta
    log_precision: np.ndarray  # posterior mean of lambda (per column)
    free_energy: float
    n_iterations: int
    converged: bool
    history: list  # F after each accepted iteration
    prediction: np.ndarray  # model prediction (confounds included)
    confound_mean: np.ndarray | None = None  # (c, k) posterior mean of the confound weights
    reason: str = ""  # why the iterations stopped (one of REASONS; module docstring)
    predicted_gain: float = float("nan")  # g' S g / 2 at the returned mean, nats


#: Values of ``VLResult.reason``: the first two mean converged.
REASONS = ("F_converged", "stationary", "max_iter", "evaluated")
HYPER_CURVATURES = ("observed", "expected")


_COMPILED = {}
#: Prior variance of confound weights (``spm_nlsi_GN``: ``uC = speye(nu)/1e-8``).
CONFOUND_PRIOR_VAR = 1e8
#: Newton iterations and step tolerance of the noise M-step.
M_STEP_MAX_ITER, M_STEP_TOL = 16, 1e-4


def _compiled(model):
    """jit(theta, *args) -> (prediction, Jacobian), cached per model callable: the
    model's own ``value_and_jacobian(theta, *args)`` where it has one (e.g. DCM's
    structured sensitivities), else ``jax.jacfwd``."""
    if model not in _COMPILED:
        own = getattr(model, "value_and_jacobian", None)
        _COMPILED[model] = jax.jit(
            own
            if own is not None
            else lambda theta, *args: (model(theta, *args), jax.jacfwd(model)(theta, *args))
        )
    return _COMPILED[model]


@single_threaded_blas()
def invert(
    model,
    y,
    prior_mean,
    prior_var,
    *,
    args=(),
    hyper_mean=6.0,
    hyper_var=1 / 128,
    max_iter=64,
    tol=1e-2,
    verbose=False,
    confounds=None,
    init=None,
    hyper_curvature="observed",
    fix_log_precision=None,
) -> VLResult:
    """Invert ``y ~ model(theta)`` by variational Laplace.

    Parameters
    ----------
    model : callable (theta (p,), *args) -> prediction (T, k)
        JAX-traceable (differentiated with ``jax.jacfwd``, unless the callable
        has a ``value_and_jacobian(theta, *args)`` attribute returning the
        prediction and its (T, k, p) Jacobian); compiled once per callable and
        reused across calls.
    args : tuple
        Further array arguments of ``model`` (e.g. the experimental inputs).
    y : array (T, k)
    prior_mean, prior_var : arrays (p,)
    hyper_mean, hyper_var : float
        Prior of each column's log noise precision.
    max_iter : int
    tol : float
        Convergence tolerance in nats (module docstring).
    confounds : array (T, c) or None
        Nuisance regressors fitted to every column with SPM's flat prior (see module docstring).
    init : array (p,) or None
        Starting point of theta (default: the prior mean; confound weights then
        start at least squares on the residual).  With ``max_iter=0`` the
        result is the free energy (after the noise M-step) at ``init``.
    hyper_curvature : {"observed", "expected"}
        Curvature of the noise M-step and of S_lambda: SPM25's observed one
        (default) or SPM12 r7771's expected (Fisher) one.
    fix_log_precision : array (k,) or None
        Hold the noise log-precisions at these values (no M-step); with
        ``max_iter=0`` the result is F at (``init``, ``fix_log_precision``).

    Raises
    ------
    ConvergenceError
        When the model produces non-finite predictions at the prior mean.
    """
    require_float64("variational Laplace")
    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or not np.all(np.isfinite(y)):
        raise ParameterError("y", f"array of shape {y.shape}", "finite data of shape (T, k)")
    mu_p = np.asarray(prior_mean, float)
    var_p = np.asarray(prior_var, float)
    if np.any(var_p <= 0):
        raise ParameterError("prior_var", var_p.min(), "positive prior variances")
    n_t, k = y.shape
    n_theta = mu_p.size
    if hyper_curvature not in HYPER_CURVATURES:
        raise ParameterError("hyper_curvature", hyper_curvature, f"one of {HYPER_CURVATURES}")
    if fix_log_precision is not None:
        fix_log_precision = np.broadcast_to(np.asarray(fix_log_precision, float), (k,)).copy()
        if not np.all(np.isfinite(fix_log_precision)):
            raise ParameterError("fix_log_precision", fix_log_precision, "finite log precisions")
    if confounds is not None:
        x0 = np.asarray(confounds, float)
        x0 = x0[:, None] if x0.ndim == 1 else x0
        if x0.ndim != 2 or x0.shape[0] != n_t or not np.all(np.isfinite(x0)):
            raise ParameterError(
                "confounds", f"array of shape {x0.shape}", f"finite regressors of shape ({n_t}, c)"
            )
        n_c = x0.shape[1]
        beta0 = np.linalg.lstsq(x0, y, rcond=None)[0]  # (c, k), SPM's pinv(X0) y
        mu_p = np.concatenate([mu_p, np.zeros(n_c * k)])
        var_p = np.concatenate([var_p, np.full(n_c * k, CONFOUND_PRIOR_VAR)])
        jac_conf = np.zeros((n_t, k, k, n_c))
        for i in range(k):
            jac_conf[:, i, i, :] = x0
        jac_conf = jac_conf.reshape(n_t, k, k * n_c)  # parameter order (k, c)
    ip = np.diag(1.0 / var_p)
    lam_p = np.full(k, hyper_mean)

    g_and_j = _compiled(model)

    def evaluate(theta, lam):
        pred, jac = g_and_j(jnp.asarray(theta[:n_theta]), *args)
        pred, jac = np.asarray(pred), np.asarray(jac).reshape(n_t, k, -1)
        if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(jac))):
            return None
        if confounds is not None:
            pred = pred + x0 @ theta[n_theta:].reshape(k, n_c).T
            jac = np.concatenate([jac, jac_conf], axis=2)
        e = y - pred
        n_p = jac.shape[2]
        if k * n_p * n_p <= 2**26:
            # per-column Gram matrices G_k = J_k' J_k (BLAS), reused by the M-step
            jk = np.ascontiguousarray(jac.transpose(1, 0, 2))  # (k, T, p)
            gram = np.matmul(jk.transpose(0, 2, 1), jk)  # (k, p, p)

            def curvature(prec):
                return np.tensordot(prec, gram, axes=1) + ip

            def traces(s):
                return np.tensordot(gram, s, axes=([1, 2], [1, 0]))
        else:
            flat = jac.reshape(-1, n_p)

            def curvature(prec):
                jw = (jac * np.sqrt(prec)[None, :, None]).reshape(-1, n_p)
                return jw.T @ jw + ip

            def traces(s):
                return ((flat @ s) * flat).reshape(n_t, k, n_p).sum(axis=(0, 2))

        ee = np.einsum("tk,tk->k", e, e)

        def hyper_curv(prec, tr):
            # d2F/dlambda2 per column (module docstring)
            if hyper_curvature == "observed":
                return -0.5 * prec * (ee + tr) - 1.0 / hyper_var
            return np.full(k, -0.5 * n_t - 1.0 / hyper_var)

        # M-step: Newton ascent of the log precisions to their conditional optimum
        lam_converged = fix_log_precision is not None
        if fix_log_precision is not None:
            lam = fix_log_precision
        for _ in range(0 if lam_converged else M_STEP_MAX_ITER):
            prec = np.exp(lam)
            s = np.linalg.inv(curvature(prec))
            tr = traces(s)  # tr(J_k S J_k') per column
            grad = 0.5 * (n_t - prec * (ee + tr)) - (lam - lam_p) / hyper_var
            d_lam = np.clip(-grad / hyper_curv(prec, tr), -1.0, 1.0)
            lam = lam + d_lam
            if np.max(np.abs(d_lam)) < M_STEP_TOL:
                lam_converged = True
                break
        prec = np.exp(lam)
        h = curvature(prec)
        s = np.linalg.inv(h)
        dth = theta - mu_p
        s_lam = -1.0 / hyper_curv(prec, traces(s))
        f = (
            -0.5 * np.sum(prec * ee)
            + 0.5 * n_t * np.sum(lam)
            - 0.5 * n_t * k * np.log(2 * np.pi)
            - 0.5 * np.sum(dth**2 / var_p)
            - 0.5 * np.sum(np.log(var_p))
            + 0.5 * np.linalg.slogdet(s)[1]
            - 0.5 * np.sum((lam - lam_p) ** 2) / hyper_var
            - 0.5 * k * np.log(hyper_var)
            + 0.5 * np.sum(np.log(s_lam))
        )
        grad_theta = np.einsum("tkp,tk->p", jac, e * prec[None, :]) - dth / var_p
        return dict(f=f, lam=lam, h=h, s=s, grad=grad_theta, pred=pred, lam_converged=lam_converged)

    theta = mu_p.copy()
    if init is not None:
        init = np.asarray(init, float)
        if init.shape != (n_theta,) or not np.all(np.isfinite(init)):
            raise ParameterError("init", f"array of shape {init.shape}", f"finite ({n_theta},)")
        theta[:n_theta] = init
    if confounds is not None:
        if init is not None:  # confound weights at their conditional optimum given init
            resid = y - np.asarray(g_and_j(jnp.asarray(theta[:n_theta]), *args)[0])
            beta0 = np.linalg.lstsq(x0, resid, rcond=None)[0]
        theta[n_theta:] = beta0.T.ravel()
    lam = lam_p.copy()
    state = evaluate(theta, lam)
    if state is None:
        raise ConvergenceError("the model's prediction is not finite at the prior mean")
    best_theta, best = theta, state
    history = [state["f"]]
    v = -4.0
    converged = False
    reason = "evaluated" if max_iter == 0 else "max_iter"
    it = 0
    with task("variational Laplace", total=max_iter, unit="iter") as bar:
        bar.set_postfix_str(f"F = {best['f']:.2f}")
        for it in range(1, max_iter + 1):
            w, vec = np.linalg.eigh(best["h"])
            t = np.exp(v)
            step = vec @ (((1.0 - np.exp(-t * w)) / w) * (vec.T @ best["grad"]))
            cand = best_theta + step
            state = evaluate(cand, best["lam"])
            accepted = state is not None and state["f"] > best["f"]
            if accepted:
                best_theta, best = cand, state
                history.append(state["f"])
                v = min(v + 0.5, 4.0)
            else:
                v = max(v - 2.0, -16.0)
            bar.set_postfix_str(f"F = {best['f']:.2f}", refresh=False)
            bar.update()
            if verbose:
                print(f"VL iteration {it}: F = {best['f']:.3f}, log step {v:.1f}")
            if not best["lam_converged"]:
                continue  # never stop while the noise step is still moving
            if accepted and len(history) > 4 and history[-1] - history[-5] < tol:
                converged, reason = True, "F_converged"
                break
            if v <= -12:
                # no step improves F even when shrunk to a gradient step of size exp(-12)
                converged, reason = True, "stationary"
                break
    conf = None
    if confounds is not None:
        conf = best_theta[n_theta:].reshape(k, n_c).T
    return VLResult(
        mean=best_theta[:n_theta],
        cov=best["s"][:n_theta, :n_theta],
        log_precision=best["lam"],
        free_energy=float(best["f"]),
        n_iterations=it,
        converged=converged,
        history=history,
        prediction=best["pred"],
        confound_mean=conf,
        reason=reason,
        predicted_gain=float(0.5 * best["grad"] @ best["s"] @ best["grad"]),
    )
