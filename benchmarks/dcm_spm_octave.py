"""DCM for fMRI: biosim against SPM's ``spm_dcm_estimate`` under GNU Octave, on a panel.

Each case simulates data with biosim (exact RK4 integration of the nonlinear
equations, AR(1) noise at SNR 3), then inverts it

1. by SPM (``spm_dcm_estimate`` -> ``spm_nlsi_GN`` / ``spm_int`` or, for a
   nonlinear DCM, ``spm_int_D``) under Octave, the DCM struct built by a
   driver written at run time;
2. by biosim configured as that SPM: ``convention="spm25"`` (current SPM's
   priors; ``"spm12"`` when the SPM directory is SPM12 r7771, detected from its
   ``spm_nlsi_GN``, which then also gets SPM12's expected-curvature noise
   step), ``integrator="spm"`` (bilinear reduction + exact exponential, as
   ``spm_int``), 16 microtime bins per TR, SPM's sampling delays, SPM's data
   treatment (mean removal, scaling to a range of at most 4, a constant
   confound per region with prior variance 1e8) and hyperpriors (6, 1/128).

The panel:

* ``bilinear``: 3 regions, 360 scans, TR 3.22 s, attention-to-motion-like
  design (motion blocks drive V1, attention modulates V1 -> V5), C = 0.6;
* ``misspecified``: the issue-24 data (TR 2 s, 300 scans, 16 s blocks drive
  region 1, attention on for half of each 128 s modulating 1->2 and 2->3 by
  0.5, C = 1.5), fitted without any modulation;
* ``strong``: ``bilinear`` with C = 2 (larger responses, where the rescaling
  and the linearised Balloon model matter more);
* ``nonlinear``: ``bilinear`` plus a D term (PFC's activity gates V1 -> V5,
  D = 0.5); SPM integrates it with ``spm_int_D`` (a second-order local
  linearisation with the Jacobian re-evaluated at the current state), and so
  does biosim here (``integrator="spm_d"``).  (Under Octave, ``spm_int_D``
  departs from SPM's own ``spm_int`` by 23 % of the peak BOLD on this design
  even with D = 0, M.nsteps 3 or 30: its state-dependent Jacobian columns
  count the neural part of J0 x twice, see ``biosim.inference.dcm.model``.)
* ``two_state``: the ``bilinear`` design under the two-state model
  (``DCM.options.two_state = 1``; ``neural_model="two_state"``).

Per case: SPM's and biosim's wall times (biosim's second call, compiled),
iterations and whether each converged, max |posterior mean difference| /
SPM's posterior SD, F difference, and F of biosim evaluated at SPM's posterior
mean (which reproduces SPM's F when the two objectives agree).

Requirements: ``octave`` on PATH and SPM at ``--spm`` or ``$SPM_PATH`` (or
``$SPM12_PATH``).  No MEX files are needed; Octave lacks MATLAB's
``fcnchk``, for which the driver writes a four-line shim into its temporary
directory.  Nothing of SPM is stored in this repository.

Usage: ``python benchmarks/dcm_spm_octave.py --spm /path/to/spm [--cases bilinear,strong]``
(``--cache DIR`` stores SPM's results keyed by the data, so a rerun of
biosim's side does not rerun Octave).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np
import scipy.io

import biosim  # noqa: F401
from biosim.inference.dcm import DCMStructure, fit_dcm, simulate_dcm, spm_prepare_data
from biosim.physics.neural import NeuralParams

NM, N_REG, N_IN, TE, SNR = 16, 3, 2, 0.04, 3.0

_FCNCHK = """function f = fcnchk(f, varargin)
% Octave stand-in for MATLAB's fcnchk (written by biosim's benchmark driver)
if ischar(f), if exist(f) >= 2, f = str2func(f); else, f = inline(f, varargin{:}); end, end
end
"""

_DRIVER = """addpath('{spm}');
warning('off', 'all');
load('{data}');
DCM = struct();
DCM.a = double(a); DCM.b = double(b); DCM.c = double(c);
if numel(d) > 0, DCM.d = double(d); else, DCM.d = zeros({n}, {n}, 0); end
DCM.U.u = u; DCM.U.dt = udt; DCM.U.name = {{'u1', 'u2'}};
DCM.Y.y = y; DCM.Y.dt = tr; DCM.Y.X0 = ones(size(y, 1), 1);
DCM.n = {n}; DCM.v = size(y, 1); DCM.TE = te; DCM.delays = delays(:);
DCM.options = struct('nonlinear', double(numel(d) > 0), 'two_state', two_state, ...
                     'stochastic', 0, 'centre', 0, 'induced', 0, 'nograph', 1, 'maxit', 128);
