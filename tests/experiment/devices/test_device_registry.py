"""Device types are plug-ins: a new instrument registers validate, simulate and
write functions and becomes usable from an experiment TOML."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import DRIVE_TOML

from biosim import SpecError, experiment
from biosim.experiment.devices import Recording, device_types, register_device
from biosim.experiment.keys import require
from biosim.io.bids import write_json


def test_builtin_devices_are_registered():
    assert {"mri", "eeg", "meg"} <= set(device_types())
    for dev in device_types().values():
        assert dev.description


def test_a_new_device_plugs_in(tmp_path):
    def validate(table, spec, where):
        require(table, "gain", where, float, lambda v: v > 0, "a positive gain")

    @dataclasses.dataclass(frozen=True)
    class MeterRecording(Recording):
        peak: float

        def truth_arrays(self, key):
            return {f"{key}_peak": np.array(self.peak)}

    def simulate(ctx):
        return MeterRecording(float(ctx.activity.neural_input.max()) * ctx.table["gain"])

    def write(rec, ctx, dataset):
        write_json(dataset.path("beh", "beh.json"), {"peak": rec.peak})

    register_device(
        "toy_meter",
        validate=validate,
        simulate=simulate,
        write=write,
        description="test device",
        replace=True,
    )
    (tmp_path / "drive.toml").write_text(DRIVE_TOML)
    spec = experiment.load_experiment(tmp_path / "drive.toml")
    spec["devices"] = {"meter": {"type": "toy_meter", "gain": 2.0}}
    out = experiment.run_experiment(spec, tmp_path / "ds", progress=False)
    doc = json.loads((out / "sub-01" / "beh" / "sub-01_task-drive_beh.json").read_text())
    assert doc["peak"] == pytest.approx(0.3)  # 2 x the 0.15 1/s drive
    assert float(
        np.load(out / "derivatives" / "biosim-truth" / "truth.npz")["meter_peak"]
    ) == pytest.approx(0.3)
    spec["devices"]["meter"]["gain"] = -1.0
    with pytest.raises(SpecError, match=r"devices.meter.gain = -1.0 is invalid"):
        experiment.validate_spec(spec)
    with pytest.raises(SpecError, match="already registered"):
        register_device(
            "toy_meter", validate=validate, simulate=simulate, write=write, description="again"
        )


def test_unknown_and_duplicate_devices_are_refused():
    spec = experiment.load_experiment("fmri")
    spec.pop("analysis")
    spec["devices"]["scanner2"] = dict(spec["devices"]["mri"], type="mri")
    with pytest.raises(SpecError, match="more than one MRI scanner"):
        experiment.validate_spec(spec)
    spec["devices"] = {"tms": {}}
    with pytest.raises(SpecError, match=r"devices.tms: 'tms' is not a known device type"):
        experiment.validate_spec(spec)
