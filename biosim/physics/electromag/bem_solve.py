"""Solving the symmetric BEM system ``A(sigma) x = b``.

``A(sigma)`` (:mod:`.bem_system`, from the blocks of
:class:`~biosim.physics.electromag.bem.BEMOperators`) is symmetric quasi-definite: the
potential block is negative semi-definite with the constant as null space, removed by
deflation (``A_VV - c e e^T``), the current block positive definite.  Three solvers:

* :func:`factorize` / :func:`solve_concrete`: block LDL^T by LAPACK in
  place, in float32 with float64 iterative refinement (default) or float64;
* :func:`solve_adjoint`: the same factorisation inside a JAX primitive with
  a reverse-mode rule (one more solve with the same factors and one pass over
  the conductivity-dependent blocks): conductivity gradients at any mesh
  size, in the memory of the forward solve;
* :func:`solve_traced`: a dense JAX solve through the conductivity basis of
  the system (forward and reverse mode, higher derivatives; 2N + 1 dense
  matrices, so small meshes only).
"""

from __future__ import annotations

import threading
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla

from ..._core.errors import ParameterError
from .bem_system import apply, blocks, conductivity_derivative, deflation_constant, dense


def _factor(avv, avp, app):
    """Block LDL^T of the deflated quasi-definite system (arrays overwritten):
    ``A_pp = L L^T``, ``W = L^-1 A_pV``, ``-A_VV + W^T W = U^T U``.  Returns a
    solver for right-hand sides (n_dof, k) in the factors' precision.

    With the layouts of :func:`.bem_system.blocks` (A_VV, A_pp Fortran,
    A_Vp C-ordered) every LAPACK call works in place: the factors take the
    blocks' memory and nothing of their size is copied."""
    dt = avv.dtype
    n_v = avv.shape[0]
    syrk = sla.blas.dsyrk if dt == np.float64 else sla.blas.ssyrk
    # symmetric blocks: a C-ordered one is its own transpose, in Fortran order
    fortran = lambda a: a if a.flags.f_contiguous else a.T
    avv, app = fortran(avv), fortran(app)
    if app.shape[0] == 0:
        avv *= -1.0
        ls = sla.cholesky(avv, lower=False, overwrite_a=True, check_finite=False)
        return lambda f: -sla.cho_solve((ls, False), f.astype(dt), check_finite=False)
    lp = sla.cholesky(app, lower=True, overwrite_a=True, check_finite=False)
    w = sla.solve_triangular(
        lp, avp.T, lower=True, check_finite=False, overwrite_b=True
    )  # (n_p, n_v), in avp's memory
    avv *= -1.0
    schur = syrk(1.0, w, beta=1.0, c=avv, trans=1, lower=0, overwrite_c=1)
    ls = sla.cholesky(schur, lower=False, overwrite_a=True, check_finite=False)

    def solve(f):
        f = f.astype(dt)
        fv, fp = f[:n_v], f[n_v:]
        zp = sla.solve_triangular(lp, fp, lower=True, check_finite=False)
        # (A_VV - W^T W) x_V = f_V - W^T z_p ;  A_pp x_p = f_p - A_pV x_V
        xv = -sla.cho_solve((ls, False), fv - w.T @ zp, check_finite=False)
        xp_ = sla.solve_triangular(lp, zp - w @ xv, lower=True, trans="T", check_finite=False)
        return np.concatenate([xv, xp_], axis=0)

    return solve


def factorize(ops, sigma, precision="mixed", rtol=1e-10, max_refine=6):
    """Factor the deflated ``A(sigma)`` once; returns ``solve(rhs)`` giving the
    float64 solution of ``A x = rhs`` (rhs (n_unknowns, k)).

    Block LDL^T of the deflated quasi-definite system: ``A_pp = L L^T`` (SPD),
    ``W = L^-1 A_pV``, then the negated Schur complement ``-A_VV + W^T W``
    (SPD) by Cholesky: n_p^3/3 + n_p^2 n_V + n_V^2 n_p / 2 + n_V^3/3 flops,
    about 0.4 of an LU of the whole system, in place (memory: the system once).

    ``precision="mixed"`` (default) factors in float32 (faster LAPACK,
    half the memory) and refines iteratively with float64 residuals
    computed from the operator blocks (:func:`.bem_system.apply`) until the
    largest column residual is below ``rtol`` times its right-hand side
    (Wilkinson's iterative refinement; Moler 1967, J. ACM 14:316).  If float32
    Cholesky fails or the refinement stalls (a system too ill-conditioned for
    single precision), it falls back to the float64 factorisation, which
    ``precision="double"`` selects directly.  With the default ``rtol=1e-10``
    one refinement step suffices on nested spheres and the solution agrees
    with the float64 factorisation to ~2e-12 (642 and 2562 vertices per
    surface).
    """
    if precision not in ("mixed", "double"):
        raise ParameterError("precision", precision, "'mixed' or 'double'")
    sigma = np.asarray(sigma, float)
    c = deflation_constant(ops, sigma)
    double = []

    def solve_double(rhs):
        if not double:
            double.append(_factor(*blocks(ops, sigma, deflation=c)))
        return double[0](rhs)

    if precision == "double":
        return lambda rhs: solve_double(np.asarray(rhs, float))
    avv, avp, app = blocks(ops, sigma, dtype=np.float32, deflation=c)
    try:
        single = _factor(avv, avp, app)
    except np.linalg.LinAlgError:
        return lambda rhs: solve_double(np.asarray(rhs, float))
    del avv, avp, app

    def solve(rhs):
        rhs = np.asarray(rhs, float)
        x = single(rhs).astype(np.float64)
        scale = np.maximum(np.linalg.norm(rhs, axis=0), np.finfo(float).tiny)
        prev = np.inf
        for _ in range(max_refine + 1):
            r = rhs - apply(ops, sigma, x, c)
            rel = float(np.max(np.linalg.norm(r, axis=0) / scale))
            if rel <= rtol:
                return x
            if not np.isfinite(rel) or rel > 0.5 * prev:
                break  # stalled: single precision not enough
            prev = rel
            x += single(r)
        return solve_double(rhs)

    return solve


