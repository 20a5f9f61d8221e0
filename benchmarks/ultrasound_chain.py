"""Focused-ultrasound chain: 3D CW field -> 60 s of heating -> 60 PRFS thermometry frames.

Cases (one line each: size, accuracy against the oracle, time):

* ``bioheat-oracle``: Pennes bioheat of a Gaussian initial rise in a perfused homogeneous
  3D medium (grey matter, IT'IS v4.1) against the exact solution
  (:func:`biosim.physics.thermal.bioheat_gaussian`), 60 s in 1 s Crank-Nicolson steps.
* ``chain``: the shipped ``focused_ultrasound`` experiment's physics on the template head:
  the bowl placed on the occipital scalp over V1, the CW field through the skull
  (k-space pseudospectral, float32), 60 s of pulsed sonication heating (Pennes, 1 s steps,
  CEM43 and the ITRUSST indices), 60 thermometry frames at 3 T (32 x 32 x 3, SNR 40,
  B0 drift 0.05 Hz/s) reconstructed with reference-region drift correction; accuracy is
  the thermometry RMSE in the brain against the simulated truth, next to the predicted
  noise floor (Conturo & Smith).  Target: the whole chain in under 2 minutes.

Each stage prints its wall time and, in brackets, the CPU time of the process (all
threads): on a shared, overloaded machine the CPU time is the reproducible number.

No anchor runs here (k-Wave's diffusion class needs MATLAB; no open tool chains heating
with thermometry images): the ratio column is the chain time over the 120 s target.

Run: ``python benchmarks/ultrasound_chain.py`` (``--quick``: 20 s of heating, 20 frames).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import biosim  # noqa: F401  (float64)
from biosim.experiment import load_experiment
from biosim.experiment.activity import ultrasound_schedules
from biosim.experiment.devices.ultrasound import (
    acoustic_problem,
    build_thermometry,
    resample_frames,
    thermometry_grid,
    thermometry_magnitude,
)
from biosim.experiment.protocol import Protocol
from biosim.instruments.thermometry import thermometry_error
from biosim.physics.acoustics import cw_settings, simulate_cw
from biosim.physics.acoustics.media import TEMPLATE_LABELS
from biosim.physics.thermal import (
    ITIS_TISSUES,
    ThermalMaps,
    acoustic_heat_source,
    bioheat_gaussian,
    safety_indices,
    solve_bioheat,
    thermal_maps_from_labels,
)


def bioheat_oracle(n=64, h=0.5e-3, duration=60.0, dt=1.0):
    gm = ITIS_TISSUES["grey_matter"]
    shape = (n, n, n)
    maps = ThermalMaps(
        *(np.full(shape, v) for v in (gm.density, gm.specific_heat, gm.conductivity)),
        np.full(shape, gm.perfusion_rate),
        h,
    )
    x = (np.arange(n) - (n - 1) / 2) * h
    r2 = x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2
    width, amp = 2e-3, 5.0
    th0 = amp * np.exp(-r2 / (2 * width**2))
    rc = gm.density * gm.specific_heat
    exact = bioheat_gaussian(
        r2,
        duration,
        amp,
        width,
        gm.conductivity / rc,
        gm.perfusion_rate * maps.blood_heat_capacity / rc,
        3,
    )
    t0 = time.perf_counter()
    res = solve_bioheat(maps, np.zeros(shape), duration, dt, initial_rise=th0, tol=1e-8)
    jax.block_until_ready(res.delta_t)
    first = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    res = solve_bioheat(maps, np.zeros(shape), duration, dt, initial_rise=th0, tol=1e-8)
    jax.block_until_ready(res.delta_t)
    warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
    err = np.abs(np.asarray(res.delta_t[-1]) - exact).max() / exact.max()
    print(
        f"bioheat-oracle  {n}^3 x {int(duration / dt)} steps  max err/peak {err:.2e}  "
        f"biosim {warm:.2f} s [cpu {warm_cpu:.2f} s] (first call {first:.2f} s)  anchor n/a"
    )


def chain(duration=60.0):
    spec = load_experiment("focused_ultrasound")
    us = spec["devices"]["ultrasound"]
    th = us["thermometry"]
    protocol = Protocol.from_spec(spec)
    times, cpu = {}, {}
    t_all, c_all = time.perf_counter(), time.process_time()

    t0, c0 = time.perf_counter(), time.process_time()
    place, maps, medium, grid, src = acoustic_problem(us, spec)
    f, h = us["frequency"], us["grid_spacing"]
    settings = cw_settings(medium, grid, f, cfl=us["cfl"], dtype="float32")
    times["media"] = time.perf_counter() - t0
    cpu["media"] = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    pressure = np.asarray(simulate_cw(medium, src, grid, f, settings=settings).amplitude, float)
    times["field"] = time.perf_counter() - t0
    cpu["field"] = time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    pml = us["pml_size"]
    inner = np.zeros(place.shape, bool)
    inner[pml:-pml, pml:-pml, pml:-pml] = True
    pressure = np.where(inner, pressure, 0.0)
    q = np.asarray(
        acoustic_heat_source(pressure, maps.attenuation(f), maps.density, maps.sound_speed)
    )
    thermal = thermal_maps_from_labels(maps.labels, TEMPLATE_LABELS, h)
    heat = solve_bioheat(
        thermal,
        q,
        duration,
        us["thermal_dt"],
        schedule=ultrasound_schedules(us, protocol),
        frame_interval=th["frame_interval"],
    )
    jax.block_until_ready(heat.delta_t)
    safety = safety_indices(
        pressure,
        f,
        np.asarray(heat.max_delta_t),
        np.asarray(heat.cem43),
        maps.labels,
        TEMPLATE_LABELS,
    )
    times["heating"] = time.perf_counter() - t0
    cpu["heating"] = time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    scan = build_thermometry(th, seed=1)
    t_aff, t_shape = thermometry_grid(th, place.target)
    truth = resample_frames(np.asarray(heat.delta_t), place.affine, t_aff, t_shape)
    mag, frac = thermometry_magnitude(scan, t_aff, t_shape)
    series = scan.acquire(truth, mag, th["voxel_size"] * 1e-3)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in t_shape], indexing="ij"), -1)
    dist = np.linalg.norm(idx @ t_aff[:3, :3].T + t_aff[:3, 3] - place.target, axis=-1)
    ref = (frac[:2].sum(0) > 0.5) & (dist > th["reference_distance"])
    recon = scan.reconstruct(series, ref)
    err = thermometry_error(recon, truth, frac[:3].sum(0) > 0.5)
    times["thermometry"] = time.perf_counter() - t0
    cpu["thermometry"] = time.process_time() - c0
    total, total_cpu = time.perf_counter() - t_all, time.process_time() - c_all
    n_frames = len(series.times) - 1
    print(
        f"chain  field {place.shape[0]}x{place.shape[1]}x{place.shape[2]} "
        f"({settings.n_steps} steps) + {duration:g} s heating + {n_frames} frames "
        f"{'x'.join(map(str, t_shape))}  thermometry RMSE {err.rmse:.3f} K "
        f"(noise floor {scan.temperature_std:.3f} K, bias {err.bias:+.3f} K)  "
        f"peak dT {max(safety.max_delta_t):.2f} K, MI {safety.mechanical_index:.2f}  "
        + "  ".join(f"{k} {v:.1f} s [{cpu[k]:.1f}]" for k, v in times.items())
        + f"  total {total:.1f} s [cpu {total_cpu:.1f} s]  anchor n/a  "
        + f"total/120 s {total / 120:.2f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    bioheat_oracle(duration=20.0 if args.quick else 60.0)
    chain(duration=20.0 if args.quick else 60.0)
