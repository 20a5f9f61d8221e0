"""Reference BEM forward solvers for benchmarks/leadfield_bem.py: MNE-Python
and OpenMEEG on exactly the problem biosim solves.

Both wrappers take the same inputs and return the same dictionary::

    run_mne_bem(surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori=None)
    run_openmeeg(surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori=None,
                 timeout_s=600)
    -> dict(eeg_gain, meg_gain, times=dict(solution=s, forward=s), peak_mem_mb, n_unknowns)

* ``surfaces``: list of (vertices (n, 3) m, faces (m, 3) int) or
  :class:`biosim.geometry.mesh.TriangleMesh`, innermost (inner skull) first,
  outward-oriented; ``conductivities`` in S/m, one per enclosed layer
  (innermost first).
* ``eeg_positions`` (n_eeg, 3) m on the outer surface (each tool projects
  them onto its triangulated scalp), or None.
* ``meg_sensors``: a biosim :class:`MEGSensors`, or None.  Both tools are
  evaluated at biosim's integration points (one point magnetometer along the
  point's normal per integration point) and the points are summed into
  channels with biosim's weights, so coil integration is identical to
  biosim's by construction (MNE's own coil definitions are not used).
* ``src_pos`` (n_src, 3) m inside the inner surface; ``src_ori`` optional
  (n_src, 3) unit moments.
* ``eeg_gain``: (n_eeg, 3 n_src) with columns source-major (x, y, z of source
  0, then source 1, ...), or (n_eeg, n_src) when ``src_ori`` is given;
  V/(A m), referenced to nothing (the caller applies the average
  reference).  ``meg_gain`` likewise, T/(A m) (T/(m A m) for planar
  gradiometers).  None for an absent modality.
* ``times['solution']``: wall time (s) of building and inverting/factorising the BEM system;
  ``times['forward']``: source space, sensors and gain matrices (MNE: its
  ``make_forward_solution`` including its coil/electrode setup; OpenMEEG:
  DipSourceMat, Head2EEGMat/Head2MEGMat, DipSource2MEGMat, GainEEG/GainMEG).
  ``times['cpu_solution']`` / ``times['cpu_forward']``: the same stages'
  process CPU time (all threads summed), a load-independent check on a
  shared machine.
* ``peak_mem_mb``: MNE: peak resident memory of this process during the call
  minus its resident memory at the start (sampled every 5 ms from
  /proc/self/statm by a helper thread, with ``ru_maxrss`` as a floor when
  the peak rose above the previous high-water mark); OpenMEEG: the runner
  process's ``ru_maxrss`` minus its resident memory after loading inputs.

MNE-Python (1.x): linear-collocation BEM with the isolated-skull approach
(Hamalainen & Sarvas 1989), 1 or 3 layers only (a 4-layer model raises).
OpenMEEG (>= 2.5, Gramfort et al. 2010, symmetric Galerkin BEM, Kybic et
al. 2005): runs in its own venv (``BIOSIM_OPENMEEG_PYTHON``, default
``<repo>/.bench-venv/openmeeg/bin/python``) through
benchmarks/_openmeeg_runner.py, arrays exchanged as .npz; any number of
nested layers.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPENMEEG_PY = Path(
    os.environ.get(
        "BIOSIM_OPENMEEG_PYTHON", HERE.parent / ".bench-venv" / "openmeeg" / "bin" / "python"
    )
)


# --------------------------------------------------------------------------- helpers
def _as_surfaces(surfaces):
    out = []
    for s in surfaces:
        if hasattr(s, "vertices"):
            v, f = s.vertices, s.faces
        else:
            v, f = s
        v = np.asarray(v, float)
        f = np.asarray(f, np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(
                f"surface with vertices {v.shape} / faces {f.shape}: expected (n, 3) and (m, 3)"
            )
        out.append((v, f))
    return out


def _check_common(surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori):
    surfaces = _as_surfaces(surfaces)
    cond = np.atleast_1d(np.asarray(conductivities, float))
    if len(cond) != len(surfaces):
        raise ValueError(
            f"{len(cond)} conductivities for {len(surfaces)} surfaces: one per "
            "layer, innermost first"
        )
    if np.any(cond <= 0):
        raise ValueError(f"conductivities {cond} must be positive (S/m)")
    src_pos = np.atleast_2d(np.asarray(src_pos, float))
    if src_ori is not None:
        src_ori = np.atleast_2d(np.asarray(src_ori, float))
        if src_ori.shape != src_pos.shape:
            raise ValueError(f"src_ori of shape {src_ori.shape}: expected {src_pos.shape}")
    eeg = None if eeg_positions is None else np.atleast_2d(np.asarray(eeg_positions, float))
    if eeg is None and meg_sensors is None:
        raise ValueError("neither EEG electrodes nor MEG sensors given")
    return surfaces, cond, eeg, src_pos, src_ori


def _orient(gain, src_ori):
    """(n, 3 n_src) source-major -> (n, n_src) for fixed orientations."""
    if gain is None or src_ori is None:
        return gain
    return np.einsum("cnk,nk->cn", gain.reshape(gain.shape[0], -1, 3), src_ori)


def _points_to_channels(point_gain, sensors):
    """Sum per-integration-point gains (P, k) into channels with biosim's weights."""
    out = np.zeros((sensors.n_channels, point_gain.shape[1]))
    np.add.at(out, np.asarray(sensors.channel), np.asarray(sensors.weights)[:, None] * point_gain)
    return out


