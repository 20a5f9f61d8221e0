"""Joint EEG-fMRI DCM: one neural mass generates both the ERPs and the BOLD.

The ERP part is :mod:`biosim.inference.dcm.erp` (SPM12's ERP model, fixed
dipoles).  The BOLD part follows the neurovascular-coupling DCM of Jafarian,
Litvak, Cagnan, Friston & Zeidman (2020, NeuroImage 219:116734, "Neurovascular
coupling: insights from multi-modal dynamic causal modelling of fMRI and MEG";
SPM12 ``spm_dcm_nvc_nd``, 'post'-synaptic drive): the neuronal drive of
region i's hemodynamics is the Hanning-tapered root-mean-square over
peristimulus time of its pyramidal depolarisation x9 in trial type c,
``r_ic`` (mV), times the fMRI stimulus function of that trial type,
scaled by a coupling ``beta_i`` (1/mV, prior N(0, 1); Jafarian et al. use
N(0, 1/16) on their normalised drives)::

    z_i(t) = beta_i sum_c r_ic s_c(t)

where s_c(t) is a boxcar of unit area over each trial of type c (its epoch
``n_samples dt`` from each onset), so every trial delivers an integrated
drive ``beta_i r_ic``.  z drives the Balloon-Windkessel model (SPM12
``spm_fx_fmri`` constants, log transit / decay per region and log epsilon
with SPM's priors N(0, 1/256)) and the BOLD signal (``spm_gx_fmri``),
integrated by RK4 at ``TR / n_micro`` and sampled at every TR.

Both data sets are inverted together by one variational Laplace: the EEG
features (modes, scaled to unit SD) and the BOLD (percent, scaled to unit
SD) are stacked as columns with their own noise precisions.  The VL takes
rectangular data, so both blocks are cut into chunks of the same length
``gcd(n_trials n_samples, n_scans)`` (one noise precision per chunk and
column; one per mode and region when the lengths are equal, as in the
tests and benchmark).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from ..._core.time_stepping import integrate_fixed_step
from ...physics.hemodynamics import BalloonParams, BOLDParams
from ...physics.hemodynamics.balloon import balloon_rhs
from ...physics.hemodynamics.bold import bold_from_states
from .erp import (
    MOMENT_PER_MV,
    ERPStructure,
    check_lead_field,
    mode_features,
    source_states,
    spatial_modes,
)
from .variational_laplace import VLResult, invert

PRIOR_VAR_COUPLING = 1.0
PRIOR_VAR_HEMO = 1 / 256
#: Shortest common chunk length of the stacked data (one noise precision each).
MIN_CHUNK = 16


@dataclasses.dataclass(frozen=True, eq=False)
class JointStructure:
    """An ERP DCM plus the event-related fMRI session it shares its neurons with.

    Parameters
    ----------
    erp : ERPStructure (its design rows are the trial types)
    onsets : sequence (one per trial type) of onset times in the fMRI session, s
    n_scans : int
    tr : float, s
    n_micro : int, hemodynamic RK4 steps per TR
    field_strength, echo_time : T, s
    """

    erp: ERPStructure
    onsets: tuple
    n_scans: int
    tr: float = 2.0
    n_micro: int = 8
    field_strength: float = 3.0
    echo_time: float = 0.03

    def __post_init__(self):
        ons = tuple(np.asarray(o, float).ravel() for o in self.onsets)
        if len(ons) != self.erp.n_trials:
            raise ParameterError(
                "onsets", f"{len(ons)} onset lists", f"one per trial type ({self.erp.n_trials})"
            )
        duration = self.n_scans * self.tr
        for o in ons:
            if o.size and (o.min() < 0 or o.max() >= duration or not np.all(np.isfinite(o))):
                raise ParameterError("onsets", o, f"times in [0, {duration}) s")
        object.__setattr__(self, "onsets", ons)
        if self.tr <= 0 or self.n_scans < 2 or self.n_micro < 1:
            raise ParameterError(
                "tr, n_scans, n_micro",
                (self.tr, self.n_scans, self.n_micro),
                "tr > 0 s, n_scans >= 2, n_micro >= 1",
            )

    def _key(self):
        return (
            self.erp,
            tuple(o.tobytes() for o in self.onsets),
            int(self.n_scans),
            float(self.tr),
            int(self.n_micro),
            float(self.field_strength),
            float(self.echo_time),
        )

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, JointStructure) and self._key() == other._key()

    @property
    def n_sources(self):
        return self.erp.n_sources

    @property
    def n_params(self):
        return self.erp.n_params + 3 * self.n_sources + 1

    def prior(self):
        """(mean, variance): the ERP priors, then coupling beta (n), log transit (n),
        log decay (n), log epsilon (1)."""
        m, v = self.erp.prior()
        n = self.n_sources
        return (
            np.concatenate([m, np.zeros(3 * n + 1)]),
            np.concatenate([v, np.full(n, PRIOR_VAR_COUPLING), np.full(2 * n + 1, PRIOR_VAR_HEMO)]),
        )

    def pack(self, coupling, transit=None, decay=None, epsilon=0.0, **erp_blocks):
        n = self.n_sources
        return np.concatenate(
            [
                self.erp.pack(**erp_blocks),
                np.broadcast_to(coupling, (n,)),
                np.zeros(n) if transit is None else np.asarray(transit, float),
                np.zeros(n) if decay is None else np.asarray(decay, float),
                [epsilon],
            ]
        )

    def unpack(self, theta):
        """theta -> (ERP parameter vector, beta, log transit, log decay, log epsilon)."""
        p, n = self.erp.n_params, self.n_sources
        return (
            theta[:p],
            theta[p : p + n],
            theta[p + n : p + 2 * n],
            theta[p + 2 * n : p + 3 * n],
            theta[p + 3 * n],
        )

    def stimulus(self):
        """(n_scans n_micro, n_trial_types) unit-area epoch boxcars, averaged over each
        microtime bin (so the hemodynamic input integrates exactly), 1/s."""
        h = self.tr / self.n_micro
        edges = np.arange(self.n_scans * self.n_micro + 1) * h
        epoch = self.erp.n_samples * self.erp.dt
        s = np.zeros((edges.size - 1, len(self.onsets)))
        for c, ons in enumerate(self.onsets):
            for o in ons:
                overlap = np.clip(
                    np.minimum(edges[1:], o + epoch) - np.maximum(edges[:-1], o), 0.0, None
                )
                s[:, c] += overlap / (epoch * h)
        return s


def neuronal_drive_amplitude(x9):
    """Hanning-tapered RMS over peristimulus time (axis -2) of x9 (..., samples, n), mV
    (``spm_dcm_nvc_nd``, 'post')."""
    n = x9.shape[-2]
    taper = jnp.asarray(np.hanning(n))[:, None]
    return jnp.sqrt(jnp.mean((taper * x9) ** 2, axis=-2))


def neuronal_drive(theta, structure: JointStructure):
    """Integrated hemodynamic drive per trial, beta_i r_ic (n_trial_types, n) (dimensionless:
    the area under z_i(t) that one trial of type c adds)."""
    th_erp, beta, *_ = structure.unpack(jnp.asarray(theta))
    return neuronal_drive_amplitude(source_states(th_erp, structure.erp)[..., 8]) * beta


def predict_joint(theta, structure: JointStructure, lf_modes, stimulus):
    """(EEG features (n_trials, n_samples, n_modes) before scaling, V; BOLD (n_scans, n),
    percent) for lead field in modes ``lf_modes`` (n_modes, n) and ``stimulus``
    (``structure.stimulus()``)."""
    th_erp, beta, transit, decay, eps = structure.unpack(theta)
    erp = structure.erp
    x = source_states(th_erp, erp)  # (trials, samples, n, 9)
    blocks = erp.unpack(th_erp)
    j, gain = blocks["J"], blocks["L"]
    sig = x[..., 8] + j[0] * x[..., 0] + j[1] * x[..., 6]
    eeg = jnp.einsum("tsr,kr->tsk", sig * gain * MOMENT_PER_MV, lf_modes)
    r = neuronal_drive_amplitude(x[..., 8])  # (trials, n)
    z = stimulus @ r * beta  # (n_scans n_micro, n)
    balloon = BalloonParams.spm(log_decay=decay, log_transit=transit)
    bold_p = BOLDParams.at_field(
        field_strength=structure.field_strength, echo_time=structure.echo_time, log_epsilon=eps
    )
    bold, _ = integrate_fixed_step(
        lambda state, zz: balloon_rhs(state, zz, balloon),
        jnp.zeros((erp.n_sources, 4)),
        z,
        structure.tr / structure.n_micro,
        method="rk4",
        record_every=int(structure.n_micro),
        record="end",
        observe=lambda state: bold_from_states(state, bold_p),
    )
    return eeg, 100.0 * bold


def _chunk(a, g):
    """(T, k) -> (g, T / g * k): consecutive chunks of length g as columns."""
    t, k = a.shape
    return a.reshape(t // g, g, k).transpose(1, 0, 2).reshape(g, -1)


@functools.lru_cache(maxsize=16)
def _model_for(structure, g):
    def model(theta, lf_modes, stimulus, scale_eeg, scale_bold):
        eeg, bold = predict_joint(theta, structure, lf_modes, stimulus)
        return jnp.concatenate(
            [_chunk(eeg.reshape(-1, eeg.shape[-1]) / scale_eeg, g), _chunk(bold / scale_bold, g)],
            axis=1,
        )

    return model


@dataclasses.dataclass
class JointResult:
    structure: JointStructure
    vl: VLResult
    modes: np.ndarray
    scale_eeg: float
    scale_bold: float

    @property
    def free_energy(self):
        return self.vl.free_energy

    def blocks(self):
        """Posterior means: the ERP blocks plus coupling, transit, decay, epsilon."""
        th_erp, beta, transit, decay, eps = self.structure.unpack(np.asarray(self.vl.mean))
        out = {k: np.asarray(v) for k, v in self.structure.erp.unpack(jnp.asarray(th_erp)).items()}
        out.update(coupling=beta, transit=transit, decay=decay, epsilon=eps)
        return out

    def posterior_sd(self):
        th_erp, beta, transit, decay, eps = self.structure.unpack(np.sqrt(np.diag(self.vl.cov)))
        out = {k: np.asarray(v) for k, v in self.structure.erp.unpack(jnp.asarray(th_erp)).items()}
        out.update(coupling=beta, transit=transit, decay=decay, epsilon=eps)
        return out


def simulate_joint(
    structure: JointStructure, theta, lead_field, *, eeg_noise_std=0.0, bold_snr=np.inf, seed=0
):
    """Simulated simultaneous ERP and BOLD data with known truth.

    Returns (y_eeg (n_trials, n_samples, n_channels) V, y_bold (n_scans, n) percent,
    clean_eeg, clean_bold); the BOLD noise is white with SD std(signal) / bold_snr per region.
    """
    lf = check_lead_field(structure.erp, lead_field)
    theta = np.asarray(theta, float)
    if theta.shape != (structure.n_params,):
        raise ParameterError("theta", f"array of shape {theta.shape}", f"({structure.n_params},)")
    eeg, bold = predict_joint(
        jnp.asarray(theta), structure, jnp.asarray(lf), jnp.asarray(structure.stimulus())
    )
    eeg, bold = np.asarray(eeg), np.asarray(bold)
    rng = np.random.default_rng(seed)
    y_eeg = eeg + eeg_noise_std * rng.normal(size=eeg.shape)
    y_bold = bold + bold.std(0) / bold_snr * rng.normal(size=bold.shape)
    return y_eeg, y_bold, eeg, bold


def fit_joint(
    structure: JointStructure,
    y_eeg,
    lead_field,
    y_bold,
    *,
    n_modes=None,
    modes="leadfield",
    hyper_mean=6.0,
    hyper_var=1 / 128,
    prior=None,
    **vl_kwargs,
) -> JointResult:
    """Invert the joint EEG-fMRI DCM by one variational Laplace.

    Parameters
    ----------
    structure : JointStructure
    y_eeg : (n_trials, n_samples, n_channels) ERPs, V
    lead_field : (n_channels, n_sources), V / (A m)
    y_bold : (n_scans, n_sources) BOLD of the same regions, percent signal change
    n_modes, modes, hyper_mean, hyper_var, prior, **vl_kwargs : as :func:`fit_erp`
    """
    erp = structure.erp
    lf = check_lead_field(erp, lead_field)
    y_eeg = np.asarray(y_eeg, float)
    y_bold = np.asarray(y_bold, float)
    if y_eeg.shape != (erp.n_trials, erp.n_samples, lf.shape[0]) or not np.all(np.isfinite(y_eeg)):
        raise ParameterError(
            "y_eeg",
            f"array of shape {y_eeg.shape}",
            f"finite {(erp.n_trials, erp.n_samples, lf.shape[0])}",
        )
    if y_bold.shape != (structure.n_scans, erp.n_sources) or not np.all(np.isfinite(y_bold)):
        raise ParameterError(
            "y_bold",
            f"array of shape {y_bold.shape}",
            f"finite ({structure.n_scans}, {erp.n_sources}) in percent",
        )
    g = math.gcd(erp.n_trials * erp.n_samples, structure.n_scans)
    if g < MIN_CHUNK:
        raise ParameterError(
            "n_scans",
            structure.n_scans,
            f"a number sharing a factor >= {MIN_CHUNK} with n_trials x "
            f"n_samples = {erp.n_trials * erp.n_samples} (the stacked data "
            "need a common column length)",
        )
    u = spatial_modes(lf, n_modes, y_eeg, modes)
    scale_eeg = float(np.std(y_eeg @ u))
    scale_bold = float(np.std(y_bold))
    if not (scale_eeg > 0 and scale_bold > 0):
        raise ParameterError("y_eeg, y_bold", "data with zero variance", "responses")
    y = np.concatenate(
        [_chunk(mode_features(y_eeg, u, scale_eeg), g), _chunk(y_bold / scale_bold, g)], axis=1
    )
    mean, var = structure.prior() if prior is None else (np.asarray(p, float) for p in prior)
    if mean.shape != (structure.n_params,) or var.shape != (structure.n_params,):
        raise ParameterError(
            "prior",
            f"arrays of shapes {mean.shape}, {var.shape}",
            f"(mean, variance) of shape ({structure.n_params},)",
        )
    vl = invert(
        _model_for(structure, g),
        y,
        mean,
        var,
        args=(
            jnp.asarray(u.T @ lf),
            jnp.asarray(structure.stimulus()),
            jnp.asarray(scale_eeg),
            jnp.asarray(scale_bold),
        ),
        hyper_mean=hyper_mean,
        hyper_var=hyper_var,
        **vl_kwargs,
    )
    return JointResult(structure, vl, u, scale_eeg, scale_bold)
