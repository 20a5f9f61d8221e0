"""EPI acquisition at study scale: wall time and peak memory of MRIScanner.acquire.

A 10-minute whole-brain run, 80 x 80 x 40 voxels (3 mm) x 300 volumes (TR 2 s),
three tissue compartments, 100 regions of sparse region BOLD, with and without
rigid head motion + a susceptibility field map + a fluctuation hook + thermal
noise.  Prints wall time and the peak resident memory (``resource.getrusage``,
the process's high-water mark, so each case runs in its own process).

``anchor`` times the former exact per-slice sum (``epi_kspace``, O(Nx^2 Ny^2) per
slice, JAX) against the fast line model on the same 80 x 80 slices of the phantom
(R2*, field off-resonance) and reports their difference (the fast model neglects
the readout time within a line).

Usage: ``python benchmarks/epi.py [static|full|anchor] [n_volumes] [subvoxels]``
(``subvoxels``: sources per voxel along phase encode, default the scanner's).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import scipy.sparse as sp

from biosim.geometry.motion import random_motion
from biosim.instruments.mri import FieldMap, GradientEchoEPI, MRIScanner, RegionBOLD, TissueMaps

SHAPE = (80, 80, 40)


def phantom():
    x, y, z = (np.arange(n) - n / 2 + 0.5 for n in SHAPE)
    r = np.sqrt((x[:, None, None] / 34) ** 2 + (y[None, :, None] / 38) ** 2 + (z / 18) ** 2)
    brain = r < 1.0
    gm = np.clip(np.where(brain, 1.3 - r, 0.0), 0, 0.7)
    csf = np.where(brain, 0.05, 0.0) + np.where((r > 0.95) & (r < 1.05), 0.6, 0.0)
    wm = np.where(brain, np.clip(1 - gm - csf, 0, 1), 0.0)
    frac = np.stack([gm, wm, csf])
    ones = np.ones((3,) + SHAPE)
    t1 = np.array([1.33, 0.83, 4.0])[:, None, None, None] * ones
    t2 = np.array([0.083, 0.075, 0.5])[:, None, None, None] * ones
    t2s = np.array([0.052, 0.045, 0.4])[:, None, None, None] * ones
    return TissueMaps(frac, t1, t2, t2s, np.zeros(SHAPE)), gm


def regions(gm, n_regions, times, rng):
    vox = np.flatnonzero(gm.ravel() > 0)
    label = rng.integers(0, n_regions, vox.size)
    w = sp.csr_matrix((gm.ravel()[vox], (label, vox)), shape=(n_regions, gm.size))
    frac = 0.01 * np.sin(2 * np.pi * times[:, None] / 40 + rng.uniform(0, 6, n_regions))
    return RegionBOLD(times, frac, w)


def field_map():
    x, y, z = (np.arange(n) - n / 2 + 0.5 for n in SHAPE)
    blob = np.exp(
        -((x[:, None, None] / 10) ** 2 + ((y[None, :, None] - 30) / 8) ** 2 + ((z + 12) / 6) ** 2)
    )
    comp = np.zeros((6,) + SHAPE)
    comp[2] = 3.0 * blob  # ppm, frontal-sinus-like
    comp[0] = comp[1] = -1.5 * blob
    comp[4] = 0.5 * blob
    return FieldMap(comp)


class Fluctuation:
    """A cheap stand-in hook: a fixed spatial pattern times a respiratory sinusoid
    at each slice's time, plus a slow global drift."""

    def __init__(self, rng):
        self.pattern = 0.005 * rng.standard_normal(SHAPE)

    def __call__(self, vols, slice_times):
        resp = np.sin(2 * np.pi * 0.3 * slice_times)  # (n, Z)
        return self.pattern[None] * resp[:, None, None, :] + 1e-5 * slice_times[:, None, None, :]


def anchor(n_slices=4):
    from biosim.physics.mri import image_formation as imf

    tissue, _ = phantom()
    te, esp = 0.03, 5e-4
    m0, _, _, t2s = (a[1] for a in tissue.compartments())  # white matter compartment
    r2s = 1 / t2s
    df = 127.7 * field_map().components[2]  # Hz at 3 T
    zs = range(6, 6 + n_slices)  # through the field blob
    exact = imf.epi_kspace(m0[..., 6], r2s[..., 6], (0.24, 0.24), te, esp, df[..., 6])
    exact.block_until_ready()  # compile
    t0 = time.perf_counter()
    ref = [imf.epi_kspace(m0[..., z], r2s[..., z], (0.24, 0.24), te, esp, df[..., z]) for z in zs]
    ref = np.stack([np.asarray(k) for k in ref])
    t_exact = (time.perf_counter() - t0) / n_slices
    a = np.stack([m0[..., z] * np.exp(-te * (r2s[..., z] + 2j * np.pi * df[..., z])) for z in zs])
    rate = np.stack([r2s[..., z] for z in zs])
    off = np.stack([df[..., z] for z in zs])
    imf.epi_kspace_lines(a, rate, esp, off, dtype=np.complex64)
    t0 = time.perf_counter()
    fast = imf.epi_kspace_lines(a, rate, esp, off, dtype=np.complex64)
    t_fast = (time.perf_counter() - t0) / n_slices
    err = np.linalg.norm(fast - ref) / np.linalg.norm(ref)
    print(
        f"anchor: 80 x 80 slice, exact sum {t_exact * 1e3:.0f} ms, fast lines "
        f"{t_fast * 1e3:.2f} ms ({t_exact / t_fast:.0f}x); relative k-space difference "
        f"{err:.2e} (max |df| {np.abs(off).max():.0f} Hz, bound pi |df| esp = "
        f"{np.pi * np.abs(off).max() * esp:.2e})"
    )


def main(case="full", n_volumes=300, subvoxels=None):
    if case == "anchor":
        return anchor()
    rng = np.random.default_rng(0)
    seq = GradientEchoEPI(
        tr=2.0,
        te=0.03,
        flip_angle=77.0,
        matrix=SHAPE[:2],
        fov=(0.24, 0.24),
        n_slices=SHAPE[2],
        slice_thickness=0.003,
        echo_spacing=5e-4,
        slice_order="interleaved",
    )
    tissue, gm = phantom()
    duration = n_volumes * seq.tr
    rb = regions(gm, 100, np.arange(0, duration + 1.0, 0.5), rng)
    scanner = MRIScanner(field_strength=3.0, sequence=seq, noise_std=0.01, seed=1)
    kw = {} if subvoxels is None else {"subvoxels": subvoxels}
    if case == "full":
        kw |= dict(
            motion=random_motion(duration, 0.5, n_jerks=3, seed=2),
            field=field_map(),
            fluctuation=Fluctuation(rng),
        )
    t0 = time.perf_counter()
    acq = scanner.acquire(tissue, n_volumes=n_volumes, region_bold=rb, **kw)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    out_mib = acq.magnitude.nbytes / 2**20
    print(
        f"{case}, subvoxels {subvoxels or 'default'}: {SHAPE} x {n_volumes} volumes in "
        f"{wall:.1f} s "
        f"({wall / n_volumes * 1e3:.0f} ms/volume); peak RSS {peak:.0f} MiB "
        f"(output array {out_mib:.0f} MiB); mean signal {acq.magnitude.mean():.4f}"
    )


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "full",
        int(sys.argv[2]) if len(sys.argv) > 2 else 300,
        int(sys.argv[3]) if len(sys.argv) > 3 else None,
    )
