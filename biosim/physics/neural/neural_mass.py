"""Neural mass model of event-related potentials (David & Friston 2003; the
ERP model of SPM12's ``spm_fx_erp``) with exact conduction delays.

Each source has three subpopulations and nine states (SPM's order, membrane
potentials in mV, currents in mV/s)::

    x1  spiny stellate (granular, input) depolarisation      x4 = dx1/dt
    x2  pyramidal depolarisation (excitatory PSP)            x5 = dx2/dt
    x3  pyramidal hyperpolarisation (inhibitory PSP)         x6 = dx3/dt
    x7  inhibitory interneuron (supragranular) depolarisation x8 = dx7/dt
    x9  pyramidal membrane potential, dx9/dt = x5 - x6  (the EEG generator)

Every synapse is the alpha kernel h(t) = H t/tau exp(-t/tau) written as the
second-order ODE ``tau x'' = H input - 2 x' - x / tau`` (Jansen & Rit 1995),
with (SPM12 ``spm_fx_erp``, constants checked against its source)::

    tau x4' = H_e ((F + L) S(x9(t - d_e)) + G1 S(x9(t - d_i)) + U) - 2 x4 - x1/tau_e
    tau x5' = H_e ((B + L) S(x9(t - d_e)) + G2 S(x1(t - d_i)))     - 2 x5 - x2/tau_e
    tau x6' = H_i G4 S(x7(t - d_i))                                 - 2 x6 - x3/tau_i
    tau x8' = H_e ((B + L) S(x9(t - d_e)) + G3 S(x9(t - d_i)))     - 2 x8 - x7/tau_e

(tau = tau_e except in the x6 line), where F, B, L are the extrinsic forward,
backward and lateral coupling matrices (Hz; row = target, column = source)
and G1..G4 the intrinsic couplings (Hz).  SPM's defaults: forward/backward/
lateral scales 32/16/4 Hz, G = 128 x [1, 4/5, 1/4, 1/4] Hz, H_e = 4 mV,
H_i = 32 mV, tau_e = 8 ms, tau_i = 16 ms, delays d_i = 2 ms (intrinsic) and
d_e = 16 ms (extrinsic), and the sigmoid (firing rate, dimensionless)::

    S(v) = 1 / (1 + exp(-r1 (v - r2))) - 1 / (1 + exp(r1 r2)),  r = [2/3, 1/3]

which vanishes at v = 0, so the resting state x = 0 is a fixed point.  The
exogenous input U (Hz) is SPM's ``2 C u(t)``; see :func:`gaussian_input`.

Delays
------
``delays="exact"`` integrates the delay differential equations themselves:
the states are advanced by classic RK4 at a fixed step h (at most the 2 ms
intrinsic delay; 1 ms or 2 ms in practice) and
the delayed potentials x9, x1, x7 at ``t - d`` are read from the full history
of the epoch by cubic Hermite interpolation between the stored steps, using
the stored derivatives (x5 - x6, x4, x8), so interpolation is O(h^4) like
the stepper; the history before t = 0 is the resting state (0).  Delays are
differentiable parameters.  Delays shorter than h read the state at the
start of the step (that is the only approximation, and it never applies to
SPM's 2 and 16 ms at h <= 1 ms).  ``delays="operator"`` reproduces SPM's
first-order approximation instead, dx/dt = Q f(x) with
Q = (I + D .* J)^-1, J = df/dx at rest, D the matrix of delays between
states (``spm_fx_erp``), so the two can be compared (``benchmarks/dcm_erp.py``);
``delays="none"`` ignores delays.  :func:`integrate_erp_spm` is SPM12's own
scheme (``spm_int_L``: one frozen-Jacobian exponential step per sample), to
compare with SPM sample for sample.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._core.errors import ParameterError
from ..._core.pytree import pytree_dataclass
from ..._core.time_stepping import RK4, rk_step
from ..._core.validation import check_all_finite, check_finite, is_concrete

#: SPM12 ``spm_fx_erp`` fixed constants.
EXTRINSIC_SCALE = (32.0, 16.0, 4.0)  # forward, backward, lateral, Hz
INTRINSIC_SCALE = (128.0, 128.0 * 4 / 5, 128.0 / 4, 128.0 / 4)  # G1..G4, Hz
RECEPTOR_DENSITY = (4.0, 32.0)  # H_e, H_i, mV
TIME_CONSTANT = (8e-3, 16e-3)  # tau_e, tau_i, s
DELAY = (2e-3, 16e-3)  # intrinsic, extrinsic, s
SIGMOID = (2.0 / 3.0, 1.0 / 3.0)  # slope 1/mV, threshold mV
N_STATES = 9
DELAY_MODES = ("exact", "operator", "none")


@pytree_dataclass
class ERPParams:
    """Physical parameters of an n-source ERP neural mass (all traced leaves).

    Attributes
    ----------
    forward, backward, lateral : (n, n) extrinsic couplings, Hz (row = target)
    intrinsic : (n, 4) G1..G4, Hz
    h_e, h_i : (n,) maximal excitatory / inhibitory PSP amplitudes, mV
    tau_e, tau_i : (n,) synaptic time constants, s
    sigmoid : (2,) slope (1/mV) and threshold (mV)
    input_gain : (n, m) C, dimensionless (U = 2 C u)
    delay_extrinsic : (n, n) conduction delays, s (row = target)
    delay_intrinsic : scalar, s
    """

    forward: jnp.ndarray
    backward: jnp.ndarray
    lateral: jnp.ndarray
    intrinsic: jnp.ndarray
    h_e: jnp.ndarray
    h_i: jnp.ndarray
    tau_e: jnp.ndarray
    tau_i: jnp.ndarray
    sigmoid: jnp.ndarray
    input_gain: jnp.ndarray
    delay_extrinsic: jnp.ndarray
    delay_intrinsic: jnp.ndarray

    @classmethod
    def spm(cls, forward, backward, lateral, input_gain) -> ERPParams:
        """SPM's default constants with the given extrinsic couplings (Hz) and C."""
        check_all_finite(forward=forward, backward=backward, lateral=lateral, input_gain=input_gain)
        f = jnp.asarray(forward, float)
        n = f.shape[0]
        return cls(
            forward=f,
            backward=jnp.asarray(backward, float),
            lateral=jnp.asarray(lateral, float),
            intrinsic=jnp.tile(jnp.asarray(INTRINSIC_SCALE), (n, 1)),
            h_e=jnp.full(n, RECEPTOR_DENSITY[0]),
            h_i=jnp.full(n, RECEPTOR_DENSITY[1]),
            tau_e=jnp.full(n, TIME_CONSTANT[0]),
            tau_i=jnp.full(n, TIME_CONSTANT[1]),
            sigmoid=jnp.asarray(SIGMOID),
            input_gain=jnp.asarray(input_gain, float),
            delay_extrinsic=jnp.full((n, n), DELAY[1]) * (1 - jnp.eye(n)),
            delay_intrinsic=jnp.asarray(DELAY[0]),
        )

    @property
    def n_sources(self):
        return self.forward.shape[0]


