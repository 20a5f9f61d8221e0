"""Source terms in, fields out: load vectors, gradients and point evaluation.

Sign conventions (``-div(sigma grad u) = -div J_s``, weak form
``int sigma grad u . grad v = int J_s . grad v + int_boundary j_in v``):
:func:`divergence_rhs` is the load of an impressed current density ``J_s``
(for TMS ``J_s = sigma E_primary`` with ``E_primary = -dA/dt``);
:func:`boundary_current_rhs` the load of a current density entering the volume
through boundary faces (TES anodes positive).  The electric field is
``E = -grad u``.
"""

from __future__ import annotations

import numpy as np

from ..._core.errors import ParameterError
from .assembly import as_space, edge_index, tet_rule_deg2


def _dof_values(space, u):
    u = np.asarray(u, float)
    if u.shape[0] != space.n_dofs:
        raise ParameterError("potential", f"shape {u.shape}", f"({space.n_dofs}, ...) nodal values")
    return u


def element_field(mesh, potential, order=1):
    """Gradient of the potential per element (m, 3[, k]) in V/m, at the element centroid
    (constant in P1).  The electric field is its negative."""
    space = as_space(mesh, order)
    u = _dof_values(space, potential)
    bary = np.full((space.n_elements, 4), 0.25)
    g = space.basis_gradients(np.arange(space.n_elements), bary)  # (m, k, 3)
    return np.einsum("mik,mi...->mk...", g, u[space.element_dofs])


def recovered_nodal_field(mesh, potential, order=1):
    """Gradient of the potential at the nodes (n_nodes, 3[, k]) in V/m: the
    volume-weighted average of the element gradients around each node (a
    simple gradient recovery, second-order accurate on smooth meshes; Zienkiewicz & Zhu 1992)."""
    space = as_space(mesh, order)
    ge = element_field(space, potential)
    w = space.volumes
    n = len(space.nodes)
    num = np.zeros((n,) + ge.shape[1:])
    den = np.zeros(n)
    for i in range(4):
        np.add.at(num, space.tets[:, i], w.reshape((-1,) + (1,) * (ge.ndim - 1)) * ge)
        np.add.at(den, space.tets[:, i], w)
    return num / den.reshape((-1,) + (1,) * (ge.ndim - 1))


def divergence_rhs(mesh, sigma, field, order=1):
    """Load ``b_i = int sigma F . grad phi_i`` (A) of an impressed current ``sigma F``.

    Parameters
    ----------
    mesh : TetMesh or FEMSpace
    sigma : array (m,) or (m, 3, 3), S/m
    field : array (m, 3) constant per element, or (m, 4, 3) at the points of
        the 4-point degree-2 rule (:func:`element_quadrature`), V/m
        (for TMS: the primary field ``-dA/dt``).
    """
    space = as_space(mesh, order)
    s = np.asarray(sigma, float)
    f = np.asarray(field, float)
    m = space.n_elements
    if s.shape not in ((m,), (m, 3, 3)):
        raise ParameterError("sigma", f"shape {s.shape}", f"({m},) or ({m}, 3, 3)")
    if f.shape not in ((m, 3), (m, 4, 3)) or not np.all(np.isfinite(f)):
        raise ParameterError("field", f"shape {f.shape}", f"finite ({m}, 3) or ({m}, 4, 3)")
    bary, wq = tet_rule_deg2()
    if f.ndim == 2:
        f = np.repeat(f[:, None], 4, axis=1)
    js = np.einsum("m,mqk->mqk", s, f) if s.ndim == 1 else np.einsum("mkl,mql->mqk", s, f)
    b = np.zeros(space.n_dofs)
    idx = np.arange(m)
    dofs = space.element_dofs
    for q in range(4):
        g = space.basis_gradients(idx, np.broadcast_to(bary[q], (m, 4)))
        contrib = wq[q] * space.volumes[:, None] * np.einsum("mik,mk->mi", g, js[:, q])
        np.add.at(b, dofs.ravel(), contrib.ravel())
    return b