t0 = tic;
DCM = spm_dcm_estimate(DCM);
wall = toc(t0);
Ep = full(spm_vec(DCM.Ep)); Cp = full(diag(DCM.Cp)); pC = full(diag(DCM.M.pC));
pE = full(spm_vec(DCM.M.pE)); F = DCM.F; scale = DCM.Y.scale; yhat = DCM.y;
save('-v7', '{out}', 'Ep', 'Cp', 'pC', 'pE', 'F', 'wall', 'scale', 'yhat');
"""


@dataclasses.dataclass
class Case:
    """One panel row: data (y, u), the generating truth and the fitted structure."""

    name: str
    y: np.ndarray
    u: np.ndarray
    fit: DCMStructure  # SPM-configured structure used by biosim
    note: str = ""


def _att_motion_design(tr, n_scans):
    """Inputs at TR/16: motion blocks (20 s on/off), attention on every other block."""
    t = np.arange(n_scans * NM) * tr / NM
    u = np.zeros((n_scans * NM, N_IN))
    u[:, 0] = (t % 40) < 20
    u[:, 1] = ((t % 80) < 40) * u[:, 0]
    return u


def _masks():
    a = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)  # V1 <-> V5 <-> PFC
    b = np.zeros((N_IN, N_REG, N_REG), bool)
    b[1, 1, 0] = True  # attention on V1 -> V5
    c = np.zeros((N_REG, N_IN), bool)
    c[0, 0] = True  # motion drives V1
    return a, b, c


def case(name, convention="spm25") -> Case:
    """Data and fitted structure of one panel case (see the module docstring)."""
    a, b, c = _masks()
    d_mask = None
    tr, n_scans, seed = 3.22, 360, 7
    a_true = np.array([[0.0, -0.1, 0.0], [0.3, 0.0, -0.1], [0.0, 0.25, 0.0]])
    b_true = np.zeros((N_IN, N_REG, N_REG))
    b_true[1, 1, 0] = 0.3
    c_true = np.zeros((N_REG, N_IN))
    c_true[0, 0] = 0.6
    d_true = np.zeros((N_REG,) * 3)
    neural_model, fit_b, integ, note = "one_state", b, "spm", ""
    if name == "bilinear":
        pass
    elif name == "strong":
        c_true[0, 0] = 2.0
    elif name == "misspecified":
        tr, n_scans, seed = 2.0, 300, 0
        a_true = np.array([[0.0, 0.1, 0.0], [0.4, 0.0, 0.1], [0.0, 0.4, 0.0]])
        b = np.zeros((N_IN, N_REG, N_REG), bool)
        b[1, 1, 0] = b[1, 2, 1] = True
        b_true = np.where(b, 0.5, 0.0)
        c_true[0, 0] = 1.5
        fit_b = np.zeros_like(b)
        note = "fitted without modulation"
    elif name == "nonlinear":
        d_mask = np.zeros((N_REG,) * 3, bool)
        d_mask[2, 1, 0] = True  # PFC activity gates V1 -> V5
        d_true = np.where(d_mask, 0.5, 0.0)
        integ, note = "spm_d", "SPM spm_int_D, biosim spm_d"
    elif name == "two_state":
        neural_model = "two_state"
        a_true = np.zeros((N_REG, N_REG))  # log scales: coupling exp(0) / 8 Hz
        a_true[1, 0] = 0.5
        b_true[1, 1, 0] = 0.5
        c_true[0, 0] = 1.0
    else:
        raise ValueError(f"unknown case {name}")
    if name == "misspecified":
        t = np.arange(n_scans * NM) * tr / NM
        u = np.zeros((n_scans * NM, N_IN))
        u[:, 0] = (t % 32) < 16
        u[:, 1] = (t % 128) < 64
    else:
        u = _att_motion_design(tr, n_scans)
    common = dict(
        tr=tr,
        n_micro=NM,
        field_strength=1.5,
        echo_time=TE,
        convention=convention,
        delays=tr / 2,
        neural_model=neural_model,
    )
    gen = DCMStructure(a, b, c, d_mask, integrator="rk4", substeps=4, **common)
    theta = gen.pack(NeuralParams(a_true, b_true, c_true, d_true))
    y, _ = simulate_dcm(gen, theta, u, snr=SNR, seed=seed)
    fit = DCMStructure(
        a, fit_b, c, d_mask, integrator=integ, substeps=4 if integ == "rk4" else 1, **common
    )
    return Case(name, y, u, fit, note)


def names(structure):
    """Parameter names of biosim's free vector."""
    n, m = structure.n_regions, structure.n_inputs
    full = (
        [f"A[{i},{j}]" for i in range(n) for j in range(n)]
        + [f"B{k}[{i},{j}]" for k in range(m) for i in range(n) for j in range(n)]
        + [f"C[{i},{k}]" for i in range(n) for k in range(m)]
        + [f"D{k}[{i},{j}]" for k in range(n) for i in range(n) for j in range(n)]
        + [f"transit[{i}]" for i in range(n)]
        + [f"decay[{i}]" for i in range(n)]
        + ["epsilon"]
    )
    return [full[i] for i in structure.free_index()]