def sigmoid(v, params: ERPParams):
    """Firing rate S(v) of SPM's ERP model (dimensionless, S(0) = 0); v in mV."""
    r1, r2 = params.sigmoid[0], params.sigmoid[1]
    return jax.nn.sigmoid(r1 * (v - r2)) - jax.nn.sigmoid(-r1 * r2)


def gaussian_input(t, onset, duration, log_dispersion=0.0, shift=0.0):
    """SPM12's ERP input (``spm_erp_u``): a Gaussian bump, dimensionless.

    ``u(t) = 32 exp(-(t - onset - 0.128 shift)^2 / (2 (duration exp(log_dispersion))^2))``
    with t, onset and duration in s (SPM: onset 60 ms, duration 16 ms;
    ``shift`` and ``log_dispersion`` are its free parameters R(1), R(2)).
    """
    centre = onset + 0.128 * shift
    width = duration * jnp.exp(log_dispersion)
    return 32.0 * jnp.exp(-0.5 * ((t - centre) / width) ** 2)


def erp_rhs(x, u, params: ERPParams, s9_ext, s9_int, s1_int, s7_int):
    """dx/dt (n, 9) of the neural mass, given the delayed firing rates.

    Parameters
    ----------
    x : (n, 9) states
    u : (m,) exogenous input (dimensionless; U = 2 C u Hz)
    s9_ext : (n, n) S(x9_j(t - d_ij)) seen by target i from source j
    s9_int, s1_int, s7_int : (n,) S(x9), S(x1), S(x7) at t - d_intrinsic
    """
    p = params
    g = p.intrinsic
    te, ti = p.tau_e, p.tau_i
    fwd = jnp.sum((p.forward + p.lateral) * s9_ext, axis=1)
    bwd = jnp.sum((p.backward + p.lateral) * s9_ext, axis=1)
    drive = 2.0 * p.input_gain @ u
    return jnp.stack(
        [
            x[:, 3],
            x[:, 4],
            x[:, 5],
            (p.h_e * (fwd + g[:, 0] * s9_int + drive) - 2 * x[:, 3] - x[:, 0] / te) / te,
            (p.h_e * (bwd + g[:, 1] * s1_int) - 2 * x[:, 4] - x[:, 1] / te) / te,
            (p.h_i * g[:, 3] * s7_int - 2 * x[:, 5] - x[:, 2] / ti) / ti,
            x[:, 7],
            (p.h_e * (bwd + g[:, 2] * s9_int) - 2 * x[:, 7] - x[:, 6] / te) / te,
            x[:, 4] - x[:, 5],
        ],
        axis=1,
    )