def element_quadrature(mesh):
    """Physical points (m, 4, 3) of the 4-point degree-2 rule of each element
    (weights 1/4 of the volume), where :func:`divergence_rhs` takes field values."""
    space = as_space(mesh)
    bary, _ = tet_rule_deg2()
    return np.einsum("qi,mik->mqk", bary, space.nodes[space.tets])


def boundary_current_rhs(mesh, faces, current_density, order=1):
    """Load (A) of a current density entering through boundary triangles.

    Parameters
    ----------
    mesh : TetMesh or FEMSpace
    faces : int array (f, 3)
        Node indices of the triangles (e.g. under an electrode).
    current_density : float or array (f,)
        Normal current density into the volume, A/m^2 (anode positive); the
        total current is ``sum(current_density * area)``.
    """
    space = as_space(mesh, order)
    faces = np.asarray(faces, np.int64)
    n = len(space.nodes)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= n:
        raise ParameterError("faces", f"shape {faces.shape}", f"(f, 3) node indices < {n}")
    j = np.broadcast_to(np.asarray(current_density, float), (len(faces),))
    if not np.all(np.isfinite(j)):
        raise ParameterError("current_density", "non-finite values", "finite A/m^2")
    x = space.nodes[faces]
    area = 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1)
    b = np.zeros(space.n_dofs)
    if space.order == 1:
        np.add.at(b, faces.ravel(), np.repeat(j * area / 3.0, 3))
    else:  # quadratic trace: vertex functions integrate to 0, edge functions to area/3
        pairs = np.sort(faces[:, [[0, 1], [1, 2], [0, 2]]].reshape(-1, 2), axis=1)
        e = n + edge_index(space.edges[0], pairs, n)
        np.add.at(b, e, np.repeat(j * area / 3.0, 3))
    return b


def locate_points(mesh, points, k=24):
    """Element (p,) and barycentric coordinates (p, 4) of each point; raises
    :class:`ParameterError` naming the first point outside the mesh."""
    space = as_space(mesh)
    pts = np.asarray(points, float).reshape(-1, 3)
    tree = space.centroid_tree
    elem = np.full(len(pts), -1)
    bary = np.zeros((len(pts), 4))
    todo = np.arange(len(pts))
    kk = min(k, space.n_elements)
    while len(todo):
        _, cand = tree.query(pts[todo], k=kk)
        cand = cand.reshape(len(todo), -1)
        x0 = space.nodes[space.tets[cand, 0]]  # (p, k, 3)
        lam = np.einsum("pkij,pkj->pki", space.gradients[cand][:, :, 1:], pts[todo, None] - x0)
        lam = np.concatenate([1 - lam.sum(-1, keepdims=True), lam], axis=-1)
        score = lam.min(axis=-1)
        best = np.argmax(score, axis=1)
        ok = score[np.arange(len(todo)), best] >= -1e-9
        sel = todo[ok]
        elem[sel] = cand[ok, best[ok]]
        bary[sel] = lam[ok, best[ok]]
        todo = todo[~ok]
        if len(todo) and kk >= min(space.n_elements, 4096):
            raise ParameterError("points", f"point {int(todo[0])} at {pts[todo[0]]}", "inside")
        kk = min(4 * kk, space.n_elements)
    return elem, np.clip(bary, 0.0, 1.0) / np.clip(bary, 0.0, 1.0).sum(1, keepdims=True)


def interpolation_matrix(mesh, points, order=1):
    """Sparse (p, n_dofs) matrix of the FEM interpolant at points inside the mesh."""
    import scipy.sparse as sp

    space = as_space(mesh, order)
    elem, bary = locate_points(space, points)
    vals = space.basis_values(bary)
    dofs = space.element_dofs[elem]
    rows = np.repeat(np.arange(len(elem)), dofs.shape[1])
    return sp.csr_matrix((vals.ravel(), (rows, dofs.ravel())), shape=(len(elem), space.n_dofs))


__all__ = [
    "boundary_current_rhs",
    "divergence_rhs",
    "element_field",
    "element_quadrature",
    "interpolation_matrix",
    "locate_points",
    "recovered_nodal_field",
]
