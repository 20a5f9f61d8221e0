"""Ultrasound: biosim's k-space CW solver against j-Wave 0.2.1 on the same problems.

Usage::

    PYTHONPATH=. python benchmarks/ultrasound.py [--cases speed2d,speed3d,oneil,aubry]
        [--jwave /work/venvs/jwave/bin/python] [--aubry-dx 1.0e-3]

Cases (one line each):

* ``speed2d`` / ``speed3d``: time steps per second and peak memory on 512^2 and 128^3
  grids (water, a small piston), same time step and step count in both codes.
* ``oneil``: 1 MHz bowl (radius of curvature 10 mm, aperture 8 mm) in water at 6
  points per wavelength (the 20 mm / 16 mm bowl is the slow test); focal pressure and
  position against O'Neil's on-axis solution.
  biosim places the bowl off-grid (band-limited); j-Wave takes grid points only, so it
  gets the staircased bowl (voxels within dx/2 of the sphere, k-Wave's makeBowl idea).
* ``aubry``: the Aubry et al. (2022) set-ups (500 kHz bowl, radius of curvature 64 mm,
  aperture 64 mm; water, a flat and a curved layered skull with the ITRUSST layer values)
  at ``--aubry-dx``: focal pressure, focal position, -6 dB widths and L2/Linf differences
  between the codes on the axial plane.  j-Wave 0.2.1's time-domain solver is lossless,
  so the code-to-code comparison runs both without absorption; biosim's absorbing run is
  reported on its own line.

Each code runs in a subprocess (biosim: this script with ``--worker``; j-Wave:
``_jwave_runner.py`` in the j-Wave venv) so that peak memory is per run.  Times: first
call (with compilation) and, for the speed cases, a second compiled call; the bowl cases
run once (times include compilation, a few seconds).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JWAVE = "/work/venvs/jwave/bin/python"

# ITRUSST benchmark layers (sound speed m/s, density kg/m^3, attenuation dB/cm at 500 kHz)
LAYERS = {
    "water": (1500.0, 1000.0, 0.0),
    "skin": (1610.0, 1090.0, 0.2),
    "cortical": (2800.0, 1850.0, 4.0),
    "trabecular": (2300.0, 1700.0, 8.0),
    "brain": (1560.0, 1040.0, 0.3),
}
# flat layered skull along the axis (m): skin, outer table, diploe, inner table, then brain
SKULL = (("skin", 4e-3), ("cortical", 1.5e-3), ("trabecular", 4e-3), ("cortical", 1e-3))


# --------------------------------------------------------------------------- problems
def _problem(case, aubry_dx):
    """Grid, media maps, bowl and run length of one case (plain NumPy; no biosim import)."""
    if case in ("speed2d", "speed3d"):
        nd = 2 if case == "speed2d" else 3
        n = 512 if nd == 2 else 128
        f, c = 1e6, 1500.0
        dx = c / f / 6
        shape = (n,) * nd
        return dict(
            kind="speed",
            nd=nd,
            shape=shape,
            dx=dx,
            f=f,
            pml=10,
            c=np.full(shape, c),
            rho=np.full(shape, 1000.0),
            alpha=np.zeros(shape),
            n_periods=15 if nd == 2 else 3,
            n_dft=1,
        )
    if case == "oneil":
        f, c, R, A = 1e6, 1500.0, 10e-3, 8e-3
        dx = c / f / 6
        return _bowl_problem("oneil", f, R, A, dx, 2e-3, 5e-3, pml=10)
    if case.startswith("aubry"):
        return _bowl_problem(case, 5e5, 64e-3, 64e-3, aubry_dx, 3e-3, 15e-3, pml=10)
    raise ValueError(case)


def _bowl_problem(case, f, R, A, dx, behind, beyond, pml):
    behind = max(behind, 5 * dx)  # the band-limited stencil stays clear of the PML
    nx = int(math.ceil((R + behind + beyond) / dx)) + 2 * pml
    nl = int(math.ceil((A + max(4e-3, 10 * dx)) / dx)) + 2 * pml
    nl += (nl + 1) % 2  # odd: the axis passes through grid points
    apex = 0.0
    origin = (apex - behind - pml * dx, -(nl - 1) / 2 * dx, -(nl - 1) / 2 * dx)
    shape = (nx, nl, nl)
    x = origin[0] + dx * np.arange(nx)
    lat = origin[1] + dx * np.arange(nl)
    X, Y, Z = np.meshgrid(x, lat, lat, indexing="ij")
    c = np.full(shape, LAYERS["water"][0])
    rho = np.full(shape, LAYERS["water"][1])
    alpha = np.zeros(shape)
    if case in ("aubry_flat", "aubry_curved"):
        # Aubry et al. (2022) BM3 / BM5 geometry (as set up by the intercomparison's
        # participants): the outer table starts 30 mm from the bowl apex with the 4 mm skin
        # in front of it (skin surface at 26 mm); BM5's outer table is a sphere of radius
        # 75 mm centred on the axis, the skin its 79 mm shell, the other layers inside.
        depth0 = 26e-3  # skin surface on the axis, from the bowl apex (m)
        if case == "aubry_flat":
            d = X - depth0
        else:
            r0 = 75e-3 + SKULL[0][1]  # outer radius of the skin
            d = r0 - np.sqrt((X - (depth0 + r0)) ** 2 + Y**2 + Z**2)
        edges = np.cumsum([0.0] + [t for _, t in SKULL])
        for (name, _), lo, hi in zip(SKULL, edges[:-1], edges[1:]):
            sel = (d >= lo) & (d < hi)
            c[sel], rho[sel], alpha[sel] = LAYERS[name]
        sel = d >= edges[-1]
        c[sel], rho[sel], alpha[sel] = LAYERS["brain"]
        search_from = depth0 + edges[-1] + 1e-3  # 1 mm inside the inner table, on the axis
    else:
        search_from = -np.inf
    return dict(
        kind="bowl",
        nd=3,
        shape=shape,
        dx=dx,
        f=f,
        pml=pml,
        c=c,
        rho=rho,
        alpha=alpha,
        origin=origin,
        R=R,
        A=A,
        apex=apex,
        n_dft=3,
        search_from=search_from,
    )


def _staircase_bowl(p):
    """Voxels within dx/2 of the bowl's sphere and inside its aperture (grid indices)."""
    x = p["origin"][0] + p["dx"] * np.arange(p["shape"][0])
    lat = p["origin"][1] + p["dx"] * np.arange(p["shape"][1])
    X, Y, Z = np.meshgrid(x, lat, lat, indexing="ij")
    fx = p["apex"] + p["R"]
    r = np.sqrt((X - fx) ** 2 + Y**2 + Z**2)
    on = (np.abs(r - p["R"]) <= p["dx"] / 2) & (X < fx) & (Y**2 + Z**2 <= (p["A"] / 2) ** 2)
    return np.argwhere(on)