def _instantaneous_rhs(x, u, params):
    """The right-hand side with all delays set to zero."""
    s = sigmoid(x, params)
    n = x.shape[0]
    return erp_rhs(x, u, params, jnp.broadcast_to(s[None, :, 8], (n, n)), s[:, 8], s[:, 0], s[:, 6])


def delay_operator(params: ERPParams, m: int):
    """SPM's first-order delay operator Q = (I + D .* J)^-1 at rest (9n x 9n).

    States are flattened source-fastest within each state type (SPM's
    ``spm_vec`` of the n x 9 array); D holds the intrinsic delay between
    different states of one source and the extrinsic delay between any
    states of different sources (``spm_fx_erp``)."""
    n = params.n_sources
    x0 = jnp.zeros((n, N_STATES))

    def f_flat(v):
        return _instantaneous_rhs(v.reshape(N_STATES, n).T, jnp.zeros(m), params).T.ravel()

    jac = jax.jacfwd(f_flat)(x0.T.ravel())
    de = params.delay_extrinsic * (1 - jnp.eye(n))
    di = params.delay_intrinsic * (1 - jnp.eye(N_STATES))
    d = jnp.kron(jnp.ones((N_STATES, N_STATES)), de) + jnp.kron(di, jnp.eye(n))
    return jnp.linalg.inv(jnp.eye(n * N_STATES) + d * jac)


def integrate_erp(
    params: ERPParams,
    u_half,
    h,
    n_steps: int,
    record_every: int = 1,
    delays: str = "exact",
    window: int | None = None,
):
    """Integrate the neural mass from rest over ``n_steps`` steps of ``h`` s.

    Parameters
    ----------
    params : ERPParams
    u_half : (2 n_steps + 1, m) exogenous input at the half-step times k h / 2
        (integer and boolean inputs are converted to floats)
    h : float, s (RK4 step; keep h <= 2 ms, the intrinsic delay)
    n_steps : int (a multiple of ``record_every``)
    record_every : int, steps between recorded states
    delays : "exact" | "operator" | "none" (see the module docstring)
    window : int or None
        Steps of history kept for the exact delays (a shift register): None keeps the
        whole run (exact for any delay); for long runs pass at least
        ``max delay / h + 1`` (:func:`simulate_neural_mass` does).  A delay longer than
        the window reads the oldest stored step.

    Returns
    -------
    (n_steps // record_every, n, 9) states at t = record_every h, 2 record_every h, ...
    """
    u_half = jnp.asarray(u_half, dtype=jnp.result_type(float))
    return _integrate_erp(params, u_half, h, n_steps, record_every, delays, window)


