"""Brain activity of an experiment: what drives the devices.

``[activity]`` picks a model:

``model = "drive"`` (default)
    Each protocol condition drives the regions with a fixed neural input
    (``[activity.drive] condition = [1/s per region]``): the regional neural
    activity is the sum of the active conditions' rows.
``model = "dcm"``
    A bilinear DCM network (Friston, Harrison & Penny 2003) driven by the
    conditions as inputs: ``dz/dt = (A + sum_j u_j B_j) z + C u``, with ``A``
    (Hz; negative diagonal self-inhibition), ``[activity.dcm.B] condition =
    (Hz)`` and ``[activity.dcm.C] condition = [Hz per unit input]``.  The
    values are converted to SPM's parametrisation (diagonal log-scaled,
    inputs x 1/16), so the DCM inversion in :mod:`biosim.inference.dcm` fits
    exactly the model that generated the data.
``model = "neural_mass"``
    SPM's ERP neural mass (Jansen-Rit-type, 9 states per source, conduction
    delays; :mod:`biosim.physics.neural.neural_mass`) driven by the protocol's
    events (each block onset is a stimulus: SPM's Gaussian input bump).
    ``[activity.neural_mass]``: ``forward``, ``backward``, ``lateral`` (n x n
    scale factors of SPM's 32 / 16 / 4 Hz extrinsic couplings, row = target),
    ``[activity.neural_mass.C] condition = [gain per region]``, ``coupling``
    (neurovascular coupling beta) and ``epoch`` (s).  The pyramidal
    depolarisation x9 (mV) times ``moment_per_mv`` is each region's dipole
    moment; the hemodynamic drive follows Jafarian et al. 2020 (NeuroImage
    219:116734; SPM12 ``spm_dcm_nvc_nd``): each event adds ``coupling`` x the
    Hanning-tapered RMS of x9 over the following ``epoch``, spread uniformly
    over that epoch.
``model = "timecourses"``
    Given source time courses: a TSV file (one column per region, header =
    region names, one row per ``activity.dt``), path relative to the TOML.
``model = "network"``
    Whole-brain stochastic linear network (:mod:`biosim.physics.neural.network`;
    the neuronal model of stochastic DCM, Friston et al. 2014 NeuroImage
    94:396): ``dz/dt = (-z + g W z / rho(W)) / tau + C u + w``, integrated
    exactly, for resting-state and task activity over any number of regions.
    ``[activity.network]``:

    - ``connectivity``: ``"distance"`` (default; exponential distance rule,
      ``W_ij = exp(-d_ij / length_scale)`` between the region dipoles) or the
      path (relative to the TOML) of an n x n non-negative matrix in ``.npy``,
      ``.csv``, ``.tsv`` or ``.txt`` (row = target, in ``subject.regions``
      order; e.g. a tractography matrix).
    - ``length_scale`` (m, default 0.02) and ``homotopic`` (weight added
      between mirror-image regions of the two hemispheres, default 0) of the
      distance rule.
    - ``coupling``: global coupling g as a fraction of the critical value, in
      [0, 1) (default 0.5; the slowest mode decays at (1 - g) / tau).
    - ``time_constant``: tau, s (default 1.0).
    - ``noise``: std of an uncoupled region's spontaneous activity, 1/s
      (default 0.02; coupling raises it); 0 gives a noise-free network.
    - ``baseline``: tonic activity added to every region, 1/s (default 0).
      The hemodynamic model starts at rest, so a non-zero baseline gives an
      onset transient of some 20 s (dummy scans).
    - ``[activity.network.inputs] condition = {regions = [names], gain = 0.1}``:
      each protocol condition drives the listed regions (``regions = []``
      drives none); ``gain`` is the activity (1/s) an uncoupled region settles
      at while the condition is on (``C = gain / tau``).  Every protocol
      condition needs an entry.

The result is the neural activity z (n_t, n_regions) in 1/s on the microtime
grid ``activity.dt``: the input of the hemodynamic model and, through the
devices' dipole moments per unit activity, of the EEG/MEG sources.

Focused-ultrasound neuromodulation (switchable): a ``[devices.<key>]`` of
``type = "ultrasound"`` with ``neuromodulation = true`` adds to its target
region's activity, whatever the model, a drive of ``modulation_gain`` (1/s)
times the fraction of each microtime step the transducer emits (its pulses
and bursts within the blocks of its ``condition``): a phenomenological,
duty-cycle-proportional excitation (``modulation_gain < 0`` inhibits).  The
added drive is in the truth as part of ``neural_input`` and, separately, as
``ultrasound_drive`` (:func:`ultrasound_drive`).  With the neural-mass model
it reaches the hemodynamics only (the ERP sources are the model's own).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import ParameterError, SpecError
from .._core.time_stepping import integrate_fixed_step
from .keys import check_keys, require, set_default
from .protocol import Protocol

if TYPE_CHECKING:
    from ..physics.neural.network import NetworkParams

MODELS = ("drive", "dcm", "neural_mass", "timecourses", "network")


def _matrix(value, shape, where):
    arr = np.asarray(value, dtype=float) if isinstance(value, list) else np.zeros(0)
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        what = (
            f"a finite {shape[0]} x {shape[1]} array (list of rows)"
            if len(shape) == 2
            else f"a list of {shape[0]} finite numbers"
        )
        raise SpecError(f"{where} = {value!r} is invalid: expected {what}")
    return arr


def validate_activity(spec: dict, conditions: set[str]) -> None:
    """Validate ``[activity]`` in place; ``conditions`` are those the protocol uses."""
    act, regions = spec["activity"], spec["subject"]["regions"]
    n = len(regions)
    require(act, "dt", "activity", float, lambda v: v > 0, "a positive microtime step in s")
    set_default(
        act,
        "hemodynamics",
        "activity",
        "spm",
        str,
        lambda v: v in ("spm", "friston2000"),
        "'spm' or 'friston2000'",
    )
    default_model = next(
        (m for m in ("dcm", "neural_mass", "timecourses", "network") if m in act), "drive"
    )
    model = set_default(
        act,
        "model",
        "activity",
        default_model,
        str,
        lambda v: v in MODELS,
        f"one of {list(MODELS)}",
    )
    if model == "drive":
        drive = require(
            act,
            "drive",
            "activity",
            dict,
            lambda v: len(v) > 0,
            "a table condition = [input per region]",
        )
        for cond, weights in drive.items():
            if (
                not isinstance(weights, list)
                or len(weights) != n
                or not all(isinstance(w, (int, float)) and np.isfinite(w) for w in weights)
            ):
                raise SpecError(
                    f"activity.drive.{cond} = {weights!r} is invalid: expected a list "
                    f"of {n} finite numbers (one per region, 1/s)"
                )
        defined = set(drive)
    elif model == "dcm":
        dcm = require(act, "dcm", "activity", dict, None, "a table with A, B and C")
        check_keys(dcm, {"A", "B", "C"}, "activity.dcm")
        a = _matrix(require(dcm, "A", "activity.dcm", list), (n, n), "activity.dcm.A")
        if np.any(np.diag(a) >= 0):
            raise SpecError(
                f"activity.dcm.A diagonal = {np.diag(a).tolist()} is invalid: expected "
                "negative self-connections (Hz)"
            )
        c = set_default(
            dcm,
            "C",
            "activity.dcm",
            {},
            dict,
            lambda v: len(v) > 0,
            "a table condition = [Hz per unit input, one per region]",
        )
        for cond, row in c.items():
            _matrix(row, (n,), f"activity.dcm.C.{cond}")
        b = set_default(dcm, "B", "activity.dcm", {}, dict)
        for cond, mat in b.items():
            m = _matrix(mat, (n, n), f"activity.dcm.B.{cond}")
            if np.any(np.diag(m) != 0):
                raise SpecError(
                    f"activity.dcm.B.{cond} has a non-zero diagonal: expected "
                    "modulation of between-region connections only"
                )
        defined = set(c) | set(b)
        unused = defined - conditions
        if unused:
            cond = sorted(unused)[0]
            table = "C" if cond in c else "B"
            raise SpecError(
                f"activity.dcm.{table}.{cond}: condition {cond!r} does not occur in "
                f"protocol.blocks (used: {sorted(conditions)})"
            )
    elif model == "neural_mass":
        nm = require(
            act,
            "neural_mass",
            "activity",
            dict,
            None,
            "a table with forward, backward, lateral and C",
        )
        check_keys(
            nm, {"forward", "backward", "lateral", "C", "coupling", "epoch"}, "activity.neural_mass"
        )
        for key in ("forward", "backward", "lateral"):
            m = _matrix(
                set_default(nm, key, "activity.neural_mass", np.zeros((n, n)).tolist(), list),
                (n, n),
                f"activity.neural_mass.{key}",
            )
            if np.any(m < 0) or np.any(np.diag(m) != 0):
                raise SpecError(
                    f"activity.neural_mass.{key} = {m.tolist()} is invalid: expected "
                    "non-negative scale factors with a zero diagonal"
                )
        c = require(
            nm,
            "C",
            "activity.neural_mass",
            dict,
            lambda v: len(v) > 0,
            "a table condition = [input gain per region]",
        )
        for cond, row in c.items():
            _matrix(row, (n,), f"activity.neural_mass.C.{cond}")
        set_default(
            nm,
            "coupling",
            "activity.neural_mass",
            1.0,
            float,
            lambda v: v >= 0,
            "a non-negative neurovascular coupling (1/s per mV of RMS depolarisation)",
        )
        set_default(
            nm,
            "epoch",
            "activity.neural_mass",
            0.4,
            float,
            lambda v: 0.05 <= v <= 2,
            "an epoch length in [0.05, 2] s",
        )
        set_default(
            act,
            "moment_per_mv",
            "activity",
            1e-8,
            float,
            lambda v: v > 0,
            "a positive dipole moment per mV of pyramidal depolarisation, A m / mV",
        )
        defined = set(c)
    elif model == "network":
        defined = _validate_network(spec, conditions)
    else:
        tc = require(act, "timecourses", "activity", dict, None, "a table with file = 'x.tsv'")
        check_keys(tc, {"file"}, "activity.timecourses")
        require(tc, "file", "activity.timecourses", str)
        read_timecourses(spec)  # an unreadable or malformed file fails here, before any run
        defined = conditions
    missing = conditions - defined
    if missing:
        raise SpecError(
            f"protocol condition {sorted(missing)[0]!r} is not defined in "
            f"[activity.{ {'dcm': 'dcm.C', 'network': 'network.inputs'}.get(model, model) }] "
            f"(defined: "
            f"{sorted(defined)})"
        )


NETWORK_KEYS = (
    "connectivity",
    "length_scale",
    "homotopic",
    "coupling",
    "time_constant",
    "noise",
    "baseline",
    "inputs",
)


def _validate_network(spec: dict, conditions: set[str]) -> set[str]:
    """Check ``[activity.network]`` (defaults filled in); the conditions it defines."""
    act, regions = spec["activity"], spec["subject"]["regions"]
    where = "activity.network"
    net = set_default(act, "network", "activity", {}, dict, None, "a table of network keys")
    check_keys(net, NETWORK_KEYS, where)
    conn = set_default(
        net,
        "connectivity",
        where,
        "distance",
        str,
        lambda v: len(v) > 0,
        "'distance' or the path of an n x n matrix file (.npy, .csv, .tsv, .txt)",
    )
    if conn != "distance":
        read_network_connectivity(spec)  # an unusable file fails here, before any run
    set_default(net, "length_scale", where, 0.02, float, lambda v: v > 0, "a positive length in m")
    set_default(net, "homotopic", where, 0.0, float, lambda v: v >= 0, "a non-negative weight")
    set_default(
        net,
        "coupling",
        where,
        0.5,
        float,
        lambda v: 0 <= v < 1,
        "a fraction of the critical coupling in [0, 1) (1 or more is unstable)",
    )
    set_default(net, "time_constant", where, 1.0, float, lambda v: v > 0, "a positive time in s")
    set_default(
        net,
        "noise",
        where,
        0.02,
        float,
        lambda v: v >= 0,
        "a non-negative std of spontaneous activity, 1/s",
    )
    set_default(
        net, "baseline", where, 0.0, float, lambda v: v >= 0, "a non-negative activity, 1/s"
    )
    inputs = set_default(
        net,
        "inputs",
        where,
        {},
        dict,
        None,
        "a table condition = {regions = [names], gain = 1/s}",
    )
    for cond, entry in inputs.items():
        at = f"{where}.inputs.{cond}"
        if not isinstance(entry, dict):
            raise SpecError(
                f"{at} = {entry!r} is invalid: expected a table {{regions = [names], gain = 1/s}}"
            )
        check_keys(entry, {"regions", "gain"}, at)
        names = require(
            entry,
            "regions",
            at,
            list,
            lambda v: all(isinstance(r, str) for r in v) and len(set(v)) == len(v),
            "a list of distinct region names",
        )
        for name in names:
            if name not in regions:
                raise SpecError(
                    f"{at}.regions: {name!r} is not in subject.regions (expected names from "
                    f"{regions})"
                )
        set_default(
            entry, "gain", at, 0.1, float, None, "the activity (1/s) an uncoupled region reaches"
        )
        if cond not in conditions:
            raise SpecError(
                f"{at}: condition {cond!r} does not occur in protocol.blocks "
                f"(used: {sorted(conditions)})"
            )
    return set(inputs)


def read_network_connectivity(spec: dict) -> np.ndarray:
    """The ``activity.network.connectivity`` matrix file (path relative to the TOML)."""
    from ..physics.neural.network import read_connectivity

    net = spec["activity"]["network"]
    path = Path(net["connectivity"])
    path = path if path.is_absolute() else Path(spec.get("_source_dir", ".")) / path
    try:
        return read_connectivity(path, len(spec["subject"]["regions"]))
    except ParameterError as err:
        raise SpecError(
            f"activity.network.connectivity = {net['connectivity']!r} is invalid: "
            f"expected {err.expected}"
        ) from err


@dataclasses.dataclass(frozen=True)
class DCMTruth:
    """The generating DCM in SPM's parametrisation (see :func:`dcm_parameters`)."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray


