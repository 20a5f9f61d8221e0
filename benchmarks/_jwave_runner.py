"""Runs a j-Wave (0.2.1) time-domain simulation inside the j-Wave venv for
benchmarks/ultrasound.py.  Usage: python this.py IN.npz OUT.npz

IN holds ``sound_speed`` and ``density`` (grid maps, m/s and kg/m^3), ``dx`` (m),
``pml`` (points), ``dt`` (s), ``n_steps``, ``steps_per_period``, ``n_dft_periods``,
``frequency`` (Hz), ``n_ramp_periods``, ``src_idx`` (n_src, ndim) voxel indices of the
(staircased) source with ``src_amp`` (Pa, per voxel) and ``src_phase`` (rad),
``rec_idx`` (n_rec, ndim) voxels where the steady-state amplitude and phase are
wanted, and ``repeat`` (run the compiled simulation this many times for timing).

OUT gets ``amp`` and ``phase`` at the receivers (single-frequency DFT over the
last ``n_dft_periods`` whole periods, p = amp cos(omega t + phase)), ``t_first``
(first run including compilation, s), ``t_run`` (best later run, s),
``steps_per_s``, ``cpu_run`` (process CPU time of the best later run, s),
``peak_rss_mb`` (runner's peak resident memory minus its resident memory once the
inputs are loaded, MiB) and ``version``.

j-Wave 0.2.1's time-domain solver is lossless (no absorption term) and takes
sources on grid points only; its mass source adds 2 s dt / (c0 ndim dx) to
each density component, the same scaling as biosim's.
"""

import resource
import sys
import time

import numpy as np


def _rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def main(inp, out):
    data = dict(np.load(inp))
    import jax
    import jax.numpy as jnp
    import jwave
    from jwave import FourierSeries
    from jwave.acoustics.time_varying import simulate_wave_propagation
    from jwave.geometry import Domain, Medium, Sensors, Sources, TimeAxis

    base = _rss_mb()
    c = data["sound_speed"]
    rho = data["density"]
    nd = c.ndim
    dx = float(data["dx"])
    domain = Domain(c.shape, (dx,) * nd)
    medium = Medium(
        domain=domain,
        sound_speed=FourierSeries(jnp.asarray(c[..., None], jnp.float32), domain),
        density=FourierSeries(jnp.asarray(rho[..., None], jnp.float32), domain),
        pml_size=float(data["pml"]),
    )
    dt = float(data["dt"])
    n_steps = int(data["n_steps"])
    time_axis = TimeAxis(dt=dt, t_end=dt * (n_steps - 0.5))  # Nt = ceil(t_end / dt)
    # j-Wave records after step n at time n dt; our drive uses the same clock
    t = np.arange(n_steps) * dt
    f = float(data["frequency"])
    t_ramp = float(data["n_ramp_periods"]) / f
    env = 0.5 * (1 - np.cos(np.pi * np.clip(t / t_ramp, 0, 1))) if t_ramp > 0 else np.ones_like(t)
    amp, ph = data["src_amp"], data["src_phase"]
    signals = (
        amp[:, None] * env[None, :] * np.cos(2 * np.pi * f * t[None, :] + ph[:, None])
    ).astype(np.float32)
    src_idx = data["src_idx"]
    sources = Sources(
        positions=tuple(src_idx[:, d] for d in range(nd)),
        signals=jnp.asarray(signals),
        dt=dt,
        domain=domain,
    )
    rec = data["rec_idx"]
    sensors = Sensors(positions=tuple(rec[:, d] for d in range(nd)))

    @jax.jit
    def run(medium):
        return simulate_wave_propagation(medium, time_axis, sources=sources, sensors=sensors)

    t0 = time.perf_counter()
    rec_p = np.asarray(run(medium)).reshape(n_steps, -1)
    t_first = time.perf_counter() - t0
    best, best_cpu = np.inf, np.inf
    for _ in range(int(data["repeat"])):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(run(medium))
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    spp = int(data["steps_per_period"])
    nw = spp * int(data["n_dft_periods"])
    tw = (np.arange(n_steps - nw, n_steps) + 1) * dt  # sample k holds p at (k + 1) dt
    z = 2.0 / nw * (rec_p[-nw:].astype(float) * np.exp(-2j * np.pi * f * tw)[:, None]).sum(0)
    np.savez(
        out,
        amp=np.abs(z),
        phase=np.angle(z),
        t_first=t_first,
        t_run=best if np.isfinite(best) else t_first,
        steps_per_s=n_steps / (best if np.isfinite(best) else t_first),
        cpu_run=best_cpu,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
        version=jwave.__version__ if hasattr(jwave, "__version__") else "0.2.1",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
