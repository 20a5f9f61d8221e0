"""DCM for fMRI: the generative model (neural -> Balloon -> BOLD) and its priors.

Free parameters (SPM12 one-state DCM, ``spm_dcm_fmri_priors``):

=========  ==============================  ============  ==========
block      meaning                         prior mean    variance
=========  ==============================  ============  ==========
A (off)    extrinsic connections (Hz)      0             1/64
A (diag)   log self-inhibition scale       0             1/64
B          modulatory effects (Hz)         0             1
C          driving inputs                  0             1
D          nonlinear modulation            0             1
transit    log transit-time scale (n)      0             1/256
decay      log decay scale (n)             0             1/256
epsilon    log intra/extravascular ratio   0             1/256
=========  ==============================  ============  ==========

Only entries switched on in the model's masks are free (others are fixed at
0).  The BOLD response is integrated with RK4 at microtime ``TR / n_micro``
with inputs held over each microtime step, and sampled at every TR
(SPM samples the same ODEs with its own integrator; see the closing note of
the DCM issue for the comparison).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._core.errors import ParameterError
from ...physics.hemodynamics import BalloonParams, BOLDParams
from ...physics.hemodynamics.balloon import balloon_rhs
from ...physics.hemodynamics.bold import bold_from_states
from ...physics.neural import NeuralParams, neural_rhs

PRIOR_VAR = {"A_off": 1 / 64, "A_diag": 1 / 64, "B": 1.0, "C": 1.0, "D": 1.0,
             "transit": 1 / 256, "decay": 1 / 256, "epsilon": 1 / 256}
#: Prior mean and variance of the log noise precision per region (SPM: 6, 1/128).
HYPER_PRIOR_MEAN, HYPER_PRIOR_VAR = 6.0, 1 / 128


@dataclasses.dataclass(frozen=True, eq=False)
class DCMStructure:
    """Which connections are free, plus the acquisition.

    Parameters
    ----------
    a, b, c, d : bool arrays of shapes (n,n), (m,n,n), (n,m), (n,n,n) (d may be None)
    tr : float, s
    n_micro : int, microtime steps per TR
    field_strength, echo_time : float, T and s (SPM defaults 1.5 T... here explicit)
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray | None = None
    tr: float = 3.22
    n_micro: int = 8
    field_strength: float = 3.0
    echo_time: float = 0.04

    def __post_init__(self):
        a = np.asarray(self.a, bool)
        n = a.shape[0]
        if a.shape != (n, n):
            raise ParameterError("a", f"mask of shape {a.shape}", "a square (n, n) mask")
        b, c = np.asarray(self.b, bool), np.asarray(self.c, bool)
        if b.ndim != 3 or b.shape[1:] != (n, n):
            raise ParameterError("b", f"mask of shape {b.shape}", f"shape (m, {n}, {n})")
        if c.shape != (n, b.shape[0]):
            raise ParameterError("c", f"mask of shape {c.shape}", f"shape ({n}, {b.shape[0]})")
        d = np.zeros((n, n, n), bool) if self.d is None else np.asarray(self.d, bool)
        object.__setattr__(self, "a", a | np.eye(n, dtype=bool))   # self-connections always free
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "d", d)
        if self.tr <= 0:
            raise ParameterError("tr", self.tr, "a positive TR in s")

    def _key(self):
        return (self.a.tobytes(), self.a.shape, self.b.tobytes(), self.b.shape, self.c.tobytes(),
                self.d.tobytes(), float(self.tr), int(self.n_micro), float(self.field_strength),
                float(self.echo_time))

    def __hash__(self):  # static argument of jitted functions
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, DCMStructure) and self._key() == other._key()

    @property
    def n_regions(self):
        return self.a.shape[0]

    @property
    def n_inputs(self):
        return self.b.shape[0]

    def free_index(self):
        """Flat indices of the free entries of [A, B, C, D, transit, decay, epsilon]."""
        n = self.n_regions
        mask = np.concatenate([self.a.ravel(), self.b.ravel(), self.c.ravel(), self.d.ravel(),
                               np.ones(2 * n + 1, bool)])
        return np.flatnonzero(mask)

    def prior(self):
        """(mean, variance) of the free parameters."""
        n, m = self.n_regions, self.n_inputs
        var_a = np.where(np.eye(n, dtype=bool), PRIOR_VAR["A_diag"], PRIOR_VAR["A_off"]).ravel()
        var = np.concatenate([var_a, np.full(m * n * n, PRIOR_VAR["B"]),
                              np.full(n * m, PRIOR_VAR["C"]), np.full(n ** 3, PRIOR_VAR["D"]),
                              np.full(n, PRIOR_VAR["transit"]), np.full(n, PRIOR_VAR["decay"]),
                              [PRIOR_VAR["epsilon"]]])
        idx = self.free_index()
        return np.zeros(idx.size), var[idx]

    def unpack(self, theta):
        """Free-parameter vector -> (NeuralParams, log_transit, log_decay, log_epsilon)."""
        n, m = self.n_regions, self.n_inputs
        total = n * n + m * n * n + n * m + n ** 3 + 2 * n + 1
        full = jnp.zeros(total).at[self.free_index()].set(theta)
        o = 0
        a = full[o:o + n * n].reshape(n, n)
        o += n * n
        b = full[o:o + m * n * n].reshape(m, n, n)
        o += m * n * n
        c = full[o:o + n * m].reshape(n, m)
        o += n * m
        d = full[o:o + n ** 3].reshape(n, n, n)
        o += n ** 3
        transit, decay, eps = full[o:o + n], full[o + n:o + 2 * n], full[o + 2 * n]
        return NeuralParams(a, b, c, d), transit, decay, eps

    def pack(self, neural: NeuralParams, transit=None, decay=None, epsilon=0.0):
        """Inverse of :meth:`unpack` (entries outside the masks are dropped)."""
        n = self.n_regions
        transit = np.zeros(n) if transit is None else np.asarray(transit)
        decay = np.zeros(n) if decay is None else np.asarray(decay)
        full = np.concatenate([np.ravel(neural.A), np.ravel(neural.B), np.ravel(neural.C),
                               np.ravel(neural.D), transit, decay, [epsilon]])
        return full[self.free_index()]


