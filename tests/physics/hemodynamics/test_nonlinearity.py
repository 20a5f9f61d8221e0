"""Where the Balloon model departs from its linear (LTI) prediction."""

import numpy as np

from biosim.physics.hemodynamics import BalloonParams, BOLDParams, simulate_bold
from biosim.physics.hemodynamics.linearisation import linear_prediction

DT = 0.1
P, B = BalloonParams.spm(), BOLDParams.at_field(3.0)


def _both(u):
    y = np.asarray(simulate_bold(u, DT, P, B).bold)
    y_lin = np.asarray(linear_prediction(u, DT, P, B))
    return y, y_lin


def test_weak_input_is_linear():
    u = np.zeros((400, 1))
    u[10:20] = 0.01
    y, y_lin = _both(u)
    assert np.max(np.abs(y - y_lin)) < 0.01 * np.max(np.abs(y_lin))


def test_paired_stimuli_are_subadditive():
    n = 500
    single = np.zeros((n, 1))
    single[10:20] = 1.0
    paired = single.copy()
    paired[30:40] = 1.0  # second stimulus 2 s later
    y1, _ = _both(single)
    y2, y2_lin = _both(paired)
    second = y2 - y1  # response attributable to the second stimulus
    shifted_first = np.roll(y1, 20, axis=0)
    # the second response is smaller than the first (refractoriness)...
    assert second.max() < 0.9 * shifted_first.max()
    # ...while the linear model predicts exact additivity
    assert y2.max() < 0.9 * y2_lin.max()


def test_long_block_saturates_below_linear_prediction():
    u = np.zeros((900, 1))
    u[10:310] = 0.5  # 30 s block
    y, y_lin = _both(u)
    plateau = slice(200, 300)
    assert np.mean(y[plateau]) < 0.8 * np.mean(y_lin[plateau])
    assert np.argmax(y) != np.argmax(y_lin)  # the shape differs too (initial overshoot)
