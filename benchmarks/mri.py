"""MRI simulation speed: biosim's JAX Bloch/EPG vs a NumPy isochromat reference.

Cases (one run, same problem for both tools):

1. Bloch simulation of a 2D brain-like phantom (one isochromat per voxel,
   Nx x Ny) acquired with a single-shot GRE-EPI readout (excitation, TE
   wait, prephaser, Nx samples per line, blips), in spin-steps per second.
   Reference: a straightforward NumPy isochromat loop (vectorised over spins,
   Python loop over time).  Both must agree to 1e-9 on the k-space signal.
   KomaMRI's published CPU figure for its 2D brain spiral benchmark is 3.2 s
   on one thread (Castillo-Passi et al. 2023, MRM 89:1527); it is quoted, not
   re-measured here (Julia is not installed).
2. EPG: a 100-echo CPMG train with 130 deg refocusing, echoes per second.
3. Closed-form spoiled-GRE evaluation throughput (voxels per second).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import biosim  # noqa: F401
from biosim._core.units import GAMMA_BAR_PROTON, GAMMA_PROTON
from biosim.physics.mri import bloch, epg
from biosim.physics.mri import signal_equations as se


def phantom(n):
    x = (np.arange(n) - n / 2 + 0.5) / (n / 2)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    r = np.sqrt((xx / 0.85) ** 2 + (yy / 1.0) ** 2)
    m0 = np.where(r < 0.95, 0.8, 0.0) + np.where(r < 0.8, 0.2, 0.0)
    t1 = np.where(r < 0.8, 1.3, 0.85)
    t2 = np.where(r < 0.8, 0.09, 0.07)
    return m0, t1, t2


def epi_sequence(n, fov, te=0.03, dwell=4e-6):
    dk = 1.0 / fov
    g_read = dk / (GAMMA_BAR_PROTON * dwell)  # T/m
    dt, flip, grad = [0.0], [np.deg2rad(90)], [[0, 0, 0]]
    esp = n * dwell
    t_pre = te - (n / 2) * esp
    # prephaser to (-kmax, -kmax) during the wait
    area = (n / 2) * dk / GAMMA_BAR_PROTON
    dt.append(t_pre)
    flip.append(0.0)
    grad.append([-area / t_pre, -area / t_pre, 0])
    for line in range(n):
        sign = 1 if line % 2 == 0 else -1
        for _ in range(n):
            dt.append(dwell)
            flip.append(0.0)
            grad.append([sign * g_read, 0, 0])
        dt.append(1e-6)  # blip
        flip.append(0.0)
        grad.append([-sign * g_read * dwell / 1e-6 * 0, dk / (GAMMA_BAR_PROTON * 1e-6), 0])
    return bloch.make_sequence(np.array(dt), flip=np.array(flip), gradient=np.array(grad))


def numpy_bloch(pos, t1, t2, m0, seq):
    dt, flip, phase, b1, grad = (
        np.asarray(a) for a in (seq.dt, seq.flip, seq.phase, seq.b1, seq.gradient)
    )
    m = np.stack([np.zeros_like(m0), np.zeros_like(m0), m0], 1)
    out = np.empty(dt.shape[0], complex)
    for k in range(dt.shape[0]):
        if flip[k] != 0.0:
            ax = np.array([np.cos(phase[k]), np.sin(phase[k]), 0.0])
            a = -flip[k]
            m = m * np.cos(a) + np.cross(ax, m) * np.sin(a) + np.outer(m @ ax, ax) * (1 - np.cos(a))
        bz = pos @ grad[k]
        ang = -GAMMA_PROTON * bz * dt[k]  # rotation about z (no RF during readout)
        c, s = np.cos(ang), np.sin(ang)
        mx = m[:, 0] * c - m[:, 1] * s
        my = m[:, 0] * s + m[:, 1] * c
        e1, e2 = np.exp(-dt[k] / t1), np.exp(-dt[k] / t2)
        m = np.stack([mx * e2, my * e2, m[:, 2] * e1 + m0 * (1 - e1)], 1)
        out[k] = m[:, 0].sum() + 1j * m[:, 1].sum()
    return out


def best_of(fn, repeats=3):
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    print(f"{'case':52s} {'biosim (s)':>11s} {'numpy (s)':>10s} {'ratio':>7s} {'agreement':>10s}")
    for n in (32, 64):
        fov = 0.22
        m0, t1, t2 = phantom(n)
        x = (np.arange(n) - n // 2) * fov / n
        xx, yy = np.meshgrid(x, x, indexing="ij")
        pos = np.stack([xx.ravel(), yy.ravel(), 0 * xx.ravel()], 1)
        spins = bloch.make_spins(pos, t1.ravel(), t2.ravel(), m0=m0.ravel())
        seq = epi_sequence(n, fov)
        n_steps = int(seq.dt.shape[0])
        t0 = time.perf_counter()
        sig, _ = bloch.simulate(spins, seq)
        jax.block_until_ready(sig)
        compile_s = time.perf_counter() - t0
        t_jax = best_of(lambda: bloch.simulate(spins, seq)[0])
        t0 = time.perf_counter()
        ref = numpy_bloch(pos, t1.ravel(), t2.ravel(), m0.ravel(), seq)
        t_np = time.perf_counter() - t0
        err = np.max(np.abs(np.asarray(sig) - ref)) / np.max(np.abs(ref))
        sps = n * n * n_steps / t_jax

        # event-based path: excitation + prephaser stepwise, each readout line as one block
        def blocked():
            head = bloch.Sequence(*[a[:2] for a in seq])
            sig0, m = bloch.simulate(spins, head)
            parts = [sig0]
            start = 2
            for _ in range(n):
                g, d = seq.gradient[start : start + n + 1], seq.dt[start : start + n + 1]
                s_line, m = bloch.free_precession_block(m, spins, g, d)
                parts.append(s_line)
                start += n + 1
            return jnp.concatenate(parts)

        t_blk = best_of(blocked)
        err_blk = np.max(np.abs(np.asarray(blocked()) - ref)) / np.max(np.abs(ref))
        print(
            f"{'Bloch GRE-EPI ' + f'{n}x{n} phantom, {n_steps} steps':52s} {t_jax:11.4f} "
            f"{t_np:10.3f} {t_np / t_jax:7.1f} {err:10.1e}   ({sps:.2e} spin-steps/s; "
            f"compile {compile_s:.2f} s)"
        )
        print(
            f"{'  same, readout lines as exact free-precession blocks':52s} {t_blk:11.4f} "
            f"{t_np:10.3f} {t_np / t_blk:7.1f} {err_blk:10.1e}   "
            f"({n * n * n_steps / t_blk:.2e} spin-steps/s)"
        )
    f = jax.jit(lambda t2: epg.cpmg_train(1.0, t2, 0.01, np.deg2rad(130), 100))
    t_epg = best_of(lambda: f(0.08), repeats=20)
    print(
        f"{'EPG CPMG, 100 echoes (202 states)':52s} {t_epg:11.5f} {'':>10s} {'':>7s} {'':>10s}"
        f"   ({100 / t_epg:.2e} echoes/s)"
    )
    nvox = 1_000_000
    rng = np.random.default_rng(0)
    t1v, t2v = rng.uniform(0.6, 2.0, nvox), rng.uniform(0.02, 0.08, nvox)
    g = jax.jit(lambda a, b: se.spoiled_gre(1.0, a, b, 0.02, 0.005, 0.3))
    t_cf = best_of(lambda: g(t1v, t2v))
    print(
        f"{'closed-form spoiled GRE, 1e6 voxels':52s} {t_cf:11.5f} {'':>10s} {'':>7s} {'':>10s}"
        f"   ({nvox / t_cf:.2e} voxels/s)"
    )
    print("KomaMRI (published, not re-measured): 2D brain spiral benchmark 3.2 s on one CPU thread")


if __name__ == "__main__":
    main()