@partial(jax.jit, static_argnames=("structure",))
def predict_bold(theta, inputs, structure: DCMStructure):
    """Predicted BOLD (n_scans, n_regions), fraction, for inputs (n_scans * n_micro, m).

    Inputs are given at microtime ``TR / n_micro`` and held over each step.
    """
    neural, transit, decay, eps = structure.unpack(theta)
    balloon = BalloonParams.spm(log_decay=decay, log_transit=transit)
    bold_p = BOLDParams.spm(field_strength=structure.field_strength,
                            echo_time=structure.echo_time, log_epsilon=eps)
    n = structure.n_regions
    h = structure.tr / structure.n_micro

    def rhs(state, u):
        x, hs = state[:n], state[n:].reshape(n, 4)
        dx = neural_rhs(x, u, neural)
        dh = balloon_rhs(hs, x, balloon)
        return jnp.concatenate([dx, dh.ravel()])

    def step(state, u):
        k1 = rhs(state, u)
        k2 = rhs(state + 0.5 * h * k1, u)
        k3 = rhs(state + 0.5 * h * k2, u)
        k4 = rhs(state + h * k3, u)
        return state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    def scan_tr(state, u_block):
        state, _ = lax.scan(step, state, u_block)
        return state, bold_from_states(state[n:].reshape(n, 4), bold_p)

    u = inputs.reshape(-1, structure.n_micro, inputs.shape[-1])
    _, y = lax.scan(scan_tr, jnp.zeros(n + 4 * n), u)
    return y
