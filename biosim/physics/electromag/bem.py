"""Symmetric Galerkin BEM forward model for EEG and MEG (Kybic et al. 2005).

Head model: nested closed surfaces S_1 (innermost) ... S_N (scalp) bounding
compartments of conductivity sigma_1 ... sigma_N (sigma_{N+1} = 0 outside).
Unknowns: the potential V_i on every S_i (P1) and the normal current
``p_i = sigma grad V . n`` on S_1 ... S_{N-1} (P0, one value per triangle, as
in Kybic et al.; or P1, one per vertex, with ``flux="p1"``: fewer unknowns,
e.g. 12810 instead of 17926 at 3 x 2562, same accuracy on nested spheres;
p_N = 0).  Taking the Dirichlet and Neumann traces of Green's representation
of V in the two compartments adjacent to each interface and subtracting them
(the jump terms cancel) gives the symmetric system (Kybic et al. 2005, IEEE TMI 24:12,
eqs. 12-13), for every interface i::

    (s_i + s_{i+1}) N_ii V_i - s_i N_{i,i-1} V_{i-1} - s_{i+1} N_{i,i+1} V_{i+1}
        - 2 D*_ii p_i + D*_{i,i-1} p_{i-1} + D*_{i,i+1} p_{i+1}   = <phi, dv/dn>  (i = 1)
    -2 D_ii V_i + D_{i,i-1} V_{i-1} + D_{i,i+1} V_{i+1}
        + (1/s_i + 1/s_{i+1}) S_ii p_i - S_{i,i-1} p_{i-1} / s_i - S_{i,i+1} p_{i+1} / s_{i+1}
                                                               = -<psi, v> / s_1  (i = 1)

with v the potential of the source in an unbounded medium of unit
conductivity; for a dipole q at r0, ``v(x) = q . (x - r0) / (4 pi |x - r0|^3)``.
The operator blocks (:mod:`.bem_operators`) do not depend on the
conductivities, so ``A(sigma) = sum_k f_k(sigma) M_k`` (:mod:`.bem_system`)
and gradients flow through the solve.  The matrix is symmetric
quasi-definite: the V block is negative semi-definite with the constant
potential as null space (the pure Neumann problem), the p block positive
definite.  The null space is removed
by deflation, ``A_VV <- A_VV - c e e^T`` with e the all-ones vector over all
potential unknowns (the solution then has zero mean potential over the
vertices; EEG is referenced afterwards and MEG does not see a constant).
The deflated system is factored by block Cholesky (Cholesky of the p block,
then of the negated Schur complement), about 0.4 of the work of an LU
(:mod:`.bem_solve`, which also differentiates the solve with respect to the
conductivities).

Sensors enter through the adjoint (transfer-matrix) approach: the system is
solved once with the sensor functionals as right-hand sides, ``T = F A^-1``,
and the gain of any source is ``T b(source)``, b being nonzero only on the
innermost surface.  The source terms are exact: ``<psi_a, v>`` and
``<phi_j, dv/dn>`` are ``q . grad_r0`` of the analytic single-layer and
linear double-layer potentials of the triangles at r0 (computed by
forward-mode differentiation), so sources may come arbitrarily close to S_1.

Modules: the operator blocks :mod:`.bem_operators` (curved elements
:mod:`.bem_curved`), the conductivity-weighted system :mod:`.bem_system`, the
solvers :mod:`.bem_solve`, the sensor functionals
:mod:`.bem_sensors`, the source terms :mod:`.bem_sources`; this one holds the
head model's operators and the forward model.

EEG: V_N at each electrode's closest point on the scalp mesh, by Green's
representation in the scalp compartment (default: the integrals of V_N,
V_N-1 and p_N-1 against the analytic layer potentials at the electrode) or
by P1 interpolation (``eeg_readout``).  MEG: Geselowitz (1970),
``B(r) = B0(r) - mu0/(4 pi) sum_i (s_i - s_{i+1}) int_{S_i} V(r') n' x (r - r') / |r - r'|^3
dS'`` with
``B0 = mu0/(4 pi) q x (r - r0) / |r - r0|^3``, integrated with a degree-5 rule on
each triangle, subdivided for triangles close to a coil point, at the coil
integration points of :class:`MEGSensors`.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor, as_completed

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..._core.errors import GeometryError, ParameterError
from ..._core.parallel import n_threads, run_chunks, run_chunks_axis1
from ..._core.precision import require_float64
from ..._core.progress import phase, task
from ..._core.validation import check_finite, is_concrete
from ...geometry.checks import check_head_model, check_points_inside, check_points_outside
from ...geometry.curved import curved_refinement, volume_matched_surface
from ...geometry.mesh import TriangleMesh
from . import bem_curved
from .bem_integrals import triangle_rule
from .bem_operators import (
    curl_matrices,
    double_layer_matrix,
    double_layer_matrix_p1,
    hypersingular_matrix,
    single_layer_matrix,
    single_layer_matrix_p1,
    triangles,
)
from .bem_sensors import (
    EEG_READOUTS,
    closest_points,
    eeg_functional,
    meg_functional,
    meg_surface_functionals,
    primary_meg_gain,
)
from .bem_solve import solve_adjoint, solve_concrete, solve_traced
from .bem_sources import source_pairs_correction, source_terms, source_terms_quad
from .sensors import EEGSensors, MEGSensors


def _gather(futures, desc):
    """Results of the block futures (in submission order), with a bar over blocks done."""
    done = {}
    keys = {fut: k for k, fut in futures.items()}
    with task(desc, total=len(futures), unit="block") as bar:
        for fut in as_completed(keys):
            done[keys[fut]] = fut.result()
            bar.update()
    return {k: done[k] for k in futures}


@dataclasses.dataclass(frozen=True)
class BEMOperators:
    """Conductivity-independent Galerkin blocks of a nested-surface head model.

    ``N[(i, j)]`` (nv_i, nv_j) for j in {i, i+1}; ``D[(i, j)]`` (nt_i, nv_j) for
    i < N-1 (0-based), j in {i-1, i, i+1}; ``S[(i, j)]`` (nt_i, nt_j) for
    i, j < N-1, j in {i, i+1}.
    """

    surfaces: tuple
    N: dict
    D: dict
    S: dict
    flux: str = "p0"
    #: per surface, its :class:`~biosim.geometry.curved.CurvedMesh` when the blocks
    #: were integrated over curved elements (``geometry="curved"``), else None
    curved: tuple | None = None
    #: True when ``surfaces`` are the volume-matched flat surrogates of the
    #: given ones (``geometry="matched"``)
    matched: bool = False

    @property
    def geometry(self):
        if self.curved is not None:
            return "curved"
        return "matched" if self.matched else "flat"

    @property
    def n_surfaces(self):
        return len(self.surfaces)

    @property
    def n_vertices(self):
        return tuple(len(s.vertices) for s in self.surfaces)

    @property
    def n_triangles(self):
        return tuple(len(s.faces) for s in self.surfaces)

    @property
    def n_flux(self):
        """Normal-current unknowns per surface (all but the scalp)."""
        per = self.n_vertices if self.flux == "p1" else self.n_triangles
        return tuple(per[:-1])

    @property
    def n_unknowns(self):
        return sum(self.n_vertices) + sum(self.n_flux)

    @classmethod
    def create(cls, surfaces, min_gap=0.001, check=True, flux="p0", geometry="flat", **quad):
        """Assemble all blocks for ``surfaces`` (inner to outer TriangleMesh, m).

        ``flux`` is the basis of the normal currents: "p0" (per triangle,
        Kybic et al. 2005, the discretisation of OpenMEEG) or "p1" (per
        vertex; the S and D blocks are then P1-P1).

        ``geometry`` chooses the surface the blocks are integrated over:

        * "flat": the mesh's flat triangles.  Triangles inscribed in a curved
          surface bias the lead-field magnitude (EEG MAG about 1.006 on
          3 x 642 nested spheres, 1.0015 on 3 x 2562);
        * "matched": flat triangles whose vertices are moved along their
          normals so that the surface encloses the volume of the smooth
          surface through the mesh
          (:func:`~biosim.geometry.curved.volume_matched_surface`): removes
          that bias where the field is smooth, at the cost of "flat";
        * "curved": curved elements through the same vertices
          (:func:`~biosim.geometry.curved.curved_refinement`: every edge bent
          into the circular arc its vertex normals define, exact on spheres),
          with the same unknowns (:mod:`.bem_curved`): removes the bias also
          near the surfaces, at several times the assembly time of "flat".

        The topography (RDM) is limited by the P1 potentials in all three.

        ``quad`` is passed to the block builders (``near_factor``, ``far_rule``,
        ``near_rule``, ``chunk``).
        """
        require_float64("BEM assembly")
        if flux not in ("p0", "p1"):
            raise ParameterError(
                "flux", flux, "'p0' (one current per triangle) or 'p1' (per vertex)"
            )
        if geometry not in ("flat", "matched", "curved"):
            raise ParameterError(
                "geometry",
                geometry,
                "'flat' (the mesh's triangles), 'matched' (flat "
                "triangles enclosing the smooth surface's volume) or 'curved' (curved elements)",
            )
        surfaces = tuple(surfaces)
        if len(surfaces) < 1:
            raise ParameterError("surfaces", "an empty list", "at least one closed surface")
        for s in surfaces:
            if not isinstance(s, TriangleMesh):
                raise ParameterError(
                    "surfaces", type(s).__name__, "TriangleMesh objects, inner to outer"
                )
        if check:
            check_head_model(surfaces, min_gap)
        if geometry == "curved":
            return cls._create_curved(surfaces, min_gap, check, flux, **quad)
        if geometry == "matched":
            surfaces = tuple(volume_matched_surface(s) for s in surfaces)
            if check:  # still nested with the gap after the (sub-mm) moves
                check_head_model(surfaces, min_gap)
        n = len(surfaces)
        curls = [curl_matrices(s) for s in surfaces]

        def single_and_hypersingular(i, j):
            """S_ij (kept where it is an unknowns' block, else None) and N_ij
            from the same P0 single layer, which is then dropped (memory)."""
            if flux == "p1" and j < n - 1:  # P1 and P0 blocks from one kernel pass
                keep, s_p0 = single_layer_matrix_p1(
                    surfaces[i], surfaces[j], same=i == j, with_p0=True, **quad
                )
            else:
                s_p0 = single_layer_matrix(surfaces[i], surfaces[j], same=i == j, **quad)
                keep = s_p0 if flux == "p0" and j < n - 1 else None
            nb = hypersingular_matrix(s_p0, curls[i], curls[j])
            return keep, (0.5 * (nb + nb.T) if i == j else nb)

        tasks = {
            ("SN", i, j): (single_and_hypersingular, (i, j), {})
            for i in range(n)
            for j in (i, i + 1)
            if j < n
        }
        dl = double_layer_matrix_p1 if flux == "p1" else double_layer_matrix
        for i in range(n - 1):
            for j in (i - 1, i, i + 1):
                if 0 <= j < n:
                    tasks[("D", i, j)] = (dl, (surfaces[i], surfaces[j]), {"same": i == j, **quad})

        # independent blocks run concurrently (XLA releases the GIL).  A pool of its
        # own: the blocks' chunks use the shared one, and nesting tasks in a single
        # pool could deadlock.
        with ThreadPoolExecutor(max_workers=n_threads()) as pool:
            futures = {k: pool.submit(f, *a, **kw) for k, (f, a, kw) in tasks.items()}
            res = _gather(futures, "BEM assembly")
        D = {k[1:]: v for k, v in res.items() if k[0] == "D"}
        S = {k[1:]: v[0] for k, v in res.items() if k[0] == "SN" and v[0] is not None}
        N = {k[1:]: v[1] for k, v in res.items() if k[0] == "SN"}
        return cls(surfaces, N, D, S, flux, matched=geometry == "matched")

    @classmethod
    def _create_curved(cls, surfaces, min_gap, check, flux, bend=True, **quad):
        """The blocks on curved elements (:mod:`.bem_curved`); ``bend=False``
        keeps the sub-triangles flat (the flat surface, integrated like curved
        elements: a check of the machinery)."""
        curved = tuple(curved_refinement(s, curved=bend) for s in surfaces)
        if check:  # the curved surfaces must still be nested with the gap
            check_head_model([c.fine for c in curved], min_gap)
        n = len(surfaces)
        rules = {k: quad.pop(k) for k in ("far_rule", "near_rule", "far_base") if k in quad}
        elems = [bem_curved.CurvedElements(c, **rules) for c in curved]
        p1 = flux == "p1"
        tasks = {}
        for i in range(n):
            for j in (i, i + 1):
                if j < n:
                    tasks[("SN", i, j)] = (
                        bem_curved.single_layer_and_hypersingular,
                        {"same": i == j, "p1": p1 and j < n - 1},
                    )
        for i in range(n - 1):
            for j in (i - 1, i, i + 1):
                if 0 <= j < n:
                    tasks[("D", i, j)] = (bem_curved.double_layer, {"same": i == j, "p1": p1})
        with ThreadPoolExecutor(max_workers=n_threads()) as pool:
            futures = {
                k: pool.submit(f, elems[k[1]], elems[k[2]], **kw, **quad)
                for k, (f, kw) in tasks.items()
            }
            res = _gather(futures, "BEM assembly (curved)")
        S = {k[1:]: v[0] for k, v in res.items() if k[0] == "SN" and k[1] < n - 1 and k[2] < n - 1}
        N = {k[1:]: v[1] for k, v in res.items() if k[0] == "SN"}
        D = {k[1:]: v for k, v in res.items() if k[0] == "D"}
        return cls(surfaces, N, D, S, flux, curved)

    # ------------------------------------------------------------------ system
    def offsets(self):
        """Start index of V_i (i < N) and p_i (i < N-1) in the unknown vector."""
        v_off = np.concatenate([[0], np.cumsum(self.n_vertices)])
        p_off = v_off[-1] + np.concatenate([[0], np.cumsum(self.n_flux)])
        return v_off, p_off


# ---------------------------------------------------------------------- forward
@dataclasses.dataclass(frozen=True)
class BEMForward:
    """BEM forward model implementing the :class:`ForwardModel` interface.

    Build with :meth:`create` (surfaces + conductivities) or
    :meth:`from_operators` (reuse assembled :class:`BEMOperators`, e.g. to
    differentiate with respect to the conductivities).  Channels are EEG
    first, then MEG, as in :class:`SphereForward`.
    """

    operators: BEMOperators
    conductivities: object
    eeg: EEGSensors | None
    meg: MEGSensors | None
    transfer: object  # (n_sensors, n_dof of S_1): T = F A^-1 restricted to S_1

    @classmethod
    def create(
        cls,
        surfaces,
        conductivities,
        eeg=None,
        meg=None,
        min_gap=0.001,
        derivatives="adjoint",
        eeg_readout=None,
        **quad,
    ):
        """Assemble :class:`BEMOperators` for ``surfaces`` (``quad``: ``flux``,
        ``geometry`` and the quadrature options of :meth:`BEMOperators.create`)
        and build the forward model (:meth:`from_operators`)."""
        check_finite("conductivities", conductivities)  # before the assembly, not after
        ops = BEMOperators.create(surfaces, min_gap=min_gap, **quad)
        return cls.from_operators(
            ops, conductivities, eeg, meg, derivatives=derivatives, eeg_readout=eeg_readout
        )

    @classmethod
    def from_operators(
        cls,
        ops: BEMOperators,
        conductivities,
        eeg=None,
        meg=None,
        meg_functionals=None,
        derivatives="adjoint",
        eeg_readout=None,
    ):
        """The forward model of ``ops`` for ``conductivities`` (N,) S/m and the
        sensors.

        ``eeg_readout`` is how an electrode reads the scalp potential
        (:func:`.bem_sensors.eeg_functional`): "representation" (Green's
        representation in the scalp compartment at the electrode, more
        accurate for sources near the surfaces; the default for two or more
        surfaces) or "interpolation" (the P1 interpolant at the electrode, as
        OpenMEEG and MNE-Python; the default, and the only choice, for a
        single surface).

        Traced conductivities (under ``jax.grad``/``jit``) are differentiated
        by ``derivatives``: "adjoint" (default; :func:`.bem_solve.solve_adjoint`,
        the LAPACK factorisation with a reverse-mode rule: any mesh size, the
        memory of a concrete solve, reverse mode only) or "dense"
        (:func:`.bem_solve.solve_traced`: a JAX solve of the dense system,
        forward and reverse mode and higher derivatives, 2N + 1 dense matrices
        of the system's size, so small meshes only).
        """
        if derivatives not in ("adjoint", "dense"):
            raise ParameterError(
                "derivatives",
                derivatives,
                "'adjoint' (reverse mode, any size) or 'dense' (any mode, small meshes)",
            )
        if eeg is None and meg is None:
            raise ParameterError("eeg/meg", None, "at least one sensor set")
        n = ops.n_surfaces
        if eeg_readout is None:
            eeg_readout = "representation" if n > 1 else "interpolation"
        if eeg_readout not in EEG_READOUTS:
            raise ParameterError("eeg_readout", eeg_readout, " or ".join(map(repr, EEG_READOUTS)))
        concrete = is_concrete(conductivities)
        sig = np.asarray(conductivities, float) if concrete else jnp.asarray(conductivities)
        if sig.shape != (n,):
            raise ParameterError("conductivities", f"shape {sig.shape}", f"one per surface ({n},)")
        if concrete:
            check_finite("conductivities", sig)
        if concrete and np.any(sig <= 0):
            raise ParameterError("conductivities", sig.tolist(), "positive values in S/m")
        scalp = ops.surfaces[-1]
        rows = []
        if eeg is not None:
            check_points_outside(ops.surfaces[-2] if n > 1 else scalp, eeg.positions, "electrode")
            _, _, d = closest_points(scalp, eeg.positions)
            far = np.flatnonzero(d > 0.01)
            if far.size:
                raise GeometryError(
                    f"electrode {int(far[0])} is {d[far[0]] * 1e3:.1f} mm from the "
                    f"scalp surface {scalp.name!r} (more than 10 mm): check units and "
                    "coordinate frame"
                )
            f_v, f_p = eeg_functional(ops, eeg.positions, eeg_readout)
        if meg is not None:
            check_points_outside(
                scalp if ops.curved is None else ops.curved[-1].fine,
                meg.points,
                "MEG integration point",
            )
            if meg_functionals is None:
                meg_functionals = meg_surface_functionals(ops, meg)
        xp = np if concrete else jnp
        if eeg is not None:
            rows.append(f_v + f_p / sig[-1] if eeg_readout == "representation" else f_v)
        if meg is not None:
            rows.append(meg_functional(ops, sig, meg_functionals, xp))
        f = xp.concatenate([xp.asarray(r) for r in rows], axis=0)
        if concrete:
            with phase(f"BEM factorisation ({ops.n_unknowns} unknowns)"):
                y = solve_concrete(ops, sig, np.ascontiguousarray(f.T))
        elif derivatives == "adjoint":
            y = solve_adjoint(ops, sig, f.T)
        else:
            y = solve_traced(ops, sig, f.T)
        v_off, p_off = ops.offsets()
        idx = np.concatenate(
            [
                np.arange(v_off[0], v_off[1]),
                np.arange(p_off[0], p_off[1]) if n > 1 else np.zeros(0, int),
            ]
        )
        transfer = jnp.asarray(y[idx].T)
        return cls(ops, sig, eeg, meg, transfer)

    @property
    def channel_names(self):
        return (self.eeg.names if self.eeg else ()) + (self.meg.names if self.meg else ())

    @property
    def channel_kinds(self):
        return (("eeg",) * self.eeg.n_channels if self.eeg else ()) + (
            self.meg.kinds if self.meg else ()
        )

    def _inner_surface(self, expand=True):
        """The surface the source terms are integrated over (the sub-triangles
        of curved elements; the coarse mesh without ``expand``) and the transfer
        matrix on its unknowns (t_v, t_p)."""
        ops = self.operators
        nv = ops.n_vertices[0]
        t_v, t_p = self.transfer[:, :nv], self.transfer[:, nv:]
        if ops.curved is None or not expand:
            return ops.surfaces[0], t_v, t_p
        cm = ops.curved[0]
        flux_map = cm.prolongation if ops.flux == "p1" else cm.aggregation
        if is_concrete(t_v):  # (slices of a concrete transfer are traced under jit)
            expand = lambda t, m: np.asarray((m @ np.asarray(t).T).T)
        else:
            expand = lambda t, m: t @ jnp.asarray(m.toarray()).T
        t_p = expand(t_p, flux_map) if ops.n_surfaces > 1 else t_p
        return cm.fine, expand(t_v, cm.prolongation), t_p

    def _source_rule(self, tri):
        """Far-field rule of the concrete source terms: elements for the exact
        near terms ((nt, 3, 3) triangles, or (nt, 4, 3, 3) sub-triangles of the
        coarse curved elements), points (nt, Q, 3), signed weights with area
        (nt, Q), hat values (Q, 3) and normals (nt, Q, 3).

        Flat: the 7-point rule on every triangle.  Curved: on every coarse
        element the 7-point rule of its flat triangle plus the curvature
        correction of :mod:`.bem_curved` (centroid rule on the four curved
        minus the four flat sub-triangles): 15 points per element against 28
        for the 7-point rule on the sub-triangles."""
        bary, w = triangle_rule("7", 0)
        ops = self.operators
        if ops.curved is None:
            nvec = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            area = 0.5 * np.linalg.norm(nvec, axis=1)
            nrm = np.broadcast_to((nvec / (2 * area[:, None]))[:, None], (len(tri), len(w), 3))
            return tri, np.einsum("qk,tkj->tqj", bary, tri), area[:, None] * w[None], bary, nrm
        cm = ops.curved[0]
        return (cm.child_triangles(),) + bem_curved.smooth_rule(cm)

    def _check_sources(self, positions):
        if is_concrete(positions):
            ops = self.operators
            inner = ops.surfaces[0] if ops.curved is None else ops.curved[0].fine
            check_points_inside(inner, np.asarray(positions), "source")

    def _volume_gain(self, positions, chunk=64, near_factor=6.0):
        """(n_sensors, n_sources, 3): transfer applied to the source terms.

        Concrete positions: the rule of :meth:`_source_rule` on every element
        of the inner surface, replaced by the exact (analytic) terms for
        (source, element) pairs closer than ``near_factor`` element circumradii
        (agreement with the all-exact path ~1e-7 flat, 3e-5 curved on 3 x 642
        spheres).  Under tracing (gradients with respect to positions or
        conductivities): exact terms on every (sub-)triangle."""
        sig1 = self.conductivities[0]
        traced = not is_concrete((positions, self.transfer, sig1))
        # traced: the sub-triangles of curved elements; concrete: the coarse elements
        inner, t_v, t_p = self._inner_surface(expand=traced)
        tri_np = triangles(inner)
        faces_np = np.asarray(inner.faces)
        nv, nt = len(inner.vertices), len(faces_np)
        n = self.operators.n_surfaces
        flux = self.operators.flux
        n_p1 = (nv if flux == "p1" else nt) if n > 1 else 0
        if traced:
            tri, faces = jnp.asarray(tri_np), jnp.asarray(faces_np)
            out = []
            for s in range(0, positions.shape[0], chunk):
                rv, rp = source_terms(tri, faces, nv, positions[s : s + chunk], flux)
                g = jnp.einsum("ej,jck->eck", t_v, rv)
                if n > 1:
                    g = g - jnp.einsum("ej,jck->eck", t_p, rp) / sig1
                out.append(g)
            return jnp.concatenate(out, axis=1)
        pos = np.asarray(positions, float)
        elem, qp, qw, bary, nrm = self._source_rule(tri_np)
        args = [jnp.asarray(x) for x in (qp, qw, bary, nrm, faces_np)]
        tv_np, tp_np = np.asarray(t_v), np.asarray(t_p)
        s1 = float(sig1)

        def one(p):
            rv, rp = source_terms_quad(*args, nv, jnp.asarray(p), flux)
            c = len(p)
            g = tv_np @ np.asarray(rv).reshape(nv, 3 * c)  # BLAS GEMM, not einsum
            if n > 1:
                g -= (tp_np @ np.asarray(rp).reshape(n_p1, 3 * c)) / s1
            return g.reshape(-1, c, 3)

        g = run_chunks_axis1(one, pos, chunk)
        # near (source, triangle) pairs: exact terms
        cent = tri_np.mean(axis=1)
        size = np.max(np.linalg.norm(tri_np - cent[:, None], axis=2), axis=1).max()
        lists = cKDTree(cent).query_ball_point(pos, near_factor * size)
        src = np.repeat(np.arange(len(pos)), [len(x) for x in lists])
        if src.size:
            tt = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
            ddl, dsl = run_chunks(
                lambda *a: source_pairs_correction(*a, flux),
                [
                    elem[tt],
                    qp[tt],
                    qw[tt],
                    np.broadcast_to(bary, (len(tt),) + bary.shape),
                    nrm[tt],
                    pos[src],
                ],
                len(tt),
                512 if elem.ndim == 4 else 2048,
                n_out=2,
            )
            # correction matrix: rows = S_1 unknowns, columns = (source, direction)
            rows = [faces_np[tt, k] for k in range(3)]
            if n > 1:
                rows += [nv + faces_np[tt, k] for k in range(3)] if flux == "p1" else [nv + tt]
            rows = np.concatenate(rows)
            cols = np.concatenate([src] * (len(rows) // len(src)))
            t_all = np.concatenate([tv_np, tp_np], axis=1)
            for d in range(3):
                vals = [ddl[:, k, d] for k in range(3)]
                if n > 1:
                    vals += (
                        [-dsl[:, k, d] / s1 for k in range(3)]
                        if flux == "p1"
                        else [-dsl[:, d] / s1]
                    )
                vals = np.concatenate(vals)
                corr = sp.csr_matrix((vals, (rows, cols)), shape=(nv + n_p1, len(pos)))
                g[:, :, d] += np.asarray((corr.T @ t_all.T).T)
        return jnp.asarray(g)

    def gain(self, positions):
        """Gain (n_channels, n_sources, 3): V/(A m) (referenced as the electrodes
        specify) for EEG, then T/(A m) (T/(m A m) for planar gradiometers) for MEG."""
        positions = jnp.atleast_2d(jnp.asarray(positions, float))
        self._check_sources(positions)
        g = self._volume_gain(positions)
        parts = []
        n_e = self.eeg.n_channels if self.eeg is not None else 0
        if self.eeg is not None:
            parts.append(
                jnp.einsum("ij,jsk->isk", jnp.asarray(self.eeg.reference_matrix()), g[:n_e])
            )
        if self.meg is not None:
            parts.append(g[n_e:] + primary_meg_gain(self.meg, positions))
        return jnp.concatenate(parts, axis=0)

    def eeg_gain(self, positions):
        if self.eeg is None:
            raise ParameterError("eeg", None, "a BEMForward built with EEG sensors")
        return self.gain(positions)[: self.eeg.n_channels]

    def meg_gain(self, positions):
        if self.meg is None:
            raise ParameterError("meg", None, "a BEMForward built with MEG sensors")
        n_e = self.eeg.n_channels if self.eeg is not None else 0
        return self.gain(positions)[n_e:]
