"""Regenerate spm_hrf_reference.npz: SPM's HRF, basis sets and design
regressors computed by SPM itself under GNU Octave.

Usage::

    SPM12_PATH=/path/to/spm12 python make_spm_hrf_reference.py

Needs ``octave`` on the PATH and scipy.  The cases (RT, microtime
resolution T and reference bin T0, basis set, events) are listed below and
stored in the file next to the values, so the tests read them from there.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import scipy.io

HERE = Path(__file__).resolve().parent
OUT = HERE / "spm_hrf_reference.npz"

# spm_hrf(RT, p, T): (RT, T, p or None)
HRF_CASES = [
    (0.1, 16, None),
    (0.5, 16, None),
    (1.0, 16, None),
    (2.0, 16, None),
    (3.22, 16, None),
    (2.0, 1, None),
    (0.72, 7, None),
    (1.5, 36, None),
    (0.72, 20, [5.5, 15.0, 0.9, 1.1, 4.0, 0.7, 28.0]),
]
BASIS_SETS = [
    "hrf",
    "hrf (with time derivative)",
    "hrf (with time and dispersion derivatives)",
]
# spm_get_bf as called by spm_fMRI_design (xBF.dt = RT / T): (RT, T)
BF_CASES = [(2.0, 16), (0.72, 16), (3.22, 8), (1.0, 36)]
# spm_fMRI_design (units 'secs', no parametric modulation):
# (RT, T, T0, basis, n_scans, conditions [(onsets, durations)])
DESIGN_CASES = [
    (
        2.0,
        16,
        8,
        BASIS_SETS[2],
        60,
        [([0.0625, 3.3, 20.0, 47.1, 90.0], [0.0] * 5), ([10.0, 60.0], [12.0, 8.5])],
    ),
    (0.72, 36, 1, BASIS_SETS[1], 80, [([1.0, 7.2, 30.01], [0.0] * 3), ([5.0], [20.0])]),
    (3.22, 16, 16, BASIS_SETS[0], 40, [([0.0, 33.0, 70.5], [6.44, 0.0, 10.0])]),
]


def _vec(x):
    return "[" + " ".join(repr(float(v)) for v in x) + "]"


def main():
    spm = os.environ.get("SPM12_PATH")
    if not spm:
        raise SystemExit("set SPM12_PATH to an SPM12 (or SPM25) directory")
    lines = [f"addpath('{spm}');", "R = struct();"]
    for i, (rt, t, p) in enumerate(HRF_CASES):
        arg = "[]" if p is None else _vec(p)
        lines.append(f"R.hrf{i} = spm_hrf({rt!r}, {arg}, {t});")
    for i, (rt, t) in enumerate(BF_CASES):
        for j, name in enumerate(BASIS_SETS):
            lines += [
                "clear xBF;",
                f"xBF.dt = {rt!r}/{t}; xBF.T = {t}; xBF.name = '{name}';",
                "xBF = spm_get_bf(xBF);",
                f"R.bf{i}_{j} = xBF.bf;",
            ]
    for i, (rt, t, t0, name, n, conds) in enumerate(DESIGN_CASES):
        lines += [
            "clear SPM;",
            f"SPM.xBF.T = {t}; SPM.xBF.T0 = {t0}; SPM.xBF.UNITS = 'secs';",
            f"SPM.xBF.name = '{name}'; SPM.xBF.Volterra = 1;",
            f"SPM.xY.RT = {rt!r}; SPM.nscan = {n};",
            "SPM.Sess(1).C.C = []; SPM.Sess(1).C.name = {};",
        ]
        for c, (ons, dur) in enumerate(conds):
            u = f"SPM.Sess(1).U({c + 1})"
            lines.append(
                f"{u}.name = {{'c{c}'}}; {u}.ons = {_vec(ons)}; {u}.dur = {_vec(dur)};"
                f" {u}.P.name = 'none';"
            )
        lines += ["SPM = spm_fMRI_design(SPM, false);", f"R.design{i} = SPM.xX.X;"]
    with tempfile.TemporaryDirectory() as tmp:
        mat = Path(tmp) / "out.mat"
        lines.append(f"save('-v7', '{mat}', '-struct', 'R');")
        script = Path(tmp) / "make_ref.m"
        script.write_text("\n".join(lines) + "\n")
        subprocess.run(["octave", "--no-gui", "--quiet", str(script)], check=True, cwd=tmp)
        version = subprocess.run(
            [
                "octave",
                "--no-gui",
                "--quiet",
                "--eval",
                f"addpath('{spm}'); [v, r] = spm('Ver'); disp([v ' r' r])",
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
        ).stdout.strip()
        data = scipy.io.loadmat(mat)
    cases = dict(hrf=HRF_CASES, basis_sets=BASIS_SETS, bf=BF_CASES, design=DESIGN_CASES)
    arrays = {k: np.asarray(v, dtype=float) for k, v in data.items() if not k.startswith("__")}
    arrays["cases_json"] = np.array(json.dumps(cases))
    arrays["spm_version"] = np.array(version)
    tmp_out = OUT.with_suffix(".tmp.npz")
    np.savez_compressed(tmp_out, **arrays)
    os.replace(tmp_out, OUT)
    print(f"wrote {OUT} ({version})")


if __name__ == "__main__":
    main()