class SourceActivity:
    """Dipole moment of each region, given on a time grid and interpolated linearly.

    Parameters
    ----------
    times : array (n_t,)
        s.
    moments : array (n_t, n_regions)
        A m.

    :meth:`at` evaluates the moments at any times, pointwise, so that a device
    asking for a session in chunks gets the same values as in one call.
    """

    def __init__(self, times: np.ndarray, moments: np.ndarray):
        self._times = np.asarray(times, float)
        self._moments = np.asarray(moments)

    @property
    def times(self) -> np.ndarray:
        """Time grid of :attr:`moments`, s."""
        return self._times

    @property
    def moments(self) -> np.ndarray:
        """Moments (n_t, n_regions) on :attr:`times`, A m."""
        return self._moments

    @property
    def n_regions(self) -> int:
        return int(self._moments.shape[1])

    def at(self, times: np.ndarray) -> np.ndarray:
        """Moments (n_times, n_regions) in A m at ``times`` (s), linearly interpolated
        (held constant beyond the grid's ends)."""
        t, grid = np.asarray(times, float), self._times
        i = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, len(grid) - 2)
        w = np.clip((t - grid[i]) / (grid[i + 1] - grid[i]), 0.0, 1.0)[:, None]
        return (1.0 - w) * self._moments[i] + w * self._moments[i + 1]

    def project(self, lead: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``lead @ at(times).T``: the signal (n_channels, n_times) of the moments
        through a lead field (n_channels, n_regions)."""
        return np.asarray(lead) @ self.at(times).T


class RhythmSources(SourceActivity):
    """Moments of the regions as a neural activity times a narrowband rhythm, held
    lazily: ``m_r(t) = k z_r(t) Im[exp(i 2 pi f t) c_r(t)]``.

    ``z`` (1/s) is the neural activity on its microtime grid (held constant over
    each step ``dt``); ``c = exp(i phi)`` is the rhythm's phasor, whose phase
    ``phi`` diffuses (a Wiener process) on a coarse grid ``phase_times`` (10 ms);
    the phasor is interpolated linearly between grid points (its modulus dips
    by (1 - cos(dphi / 2)) between them: ~1 % for a 1 Hz line width).  Nothing
    is stored at a device's sampling rate: :meth:`at` computes the moments of
    any time chunk on demand, pointwise, and :meth:`project` their signal
    through a lead field at a cost independent of the number of regions (the
    lead field is applied on the coarse grid, where the signal is linear in time).

    Parameters
    ----------
    dt : float
        Microtime step of ``neural_input``, s.
    neural_input : array (n_micro, n_regions)
        1/s.
    moment_per_input : float
        k, A m s.
    carrier_hz : float
        f, Hz (0: no rhythm, the moment follows ``z``).
    phase_times : array (n_phase,)
        s.
    phase : array (n_phase, n_regions)
        rad.
    grid_rate : float
        Rate of the grid :attr:`times` / :attr:`moments` that the ground truth
        stores, Hz.
    duration : float
        s.
    """

    def __init__(
        self,
        dt,
        neural_input,
        moment_per_input,
        carrier_hz,
        phase_times,
        phase,
        grid_rate,
        duration,
    ):
        self.dt = float(dt)
        self.neural_input = np.asarray(neural_input)
        self.moment_per_input = float(moment_per_input)
        self.carrier_hz = float(carrier_hz)
        self.phase_times = np.asarray(phase_times, float)
        self.phase = np.asarray(phase)
        self.grid_rate = float(grid_rate)
        self.duration = float(duration)

    @property
    def times(self) -> np.ndarray:
        """The truth grid, ``grid_rate`` Hz over the session, s (computed on demand)."""
        return np.arange(int(np.ceil(self.duration * self.grid_rate)) + 1) / self.grid_rate

    @property
    def moments(self) -> np.ndarray:
        """Moments on :attr:`times` as float32 (computed on demand in blocks, not
        stored), A m."""
        t = self.times
        out = np.empty((len(t), self.n_regions), np.float32)
        step = max(1, int(4e6 // max(self.n_regions, 1)))
        for a in range(0, len(t), step):
            out[a : a + step] = self.at(t[a : a + step])
        return out

    @property
    def n_regions(self) -> int:
        return int(self.neural_input.shape[1])

    def _indices(self, t):
        """Microtime index j, phase-grid index i and weight w of each time."""
        n_micro = self.neural_input.shape[0]
        j = np.clip(np.floor(t / self.dt + 1e-9).astype(np.int64), 0, n_micro - 1)
        grid = self.phase_times
        i = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, len(grid) - 2)
        w = (t - grid[i]) / (grid[i + 1] - grid[i])
        return j, i, w

    def at(self, times: np.ndarray) -> np.ndarray:
        """Moments (n_times, n_regions) in A m at ``times`` (s), computed pointwise."""
        t = np.asarray(times, float)
        j, i, w = self._indices(t)
        m = self.moment_per_input * self.neural_input[j]
        if self.carrier_hz > 0:
            lo, hi = (i.min(), i.max() + 2) if len(i) else (0, 0)
            cos, sin = np.cos(self.phase[lo:hi]), np.sin(self.phase[lo:hi])  # phasors in use
            i, w = i - lo, w[:, None]
            re = (1 - w) * cos[i] + w * cos[i + 1]
            im = (1 - w) * sin[i] + w * sin[i + 1]
            arg = (2 * np.pi * self.carrier_hz * t)[:, None]
            m *= np.sin(arg) * re + np.cos(arg) * im
        return m

    def project(self, lead: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``lead @ at(times).T`` (n_channels, n_times), computed on the coarse grid:
        for each (microtime step, phase interval) the times fall in, the lead field
        meets the moments' two end phasors once; each time then interpolates them."""
        lead = np.asarray(lead, float)
        t = np.asarray(times, float)
        j, i, w = self._indices(t)
        k = self.moment_per_input
        if self.carrier_hz == 0:
            uj, inv = np.unique(j, return_inverse=True)
            return k * np.take(lead @ self.neural_input[uj].T, inv, axis=1)
        n_phase = len(self.phase_times)
        keys, inv = np.unique(j * n_phase + i, return_inverse=True)
        uj, ui = keys // n_phase, keys % n_phase
        z = self.neural_input[uj]  # (U, R)
        p0, p1 = self.phase[ui], self.phase[ui + 1]
        a_re, a_im = lead @ (z * np.cos(p0)).T, lead @ (z * np.sin(p0)).T  # (C, U)
        d_re, d_im = lead @ (z * np.cos(p1)).T - a_re, lead @ (z * np.sin(p1)).T - a_im
        arg = 2 * np.pi * self.carrier_hz * t
        sin, cos = k * np.sin(arg), k * np.cos(arg)
        out = np.take(a_re, inv, axis=1)
        out += w * np.take(d_re, inv, axis=1)
        out *= sin
        im = np.take(a_im, inv, axis=1)
        im += w * np.take(d_im, inv, axis=1)
        im *= cos
        out += im
        return out

    def truth_arrays(self) -> dict[str, np.ndarray]:
        """The compact ground truth: the rhythm's phase grid (with ``neural_input``
        and the spec's ``moment_per_input`` and ``carrier_hz`` it gives the moments)."""
        return {"source_phase_times": self.phase_times, "source_phase": self.phase}


@dataclasses.dataclass(frozen=True)
class Activity:
    """Brain activity of an experiment on the microtime grid.

    Attributes
    ----------
    times : array (n_t,)
        Microtime axis, s.
    condition_inputs : array (n_t, n_conditions)
        Boxcars of the protocol's conditions (alphabetical).
    neural_input : array (n_t, n_regions)
        Neural activity, the input of the hemodynamic model, 1/s.
    dcm : DCMTruth or None
        The generating network of ``model = "dcm"``.
    sources : SourceActivity or None
        Dipole moments the model itself produced (``model = "neural_mass"``);
        otherwise :func:`source_activity` derives them from ``neural_input``.
    pyramidal_depolarisation : array or None
        Neural-mass x9 per region at ``sources.times``, mV.
    network : NetworkParams or None
        The generating network of ``model = "network"`` (structural
        connectivity, coupling, time constant, noise, input gain per condition).
    ultrasound_drive : array or None
        Focused-ultrasound neuromodulatory drive (n_t, n_regions), 1/s, included in
        ``neural_input``.
    """

    times: np.ndarray
    condition_inputs: np.ndarray
    neural_input: np.ndarray
    dcm: DCMTruth | None = None
    sources: SourceActivity | None = None
    pyramidal_depolarisation: np.ndarray | None = None
    network: NetworkParams | None = None
    ultrasound_drive: np.ndarray | None = None

    def truth_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the ground-truth archive (names documented in the pipeline)."""
        out = {
            "times": self.times,
            "neural_input": self.neural_input,
            "condition_inputs": self.condition_inputs,
        }
        if self.ultrasound_drive is not None:
            out["ultrasound_drive"] = self.ultrasound_drive
        if self.dcm is not None:
            out.update(dcm_A=self.dcm.A, dcm_B=self.dcm.B, dcm_C=self.dcm.C)
        if self.pyramidal_depolarisation is not None:
            out["pyramidal_depolarisation"] = self.pyramidal_depolarisation
        if self.network is not None:
            net = self.network
            out.update(
                network_connectivity=net.connectivity,
                network_jacobian=net.jacobian(),
                network_input_gain=net.input_gain,
                network_coupling=np.asarray(net.coupling),
                network_time_constant=np.asarray(net.time_constant),
                network_noise_std=np.asarray(net.noise_std),
            )
        return out


def dcm_parameters(spec: dict, names: tuple[str, ...]):
    """The ``[activity.dcm]`` network in SPM's parametrisation (A, B, C, D arrays)."""
    from ..physics.neural import NeuralParams

    dcm, n = spec["activity"]["dcm"], len(spec["subject"]["regions"])
    a = np.asarray(dcm["A"], float)
    a_spm = a.copy()
    np.fill_diagonal(a_spm, np.log(-2.0 * np.diag(a)))  # -exp(A_ii)/2 = a_ii
    b = np.zeros((len(names), n, n))
    c = np.zeros((n, len(names)))
    for j, cond in enumerate(names):
        if cond in dcm["B"]:
            b[j] = np.asarray(dcm["B"][cond], float)
        if cond in dcm["C"]:
            c[:, j] = 16.0 * np.asarray(dcm["C"][cond], float)  # SPM scales inputs by 1/16
    return NeuralParams(
        A=jnp.asarray(a_spm), B=jnp.asarray(b), C=jnp.asarray(c), D=jnp.zeros((n, n, n))
    )


@jax.jit
def _integrate_bilinear(params, u, dt):
    from ..physics.neural import neural_rhs

    zs, _ = integrate_fixed_step(
        lambda z, uk: neural_rhs(z, uk, params), jnp.zeros(params.A.shape[0]), u, dt, method="rk4"
    )
    return zs


def ultrasound_schedules(table: dict, protocol: Protocol):
    """The :class:`~biosim.physics.thermal.SonicationSchedule` of each block of an
    ultrasound device's ``condition`` (pulse and burst keys of its table)."""
    from ..physics.thermal import SonicationSchedule

    return [
        SonicationSchedule(
            duration=b.duration,
            onset=b.onset,
            pulse_duration=table.get("pulse_duration"),
            pulse_repetition_frequency=table.get("pulse_repetition_frequency"),
            burst_duration=table.get("burst_duration"),
            burst_interval=table.get("burst_interval"),
        )
        for b in protocol.blocks
        if b.condition == table["condition"] and b.duration > 0
    ]


def ultrasound_drive(spec: dict, protocol: Protocol, times: np.ndarray) -> np.ndarray | None:
    """Neuromodulatory drive (n_t, n_regions), 1/s, of the experiment's ultrasound devices
    with ``neuromodulation = true`` on the microtime grid ``times``; None when none."""
    regions = spec["subject"]["regions"]
    dt = spec["activity"]["dt"]
    drive = None
    for key, table in spec["devices"].items():
        if table.get("type", key) != "ultrasound" or not table.get("neuromodulation", False):
            continue
        edges = np.append(times, times[-1] + dt) if len(times) else np.array([0.0, dt])
        frac = np.zeros(len(times))
        for sched in ultrasound_schedules(table, protocol):
            frac += sched.on_fraction(edges)[: len(times)]
        if drive is None:
            drive = np.zeros((len(times), len(regions)))
        drive[:, regions.index(table["target"])] += table["modulation_gain"] * frac
    return drive


def simulate_activity(spec: dict, protocol: Protocol | None = None) -> Activity:
    """Neural activity of a validated spec on the microtime grid ``activity.dt``, with the
    neuromodulatory drive of focused ultrasound added (:func:`ultrasound_drive`)."""
    protocol = protocol or Protocol.from_spec(spec)
    activity = _model_activity(spec, protocol)
    drive = ultrasound_drive(spec, protocol, activity.times)
    if drive is None:
        return activity
    return dataclasses.replace(
        activity, neural_input=activity.neural_input + drive, ultrasound_drive=drive
    )


def _model_activity(spec: dict, protocol: Protocol) -> Activity:
    act = spec["activity"]
    dt = act["dt"]
    n_t = int(round(protocol.duration / dt))
    times = np.arange(n_t) * dt
    u = protocol.boxcars(dt, n_t)
    names = protocol.conditions
    if act["model"] == "drive":
        w = np.array([act["drive"][c] for c in names])  # (n_cond, n_regions)
        return Activity(times, u, u @ w)
    if act["model"] == "dcm":
        params = dcm_parameters(spec, names)
        z = np.asarray(_integrate_bilinear(params, jnp.asarray(u), dt))
        if not np.all(np.isfinite(z)) or np.abs(z).max() > 1e3:
            raise SpecError(
                "activity.dcm: the network is unstable under this protocol "
                f"(|z| reaches {np.nanmax(np.abs(z)):.3g}): expected a stable A"
            )
        return Activity(
            times,
            u,
            z,
            dcm=DCMTruth(np.asarray(params.A), np.asarray(params.B), np.asarray(params.C)),
        )
    if act["model"] == "neural_mass":
        z, sources, x9 = _neural_mass_activity(spec, protocol, times)
        return Activity(times, u, z, sources=sources, pyramidal_depolarisation=x9)
    if act["model"] == "network":
        from ..physics.neural.network import simulate_network

        params = network_parameters(spec, names)
        z = simulate_network(params, u, dt, seed=spec["experiment"]["seed"] + 104729)
        return Activity(times, u, act["network"]["baseline"] + z, network=params)
    return Activity(times, u, read_timecourses(spec))


def network_parameters(spec: dict, names: tuple[str, ...]) -> NetworkParams:
    """The ``[activity.network]`` of a validated spec as :class:`NetworkParams`
    (inputs = the conditions ``names``, in that order)."""
    from ..physics.neural.network import NetworkParams, distance_connectivity
    from .subject import region_dipoles

    net, regions = spec["activity"]["network"], spec["subject"]["regions"]
    if net["connectivity"] == "distance":
        positions, _ = region_dipoles(spec)
        w = distance_connectivity(positions, net["length_scale"], net["homotopic"])
    else:
        w = read_network_connectivity(spec)
    tau = net["time_constant"]
    c = np.zeros((len(regions), len(names)))
    for j, cond in enumerate(names):
        entry = net["inputs"].get(cond, {"regions": []})
        for name in entry["regions"]:
            c[regions.index(name), j] = entry["gain"] / tau
    return NetworkParams(w, net["coupling"], tau, net["noise"] * np.sqrt(2.0 / tau), c)


#: Step of the rhythm's diffusing phase grid, s (the phase is interpolated linearly
#: between: its spectrum, and so the rhythm's Lorentzian line, is unchanged within
#: ~1 / (2 x step) = 50 Hz of the carrier).
PHASE_STEP = 0.01
#: Rate of the source moments' grid in the ground truth, Hz.
SOURCE_TRUTH_RATE = 1000.0
#: Largest source grid (samples x regions) the ground truth stores as moments; beyond it,
#: only the rhythm's phase grid (with ``neural_input`` it gives the moments).
MAX_SOURCE_TRUTH = 2e7


def source_activity(spec: dict, activity: Activity, sample_rates=()) -> SourceActivity:
    """Dipole moments of the regions, drawn once per experiment for every device.

    The neural mass gives its own (on its 1 ms grid); otherwise moment =
    ``activity.moment_per_input`` x neural activity x a narrowband rhythm at
    ``activity.carrier_hz`` whose phase diffuses with a Lorentzian line width
    ``activity.rhythm_bandwidth`` (Hz, a Wiener phase of diffusion 2 pi x width),
    so it is locked to nothing.  The result is lazy (:class:`RhythmSources`):
    devices evaluate it at their own sample times, chunk by chunk, and the
    ground truth keeps it on a 1 kHz grid.  ``sample_rates`` (Hz) are accepted
    for compatibility; nothing depends on them any more.
    """
    if activity.sources is not None:
        return activity.sources
    act = spec["activity"]
    duration = float(spec["experiment"]["duration"])
    n_regions = activity.neural_input.shape[1]
    n_phase = int(np.ceil(duration / PHASE_STEP)) + 2
    phase_times = np.arange(n_phase) * PHASE_STEP
    phase = np.zeros((n_phase, n_regions))
    if act["carrier_hz"] > 0:
        rng = np.random.default_rng(spec["experiment"]["seed"] + 7919)
        steps = rng.normal(
            0.0, np.sqrt(2 * np.pi * act["rhythm_bandwidth"] * PHASE_STEP), phase.shape
        )
        phase = np.cumsum(steps, axis=0)
    return RhythmSources(
        act["dt"],
        activity.neural_input,
        act["moment_per_input"],
        act["carrier_hz"],
        phase_times,
        phase,
        SOURCE_TRUTH_RATE,
        duration,
    )


def _neural_mass_activity(spec: dict, protocol: Protocol, times: np.ndarray):
    from ..physics.neural.neural_mass import ERPParams, event_related_activity

    act, nm = spec["activity"], spec["activity"]["neural_mass"]
    n = len(spec["subject"]["regions"])
    names = protocol.conditions
    c = np.zeros((n, len(names)))
    for j, cond in enumerate(names):
        if cond in nm["C"]:
            c[:, j] = nm["C"][cond]
    params = ERPParams.spm(
        forward=32.0 * np.asarray(nm["forward"]),
        backward=16.0 * np.asarray(nm["backward"]),
        lateral=4.0 * np.asarray(nm["lateral"]),
        input_gain=c,
    )
    onsets = [protocol.onsets(cond) for cond in names]
    duration = protocol.duration
    t_ms, x9 = event_related_activity(params, onsets, duration, dt=1e-3)
    t_ms, x9 = np.asarray(t_ms), np.asarray(x9)
    if not np.all(np.isfinite(x9)):
        raise SpecError("activity.neural_mass: the neural mass produced non-finite states")
    # neurovascular coupling: per event, beta x tapered RMS of x9 over the epoch, spread
    # uniformly over the epoch (unit-area boxcar), as in spm_dcm_nvc_nd ('post')
    n_ep = int(round(nm["epoch"] / 1e-3))
    taper = np.hanning(n_ep)[:, None]
    z = np.zeros((len(times), n))
    dt = act["dt"]
    for b in protocol.blocks:
        k0 = int(round(b.onset / 1e-3))
        seg = x9[k0 : k0 + n_ep]
        rms = np.sqrt(np.mean((taper[: len(seg)] * seg) ** 2, axis=0))
        on = (times >= b.onset - 1e-9) & (times < b.onset + nm["epoch"] - 1e-9)
        z[on] += nm["coupling"] * rms / max(on.sum() * dt, dt)
    return z, SourceActivity(t_ms, act["moment_per_mv"] * x9), x9


def read_timecourses(spec: dict) -> np.ndarray:
    """The ``[activity.timecourses]`` TSV: (duration / dt, n_regions) finite values, 1/s."""
    tc = spec["activity"]["timecourses"]
    where = f"activity.timecourses.file = {tc['file']!r}"
    base = Path(spec.get("_source_dir", "."))
    path = Path(tc["file"])
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise SpecError(f"{where}: {str(path)!r} does not exist")
    n_t = int(round(spec["experiment"]["duration"] / spec["activity"]["dt"]))
    regions = spec["subject"]["regions"]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(
            f"{where}: cannot be read as UTF-8 text ({err}): expected a TSV file "
            "with a header of region names"
        ) from err
    if not lines:
        raise SpecError(
            f"{where}: the file is empty: expected a header of region names "
            f"{regions} and {n_t} rows"
        )
    header = lines[0].split("\t")
    if header != regions:
        raise SpecError(f"{where}: header {header} does not match subject.regions {regions}")
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    for i, row in enumerate(rows):
        try:
            values = [float(x) for x in row]
        except ValueError as err:
            raise SpecError(
                f"{where}: row {i + 2} holds a value that is not a number "
                f"({err}): expected {len(regions)} numbers per row"
            ) from err
        if len(values) != len(regions) or not all(np.isfinite(values)):
            raise SpecError(
                f"{where}: row {i + 2} has {len(values)} values: expected "
                f"{len(regions)} finite numbers (one per region)"
            )
    if len(rows) != n_t:
        raise SpecError(
            f"{where}: {len(rows)} rows found: expected {n_t} rows "
            f"(experiment.duration / activity.dt)"
        )
    return np.array([[float(x) for x in row] for row in rows]).reshape(n_t, len(regions))