def _rss_mb():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _PeakRSS:
    """Peak resident memory (MiB) above the starting level while the block runs."""

    def __enter__(self):
        self.start = _rss_mb()
        self.maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if maxrss > self.maxrss0:  # a new high-water mark: exact
            self.peak = max(self.peak, maxrss)
        self.mb = self.peak - self.start
        return False


# --------------------------------------------------------------------------- MNE-Python
_MNE_NAMES = ("inner_skull", "outer_skull", "outer_skin")


def _mne_info(eeg, meg_sensors):
    import mne
    from mne.io.constants import FIFF

    n_pts = 0 if meg_sensors is None else len(meg_sensors.weights)
    n_eeg = 0 if eeg is None else len(eeg)
    names = [f"P{i:05d}" for i in range(n_pts)] + [f"E{i:04d}" for i in range(n_eeg)]
    info = mne.create_info(names, 1000.0, ["mag"] * n_pts + ["eeg"] * n_eeg)
    for i, ch in enumerate(info["chs"][:n_pts]):
        ez = np.asarray(meg_sensors.normals[i], float)
        ez = ez / np.linalg.norm(ez)
        ex = np.cross(ez, [1.0, 0, 0] if abs(ez[0]) < 0.9 else [0, 1.0, 0])
        ex /= np.linalg.norm(ex)
        ch["loc"][:12] = np.r_[meg_sensors.points[i], ex, np.cross(ez, ex), ez]
        ch["coil_type"] = FIFF.FIFFV_COIL_POINT_MAGNETOMETER
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD
    for ch, p in zip(info["chs"][n_pts:], [] if eeg is None else eeg):
        ch["loc"][:3] = p
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD
    info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
    return info, names[:n_pts], names[n_pts:]


