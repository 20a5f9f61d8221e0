"""Inverse operator: biosim vs MNE-Python, 306 MEG (mag) + 64 EEG-sized problem.

Same gain matrix for both: MNE's own sphere forward of 370 point magnetometers
on biosim's helmet layout x 8196 free-orientation sources (volume source
space from positions); noise covariance diagonal; loose=1 (free), depth=None
(so both packages solve the identical problem); dSPM with lambda2 = 1/9.
Times: building the inverse operator, and applying it to 1000 samples.
Agreement: max relative difference of the dSPM source estimates.
"""

from __future__ import annotations

import time

import numpy as np

import biosim  # noqa: F401
from biosim.inference.minimum_norm import apply_inverse, make_inverse_operator
from biosim.physics.electromag import sensors


def main(n_sources=8196, n_channels=370, n_times=1000):
    import mne

    from biosim.io.mne_interop import point_magnetometer_info

    helmet = sensors.opm_array(n_channels, scalp_radius=0.1, standoff=0.02)
    info = point_magnetometer_info(helmet)
    names = info["ch_names"]
    rng = np.random.default_rng(0)
    d = rng.normal(size=(n_sources, 3))
    pos = d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(0.02, 0.075, (n_sources, 1))
    src = mne.setup_volume_source_space(
        pos=dict(rr=pos, nn=np.tile([0, 0, 1.0], (n_sources, 1))),
        sphere=(0, 0, 0, 0.09),
        mindist=0.0,
        exclude=0.0,
        verbose=False,
    )
    fwd = mne.make_forward_solution(
        info, None, src, mne.make_sphere_model((0, 0, 0), None), eeg=False, verbose=False
    )
    gain = fwd["sol"]["data"].reshape(len(names), -1, 3)
    noise = np.diag(rng.uniform(0.5, 2, len(names)) * (10e-15) ** 2)
    cov = mne.Covariance(noise, names, [], [], nfree=1000)
    y = rng.normal(size=(len(names), n_times)) * 1e-13
    evoked = mne.EvokedArray(y, info, nave=1, verbose=False)

    t0 = time.perf_counter()
    inv_mne = mne.minimum_norm.make_inverse_operator(
        info, fwd, cov, loose=1.0, depth=None, verbose=False
    )
    t_make_mne = time.perf_counter() - t0
    t0 = time.perf_counter()
    stc = mne.minimum_norm.apply_inverse(
        evoked, inv_mne, lambda2=1 / 9, method="dSPM", pick_ori="vector", verbose=False
    )
    t_apply_mne = time.perf_counter() - t0

    t0 = time.perf_counter()
    inv = make_inverse_operator(gain, noise, depth=None, snr=3.0)
    t_make = time.perf_counter() - t0
    t0 = time.perf_counter()
    est = apply_inverse(inv, y, "dSPM")
    t_apply = time.perf_counter() - t0
    err = np.max(np.abs(est - stc.data)) / np.max(np.abs(stc.data))
    print(f"# {len(names)} channels x {n_sources} sources x 3, dSPM, {n_times} samples")
    print(f"{'tool':8s} {'make (s)':>9s} {'apply (s)':>10s}")
    print(f"{'MNE':8s} {t_make_mne:9.2f} {t_apply_mne:10.2f}")
    print(
        f"{'biosim':8s} {t_make:9.2f} {t_apply:10.2f}   agreement {err:.1e}; "
        f"ratios make {t_make_mne / t_make:.1f}x, apply {t_apply_mne / t_apply:.1f}x"
    )


if __name__ == "__main__":
    main()
