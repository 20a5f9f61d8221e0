"""High-level DCM for fMRI: simulate data with known truth and fit a model."""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from ..._core.errors import ParameterError
from .model import DCMStructure, predict_bold, predict_bold_and_jacobian
from .variational_laplace import VLResult, invert


@dataclasses.dataclass
class DCMResult:
    structure: DCMStructure
    vl: VLResult

    @property
    def free_energy(self):
        return self.vl.free_energy

    def connectivity(self):
        """Posterior means as (A, B, C) arrays in SPM's parametrisation."""
        neural, *_ = self.structure.unpack(jnp.asarray(self.vl.mean))
        return np.asarray(neural.A), np.asarray(neural.B), np.asarray(neural.C)


def _check_inputs(structure, inputs, n_scans):
    u = np.asarray(inputs, float)
    expected = (n_scans * structure.n_micro, structure.n_inputs)
    if u.shape != expected:
        raise ParameterError(
            "inputs", f"array of shape {u.shape}", f"shape {expected} (n_scans x n_micro, n_inputs)"
        )
    return u


def simulate_dcm(structure: DCMStructure, theta, inputs, snr=3.0, ar=0.2, seed=0):
    """Simulated BOLD (percent signal change) with AR(1) noise at an SPM-style SNR
    (std(signal) / std(noise) per region).  Returns (y, clean)."""
    u = jnp.asarray(inputs, float)
    clean = 100.0 * np.asarray(predict_bold(jnp.asarray(theta), u, structure))
    rng = np.random.default_rng(seed)
    e = rng.normal(size=clean.shape)
    for t in range(1, e.shape[0]):
        e[t] = ar * e[t - 1] + np.sqrt(1 - ar**2) * e[t]
    e *= clean.std(0) / snr / e.std(0)
    return clean + e, clean


def spm_prepare_data(y):
    """SPM12 ``spm_dcm_estimate``'s data treatment: remove each region's mean
    (``spm_detrend``), then scale all regions by ``4 / max(range, 4)`` so the
    overall range (max - min over all data) is at most 4 (per cent).

    Returns
    -------
    y : array, prepared data
    scale : float, the factor applied (SPM's ``Y.scale``)
    """
    y = np.asarray(y, float)
    y = y - y.mean(axis=0)
    scale = 4.0 / max(float(y.max() - y.min()), 4.0)
    return y * scale, scale


def fit_dcm(structure: DCMStructure, y, inputs, **vl_kwargs) -> DCMResult:
    """Invert a DCM for fMRI by variational Laplace.

    Parameters
    ----------
    structure : DCMStructure
    y : array (n_scans, n_regions), BOLD in percent signal change
    inputs : array (n_scans * n_micro, n_inputs), experimental inputs at microtime
    **vl_kwargs
        Passed to :func:`~biosim.inference.dcm.invert` (e.g. ``confounds``,
        ``max_iter``, ``tol``, ``hyper_curvature``, ``init``,
        ``fix_log_precision``).  For SPM's treatment use :func:`spm_prepare_data` on y
        and ``confounds=np.ones((n_scans, 1))``.
    """
    y = np.asarray(y, float)
    if y.ndim != 2 or y.shape[1] != structure.n_regions:
        raise ParameterError("y", f"array of shape {y.shape}", f"(n_scans, {structure.n_regions})")
    u = jnp.asarray(_check_inputs(structure, inputs, y.shape[0]))
    mean, var = structure.prior()
    return DCMResult(structure, invert(_model_for(structure), y, mean, var, args=(u,), **vl_kwargs))


@functools.lru_cache(maxsize=64)
def _model_for(structure):
    """BOLD in percent for (theta, inputs), one callable per structure (so the
    compiled Jacobian is reused across fits), with the structured Jacobian of
    :func:`predict_bold_and_jacobian` as its ``value_and_jacobian``."""

    def model(theta, u):
        return 100.0 * predict_bold(theta, u, structure)

    def value_and_jacobian(theta, u):
        y, jac = predict_bold_and_jacobian(theta, u, structure)
        return 100.0 * y, 100.0 * jac

    model.value_and_jacobian = value_and_jacobian
    return model
