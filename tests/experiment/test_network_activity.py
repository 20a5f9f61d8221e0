"""``model = "network"``: a whole-brain linear network over the subject's regions,
driven by the protocol's conditions; its keys are checked before any run."""

import copy

import numpy as np
import pytest

from biosim import SpecError, experiment
from biosim.experiment.activity import simulate_activity, validate_activity

REGIONS = ["V1", "V5", "A1", "M1", "PFC"]


@pytest.fixture(scope="module")
def base():
    """The fMRI experiment (240 s, visual/attention blocks) over 5 regions, network model."""
    spec = experiment.load_experiment("fmri")
    spec["subject"]["regions"] = list(REGIONS)
    spec["activity"] = {
        "model": "network",
        "dt": 0.1,
        "hemodynamics": "spm",
        "network": {
            "coupling": 0.5,
            "time_constant": 1.0,
            "noise": 0.01,
            "inputs": {
                "visual": {"regions": ["V1", "V5"], "gain": 0.1},
                "attention": {"regions": ["PFC"]},
            },
        },
        "moment_per_input": 1e-6,
        "carrier_hz": 0.0,
        "rhythm_bandwidth": 1.0,
    }
    return spec


def _validated(spec):
    spec = copy.deepcopy(spec)
    validate_activity(spec, {"visual", "attention"})
    return spec


def test_network_drives_the_listed_regions(base):
    spec = _validated(base)
    net = spec["activity"]["network"]
    assert net["connectivity"] == "distance" and net["length_scale"] == 0.02
    assert net["inputs"]["attention"]["gain"] == 0.1  # default filled in
    act = simulate_activity(spec)
    z, u = act.neural_input, act.condition_inputs  # conditions alphabetical: attention, visual
    assert z.shape == (2400, 5) and np.all(np.isfinite(z))
    # settled part of each block (5 s after onset) against rest
    settled = np.convolve(u[:, 1], np.ones(50), "full")[: len(u)] >= 50
    rest = (u.sum(1) == 0) & (np.arange(len(u)) > 100)
    effect = z[settled].mean(0) - z[rest].mean(0)
    assert effect[0] > 0.08 and effect[1] > 0.08  # V1, V5: 0.1 plus what coupling adds
    assert np.all(np.abs(effect[2:]) < 0.5 * effect[:2].min())
    att = np.convolve(u[:, 0], np.ones(50), "full")[: len(u)] >= 50
    assert z[att, 4].mean() - z[rest, 4].mean() > 0.08  # PFC under attention
    # spontaneous fluctuations of the order of `noise`, in the Balloon model's range
    assert 0.005 < z[rest].std(0).min() and z[rest].std(0).max() < 0.05
    assert np.abs(z).max() < 1.0
    truth = act.truth_arrays()
    assert truth["network_connectivity"].shape == (5, 5)
    assert float(truth["network_coupling"]) == 0.5
    np.testing.assert_allclose(truth["network_input_gain"][[0, 1], 1], 0.1)  # gain / tau
    # seeded: the same spec gives the same activity
    np.testing.assert_array_equal(simulate_activity(spec).neural_input, z)


def test_connectivity_from_a_file_and_baseline(base, tmp_path):
    w = np.ones((5, 5)) - np.eye(5)
    np.savetxt(tmp_path / "w.csv", w, delimiter=",")
    spec = copy.deepcopy(base)
    spec["_source_dir"] = str(tmp_path)
    spec["activity"]["network"].update(connectivity="w.csv", noise=0.0, baseline=0.05)
    spec = _validated(spec)
    act = simulate_activity(spec)
    np.testing.assert_array_equal(act.network.connectivity, w)
    assert act.neural_input[0] == pytest.approx(np.full(5, 0.05))  # noise-free: baseline
    # uniform coupling spreads V1/V5's input to every region
    assert act.neural_input[390, 2] > 0.06


BAD = [
    ({"couplings": 0.5}, r"activity\.network\.couplings is not a known key"),
    ({"coupling": 1.0}, r"activity\.network\.coupling = 1\.0 is invalid: expected a fraction"),
    ({"coupling": "strong"}, r"activity\.network\.coupling = 'strong' has the wrong type"),
    ({"length_scale": -0.01}, r"activity\.network\.length_scale = -0\.01 is invalid"),
    ({"time_constant": 0.0}, r"activity\.network\.time_constant = 0\.0 is invalid"),
    ({"noise": float("nan")}, r"activity\.network\.noise = nan is invalid"),
    ({"baseline": -0.1}, r"activity\.network\.baseline = -0\.1 is invalid"),
    ({"connectivity": "none.npy"}, r"connectivity = 'none\.npy' is invalid: expected an existing"),
    (
        {"inputs": {"visual": {"regions": ["XYZ"]}, "attention": {"regions": []}}},
        r"activity\.network\.inputs\.visual\.regions: 'XYZ' is not in subject\.regions",
    ),
    (
        {"inputs": {"visual": {"regions": ["V1"], "gain": "big"}, "attention": {"regions": []}}},
        r"activity\.network\.inputs\.visual\.gain = 'big' has the wrong type",
    ),
    (
        {"inputs": {"visual": {"regions": ["V1"], "weight": 1.0}, "attention": {"regions": []}}},
        r"activity\.network\.inputs\.visual\.weight is not a known key",
    ),
    (
        {"inputs": {"visual": ["V1"], "attention": {"regions": []}}},
        r"activity\.network\.inputs\.visual = \['V1'\] is invalid: expected a table",
    ),
    (
        {"inputs": {"visual": {"regions": ["V1"]}}},
        r"protocol condition 'attention' is not defined in \[activity\.network\.inputs\]",
    ),
    (
        {
            "inputs": {
                "visual": {"regions": ["V1"]},
                "attention": {"regions": []},
                "rest": {"regions": []},
            }
        },
        r"activity\.network\.inputs\.rest: condition 'rest' does not occur in protocol\.blocks",
    ),
]


@pytest.mark.parametrize(
    "edit, pattern", BAD, ids=[next(iter(e)) + str(i) for i, (e, _) in enumerate(BAD)]
)
def test_bad_network_keys_are_refused(base, edit, pattern):
    spec = copy.deepcopy(base)
    spec["activity"]["network"].update(edit)
    with pytest.raises(SpecError, match=pattern):
        validate_activity(spec, {"visual", "attention"})


def test_unusable_connectivity_file_is_refused(base, tmp_path):
    np.save(tmp_path / "w.npy", np.ones((3, 3)))
    spec = copy.deepcopy(base)
    spec["_source_dir"] = str(tmp_path)
    spec["activity"]["network"]["connectivity"] = "w.npy"
    with pytest.raises(SpecError, match=r"connectivity = 'w\.npy' is invalid: expected a 5 x 5"):
        validate_activity(spec, {"visual", "attention"})
