"""EEG and MEG of one cortical dipole in a three-shell sphere: exact EEG series,
Berg-Scherg approximation and SQUID vs OPM magnetometers.

Run: ``python examples/sphere_leadfield_meg_eeg.py``
"""

# %%
import numpy as np

import biosim  # noqa: F401
from biosim.physics.electromag import (
    SphereHead,
    berg_scherg_potential,
    eeg_potential,
    fit_berg_parameters,
    meg_gain,
    opm_array,
    squid_helmet_306,
)
from biosim.physics.electromag.montage import fit_sphere, standard_montage


def run():
    eeg = standard_montage("standard_1020")
    center, radius = fit_sphere(eeg.positions)
    head = SphereHead.three_shell(radii=(0.87 * radius, 0.92 * radius, radius), center=center)
    r0 = center + np.array([0.0, -0.05, 0.05])
    q = np.array([1e-8, 0.0, 0.0])  # 10 nA m, tangential
    v_exact = np.asarray(eeg_potential(head, eeg.positions, r0, q))
    v_berg = np.asarray(
        berg_scherg_potential(head, eeg.positions, r0, q, fit_berg_parameters(head))
    )
    a, b = v_exact - v_exact.mean(), v_berg - v_berg.mean()
    rdm = np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b))
    squid = squid_helmet_306(center=center, radius=radius + 0.03).select(["mag"])
    opm = opm_array(100, scalp_radius=radius, center=center)
    b_squid = np.abs(np.asarray(meg_gain(squid, r0[None], center))[:, 0] @ q).max()
    b_opm = np.abs(np.asarray(meg_gain(opm, r0[None], center))[:, 0] @ q).max()
    return dict(
        eeg_peak_uv=1e6 * np.abs(a).max(),
        berg_rdm=rdm,
        squid_ft=1e15 * b_squid,
        opm_ft=1e15 * b_opm,
    )


# %%
if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v:.4g}")