# --------------------------------------------------------------------------- biosim
def _settings_for(p, dtype, lossless):
    from biosim.physics.acoustics import CWSettings, Medium, cw_settings
    from biosim.physics.acoustics.medium import Grid

    grid = Grid(shape=p["shape"], spacing=p["dx"], pml_size=p["pml"], origin=p.get("origin"))
    alpha = 0.0 if lossless else p["alpha"] / (p["f"] / 1e6) ** 2  # y = 2: alpha0 f^2
    med = Medium(sound_speed=p["c"], density=p["rho"], alpha0=alpha, alpha_power=2.0)
    if p["kind"] == "speed":
        s0 = cw_settings(med, grid, p["f"], n_ramp_periods=1, n_dft_periods=1)
        st = CWSettings(
            dt=s0.dt,
            steps_per_period=s0.steps_per_period,
            n_settle_periods=p["n_periods"] - 1,
            n_dft_periods=1,
            n_ramp_periods=1,
            c_ref=s0.c_ref,
            cfl=s0.cfl,
            ppw=s0.ppw,
            dtype=dtype,
        )
    else:
        length = p["shape"][0] * p["dx"]
        st = cw_settings(
            med,
            grid,
            p["f"],
            settle_time=3 / p["f"] + 1.3 * length / 1500.0,
            dtype=dtype,
            n_dft_periods=p["n_dft"],
            min_ppw=2.5,
        )
    return grid, med, st


