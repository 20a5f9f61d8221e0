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
* ``times['solution']``: building and inverting/factorising the BEM system;
  ``times['forward']``: source space, sensors and gain matrices (MNE: its
  ``make_forward_solution`` including its coil/electrode setup; OpenMEEG:
  DipSourceMat, Head2EEGMat/Head2MEGMat, DipSource2MEGMat, GainEEG/GainMEG).
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPENMEEG_PY = Path(os.environ.get("BIOSIM_OPENMEEG_PYTHON",
                                  HERE.parent / ".bench-venv" / "openmeeg" / "bin" / "python"))


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
            raise ValueError(f"surface with vertices {v.shape} / faces {f.shape}: expected (n, 3)"
                             " and (m, 3)")
        out.append((v, f))
    return out


def _check_common(surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori):
    surfaces = _as_surfaces(surfaces)
    cond = np.atleast_1d(np.asarray(conductivities, float))
    if len(cond) != len(surfaces):
        raise ValueError(f"{len(cond)} conductivities for {len(surfaces)} surfaces: one per "
                         "layer, innermost first")
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
            return int(fh.read().split()[1]) * resource.getpagesize() / 2 ** 20
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
        if maxrss > self.maxrss0:                      # a new high-water mark: exact
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

    surfaces, cond, eeg, src_pos, src_ori = _check_common(surfaces, conductivities, eeg_positions,
                                                          meg_sensors, src_pos, src_ori)
    if len(surfaces) not in (1, 3):
        raise ValueError(f"MNE-Python's BEM supports 1 or 3 layers, not {len(surfaces)} "
                         "(use run_openmeeg for other layer counts)")
    with tempfile.TemporaryDirectory() as subjects_dir:
        bem_dir = Path(subjects_dir) / "anchor" / "bem"
        bem_dir.mkdir(parents=True)
        for (v, f), name in zip(surfaces, _MNE_NAMES):
            mne.write_surface(str(bem_dir / f"{name}.surf"), v * 1000.0, f, overwrite=True)
        with _PeakRSS() as mem:
            t0 = time.perf_counter()
            model = mne.make_bem_model("anchor", ico=None, conductivity=tuple(cond),
                                       subjects_dir=subjects_dir, verbose=False)
            bem = mne.make_bem_solution(model, verbose=False)
            t_solution = time.perf_counter() - t0

            t0 = time.perf_counter()
            info, meg_names, eeg_names = _mne_info(eeg, meg_sensors)
            nn = np.tile([0.0, 0.0, 1.0], (len(src_pos), 1))
            src = mne.setup_volume_source_space(pos=dict(rr=src_pos, nn=nn), mindist=0.0,
                                                exclude=0.0, verbose=False)
            fwd = mne.make_forward_solution(info, trans=None, src=src, bem=bem,
                                            meg=bool(meg_names), eeg=bool(eeg_names),
                                            mindist=0.0, verbose=False)
            t_forward = time.perf_counter() - t0
    if fwd["nsource"] != len(src_pos):
        raise RuntimeError(f"MNE kept {fwd['nsource']} of {len(src_pos)} sources (the others lie "
                           "outside the inner surface)")
    data = fwd["sol"]["data"]
    rows = {n: i for i, n in enumerate(fwd["sol"]["row_names"])}
    meg = eeg_gain = None
    if meg_names:
        meg = _points_to_channels(data[[rows[n] for n in meg_names]], meg_sensors)
    if eeg_names:
        eeg_gain = np.array(data[[rows[n] for n in eeg_names]])
    return dict(eeg_gain=_orient(eeg_gain, src_ori), meg_gain=_orient(meg, src_ori),
                times=dict(solution=t_solution, forward=t_forward), peak_mem_mb=float(mem.mb),
                n_unknowns=int(bem["nsol"]), tool=f"MNE-Python {mne.__version__}")


# --------------------------------------------------------------------------- OpenMEEG
def openmeeg_available():
    return OPENMEEG_PY.exists()


def run_openmeeg(surfaces, conductivities, eeg_positions, meg_sensors, src_pos, src_ori=None,
                 timeout_s=600):
    """OpenMEEG symmetric-BEM forward in its own venv; None if OpenMEEG is not
    installed there or the run exceeds ``timeout_s``.  See the module docstring."""
    surfaces, cond, eeg, src_pos, src_ori = _check_common(surfaces, conductivities, eeg_positions,
                                                          meg_sensors, src_pos, src_ori)
    if not openmeeg_available():
        return None
    if src_ori is None:       # three unit dipoles per source, source-major
        dip = np.c_[np.repeat(src_pos, 3, axis=0), np.tile(np.eye(3), (len(src_pos), 1))]
    else:
        dip = np.c_[src_pos, src_ori]
    arrays = dict(n_layers=len(surfaces), conductivities=cond, dipoles=dip,
                  eeg=np.zeros((0, 3)) if eeg is None else eeg,
                  meg_points=np.zeros((0, 3)) if meg_sensors is None else meg_sensors.points,
                  meg_normals=np.zeros((0, 3)) if meg_sensors is None else meg_sensors.normals)
    for k, (v, f) in enumerate(surfaces):
        arrays[f"vertices_{k}"], arrays[f"faces_{k}"] = v, f
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **arrays)
        try:
            proc = subprocess.run([str(OPENMEEG_PY), str(HERE / "_openmeeg_runner.py"), str(src),
                                   str(dst)], env={**os.environ, "PYTHONPATH": ""},
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            raise RuntimeError(f"OpenMEEG runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        out = dict(np.load(dst))
    eeg_gain = out.get("eeg_gain")
    meg = out.get("meg_gain")
    if meg is not None:
        meg = _points_to_channels(meg, meg_sensors)
    return dict(eeg_gain=eeg_gain, meg_gain=meg,
                times=dict(solution=float(out["t_solution"]), forward=float(out["t_forward"])),
                peak_mem_mb=float(out["peak_rss_mb"]), n_unknowns=int(out["n_unknowns"]),
                tool=f"OpenMEEG {out['version']}")
