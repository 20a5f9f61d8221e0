import jax.numpy as jnp
import numpy as np
import pytest

from biosim.physics.neural import NeuralParams, effective_connectivity, neural_rhs


def test_spm_parametrisation():
    a = np.array([[0.0, 0.2], [0.5, np.log(2.0)]])
    b = np.zeros((1, 2, 2))
    b[0, 1, 0] = 0.3
    p = NeuralParams(
        jnp.asarray(a), jnp.asarray(b), jnp.array([[1.0], [0.0]]), jnp.zeros((2, 2, 2))
    )
    j0 = np.asarray(effective_connectivity(p, jnp.zeros(1)))
    np.testing.assert_allclose(np.diag(j0), [-0.5, -1.0])  # -exp(A_ii)/2
    np.testing.assert_allclose(j0[1, 0], 0.5)
    j1 = np.asarray(effective_connectivity(p, jnp.ones(1)))
    assert j1[1, 0] == pytest.approx(0.8)  # A + u B
    dx = np.asarray(neural_rhs(jnp.zeros(2), jnp.ones(1), p))
    np.testing.assert_allclose(dx, [1.0 / 16, 0.0])  # C u / 16
