"""Every example runs (small) and gives physically sensible numbers."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tms_motor_cortex_example():
    """20 mm template head (5 k tets): TES delivers the prescribed 1 mA exactly; the TMS
    peak in GM and on the cortex lies under the coil over left M1, and the recovered
    cortex field does not overshoot the element fields (without the recovery limiter:
    118 V/m, 9 cm away); the TES field points into the cortex under the anode (C3) and
    out of it under the cathode (Fp2), at a plausible 0.1-1 V/m per mA."""
    ex = _load("tms_motor_cortex")
    out = ex.run(edge_length=0.02, grid_spacing=None, decimation="ico3")
    np.testing.assert_allclose(out["tes_delivered"], [1e-3, -1e-3], rtol=0, atol=1e-9)
    assert out["tms_peak_gm_distance_to_target"] < 0.025  # measured 17 mm (20 mm elements)
    v, mag, _, _ = out["tms_cortex"]
    assert np.linalg.norm(v[np.argmax(mag)] - out["target"]) < 0.02  # measured 8 mm
    assert out["tms_cortex_peak"] < 1.5 * out["tms_peak_gm"]  # measured 22.9 vs 27.0 V/m
    assert np.linalg.norm(out["coil_center"] - out["scalp_point"]) == pytest.approx(0.004)
    _, pos = ex.template_electrodes("standard_1020", ["C3", "Fp2"])
    v, mag, en, _ = out["tes_cortex"]
    near = [np.linalg.norm(v - p, axis=1) < 0.035 for p in pos]
    assert en[near[0]].mean() < 0 < en[near[1]].mean()  # measured -0.036, +0.032 V/m
    assert 0.1 < out["tes_cortex_peak"] < 1.0  # V/m at 1 mA; measured 0.20


def test_hemodynamics_nonlinearity_example():
    res = _load("hemodynamics_nonlinearity").responses()
    y, y_lin = res["paired"]
    assert y.max() < 0.9 * y_lin.max()  # refractory, sub-additive


def test_sphere_leadfield_example():
    out = _load("sphere_leadfield_meg_eeg").run()
    assert 0.05 < out["eeg_peak_uv"] < 5  # ~0.1-1 uV for 10 nA m
    assert out["berg_rdm"] < 0.02
    assert out["opm_ft"] > 2 * out["squid_ft"]  # on-scalp sensors see more field


def test_mri_signal_physics_example():
    out = _load("mri_signal_physics").run()
    assert abs(out["ernst_deg"] - 9.9) < 0.1  # arccos(exp(-TR/T1))
    assert out["max_rf_spoiling_deviation"] < 0.05  # RF spoiling ~ ideal within 5 %
    assert abs(out["fitted_t1"] - 1.33) < 1e-6  # noise-free VFA fit is exact


def test_meg_source_imaging_example(tmp_path):
    pytest.importorskip("mne")
    out = _load("meg_source_imaging").run(tmp_path)
    assert all(v < 20 for v in out.values()), out  # measured 2.6 and 9.3 mm


def test_eeg_fmri_artifact_cleaning_example(tmp_path):
    pytest.importorskip("mne")
    out = _load("eeg_fmri_artifact_cleaning").run(tmp_path)
    assert out["correlation with the neural EEG, raw"] < 0.5
    assert out["after AAS + OBS"] > 0.9  # measured 0.37 -> 0.95


def test_dcm_fmri_fit_example():
    out = _load("dcm_fmri_fit").run()
    assert out["p(true model)"] > 0.95
    assert abs(out["A[1,0] (true 0.4)"] - 0.4) < 0.15
    assert abs(out["B[1,1,0] (true 0.4)"] - 0.4) < 0.2


@pytest.mark.slow
def test_bem_leadfield_accuracy_example():
    """(slow: ~45 s of CPU, nearly all JAX compilation of three geometries; the
    same comparison, flat / matched / curved at 3 x 162 vertices with these
    assertions, runs in CI as
    physics/electromag/test_bem_curved.py::test_curved_elements_remove_the_magnitude_bias.)

    162-vertex spheres, eccentricities 0.2-0.4 (where the geometric bias
    dominates): the inscribed flat mesh overestimates EEG magnitudes by ~2 %;
    the volume-matched one and curved elements do not, with the same
    topography; MEG stays accurate."""
    out = _load("bem_leadfield_accuracy").run(subdivisions=2, eccentricities=(0.2, 0.4))
    flat, matched, curved = out["flat"], out["matched"], out["curved"]
    assert np.all(np.abs(1 - flat["eeg_mag"]) > 0.015)
    for res in (matched, curved):
        assert np.all(np.abs(1 - res["eeg_mag"]) < 0.35 * np.abs(1 - flat["eeg_mag"]))
        assert np.all(res["eeg_rdm"] < 1.3 * flat["eeg_rdm"] + 1e-3)
        assert res["meg_rdm"].max() < 0.02


def test_bem_skull_conductivity_fit_example():
    """162-vertex BEM, exact-sphere EEG with 2 % noise: the gradient fit moves
    the skull conductivity from the ratio-25 value to the truth (ratio ~80)
    within the coarse mesh's error, down to the noise floor, in a few steps."""
    out = _load("bem_skull_conductivity_fit").run(subdivisions=2)
    assert abs(out["skull"] / out["skull_true"] - 1) < 0.03  # measured 1.3 %
    assert out["misfit"] < 2 * out["noise"] ** 2  # noise floor 4e-4
    assert out["path"][0][1] > 100 * out["misfit"]
    assert out["evaluations"] <= 12
