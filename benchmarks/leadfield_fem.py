"""FEM lead fields (biosim.physics.electromag.fem_leadfield) on nested spheres.

Cases: the 4-shell sphere of DUNEuro's examples (radii 92/86/80/78 mm: scalp
0.43, skull 0.01, CSF 1.79, brain 0.33 S/m) meshed by
:func:`biosim.geometry.tetmesh.sphere_tet_mesh` at several edge lengths, with
64 EEG electrodes on the scalp; per source model: mesh size, transfer-matrix
time (one solve per electrode), time per source for the lead field of
``--n-sources`` random sources, peak resident memory, and accuracy against the
exact multi-shell series: worst RDM and |1 - MAG| over radial and tangential
dipoles at eccentricities up to 0.95, and at 0.97 / 0.99.
Times are wall clock with the process CPU time beside them (a loaded machine
shows CPU < 2 x wall).  ``--bem``: FEM and biosim's BEM on the same 3-shell sphere (78/86/92 mm,
0.33/0.01/0.43 S/m) as accuracy per second.

Published DUNEuro figures (context, other machines): full subtraction, 360 K
nodes sphere, <= 0.71 % relative error (Drechsler et al. 2009, NeuroImage 44:
1263); localized subtraction about as accurate as full subtraction at a
fraction of its cost per source (Hoeltershinken et al. 2024, SIAM J Sci
Comput); St. Venant and partial integration less accurate near conductivity
jumps (Vorwerk et al. 2019, NeuroImage 199:385).

Run: ``python benchmarks/leadfield_fem.py --h 8,5,4,3 --n-sources 8196``.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import threading
import time

import numpy as np

import biosim  # noqa: F401  (float64)
from biosim.geometry.mesh import nested_spheres
from biosim.geometry.tetmesh import sphere_tet_mesh
from biosim.physics.electromag import EEGSensors, SphereHead, eeg_gain
from biosim.physics.electromag.bem import BEMForward
from biosim.physics.electromag.fem_leadfield import FEMForward
from biosim.physics.electromag.montage import standard_montage

RADII4 = (0.078, 0.080, 0.086, 0.092)
SIGMA4 = (0.33, 1.79, 0.01, 0.43)
TAGS4 = {2: 0.33, 3: 1.79, 4: 0.01, 5: 0.43}
RADII3 = (0.078, 0.086, 0.092)
SIGMA3 = (0.33, 0.01, 0.43)
TAGS3 = {2: 0.33, 4: 0.01, 5: 0.43}
ECC = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)


class PeakRSS:
    """Peak resident memory (GiB) of this process, sampled every 10 ms."""

    def __enter__(self):
        self.peak, self._stop = self._rss(), False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**30

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()


def electrodes(radius):
    e = standard_montage("biosemi64").positions
    c = e.mean(0)
    pos = (e - c) / np.linalg.norm(e - c, axis=1)[:, None] * radius
    return EEGSensors(tuple(f"EEG{i:03d}" for i in range(len(pos))), pos)


def test_dipoles(inner, n_per=3, seed=1):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(len(ECC) * n_per, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    t = np.cross(d, rng.normal(size=d.shape))
    t /= np.linalg.norm(t, axis=1)[:, None]
    ecc = np.repeat(ECC, n_per)
    return ecc, ecc[:, None] * inner * d, d, t


def accuracy(g, ref, ecc, rad, tan):
    """Worst RDM and |1 - MAG| per eccentricity group: (ecc <= 0.95, 0.97, 0.99)."""
    out = []
    for ori in (rad, tan):
        u = np.einsum("csk,sk->cs", g, ori)
        v = np.einsum("csk,sk->cs", ref, ori)
        nu, nv = np.linalg.norm(u, axis=0), np.linalg.norm(v, axis=0)
        out.append((np.linalg.norm(u / nu - v / nv, axis=0), np.abs(1 - nu / nv)))
    rdm = np.maximum(out[0][0], out[1][0])
    mag = np.maximum(out[0][1], out[1][1])
    groups = [ecc <= 0.95 + 1e-9, np.isclose(ecc, 0.97), np.isclose(ecc, 0.99)]
    return [(rdm[m].max(), mag[m].max()) for m in groups]


def random_sources(n, inner, seed=2):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1)[:, None]
    return p * inner * 0.95 * rng.random((n, 1)) ** (1 / 3)


def fem_cases(h, models, n_sources, radii, sigma, tags, order=1):
    eeg = electrodes(radii[-1])
    head = SphereHead.create(radii, sigma)
    ecc, pos, rad, tan = test_dipoles(radii[0])
    ref = np.einsum(
        "ij,jsk->isk", eeg.reference_matrix(), np.asarray(eeg_gain(head, eeg.positions, pos))
    )
    t0 = time.perf_counter()
    mesh = sphere_tet_mesh(radii, edge_length=h)
    t_mesh = time.perf_counter() - t0
    src = random_sources(n_sources, radii[0])
    rows = []
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        base = FEMForward.create(mesh, tags, eeg=eeg, source_model=models[0], order=order)
        t_tr, c_tr = time.perf_counter() - t0, time.process_time() - c0
    for model in models:
        fwd = dataclasses.replace(base, source_model=model)  # same transfer matrix
        with PeakRSS() as mem_src:
            g = np.asarray(fwd.gain(pos))
            t0, c0 = time.perf_counter(), time.process_time()
            fwd.gain(src)
            t_src, c_src = time.perf_counter() - t0, time.process_time() - c0
        peak = max(mem.peak, mem_src.peak)
        acc = accuracy(g, ref, ecc, rad, tan)
        rows.append((model, fwd, t_tr, t_src, peak, acc))
        print(
            f"h {h * 1e3:.1f} mm  P{order}  {mesh.n_nodes:8d} nodes {mesh.n_tets:8d} tets "
            f"(mesh {t_mesh:5.1f} s)  {model:19s} solver {fwd.timings['solver']:6s} "
            f"transfer {t_tr:6.1f} s (CPU {c_tr:6.1f} s)  {n_sources} sources {t_src:6.1f} s "
            f"(CPU {c_src:6.1f} s, {t_src / n_sources * 1e3:6.2f} ms/source)  "
            f"peak {peak:5.2f} GiB  "
            f"ecc<=0.95 RDM {acc[0][0]:.4f} |1-MAG| {acc[0][1]:.4f}  "
            f"0.97: {acc[1][0]:.4f}/{acc[1][1]:.4f}  0.99: {acc[2][0]:.4f}/{acc[2][1]:.4f}",
            flush=True,
        )
    return rows


def bem_case(subdivisions):
    eeg = electrodes(RADII3[-1])
    head = SphereHead.create(RADII3, SIGMA3)
    ecc, pos, rad, tan = test_dipoles(RADII3[0])
    ref = np.einsum(
        "ij,jsk->isk", eeg.reference_matrix(), np.asarray(eeg_gain(head, eeg.positions, pos))
    )
    surfaces = nested_spheres(RADII3, subdivisions)
    t0 = time.perf_counter()
    fwd = BEMForward.create(surfaces, SIGMA3, eeg=eeg)
    g = np.asarray(fwd.gain(pos))
    t = time.perf_counter() - t0
    acc = accuracy(g, ref, ecc, rad, tan)
    print(
        f"BEM 3-shell ico{subdivisions} {3 * len(surfaces[0].vertices)} vertices: build+gain "
        f"{t:6.1f} s  ecc<=0.95 RDM {acc[0][0]:.4f} |1-MAG| {acc[0][1]:.4f}  "
        f"0.97: {acc[1][0]:.4f}/{acc[1][1]:.4f}  0.99: {acc[2][0]:.4f}/{acc[2][1]:.4f}",
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--h", default="8,5", help="edge lengths in mm, comma separated")
    ap.add_argument("--models", default="subtraction,venant,partial_integration")
    ap.add_argument("--n-sources", type=int, default=1000)
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--bem", action="store_true", help="3-shell FEM vs BEM instead")
    args = ap.parse_args()
    hs = [float(x) * 1e-3 for x in args.h.split(",")]
    models = args.models.split(",")
    if args.bem:
        for sub in (3, 4):
            bem_case(sub)
        for h in hs:
            fem_cases(h, models, args.n_sources, RADII3, SIGMA3, TAGS3, args.order)
        return
    for h in hs:
        fem_cases(h, models, args.n_sources, RADII4, SIGMA4, TAGS4, args.order)


if __name__ == "__main__":
    main()
