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

The result is the neural activity z (n_t, n_regions) in 1/s on the microtime
grid ``activity.dt``: the input of the hemodynamic model and, through the
devices' dipole moments per unit activity, of the EEG/MEG sources.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._core.errors import SpecError
from ._core.time_stepping import integrate_fixed_step
from .spec import check_keys, require, set_default

MODELS = ("drive", "dcm", "neural_mass", "timecourses")


def _matrix(value, shape, where):
    arr = np.asarray(value, dtype=float) if isinstance(value, list) else np.zeros(0)
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        what = (f"a finite {shape[0]} x {shape[1]} array (list of rows)" if len(shape) == 2
                else f"a list of {shape[0]} finite numbers")
        raise SpecError(f"{where} = {value!r} is invalid: expected {what}")
    return arr


def validate_activity(spec: dict, conditions: set[str]) -> None:
    """Validate ``[activity]`` in place; ``conditions`` are those the protocol uses."""
    act, regions = spec["activity"], spec["subject"]["regions"]
    n = len(regions)
    require(act, "dt", "activity", float, lambda v: v > 0, "a positive microtime step in s")
    set_default(act, "hemodynamics", "activity", "spm", str, lambda v: v in ("spm", "friston2000"),
                "'spm' or 'friston2000'")
    default_model = next((m for m in ("dcm", "neural_mass", "timecourses") if m in act), "drive")
    model = set_default(act, "model", "activity", default_model, str, lambda v: v in MODELS,
                        f"one of {list(MODELS)}")
    if model == "drive":
        drive = require(act, "drive", "activity", dict, lambda v: len(v) > 0,
                        "a table condition = [input per region]")
        for cond, weights in drive.items():
            if (not isinstance(weights, list) or len(weights) != n
                    or not all(isinstance(w, (int, float)) and np.isfinite(w) for w in weights)):
                raise SpecError(f"activity.drive.{cond} = {weights!r} is invalid: expected a list "
                                f"of {n} finite numbers (one per region, 1/s)")
        defined = set(drive)
    elif model == "dcm":
        dcm = require(act, "dcm", "activity", dict, None, "a table with A, B and C")
        check_keys(dcm, {"A", "B", "C"}, "activity.dcm")
        a = _matrix(require(dcm, "A", "activity.dcm", list), (n, n), "activity.dcm.A")
        if np.any(np.diag(a) >= 0):
            raise SpecError(f"activity.dcm.A diagonal = {np.diag(a).tolist()} is invalid: expected "
                            "negative self-connections (Hz)")
        c = set_default(dcm, "C", "activity.dcm", {}, dict, lambda v: len(v) > 0,
                        "a table condition = [Hz per unit input, one per region]")
        for cond, row in c.items():
            _matrix(row, (n,), f"activity.dcm.C.{cond}")
        b = set_default(dcm, "B", "activity.dcm", {}, dict)
        for cond, mat in b.items():
            m = _matrix(mat, (n, n), f"activity.dcm.B.{cond}")
            if np.any(np.diag(m) != 0):
                raise SpecError(f"activity.dcm.B.{cond} has a non-zero diagonal: expected "
                                "modulation of between-region connections only")
        defined = set(c) | set(b)
        unused = defined - conditions
        if unused:
            cond = sorted(unused)[0]
            table = "C" if cond in c else "B"
            raise SpecError(f"activity.dcm.{table}.{cond}: condition {cond!r} does not occur in "
                            f"protocol.blocks (used: {sorted(conditions)})")
    elif model == "neural_mass":
        nm = require(act, "neural_mass", "activity", dict, None,
                     "a table with forward, backward, lateral and C")
        check_keys(nm, {"forward", "backward", "lateral", "C", "coupling", "epoch"},
                   "activity.neural_mass")
        for key in ("forward", "backward", "lateral"):
            m = _matrix(set_default(nm, key, "activity.neural_mass", np.zeros((n, n)).tolist(),
                                    list), (n, n), f"activity.neural_mass.{key}")
            if np.any(m < 0) or np.any(np.diag(m) != 0):
                raise SpecError(f"activity.neural_mass.{key} = {m.tolist()} is invalid: expected "
                                "non-negative scale factors with a zero diagonal")
        c = require(nm, "C", "activity.neural_mass", dict, lambda v: len(v) > 0,
                    "a table condition = [input gain per region]")
        for cond, row in c.items():
            _matrix(row, (n,), f"activity.neural_mass.C.{cond}")
        set_default(nm, "coupling", "activity.neural_mass", 1.0, float, lambda v: v >= 0,
                    "a non-negative neurovascular coupling (1/s per mV of RMS depolarisation)")
        set_default(nm, "epoch", "activity.neural_mass", 0.4, float, lambda v: 0.05 <= v <= 2,
                    "an epoch length in [0.05, 2] s")
        set_default(act, "moment_per_mv", "activity", 1e-8, float, lambda v: v > 0,
                    "a positive dipole moment per mV of pyramidal depolarisation, A m / mV")
        defined = set(c)
    else:
        tc = require(act, "timecourses", "activity", dict, None, "a table with file = 'x.tsv'")
        require(tc, "file", "activity.timecourses", str)
        defined = conditions
    missing = conditions - defined
    if missing:
        raise SpecError(f"protocol condition {sorted(missing)[0]!r} is not defined in "
                        f"[activity.{model if model != 'dcm' else 'dcm.C'}] (defined: "
                        f"{sorted(defined)})")