def spm_names(n, m, nonlinear):
    """Names of ``spm_vec(DCM.Ep)`` (column-major A(:), B(:), C(:), D(:))."""
    return (
        [f"A[{i},{j}]" for j in range(n) for i in range(n)]
        + [f"B{k}[{i},{j}]" for k in range(m) for j in range(n) for i in range(n)]
        + [f"C[{i},{k}]" for k in range(m) for i in range(n)]
        + ([f"D{k}[{i},{j}]" for k in range(n) for j in range(n) for i in range(n)] * nonlinear)
        + [f"transit[{i}]" for i in range(n)]
        + ["decay[0]", "epsilon"]
    )


def spm_flavour(spm_path):
    """("spm25", "observed") for current SPM, ("spm12", "expected") for SPM12 r7771
    (its ``spm_nlsi_GN`` lacks the observed-curvature term of the noise step)."""
    with open(os.path.join(spm_path, "spm_nlsi_GN.m")) as fh:
        src = fh.read()
    if "dFdhh = dFdhh + diag(dFdh)" in src:
        return "spm25", "observed"
    return "spm12", "expected"


def run_spm(cs: Case, spm_path, timeout=3600, cache=None):
    """Invert ``cs`` with SPM under Octave; returns a dict (or raises RuntimeError)."""
    s = cs.fit
    d = np.zeros((0,)) if not s.d.any() else np.moveaxis(s.d, 0, -1).astype(float)
    data_dict = dict(
        y=cs.y,
        u=cs.u,
        udt=s.tr / NM,
        tr=s.tr,
        te=TE,
        a=s.a.astype(float),
        b=np.moveaxis(s.b, 0, -1).astype(float),
        c=s.c.astype(float),
        d=d,
        two_state=float(s.neural_model == "two_state"),
        delays=np.asarray(s.delays, float),
    )
    key = hashlib.sha256(
        pickle.dumps((sorted((k, np.asarray(v).tobytes()) for k, v in data_dict.items()), spm_path))
    ).hexdigest()[:16]
    if cache:
        path = os.path.join(cache, f"{cs.name}_{key}.pkl")
        if os.path.exists(path):
            with open(path, "rb") as fh:
                return pickle.load(fh)
    octave = shutil.which("octave")
    if octave is None:
        raise RuntimeError("octave not found on PATH")
    with tempfile.TemporaryDirectory(prefix="biosim_spm_") as tmp:
        data, out = os.path.join(tmp, "data.mat"), os.path.join(tmp, "out.mat")
        scipy.io.savemat(data, data_dict)
        with open(os.path.join(tmp, "fcnchk.m"), "w") as fh:
            fh.write(_FCNCHK)
        with open(os.path.join(tmp, "biosim_dcm_driver.m"), "w") as fh:
            fh.write(_DRIVER.format(spm=spm_path, data=data, out=out, n=s.n_regions))
        t0 = time.perf_counter()
        proc = subprocess.run(
            [octave, "--no-gui", "--quiet", "--no-window-system", "--eval", "biosim_dcm_driver"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        total = time.perf_counter() - t0
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(
                f"octave failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        res = scipy.io.loadmat(out)
    result = dict(
        Ep=res["Ep"].ravel(),
        var=res["Cp"].ravel(),
        prior_var=res["pC"].ravel(),
        prior_mean=res["pE"].ravel(),
        F=float(res["F"].squeeze()),
        wall=float(res["wall"].squeeze()),
        total=total,
        iterations=len(re.findall(r"EM:\([+-]\)", proc.stdout)),
        converged="convergence" in proc.stdout,
        prediction=res["yhat"],
        scale=float(res["scale"].squeeze()),
    )
    if cache:
        os.makedirs(cache, exist_ok=True)
        tmp_path = path + ".tmp"
        with open(tmp_path, "wb") as fh:
            pickle.dump(result, fh)
        os.replace(tmp_path, path)
    return result


def run_biosim(structure, y, u, hyper_curvature="observed"):
    """Fit twice (compile, then timed) with SPM's data treatment."""
    yp, scale = spm_prepare_data(y)
    x0 = np.ones((y.shape[0], 1))
    kw = dict(confounds=x0, max_iter=128, hyper_curvature=hyper_curvature)
    t0 = time.perf_counter()
    fit_dcm(structure, yp, u, **kw)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = fit_dcm(structure, yp, u, **kw)
    return r, time.perf_counter() - t0, t_first, scale


def compare_case(name, spm_path, cache=None, verbose=True):
    """One panel row: SPM and biosim on case ``name``; returns a dict of figures."""
    convention, curvature = spm_flavour(spm_path)
    cs = case(name, convention)
    s = cs.fit
    spm = run_spm(cs, spm_path, cache=cache)
    r_b, t_b, t_b1, scale = run_biosim(s, cs.y, cs.u, curvature)
    nm = names(s)
    sn = spm_names(s.n_regions, s.n_inputs, bool(s.d.any()))
    free = spm["prior_var"] > 0
    spm_map = {
        k: (m, v, pm)
        for k, m, v, pm, f in zip(sn, spm["Ep"], spm["var"], spm["prior_mean"], free)
        if f
    }
    if set(spm_map) != set(nm):
        raise RuntimeError(f"free parameters differ: SPM {sorted(spm_map)} biosim {nm}")
    prior_mean, _ = s.prior()
    rows = []
    for i, key in enumerate(nm):
        m_s, v_s, pm_s = spm_map[key]
        if abs(pm_s - prior_mean[i]) > 1e-12:
            raise RuntimeError(f"prior mean of {key}: SPM {pm_s}, biosim {prior_mean[i]}")
        rows.append(
            (key, m_s, r_b.vl.mean[i], np.sqrt(v_s), abs(r_b.vl.mean[i] - m_s) / np.sqrt(v_s))
        )
    theta_spm = np.array([spm_map[key][0] for key in nm])
    yp, _ = spm_prepare_data(cs.y)
    x0 = np.ones((cs.y.shape[0], 1))
    at_spm = fit_dcm(
        s, yp, cs.u, confounds=x0, init=theta_spm, max_iter=0, hyper_curvature=curvature
    )
    out = dict(
        name=name,
        note=cs.note,
        spm=spm,
        biosim=dict(
            F=r_b.free_energy,
            wall=t_b,
            first=t_b1,
            iterations=r_b.vl.n_iterations,
            converged=r_b.vl.converged,
            reason=r_b.vl.reason,
        ),
        F_at_spm=at_spm.free_energy,
        rows=rows,
        max_diff_sd=max(r[4] for r in rows),
        dF=r_b.free_energy - spm["F"],
        scale=(spm["scale"], scale),
    )
    if verbose:
        print(
            f"{name}: {len(nm)} parameters; SPM F {spm['F']:.2f} ({spm['iterations']} it, "
            f"converged {spm['converged']}), biosim F {r_b.free_energy:.2f} "
            f"({r_b.vl.n_iterations} it, {r_b.vl.reason}); biosim F at SPM's mean "
            f"{at_spm.free_energy:.2f}; max |d mean|/SD {out['max_diff_sd']:.3f}; "
            f"SPM {spm['wall']:.1f} s, biosim {t_b:.2f} s (first call {t_b1:.1f} s)"
        )
        for r in rows:
            print(
                f"    {r[0]:12s} SPM {r[1]:+9.4f} biosim {r[2]:+9.4f} SD {r[3]:7.4f} "
                f"|d|/SD {r[4]:6.3f}"
            )
    return out


CASES = ("bilinear", "misspecified", "strong", "nonlinear", "two_state")


def panel(spm_path, cases=CASES, cache=None, verbose=True):
    """Run the panel; returns the per-case dicts and prints a markdown table."""
    results = [compare_case(c, spm_path, cache=cache, verbose=verbose) for c in cases]
    lines = [
        "| model | SPM time (s) | biosim time (s) | SPM it. (conv.) | biosim it. (reason) "
        "| max abs(d mean)/SD | dF (nats) | biosim F at SPM mean - SPM F |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sp, bi = r["spm"], r["biosim"]
        label = r["name"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(
            f"| {label} | {sp['wall']:.1f} | {bi['wall']:.2f} | {sp['iterations']} "
            f"({'yes' if sp['converged'] else 'no'}) | {bi['iterations']} ({bi['reason']}) "
            f"| {r['max_diff_sd']:.3f} | {r['dF']:+.2f} | {r['F_at_spm'] - sp['F']:+.2f} |"
        )
    if verbose:
        print("\n".join(lines))
    return results, lines


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--spm",
        default=os.environ.get("SPM_PATH") or os.environ.get("SPM12_PATH"),
        help="SPM directory (default: $SPM_PATH or $SPM12_PATH)",
    )
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--cache", default=None, help="directory caching SPM's results")
    ap.add_argument("--spm-only", action="store_true", help="only run (and cache) SPM")
    args = ap.parse_args()
    if not args.spm:
        raise SystemExit("SPM directory needed: --spm or $SPM_PATH")
    todo = [c for c in args.cases.split(",") if c]
    if args.spm_only:
        for c in todo:
            conv, _ = spm_flavour(args.spm)
            r = run_spm(case(c, conv), args.spm, cache=args.cache)
            print(f"{c}: SPM F {r['F']:.2f}, {r['iterations']} it, {r['wall']:.1f} s", flush=True)
    else:
        panel(args.spm, todo, cache=args.cache)
