"""Fast coil sweeps and placement optimisation by reciprocity.

For a region of interest (ROI) and a direction d, the ROI mean of the induced field,
``F = (1 / V_roi) int_roi d . E dV``, is linear in the coil.  Let ``J_i = d / V_roi`` on
the ROI (an impressed current density) and ``J = J_i - sigma grad u`` the total current it
drives through the head (one FEM solve, :func:`roi_reciprocal_sources`).  Since the TMS
current ``sigma E`` and J are both divergence-free with no normal flux, the reciprocity
theorem gives (e.g. Gomez et al. 2020, Brain Stimul. 13:1205, the auxiliary dipole method)::

    F = int J_i . E = -dI/dt int J . A_coil dV = -dI/dt sum_k m_k . B_J(r_k)

with B_J the free-space magnetic field of J at the coil dipoles r_k (moments m_k).  The
identity holds for the discrete FEM solution too, so ``F`` equals the ROI mean of the
direct FEM field.  J is reduced to current dipoles (one per element, or summed in cubic
bins); B_J is evaluated directly (differentiable, for optimisation,
:func:`reciprocal_roi_field`) or tabulated once on a regular grid around the scalp and
interpolated with tricubic Catmull-Rom weights for sweeps of many positions x orientations
(:class:`SweepGrid`, :func:`sweep_roi_field`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ..._core.pytree import pytree_dataclass
from ..fem import divergence_rhs, element_quadrature
from ..fem.assembly import tet_rule_deg2
from .coils import MU0, Coil, CoilPlacement

_ROT_AXES = (1, 2)


@pytree_dataclass
class ReciprocalSources:
    """Current dipoles (A m) of the reciprocal currents of k ROI functionals.

    Parameters
    ----------
    positions : array (s, 3)
        Source (or bin) centres, m.
    moments : array (s, k, 3)
        ``int J dV`` of each functional's total current in each source cell, A m per
        unit ROI field (i.e. divided by V_roi already).
    first_moments : array (s, k, 3, 3)
        ``int J (x - c)^T dV`` about each bin centre c, A m^2 (zero for unbinned
        sources): the quadrupole term that keeps binning accurate.
    """

    positions: jax.Array
    moments: jax.Array
    first_moments: jax.Array


def roi_reciprocal_sources(model, roi, directions=None, bin_size=None):
    """Reciprocal current dipoles of the ROI-mean field components (one FEM solve each).

    Parameters
    ----------
    model : StimulationModel
    roi : bool array (m,) or int array
        ROI elements.
    directions : array (k, 3), optional
        Field directions of the functionals (default: x, y, z, i.e. the ROI-mean vector).
    bin_size : float, optional
        Sum the element dipoles in cubic bins of this size (m) to cut later costs.

    Returns
    -------
    ReciprocalSources
    """
    space = model.space
    m = space.n_elements
    roi = np.asarray(roi)
    mask = np.zeros(m, bool)
    if roi.dtype == bool:
        if roi.shape != (m,):
            raise ParameterError("roi", f"mask of shape {roi.shape}", f"({m},) element mask")
        mask = roi
    else:
        mask[roi.astype(np.int64)] = True
    if not mask.any():
        raise ParameterError("roi", "no elements", "at least one ROI element")
    d = np.eye(3) if directions is None else np.atleast_2d(np.asarray(directions, float))
    if d.ndim != 2 or d.shape[1] != 3 or not np.all(np.isfinite(d)):
        raise ParameterError("directions", f"shape {d.shape}", "(k, 3) finite directions")
    vroi = float(space.volumes[mask].sum())
    ones = np.ones(m)
    rhs = np.zeros((space.n_dofs, len(d)))
    for j, dj in enumerate(d):
        ji = np.where(mask[:, None], dj[None, :] / vroi, 0.0)
        rhs[:, j] = divergence_rhs(space, ones, ji)
    u = model.solver.solve(rhs)  # (n_dofs, k)
    bary, wq = tet_rule_deg2()
    q = element_quadrature(space)  # (m, 4, 3)
    sig = model.sigma
    pos, mom = [], []
    for iq in range(4):
        g = space.basis_gradients(np.arange(m), np.broadcast_to(bary[iq], (m, 4)))
        grad_u = np.einsum("mik,mij->mjk", g, u[space.element_dofs])  # (m, k, 3)
        sgu = (
            sig[:, None, None] * grad_u if sig.ndim == 1 else np.einsum("mab,mjb->mja", sig, grad_u)
        )
        j_tot = np.where(mask[:, None, None], d[None] / vroi, 0.0) - sgu
        pos.append(q[:, iq])
        mom.append(wq[iq] * space.volumes[:, None, None] * j_tot)
    pos = np.concatenate(pos)
    mom = np.concatenate(mom)
    if bin_size is not None:
        return bin_sources(pos, mom, float(bin_size))
    return ReciprocalSources(jnp.asarray(pos), jnp.asarray(mom), jnp.zeros(mom.shape + (3,)))


def bin_sources(pos, mom, h) -> ReciprocalSources:
    """Sum current dipoles (positions (s, 3) m, moments (s, k, 3)) in cubic bins of size
    ``h`` (m), keeping each bin's first moment about its centre (dipole + quadrupole:
    the error of the field at distance d falls like (h / d)^2 beyond the dipole term)."""
    if not h > 0:
        raise ParameterError("bin_size", h, "a positive bin size in m")
    key = np.floor(pos / h).astype(np.int64)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    n = len(cnt)
    c = np.zeros((n, 3))
    np.add.at(c, inv, pos)
    c /= cnt[:, None]
    mm = np.zeros((n,) + mom.shape[1:])
    np.add.at(mm, inv, mom)
    fm = np.zeros((n,) + mom.shape[1:] + (3,))
    np.add.at(fm, inv, mom[..., None] * (pos - c[inv])[:, None, None, :])
    return ReciprocalSources(jnp.asarray(c), jnp.asarray(mm), jnp.asarray(fm))


def magnetic_field(sources: ReciprocalSources, points, batch_size=512):
    """Free-space B (T per unit ROI field functional) of the reciprocal current dipoles
    at points (p, 3) -> (p, k, 3): ``mu0/4pi sum_s q_s x (r - x_s) / |r - x_s|^3``."""
    pts = jnp.asarray(points, float).reshape(-1, 3)
    return _bfield(sources, pts, batch_size)


def _bfield(sources, pts, batch_size=512):
    # B = mu0/4pi sum_s [q x R / R^3 - a / R^3 + 3 (T R) x R / R^5], R = r - c,
    # T = first moment (k, 3, 3), a_k = sum_j T[:, j] x e_j  (Taylor term of q x R / R^3)
    T = sources.first_moments
    eye = jnp.eye(3)
    a = jnp.sum(jnp.cross(jnp.swapaxes(T, -1, -2), eye), axis=-2)  # (s, k, 3)

    def at(r):
        d = r - sources.positions  # (s, 3)
        r2 = jnp.sum(d * d, axis=1)
        inv3 = r2**-1.5
        tr = jnp.einsum("skab,sb->ska", T, d)
        val = inv3[:, None, None] * (jnp.cross(sources.moments, d[:, None, :]) - a)
        val = val + (3 * inv3 / r2)[:, None, None] * jnp.cross(tr, d[:, None, :])
        return (MU0 / (4 * jnp.pi)) * jnp.sum(val, axis=0)

    return jax.lax.map(at, pts, batch_size=batch_size)


def reciprocal_roi_field(
    sources: ReciprocalSources, coil: Coil, placement: CoilPlacement, didt=1.0
):
    """ROI functionals (k,) in V/m for a placed dipole coil, by direct evaluation of
    B_J at the coil dipoles (differentiable in the placement)."""
    if coil.n_dipoles == 0 or coil.n_segments:
        raise ParameterError("coil", coil.name, "a coil made of magnetic dipoles")
    r = coil.dip_pos @ placement.rotation.T + placement.origin
    m = coil.dip_moment @ placement.rotation.T
    b = _bfield(sources, r)  # (n, k, 3)
    return -didt * jnp.einsum("nc,nkc->k", m, b)


@dataclasses.dataclass(frozen=True, eq=False)
class SweepGrid:
    """B_J tabulated on a regular grid: ``values[i, j, l]`` at ``origin + h (i, j, l)``.

    Only the nodes that the interpolation of the requested points needs are computed
    (the others are zero).
    """

    origin: np.ndarray
    spacing: float
    values: jax.Array  # (nx, ny, nz, k, 3)
    n_computed: int

    @classmethod
    def build(cls, sources: ReciprocalSources, points, spacing=0.003, batch_size=512):
        """Tabulate B_J for interpolation at every point of ``points`` (p, 3) in m (e.g.
        the coil dipoles of all placements of a sweep)."""
        pts = np.asarray(points, float).reshape(-1, 3)
        h = float(spacing)
        lo = pts.min(0) - 2 * h
        shape = tuple(np.ceil((pts.max(0) + 3 * h - lo) / h).astype(int) + 1)
        base = np.floor((pts - lo) / h).astype(np.int64) - 1
        flag = np.zeros(shape, bool)
        flag[base[:, 0], base[:, 1], base[:, 2]] = True
        need = np.zeros(shape, bool)
        for a in range(4):
            for b in range(4):
                for c in range(4):
                    need[a:, b:, c:] |= flag[: shape[0] - a, : shape[1] - b, : shape[2] - c]
        ijk = np.argwhere(need)
        xyz = lo + h * ijk
        vals = np.asarray(magnetic_field(sources, xyz, batch_size))
        k = vals.shape[1]
        grid = np.zeros(shape + (k, 3))
        grid[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = vals
        return cls(lo, h, jnp.asarray(grid), len(ijk))

    def interpolate(self, points):
        """B (p, k, 3) at points (p, 3) by tricubic Catmull-Rom interpolation."""
        return _catmull_rom(
            self.values, jnp.asarray(self.origin), self.spacing, jnp.asarray(points, float)
        )


def _cr_weights(f):
    f2, f3 = f * f, f * f * f
    return jnp.stack(
        [
            (-f3 + 2 * f2 - f) / 2,
            (3 * f3 - 5 * f2 + 2) / 2,
            (-3 * f3 + 4 * f2 + f) / 2,
            (f3 - f2) / 2,
        ],
        axis=-1,
    )


def _catmull_rom(values, origin, h, pts):
    t = (pts - origin) / h
    i0 = jnp.floor(t).astype(jnp.int32)
    f = t - i0
    w = _cr_weights(f)  # (p, 3, 4)
    base = i0 - 1
    out = 0.0
    for a in range(4):
        for b in range(4):
            wab = w[:, 0, a] * w[:, 1, b]
            for c in range(4):
                v = values[base[:, 0] + a, base[:, 1] + b, base[:, 2] + c]  # (p, k, 3)
                out = out + (wab * w[:, 2, c])[:, None, None] * v
    return out


def placements_on_scalp(centers, normals, angles, distance=0.0, reference=(0.0, 1.0, 0.0)):
    """Placements for every (scalp point, handle angle): rotation (P, A, 3, 3) and origin
    (P, A, 3), as :func:`biosim.physics.stimulation.place_coil` would build them."""
    c = jnp.asarray(centers, float).reshape(-1, 3)
    n = jnp.asarray(normals, float).reshape(-1, 3)
    n = n / jnp.linalg.norm(n, axis=1, keepdims=True)
    ref = jnp.asarray(reference, float)
    t1 = ref[None] - (n @ ref)[:, None] * n
    t1n = jnp.linalg.norm(t1, axis=1, keepdims=True)
    alt = jnp.cross(n, jnp.array([1.0, 0.0, 0.0]))  # fallback where n is along reference
    t1 = jnp.where(
        t1n > 1e-6, t1 / jnp.maximum(t1n, 1e-12), alt / jnp.linalg.norm(alt, axis=1, keepdims=True)
    )
    t2 = jnp.cross(n, t1)
    ang = jnp.asarray(angles, float)
    y = jnp.cos(ang)[None, :, None] * t1[:, None] + jnp.sin(ang)[None, :, None] * t2[:, None]
    nn = jnp.broadcast_to(n[:, None], y.shape)
    x = jnp.cross(y, nn)
    rot = jnp.stack([x, y, nn], axis=-1)
    origin = jnp.broadcast_to((c + distance * n)[:, None], y.shape)
    return CoilPlacement(rot, origin)


def sweep_points(coil: Coil, placements: CoilPlacement):
    """All coil dipole positions of a batch of placements (P, A, n, 3) (to build the grid)."""
    return (
        jnp.einsum("paij,nj->pani", placements.rotation, coil.dip_pos)
        + placements.origin[:, :, None]
    )


def sweep_roi_field(
    grid: SweepGrid, coil: Coil, placements: CoilPlacement, didt=1.0, batch_size=32
):
    """ROI functionals (P, A, k) in V/m for P positions x A orientations of a dipole coil,
    from the tabulated reciprocal field."""
    if coil.n_dipoles == 0 or coil.n_segments:
        raise ParameterError("coil", coil.name, "a coil made of magnetic dipoles")
    return _sweep(
        grid.values,
        jnp.asarray(grid.origin),
        grid.spacing,
        coil.dip_pos,
        coil.dip_moment,
        placements.rotation,
        placements.origin,
        float(didt),
        int(batch_size),
    )


@jax.jit
def _sweep_one(values, origin, h, dpos, dmom, rot, org, didt):
    # rot (A, 3, 3), org (A, 3)
    r = jnp.einsum("aij,nj->ani", rot, dpos) + org[:, None]
    m = jnp.einsum("aij,nj->ani", rot, dmom)
    a, n = r.shape[:2]
    b = _catmull_rom(values, origin, h, r.reshape(-1, 3)).reshape(a, n, -1, 3)
    return -didt * jnp.einsum("anc,ankc->ak", m, b)


def _sweep(values, origin, h, dpos, dmom, rot, org, didt, batch_size):
    def one(args):
        return _sweep_one(values, origin, h, dpos, dmom, args[0], args[1], didt)

    return jax.lax.map(one, (rot, org), batch_size=batch_size)


def roi_mean_field(field, roi):
    """Direct ROI mean of E (3,) in V/m from a solved TMS field, with the same
    4-point quadrature as the reciprocal functionals (for comparisons)."""
    model = field.model
    space = model.space
    roi = np.asarray(roi)
    mask = roi if roi.dtype == bool else np.isin(np.arange(space.n_elements), roi)
    vol = space.volumes[mask]
    bary, wq = tet_rule_deg2()
    q = element_quadrature(space)[mask]
    ep = field.primary(q.reshape(-1, 3)).reshape(q.shape)
    total = np.einsum("q,m,mqk->k", wq, vol, ep)
    idx = np.flatnonzero(mask)
    for iq in range(4):
        g = space.basis_gradients(idx, np.broadcast_to(bary[iq], (len(idx), 4)))
        grad = np.einsum("mik,mi->mk", g, field.potential[space.element_dofs[idx]])
        total -= wq[iq] * np.einsum("m,mk->k", vol, grad)
    return total / vol.sum()
