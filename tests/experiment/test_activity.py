"""Brain-activity models of an experiment: the DCM network equals an independent
integration of the bilinear equations; given time courses are read as written."""

import numpy as np
import pytest
from conftest import DRIVE_TOML
from scipy.integrate import solve_ivp

from biosim import SpecError, experiment
from biosim.experiment.activity import simulate_activity
from biosim.experiment.protocol import Protocol


def test_dcm_activity_matches_an_independent_ode_solution():
    spec = experiment.load_experiment()  # the default DCM network
    act = simulate_activity(spec)
    times, u, names = act.times, act.condition_inputs, Protocol.from_spec(spec).conditions
    dcm = spec["activity"]["dcm"]
    a = np.asarray(dcm["A"])
    b = {c: np.asarray(dcm["B"].get(c, np.zeros_like(a))) for c in names}
    c = np.stack([np.asarray(dcm["C"].get(k, np.zeros(3))) for k in names], axis=1)

    def rhs(t, z):  # in Hz, exactly as written in the TOML
        k = min(int(t / 0.1 + 1e-9), len(times) - 1)
        m = a + sum(u[k, j] * b[n] for j, n in enumerate(names))
        return m @ z + c @ u[k]

    # integrate block by block (inputs are piecewise constant on the 0.1 s grid)
    z, ref = np.zeros(3), [np.zeros(3)]
    for k in range(len(times) - 1):
        sol = solve_ivp(
            rhs,
            (times[k], times[k + 1]),
            z,
            rtol=1e-10,
            atol=1e-13,
            t_eval=[times[k + 1]],
            first_step=1e-3,
        )
        z = sol.y[:, -1]
        ref.append(z)
    ref = np.array(ref)
    assert np.max(np.abs(act.neural_input - ref)) < 1e-6 * np.abs(ref).max()
    assert act.neural_input[:, 0].max() == pytest.approx(0.12, rel=0.01)  # 0.06 Hz / 0.5 Hz


def test_given_time_courses_are_used(tmp_path):
    n_t = int(240.0 / 0.1)  # DRIVE_TOML's duration / dt
    tc = np.zeros((n_t, 3))
    tc[200:400, 1] = 0.1
    rows = "\n".join("\t".join(f"{v:g}" for v in row) for row in tc)
    (tmp_path / "tc.tsv").write_text("V1\tV5\tPFC\n" + rows + "\n")
    text = DRIVE_TOML.replace(
        'model = "drive"', 'model = "timecourses"\ntimecourses = { file = "tc.tsv" }'
    )
    (tmp_path / "exp.toml").write_text(text)
    spec = experiment.load_experiment(tmp_path / "exp.toml")
    np.testing.assert_array_equal(simulate_activity(spec).neural_input, tc)
    (tmp_path / "tc.tsv").write_text("V1\tV5\tPFC\n0\t0\t0\n")
    with pytest.raises(SpecError, match=r"activity.timecourses.file = 'tc.tsv': 1 rows found"):
        experiment.load_experiment(tmp_path / "exp.toml")  # refused when validated


def test_unstable_network_is_refused():
    spec = experiment.load_experiment()
    spec["activity"]["dcm"]["A"] = [[-0.5, 0.0, 0.0], [3.0, -0.5, 3.0], [0.0, 3.0, -0.5]]
    with pytest.raises(SpecError, match="unstable"):
        simulate_activity(experiment.validate_spec(spec))
