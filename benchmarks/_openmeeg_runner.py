"""Runs an OpenMEEG symmetric-BEM forward inside the OpenMEEG venv for
benchmarks/_bem_anchors.py::run_openmeeg.  Usage: python this.py IN.npz OUT.npz

IN holds ``n_layers``; ``vertices_k`` (m) and ``faces_k`` (outward-oriented)
for k = 0 .. n_layers-1, innermost first; ``conductivities`` (S/m, innermost
first); ``dipoles`` (n, 6): position (m) and moment (A m); ``eeg`` (n_eeg, 3)
electrode positions (m, projected by OpenMEEG onto the outer surface; empty
for none); ``meg_points`` / ``meg_normals`` (P, 3) MEG integration points and
the field component each measures (empty for none).

OUT gets ``eeg_gain`` (n_eeg, n) in V, ``meg_gain`` (P, n) in T (per
integration point, unweighted: the caller sums points into channels),
``t_solution`` (head-matrix assembly + in-place inversion, s), ``t_forward``
(source, sensor and gain matrices, s), ``c_solution`` / ``c_forward`` (the
same stages' process CPU time, s), ``peak_rss_mb`` (the runner's peak
resident memory, ru_maxrss, minus its resident memory once the inputs are
loaded, MiB) and ``version``.

Geometry: nested domains "Brain" (inside surface 0), "Layer1" ..
(between surfaces k-1 and k) and "Air" (outside the last surface, sigma 0),
so any number of nested layers is accepted (OpenMEEG's make_nested_geometry
stops at 3).
"""

import resource
import sys
import time

import numpy as np
import openmeeg as om
from openmeeg._openmeeg_wrapper import OrientedMesh, SimpleDomain


def _rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _geometry(data):
    n = int(data["n_layers"])
    cond = [float(c) for c in data["conductivities"]]
    names = [f"S{k}" for k in range(n)]
    # OpenMEEG's triangles wind the other way round from biosim/MNE's outward
    # convention (MNE's own OpenMEEG bridge swaps two vertices too); with
    # outward winding the EEG comes out with the opposite sign (MEG unchanged)
    meshes = {
        nm: (
            np.ascontiguousarray(data[f"vertices_{k}"], float),
            np.ascontiguousarray(data[f"faces_{k}"][:, ::-1], np.int64),
        )
        for k, nm in enumerate(names)
    }
    interfaces = {nm: [(nm, OrientedMesh.Normal)] for nm in names}
    domains = {"Brain": ([(names[0], SimpleDomain.Inside)], cond[0])}
    for k in range(1, n):
        domains[f"Layer{k}"] = (
            [(names[k - 1], SimpleDomain.Outside), (names[k], SimpleDomain.Inside)],
            cond[k],
        )
    domains["Air"] = ([(names[-1], SimpleDomain.Outside)], 0.0)
    return om.make_geometry(meshes, interfaces, domains)


def main(src, dst):
    data = np.load(src)
    dipoles = np.asfortranarray(data["dipoles"], float)
    eeg, meg_pts, meg_nrm = data["eeg"], data["meg_points"], data["meg_normals"]
    rss0 = _rss_mb()

    t0, c0 = time.perf_counter(), time.process_time()
    geom = _geometry(data)
    hm = om.HeadMat(geom)
    hm.invert()  # dense symmetric (packed), in place
    t_solution, c_solution = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    dip = om.Matrix(dipoles)
    dsm = om.DipSourceMat(geom, dip, "Brain")
    out = {}
    if len(eeg):
        sens = om.make_sensors(np.asarray(eeg, float), geometry=geom)
        h2em = om.Head2EEGMat(geom, sens)
        out["eeg_gain"] = np.array(om.GainEEG(hm, dsm, h2em).array())
    if len(meg_pts):
        sens = om.make_sensors(np.asarray(meg_pts, float), np.asarray(meg_nrm, float))
        h2mm = om.Head2MEGMat(geom, sens)
        ds2mm = om.DipSource2MEGMat(dip, sens)
        out["meg_gain"] = np.array(om.GainMEG(hm, dsm, h2mm, ds2mm).array())
    t_forward, c_forward = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    np.savez(
        dst,
        t_solution=t_solution,
        t_forward=t_forward,
        c_solution=c_solution,
        c_forward=c_forward,
        peak_rss_mb=peak - rss0,
        n_unknowns=hm.nlin(),
        version=om.__version__,
        **out,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