def _run_settings(st):
    """Total step count the solver actually runs (periods padded to whole blocks)."""
    block = max(1, int(math.ceil(math.sqrt(st.n_settle_periods))))
    n_settle = -(-st.n_settle_periods // block) * block  # padded to whole checkpoint blocks
    return (n_settle + st.n_dft_periods) * st.steps_per_period


def worker(case, dtype, lossless, aubry_dx, out):
    """biosim side of one case (run in a fresh process)."""
    import jax

    from biosim.physics.acoustics import bowl, piston, simulate_cw, source_map

    p = _problem(case, aubry_dx)
    grid, med, st = _settings_for(p, dtype, lossless)
    if p["kind"] == "speed":
        ctr = [0.0] * p["nd"]
        normal = [1.0] + [0.0] * (p["nd"] - 1)
        src = piston(ctr, normal, 4 * p["dx"], point_spacing=p["dx"] / 2)
    else:
        src = bowl([p["apex"] + p["R"], 0, 0], [1, 0, 0], p["R"], p["A"], point_spacing=p["dx"] / 2)
    smap = source_map(src, grid)
    base = _rss()
    t0 = time.perf_counter()
    fld = simulate_cw(med, smap, grid, p["f"], settings=st)
    jax.block_until_ready(fld.amplitude)
    t_first = time.perf_counter() - t0
    t_run, cpu_run = t_first, np.inf
    if p["kind"] == "speed":  # time a second, compiled call (bowl cases: one call, compile incl.)
        t0, c0 = time.perf_counter(), time.process_time()
        fld = simulate_cw(med, smap, grid, p["f"], settings=st)
        jax.block_until_ready(fld.amplitude)
        t_run, cpu_run = time.perf_counter() - t0, time.process_time() - c0
    amp = np.asarray(fld.amplitude)
    mid = [(n - 1) // 2 for n in p["shape"]]
    plane = amp[:, :, mid[2]] if p["nd"] == 3 else amp
    np.savez(
        out,
        plane=plane,
        t_first=t_first,
        t_run=t_run,
        cpu_run=cpu_run,
        n_steps=_run_settings(st),
        dt=st.dt,
        spp=st.steps_per_period,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
    )


def _best(a, b):
    """The faster (wall time) of two timing results."""
    return a if float(a["t_run"]) <= float(b["t_run"]) else b


def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def run_biosim(case, dtype, lossless, aubry_dx):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            case,
            dtype,
            str(int(lossless)),
            str(aubry_dx),
            out,
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run(cmd, check=True, env=env)
        return dict(np.load(out))


def run_jwave(case, aubry_dx, n_steps, dt, spp, python):
    p = _problem(case, aubry_dx)
    if p["kind"] == "speed":
        mid = [(n - 1) // 2 for n in p["shape"]]
        # the same piston on the grid: 4 points across, on the plane x = centre
        src = np.array(
            [[mid[0]] + [mid[1] + k] + ([mid[2]] if p["nd"] == 3 else []) for k in range(-2, 2)]
        )
        if p["nd"] == 3:  # a 4 x 4 square (biosim: a 4-point-wide disc)
            src = np.array(
                [[mid[0], mid[1] + a, mid[2] + b] for a in range(-2, 2) for b in range(-2, 2)]
            )
        rec = np.array([[mid[0] + 20] + mid[1:]])
    else:
        src = _staircase_bowl(p)
        mid = (p["shape"][2] - 1) // 2
        ii, jj = np.meshgrid(np.arange(p["shape"][0]), np.arange(p["shape"][1]), indexing="ij")
        rec = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, mid)], axis=1)
    n_dft = p["n_dft"]
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(
            inp,
            sound_speed=p["c"],
            density=p["rho"],
            dx=p["dx"],
            pml=p["pml"],
            dt=dt,
            n_steps=n_steps,
            steps_per_period=spp,
            n_dft_periods=n_dft,
            frequency=p["f"],
            n_ramp_periods=1 if p["kind"] == "speed" else 3,
            src_idx=src,
            src_amp=np.ones(len(src)),
            src_phase=np.zeros(len(src)),
            rec_idx=rec,
            repeat=1 if p["kind"] == "speed" else 0,
        )
        subprocess.run([python, str(HERE / "_jwave_runner.py"), inp, out], check=True)
        res = dict(np.load(out))
    if p["kind"] == "bowl":
        res["plane"] = res["amp"].reshape(p["shape"][0], p["shape"][1])
    return res


