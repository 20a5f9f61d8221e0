"""TMS on a 3-layer sphere head: one coil placement (time, memory, accuracy against
Heller & van Hulsteyn) and a reciprocity sweep of positions x orientations.

Usage::

    python benchmarks/stimulation.py [--edge 0.0033] [--positions 1000] [--orientations 36]

``--edge 0.0033`` gives 0.62 M tetrahedra (radii 70/80/90 mm), ``--edge 0.0028`` 0.99 M
(measured: 3.4 GB peak RSS, 5.5 min of CPU for the whole run).  One line per case.
Reference figures (not run here): SimNIBS' auxiliary dipole method (Gomez et al. 2021,
NeuroImage 232:117696) evaluates 2.1 M coil configurations in under 15 minutes on a laptop
after its reciprocal solves; SimNIBS' own sphere test accepts RDM < 0.2.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from biosim.geometry.tetmesh import sphere_tet_mesh
from biosim.physics.fem import tissue_conductivity
from biosim.physics.stimulation import (
    StimulationModel,
    figure8_dipole_coil,
    place_on_sphere,
    sphere_tms_field,
)
from biosim.physics.stimulation.sweep import (
    CoilPlacement,
    SweepGrid,
    bin_sources,
    placements_on_scalp,
    roi_mean_field,
    roi_reciprocal_sources,
    sweep_points,
    sweep_roi_field,
)

RADII = (0.07, 0.08, 0.09)
SIGMA = {2: 0.33, 4: 0.01, 5: 0.43}


def rdm_mag(e, ref):
    rdm = np.linalg.norm(e / np.linalg.norm(e) - ref / np.linalg.norm(ref))
    return rdm, np.log(np.linalg.norm(e) / np.linalg.norm(ref))


def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edge", type=float, default=0.0033)
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--positions", type=int, default=1000)
    ap.add_argument("--orientations", type=int, default=36)
    ap.add_argument("--bin", type=float, default=0.01)
    ap.add_argument("--grid", type=float, default=0.004)
    ap.add_argument("--checks", type=int, default=5)
    a = ap.parse_args()

    t0 = time.perf_counter()
    mesh = sphere_tet_mesh(RADII, edge_length=a.edge)
    t_mesh = time.perf_counter() - t0
    sigma = tissue_conductivity(mesh.labels, SIGMA)
    coil = figure8_dipole_coil(0.035, n_rings=6)
    pl = place_on_sphere(0.3, 0.5, 0.7, 0.006, radius=0.09)
    t0 = time.perf_counter()
    model = StimulationModel(mesh, sigma, order=a.order)
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    f = model.tms(coil, pl, didt=1e6)
    t_solve = time.perf_counter() - t0
    brain = mesh.labels == 2
    pts = mesh.nodes[mesh.tets].mean(axis=1)[brain]
    ref = np.asarray(sphere_tms_field(coil, pts, 1e6, pl))
    r_el, m_el = rdm_mag(f.element_field()[brain], ref)
    t0 = time.perf_counter()
    rec = f.recovered_field_at(pts)
    t_rec = time.perf_counter() - t0
    r_rec, m_rec = rdm_mag(rec, ref)
    print(
        f"placement P{a.order}: {mesh.n_tets} tets, {model.space.n_dofs} dofs, "
        f"{model.solver.method}; mesh {t_mesh:.1f} s, setup {t_setup:.1f} s, "
        f"solve {t_solve:.1f} s, recovery {t_rec:.1f} s, peak RSS {peak_gb():.2f} GB; "
        f"element RDM {r_el:.4f} lnMAG {m_el:+.4f}; recovered RDM {r_rec:.4f} "
        f"lnMAG {m_rec:+.4f}",
        flush=True,
    )

    # sweep: ROI = brain elements within 10 mm of a point 25 mm under the scalp
    cent = mesh.nodes[mesh.tets].mean(axis=1)
    roi = brain & (np.linalg.norm(cent - [0.0, 0.0, 0.065], axis=1) < 0.01)
    t0 = time.perf_counter()
    src = roi_reciprocal_sources(model, roi)
    t_roi = time.perf_counter() - t0
    t0 = time.perf_counter()
    binned = bin_sources(np.asarray(src.positions), np.asarray(src.moments), a.bin)
    rng = np.random.default_rng(0)
    u = rng.uniform(np.cos(0.6), 1.0, a.positions)  # positions on a 0.6 rad cap
    ph = rng.uniform(0, 2 * np.pi, a.positions)
    n = np.stack([np.sqrt(1 - u**2) * np.cos(ph), np.sqrt(1 - u**2) * np.sin(ph), u], 1)
    angles = np.linspace(0, 2 * np.pi, a.orientations, endpoint=False)
    pls = placements_on_scalp(0.09 * n, n, angles, distance=0.006)
    grid = SweepGrid.build(binned, np.asarray(sweep_points(coil, pls)).reshape(-1, 3), a.grid)
    t_grid = time.perf_counter() - t0
    t0 = time.perf_counter()
    F = np.asarray(sweep_roi_field(grid, coil, pls, 1e6))
    t_sweep = time.perf_counter() - t0
    errs = []
    t0 = time.perf_counter()
    for _ in range(a.checks):
        p, o = rng.integers(a.positions), rng.integers(a.orientations)
        placement = CoilPlacement(pls.rotation[p, o], pls.origin[p, o])
        direct = roi_mean_field(model.tms(coil, placement, didt=1e6, check=False), roi)
        errs.append(np.linalg.norm(F[p, o] - direct) / np.linalg.norm(direct))
    t_direct = (time.perf_counter() - t0) / a.checks
    print(
        f"sweep: {a.positions} positions x {a.orientations} orientations = "
        f"{a.positions * a.orientations} placements, {coil.n_dipoles} coil dipoles; "
        f"ROI solves {t_roi:.1f} s (3 solves, {int(roi.sum())} ROI tets); binning + grid "
        f"{t_grid:.1f} s ({len(binned.positions)} bins, {grid.n_computed} grid nodes); "
        f"sweep {t_sweep:.1f} s; vs direct FEM ({a.checks} random placements, "
        f"{t_direct:.1f} s each): max rel. error {max(errs):.4f}; "
        f"peak RSS {peak_gb():.2f} GB",
        flush=True,
    )


if __name__ == "__main__":
    main()