@partial(jax.jit, static_argnames=("n_steps", "record_every", "delays", "window"))
def _integrate_erp(params, u_half, h, n_steps, record_every, delays, window):
    if delays not in DELAY_MODES:
        raise ParameterError("delays", delays, f"one of {DELAY_MODES}")
    if n_steps % record_every:
        raise ParameterError("n_steps", n_steps, f"a multiple of record_every={record_every}")
    n = params.n_sources
    m = u_half.shape[-1]
    if u_half.shape[0] != 2 * n_steps + 1:
        raise ParameterError(
            "u_half",
            f"array of shape {u_half.shape}",
            f"({2 * n_steps + 1}, m): inputs at the half steps",
        )
    x0 = jnp.zeros((n, N_STATES))

    if delays != "exact":
        q = delay_operator(params, m) if delays == "operator" else None

        def rhs(x, u, _k, _c, _hist):
            f = _instantaneous_rhs(x, u, params)
            if q is None:
                return f
            return (q @ f.T.ravel()).reshape(N_STATES, n).T
    else:
        w = n_steps + 1 if window is None else int(window) + 1
        rows = jnp.arange(w) - (w - 1.0)  # time of each row relative to now

        def weights(q):
            """Cubic Hermite weights of every history row for the value and the
            derivative at (fractional) time index q: dense, so that the
            derivatives of the lookup are plain dense products (no scatter)."""
            dist = q[..., None] - rows
            left = (dist >= 0) & (dist < 1)
            right = (dist >= -1) & (dist < 0)
            s_l, s_r = jnp.where(left, dist, 0.0), jnp.where(right, dist + 1, 0.0)
            wy = jnp.where(left, 2 * s_l**3 - 3 * s_l**2 + 1, 0.0) + jnp.where(
                right, -2 * s_r**3 + 3 * s_r**2, 0.0
            )
            wd = h * (
                jnp.where(left, s_l**3 - 2 * s_l**2 + s_l, 0.0)
                + jnp.where(right, s_r**3 - s_r**2, 0.0)
            )
            return wy, wd

        def lookup(hist, k, c, delay, idx):
            """Potential idx (0: x9, 1: x1, 2: x7) at t_k + c h - delay; delay (n, n)
            (target, source) or (n,) (own source).  Times before 0 are at rest; a delay
            shorter than the stage offset reads the newest stored step."""
            hv, hd = hist
            q = jnp.clip(c - delay / h, 1.0 - w, 0.0)
            wy, wd = weights(q)
            if q.ndim == 2:
                return jnp.einsum("ijr,rj->ij", wy, hv[:, idx]) + jnp.einsum(
                    "ijr,rj->ij", wd, hd[:, idx]
                )
            return jnp.einsum("ir,ri->i", wy, hv[:, idx]) + jnp.einsum("ir,ri->i", wd, hd[:, idx])

        def rhs(x, u, k, c, hist):
            v9e = lookup(hist, k, c, params.delay_extrinsic, 0)  # (n, n)
            di = jnp.broadcast_to(params.delay_intrinsic, (n,))
            v9i, v1i, v7i = (lookup(hist, k, c, di, j) for j in range(3))
            return erp_rhs(
                x,
                u,
                params,
                sigmoid(v9e, params),
                sigmoid(v9i, params),
                sigmoid(v1i, params),
                sigmoid(v7i, params),
            )

    def record(hist, x):
        """Shift the history by one step and store the newest state."""
        hv, hd = hist
        v = jnp.stack([x[:, 8], x[:, 0], x[:, 6]])
        d = jnp.stack([x[:, 4] - x[:, 5], x[:, 3], x[:, 7]])
        return (jnp.concatenate([hv[1:], v[None]]), jnp.concatenate([hd[1:], d[None]]))

    def step(carry, k):
        x, hist = carry
        # the input at the RK4 nodes c = 0, 1/2, 1 of the step: half-step samples 2k + 2c
        u_at = {0.0: u_half[2 * k], 0.5: u_half[2 * k + 1], 1.0: u_half[2 * k + 2]}
        x = rk_step(RK4, lambda xs, _t, c: rhs(xs, u_at[c], k, c, hist), x, 0.0, h)
        if delays == "exact":
            hist = record(hist, x)
        return (x, hist), None

    def block(carry, ks):
        carry, _ = lax.scan(step, carry, ks)
        return carry, carry[0]

    if delays == "exact":
        # the newest row is the current step; older rows start at rest (the history
        # before t = 0 is the resting state x = 0)
        hist = (jnp.zeros((w, 3, n)), jnp.zeros((w, 3, n)))
    else:
        hist = None
    ks = jnp.arange(n_steps).reshape(-1, record_every)
    _, xs = lax.scan(block, (x0, hist), ks)
    return xs