# --------------------------------------------------------------------------- metrics
def _focus(plane, p):
    """Focal pressure (Pa), position along the axis from the apex (m), -6 dB widths (m)."""
    x = p["origin"][0] + p["dx"] * np.arange(p["shape"][0]) - p["apex"]
    j = (p["shape"][1] - 1) // 2
    inside = np.zeros(p["shape"][0], bool)
    inside[p["pml"] + 8 : -p["pml"]] = True
    # skull cases: the intracranial focus (the skull also mirrors a focus back near the bowl)
    inside &= x >= p.get("search_from", -np.inf)
    axis = np.where(inside, plane[:, j], 0.0)
    i = int(np.argmax(axis))
    y0, y1, y2 = axis[i - 1], axis[i], axis[i + 1]
    d = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    zf, pf = x[i] + d * p["dx"], y1 - 0.25 * (y0 - y2) * d

    def width(profile, k):
        half = profile[k] / 2.0
        lo = k
        while lo > 0 and profile[lo] > half:
            lo -= 1
        hi = k
        while hi < len(profile) - 1 and profile[hi] > half:
            hi += 1
        # linear interpolation of the crossings
        a = lo + (half - profile[lo]) / (profile[lo + 1] - profile[lo])
        b = hi - 1 + (half - profile[hi - 1]) / (profile[hi] - profile[hi - 1])
        return (b - a) * p["dx"]

    return pf, zf, width(axis, i), width(plane[i, :], j)


