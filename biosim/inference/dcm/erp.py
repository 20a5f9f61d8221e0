"""DCM for event-related potentials (David et al. 2006, NeuroImage 30:1255;
Kiebel et al. 2006; SPM12 ``spm_dcm_erp``): the neural mass of
:mod:`biosim.physics.neural.neural_mass` observed through a fixed lead field,
inverted by variational Laplace.

Free parameters and priors (SPM12 ``spm_erp_priors`` and ``spm_L_priors``;
all log scales of SPM's fixed constants unless stated):

==========  =======================================  ==========  =========
block       meaning                                  prior mean  variance
==========  =======================================  ==========  =========
A_forward   log scale of forward connections (32 Hz)  0           1/16
A_backward  log scale of backward connections (16 Hz) 0           1/16
A_lateral   log scale of lateral connections (4 Hz)   0           1/16
B           trial effects on the log scales            0           1/8
C           log input gain                             0           1/32
T           log tau_e, tau_i (8, 16 ms)  per source    0           1/16
G           log H_e, H_i (4, 32 mV)      per source    0           1/16
S           log sigmoid slope, threshold               0           1/16
H           log G1..G4 (128 x [1 .8 .25 .25] Hz)      0           1/16
D           log extrinsic delays (16 ms)               0           1/16
R           input onset shift (x 128 ms), log width    0           1/16
J           weights of x1, x7 in the source signal     0           1/32
L           dipole gain per source (10 nA m per mV)     0           64
==========  =======================================  ==========  =========

Only entries switched on in the structure's masks are free; absent
connections are exactly zero (SPM uses exp(-4) with zero variance).  A trial
c of the between-trial design X (n_trials, n_effects) has the log scales
``A + sum_e X[c, e] B_e`` on every connection type present, and the diagonal
of B_e adds to the source's log H_e (``spm_gen_Q``).  D is free on every
connected pair (``spm_erp_priors``).

Observation (``spm_gx_erp``, ``spm_erp_L`` with fixed 'ECD' dipoles): each
source's signal is ``x9 + J1 x1 + J7 x7`` (mV); its current dipole moment is
``L_i 1e-8 A m / mV`` times that, along the fixed orientation whose lead field
(V / (A m)) is given; the channel data are projected on a few spatial modes
(SPM12 ``spm_dcm_eeg_channelmodes``: the principal modes of the lead field;
optionally the principal modes of the data) and divided by one data-derived
scale so the features have unit standard deviation (``spm_dcm_erp``), and
every mode has its own noise precision.

SPM12's own choices are options, for a like-for-like comparison with
``spm_dcm_erp`` (``benchmarks/dcm_erp_spm_octave.py`` runs it under Octave):
``integrator="spm"`` is ``spm_int_L`` (one local-linearisation step per
sample, Jacobian frozen at rest; first order in dt), ``delays="operator"``
SPM's first-order delay operator, ``absent="spm"`` gives absent connections
and inputs SPM's fixed log scale -4 instead of zero, and ``fit_erp(...,
noise="spm")`` uses SPM's noise model (one precision for all modes and
trials with the AR(1/2) component ``spm_Q(1/2, Ns, 1)``).  The defaults are
biosim's: exact delays (RK4 + Hermite history), absent connections zero,
one white-noise precision per mode.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ...physics.neural.neural_mass import (
    DELAY,
    EXTRINSIC_SCALE,
    INTRINSIC_SCALE,
    RECEPTOR_DENSITY,
    SIGMOID,
    TIME_CONSTANT,
    ERPParams,
    gaussian_input,
    integrate_erp,
    integrate_erp_spm,
)
from .variational_laplace import VLResult, invert

PRIOR_VAR = {
    "A_forward": 1 / 16,
    "A_backward": 1 / 16,
    "A_lateral": 1 / 16,
    "B": 1 / 8,
    "C": 1 / 32,
    "T": 1 / 16,
    "G": 1 / 16,
    "S": 1 / 16,
    "H": 1 / 16,
    "D": 1 / 16,
    "R": 1 / 16,
    "J": 1 / 32,
    "L": 64.0,
}
#: Log scale of absent connections and inputs in SPM12 (``spm_erp_priors``: A*4 - 4).
ABSENT_LOG_SCALE = -4.0
#: Dipole moment per mV of source signal for a unit gain L (A m / mV).
MOMENT_PER_MV = 1e-8
#: variance that SPM12's ``spm_nlsi_N`` adds to every posterior variance (``bC``)
SPM_COV_FLOOR = float(np.exp(-16.0))


@dataclasses.dataclass(frozen=True, eq=False)
class ERPStructure:
    """Connections, trial design and epoch of an ERP DCM.

    Parameters
    ----------
    forward, backward, lateral : bool (n, n) masks (row = target, column = source)
    b : bool (n_effects, n, n) connections modulated by each between-trial effect
        (the diagonal modulates a source's H_e)
    c : bool (n, m) which sources receive each input
    design : (n_trials, n_effects) between-trial design X (default: one trial, no effect)
    dt : float, s, sampling interval of the data; samples at dt, 2 dt, ..., n_samples dt
    n_samples : int
    n_sub : int, RK4 steps per sample (h = dt / n_sub <= 2 ms; the relative error of
        the ERP is about 2e-5 at h = 2 ms and 1e-6 at 1 ms, see ``neural_mass``)
    onset, duration : float, s, input bump (SPM 60 and 16 ms)
    delays : "exact" | "operator" | "none" (see ``neural_mass``)
    integrator : "rk4" (``n_sub`` RK4 steps per sample) or "spm" (SPM12's ``spm_int_L``:
        one local-linearisation step per sample with the Jacobian frozen at rest,
        :func:`~biosim.physics.neural.neural_mass.integrate_erp_spm`; needs
        ``delays="operator"`` or ``"none"``)
    absent : "zero" (absent connections and inputs are exactly zero) or "spm" (SPM12's
        ``spm_erp_priors``: fixed log scale -4, i.e. exp(-4) x 32/16/4 Hz on every absent
        entry of each connection type, self-connections included, and exp(-4) input gain)
    max_delay : float or None, s
        History kept for the exact delays (default 64 ms = 16 ms x e^1.39, 5.5 prior SDs
        above SPM's extrinsic delay; longer delays read the oldest stored step); None keeps
        the whole epoch (exact for any delay, several times slower).
    """

    forward: np.ndarray
    backward: np.ndarray
    lateral: np.ndarray
    b: np.ndarray
    c: np.ndarray
    design: np.ndarray | None = None
    dt: float = 0.004
    n_samples: int = 64
    n_sub: int = 2
    onset: float = 0.06
    duration: float = 0.016
    delays: str = "exact"
    max_delay: float | None = 0.064
    integrator: str = "rk4"
    absent: str = "zero"

    def __post_init__(self):
        f = np.asarray(self.forward, bool)
        n = f.shape[0]
        for name in ("forward", "backward", "lateral"):
            a = np.asarray(getattr(self, name), bool)
            if a.shape != (n, n):
                raise ParameterError(name, f"mask of shape {a.shape}", f"shape ({n}, {n})")
            if np.any(np.diag(a)):
                raise ParameterError(
                    name,
                    "a mask with diagonal entries",
                    "extrinsic connections between different sources only",
                )
            object.__setattr__(self, name, a)
        b, c = np.asarray(self.b, bool), np.asarray(self.c, bool)
        if b.ndim != 3 or b.shape[1:] != (n, n):
            raise ParameterError("b", f"mask of shape {b.shape}", f"shape (n_effects, {n}, {n})")
        off = ~np.eye(n, dtype=bool)
        if np.any(b & off & ~(f | self.backward | self.lateral)):
            raise ParameterError(
                "b",
                "a modulated connection that is absent from A",
                "B only on connections present in forward/backward/lateral",
            )
        if c.ndim != 2 or c.shape[0] != n or c.shape[1] < 1:
            raise ParameterError("c", f"mask of shape {c.shape}", f"shape ({n}, m >= 1)")
        x = (
            np.zeros((1, b.shape[0]))
            if self.design is None
            else np.atleast_2d(np.asarray(self.design, float))
        )
        if x.shape[1] != b.shape[0] or not np.all(np.isfinite(x)):
            raise ParameterError(
                "design",
                f"array of shape {x.shape}",
                f"finite (n_trials, {b.shape[0]}) between-trial design",
            )
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "design", x)
        if not (self.dt > 0 and self.n_samples >= 2 and self.n_sub >= 1):
            raise ParameterError(
                "dt, n_samples, n_sub",
                (self.dt, self.n_samples, self.n_sub),
                "dt > 0 s, n_samples >= 2, n_sub >= 1",
            )
        if self.dt / self.n_sub > DELAY[0] + 1e-12:
            raise ParameterError(
                "n_sub",
                self.n_sub,
                f"at least {int(np.ceil(self.dt / DELAY[0] - 1e-9))} steps per "
                "sample (integration step <= the 2 ms intrinsic delay)",
            )
        if self.duration <= 0:
            raise ParameterError("duration", self.duration, "a positive input width in s")
        if self.delays not in ("exact", "operator", "none"):
            raise ParameterError("delays", self.delays, "'exact', 'operator' or 'none'")
        if self.integrator not in ("rk4", "spm"):
            raise ParameterError("integrator", self.integrator, "'rk4' or 'spm'")
        if self.integrator == "spm" and self.delays == "exact":
            raise ParameterError(
                "delays", self.delays, "'operator' or 'none' with SPM's integrator"
            )
        if self.absent not in ("zero", "spm"):
            raise ParameterError("absent", self.absent, "'zero' or 'spm'")
        if self.max_delay is not None and not self.max_delay >= DELAY[1]:
            raise ParameterError(
                "max_delay", self.max_delay, f"None or at least SPM's extrinsic delay {DELAY[1]} s"
            )

    # -- identity (static argument of jitted functions) ---------------------------------------
    def _key(self):
        return (
            self.forward.tobytes(),
            self.backward.tobytes(),
            self.lateral.tobytes(),
            self.b.tobytes(),
            self.b.shape,
            self.c.tobytes(),
            self.c.shape,
            self.design.tobytes(),
            self.design.shape,
            float(self.dt),
            int(self.n_samples),
            int(self.n_sub),
            float(self.onset),
            float(self.duration),
            self.delays,
            self.max_delay,
            self.integrator,
            self.absent,
        )

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, ERPStructure) and self._key() == other._key()

    @property
    def n_sources(self):
        return self.forward.shape[0]

    @property
    def n_inputs(self):
        return self.c.shape[1]

    @property
    def n_effects(self):
        return self.b.shape[0]

    @property
    def n_trials(self):
        return self.design.shape[0]

    @property
    def history_window(self):
        """Steps of delay history kept (None: the whole epoch)."""
        if self.max_delay is None:
            return None
        n_steps = self.n_samples * self.n_sub
        return min(n_steps, int(np.ceil(self.max_delay * self.n_sub / self.dt)) + 2)

    @property
    def times(self):
        """Sample times (n_samples,), s."""
        return self.dt * np.arange(1, self.n_samples + 1)

    # -- parameter vector ----------------------------------------------------------------------
    def blocks(self):
        """[(name, shape, free mask)] in parameter-vector order."""
        n, m, e = self.n_sources, self.n_inputs, self.n_effects
        conn = (self.forward | self.backward | self.lateral | np.any(self.b, axis=0)) & ~np.eye(
            n, dtype=bool
        )
        return [
            ("A_forward", (n, n), self.forward),
            ("A_backward", (n, n), self.backward),
            ("A_lateral", (n, n), self.lateral),
            ("B", (e, n, n), self.b),
            ("C", (n, m), self.c),
            ("T", (n, 2), np.ones((n, 2), bool)),
            ("G", (n, 2), np.ones((n, 2), bool)),
            ("S", (2,), np.ones(2, bool)),
            ("H", (4,), np.ones(4, bool)),
            ("D", (n, n), conn),
            ("R", (m, 2), np.ones((m, 2), bool)),
            ("J", (2,), np.ones(2, bool)),
            ("L", (n,), np.ones(n, bool)),
        ]

    def free_index(self):
        return np.flatnonzero(np.concatenate([mask.ravel() for _, _, mask in self.blocks()]))

    @property
    def n_params(self):
        return self.free_index().size

    def prior(self):
        """(mean, variance) of the free parameters (SPM's priors; all means 0)."""
        var = np.concatenate(
            [np.full(int(np.prod(shape)), PRIOR_VAR[name]) for name, shape, _ in self.blocks()]
        )
        idx = self.free_index()
        return np.zeros(idx.size), var[idx]

    def unpack(self, theta):
        """Free-parameter vector -> dict of full blocks (absent entries 0)."""
        total = sum(int(np.prod(shape)) for _, shape, _ in self.blocks())
        full = (
            jnp.zeros(total, dtype=jnp.result_type(theta, float)).at[self.free_index()].set(theta)
        )
        out, o = {}, 0
        for name, shape, _ in self.blocks():
            size = int(np.prod(shape))
            out[name] = full[o : o + size].reshape(shape)
            o += size
        return out

    def pack(self, **blocks):
        """Parameter vector from named blocks (missing blocks 0 = prior mean)."""
        full = []
        for name, shape, _ in self.blocks():
            v = np.zeros(shape) if name not in blocks else np.asarray(blocks[name], float)
            if v.shape != shape:
                raise ParameterError(name, f"array of shape {v.shape}", f"shape {shape}")
            full.append(v.ravel())
        return np.concatenate(full)[self.free_index()]

    def trial_params(self, blocks, x_row) -> ERPParams:
        """Physical neural-mass parameters of one trial (design row ``x_row``)."""
        n = self.n_sources
        mod = jnp.einsum("e,eij->ij", x_row, blocks["B"])
        off = 1.0 - jnp.eye(n)
        conn = []
        for name, mask, scale in zip(
            ("A_forward", "A_backward", "A_lateral"),
            (self.forward, self.backward, self.lateral),
            EXTRINSIC_SCALE,
        ):
            if self.absent == "spm":  # spm_gen_Q adds B to every entry, diagonal included
                log_a = jnp.where(jnp.asarray(mask), blocks[name], ABSENT_LOG_SCALE) + mod
                conn.append(scale * jnp.exp(log_a))
            else:
                conn.append(jnp.asarray(mask, float) * scale * jnp.exp(blocks[name] + mod * off))
        if self.absent == "spm":
            gain = jnp.exp(jnp.where(jnp.asarray(self.c), blocks["C"], ABSENT_LOG_SCALE))
        else:
            gain = jnp.asarray(self.c, float) * jnp.exp(blocks["C"])
        g = blocks["G"]
        return ERPParams(
            forward=conn[0],
            backward=conn[1],
            lateral=conn[2],
            intrinsic=jnp.tile(jnp.asarray(INTRINSIC_SCALE) * jnp.exp(blocks["H"]), (n, 1)),
            h_e=RECEPTOR_DENSITY[0] * jnp.exp(g[:, 0] + jnp.diagonal(mod)),
            h_i=RECEPTOR_DENSITY[1] * jnp.exp(g[:, 1]),
            tau_e=TIME_CONSTANT[0] * jnp.exp(blocks["T"][:, 0]),
            tau_i=TIME_CONSTANT[1] * jnp.exp(blocks["T"][:, 1]),
            sigmoid=jnp.asarray(SIGMOID) * jnp.exp(blocks["S"]),
            input_gain=gain,
            delay_extrinsic=DELAY[1] * jnp.exp(blocks["D"]) * off,
            delay_intrinsic=jnp.asarray(DELAY[0]),
        )

    def inputs(self, blocks):
        """(2 n_samples n_sub + 1, m) exogenous inputs at the RK4 half steps."""
        h = self.dt / self.n_sub
        t = jnp.arange(2 * self.n_samples * self.n_sub + 1) * (h / 2)
        r = blocks["R"]
        return gaussian_input(t[:, None], self.onset, self.duration, r[:, 1], r[:, 0])


def source_states(theta, structure: ERPStructure):
    """All neural states (n_trials, n_samples, n, 9) (mV, mV/s)."""
    blocks = structure.unpack(theta)
    u = structure.inputs(blocks)
    h = structure.dt / structure.n_sub

    if structure.integrator == "spm":
        r = blocks["R"]
        t = jnp.asarray(structure.times)[:, None]
        u_s = gaussian_input(t, structure.onset, structure.duration, r[:, 1], r[:, 0])

        def one_spm(x_row):
            p = structure.trial_params(blocks, x_row)
            return integrate_erp_spm(p, u_s, structure.dt, structure.delays)

        return jax.vmap(one_spm)(jnp.asarray(structure.design))

    def one(x_row):
        p = structure.trial_params(blocks, x_row)
        return integrate_erp(
            p,
            u,
            h,
            structure.n_samples * structure.n_sub,
            structure.n_sub,
            structure.delays,
            structure.history_window,
        )

    return jax.vmap(one)(jnp.asarray(structure.design))


@functools.partial(jax.jit, static_argnames=("structure",))
def source_signals(theta, structure: ERPStructure):
    """Source signals x9 + J1 x1 + J7 x7 (n_trials, n_samples, n_sources), mV."""
    x = source_states(theta, structure)
    j = structure.unpack(theta)["J"]
    return x[..., 8] + j[0] * x[..., 0] + j[1] * x[..., 6]


def dipole_moments(theta, structure: ERPStructure):
    """Current dipole moments (n_trials, n_samples, n_sources), A m."""
    gain = structure.unpack(theta)["L"]
    return source_signals(theta, structure) * gain * MOMENT_PER_MV


def predict_eeg(theta, structure: ERPStructure, lead_field):
    """Channel data (n_trials, n_samples, n_channels), V, for a fixed lead field
    (n_channels, n_sources) in V / (A m)."""
    return jnp.einsum("tsr,cr->tsc", dipole_moments(theta, structure), jnp.asarray(lead_field))


def check_lead_field(structure, lead_field):
    """``lead_field`` as a float array, checked to be a finite (n_channels,
    n_sources) lead field (V/(A m)) for ``structure``; ParameterError otherwise."""
    lf = np.asarray(lead_field, float)
    if lf.ndim != 2 or lf.shape[1] != structure.n_sources or not np.all(np.isfinite(lf)):
        raise ParameterError(
            "lead_field",
            f"array of shape {lf.shape}",
            f"finite (n_channels, {structure.n_sources}) lead field in V/(A m)",
        )
    return lf


def simulate_erp(structure: ERPStructure, theta, lead_field, *, noise_std=0.0, seed=0):
    """Simulated ERP data with known truth.

    Parameters
    ----------
    structure : ERPStructure
    theta : (p,) parameters (``structure.pack(...)``; the prior mean is all zeros except
        that dipole gains ``L`` must be nonzero to see anything)
    lead_field : (n_channels, n_sources), V / (A m), re-referenced as the data are
    noise_std : float, V, white sensor noise
    seed : int

    Returns
    -------
    y, clean : (n_trials, n_samples, n_channels), V
    """
    lf = check_lead_field(structure, lead_field)
    theta = np.asarray(theta, float)
    if theta.shape != (structure.n_params,):
        raise ParameterError("theta", f"array of shape {theta.shape}", f"({structure.n_params},)")
    if noise_std < 0:
        raise ParameterError("noise_std", noise_std, "a non-negative noise level in V")
    clean = np.asarray(predict_eeg(jnp.asarray(theta), structure, lf))
    rng = np.random.default_rng(seed)
    return clean + noise_std * rng.normal(size=clean.shape), clean


def spatial_modes(lead_field, n_modes=None, y=None, kind="leadfield"):
    """Orthonormal channel modes (n_channels, n_modes): principal left singular
    vectors of the lead field (SPM12) or of the data ``y`` (n_trials, n_samples,
    n_channels) when ``kind="data"``."""
    lf = np.asarray(lead_field, float)
    if kind == "leadfield":
        u, s, _ = np.linalg.svd(lf, full_matrices=False)
        rank = int(np.sum(s > s[0] * 1e-10))
        k = rank if n_modes is None else int(n_modes)
        if not 1 <= k <= rank:
            raise ParameterError("n_modes", n_modes, f"1..{rank} (the lead field's rank)")
        return u[:, :k]
    if kind == "data":
        if y is None:
            raise ParameterError("y", None, "data for data modes")
        yy = np.asarray(y, float).reshape(-1, lf.shape[0])
        _, _, vt = np.linalg.svd(yy, full_matrices=False)
        k = 8 if n_modes is None else int(n_modes)
        if not 1 <= k <= vt.shape[0]:
            raise ParameterError("n_modes", n_modes, f"1..{vt.shape[0]}")
        return vt[:k].T
    raise ParameterError("kind", kind, "'leadfield' or 'data'")


@dataclasses.dataclass
class ERPResult:
    """An inverted ERP DCM."""

    structure: ERPStructure
    vl: VLResult
    modes: np.ndarray  # (n_channels, n_modes)
    scale: float  # data features were divided by this (V)
    f_offset: float = 0.0  # log-determinant term of SPM's noise precision (noise="spm")

    @property
    def free_energy(self):
        return self.vl.free_energy + self.f_offset

    @property
    def free_energy_spm12(self):
        """F as SPM12's ``spm_nlsi_N`` reports it, nats: ``free_energy`` plus
        1/2 log|I + e^-16 C^-1| (C the posterior covariance), because ``spm_nlsi_N`` adds
        exp(-16) I to the covariance before its log-determinant (``Cb = spm_inv(dFdbb) +
        bC``).  The term grows with the best-determined directions (0.33 nats on the ERP
        benchmark, where C's smallest eigenvalues are 3e-7).  It equals SPM12's F when the
        fit used ``noise="spm"`` and ``hyper_curvature="expected"`` (SPM12's noise step),
        up to SPM's noise-step tolerance (its noise step stops at dF/dh dh < e^-2)."""
        w = np.linalg.eigvalsh(np.asarray(self.vl.cov))
        if not np.all(w > 0):
            raise ParameterError("vl.cov", "a covariance with eigenvalues <= 0", "a positive one")
        return self.free_energy + 0.5 * float(np.sum(np.log1p(SPM_COV_FLOOR / w)))

    def blocks(self):
        """Posterior means as named blocks (see the module docstring)."""
        return {
            k: np.asarray(v) for k, v in self.structure.unpack(jnp.asarray(self.vl.mean)).items()
        }

    def posterior_sd(self):
        """Posterior standard deviations as named blocks (fixed entries 0)."""
        sd = np.sqrt(np.diag(self.vl.cov))
        return {k: np.asarray(v) for k, v in self.structure.unpack(jnp.asarray(sd)).items()}


def mode_features(y, modes, scale):
    """ERP data ``y`` (n_trials, n_samples, n_channels) projected on the spatial
    ``modes`` (n_channels, n_modes) and divided by ``scale``: the data features
    (n_trials n_samples, n_modes) that the ERP model is fitted to."""
    return (np.asarray(y, float) @ modes / scale).reshape(-1, modes.shape[1])


def spm_noise_precision(n_samples, ar=0.5):
    """SPM12's ERP noise precision component (``spm_Q(1/2, Ns, 1)``): the tridiagonal
    (n_samples, n_samples) matrix with 1 + a^2 on the diagonal and -a beside it."""
    q = (1 + ar**2) * np.eye(n_samples)
    i = np.arange(n_samples - 1)
    q[i, i + 1] = q[i + 1, i] = -ar
    return q


@functools.lru_cache(maxsize=32)
def _model_spm_noise(structure):
    """Features whitened by SPM's AR(1/2) precision, one column (one noise precision)."""

    def model(theta, lf_modes, scale, whiten):
        m = dipole_moments(theta, structure)
        feats = jnp.einsum("tsr,kr->tsk", m, lf_modes) / scale
        return jnp.einsum("us,tsk->tuk", whiten, feats).reshape(-1, 1)

    return model


@functools.lru_cache(maxsize=32)
def _model_for(structure):
    """Data features (n_trials n_samples, n_modes) for (theta, modes' lead field, scale)."""

    def model(theta, lf_modes, scale):
        m = dipole_moments(theta, structure)
        return (jnp.einsum("tsr,kr->tsk", m, lf_modes) / scale).reshape(-1, lf_modes.shape[0])

    return model


def fit_erp(
    structure: ERPStructure,
    y,
    lead_field,
    *,
    n_modes=None,
    modes="leadfield",
    hyper_mean=6.0,
    hyper_var=1 / 128,
    prior=None,
    noise="modes",
    **vl_kwargs,
) -> ERPResult:
    """Invert an ERP DCM by variational Laplace.

    Parameters
    ----------
    structure : ERPStructure
    y : (n_trials, n_samples, n_channels) trial-averaged ERPs, V (trial order = design rows)
    lead_field : (n_channels, n_sources) fixed-orientation lead field, V / (A m)
    n_modes : int or None (default: the lead field's rank; 8 for data modes)
    modes : "leadfield" (SPM12) or "data"
    hyper_mean, hyper_var : prior of each mode's log noise precision (SPM: 6, 1/128 for
        features scaled to unit standard deviation, i.e. a high signal-to-noise ratio)
    prior : (mean, variance) arrays (n_params,) replacing SPM's priors (e.g. a tight
        prior on known dipole gains ``L``), or None
    noise : "modes" (white noise, one precision per mode) or "spm" (SPM12's
        ``spm_dcm_erp``: one precision for all modes and trials, times the AR(1/2)
        precision component ``spm_Q(1/2, Ns, 1)`` in time; the data are whitened by its
        Cholesky factor and ``free_energy`` adds its log-determinant, so F is SPM's;
        SPM12's own noise step is ``hyper_curvature="expected"``, and its reported F is
        ``ERPResult.free_energy_spm12``)
    **vl_kwargs : max_iter, tol, verbose of :func:`invert`
    """
    if noise not in ("modes", "spm"):
        raise ParameterError("noise", noise, "'modes' or 'spm'")
    lf = check_lead_field(structure, lead_field)
    y = np.asarray(y, float)
    expected = (structure.n_trials, structure.n_samples, lf.shape[0])
    if y.shape != expected or not np.all(np.isfinite(y)):
        raise ParameterError(
            "y",
            f"array of shape {y.shape}",
            f"finite data of shape {expected} (trials, samples, channels)",
        )
    u = spatial_modes(lf, n_modes, y, modes)
    feats = y @ u
    scale = float(np.std(feats))
    if not scale > 0:
        raise ParameterError("y", "data with zero variance", "an ERP")
    mean, var = structure.prior() if prior is None else (np.asarray(p, float) for p in prior)
    if mean.shape != (structure.n_params,) or var.shape != (structure.n_params,):
        raise ParameterError(
            "prior",
            f"arrays of shapes {mean.shape}, {var.shape}",
            f"(mean, variance) of shape ({structure.n_params},)",
        )
    if noise == "modes":
        vl = invert(
            _model_for(structure),
            mode_features(y, u, scale),
            mean,
            var,
            args=(jnp.asarray(u.T @ lf), jnp.asarray(scale)),
            hyper_mean=hyper_mean,
            hyper_var=hyper_var,
            **vl_kwargs,
        )
        return ERPResult(structure, vl, u, scale)
    q = spm_noise_precision(structure.n_samples)
    whiten = np.linalg.cholesky(q).T  # r' Q r = |whiten r|^2
    feats = np.einsum("us,tsk->tuk", whiten, (y @ u) / scale).reshape(-1, 1)
    vl = invert(
        _model_spm_noise(structure),
        feats,
        mean,
        var,
        args=(jnp.asarray(u.T @ lf), jnp.asarray(scale), jnp.asarray(whiten)),
        hyper_mean=hyper_mean,
        hyper_var=hyper_var,
        **vl_kwargs,
    )
    offset = 0.5 * structure.n_trials * u.shape[1] * np.linalg.slogdet(q)[1]
    return ERPResult(structure, vl, u, scale, offset)


def region_lead_field(
    regions,
    n_channels=None,
    montage="standard_1020",
    relative_radii=(0.87, 0.92, 1.0),
    conductivities=(0.33, 0.0042, 0.33),
):
    """Fixed-orientation, average-referenced lead field (n_channels, n_regions), V / (A m),
    of cortical landmark regions (e.g. ``"V1-lh"``) in a three-shell sphere fitted to a
    standard montage: each region is one dipole at its patch centroid along its mean
    normal (as ``biosim run`` places EEG sources).  ``n_channels`` keeps the first
    electrodes of the montage."""
    from ...geometry.source_space import cortical_surface
    from ...physics.electromag import SphereHead, eeg_gain
    from ...physics.electromag.montage import fit_sphere, standard_montage

    full = standard_montage(montage)
    if n_channels is not None and not 1 <= int(n_channels) <= full.n_channels:
        raise ParameterError("n_channels", n_channels, f"1..{full.n_channels}")
    names = list(full.names[:n_channels]) if n_channels is not None else None
    sensors = standard_montage(montage, channels=names)
    center, radius = fit_sphere(full.positions)
    head = SphereHead.create(np.asarray(relative_radii, float) * radius, conductivities, center)
    space = cortical_surface("ico4")
    pos, ori = [], []
    for name in regions:
        if name not in space.regions:
            raise ParameterError("regions", name, f"one of {sorted(space.regions)}")
        idx = space.regions[name]
        nrm = space.normals[idx].mean(0)
        pos.append(space.positions[idx].mean(0))
        ori.append(nrm / np.linalg.norm(nrm))
    g = np.asarray(eeg_gain(head, sensors.positions, np.array(pos)))  # (C, R, 3)
    return sensors.reference_matrix() @ np.einsum("csk,sk->cs", g, np.array(ori))
