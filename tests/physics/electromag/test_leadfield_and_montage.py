"""Montages, references, the SphereForward interface, and the MNE-Python cross-check."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.electromag import (
    SphereForward,
    SphereHead,
    apply_moments,
    fixed_orientation,
    sensors,
)
from biosim.physics.electromag.montage import fit_sphere, standard_montage


def test_montages_and_reference():
    m = standard_montage("standard_1020")
    assert "Cz" in m.names and m.positions.shape == (m.n_channels, 3)
    assert (
        standard_montage("standard_1010").n_channels < standard_montage("standard_1005").n_channels
    )
    c, r = fit_sphere(m.positions)
    assert 0.08 < r < 0.11
    cz = standard_montage("standard_1020", reference="Cz", channels=["Fz", "Cz", "Pz"])
    np.testing.assert_allclose(cz.reference_matrix() @ np.array([1.0, 2.0, 4.0]), [-1, 0, 2])
    avg = standard_montage("biosemi64")
    np.testing.assert_allclose((avg.reference_matrix() @ np.arange(64.0)).sum(), 0, atol=1e-9)
    with pytest.raises(ParameterError, match="reference"):
        standard_montage("standard_1020", reference="XYZ")
    with pytest.raises(ParameterError, match="channels"):
        standard_montage("standard_1020", channels=["Cz", "Q9"])


def test_sphere_forward_combines_eeg_and_meg():
    m = standard_montage("standard_1020", channels=["Fz", "Cz", "Pz", "O1", "O2", "T7", "T8"])
    c, r = fit_sphere(standard_montage("standard_1020").positions)
    head = SphereHead.three_shell(radii=(0.8 * r, 0.85 * r, r), center=c)
    meg = sensors.squid_helmet_306(center=c, radius=r + 0.03).select(["mag"])
    fwd = SphereForward(head, eeg=m, meg=meg)
    src = c + np.array([[0.0, 0.0, 0.05], [0.02, -0.03, 0.04]])
    g = np.asarray(fwd.gain(src))
    assert g.shape == (7 + 102, 2, 3)
    assert fwd.channel_kinds[:7] == ("eeg",) * 7 and fwd.channel_kinds[-1] == "mag"
    np.testing.assert_allclose(g[:7].sum(0), 0, atol=1e-12 * np.abs(g[:7]).max())  # avg ref
    fixed = np.asarray(fixed_orientation(fwd.gain(src), np.array([[0, 0, 1.0], [1.0, 0, 0]])))
    np.testing.assert_allclose(fixed[:, 1], g[:, 1, 0])
    data = np.asarray(apply_moments(fwd.gain(src), np.ones((2, 3, 5)) * 1e-8))
    assert data.shape == (109, 5)


@pytest.mark.crosscheck
def test_meg_matches_mne_sphere_forward():
    mne = pytest.importorskip("mne")
    # identical geometry: MNE's point magnetometers (coil type 3024 at 'point' accuracy is
    # not exposed), so compare against MNE's dipole field for the same points via
    # make_forward_solution with a sphere model and a discrete source space.
    helmet = sensors.squid_helmet_306(accuracy="point").select(["mag"])
    from biosim.io.mne_interop import point_magnetometer_info
    from biosim.physics.electromag import meg_gain

    info = point_magnetometer_info(helmet)
    rng = np.random.default_rng(0)
    src_pos = rng.normal(size=(30, 3))
    src_pos = src_pos / np.linalg.norm(src_pos, axis=1)[:, None] * rng.uniform(0.01, 0.07, (30, 1))
    sphere = mne.make_sphere_model(r0=(0.0, 0.0, 0.0), head_radius=None)
    src = mne.setup_volume_source_space(
        pos=dict(rr=src_pos, nn=np.tile([0, 0, 1.0], (30, 1))),
        sphere=(0.0, 0.0, 0.0, 0.09),
        mindist=0.0,
        exclude=0.0,
        verbose=False,
    )
    fwd = mne.make_forward_solution(info, None, src, sphere, meg=True, eeg=False, verbose=False)
    assert fwd["nsource"] == 30
    g_mne = fwd["sol"]["data"].reshape(helmet.n_channels, 30, 3)
    ours = np.asarray(meg_gain(helmet, fwd["src"][0]["rr"][fwd["src"][0]["vertno"]]))
    np.testing.assert_allclose(ours, g_mne, rtol=1e-6, atol=1e-6 * np.abs(g_mne).max())


@pytest.mark.crosscheck
def test_eeg_matches_mne_berg_scherg_within_its_approximation_error():
    mne = pytest.importorskip("mne")
    from biosim.physics.electromag import SphereHead, eeg_gain

    m = standard_montage("biosemi64")
    center, radius = fit_sphere(m.positions)
    info = mne.create_info(list(m.names), 1000.0, "eeg")
    for ch, p in zip(info["chs"], m.positions):
        ch["loc"][:3] = p
    info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
    rng = np.random.default_rng(0)
    d = rng.normal(size=(40, 3))
    pos = center + d / np.linalg.norm(d, axis=1)[:, None] * 0.9 * radius * rng.uniform(
        0.1, 0.9, (40, 1)
    )
    src = mne.setup_volume_source_space(
        pos=dict(rr=pos, nn=np.tile([0, 0, 1.0], (40, 1))),
        sphere=tuple(center) + (0.9 * radius,),
        mindist=0.0,
        exclude=0.0,
        verbose=False,
    )
    sphere = mne.make_sphere_model(r0=tuple(center), head_radius=radius, verbose=False)
    fwd = mne.make_forward_solution(info, None, src, sphere, meg=False, verbose=False)
    g_mne = fwd["sol"]["data"].reshape(64, -1)
    g_ours = np.asarray(eeg_gain(SphereHead.four_shell(radius, center), m.positions, pos)).reshape(
        64, -1
    )
    a, b = g_mne - g_mne.mean(0), g_ours - g_ours.mean(0)
    rdm = np.linalg.norm(a / np.linalg.norm(a, axis=0) - b / np.linalg.norm(b, axis=0), axis=0)
    mag = np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)
    # MNE's Berg-Scherg is within its documented error of the exact series
    assert np.median(rdm) < 0.01 and rdm.max() < 0.04 and np.all(np.abs(mag - 1) < 0.03)
