"""The conductivity-dependent symmetric BEM system ``A(sigma)``.

The operator blocks of :class:`~biosim.physics.electromag.bem.BEMOperators`
(``N``, ``D``, ``S``) do not depend on the conductivities; the system of
Kybic et al. (2005, IEEE TMI 24:12, eqs. 12-13) weights them by sigma_k,
1/sigma_k or a constant.  For interfaces i (0-based, ``s_N = 0`` outside the
scalp, p_{N-1} = 0)::

    A[V_i, V_i]     = (s_i + s_{i+1}) N_ii          A[V_i, V_{i+1}] = -s_{i+1} N_{i,i+1}
    A[p_i, p_i]     = (1/s_i + 1/s_{i+1}) S_ii      A[p_i, p_{i+1}] = -S_{i,i+1} / s_{i+1}
    A[p_i, V_i]     = -2 D_ii                       A[p_i, V_j]     = D_ij  (j = i +- 1)

and the lower triangle by symmetry, so ``A(sigma) = M0 + sum_k sigma_k Ms_k +
sum_k Mi_k / sigma_k``.  :func:`terms` lists this weighting once; every
operation on the system is a loop over it:

* :func:`blocks`: the dense blocks (A_VV, A_Vp, A_pp) for the LAPACK solvers;
* :func:`apply`: ``A(sigma) x`` from the operator blocks, matrix-free;
* :func:`conductivity_derivative`: ``d/dsigma_k lam^T A(sigma) x``;
* :func:`basis` and :func:`dense`: the dense basis (M0, Ms, Mi) and the
  deflated system as a JAX function of sigma, for small meshes.

The potential block is negative semi-definite with the constant potential as
null space (the pure Neumann problem); it is removed by deflation,
``A_VV <- A_VV - c e e^T`` with e the all-ones vector over all potential
unknowns and ``c = mean |diag A_VV| / n_V`` (:func:`deflation_constant`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Term:
    """One conductivity-weighted operator block of the system.

    The block ``matrix`` sits at rows ``row`` and columns ``col`` of ``A``, each
    ``(kind, surface)`` with kind "V" (potential) or "p" (normal current); with
    ``mirror`` its transpose also sits at (``col``, ``row``).  Its weight is
    ``sum_k w s_k`` over ``s`` plus ``sum_k w / s_k`` over ``inv`` plus
    ``const``, each of ``s`` and ``inv`` a tuple of (k, w) pairs.
    """

    matrix: np.ndarray
    row: tuple
    col: tuple
    mirror: bool = False
    s: tuple = ()
    inv: tuple = ()
    const: float = 0.0

    def weight(self, s, inv, const=1.0):
        """The block's factor for conductivities ``s`` and inverses ``inv``
        (each of length N + 1, the outside last) and ``const`` times the
        conductivity-free part."""
        c = 0.0
        for k, w in self.s:
            c += w * s[k]
        for k, w in self.inv:
            c += w * inv[k]
        if self.const:
            c += self.const * const
        return c


def terms(ops):
    """The blocks of ``A(sigma)`` for the operators ``ops`` (a
    :class:`~biosim.physics.electromag.bem.BEMOperators`), as :class:`Term`
    objects, in the order every operation accumulates them."""
    n = ops.n_surfaces
    out = []
    for i in range(n):
        out.append(Term(ops.N[(i, i)], ("V", i), ("V", i), s=((i, 1.0), (i + 1, 1.0))))
        if i + 1 < n:
            out.append(Term(ops.N[(i, i + 1)], ("V", i), ("V", i + 1), True, s=((i + 1, -1.0),)))
    for i in range(n - 1):
        out.append(Term(ops.S[(i, i)], ("p", i), ("p", i), inv=((i, 1.0), (i + 1, 1.0))))
        if i + 1 < n - 1:
            out.append(Term(ops.S[(i, i + 1)], ("p", i), ("p", i + 1), True, inv=((i + 1, -1.0),)))
    for (i, j), blk in ops.D.items():
        out.append(Term(blk, ("p", i), ("V", j), True, const=-2.0 if i == j else 1.0))
    return out


def _padded(sigma):
    """Conductivities and their inverses with the outside (0) appended."""
    s = [float(x) for x in sigma] + [0.0]
    return s, [1.0 / x for x in s[:-1]] + [0.0]


def _slices(ops):
    """Unknown-vector slice of every ("V", i) and ("p", i)."""
    v_off, p_off = ops.offsets()
    out = {("V", i): slice(int(v_off[i]), int(v_off[i + 1])) for i in range(ops.n_surfaces)}
    out.update(
        {("p", i): slice(int(p_off[i]), int(p_off[i + 1])) for i in range(ops.n_surfaces - 1)}
    )
    return out


def deflation_constant(ops, sigma):
    """The deflation constant ``c = mean |diag A_VV| / n_V`` of ``A(sigma)``
    (float64, from the operator blocks)."""
    s, inv = _padded(sigma)
    diag = np.concatenate(
        [
            t.weight(s, inv) * np.diag(t.matrix)
            for t in terms(ops)
            if t.row == t.col and t.row[0] == "V"
        ]
    )
    return float(_mean_abs_over_size(diag))


def _mean_abs_over_size(diag):
    xp = np if isinstance(diag, np.ndarray) else jnp
    return xp.mean(xp.abs(diag)) / diag.shape[0]


def _assemble(ops, s, inv, const, dtype=np.float64):
    """(A_VV, A_Vp, A_pp) for conductivities ``s`` (with s_N = 0 outside),
    inverse conductivities ``inv`` and a factor ``const`` on the
    conductivity-free blocks; linear in (s, inv, const).

    A_VV and A_pp are Fortran-ordered and A_Vp C-ordered (so that A_pV =
    A_Vp.T is Fortran-ordered): LAPACK then factors them in place.  Every
    sub-block is written once, scaled straight into its place (no temporaries
    of the operators' size)."""
    v_off, p_off = ops.offsets()
    n_v, n_p = int(v_off[-1]), int(p_off[-1] - p_off[0])
    sl = _slices(ops)
    out = {
        ("V", "V"): np.zeros((n_v, n_v), dtype, order="F"),
        ("V", "p"): np.zeros((n_v, n_p), dtype),
        ("p", "p"): np.zeros((n_p, n_p), dtype, order="F"),
    }

    def put(row, col, blk, coef):
        if (row[0], col[0]) == ("p", "V"):
            return  # the lower triangle A_pV = A_Vp^T is not stored
        r, c = sl[row], sl[col]
        if row[0] == "p":
            r = slice(r.start - n_v, r.stop - n_v)
        if col[0] == "p":
            c = slice(c.start - n_v, c.stop - n_v)
        np.multiply(blk, coef, out=out[(row[0], col[0])][r, c], casting="same_kind")

    for t in terms(ops):
        coef = t.weight(s, inv, const)
        put(t.row, t.col, t.matrix, coef)
        if t.mirror:
            put(t.col, t.row, t.matrix.T, coef)
    return out[("V", "V")], out[("V", "p")], out[("p", "p")]


def blocks(ops, sigma, dtype=np.float64, deflation=0.0):
    """Blocks (A_VV, A_Vp, A_pp) of ``A(sigma)`` as numpy arrays of ``dtype``,
    laid out for in-place LAPACK factorisation (A_VV, A_pp Fortran-ordered,
    A_Vp C-ordered); ``deflation`` c is subtracted from every entry of A_VV
    (``A_VV - c e e^T``)."""
    s, inv = _padded(sigma)
    avv, avp, app = _assemble(ops, s, inv, 1.0, dtype)
    if deflation:
        avv -= avv.dtype.type(deflation)
    return avv, avp, app


def apply(ops, sigma, x, deflation=0.0):
    """``A(sigma) x`` in float64 from the operator blocks, without forming the
    dense matrix; ``deflation`` c subtracts ``c e e^T`` from the V block.
    ``x`` (n_unknowns,) or (n_unknowns, k)."""
    s, inv = _padded(sigma)
    sl = _slices(ops)
    y = np.zeros(np.shape(x), np.result_type(x, np.float64))
    for t in terms(ops):
        coef = t.weight(s, inv)
        r, c = sl[t.row], sl[t.col]
        y[r] += coef * (t.matrix @ x[c])
        if t.mirror:
            y[c] += coef * (t.matrix.T @ x[r])
    if deflation:
        n_v = sum(ops.n_vertices)
        y[:n_v] -= deflation * np.sum(x[:n_v], axis=0)
    return y


def conductivity_derivative(ops, sigma, lam, x):
    """``d/dsigma_k [sum(lam * (A(sigma) x))]`` for every k, (N,), without
    forming ``dA/dsigma``: each conductivity-dependent block enters once
    (``A`` is linear in s_k and 1/s_k).  ``lam``, ``x`` (n_unknowns, k): the
    adjoint and the solution of a solve, for reverse-mode derivatives.  The
    deflation constant is held fixed."""
    n = ops.n_surfaces
    sig = np.asarray(sigma, float)
    sl = _slices(ops)

    def pair(a, blk, b):
        return float(np.sum(a * (blk @ b)))

    d_s = np.zeros(n + 1)  # d/ds_k (s_N = 0 outside is fixed)
    d_inv = np.zeros(n + 1)  # d/d(1/s_k)
    for t in terms(ops):
        if not (t.s or t.inv):
            continue
        r, c = sl[t.row], sl[t.col]
        v = pair(lam[r], t.matrix, x[c])
        if t.mirror:
            v += pair(lam[c], t.matrix.T, x[r])
        for k, w in t.s:
            d_s[k] += w * v
        for k, w in t.inv:
            d_inv[k] += w * v
    return d_s[:n] - d_inv[:n] / sig**2


def basis(ops):
    """``A(sigma) = M0 + sum_k sigma_k Ms[k] + sum_k Mi[k] / sigma_k`` as dense
    numpy arrays (M0 (n, n), Ms, Mi (N, n, n)), for differentiable solves on
    small meshes."""
    n = ops.n_surfaces

    def full(s, inv, const):
        avv, avp, app = _assemble(ops, list(s) + [0.0], list(inv) + [0.0], const)
        return np.block([[avv, avp], [avp.T, app]])

    zero = np.zeros(n)
    eye = np.eye(n)
    m0 = full(zero, zero, 1.0)
    ms = np.stack([full(eye[k], zero, 0.0) for k in range(n)])
    mi = np.stack([full(zero, eye[k], 0.0) for k in range(n)])
    return m0, ms, mi


def dense(ops, sigma):
    """The deflated ``A(sigma)`` as a dense JAX array, differentiable in
    ``sigma`` (N,) in any mode (the deflation constant is held fixed); 2N + 1
    dense matrices of the system's size, so small meshes only."""
    m0, ms, mi = basis(ops)
    n_v = sum(ops.n_vertices)
    a = (
        jnp.asarray(m0)
        + jnp.tensordot(sigma, jnp.asarray(ms), 1)
        + jnp.tensordot(1.0 / sigma, jnp.asarray(mi), 1)
    )
    c = jax.lax.stop_gradient(_mean_abs_over_size(jnp.diag(a)[:n_v]))
    return a.at[:n_v, :n_v].add(-c)
