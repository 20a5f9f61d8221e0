"""Tetrahedral head meshes: size, build time and quality of biosim's generator.

Cases: DUNEuro's 4-shell sphere (radii 78/80/86/92 mm) and the template head
(inner skull, outer skull, scalp; WM/GM/CSF from the MNI152 atlas) at edge
lengths giving ~10 k to ~1 M tetrahedra.  Per case: nodes, tetrahedra, build
time (s, wall and process CPU -- the CPU time is the steadier figure on a
shared machine -- including the atlas labelling for the head), time of
``check_tet_mesh`` (orientation, quality, conformity), smallest and largest
dihedral angle, share of tetrahedra with a dihedral angle below 10 deg, mean
normalised radius ratio, and the volume error against the exact geometry:
sphere -- the enclosed ball (the mesh is inscribed, error O(h^2)); head --
each compartment against the volume between the template surfaces it
is mapped onto.  No anchor mesher is run (gmsh is GPL, TetGen AGPL; neither
is a dependency).

Usage: ``python benchmarks/tetmesh.py [--quick]`` (quick: the two smallest cases).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from biosim.geometry.tetmesh import check_tet_mesh, sphere_tet_mesh, template_head_tet_mesh

RADII = (0.078, 0.080, 0.086, 0.092)
SPHERE_H = (0.016, 0.008, 0.0037, 0.0029)
HEAD_H = (0.008, 0.0038)


def _report(kind, h, mesh, t_build, t_check, vol_err, cpu_build):
    q = mesh.quality()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{kind:8s} h={h * 1e3:4.1f} mm  nodes={mesh.n_nodes:8d}  tets={mesh.n_tets:8d}  "
        f"build={t_build:6.1f} s (cpu {cpu_build:6.1f} s)  check={t_check:5.1f} s  "
        f"dihedral min/max={q.dihedral_min_deg:4.1f}/{q.dihedral_max_deg:5.1f} deg  "
        f"<10deg={100 * q.fraction_dihedral_below_10deg:5.2f} %  "
        f"radius ratio mean={q.radius_ratio_mean:.3f}  vol err={vol_err}  "
        f"peak RSS={rss:.0f} MB",
        flush=True,
    )


def sphere_case(h):
    t0, c0 = time.perf_counter(), time.process_time()
    m = sphere_tet_mesh(RADII, edge_length=h)
    t1, c1 = time.perf_counter(), time.process_time()
    check_tet_mesh(m)
    t2 = time.perf_counter()
    err = 1 - m.volumes.sum() / (4 / 3 * np.pi * RADII[-1] ** 3)
    _report("sphere", h, m, t1 - t0, t2 - t1, f"{100 * err:.3f} %", c1 - c0)


def head_case(h):
    from biosim.geometry.template_head import template_head

    s = [x.volume for x in template_head(10242)]
    exact = {"brain": s[0], "bone": s[1] - s[0], "scalp": s[2] - s[1]}
    t0, c0 = time.perf_counter(), time.process_time()
    m = template_head_tet_mesh(edge_length=h)
    t1, c1 = time.perf_counter(), time.process_time()
    check_tet_mesh(m)
    t2 = time.perf_counter()
    got = {
        "brain": sum(m.label_volume(t) for t in (1, 2, 3)),
        "bone": m.label_volume(4),
        "scalp": m.label_volume(5),
    }
    err = "/".join(f"{100 * (1 - got[k] / exact[k]):.2f}" for k in exact) + " % (brain/bone/scalp)"
    _report("head", h, m, t1 - t0, t2 - t1, err, c1 - c0)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for h in SPHERE_H[:2] if quick else SPHERE_H:
        sphere_case(h)
    for h in HEAD_H[:1] if quick else HEAD_H:
        head_case(h)
