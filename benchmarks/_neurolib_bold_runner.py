"""Runs neurolib's BOLD integrator (forward Euler, numba) inside the neurolib
venv for benchmarks/hemodynamics.py.  Usage: python this.py IN.npz OUT.npz

IN holds ``u`` (n_regions, n_samples) neural input held over ``dt_input`` s,
``dt_input`` and ``dt_euler`` (s).  OUT gets ``bold`` (n_regions, n_samples)
at the end of each input sample and the wall time of the integration
(numba compilation excluded by a warm-up call).
"""

import sys
import time

import numpy as np
from neurolib.models.bold.timeIntegration import simulateBOLD

data = np.load(sys.argv[1])
u, dt_in, dt = data["u"], float(data["dt_input"]), float(data["dt_euler"])
n_reg, n_in = u.shape
rep = int(round(dt_in / dt))
chunk = max(1, int(round(10.0 / dt_in)))  # 10 s of input per call

ones = np.ones(n_reg)
simulateBOLD(np.zeros((n_reg, 10)), dt, None, X=0 * ones, F=ones, Q=ones, V=ones)  # compile
X, F, Q, V = 0 * ones, ones.copy(), ones.copy(), ones.copy()
out = np.empty((n_reg, n_in))
t0 = time.perf_counter()
elapsed_prep = 0.0
for start in range(0, n_in, chunk):
    tp = time.perf_counter()
    z = np.repeat(u[:, start : start + chunk], rep, axis=1)
    elapsed_prep += time.perf_counter() - tp
    bold, X, F, Q, V = simulateBOLD(z, dt, None, X=X, F=F, Q=Q, V=V)
    out[:, start : start + chunk] = bold[:, rep - 1 :: rep]
wall = time.perf_counter() - t0 - elapsed_prep
np.savez(sys.argv[2], bold=out, wall=wall, steps=n_reg * n_in * rep)
