"""Every example runs (small) and gives physically sensible numbers."""

import importlib.util
from pathlib import Path


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hemodynamics_nonlinearity_example():
    res = _load("hemodynamics_nonlinearity").responses()
    y, y_lin = res["paired"]
    assert y.max() < 0.9 * y_lin.max()                    # refractory, sub-additive


def test_sphere_leadfield_example():
    out = _load("sphere_leadfield_meg_eeg").run()
    assert 0.05 < out["eeg_peak_uv"] < 5                  # ~0.1-1 uV for 10 nA m
    assert out["berg_rdm"] < 0.02
    assert out["opm_ft"] > 2 * out["squid_ft"]            # on-scalp sensors see more field
