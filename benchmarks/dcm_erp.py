"""DCM for ERPs and the joint EEG-fMRI DCM: delays, inversion time, recovery.

Cases
-----
1. Neural mass delays (3 sources): error of the exact-delay integrator
   (RK4 + cubic Hermite history) at h = 2, 1, 0.5 ms against h = 0.125 ms, and
   the difference between SPM's first-order delay operator (``spm_fx_erp``)
   or no delays and the exact delayed responses; time per forward run.
2. ERP DCM, 3 sources (V1 -> V5, V1 -> IPS forward, backward returns, trial
   2 modulating V1 -> V5 and V5 -> V1) x 2 trial types x 64 electrodes,
   64 samples at 4 ms, 5 % white sensor noise: compile time, wall time after
   compilation, iterations, recovery of B and A over a few noise seeds; and
   the same with the dipole gains known (tight prior), where A becomes
   identifiable.
3. Joint EEG-fMRI DCM on the same network with a 128-scan event-related
   session (TR 2 s, 60 trials): inversion time, recovery of B and of the
   per-trial hemodynamic drive.

No external anchor runs here: SPM12 (MATLAB/Octave) is not installed in this
session, so the ERP model is checked against its own exact-delay reference
and SPM's delay operator is re-implemented for the comparison.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import biosim  # noqa: F401
from biosim.inference.dcm import (
    ERPStructure,
    JointStructure,
    fit_erp,
    fit_joint,
    neuronal_drive,
    region_lead_field,
    simulate_erp,
    simulate_joint,
)
from biosim.physics.neural.neural_mass import ERPParams, gaussian_input, integrate_erp

REGIONS = ["V1-lh", "V5-lh", "IPS-lh"]


def network(n_samples=64):
    n = 3
    f = np.zeros((n, n), bool)
    f[1, 0] = f[2, 0] = True
    b = np.zeros((1, n, n), bool)
    b[0, 1, 0] = b[0, 0, 1] = True
    c = np.zeros((n, 1), bool)
    c[0, 0] = True
    return ERPStructure(
        f,
        f.T,
        np.zeros((n, n), bool),
        b,
        c,
        design=[[0.0], [1.0]],
        dt=0.004,
        n_samples=n_samples,
        n_sub=2,
        onset=0.06,
    )


TRUE = dict(
    A_forward=[[0, 0, 0], [0.3, 0, 0], [-0.2, 0, 0]],
    A_backward=[[0, -0.2, 0.2], [0, 0, 0], [0, 0, 0]],
    B=[[[0, -0.4, 0], [0.6, 0, 0], [0, 0, 0]]],
    C=[[0.2], [0], [0]],
    L=[3.0, 8.0, 8.0],
)


def case_delays():
    f = np.zeros((3, 3))
    f[1, 0] = f[2, 0] = 32.0
    p = ERPParams.spm(f, f.T / 2, np.zeros((3, 3)), [[1.0], [0.0], [0.0]])

    def run(h, mode="exact"):
        n = int(round(0.256 / h))
        u = gaussian_input(jnp.arange(2 * n + 1) * (h / 2), 0.06, 0.016)[:, None]
        return lambda: np.asarray(integrate_erp(p, u, h, n, 1, mode))[..., 8]

    ref = run(1.25e-4)()[7::8]
    scale = np.abs(ref).max(0)
    for h in (2e-3, 1e-3, 5e-4):
        f_run = run(h)
        t0 = time.perf_counter()
        x = f_run()
        t_c = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(5):
            f_run()
        t_r = (time.perf_counter() - t0) / 5
        if h > 1e-3:
            xs, r = x, ref[1::2]  # t = 2, 4, ... ms
        else:
            xs, r = x[int(round(1e-3 / h)) - 1 :: int(round(1e-3 / h))], ref
        err = np.abs(xs - r).max(0) / scale
        print(
            f"delays exact h={h * 1e3:.1f} ms: max error / peak per source "
            f"{np.array2string(err, precision=2)}, compile {t_c:.2f} s, run {t_r * 1e3:.1f} ms"
        )
    exact = run(1e-3)()
    # the same with the shortest exact history (shift register of max delay / h + 2 steps)
    u1 = gaussian_input(jnp.arange(513) * 5e-4, 0.06, 0.016)[:, None]
    win = lambda: np.asarray(integrate_erp(p, u1, 1e-3, 256, 1, "exact", 18))[..., 8]  # noqa: E731
    xw = win()
    t0 = time.perf_counter()
    for _ in range(5):
        win()
    print(
        f"delays exact h=1.0 ms, 18-step history window: max |diff| to whole history "
        f"{np.abs(xw - exact).max():.1e} mV, run {(time.perf_counter() - t0) / 5 * 1e3:.1f} ms"
    )
    for mode in ("operator", "none"):
        x = run(1e-3, mode)()
        rel = np.linalg.norm(x - exact, axis=0) / np.linalg.norm(exact, axis=0)
        peak = (np.argmax(np.abs(x), 0) - np.argmax(np.abs(exact), 0)) * 1.0
        print(
            f"delays {mode:8s} vs exact (h = 1 ms): relative L2 difference per source "
            f"{np.array2string(rel, precision=3)}, peak latency shift {peak} ms"
        )


def case_erp(seeds):
    s = network()
    lf = region_lead_field(REGIONS, n_channels=64)
    truth = s.pack(**TRUE)
    rows = []
    for k, seed in enumerate(seeds):
        _, clean = simulate_erp(s, truth, lf)
        y, _ = simulate_erp(s, truth, lf, noise_std=0.05 * clean.std(), seed=seed)
        t0 = time.perf_counter()
        res = fit_erp(s, y, lf, max_iter=128)
        wall = time.perf_counter() - t0
        bl, sd = res.blocks(), res.posterior_sd()
        rows.append((wall, res.vl.n_iterations, bl, sd))
        print(
            f"ERP DCM 3 src x 2 trials x 64 ch, seed {seed}: "
            f"{'first fit (incl. compile)' if k == 0 else 'fit'} "
            f"{wall:.1f} s, {res.vl.n_iterations} iterations, converged {res.vl.converged}, "
            f"F monotone {bool(np.all(np.diff(res.vl.history) >= 0))}; "
            f"B(V1->V5) {bl['B'][0, 1, 0]:.3f}+-{sd['B'][0, 1, 0]:.3f} (true 0.6), "
            f"B(V5->V1) {bl['B'][0, 0, 1]:.3f}+-{sd['B'][0, 0, 1]:.3f} (true -0.4), "
            f"A_f(V1->V5) {bl['A_forward'][1, 0]:.3f}+-{sd['A_forward'][1, 0]:.3f} (true 0.3), "
            f"A_f(V1->IPS) {bl['A_forward'][2, 0]:.3f}+-{sd['A_forward'][2, 0]:.3f} (true -0.2), "
            f"A_b(V5->V1) {bl['A_backward'][0, 1]:.3f}+-{sd['A_backward'][0, 1]:.3f} (true -0.2)"
        )
    if len(rows) > 1:
        b = np.array([r[2]["B"][0, 1, 0] for r in rows])
        print(
            f"ERP DCM over {len(rows)} seeds: B(V1->V5) bias {b.mean() - 0.6:+.3f}, "
            f"RMSE {np.sqrt(np.mean((b - 0.6) ** 2)):.3f}; mean fit after compile "
            f"{np.mean([r[0] for r in rows[1:]]):.1f} s, "
            f"{np.mean([r[1] for r in rows]):.0f} iterations"
        )
    # dipole gains known (tight prior at the truth): the absolute extrinsic scales are
    # identifiable from the source amplitudes
    mean, var = s.prior()
    idx = np.concatenate([np.zeros(s.n_params - 3, bool), np.ones(3, bool)])
    mean = np.where(idx, truth, mean)
    var = np.where(idx, 1e-6, var)
    _, clean = simulate_erp(s, truth, lf)
    y, _ = simulate_erp(s, truth, lf, noise_std=0.05 * clean.std(), seed=seeds[0])
    t0 = time.perf_counter()
    res = fit_erp(s, y, lf, prior=(mean, var), max_iter=128)
    bl, sd = res.blocks(), res.posterior_sd()
    print(
        f"ERP DCM, gains known: fit {time.perf_counter() - t0:.1f} s, "
        f"{res.vl.n_iterations} iterations; A_f(V1->V5) {bl['A_forward'][1, 0]:.3f}+-"
        f"{sd['A_forward'][1, 0]:.3f} (true 0.3), A_f(V1->IPS) {bl['A_forward'][2, 0]:.3f}+-"
        f"{sd['A_forward'][2, 0]:.3f} (true -0.2), A_b(V5->V1) {bl['A_backward'][0, 1]:.3f}+-"
        f"{sd['A_backward'][0, 1]:.3f} (true -0.2), B(V1->V5) {bl['B'][0, 1, 0]:.3f} (true 0.6)"
    )


def case_joint(seed):
    s = network()
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(0, 250, 60))
    kind = rng.integers(0, 2, 60)
    js = JointStructure(s, (onsets[kind == 0], onsets[kind == 1]), n_scans=128, tr=2.0)
    lf = region_lead_field(REGIONS, n_channels=64)
    truth = js.pack(
        coupling=[0.4, 0.6, 0.5], transit=[0.05, -0.05, 0.0], decay=[0.0, 0.05, -0.05], **TRUE
    )
    _, _, ce, cb = simulate_joint(js, truth, lf)
    ye, yb, _, _ = simulate_joint(
        js, truth, lf, eeg_noise_std=0.05 * ce.std(), bold_snr=5, seed=seed
    )
    t0 = time.perf_counter()
    res = fit_joint(js, ye, lf, yb, max_iter=128)
    wall = time.perf_counter() - t0
    ye2, yb2, _, _ = simulate_joint(
        js, truth, lf, eeg_noise_std=0.05 * ce.std(), bold_snr=5, seed=seed + 100
    )
    t0 = time.perf_counter()
    res2 = fit_joint(js, ye2, lf, yb2, max_iter=128)
    wall2 = time.perf_counter() - t0
    # evaluation cost of the compiled model + Jacobian (one VL iteration's model work)
    from biosim.inference.dcm.joint import _model_for
    from biosim.inference.dcm.variational_laplace import _compiled

    f = _compiled(_model_for(js, 128))
    args = (
        jnp.asarray(res.modes.T @ lf),
        jnp.asarray(js.stimulus()),
        jnp.asarray(res.scale_eeg),
        jnp.asarray(res.scale_bold),
    )
    th = jnp.asarray(res.vl.mean)
    jax.block_until_ready(f(th, *args))
    t0 = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(f(th, *args))
    t_jac = (time.perf_counter() - t0) / 3
    bl, sd = res.blocks(), res.posterior_sd()
    drive = np.asarray(neuronal_drive(res.vl.mean, js))
    drive_t = np.asarray(neuronal_drive(truth, js))
    print(
        f"joint EEG-fMRI DCM 3 src, 2x64 ERP samples x 64 ch + 128 scans, {js.n_params} "
        f"parameters: inversion {wall:.1f} s (incl. compile), {wall2:.1f} s after compile "
        f"({res2.vl.n_iterations} it.), {res.vl.n_iterations} "
        f"iterations, converged {res.vl.converged}, F monotone "
        f"{bool(np.all(np.diff(res.vl.history) >= 0))}; model+Jacobian {t_jac * 1e3:.0f} ms; "
        f"B(V1->V5) {bl['B'][0, 1, 0]:.3f}+-{sd['B'][0, 1, 0]:.3f} (true 0.6); drive per trial "
        f"max rel error {np.abs(drive / drive_t - 1).max():.3f}; coupling "
        f"{np.array2string(bl['coupling'], precision=2)} (true [0.4 0.6 0.5]); transit "
        f"{np.array2string(bl['transit'], precision=3)}, decay "
        f"{np.array2string(bl['decay'], precision=3)}"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[])
    a = ap.parse_args()
    if "delays" not in a.skip:
        case_delays()
    if "erp" not in a.skip:
        case_erp(list(range(1, a.seeds + 1)))
    if "joint" not in a.skip:
        case_joint(1)


if __name__ == "__main__":
    main()