def solve_concrete(ops, sigma, rhs, precision="mixed", rtol=1e-10, max_refine=6):
    """Solve A x = rhs (ndof, k) for concrete conductivities (numpy / LAPACK):
    :func:`factorize` then one solve."""
    return factorize(ops, sigma, precision, rtol, max_refine)(rhs)


# ------------------------------------------------------------- reverse mode
class _FactorCache:
    """The factorisation of the latest forward solve of :func:`solve_adjoint`,
    kept for its backward pass, which releases it (one entry: a factorisation
    holds the system's memory; a traced forward without a backward keeps it
    until the next solve)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ops = None  # weak reference: an id could be reused after collection
        self._sigma = None
        self._solve = None

    def get(self, ops, sigma):
        sigma = np.asarray(sigma, float).tobytes()
        with self._lock:
            if self._ops is not None and self._ops() is ops and self._sigma == sigma:
                return self._solve
        solve = factorize(ops, np.frombuffer(sigma))
        with self._lock:
            self._ops, self._sigma, self._solve = weakref.ref(ops), sigma, solve
        return solve

    def clear(self):
        with self._lock:
            self._ops = self._sigma = self._solve = None


_CACHE = _FactorCache()


def solve_adjoint(ops, sigma, rhs):
    """``A(sigma)^-1 rhs`` as a JAX function of ``sigma`` (N,) and ``rhs``
    (n_unknowns, k), differentiable in reverse mode (``jax.grad``, ``jax.vjp``;
    also under ``jit``).

    Forward: :func:`factorize` through ``jax.pure_callback``.  Backward, for a
    cotangent ``x_bar``: ``lam = A^-1 x_bar`` with the same factors (``A`` is
    symmetric), ``rhs_bar = lam`` and ``sigma_bar_k = -lam^T (dA/dsigma_k) x``
    (:func:`.bem_system.conductivity_derivative`; the deflation constant is
    held fixed, as in :func:`solve_traced`).  Cost: one more solve and one pass
    over the blocks; memory: that of the forward solve.  Forward-mode
    derivatives (``jvp``, ``jacfwd``) need :func:`solve_traced`.
    """
    rhs = jnp.asarray(rhs)
    shape = jax.ShapeDtypeStruct(rhs.shape, jnp.float64)
    grad_shape = jax.ShapeDtypeStruct((ops.n_surfaces,), jnp.float64)

    def forward(sig, b):
        return _CACHE.get(ops, sig)(np.asarray(b, float))

    def backward(sig, x, x_bar):
        solve = _CACHE.get(ops, sig)
        lam = solve(np.asarray(x_bar, float))
        _CACHE.clear()
        return -conductivity_derivative(ops, sig, lam, np.asarray(x, float)), lam

    @jax.custom_vjp
    def f(sig, b):
        return jax.pure_callback(forward, shape, sig, b, vmap_method="sequential")

    def f_fwd(sig, b):
        x = f(sig, b)
        return x, (sig, x)

    def f_bwd(res, x_bar):
        sig, x = res
        sig_bar, b_bar = jax.pure_callback(
            backward, (grad_shape, shape), sig, x, x_bar, vmap_method="sequential"
        )
        return sig_bar, b_bar

    f.defvjp(f_fwd, f_bwd)
    return f(jnp.asarray(sigma, jnp.float64), rhs)


def solve_traced(ops, sigma, rhs):
    """Differentiable dense solve (jax) of the deflated system
    ``A(sigma) = M0 + sum_k sigma_k Ms_k + sum_k Mi_k / sigma_k``
    (:func:`.bem_system.dense`), for gradients with respect to the
    conductivities (small meshes: the basis is dense)."""
    return jnp.linalg.solve(dense(ops, sigma), jnp.asarray(rhs))
