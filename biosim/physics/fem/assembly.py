"""Function spaces, conductivity tensors and stiffness assembly on tetrahedra.

The conductivity problem ``-div(sigma grad u) = f`` is discretised with
Lagrange elements of order 1 (P1, one unknown per node) or 2 (P2, one per node
and one per edge).  P1 matrices are assembled by the closed-form element
formula ``K_e = vol_e G_e sigma_e G_e^T`` (G_e the constant gradients of the
barycentric coordinates); P2 matrices by scikit-fem (:class:`skfem.ElementTetP2`)
with the conductivity per element passed to the bilinear form.

Meshes are anything with ``nodes`` (n, 3) in m, ``tets`` (m, 4) and ``labels``
(m,) (:class:`biosim.geometry.tetmesh.TetMesh`).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..._core.errors import ParameterError

#: local vertex pairs of the six edges of a tetrahedron (the P2 edge unknowns)
TET_EDGES = np.array([[0, 1], [1, 2], [0, 2], [0, 3], [1, 3], [2, 3]])


def tet_gradients(nodes, tets):
    """Barycentric-coordinate gradients (m, 4, 3) in 1/m and signed volumes (m,) in m^3."""
    x = nodes[tets]  # (m, 4, 3)
    jac = np.stack([x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]], axis=2)
    det = np.linalg.det(jac)
    if np.any(det <= 0):
        bad = int(np.flatnonzero(det <= 0)[0])
        raise ParameterError(
            "mesh.tets", f"element {bad} with volume {det[bad] / 6:.3g} m^3", "positive volumes"
        )
    inv = np.linalg.inv(jac)  # rows: gradients of lambda_1..3
    g = np.empty((len(tets), 4, 3))
    g[:, 1:] = inv
    g[:, 0] = -inv.sum(axis=1)
    return g, det / 6.0


def _check_mesh(mesh):
    for name in ("nodes", "tets"):
        if not hasattr(mesh, name):
            raise ParameterError("mesh", type(mesh).__name__, "a TetMesh (nodes, tets, labels)")
    nodes = np.asarray(mesh.nodes, float)
    tets = np.asarray(mesh.tets, np.int64)
    if nodes.ndim != 2 or nodes.shape[1] != 3 or tets.ndim != 2 or tets.shape[1] != 4:
        raise ParameterError("mesh", f"nodes {nodes.shape}, tets {tets.shape}", "(n, 3), (m, 4)")
    if not np.all(np.isfinite(nodes)):
        raise ParameterError("mesh.nodes", "non-finite coordinates", "finite coordinates in m")
    return nodes, tets


@dataclasses.dataclass(frozen=True, eq=False)
class FEMSpace:
    """Lagrange space of order 1 or 2 on a tetrahedral mesh.

    Parameters
    ----------
    mesh : TetMesh
    order : {1, 2}

    Unknowns: the nodes (0 ... n_nodes-1), then for P2 one per edge
    (``n_nodes + edge index``, edges as in :attr:`edges`).
    """

    mesh: object
    order: int = 1

    def __post_init__(self):
        if self.order not in (1, 2):
            raise ParameterError("order", self.order, "1 (P1) or 2 (P2)")
        nodes, tets = _check_mesh(self.mesh)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "tets", tets)

    @cached_property
    def _geometry(self):
        return tet_gradients(self.nodes, self.tets)

    @property
    def gradients(self):
        """(m, 4, 3) gradients of the barycentric coordinates, 1/m."""
        return self._geometry[0]

    @property
    def volumes(self):
        """(m,) element volumes, m^3."""
        return self._geometry[1]

    @property
    def n_elements(self):
        return len(self.tets)

    @property
    def labels(self):
        lab = getattr(self.mesh, "labels", None)
        return np.zeros(self.n_elements, np.int32) if lab is None else np.asarray(lab)

    @cached_property
    def edges(self):
        """(n_edges, 2) sorted node pairs of the unique edges and (m, 6) element -> edge map."""
        pairs = np.sort(self.tets[:, TET_EDGES].reshape(-1, 2), axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        return uniq, inv.reshape(-1, 6)

    @cached_property
    def centroid_tree(self):
        """k-d tree of the element centroids (for point location)."""
        from scipy.spatial import cKDTree

        return cKDTree(self.nodes[self.tets].mean(axis=1))

    @property
    def n_dofs(self):
        return len(self.nodes) + (len(self.edges[0]) if self.order == 2 else 0)

    @property
    def element_dofs(self):
        """(m, 4) (P1) or (m, 10) (P2: 4 vertices, then the edges of :data:`TET_EDGES`)."""
        if self.order == 1:
            return self.tets
        return np.concatenate([self.tets, len(self.nodes) + self.edges[1]], axis=1)

    @cached_property
    def skfem_basis(self):
        """The scikit-fem basis of this space (dofs renumbered to ours, see :meth:`_skfem_perm`)."""
        import skfem

        m = skfem.MeshTet(self.nodes.T.copy(), self.tets.T.copy())
        elem = skfem.ElementTetP1() if self.order == 1 else skfem.ElementTetP2()
        return skfem.Basis(m, elem, intorder=2 * self.order)

    @cached_property
    def _skfem_perm(self):
        """Index array p with our dof p[k] = scikit-fem dof k."""
        basis = self.skfem_basis
        perm = np.empty(basis.N, np.int64)
        perm[basis.nodal_dofs[0]] = np.arange(len(self.nodes))
        if self.order == 2:
            sk_edges = np.sort(basis.mesh.edges.T, axis=1)
            ours = edge_index(self.edges[0], sk_edges, len(self.nodes))
            perm[basis.edge_dofs[0]] = len(self.nodes) + ours
        return perm

    def basis_gradients(self, elements, bary):
        """Gradients (p, k, 3) of the k local basis functions at points given by
        their element (p,) and barycentric coordinates (p, 4)."""
        g = self.gradients[elements]  # (p, 4, 3)
        if self.order == 1:
            return g
        lam = np.asarray(bary)
        vert = (4.0 * lam - 1.0)[:, :, None] * g
        a, b = TET_EDGES[:, 0], TET_EDGES[:, 1]
        edge = 4.0 * (lam[:, a, None] * g[:, b] + lam[:, b, None] * g[:, a])
        return np.concatenate([vert, edge], axis=1)

    def basis_values(self, bary):
        """Values (p, k) of the local basis functions at barycentric coordinates (p, 4)."""
        lam = np.asarray(bary)
        if self.order == 1:
            return lam
        a, b = TET_EDGES[:, 0], TET_EDGES[:, 1]
        return np.concatenate([lam * (2 * lam - 1), 4 * lam[:, a] * lam[:, b]], axis=1)


def edge_index(sorted_pairs, query, n):
    """Row of each query pair (q, 2) in the lexicographically sorted unique pairs."""
    key = sorted_pairs[:, 0] * n + sorted_pairs[:, 1]
    q = query[:, 0] * n + query[:, 1]
    idx = np.searchsorted(key, q)
    if np.any(idx >= len(key)) or np.any(key[np.minimum(idx, len(key) - 1)] != q):
        raise ParameterError("edges", "pair not in mesh", "edges of the mesh")
    return idx


def check_conductivity(space: FEMSpace, sigma):
    """Per-element conductivity as float array (m,) or (m, 3, 3) in S/m, checked."""
    s = np.asarray(sigma, float)
    m = space.n_elements
    if s.shape not in ((m,), (m, 3, 3)):
        raise ParameterError("sigma", f"shape {s.shape}", f"({m},) or ({m}, 3, 3) in S/m")
    if not np.all(np.isfinite(s)):
        raise ParameterError("sigma", "non-finite values", "finite conductivities in S/m")
    if s.ndim == 1:
        if np.any(s <= 0):
            bad = int(np.flatnonzero(s <= 0)[0])
            raise ParameterError("sigma", f"{s[bad]} at element {bad}", "> 0 S/m")
    else:
        if not np.allclose(s, np.swapaxes(s, 1, 2), rtol=1e-10, atol=1e-14):
            raise ParameterError("sigma", "non-symmetric tensors", "symmetric (m, 3, 3)")
        ev = np.linalg.eigvalsh(s)
        if np.any(ev[:, 0] <= 0):
            bad = int(np.flatnonzero(ev[:, 0] <= 0)[0])
            raise ParameterError("sigma", f"eigenvalue {ev[bad, 0]} at element {bad}", "> 0")
    return s


def tissue_conductivity(labels, conductivities: dict):
    """Per-element conductivity (m,) from ``{tag: S/m}``; every label must be listed."""
    labels = np.asarray(labels)
    out = np.full(labels.shape, np.nan)
    for tag, val in conductivities.items():
        out[labels == tag] = float(val)
    if np.any(np.isnan(out)):
        missing = sorted(set(np.unique(labels[np.isnan(out)]).tolist()))
        raise ParameterError("conductivities", sorted(conductivities), f"values for tags {missing}")
    return out


def _check_tensors(tensors):
    d = np.asarray(tensors, float)
    if d.ndim != 3 or d.shape[1:] != (3, 3) or not np.all(np.isfinite(d)):
        raise ParameterError("tensors", f"shape {d.shape}", "finite (m, 3, 3) diffusion tensors")
    d = 0.5 * (d + np.swapaxes(d, 1, 2))
    ev, vec = np.linalg.eigh(d)
    if np.any(ev <= 0):
        bad = int(np.flatnonzero(np.any(ev <= 0, axis=1))[0])
        raise ParameterError("tensors", f"eigenvalues {ev[bad]} at element {bad}", "positive")
    return ev, vec


def volume_normalized_conductivity(tensors, sigma_iso):
    """Anisotropic conductivity with the volume constraint (Wolters et al. 2006, NeuroImage 30:813).

    ``sigma = sigma_iso * D / (det D)^(1/3)``: the eigenvectors of the diffusion
    tensor D, eigenvalues scaled so that their geometric mean is the isotropic
    conductivity ``sigma_iso`` (S/m, scalar or per element).
    """
    ev, vec = _check_tensors(tensors)
    s = np.broadcast_to(np.asarray(sigma_iso, float), ev.shape[:1])
    lam = s[:, None] * ev / np.cbrt(np.prod(ev, axis=1))[:, None]
    return np.einsum("mij,mj,mkj->mik", vec, lam, vec)


def fixed_ratio_conductivity(tensors, sigma_iso, ratio=10.0):
    """Anisotropic conductivity with a fixed longitudinal:transverse ratio.

    The principal direction of D gets ``sigma_l``, the two others
    ``sigma_t = sigma_l / ratio``, with ``sigma_l sigma_t^2 = sigma_iso^3``
    (volume constraint; Wolters et al. 2006, Rullmann et al. 2009).
    """
    if not ratio >= 1:
        raise ParameterError("ratio", ratio, ">= 1 (longitudinal over transverse)")
    ev, vec = _check_tensors(tensors)
    s = np.broadcast_to(np.asarray(sigma_iso, float), ev.shape[:1])
    sig_t = s / np.cbrt(ratio)
    lam = np.stack([sig_t, sig_t, sig_t * ratio], axis=1)  # eigh: ascending, main axis last
    return np.einsum("mij,mj,mkj->mik", vec, lam, vec)


def _p1_stiffness(space, sigma):
    g, vol = space.gradients, space.volumes
    if sigma.ndim == 1:
        ke = np.einsum("m,mik,mjk->mij", vol * sigma, g, g)
    else:
        ke = np.einsum("m,mik,mkl,mjl->mij", vol, g, sigma, g)
    t = space.tets
    rows = np.repeat(t, 4, axis=1).ravel()
    cols = np.tile(t, (1, 4)).ravel()
    n = space.n_dofs
    return sp.csr_matrix((ke.ravel(), (rows, cols)), shape=(n, n))


def _p2_stiffness(space, sigma):
    import skfem
    from skfem.helpers import dot, grad

    basis = space.skfem_basis
    nq = basis.X.shape[1]

    if sigma.ndim == 1:

        @skfem.BilinearForm
        def form(u, v, w):
            return w.s * dot(grad(u), grad(v))

        k = form.assemble(basis, s=np.repeat(sigma[:, None], nq, axis=1))
    else:
        comps = {
            f"s{i}{j}": np.repeat(sigma[:, i, j][:, None], nq, axis=1)
            for i in range(3)
            for j in range(3)
        }

        @skfem.BilinearForm
        def form(u, v, w):
            gu, gv = grad(u), grad(v)
            return sum(w[f"s{i}{j}"] * gu[j] * gv[i] for i in range(3) for j in range(3))

        k = form.assemble(basis, **comps)
    p = space._skfem_perm
    k = k.tocoo()
    return sp.csr_matrix((k.data, (p[k.row], p[k.col])), shape=k.shape)


def assemble_stiffness(mesh_or_space, sigma, order=1):
    """Stiffness matrix ``K_ij = int sigma grad phi_i . grad phi_j`` (S), CSR (n_dofs, n_dofs).

    Parameters
    ----------
    mesh_or_space : TetMesh or FEMSpace
    sigma : array (m,) or (m, 3, 3)
        Conductivity per element, S/m (isotropic or symmetric positive-definite tensor).
    order : {1, 2}
        Ignored when a :class:`FEMSpace` is given.
    """
    space = as_space(mesh_or_space, order)
    s = check_conductivity(space, sigma)
    return _p1_stiffness(space, s) if space.order == 1 else _p2_stiffness(space, s)


def as_space(mesh_or_space, order=1) -> FEMSpace:
    if isinstance(mesh_or_space, FEMSpace):
        return mesh_or_space
    return FEMSpace(mesh_or_space, order)


def element_products(space: FEMSpace, u, lam, tensor=False):
    """``int_e grad lam . grad u`` per element (m,) — or the outer products
    ``int_e grad lam (x) grad u`` (m, 3, 3) with ``tensor=True`` — summed over
    the columns of u, lam (n_dofs[, k]).  The derivative of ``lam^T K u``
    with respect to the element conductivities."""
    u = np.asarray(u).reshape(space.n_dofs, -1)
    lam = np.asarray(lam).reshape(space.n_dofs, -1)
    dofs = space.element_dofs
    if space.order == 1:
        gu = np.einsum("mik,mic->mck", space.gradients, u[dofs])  # (m, k, 3)
        gl = np.einsum("mik,mic->mck", space.gradients, lam[dofs])
        if tensor:
            return space.volumes[:, None, None] * np.einsum("mca,mcb->mab", gl, gu)
        return space.volumes * np.einsum("mck,mck->m", gl, gu)
    # P2: gradients vary within the element; exact with a degree-2 rule
    bary, w = tet_rule_deg2()
    out = np.zeros((space.n_elements, 3, 3) if tensor else space.n_elements)
    for b, wq in zip(bary, w):
        gb = space.basis_gradients(np.arange(space.n_elements), np.broadcast_to(b, (1, 4)))
        gu = np.einsum("mik,mic->mck", gb, u[dofs])
        gl = np.einsum("mik,mic->mck", gb, lam[dofs])
        if tensor:
            out += wq * space.volumes[:, None, None] * np.einsum("mca,mcb->mab", gl, gu)
        else:
            out += wq * space.volumes * np.einsum("mck,mck->m", gl, gu)
    return out


def tet_rule_deg2():
    """4-point degree-2 rule on the tetrahedron: barycentric points and weights (sum 1)."""
    a, b = 0.5854101966249685, 0.1381966011250105
    pts = np.full((4, 4), b)
    np.fill_diagonal(pts, a)
    return pts, np.full(4, 0.25)
