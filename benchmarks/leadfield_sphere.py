"""Spherical lead fields: biosim vs MNE-Python on identical geometry, one run.

Problem: 306 MEG channels (102 Vectorview-type magnetometers + 204 planar
gradiometers, MNE's "accurate" coil integration points, on biosim's helmet
cap) + 64 EEG electrodes (BioSemi 64) x 8196 sources x 3 orientations, in
MNE's default 4-shell sphere (relative radii 0.90/0.92/0.97/1.0,
conductivities 0.33/1.0/0.004/0.33 S/m).

* MEG: both compute Sarvas' field at MNE's own coil integration points
  (taken from MNE's coil definitions through its private helper
  ``mne.forward._make_forward._create_meg_coils``), so they must agree to
  round-off.
* EEG: MNE uses the Berg-Scherg approximation, biosim the exact multi-shell
  series.  Accuracy is measured against biosim's exact series (validated in
  tests/physics/electromag to 1e-12): RDM and MAG per source, average reference.

Times exclude JAX compilation (reported separately) and MNE's one-off setup
is included in its forward time, as a user would experience it.
"""

from __future__ import annotations

import time

import jax
import numpy as np

import biosim  # noqa: F401
from biosim.physics.electromag import MEGSensors, SphereHead, eeg_gain, meg_gain, sensors
from biosim.physics.electromag.montage import fit_sphere, standard_montage


def mne_setup(helmet, eeg_names, eeg_pos, center, radius):
    import mne
    from mne.forward._make_forward import _create_meg_coils
    from mne.io.constants import FIFF

    names = list(helmet.names) + list(eeg_names)
    types = ["mag" if k == "mag" else "grad" for k in helmet.kinds] + ["eeg"] * len(eeg_names)
    info = mne.create_info(names, 1000.0, types)
    # coil frames: ez = outward normal, ex = gradient axis for gradiometers
    for i, ch in enumerate(info["chs"][: helmet.n_channels]):
        p = helmet.positions[i]
        if helmet.kinds[i] == "grad":
            ex = helmet.orientations[i]
            normal = helmet.normals[helmet.channel == i][0]
        else:
            normal = helmet.orientations[i]
            ex = np.cross(normal, [1.0, 0, 0] if abs(normal[0]) < 0.9 else [0, 1.0, 0])
            ex /= np.linalg.norm(ex)
        ez = normal / np.linalg.norm(normal)
        ey = np.cross(ez, ex)
        ch["loc"][:12] = np.r_[p, ex, ey, ez]
        ch["coil_type"] = (
            FIFF.FIFFV_COIL_VV_PLANAR_T1 if helmet.kinds[i] == "grad" else FIFF.FIFFV_COIL_VV_MAG_T3
        )
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD
    for ch, p in zip(info["chs"][helmet.n_channels :], eeg_pos):
        ch["loc"][:3] = p
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD
    info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
    coils = _create_meg_coils(info["chs"][: helmet.n_channels], "accurate")  # what MNE uses
    pts, nrm, w, chan = [], [], [], []
    for i, c in enumerate(coils):
        pts.append(c["rmag"])
        nrm.append(c["cosmag"])
        w.append(c["w"])
        chan.append(np.full(len(c["w"]), i))
    same = MEGSensors(
        helmet.names,
        helmet.kinds,
        np.concatenate(pts),
        np.concatenate(nrm),
        np.concatenate(w),
        np.concatenate(chan),
        helmet.positions,
        helmet.orientations,
    )
    sphere = mne.make_sphere_model(r0=tuple(center), head_radius=radius, verbose=False)
    return info, same, sphere


def rdm_mag(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    return np.linalg.norm(a / na - b / nb, axis=0), na / nb


def main(n_sources=8196):
    import mne

    eeg = standard_montage("biosemi64")
    center, radius = fit_sphere(eeg.positions)
    helmet = sensors.squid_helmet_306(center=center, radius=radius + 0.03)
    info, meg_same, sphere = mne_setup(helmet, eeg.names, eeg.positions, center, radius)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(n_sources, 3))
    src = center + d / np.linalg.norm(d, axis=1)[:, None] * (0.9 * radius * 0.95) * rng.uniform(
        0.05, 1.0, (n_sources, 1)
    ) ** (1 / 3)
    head = SphereHead.four_shell(scalp_radius=radius, center=center)

    # --- MNE
    t0 = time.perf_counter()
    src_mne = mne.setup_volume_source_space(
        pos=dict(rr=src, nn=np.tile([0, 0, 1.0], (n_sources, 1))),
        sphere=tuple(center) + (0.9 * radius,),
        mindist=0.0,
        exclude=0.0,
        verbose=False,
    )
    fwd = mne.make_forward_solution(info, None, src_mne, sphere, meg=True, eeg=True, verbose=False)
    t_mne = time.perf_counter() - t0
    g_mne = fwd["sol"]["data"].reshape(len(info["chs"]), n_sources, 3)

    # --- biosim
    def run():
        return meg_gain(meg_same, src, center), eeg_gain(head, eeg.positions, src)

    t0 = time.perf_counter()
    jax.block_until_ready(run())
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    g_meg, g_eeg = jax.block_until_ready(run())
    t_bio = time.perf_counter() - t0
    g_meg, g_eeg = np.asarray(g_meg), np.asarray(g_eeg)

    meg_err = np.max(np.abs(g_meg - g_mne[:306])) / np.max(np.abs(g_mne[:306]))
    eeg_mne = g_mne[306:].reshape(64, -1)
    eeg_bio = g_eeg.reshape(64, -1)
    keep = np.linalg.norm(eeg_bio - eeg_bio.mean(0), axis=0) > 0
    rdm, mag = rdm_mag(eeg_mne[:, keep], eeg_bio[:, keep])
    print(
        f"# {meg_same.n_channels} MEG ({len(meg_same.weights)} coil points) + 64 EEG x {n_sources} "
        f"sources x 3, 4-shell sphere r = {radius * 1000:.1f} mm"
    )
    print(
        f"{'tool':10s} {'forward (s)':>12s} {'MEG vs Sarvas':>14s} {'EEG RDM med/max':>18s} "
        f"{'EEG MAG min/max':>17s}"
    )
    print(
        f"{'MNE':10s} {t_mne:12.2f} {meg_err:14.1e} {np.median(rdm):8.4f}/{rdm.max():<8.4f} "
        f"{mag.min():8.4f}/{mag.max():<8.4f}  (Berg-Scherg EEG)"
    )
    print(
        f"{'biosim':10s} {t_bio:12.2f} {'(reference)':>14s} {'exact series':>18s} {'':>17s}"
        f"  (first call incl. compile {t_first:.2f} s)"
    )
    print(
        f"speed-up biosim vs MNE: {t_mne / t_bio:.1f}x after compilation, "
        f"{t_mne / t_first:.1f}x including compilation"
    )


if __name__ == "__main__":
    main()
