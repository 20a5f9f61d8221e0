"""Solvers for the FEM conductivity problem and their adjoint derivative.

The pure-Neumann stiffness matrix K is singular (constant null space); one
reference node is grounded (its row and column removed, its potential 0).
:class:`FEMSolver` factorises the reduced matrix once (SuperLU, reused for any
number of right-hand sides) or, for large meshes, builds a smoothed-aggregation
AMG hierarchy (pyamg, optional) that preconditions conjugate gradients.

:func:`make_differentiable_solve` wraps the solve as a JAX function of the
per-element conductivity with a ``custom_vjp``: for ``U = K(sigma)^-1 B`` and
a cotangent ``dU``, the adjoint ``L = K^-1 dU`` (K is symmetric) gives
``dsigma_e = -int_e grad L . grad U`` and ``dB = L`` (e.g. Vallaghe & Papadopoulo
2010; the standard adjoint of a linear PDE constraint), so ``jax.grad`` costs
one more solve per right-hand side whatever the mesh size.
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as spla

from ..._core.errors import ParameterError
from ..._core.precision import require_float64
from .assembly import FEMSpace, as_space, assemble_stiffness, check_conductivity, element_products

#: above this many unknowns ``method="auto"`` uses AMG-CG (when pyamg is installed)
DIRECT_LIMIT = 60_000


def _have_pyamg():
    try:
        import pyamg  # noqa: F401
    except ImportError:
        return False
    return True


class FEMSolver:
    """Grounded stiffness matrix of one mesh and conductivity, ready to solve.

    Parameters
    ----------
    space : FEMSpace or TetMesh
    sigma : array (m,) or (m, 3, 3)
        Element conductivities, S/m.
    method : {"auto", "direct", "amg"}
        ``"direct"``: SuperLU factorisation of the grounded matrix, reused for
        every right-hand side.  ``"amg"``: pyamg smoothed aggregation as
        preconditioner of CG to relative residual ``tol``.  ``"auto"``: direct
        up to :data:`DIRECT_LIMIT` unknowns, AMG above (direct when pyamg is
        not installed).
    reference : int
        Grounded unknown (potential 0).
    tol : float
        Relative residual of the iterative solver.
    """

    def __init__(self, space, sigma, method="auto", reference=0, tol=1e-10, order=1):
        require_float64("FEMSolver")
        self.space = as_space(space, order)
        if method not in ("auto", "direct", "amg"):
            raise ParameterError("method", method, "'auto', 'direct' or 'amg'")
        n = self.space.n_dofs
        if not (0 <= int(reference) < n):
            raise ParameterError("reference", reference, f"an unknown index in [0, {n})")
        if not (0 < tol < 1):
            raise ParameterError("tol", tol, "a relative residual in (0, 1)")
        self.sigma = check_conductivity(self.space, sigma)
        if method == "auto":
            method = "amg" if n > DIRECT_LIMIT and _have_pyamg() else "direct"
        elif method == "amg" and not _have_pyamg():
            warnings.warn("pyamg is not installed: using the direct solver", stacklevel=2)
            method = "direct"
        self.method, self.reference, self.tol = method, int(reference), tol
        t0 = time.perf_counter()
        self.matrix = assemble_stiffness(self.space, self.sigma)
        keep = np.ones(n, bool)
        keep[self.reference] = False
        self._keep = keep
        kr = self.matrix[keep][:, keep].tocsc()
        self.assembly_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        if method == "direct":
            self._lu = spla.splu(kr, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
        else:
            import pyamg

            kr = kr.tocsr()
            self._kr = kr
            self._ml = pyamg.smoothed_aggregation_solver(kr, symmetry="symmetric", max_coarse=500)
            self._prec = self._ml.aspreconditioner(cycle="V")
        self.setup_time = time.perf_counter() - t0
        self.iterations = []

    @property
    def n_dofs(self):
        return self.space.n_dofs

    def solve(self, rhs):
        """Potential (n_dofs[, k]) in V for right-hand sides (n_dofs[, k]) in A.

        The grounded node's entry of ``rhs`` is ignored (current there flows
        to ground) and its potential is 0.
        """
        b = np.asarray(rhs, float)
        if b.shape[0] != self.n_dofs or b.ndim not in (1, 2):
            raise ParameterError(
                "rhs", f"shape {b.shape}", f"({self.n_dofs},) or ({self.n_dofs}, k)"
            )
        if not np.all(np.isfinite(b)):
            raise ParameterError("rhs", "non-finite values", "finite currents in A")
        b2 = b.reshape(self.n_dofs, -1)[self._keep]
        out = np.zeros((self.n_dofs, b2.shape[1]))
        if self.method == "direct":
            out[self._keep] = self._lu.solve(np.ascontiguousarray(b2))
        else:
            for j in range(b2.shape[1]):
                out[self._keep, j] = self._cg(b2[:, j])
        return out.reshape(b.shape)

    def _cg(self, b):
        nb = np.linalg.norm(b)
        if nb == 0:
            return np.zeros_like(b)
        count = [0]

        def cb(_):
            count[0] += 1

        x, info = spla.cg(self._kr, b, rtol=self.tol, maxiter=1000, M=self._prec, callback=cb)
        if info != 0:
            raise RuntimeError(f"AMG-CG did not converge in {count[0]} iterations (info {info})")
        self.iterations.append(count[0])
        return x


def solve_potential(mesh, sigma, rhs, order=1, method="auto", reference=0):
    """Nodal potential (V) of the grounded Neumann problem ``K(sigma) u = rhs``.

    Parameters
    ----------
    mesh : TetMesh or FEMSpace
    sigma : array (m,) or (m, 3, 3)
        Conductivity per element, S/m.
    rhs : array (n_dofs[, k]) or callable
        Load vector(s) in A (e.g. :func:`divergence_rhs`,
        :func:`boundary_current_rhs`), or ``rhs(space) -> array``.
    """
    space = as_space(mesh, order)
    solver = FEMSolver(space, sigma, method=method, reference=reference)
    b = rhs(space) if callable(rhs) else rhs
    return solver.solve(b)


class _SolverCache:
    """Last few factorised solvers keyed by the conductivity values."""

    def __init__(self, space, size=2, **options):
        self.space, self.size, self.options, self.items = space, size, options, []

    def get(self, sigma):
        sigma = np.asarray(sigma, float)
        key = hash(sigma.tobytes())
        for k, s in self.items:
            if k == key:
                return s
        s = FEMSolver(self.space, sigma, **self.options)
        self.items = ([(key, s)] + self.items)[: self.size]
        return s


def make_differentiable_solve(space: FEMSpace, **options):
    """JAX function ``solve(sigma, rhs) -> U`` with an adjoint derivative.

    ``sigma``: per-element conductivity (m,) or (m, 3, 3) in S/m (map per-tissue
    values with ``sigma_t[label_index]`` inside JAX); ``rhs`` (n_dofs, k) in A.
    Works under ``jit`` (the sparse work runs in host callbacks); the
    factorisation of the last conductivities is cached and shared by the
    forward and the adjoint solves.  ``options`` go to :class:`FEMSolver`.
    """
    cache = _SolverCache(space, **options)

    def _np_solve(sigma, rhs):
        return cache.get(sigma).solve(np.asarray(rhs)).astype(np.float64)

    def _call_solve(sigma, rhs):
        shape = jax.ShapeDtypeStruct(rhs.shape, jnp.float64)
        return jax.pure_callback(_np_solve, shape, sigma, rhs)

    @jax.custom_vjp
    def solve(sigma, rhs):
        return _call_solve(sigma, rhs)

    def fwd(sigma, rhs):
        u = _call_solve(sigma, rhs)
        return u, (sigma, u)

    def bwd(res, du):
        sigma, u = res
        lam = _call_solve(sigma, du)
        tensor = sigma.ndim == 3

        def _products(lam_, u_):
            return -element_products(space, u_, lam_, tensor=tensor)

        dsig = jax.pure_callback(_products, jax.ShapeDtypeStruct(sigma.shape, jnp.float64), lam, u)
        return dsig, lam

    solve.defvjp(fwd, bwd)
    solve.cache = cache
    return solve


__all__ = [
    "DIRECT_LIMIT",
    "FEMSolver",
    "make_differentiable_solve",
    "solve_potential",
]
