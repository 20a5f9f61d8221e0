"""DCM for fMRI: inversion time, scaling with the number of regions, and
parameter recovery / model selection.

Cases
-----
1. The 3-region, 360-scan attention-to-motion-like model (TR 3.22 s):
   wall time after compilation, iterations and time per VL iteration, for
   biosim's default scheme (exact RK4 at TR/8) and the SPM-style scheme
   (``convention="spm12"``, ``integrator="spm"`` at TR/16).  The SPM12 /
   Octave figure for the same model is measured by
   ``benchmarks/dcm_spm_octave.py`` (it needs Octave and SPM12); pass
   ``--spm-seconds`` to print the ratio against a measured value.
2. Scaling: 10 and 50 regions (a ring with nearest-neighbour forward and
   backward connections, input 1 driving every fifth region, input 2
   modulating two forward connections), 360 scans: one Jacobian evaluation
   by the structured RK4 sensitivities that ``fit_dcm`` uses
   (``predict_bold_and_jacobian``) against ``jax.jacfwd`` through the whole
   integration (time, CPU time, max relative difference), then the fit (time,
   iterations, time per iteration, RMSE of the free A, B, C entries).  With
   ``--jacfwd-fit`` the same fit is also run with ``jax.jacfwd`` Jacobians
   (the scheme before the structured one) and the two posteriors compared.
3. Recovery: SNR 1, 3, 10 (SPM's definition, AR(1) noise 0.2) x 180 and 360
   scans, ``n_reps`` data sets each: bias and RMSE of the free A
   (off-diagonal), B and C entries, coverage of the 90 % posterior interval,
   and the rate at which the true model (attention on V1 -> V5) beats the
   alternative (attention on V5 -> PFC) by free energy.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import biosim  # noqa: F401
from biosim.inference.dcm import (
    DCMStructure,
    fit_dcm,
    invert,
    model_probabilities,
    predict_bold,
    simulate_dcm,
)
from biosim.inference.dcm.fit import _model_for
from biosim.inference.dcm.variational_laplace import _compiled
from biosim.physics.neural import NeuralParams

TR, NM = 3.22, 8


def design(n_scans=360, n_micro=NM, n_inputs=2):
    t = np.arange(n_scans * n_micro) * TR / n_micro
    u = np.zeros((n_scans * n_micro, n_inputs))
    u[:, 0] = (t % 40) < 20
    u[:, 1] = ((t % 80) < 40) * u[:, 0]
    return u


def chain(n, n_micro=NM, **kw):
    """3-region chain (V1 <-> V5 <-> PFC) or longer chain; true model and the alternative."""
    a = np.eye(n, dtype=bool) | np.eye(n, k=-1, dtype=bool) | np.eye(n, k=1, dtype=bool)
    c = np.zeros((n, 2), bool)
    c[0, 0] = True
    b = np.zeros((2, n, n), bool)
    b[1, 1, 0] = True
    b_alt = np.zeros((2, n, n), bool)
    b_alt[1, 2, 1] = True
    A = 0.4 * np.eye(n, k=-1) - 0.1 * np.eye(n, k=1)
    B = np.zeros((2, n, n))
    B[1, 1, 0] = 0.4
    C = np.zeros((n, 2))
    C[0, 0] = 1.0
    s = DCMStructure(a, b, c, tr=TR, n_micro=n_micro, **kw)
    return (
        s,
        DCMStructure(a, b_alt, c, tr=TR, n_micro=n_micro, **kw),
        s.pack(NeuralParams(A, B, C, np.zeros((n, n, n)))),
    )


def ring(n):
    """n regions on a ring: forward (i -> i+1, 0.3 Hz) and backward (-0.05 Hz)
    connections, input 0 drives every fifth region (so every region carries
    signal), input 1 modulates 0 -> 1 and n/2 -> n/2+1."""
    fwd = np.roll(np.eye(n, dtype=bool), 1, axis=0)  # a[i+1, i]
    a = np.eye(n, dtype=bool) | fwd | fwd.T
    b = np.zeros((2, n, n), bool)
    b[1, 1, 0] = b[1, n // 2 + 1, n // 2] = True
    c = np.zeros((n, 2), bool)
    c[::5, 0] = True
    A = 0.3 * fwd - 0.05 * fwd.T
    B = np.where(b, 0.3, 0.0)
    C = np.where(c, 1.0, 0.0)
    s = DCMStructure(a, b, c, tr=TR, n_micro=NM)
    return s, s.pack(NeuralParams(A, B, C, np.zeros((n, n, n))))


def timed_fit(s, y, u, **kw):
    """Fit after compiling the model's prediction + Jacobian; returns (result,
    fit seconds after compilation, compile seconds = first evaluation minus a second one)."""
    f = _compiled(_model_for(s))
    theta0 = jnp.asarray(s.prior()[0])
    t0 = time.perf_counter()
    jax.block_until_ready(f(theta0, jnp.asarray(u)))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(f(theta0, jnp.asarray(u)))
    compile_s = first - (time.perf_counter() - t0)
    t0 = time.perf_counter()
    r = fit_dcm(s, y, u, **kw)
    return r, time.perf_counter() - t0, compile_s


def timed(f, *args, reps=2):
    """(result, min wall s, min CPU s) over reps calls after a compiling call."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(*args))
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(f(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, min(wall), min(cpu), first - min(wall)


def jacfwd_model(structure):
    """The DCM's BOLD model without its structured Jacobian (VL then uses jax.jacfwd)."""
    return lambda theta, u: 100.0 * predict_bold(theta, u, structure)


def scaling(n, u, jacfwd_fit=False):
    s_n, th_n = ring(n)
    y_n, _ = simulate_dcm(s_n, th_n, u, snr=3.0, seed=0)
    uj, thj = jnp.asarray(u), jnp.asarray(s_n.prior()[0])
    (_, jac), t_s, c_s, comp_s = timed(_compiled(_model_for(s_n)), thj, uj)
    plain = jacfwd_model(s_n)
    (_, ref), t_f, c_f, comp_f = timed(_compiled(plain), thj, uj)
    rel = float(jnp.max(jnp.abs(jac - ref)) / jnp.max(jnp.abs(ref)))
    print(
        f"{n} regions ({len(s_n.free_index())} parameters), one Jacobian: structured "
        f"{t_s:.2f} s (CPU {c_s:.2f} s), jax.jacfwd {t_f:.2f} s (CPU {c_f:.2f} s): "
        f"{t_f / t_s:.1f}x (CPU {c_f / c_s:.1f}x), max relative difference {rel:.1e}; "
        f"compile {comp_s:.1f} s vs {comp_f:.1f} s"
    )
    blk = blocks(s_n)
    fits = {}
    for name in ("structured", "jax.jacfwd") if jacfwd_fit else ("structured",):
        c0 = time.process_time()
        if name == "structured":
            r_n, t_n, _ = timed_fit(s_n, y_n, u)  # compiled above
            vl = r_n.vl
        else:
            mean, var = s_n.prior()
            t0 = time.perf_counter()
            vl = invert(plain, y_n, mean, var, args=(uj,))
            t_n = time.perf_counter() - t0
        c_n = time.process_time() - c0
        fits[name] = vl
        err = np.concatenate([vl.mean[blk[k]] - th_n[blk[k]] for k in "ABC"])
        print(
            f"{n} regions, 360 scans, fit with {name} Jacobians: {t_n:.1f} s (CPU {c_n:.1f} s), "
            f"{vl.n_iterations} iterations, {t_n / vl.n_iterations:.2f} s per iteration; "
            f"RMSE of A, B, C {np.sqrt(np.mean(err**2)):.3f}"
            f", F {vl.free_energy:.3f}, converged {vl.converged}"
        )
    if jacfwd_fit:
        a, b = fits["structured"], fits["jax.jacfwd"]
        d = np.max(np.abs(a.mean - b.mean) / np.sqrt(np.diag(b.cov)))
        print(
            f"{n} regions, structured vs jax.jacfwd fit: max |d mean| / SD {d:.1e}, "
            f"dF {a.free_energy - b.free_energy:+.1e}"
        )


def blocks(structure):
    """Positions of the free A (off-diagonal), B and C entries in the free vector."""
    n, m = structure.n_regions, structure.n_inputs
    idx = structure.free_index()
    n_a, n_b, n_c = n * n, m * n * n, n * m
    off = ~np.eye(n, dtype=bool).ravel()
    pos = {"A": [], "B": [], "C": []}
    for k, i in enumerate(idx):
        if i < n_a and off[i]:
            pos["A"].append(k)
        elif n_a <= i < n_a + n_b:
            pos["B"].append(k)
        elif n_a + n_b <= i < n_a + n_b + n_c:
            pos["C"].append(k)
    return {k: np.array(v) for k, v in pos.items()}


def main(
    n_reps=10,
    scans=(180, 360),
    snrs=(1.0, 3.0, 10.0),
    sizes=(10, 50),
    spm_seconds=None,
    jacfwd_fit=False,
):
    u = design()
    # 1. the 3-region model, default and SPM-style
    s, s_alt, theta = chain(3)
    y, _ = simulate_dcm(s, theta, u, snr=3.0, seed=0)
    r, t_fit, t_first = timed_fit(s, y, u)
    ratio = (
        f" -> {spm_seconds / t_fit:.0f}x faster than SPM12/Octave ({spm_seconds:.1f} s)"
        if spm_seconds
        else ""
    )
    print(
        f"3 regions x 360 scans, RK4 TR/8: {t_fit:.2f} s after compilation "
        f"({r.vl.n_iterations} iterations, {t_fit / r.vl.n_iterations * 1e3:.0f} ms each; "
        f"compile {t_first:.1f} s){ratio}"
    )
    u16 = design(n_micro=16)
    s16, _, th16 = chain(
        3, n_micro=16, convention="spm12", integrator="spm", delays=TR / 2, field_strength=1.5
    )
    y16, _ = simulate_dcm(s16.replace(integrator="rk4", substeps=4), th16, u16, snr=3.0, seed=0)
    y16 = y16 - y16.mean(0)
    r, t_fit, t_first = timed_fit(s16, y16, u16, confounds=np.ones((360, 1)), max_iter=128)
    ratio = f" -> {spm_seconds / t_fit:.0f}x" if spm_seconds else ""
    print(
        f"3 regions x 360 scans, SPM-style (bilinear reduction, TR/16, confound): {t_fit:.2f} s "
        f"({r.vl.n_iterations} iterations, {t_fit / r.vl.n_iterations * 1e3:.0f} ms each; "
        f"compile {t_first:.1f} s){ratio}"
    )
    # 2. scaling
    for n in sizes:
        scaling(n, u, jacfwd_fit)
    # 3. recovery and model selection
    if n_reps < 1:
        return
    print(
        f"recovery over {n_reps} data sets per cell (free A off-diagonal / B / C entries; "
        f"cov90 = fraction inside the 90% posterior interval):"
    )
    for n_scans in scans:
        uu = design(n_scans)
        for snr in snrs:
            errs = {k: [] for k in "ABC"}
            cover, wins = [], 0
            for rep in range(n_reps):
                y, _ = simulate_dcm(
                    s, theta, uu, snr=snr, seed=1000 * n_scans + 100 * int(snr) + rep
                )
                r, ra = fit_dcm(s, y, uu), fit_dcm(s_alt, y, uu)
                blk = blocks(s)
                for k in "ABC":
                    errs[k].append(r.vl.mean[blk[k]] - theta[blk[k]])
                neural = np.concatenate([blk[k] for k in "ABC"])
                sd = np.sqrt(np.diag(r.vl.cov))[neural]
                cover.append(np.abs(r.vl.mean[neural] - theta[neural]) < 1.645 * sd)
                wins += model_probabilities([r.free_energy, ra.free_energy])[0] > 0.5
            stats = "; ".join(
                f"{k} bias {np.mean(errs[k]):+.3f} RMSE {np.sqrt(np.mean(np.square(errs[k]))):.3f}"
                for k in "ABC"
            )
            print(
                f"  {n_scans} scans, SNR {snr:4.1f}: {stats}; cov90 {np.mean(cover):.2f}; "
                f"true model selected {wins}/{n_reps} ({100 * wins / n_reps:.0f}%)"
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10, help="data sets per recovery cell (0: skip)")
    ap.add_argument(
        "--spm-seconds",
        type=float,
        default=None,
        help="SPM12/Octave wall time for the 3-region model (from dcm_spm_octave.py)",
    )
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[10, 50],
        help="region counts of the scaling case (none: skip it)",
    )
    ap.add_argument("--quick", action="store_true", help="2 data sets per cell, 10 regions only")
    ap.add_argument(
        "--jacfwd-fit",
        action="store_true",
        help="also fit the scaling models with jax.jacfwd Jacobians (slow: minutes at 50 regions)",
    )
    a = ap.parse_args()
    if a.quick:
        main(n_reps=2, sizes=(10,), spm_seconds=a.spm_seconds, jacfwd_fit=a.jacfwd_fit)
    else:
        main(
            n_reps=a.reps,
            sizes=tuple(a.sizes),
            spm_seconds=a.spm_seconds,
            jacfwd_fit=a.jacfwd_fit,
        )
