"""The MEG device end to end: FIF read back with MNE-Python, the same sources seen
by a SQUID helmet and an OPM array, and source imaging that finds them."""

import numpy as np
import pytest

from biosim import experiment
from biosim.experiment.devices.meg import sensors_for
from biosim.experiment.subject import sphere_head
from biosim.geometry.source_space import cortical_surface
from biosim.inference.minimum_norm import apply_inverse, make_inverse_operator
from biosim.physics.electromag import meg_gain

mne = pytest.importorskip("mne")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    spec = experiment.load_experiment("opm_vs_squid")
    out = tmp_path_factory.mktemp("meg") / "ds"
    experiment.run_experiment(spec, out, progress=False)
    return spec, out, np.load(out / "derivatives" / "biosim-truth" / "truth.npz")


def _raw(out, acq, picks="meg"):
    return mne.io.read_raw_fif(
        out / "sub-01" / "meg" / f"sub-01_task-opmvssquid_acq-{acq}_meg.fif",
        preload=True,
        verbose="error",
    ).pick(picks)


def test_fif_channels_coils_and_noise(both):
    spec, out, truth = both
    squid, opm = _raw(out, "megsquid"), _raw(out, "megopm")
    assert len(squid.ch_names) == 306 and squid.get_channel_types().count("grad") == 204
    assert len(opm.ch_names) == 160 and set(opm.get_channel_types()) == {"mag"}
    coils = {ch["coil_type"] for ch in squid.info["chs"]}
    assert coils == {
        mne.io.constants.FIFF.FIFFV_COIL_VV_MAG_T3,
        mne.io.constants.FIFF.FIFFV_COIL_VV_PLANAR_T1,
    }
    # channel positions in the file are biosim's sensor positions
    locs = np.array([ch["loc"][:3] for ch in squid.info["chs"]])
    np.testing.assert_allclose(locs, truth["meg_squid_sensor_positions"], atol=1e-6)
    # recorded = noise-free field + white noise at the sensors' floors
    for raw, key in ((squid, "meg_squid"), (opm, "meg_opm")):
        resid = raw.get_data() - truth[f"{key}_clean"]
        ratio = resid.std(axis=1) / truth[f"{key}_noise_std"]
        assert np.all(np.abs(ratio - 1) < 0.1), ratio.min()
    assert [a["description"] for a in squid.annotations] == ["visual", "motor"]


def test_opm_and_squid_see_the_same_sources(both):
    spec, out, truth = both
    # one set of source moments feeds both systems
    for key in ("meg_squid", "meg_opm"):
        np.testing.assert_allclose(
            truth[f"{key}_clean"],
            truth[f"{key}_leadfield"]
            @ np.stack(
                [
                    np.interp(
                        truth[f"{key}_times"], truth["source_times"], truth["source_moments"][:, r]
                    )
                    for r in range(2)
                ]
            ),
            rtol=1e-6,  # the truth's clean signal and source moments are float32
            atol=1e-6 * np.abs(truth[f"{key}_clean"]).max(),
        )
    # on-scalp sensors are closer: the peak field of the same cortical dipole is larger
    # for the radial OPMs than for the helmet magnetometers (Boto et al. 2017: 2-4x)
    types = np.loadtxt(
        out / "sub-01" / "meg" / "sub-01_task-opmvssquid_acq-megsquid_channels.tsv",
        dtype=str,
        skiprows=1,
        usecols=1,
    )
    assert types[-1] == "TRIG"  # the trigger channel comes last
    mags = types[:-1] == "MEGMAG"
    radial_opm = np.arange(0, 160, 2)  # dual-axis cells: radial first
    for r in range(2):
        gain_ratio = (
            np.abs(truth["meg_opm_leadfield"][radial_opm, r]).max()
            / np.abs(truth["meg_squid_leadfield"][mags, r]).max()
        )
        assert 1.5 < gain_ratio < 8, gain_ratio


@pytest.mark.parametrize("key, acq", [("meg_squid", "megsquid"), ("meg_opm", "megopm")])
def test_source_imaging_localises_the_active_region(both, key, acq):
    """sLORETA on the recorded FIF (noise covariance from the pre-stimulus rest) peaks at
    the simulated region during its block."""
    spec, out, truth = both
    data = _raw(out, acq).get_data()
    fs = 1000.0
    rest = data[:, : int(4.5 * fs)]
    cov = np.cov(rest)
    src = cortical_surface("ico3")
    sensors = sensors_for(spec["devices"][key], spec)
    _, center, _ = sphere_head(spec)
    gain = np.asarray(meg_gain(sensors, src.positions, center=center))
    g = np.einsum("csk,sk->cs", gain, src.normals)
    inv = make_inverse_operator(g, cov, snr=3.0)
    for r, (onset, stop) in enumerate(((5.5, 12.5), (17.5, 24.5))):  # visual -> V1, motor -> M1
        seg = data[:, int(onset * fs) : int(stop * fs)]
        power = (apply_inverse(inv, seg, "sLORETA") ** 2).mean(axis=1)
        peak = src.positions[np.argmax(power)]
        err = np.linalg.norm(peak - truth["dipole_positions"][r])
        assert err < 0.02, (key, r, err)
