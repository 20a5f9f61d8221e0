"""Seeds make runs reproducible: the same seed gives byte-identical data and truth,
another seed other noise but the same noise-free signals."""

import numpy as np

from biosim import experiment


def _short_meg_spec(seed):
    spec = experiment.load_experiment("meg_opm")
    spec["experiment"]["duration"] = 12.0
    spec["protocol"]["blocks"] = [dict(onset=2.0, duration=8.0, condition="visual")]
    spec["devices"]["meg"]["n_sensors"] = 16
    return experiment.with_seed(spec, seed)


def test_same_seed_same_dataset(tmp_path):
    outs = [
        experiment.run_experiment(_short_meg_spec(s), tmp_path / f"run{i}", progress=False)
        for i, s in enumerate((3, 3, 4))
    ]
    fif = "sub-01/meg/sub-01_task-megopm_meg.fif"
    t = [np.load(o / "derivatives" / "biosim-truth" / "truth.npz") for o in outs]
    assert (outs[0] / fif).read_bytes() == (outs[1] / fif).read_bytes()
    for k in t[0].files:
        np.testing.assert_array_equal(t[0][k], t[1][k])
    assert (outs[0] / fif).read_bytes() != (outs[2] / fif).read_bytes()
    # the seed draws the sources' rhythm phase too, but not the deterministic lead field
    np.testing.assert_array_equal(t[0]["meg_leadfield"], t[2]["meg_leadfield"])