def _oneil(p):
    from biosim.physics.acoustics import oneil_on_axis

    zz = np.linspace(2e-3, p["R"] + 5e-3, 40001)
    rr = oneil_on_axis(zz, p["R"], p["A"], p["f"], 1500.0, 1.0)
    return rr.max(), zz[np.argmax(rr)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="speed2d,speed3d,oneil,aubry")
    ap.add_argument("--jwave", default=JWAVE)
    ap.add_argument("--aubry-dx", type=float, default=1.0e-3)
    ap.add_argument("--repeats", type=int, default=1, help="interleaved timing repeats")
    ap.add_argument(
        "--no-absorbing", action="store_true", help="skip biosim's absorbing skull runs"
    )
    ap.add_argument("--worker", nargs=5, default=None)
    args = ap.parse_args()
    if args.worker:
        case, dtype, lossless, adx, out = args.worker
        worker(case, dtype, bool(int(lossless)), float(adx), out)
        return
    have_jwave = Path(args.jwave).exists()
    cases = args.cases.split(",")
    if "aubry" in cases:
        i = cases.index("aubry")
        cases[i : i + 1] = ["aubry_water", "aubry_flat", "aubry_curved"]
    for case in cases:
        p = _problem(case, args.aubry_dx)
        b32 = run_biosim(case, "float32", True, args.aubry_dx)
        b64 = run_biosim(case, "float64", True, args.aubry_dx) if p["kind"] == "speed" else None
        n, dt, spp = int(b32["n_steps"]), float(b32["dt"]), int(b32["spp"])
        jw = run_jwave(case, args.aubry_dx, n, dt, spp, args.jwave) if have_jwave else None
        size = "x".join(map(str, p["shape"]))
        if p["kind"] == "speed":
            # interleaved repeats (biosim f32, j-Wave, ...) on a shared machine: best of each
            for _ in range(args.repeats - 1):
                b32 = _best(b32, run_biosim(case, "float32", True, args.aubry_dx))
                if have_jwave:
                    jw = _best(jw, run_jwave(case, args.aubry_dx, n, dt, spp, args.jwave))
            n = float(b32["n_steps"])
            sb, cb = n / float(b32["t_run"]), n / float(b32["cpu_run"])
            s64, c64 = n / float(b64["t_run"]), n / float(b64["cpu_run"])
            line = (
                f"{case}: grid {size}, {int(n)} steps | biosim f32 {sb:.2f} steps/s wall, "
                f"{cb:.2f} steps/CPU-s ({float(b32['peak_rss_mb']):.0f} MiB), f64 {s64:.2f} "
                f"wall, {c64:.2f}/CPU-s ({float(b64['peak_rss_mb']):.0f} MiB)"
            )
            if jw is not None:
                sj, cj = float(jw["steps_per_s"]), n / float(jw["cpu_run"])
                line += (
                    f" | j-Wave f32 {sj:.2f} steps/s wall, {cj:.2f} steps/CPU-s "
                    f"({float(jw['peak_rss_mb']):.0f} MiB) | speed-up f32 wall {sb / sj:.2f}x, "
                    f"CPU {cb / cj:.2f}x"
                )
            print(line, flush=True)
            continue
        pb = _focus(b32["plane"], p)
        line = f"{case}: grid {size}, dx {p['dx'] * 1e3:.3g} mm, {int(b32['n_steps'])} steps"
        if case == "oneil":
            pr, zr = _oneil(p)
            line += f" | O'Neil {pr:.3f} Pa/Pa at {zr * 1e3:.2f} mm"
            line += (
                f" | biosim {pb[0]:.3f} ({100 * (pb[0] / pr - 1):+.2f} %) at {pb[1] * 1e3:.2f} mm"
                f" ({(pb[1] - zr) * 1e3:+.2f}), {float(b32['t_run']):.1f} s"
            )
            if jw is not None:
                pj = _focus(jw["plane"], p)
                line += (
                    f" | j-Wave {pj[0]:.3f} ({100 * (pj[0] / pr - 1):+.2f} %) at "
                    f"{pj[1] * 1e3:.2f} mm ({(pj[1] - zr) * 1e3:+.2f}), {float(jw['t_run']):.1f} s"
                    f" | speed-up {float(jw['t_run']) / float(b32['t_run']):.2f}x"
                )
            print(line, flush=True)
            continue
        line += (
            f" | biosim focus {pb[0]:.3f} Pa/Pa at {pb[1] * 1e3:.2f} mm, -6 dB axial "
            f"{pb[2] * 1e3:.2f} mm lateral {pb[3] * 1e3:.2f} mm, {float(b32['t_run']):.1f} s"
        )
        if jw is not None:
            pj = _focus(jw["plane"], p)
            a, b = b32["plane"], jw["plane"]
            sl = (slice(p["pml"], -p["pml"]), slice(p["pml"], -p["pml"]))
            l2 = np.linalg.norm(a[sl] - b[sl]) / np.linalg.norm(b[sl])
            linf = np.abs(a[sl] - b[sl]).max() / np.abs(b[sl]).max()
            line += (
                f" | j-Wave focus {pj[0]:.3f} at {pj[1] * 1e3:.2f} mm, -6 dB axial "
                f"{pj[2] * 1e3:.2f} lateral {pj[3] * 1e3:.2f}, {float(jw['t_run']):.1f} s"
                f" | dp {100 * (pb[0] / pj[0] - 1):+.1f} %, dz {(pb[1] - pj[1]) * 1e3:+.2f} mm,"
                f" L2 {100 * l2:.1f} %, Linf {100 * linf:.1f} %"
                f" | speed-up {float(jw['t_run']) / float(b32['t_run']):.2f}x"
            )
        print(line, flush=True)
        if case != "aubry_water" and not args.no_absorbing:
            ba = run_biosim(case, "float32", False, args.aubry_dx)
            pa = _focus(ba["plane"], p)
            print(
                f"{case} (biosim, with ITRUSST absorption, y = 2): focus {pa[0]:.3f} Pa/Pa at "
                f"{pa[1] * 1e3:.2f} mm, -6 dB axial {pa[2] * 1e3:.2f} mm lateral "
                f"{pa[3] * 1e3:.2f} mm",
                flush=True,
            )


if __name__ == "__main__":
    main()
