"""Source terms of the symmetric BEM (:mod:`.bem`) for current dipoles in the
innermost compartment: ``<phi_j, dv/dn>`` and ``<psi_a, v>`` on the inner
surface, v being the dipole's potential in an unbounded medium of unit
conductivity, ``v(x) = q . (x - r0) / (4 pi |x - r0|^3)``.  Exact terms are
``q . grad_r0`` of the analytic single-layer and linear double-layer
potentials of the triangles (forward-mode differentiation); a quadrature rule
serves far (source, element) pairs, corrected to the exact terms near.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ...geometry.curved import CHILD_BARY
from .bem_integrals import double_layer_p1, single_layer_p0, single_layer_p1


def _source_terms_one(tri, faces, nv, r0, flux):
    """(nv, 3) and (nt | nv, 3): <phi_j, dv/dn> and <psi_a, v> for unit dipoles
    along x, y, z at r0 (unit conductivity), exact."""
    jdl = jax.jacfwd(lambda r: double_layer_p1(r, tri))(r0)  # (nt, 3k, 3dir)
    # d/dr0 of int phi dG(r0 - y)/dn_y = int phi dn_y [q . grad_r0 G]; v = q . grad_r0 G(x - r0)
    rv = jax.ops.segment_sum(jdl.reshape(-1, 3), faces.ravel(), num_segments=nv)
    if flux == "p1":
        jsl = jax.jacfwd(lambda r: single_layer_p1(r, tri))(r0)  # (nt, 3k, 3dir)
        return rv, jax.ops.segment_sum(jsl.reshape(-1, 3), faces.ravel(), num_segments=nv)
    return rv, jax.jacfwd(lambda r: single_layer_p0(r, tri))(r0)  # (nt, 3dir)


@functools.partial(jax.jit, static_argnames=("nv", "flux"))
def source_terms(tri, faces, nv, positions, flux="p0"):
    """Exact source terms of unit dipoles along x, y, z at ``positions`` (c, 3)
    on the triangles ``tri`` (nt, 3, 3) of the inner surface (``faces``, ``nv``
    vertices): <phi_j, dv/dn> (nv, c, 3) and <psi_a, v> ((nt | nv), c, 3 for
    flux "p0" | "p1"), unit conductivity; differentiable in everything."""
    return jax.vmap(lambda r: _source_terms_one(tri, faces, nv, r, flux), out_axes=(1, 1))(
        positions
    )


def _dipole_kernels(x, nrm, r0):
    """v_d(x) and dv_d/dn(x) of unit dipoles along d at r0 (unit conductivity):
    (..., 3) each; x (..., 3), nrm broadcastable to x."""
    d = x - r0
    inv = jax.lax.rsqrt(jnp.sum(d * d, -1))[..., None]  # rsqrt: cheaper than r2**-1.5
    inv2 = inv * inv
    inv3 = inv2 * inv
    v = d * inv3
    dn = (nrm - 3.0 * d * jnp.sum(nrm * d, -1)[..., None] * inv2) * inv3
    return v / (4 * np.pi), dn / (4 * np.pi)


@functools.partial(jax.jit, static_argnames=("nv", "flux"))
def source_terms_quad(qp, qw, lam, nrm, faces, nv, positions, flux="p0"):
    """Source terms by a rule on every triangle (points qp (nt, Q, 3), weights
    qw (nt, Q), hat values lam (Q, 3), normals nrm (nt, Q, 3)): (nv, c, 3),
    (nt | nv, c, 3)."""
    v, dn = _dipole_kernels(
        qp[:, :, None, :], nrm[:, :, None, :], positions[None, None]
    )  # (nt, Q, c, 3)
    c = positions.shape[0]
    rv_tri = jnp.einsum("tq,qk,tqcd->tkcd", qw, lam, dn)  # (nt, 3, c, 3)
    rv = jax.ops.segment_sum(rv_tri.reshape(-1, c, 3), faces.ravel(), num_segments=nv)
    if flux == "p1":
        rp_tri = jnp.einsum("tq,qk,tqcd->tkcd", qw, lam, v)
        return rv, jax.ops.segment_sum(rp_tri.reshape(-1, c, 3), faces.ravel(), num_segments=nv)
    return rv, jnp.einsum("tq,tqcd->tcd", qw, v)


@functools.partial(jax.jit, static_argnames=("flux",))
def source_pairs_correction(tri, qp, qw, lam, nrm, pos, flux="p0"):
    """Exact minus quadrature source terms for (source, element) pairs:
    (P, 3k, 3d), (P, 3d) (flux "p0") or (P, 3k, 3d) (flux "p1").

    ``tri`` (P, 3, 3) flat triangles, or (P, 4, 3, 3) the sub-triangles of
    curved elements (laid out as :data:`~biosim.geometry.curved.CHILD_BARY`,
    the exact terms summed into the coarse hats); ``nrm`` (P, Q, 3) per point."""
    if tri.ndim == 3:
        sub, child = tri[:, None], jnp.eye(3)[None]
    else:
        sub, child = tri, jnp.asarray(CHILD_BARY)

    def exact(fn, t, r):  # summed over sub-triangles, coarse hats
        jac = jax.vmap(lambda tc: jax.jacfwd(lambda x: fn(x, tc))(r))(t)
        return jnp.einsum("cr...,crk->k...", jac, child) if jac.ndim == 3 else jnp.sum(jac, axis=0)

    exact_dl = jax.vmap(lambda t, r: exact(double_layer_p1, t, r))(sub, pos)
    v, dn = _dipole_kernels(qp, nrm, pos[:, None, :])  # (P, Q, 3)
    if flux == "p1":
        exact_sl = jax.vmap(lambda t, r: exact(single_layer_p1, t, r))(sub, pos)
        approx_sl = jnp.einsum("pq,pqk,pqd->pkd", qw, lam, v)
    else:
        exact_sl = jax.vmap(lambda t, r: exact(single_layer_p0, t, r))(sub, pos)
        approx_sl = jnp.einsum("pq,pqd->pd", qw, v)
    approx_dl = jnp.einsum("pq,pqk,pqd->pkd", qw, lam, dn)
    return exact_dl - approx_dl, exact_sl - approx_sl