@partial(jax.jit, static_argnames=("delays",))
def integrate_erp_spm(params: ERPParams, u_samples, dt, delays: str = "operator"):
    """SPM12's ERP integration scheme (``spm_int_L`` as called by ``spm_gen_erp``).

    One step per sample of the local-linearisation (exponential Euler) update with the
    Jacobian frozen at rest: ``x_k = x_{k-1} + Q f(x_{k-1}, u_k)``,
    ``Q = (expm(dt D J) - I) (J - e^-16 I)^-1``, J = df/dx at rest (delays ignored),
    D SPM's first-order delay operator (:func:`delay_operator`; the identity for
    ``delays="none"``) and f the right-hand side without delays.  The state is recorded
    after each step, so sample k (t = k dt) sees the input at t = k dt.  First order in
    dt; at SPM's 4 ms it differs from the converged solution (``benchmarks/dcm_erp.py``).

    Parameters
    ----------
    params : ERPParams
    u_samples : (n_samples, m) exogenous input at t = dt, 2 dt, ..., n_samples dt
    dt : float, s, sampling interval
    delays : "operator" | "none"

    Returns
    -------
    (n_samples, n, 9) states at t = dt, ..., n_samples dt
    """
    if delays not in ("operator", "none"):
        raise ParameterError("delays", delays, "'operator' or 'none' (SPM's scheme)")
    n = params.n_sources
    m = u_samples.shape[-1]
    size = n * N_STATES

    def f_flat(v, u):
        return _instantaneous_rhs(v.reshape(N_STATES, n).T, u, params).T.ravel()

    jac = jax.jacfwd(f_flat)(jnp.zeros(size), jnp.zeros(m)) - jnp.exp(-16.0) * jnp.eye(size)
    dq = delay_operator(params, m) if delays == "operator" else jnp.eye(size)
    q = jnp.linalg.solve(jac.T, (jax.scipy.linalg.expm(dt * dq @ jac) - jnp.eye(size)).T).T

    def step(v, u):
        v = v + q @ f_flat(v, u)
        return v, v

    _, vs = lax.scan(step, jnp.zeros(size, dtype=q.dtype), jnp.asarray(u_samples, q.dtype))
    return vs.reshape(-1, N_STATES, n).transpose(0, 2, 1)


def _history_window(params, h, n_steps):
    """Shortest exact history (steps) for concrete delays; None (whole run) if traced."""
    if not (is_concrete(params.delay_extrinsic) and is_concrete(params.delay_intrinsic)):
        return None
    d_max = max(
        float(np.max(np.asarray(params.delay_extrinsic))), float(np.asarray(params.delay_intrinsic))
    )
    return min(n_steps, int(np.ceil(d_max / h)) + 2)


