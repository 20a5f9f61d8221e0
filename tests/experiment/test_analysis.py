"""DCM inside ``biosim run``: the shipped dcm_fmri experiment fits two models to what
its scanner measured, selects the generating one and recovers its sign pattern."""

import json

import numpy as np
import pytest

from biosim import SpecError, experiment
from biosim.cli import main


def test_dcm_analysis_selects_the_generating_model(tmp_path, bids_errors):
    assert main(["run", "dcm_fmri", "-o", str(tmp_path / "ds"), "--no-progress"]) == 0
    doc = json.loads(
        (
            tmp_path / "ds" / "derivatives" / "biosim-dcm" / "sub-01_task-dcmfmri_dcm.json"
        ).read_text()
    )
    assert doc["best_model"] == "attention_on_forward"
    assert doc["models"]["attention_on_forward"]["posterior_probability"] > 0.95
    assert doc["recovery"]["sign_pattern_recovered"]
    best = doc["models"]["attention_on_forward"]
    # measured: V1->V5 0.31, V5->PFC 0.31, PFC->V5 -0.34 Hz (true 0.4, 0.5, -0.2);
    # attention 0.22 (0.3)
    a = np.asarray(best["A_hz"])
    assert 0.15 < a[1, 0] < 0.6 and 0.15 < a[2, 1] < 0.7 and a[1, 2] < 0
    assert 0.1 < best["B_hz"]["attention"][1][0] < 0.5
    assert bids_errors(tmp_path / "ds") == []  # derivatives/biosim-dcm is a derivative dataset


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace('device = "mri"', 'device = "scanner"'), r"analysis.dcm.device"),
        (
            lambda s: s.replace("c.visual = [1, 0, 0]", "c.visual = [1, 0]", 1),
            r"analysis.dcm.models.attention_on_forward.c.visual has shape",
        ),
        (
            lambda s: s.replace(
                "b.attention = [[0, 0, 0], [1, 0, 0]", "b.attend = [[0, 0, 0], [1, 0, 0]"
            ),
            r"b.attend: not a protocol condition",
        ),
        (
            lambda s: s.replace("[analysis.dcm]", "[analysis.glmm]\n[analysis.dcm]"),
            r"analysis.glmm is not a known analysis",
        ),
    ],
)
def test_bad_analysis_names_the_key(tmp_path, edit, message):
    text = (experiment.spec.shipped_dir() / "dcm_fmri.toml").read_text()
    (tmp_path / "bad.toml").write_text(edit(text))
    with pytest.raises(SpecError, match=message):
        experiment.load_experiment(tmp_path / "bad.toml")
