"""Thermal dose (CEM43) and the ITRUSST safety indices of a sonication.

CEM43 (Sapareto & Dewey 1984, Int J Radiat Oncol Biol Phys 10:787): cumulative equivalent
minutes at 43 degC, ``sum_i dt_i R^(43 - T_i)`` with R = 0.5 at or above 43 degC and 0.25
below.  Mechanical index ``MI = p_neg [MPa] / sqrt(f [MHz])`` (AIUM/NEMA UD 3); the
ITRUSST consensus on biophysical safety of transcranial ultrasound stimulation (Aubry et
al., Brain Stimulation 18(6), 2025; arXiv:2311.05359v3) calls a sonication of
non-significant risk when MI <= 1.9 and, thermally, when the peak temperature rise stays
within 2 degC (39 degC absolute from 37) or the thermal dose within 2 CEM43 in brain,
16 CEM43 in bone and 21 CEM43 in skin (:data:`ITRUSST_LIMITS`; the 2024 version, v2, had
0.25 CEM43 for every tissue).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..._core.errors import ParameterError
from ..._core.validation import check_all_finite, check_nonnegative, check_positive

__all__ = [
    "cem43",
    "mechanical_index",
    "SafetyLimits",
    "SafetyIndices",
    "ITRUSST_LIMITS",
    "TISSUE_CLASS",
    "safety_indices",
]


def cem43(temperatures, dt):
    """Thermal dose of a temperature history, minutes at 43 degC.

    Parameters
    ----------
    temperatures : array (n_t, ...)
        Temperature at each sample, degC (held for ``dt``: rectangle rule).
    dt : float or (n_t,) array
        Duration of each sample, s.
    """
    temps = np.asarray(temperatures, float)
    check_all_finite(temperatures=temps)
    check_nonnegative("dt", dt, "s")
    dt = np.asarray(dt, float)
    if dt.ndim == 1:
        if len(dt) != len(temps):
            raise ParameterError("dt", dt.shape, f"one duration per sample ({len(temps)})")
        dt = dt.reshape((-1,) + (1,) * (temps.ndim - 1))
    r = np.where(temps >= 43.0, 0.5, 0.25)
    return np.sum(dt * r ** (43.0 - temps), axis=0) / 60.0


def mechanical_index(peak_negative_pressure, frequency):
    """MI = p_neg [MPa] / sqrt(f [MHz]) (in situ pressure, not derated).

    Parameters
    ----------
    peak_negative_pressure : float or array
        Pa (magnitude).
    frequency : float
        Hz.
    """
    check_nonnegative("peak_negative_pressure", peak_negative_pressure, "Pa")
    check_positive("frequency", frequency, "Hz")
    return np.asarray(peak_negative_pressure) / 1e6 / np.sqrt(frequency / 1e6)


#: Tissue class (brain, bone, skin) of the tissue names used by biosim's label maps.
TISSUE_CLASS = {
    "brain": "brain",
    "grey_matter": "brain",
    "white_matter": "brain",
    "csf": "brain",
    "cortical": "bone",
    "trabecular": "bone",
    "bone": "bone",
    "skin": "skin",
    "soft": "skin",
}


@dataclasses.dataclass(frozen=True)
class SafetyLimits:
    """Limits of a sonication: MI, peak temperature rise (K) and thermal dose (CEM43
    minutes) per tissue class (brain, bone, skin; other tissues take the brain's)."""

    mechanical_index: float = 1.9
    delta_t: float = 2.0
    cem43_brain: float = 2.0
    cem43_bone: float = 16.0
    cem43_skin: float = 21.0

    def cem43(self, tissue: str) -> float:
        """The dose limit of a tissue name."""
        return getattr(self, f"cem43_{TISSUE_CLASS.get(tissue, 'brain')}")


#: The ITRUSST consensus levels (Aubry et al. 2025).
ITRUSST_LIMITS = SafetyLimits()


@dataclasses.dataclass(frozen=True)
class SafetyIndices:
    """Safety indices of a sonication, overall and per tissue.

    Attributes
    ----------
    mechanical_index : float
        From the peak pressure anywhere in the head.
    peak_pressure : float
        Pa.
    tissues : tuple of str
        Tissue names (those present).
    max_delta_t : tuple of float
        Peak temperature rise per tissue, K.
    max_cem43 : tuple of float
        Peak thermal dose per tissue, CEM43 minutes.
    limits : SafetyLimits
    """

    mechanical_index: float
    peak_pressure: float
    tissues: tuple
    max_delta_t: tuple
    max_cem43: tuple
    limits: SafetyLimits = ITRUSST_LIMITS

    @property
    def mechanical_ok(self) -> bool:
        return self.mechanical_index <= self.limits.mechanical_index

    @property
    def thermal_ok(self) -> bool:
        """Peak rise below the limit, or thermal dose below its limit, in every tissue."""
        return all(
            dt <= self.limits.delta_t or d <= self.limits.cem43(n)
            for n, dt, d in zip(self.tissues, self.max_delta_t, self.max_cem43)
        )

    def table(self) -> str:
        """A plain-text table of the indices."""
        rows = [
            f"MI {self.mechanical_index:.3f} (limit {self.limits.mechanical_index:g}), "
            f"peak pressure {self.peak_pressure / 1e6:.3f} MPa"
        ]
        rows += [
            f"{n:>12s}: max dT {dt:.3f} K, max CEM43 {d:.3g} min"
            for n, dt, d in zip(self.tissues, self.max_delta_t, self.max_cem43)
        ]
        return "\n".join(rows)


def safety_indices(
    pressure_amplitude,
    frequency,
    max_delta_t,
    dose,
    labels,
    label_names,
    exclude=("water",),
    limits: SafetyLimits = ITRUSST_LIMITS,
) -> SafetyIndices:
    """ITRUSST safety indices of a sonication.

    Parameters
    ----------
    pressure_amplitude : array
        CW pressure amplitude, Pa (its peak is the peak negative pressure).
    frequency : float
        Hz.
    max_delta_t, dose : arrays like ``labels``
        Peak temperature rise (K) and CEM43 (min) per voxel.
    labels : int array
        Tissue index per voxel into ``label_names``.
    exclude : tuple of str
        Labels left out (the coupling water outside the head).
    """
    p = np.abs(np.asarray(pressure_amplitude, float))
    lab = np.asarray(labels)
    for name, a in (("pressure_amplitude", p), ("max_delta_t", max_delta_t), ("dose", dose)):
        if np.shape(a) != lab.shape:
            raise ParameterError(name, np.shape(a), f"shape {lab.shape} like labels")
    check_all_finite(pressure_amplitude=p, max_delta_t=max_delta_t, dose=dose)
    keep = ~np.isin(lab, [i for i, n in enumerate(label_names) if n in exclude])
    peak = float(p[keep].max()) if keep.any() else 0.0
    names, dts, doses = [], [], []
    for i, n in enumerate(label_names):
        m = (lab == i) & keep
        if m.any():
            names.append(n)
            dts.append(float(np.asarray(max_delta_t)[m].max()))
            doses.append(float(np.asarray(dose)[m].max()))
    return SafetyIndices(
        float(mechanical_index(peak, frequency)),
        peak,
        tuple(names),
        tuple(dts),
        tuple(doses),
        limits,
    )