def simulate_neural_mass(
    params: ERPParams, inputs, dt: float, n_samples: int, n_sub: int = 2, delays: str = "exact"
):
    """States (n_samples, n, 9) at t = dt, 2 dt, ..., n_samples dt, from rest at t = 0.

    ``inputs`` is a callable t (s, array) -> (len(t), m) dimensionless input
    (e.g. ``lambda t: gaussian_input(t, 0.06, 0.016)[:, None]``) evaluated at
    the RK4 half steps of h = dt / n_sub (keep h <= 2 ms).
    """
    if n_sub < 1 or dt <= 0 or n_samples < 1:
        raise ParameterError(
            "dt, n_sub, n_samples", (dt, n_sub, n_samples), "dt > 0 s, n_sub >= 1, n_samples >= 1"
        )
    h = dt / n_sub
    n_steps = n_samples * n_sub
    t = jnp.arange(2 * n_steps + 1) * (h / 2)
    u = jnp.asarray(inputs(t), dtype=jnp.result_type(float))
    check_finite("inputs", u)
    u = u[:, None] if u.ndim == 1 else u
    return integrate_erp(
        params,
        u,
        h,
        n_steps,
        n_sub,
        delays,
        _history_window(params, h, n_steps) if delays == "exact" else None,
    )


def event_related_activity(
    params: ERPParams,
    onsets,
    duration: float,
    dt: float = 1e-3,
    width: float = 0.016,
    n_sub: int = 1,
    delays: str = "exact",
):
    """Continuous neural-mass activity over a whole run with stimulus events.

    Each event of input j adds SPM's Gaussian bump (:func:`gaussian_input`,
    centred on the onset, SD ``width``) to input j; the network runs from
    rest at t = 0 without resetting between events (so close events
    interact through the nonlinear dynamics).  This is the entry point for
    using the neural mass as the brain activity of a simulated experiment.

    Parameters
    ----------
    params : ERPParams (n sources, m inputs)
    onsets : sequence of m arrays of event times, s
    duration : float, s
    dt : float, s, output sampling interval (h = dt / n_sub <= 2 ms)
    width : float, s
    delays : "exact" | "operator" | "none"

    Returns
    -------
    times : (T,) s;  x9 : (T, n) pyramidal depolarisation, mV (the EEG generator:
    multiply by a dipole moment per mV and a lead field for EEG/MEG)
    """
    check_all_finite(duration=duration, dt=dt, width=width)
    for j, ons in enumerate(onsets):
        check_finite(f"onsets[{j}]", ons)
    m = params.input_gain.shape[1]
    if len(onsets) != m:
        raise ParameterError("onsets", f"{len(onsets)} onset lists", f"one per input ({m})")
    if duration <= 0 or dt <= 0 or n_sub < 1 or dt / n_sub > DELAY[0] + 1e-12:
        raise ParameterError(
            "duration, dt, n_sub",
            (duration, dt, n_sub),
            "duration > 0 s and a step dt / n_sub <= 2 ms",
        )
    n_samples = int(round(duration / dt))
    h = dt / n_sub
    t_half = np.arange(2 * n_samples * n_sub + 1) * (h / 2)
    u = np.zeros((t_half.size, m))
    for j, ons in enumerate(onsets):
        for o in np.asarray(ons, float).ravel():
            if not 0 <= o < duration:
                raise ParameterError("onsets", o, f"times in [0, {duration}) s")
            lo, hi = np.searchsorted(t_half, [o - 8 * width, o + 8 * width])
            u[lo:hi, j] += np.asarray(gaussian_input(t_half[lo:hi], o, width))
    x = simulate_neural_mass(params, lambda t: jnp.asarray(u), dt, n_samples, n_sub, delays)
    return dt * np.arange(1, n_samples + 1), np.asarray(x[..., 8])