def run_mne_bem(surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori=None):
    """MNE-Python linear-collocation BEM (isolated skull) forward; see the module docstring."""
    import mne

    surfaces, cond, eeg, src_pos, src_ori = _check_common(
        surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori
    )
    if len(surfaces) not in (1, 3):
        raise ValueError(
            f"MNE-Python's BEM supports 1 or 3 layers, not {len(surfaces)} "
            "(use run_openmeeg for other layer counts)"
        )
    with tempfile.TemporaryDirectory() as subjects_dir:
        bem_dir = Path(subjects_dir) / "anchor" / "bem"
        bem_dir.mkdir(parents=True)
        for (v, f), name in zip(surfaces, _MNE_NAMES):
            mne.write_surface(str(bem_dir / f"{name}.surf"), v * 1000.0, f, overwrite=True)
        with _PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            model = mne.make_bem_model(
                "anchor",
                ico=None,
                conductivity=tuple(cond),
                subjects_dir=subjects_dir,
                verbose=False,
            )
            bem = mne.make_bem_solution(model, verbose=False)
            t_solution, c_solution = time.perf_counter() - t0, time.process_time() - c0

            t0, c0 = time.perf_counter(), time.process_time()
            info, meg_names, eeg_names = _mne_info(eeg, meg_sensors)
            nn = np.tile([0.0, 0.0, 1.0], (len(src_pos), 1))
            src = mne.setup_volume_source_space(
                pos=dict(rr=src_pos, nn=nn), mindist=0.0, exclude=0.0, verbose=False
            )
            fwd = mne.make_forward_solution(
                info,
                trans=None,
                src=src,
                bem=bem,
                meg=bool(meg_names),
                eeg=bool(eeg_names),
                mindist=0.0,
                verbose=False,
            )
            t_forward, c_forward = time.perf_counter() - t0, time.process_time() - c0
    if fwd["nsource"] != len(src_pos):
        raise RuntimeError(
            f"MNE kept {fwd['nsource']} of {len(src_pos)} sources (the others lie "
            "outside the inner surface)"
        )
    data = fwd["sol"]["data"]
    rows = {n: i for i, n in enumerate(fwd["sol"]["row_names"])}
    meg = eeg_gain = None
    if meg_names:
        meg = _points_to_channels(data[[rows[n] for n in meg_names]], meg_sensors)
    if eeg_names:
        eeg_gain = np.array(data[[rows[n] for n in eeg_names]])
    return dict(
        eeg_gain=_orient(eeg_gain, src_ori),
        meg_gain=_orient(meg, src_ori),
        times=dict(
            solution=t_solution, forward=t_forward, cpu_solution=c_solution, cpu_forward=c_forward
        ),
        peak_mem_mb=float(mem.mb),
        n_unknowns=int(bem["nsol"]),
        tool=f"MNE-Python {mne.__version__}",
    )


# --------------------------------------------------------------------------- OpenMEEG
def openmeeg_available():
    return OPENMEEG_PY.exists()


