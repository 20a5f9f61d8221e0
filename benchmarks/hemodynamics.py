"""Balloon-Windkessel BOLD: biosim vs neurolib, same equations, same input.

Problem: 80 regions x 600 s of neural input (block design plus low-pass
noise, piecewise constant on a 0.1 s grid), Friston et al. (2000) constants
and the classic BOLD coefficients (neurolib's model).  Oracle: biosim's RK4 at
h = 1 ms (itself checked against scipy's DOP853 at rtol 1e-11 on a few
regions).  Error = max |BOLD - BOLD_ref| / max |BOLD_ref| over all regions
and 0.1 s samples.

neurolib must live in its own venv (it pins numba/numpy versions):

    python3 -m venv .bench-venv/neurolib && .bench-venv/neurolib/bin/pip install neurolib

Run: ``python benchmarks/hemodynamics.py`` (``--quick`` for 60 s of input).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import biosim  # noqa: F401  (float64)
from biosim.physics.hemodynamics import BalloonParams, BOLDParams, balloon_rhs, simulate_bold

HERE = Path(__file__).resolve().parent
NEUROLIB_PY = HERE.parent / ".bench-venv" / "neurolib" / "bin" / "python"
P = BalloonParams.friston2000()
B = BOLDParams.friston2000()


def make_input(n_regions, duration, dt, seed=0):
    rng = np.random.default_rng(seed)
    n = int(round(duration / dt))
    t = np.arange(n) * dt
    blocks = ((t // 20) % 2 == 1).astype(float)
    weights = rng.uniform(0.05, 0.25, n_regions)
    noise = rng.normal(size=(n, n_regions))
    kernel = np.exp(-np.arange(0, 2.0, dt) / 0.5)
    smooth = np.stack([np.convolve(noise[:, r], kernel)[:n] for r in range(n_regions)], 1)
    smooth *= 0.03 / smooth.std()
    return blocks[:, None] * weights[None, :] + smooth


def time_call(fn, repeats=3):
    out = fn()
    jax.block_until_ready(out)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return out, best


def scipy_check(u, dt, regions):
    from scipy.integrate import solve_ivp

    worst = 0.0
    ref = np.asarray(simulate_bold(u[:, regions], dt, P, B, method="rk4", substeps=100).bold)
    for k, r in enumerate(regions):
        x = np.zeros(4)
        ys = [0.0]
        for j in range(u.shape[0]):
            sol = solve_ivp(
                lambda t, y: np.asarray(balloon_rhs(y, u[j, r], P)),
                (0, dt),
                x,
                method="DOP853",
                rtol=1e-11,
                atol=1e-13,
            )
            x = sol.y[:, -1]
            v, q = np.exp(x[2]), np.exp(x[3])
            ys.append(
                float(0.02 * (7 * 0.34 * (1 - q) + 2 * (1 - q / v) + (2 * 0.34 - 0.2) * (1 - v)))
            )
        worst = max(worst, np.max(np.abs(np.array(ys[:-1]) - ref[:, k])) / np.max(np.abs(ref)))
    return worst


def run_neurolib(u, dt_in, dt_euler):
    if not NEUROLIB_PY.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, u=u.T, dt_input=dt_in, dt_euler=dt_euler)
        subprocess.run(
            [str(NEUROLIB_PY), str(HERE / "_neurolib_bold_runner.py"), str(src), str(dst)],
            check=True,
            env={**os.environ, "PYTHONPATH": ""},
        )
        out = np.load(dst)
        return out["bold"].T, float(out["wall"]), int(out["steps"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    duration = 60.0 if args.quick else 600.0
    dt = 0.1
    n_regions = 80
    u = make_input(n_regions, duration, dt)
    n = u.shape[0]

    ref = np.asarray(simulate_bold(u, dt, P, B, substeps=100).bold)
    # ref[k] is BOLD at t = k dt; compare samples 1..n-1 (the end of each input sample)
    scale = np.max(np.abs(ref))
    print(
        f"# oracle: RK4 h=1 ms; its max deviation from scipy DOP853 (rtol 1e-11) on 3 regions: "
        f"{scipy_check(u[: min(n, 600)], dt, [0, 1, 2]):.1e} (relative, first 60 s)"
    )
    print(f"# problem: {n_regions} regions x {duration:g} s, input on a {dt} s grid")
    print(
        f"{'case':34s} {'rel. error':>11s} {'wall (s)':>10s} {'region-steps/s':>15s} "
        f"{'speed-up':>9s}"
    )

    rows = {}
    for name, method, sub in [
        ("biosim rk4 h=100 ms", "rk4", 1),
        ("biosim rk4 h=50 ms", "rk4", 2),
        ("biosim heun h=10 ms", "heun", 10),
        ("biosim euler h=0.1 ms", "euler", 1000),
    ]:
        f = jax.jit(
            lambda uu, m=method, s=sub: simulate_bold(uu, dt, P, B, method=m, substeps=s).bold
        )
        t0 = time.perf_counter()
        jax.block_until_ready(f(u))
        compile_s = time.perf_counter() - t0
        y, wall = time_call(lambda: f(u), repeats=1 if sub >= 1000 else 3)
        err = np.max(np.abs(np.asarray(y)[1:] - ref[1:])) / scale
        rows[name] = (err, wall)
        steps = n_regions * n * sub
        print(
            f"{name:34s} {err:11.2e} {wall:10.4f} {steps / wall:15.3e} {'':>9s}"
            f"  (compile+first run {compile_s:.2f} s)"
        )

    nl = run_neurolib(u, dt, 1e-4)
    if nl is None:
        print("neurolib: not installed in .bench-venv/neurolib (see module docstring); skipped")
    else:
        y_nl, wall_nl, steps_nl = nl
        err_nl = np.max(np.abs(y_nl[:-1] - ref[1:])) / scale
        print(
            f"{'neurolib euler h=0.1 ms (numba)':34s} {err_nl:11.2e} {wall_nl:10.4f} "
            f"{steps_nl / wall_nl:15.3e}"
        )
        for name, (err, wall) in rows.items():
            print(
                f"  ratio neurolib/{name}: {wall_nl / wall:8.1f}x faster, error "
                f"{err / err_nl:.2e} x neurolib's"
            )

    # throughput at voxel scale
    n_vox = 10_000
    uv = np.tile(u, (1, n_vox // n_regions + 1))[:, :n_vox]
    g = jax.jit(lambda uu: simulate_bold(uu, dt, P, B, tr=2.0).bold)
    jax.block_until_ready(g(uv))
    _, wall_v = time_call(lambda: g(uv), repeats=1)
    print(
        f"biosim rk4 h=100 ms, {n_vox} voxels x {duration:g} s (BOLD at TR 2 s): {wall_v:.3f} s "
        f"({n_vox * n / wall_v:.3e} voxel-steps/s)"
    )


if __name__ == "__main__":
    sys.exit(main())
