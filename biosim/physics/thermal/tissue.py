"""Thermal tissue properties (IT'IS Foundation tissue database, v4.1).

Values of the IT'IS database v4.1 (Hasgall et al. 2022, "IT'IS Database for thermal and
electromagnetic parameters of biological tissues", Version 4.1, itis.swiss/database):
density (kg/m^3), specific heat capacity (J/(kg K)), thermal conductivity (W/(m K)) and
the heat transfer rate (blood perfusion, mL/(min kg)).  Pennes' perfusion rate w_b (1/s,
blood volume per tissue volume per second) is ``HTR * 1e-6 / 60 * density``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..._core.errors import ParameterError

__all__ = ["ThermalTissue", "ITIS_TISSUES", "BLOOD", "tissue_property_maps"]


@dataclasses.dataclass(frozen=True)
class ThermalTissue:
    """One tissue's thermal properties.

    Attributes
    ----------
    density : float
        kg/m^3.
    specific_heat : float
        J/(kg K).
    conductivity : float
        W/(m K).
    perfusion_ml_min_kg : float
        Blood perfusion (IT'IS heat transfer rate), mL/(min kg).
    """

    density: float
    specific_heat: float
    conductivity: float
    perfusion_ml_min_kg: float = 0.0

    @property
    def perfusion_rate(self) -> float:
        """Pennes w_b, 1/s (m^3 blood per m^3 tissue per s)."""
        return self.perfusion_ml_min_kg * 1e-6 / 60.0 * self.density


#: IT'IS v4.1 entries (brain = grey matter; water and air have no perfusion).
ITIS_TISSUES = {
    "grey_matter": ThermalTissue(1045.0, 3696.0, 0.55, 763.0),
    "white_matter": ThermalTissue(1041.0, 3583.0, 0.48, 212.0),
    "brain": ThermalTissue(1045.0, 3696.0, 0.55, 763.0),
    "csf": ThermalTissue(1007.0, 4096.0, 0.57, 0.0),
    "cortical": ThermalTissue(1908.0, 1313.0, 0.32, 10.0),
    "trabecular": ThermalTissue(1178.0, 2274.0, 0.31, 30.0),
    "skin": ThermalTissue(1109.0, 3391.0, 0.37, 106.0),
    "fat": ThermalTissue(911.0, 2348.0, 0.21, 33.0),
    "muscle": ThermalTissue(1090.0, 3421.0, 0.49, 37.0),
    "water": ThermalTissue(994.0, 4178.0, 0.60, 0.0),
    "air": ThermalTissue(1.16, 1004.0, 0.026, 0.0),
}
#: Blood (IT'IS v4.1): the perfusion term's rho_b and c_b.
BLOOD = ThermalTissue(1050.0, 3617.0, 0.52, 0.0)


def tissue_property_maps(labels, label_names, table=None):
    """Density, specific heat, conductivity and perfusion rate maps of a label volume.

    Parameters
    ----------
    labels : int array
        Index into ``label_names`` per voxel.
    label_names : sequence of str
        Tissue names, each a key of ``table``.
    table : dict, optional
        Name -> :class:`ThermalTissue`; defaults to :data:`ITIS_TISSUES`.

    Returns
    -------
    density, specific_heat, conductivity, perfusion_rate : arrays like ``labels``
        kg/m^3, J/(kg K), W/(m K), 1/s.
    """
    table = {**ITIS_TISSUES, **(table or {})}
    missing = [n for n in label_names if n not in table]
    if missing:
        raise ParameterError("label_names", missing[0], f"one of {sorted(table)}")
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= len(label_names)):
        raise ParameterError("labels", f"range [{lab.min()}, {lab.max()}]", "valid indices")
    tissues = [table[n] for n in label_names]
    return tuple(
        np.array([getattr(t, a) for t in tissues])[lab]
        for a in ("density", "specific_heat", "conductivity", "perfusion_rate")
    )