def condition_inputs(spec: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Microtime boxcars of the protocol's conditions: (times (n_t,), u (n_t, n_cond), names)."""
    exp, act = spec["experiment"], spec["activity"]
    dt = act["dt"]
    n_t = int(round(exp["duration"] / dt))
    times = np.arange(n_t) * dt
    names = sorted({b["condition"] for b in spec["protocol"]["blocks"]})
    u = np.zeros((n_t, len(names)))
    for b in spec["protocol"]["blocks"]:
        on = (times >= b["onset"] - 1e-9) & (times < b["onset"] + b["duration"] - 1e-9)
        u[on, names.index(b["condition"])] = 1.0
    return times, u, names


def dcm_parameters(spec: dict, names: list[str]):
    """The ``[activity.dcm]`` network in SPM's parametrisation (A, B, C, D arrays)."""
    from .physics.neural import NeuralParams

    dcm, n = spec["activity"]["dcm"], len(spec["subject"]["regions"])
    a = np.asarray(dcm["A"], float)
    a_spm = a.copy()
    np.fill_diagonal(a_spm, np.log(-2.0 * np.diag(a)))       # -exp(A_ii)/2 = a_ii
    b = np.zeros((len(names), n, n))
    c = np.zeros((n, len(names)))
    for j, cond in enumerate(names):
        if cond in dcm["B"]:
            b[j] = np.asarray(dcm["B"][cond], float)
        if cond in dcm["C"]:
            c[:, j] = 16.0 * np.asarray(dcm["C"][cond], float)   # SPM scales inputs by 1/16
    return NeuralParams(A=jnp.asarray(a_spm), B=jnp.asarray(b), C=jnp.asarray(c),
                        D=jnp.zeros((n, n, n)))


@jax.jit
def _integrate_bilinear(params, u, dt):
    from .physics.neural import neural_rhs

    zs, _ = integrate_fixed_step(lambda z, uk: neural_rhs(z, uk, params),
                                 jnp.zeros(params.A.shape[0]), u, dt, method="rk4")
    return zs


def simulate_activity(spec: dict) -> dict:
    """Neural activity of a validated spec.

    Returns
    -------
    dict
        ``times`` (n_t,) s, ``neural_input`` (n_t, n_regions) 1/s, ``condition_inputs``
        (n_t, n_conditions) and, for a DCM, its parameters in SPM's parametrisation.
    """
    act = spec["activity"]
    times, u, names = condition_inputs(spec)
    out = {"times": times, "condition_inputs": u}
    if act["model"] == "drive":
        w = np.array([act["drive"][c] for c in names])              # (n_cond, n_regions)
        out["neural_input"] = u @ w
    elif act["model"] == "dcm":
        params = dcm_parameters(spec, names)
        z = np.asarray(_integrate_bilinear(params, jnp.asarray(u), act["dt"]))
        if not np.all(np.isfinite(z)) or np.abs(z).max() > 1e3:
            raise SpecError("activity.dcm: the network is unstable under this protocol "
                            f"(|z| reaches {np.nanmax(np.abs(z)):.3g}): expected a stable A")
        out.update(neural_input=z, dcm_A=np.asarray(params.A), dcm_B=np.asarray(params.B),
                   dcm_C=np.asarray(params.C))
    elif act["model"] == "neural_mass":
        out.update(_neural_mass_activity(spec, times, names))
    else:
        out["neural_input"] = _read_timecourses(spec, len(times))
    return out


def _neural_mass_activity(spec, times, names):
    from .physics.neural.neural_mass import ERPParams, event_related_activity

    act, nm = spec["activity"], spec["activity"]["neural_mass"]
    n = len(spec["subject"]["regions"])
    c = np.zeros((n, len(names)))
    for j, cond in enumerate(names):
        if cond in nm["C"]:
            c[:, j] = nm["C"][cond]
    params = ERPParams.spm(forward=32.0 * np.asarray(nm["forward"]),
                           backward=16.0 * np.asarray(nm["backward"]),
                           lateral=4.0 * np.asarray(nm["lateral"]), input_gain=c)
    onsets = [np.array([b["onset"] for b in spec["protocol"]["blocks"] if b["condition"] == cond])
              for cond in names]
    duration = spec["experiment"]["duration"]
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
    for b in spec["protocol"]["blocks"]:
        k0 = int(round(b["onset"] / 1e-3))
        seg = x9[k0:k0 + n_ep]
        rms = np.sqrt(np.mean((taper[:len(seg)] * seg) ** 2, axis=0))
        on = (times >= b["onset"] - 1e-9) & (times < b["onset"] + nm["epoch"] - 1e-9)
        z[on] += nm["coupling"] * rms / max(on.sum() * dt, dt)
    return {"neural_input": z, "source_times": t_ms,
            "source_moments": act["moment_per_mv"] * x9, "pyramidal_depolarisation": x9}


def _read_timecourses(spec: dict, n_t: int) -> np.ndarray:
    tc = spec["activity"]["timecourses"]
    base = Path(spec.get("_source_dir", "."))
    path = Path(tc["file"])
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise SpecError(f"activity.timecourses.file = {tc['file']!r}: {str(path)!r} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    regions = spec["subject"]["regions"]
    if header != regions:
        raise SpecError(f"activity.timecourses.file: header {header} does not match "
                        f"subject.regions {regions}")
    data = np.array([[float(x) for x in ln.split("\t")] for ln in lines[1:] if ln.strip()])
    if data.shape != (n_t, len(regions)) or not np.all(np.isfinite(data)):
        raise SpecError(f"activity.timecourses.file: {data.shape[0]} finite rows x "
                        f"{data.shape[1] if data.ndim == 2 else 0} columns found: expected "
                        f"{n_t} rows (duration / dt) x {len(regions)} columns")
    return data
