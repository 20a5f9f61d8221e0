"""``subject.head = "template"``: EEG and MEG through the symmetric BEM of the fsaverage
template head, with electrodes on its scalp and sensors outside it."""

import numpy as np
import pytest

from biosim import SpecError, experiment
from biosim.geometry.checks import distance_to_surface
from biosim.geometry.template_head import template_head


def _short(name, head, duration=16.0):
    spec = experiment.load_experiment(name)
    spec["subject"]["head"] = head
    spec["experiment"]["duration"] = duration
    spec["protocol"]["blocks"] = [
        b for b in spec["protocol"]["blocks"] if b["onset"] + b["duration"] <= duration
    ]
    return experiment.validate_spec(spec)


@pytest.fixture(scope="module")
def eeg_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tmpl")
    outs = {
        h: experiment.run_experiment(_short("eeg", h), root / h, progress=False)
        for h in ("template", "sphere")
    }
    return {
        h: np.load(o / "derivatives" / "biosim-truth" / "truth.npz") for h, o in outs.items()
    }, outs


def test_template_eeg_electrodes_sit_on_the_scalp(eeg_runs):
    truth, outs = eeg_runs
    rows = (outs["template"] / "sub-01" / "eeg" / "sub-01_electrodes.tsv").read_text().splitlines()
    pos = np.array([[float(v) for v in r.split("\t")[1:]] for r in rows[1:]])
    scalp = template_head(642)[-1]
    assert np.max(distance_to_surface(scalp, pos)) < 1e-4  # 0.1 mm (5-digit tsv rounding)
    # the truth (and the report, which reads the recording) hold the electrodes as placed
    np.testing.assert_allclose(truth["template"]["eeg_sensor_positions"], pos, atol=5e-6)


def test_template_and_sphere_eeg_topographies_agree(eeg_runs):
    """Two head models of the same dipoles: the realistic BEM and the exact sphere give
    similar (not equal) scalp maps; measured r = 0.976-0.987, norm ratio 1.01-1.35."""
    truth, _ = eeg_runs
    a, b = truth["template"]["eeg_leadfield"], truth["sphere"]["eeg_leadfield"]
    for r in range(a.shape[1]):
        corr = np.corrcoef(a[:, r], b[:, r])[0, 1]
        assert corr > 0.85, (r, corr)
        assert 0.3 < np.linalg.norm(a[:, r]) / np.linalg.norm(b[:, r]) < 3


def test_template_opm_sensors_are_outside_the_scalp(tmp_path):
    spec = _short("meg_opm", "template")
    out = experiment.run_experiment(spec, tmp_path / "opm", progress=False)
    truth = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")
    d = distance_to_surface(template_head(642)[-1], truth["meg_sensor_positions"])
    assert d.min() > spec["devices"]["meg"]["standoff"] * 0.9
    assert np.all(np.isfinite(truth["meg_leadfield"])) and np.abs(truth["meg_leadfield"]).max() > 0


def test_template_head_needs_three_conductivities():
    spec = experiment.load_experiment("eeg")
    spec["subject"]["head"] = "template"
    spec["subject"]["conductivities"] = [0.33, 0.0042, 1.0, 0.33]
    with pytest.raises(SpecError, match="subject.conductivities"):
        experiment.validate_spec(spec)


def test_bem_elements_key():
    spec = experiment.load_experiment("eeg")
    assert (
        experiment.validate_spec(spec)["subject"]["bem_elements"] == "matched"
    )  # no cost, no inscribed bias
    spec["subject"]["bem_elements"] = "quadratic"
    with pytest.raises(SpecError, match="subject.bem_elements"):
        experiment.validate_spec(spec)