def run_openmeeg(
    surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori=None, timeout_s=600
):
    """OpenMEEG symmetric-BEM forward in its own venv; None if OpenMEEG is not
    installed there, the run exceeds ``timeout_s`` or the runner is killed by a
    signal (out of memory); RuntimeError if it fails otherwise.  See the
    module docstring."""
    surfaces, cond, eeg, src_pos, src_ori = _check_common(
        surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori
    )
    if not openmeeg_available():
        return None
    if src_ori is None:  # three unit dipoles per source, source-major
        dip = np.c_[np.repeat(src_pos, 3, axis=0), np.tile(np.eye(3), (len(src_pos), 1))]
    else:
        dip = np.c_[src_pos, src_ori]
    arrays = dict(
        n_layers=len(surfaces),
        conductivities=cond,
        dipoles=dip,
        eeg=np.zeros((0, 3)) if eeg is None else eeg,
        meg_points=np.zeros((0, 3)) if meg_sensors is None else meg_sensors.points,
        meg_normals=np.zeros((0, 3)) if meg_sensors is None else meg_sensors.normals,
    )
    for k, (v, f) in enumerate(surfaces):
        arrays[f"vertices_{k}"], arrays[f"faces_{k}"] = v, f
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **arrays)
        try:
            proc = subprocess.run(
                [str(OPENMEEG_PY), str(HERE / "_openmeeg_runner.py"), str(src), str(dst)],
                env={**os.environ, "PYTHONPATH": ""},
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode < 0:  # killed by a signal (e.g. out of memory)
            warnings.warn(
                f"OpenMEEG runner killed by signal {-proc.returncode}; returning None", stacklevel=2
            )
            return None
        if proc.returncode != 0:
            raise RuntimeError(
                f"OpenMEEG runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        out = dict(np.load(dst))
    eeg_gain = out.get("eeg_gain")
    meg = out.get("meg_gain")
    if meg is not None:
        meg = _points_to_channels(meg, meg_sensors)
    return dict(
        eeg_gain=eeg_gain,
        meg_gain=meg,
        times=dict(
            solution=float(out["t_solution"]),
            forward=float(out["t_forward"]),
            cpu_solution=float(out["c_solution"]),
            cpu_forward=float(out["c_forward"]),
        ),
        peak_mem_mb=float(out["peak_rss_mb"]),
        n_unknowns=int(out["n_unknowns"]),
        tool=f"OpenMEEG {out['version']}",
    )


# --------------------------------------------------------------------------- self-validation
RADII = (0.0783, 0.0828, 0.090)  # inner skull, outer skull, scalp (m)
SIGMAS = (0.3, 0.006, 0.3)  # brain, skull, scalp (S/m)
ECCENTRICITIES = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def sphere_points(n, radius, center=(0.0, 0.0, 0.0)):
    """n near-uniform points (Fibonacci spiral) on a full sphere."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = i * np.pi * (3 - 5**0.5)
    rho = np.sqrt(1 - z * z)
    return np.asarray(center) + radius * np.c_[rho * np.cos(phi), rho * np.sin(phi), z]


def rdm_mag(u, v, average_reference=False):
    """Per-column RDM = ||u/|u| - v/|v| || and MAG = |u|/|v| of u against reference v."""
    if average_reference:
        u, v = u - u.mean(0), v - v.mean(0)
    nu, nv = np.linalg.norm(u, axis=0), np.linalg.norm(v, axis=0)
    return np.linalg.norm(u / nu - v / nv, axis=0), nu / nv


def sphere_test_dipoles(eccentricities=ECCENTRICITIES, inner_radius=RADII[0], seed=1):
    """One random direction per eccentricity; radial then tangential dipoles."""
    rng = np.random.default_rng(seed)
    ecc = np.asarray(eccentricities, float)
    d = rng.normal(size=(len(ecc), 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    t = np.cross(d, rng.normal(size=d.shape))
    t /= np.linalg.norm(t, axis=1)[:, None]
    pos = ecc[:, None] * inner_radius * d
    return np.r_[pos, pos], np.r_[d, t]


def sphere_reference(elec, meg_sensors, pos, ori, radii=RADII, sigmas=SIGMAS):
    """Analytic EEG (exact multi-shell series) and MEG (Sarvas) gains, fixed orientations."""
    from biosim.physics.electromag import SphereHead, eeg_gain, meg_gain

    ge = (
        None
        if elec is None
        else np.einsum(
            "enk,nk->en", np.asarray(eeg_gain(SphereHead.create(radii, sigmas), elec, pos)), ori
        )
    )
    gm = (
        None
        if meg_sensors is None
        else np.einsum("enk,nk->en", np.asarray(meg_gain(meg_sensors, pos)), ori)
    )
    return ge, gm


def validate(subdivisions=3, tools=("mne", "openmeeg"), n_electrodes=128):
    """Both anchors against the analytic 3-shell sphere (printed table)."""
    from biosim.geometry.mesh import nested_spheres
    from biosim.physics.electromag import squid_helmet_306

    surfs = nested_spheres(RADII, subdivisions=subdivisions)
    elec = sphere_points(n_electrodes, RADII[-1])
    meg = squid_helmet_306()
    pos, ori = sphere_test_dipoles()
    n = len(ECCENTRICITIES)
    ge, gm = sphere_reference(elec, meg, pos, ori)
    print(
        f"# 3 x {len(surfs[0].vertices)} vertices, radii {RADII} m, sigma {SIGMAS} S/m; "
        f"{n_electrodes} electrodes (average reference), {meg.n_channels} MEG channels "
        f"({len(meg.weights)} integration points); one dipole per eccentricity, radial and "
        "tangential; MEG scored on tangential dipoles"
    )
    for tool in tools:
        fn = run_mne_bem if tool == "mne" else run_openmeeg
        r = fn(surfs, SIGMAS, elec, meg, pos, ori)
        if r is None:
            print(f"{tool}: not available")
            continue
        re, me = rdm_mag(r["eeg_gain"], ge, True)
        rm, mm = rdm_mag(r["meg_gain"][:, n:], gm[:, n:])
        print(
            f"{r['tool']}: {r['n_unknowns']} unknowns, solution {r['times']['solution']:.2f} s, "
            f"forward {r['times']['forward']:.2f} s (CPU {r['times']['cpu_solution']:.1f} + "
            f"{r['times']['cpu_forward']:.1f} s), peak memory +{r['peak_mem_mb']:.0f} MiB"
        )
        print(f"  {'eccentricity':14s}" + "".join(f"{e:7.2f}" for e in ECCENTRICITIES))
        for label, vals in (
            ("EEG rad RDM", re[:n]),
            ("EEG rad MAG", me[:n]),
            ("EEG tan RDM", re[n:]),
            ("EEG tan MAG", me[n:]),
            ("MEG tan RDM", rm),
            ("MEG tan MAG", mm),
        ):
            print(f"  {label:14s}" + "".join(f"{x:7.3f}" for x in vals))


def time_large(subdivisions=4, n_sources=8196, tools=("mne",), timeout_s=600, seed=0):
    """One timing run: 306 MEG (biosim helmet) + 64 EEG x n_sources free-orientation sources."""
    from biosim.geometry.mesh import nested_spheres
    from biosim.physics.electromag import squid_helmet_306
    from biosim.physics.electromag.montage import standard_montage

    surfs = nested_spheres(RADII, subdivisions=subdivisions)
    e = standard_montage("biosemi64").positions
    c = e.mean(0)
    elec = (e - c) / np.linalg.norm(e - c, axis=1)[:, None] * RADII[-1]
    meg = squid_helmet_306()
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_sources, 3))
    src = (
        d
        / np.linalg.norm(d, axis=1)[:, None]
        * 0.9
        * RADII[0]
        * rng.uniform(0.0, 1.0, (n_sources, 1)) ** (1 / 3)
    )
    for tool in tools:
        fn = run_mne_bem if tool == "mne" else run_openmeeg
        kw = {} if tool == "mne" else dict(timeout_s=timeout_s)
        t0 = time.perf_counter()
        r = fn(surfs, SIGMAS, elec, meg, src, **kw)
        wall = time.perf_counter() - t0
        if r is None:
            print(f"{tool}: unavailable or over {timeout_s} s")
            continue
        print(
            f"{r['tool']}: 3 x {len(surfs[0].vertices)} vertices ({r['n_unknowns']} unknowns), "
            f"{meg.n_channels} MEG + {len(elec)} EEG x {n_sources} sources x 3: solution "
            f"{r['times']['solution']:.1f} s, forward {r['times']['forward']:.1f} s, "
            f"wall {wall:.1f} s (CPU {r['times']['cpu_solution']:.1f} + "
            f"{r['times']['cpu_forward']:.1f} s), peak memory +{r['peak_mem_mb']:.0f} MiB"
        )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Validate / time the BEM anchors")
    ap.add_argument("--subdivisions", type=int, default=3)
    ap.add_argument("--tools", default="mne,openmeeg")
    ap.add_argument(
        "--time-large",
        action="store_true",
        help="one timing run, 306 MEG + 64 EEG x --n-sources sources",
    )
    ap.add_argument("--n-sources", type=int, default=8196)
    args = ap.parse_args()
    if args.time_large:
        time_large(args.subdivisions, args.n_sources, tuple(args.tools.split(",")))
    else:
        validate(args.subdivisions, tuple(args.tools.split(",")))
