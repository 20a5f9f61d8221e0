"""biosim.physics.thermal: Pennes bioheat, IT'IS tissue values, thermal dose, safety indices."""

from .bioheat import (
    BODY_TEMPERATURE,
    BioheatResult,
    SonicationSchedule,
    ThermalMaps,
    acoustic_heat_source,
    bioheat_gaussian,
    solve_bioheat,
    thermal_maps_from_labels,
)
from .dose import (
    ITRUSST_LIMITS,
    SafetyIndices,
    SafetyLimits,
    cem43,
    mechanical_index,
    safety_indices,
)
from .tissue import BLOOD, ITIS_TISSUES, ThermalTissue, tissue_property_maps

__all__ = [
    "BODY_TEMPERATURE",
    "BioheatResult",
    "SonicationSchedule",
    "ThermalMaps",
    "acoustic_heat_source",
    "bioheat_gaussian",
    "solve_bioheat",
    "thermal_maps_from_labels",
    "ITRUSST_LIMITS",
    "SafetyIndices",
    "SafetyLimits",
    "cem43",
    "mechanical_index",
    "safety_indices",
    "BLOOD",
    "ITIS_TISSUES",
    "ThermalTissue",
    "tissue_property_maps",
]
