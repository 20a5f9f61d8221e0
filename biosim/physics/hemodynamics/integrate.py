"""Time integration of the Balloon-Windkessel model and BOLD sampling.

The neural input is given at a microtime step ``dt`` and held constant over
each step (zero-order hold).  The integrator takes ``substeps`` steps of
``h = dt / substeps`` per input sample, so within a step the right-hand side
is smooth and a one-step method attains its full order: forward Euler (1),
Heun (2) and classic Runge-Kutta (4), the tableaux of
:mod:`biosim._core.time_stepping`.  RK4 at h = 0.1 s is far more accurate
than forward Euler at 0.1 ms, at 1000x fewer steps (see
``benchmarks/hemodynamics.py``).

Regions (or voxels) are independent: the right-hand side broadcasts over all
leading axes, so one ``lax.scan`` over time advances thousands of regions at
once; constants may be per-region arrays.  States are recorded every
``record_every`` input samples (e.g. once per TR), which keeps memory at
``n_records x n_regions x 4`` for long runs with many voxels.

Everything is differentiable with respect to the constants
(:class:`BalloonParams`, :class:`BOLDParams`) and the neural input.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ..._core.time_stepping import TABLEAUX, integrate_fixed_step
from ..._core.validation import check_all_finite, check_finite, check_positive, is_concrete
from .balloon import BalloonParams, balloon_rhs, resting_state
from .bold import BOLDParams, bold_from_states

METHODS = tuple(TABLEAUX)
#: Theoretical global order of each method.
METHOD_ORDER = {name: tab.order for name, tab in TABLEAUX.items()}


@partial(jax.jit, static_argnames=("method", "substeps", "record_every"))
def _integrate(x0, u, dt, params, method, substeps, record_every):
    return integrate_fixed_step(
        lambda x, z: balloon_rhs(x, z, params),
        x0,
        u,
        dt,
        method=method,
        substeps=substeps,
        record_every=record_every,
    )


def integrate_balloon(
    neural_input,
    dt,
    params: BalloonParams | None = None,
    *,
    method: str = "rk4",
    substeps: int = 1,
    record_every: int = 1,
    x0=None,
):
    """Integrate the hemodynamic states driven by ``neural_input``.

    Parameters
    ----------
    neural_input : array, shape (n_t, ...)
        Vasoactive neural signal z(t) in 1/s at times ``k dt``; held constant
        over ``[k dt, (k+1) dt)``.  Trailing axes are regions/voxels.
    dt : float
        Input sampling step, s.
    params : BalloonParams
        Constants; defaults to the SPM preset.
    method : {"rk4", "heun", "euler"}
        One-step integrator.
    substeps : int
        Integrator steps per input sample (step ``h = dt / substeps``).
    record_every : int
        Record the state every this many input samples; must divide n_t.
    x0 : array, shape (..., 4), optional
        Initial state (default: rest).

    Returns
    -------
    states : array, shape (n_t // record_every, ..., 4)
        ``states[j]`` is the state at time ``j * record_every * dt``
        (``states[0]`` is ``x0``).
    x_final : array, shape (..., 4)
        State at time ``n_t * dt``.
    """
    check_all_finite(x0=x0)
    params = BalloonParams.spm() if params is None else params
    if method not in METHODS:
        raise ParameterError("method", method, f"one of {METHODS}")
    if not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise ParameterError("substeps", substeps, "a positive integer")
    if not isinstance(record_every, (int, np.integer)) or record_every < 1:
        raise ParameterError("record_every", record_every, "a positive integer")
    check_positive("dt", dt, "s")
    check_finite("neural_input", neural_input)
    if is_concrete(params):
        params.validate()
    u = jnp.asarray(neural_input, dtype=float)
    if u.ndim < 1 or u.shape[0] < 1:
        raise ParameterError(
            "neural_input", f"array of shape {u.shape}", "shape (n_t, ...) with n_t >= 1"
        )
    if u.shape[0] % record_every:
        raise ParameterError(
            "record_every", record_every, f"a divisor of the number of input samples ({u.shape[0]})"
        )
    x0 = resting_state(u.shape[1:]) if x0 is None else jnp.asarray(x0, dtype=float)
    return _integrate(
        x0, u, jnp.asarray(dt, dtype=float), params, method, int(substeps), int(record_every)
    )


class HemodynamicResponse(NamedTuple):
    """Output of :func:`simulate_bold`.

    Attributes
    ----------
    times : array, shape (n_records,)
        Times of the recorded samples, s.
    states : array, shape (n_records, ..., 4)
        Balloon states ``[s, ln f, ln v, ln q]`` at ``times``.
    bold : array, shape (n_records, ...)
        Fractional BOLD signal change at ``times``.
    """

    times: jax.Array
    states: jax.Array
    bold: jax.Array


def _record_stride(dt, tr, n_t):
    if tr is None:
        return 1
    check_positive("tr", tr, "s")
    ratio = float(tr) / float(dt)
    stride = int(round(ratio))
    if stride < 1 or abs(ratio - stride) > 1e-9 * max(1.0, ratio):
        raise ParameterError("tr", tr, f"an integer multiple of dt = {dt} s")
    if n_t % stride:
        raise ParameterError(
            "neural_input",
            f"{n_t} samples",
            f"a whole number of TRs ({stride} samples of dt per TR)",
        )
    return stride


def simulate_bold(
    neural_input,
    dt,
    balloon: BalloonParams | None = None,
    bold: BOLDParams | None = None,
    *,
    tr: float | None = None,
    method: str = "rk4",
    substeps: int = 1,
    x0=None,
) -> HemodynamicResponse:
    """Neural input -> hemodynamic states -> BOLD, sampled every TR.

    Parameters
    ----------
    neural_input : array, shape (n_t, ...)
        Neural input z in 1/s at microtime step ``dt``.
    dt : float
        Microtime step, s.
    balloon, bold : BalloonParams, BOLDParams
        Constants (default: ``BalloonParams.spm()`` and ``BOLDParams.at_field(3.0)``,
        field-dependent BOLD constants at 3 T, TE = 40 ms).
    tr : float, optional
        Repetition time, s; must be a multiple of ``dt`` and exceed the echo
        time.  ``None`` records every microtime sample.
    method, substeps, x0
        See :func:`integrate_balloon`.

    Returns
    -------
    HemodynamicResponse
        ``times`` (s), ``states`` and ``bold`` (fraction) at each TR (the
        first sample, t = 0, is the initial state).
    """
    check_all_finite(tr=tr)
    balloon = BalloonParams.spm() if balloon is None else balloon
    bold = BOLDParams.at_field(3.0) if bold is None else bold
    if is_concrete(bold):
        bold.validate()
    u = jnp.asarray(neural_input, dtype=float)
    stride = _record_stride(dt, tr, u.shape[0] if u.ndim else 0)
    if is_concrete((balloon.resting_extraction, bold.resting_extraction)) and not np.allclose(
        balloon.resting_extraction, bold.resting_extraction
    ):
        raise ParameterError(
            "bold.resting_extraction",
            bold.resting_extraction,
            f"the Balloon model's E0 = {balloon.resting_extraction}",
        )
    if tr is not None and is_concrete(bold.echo_time) and float(bold.echo_time) >= float(tr):
        raise ParameterError("echo_time", float(bold.echo_time), f"less than TR = {tr} s")
    states, _ = integrate_balloon(
        u, dt, balloon, method=method, substeps=substeps, record_every=stride, x0=x0
    )
    times = jnp.arange(states.shape[0]) * (stride * dt)
    return HemodynamicResponse(times=times, states=states, bold=bold_from_states(states, bold))
