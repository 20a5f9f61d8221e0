"""Acoustic media: CT Hounsfield units, layered skulls and the template head on a grid.

Every builder returns :class:`AcousticMaps`: sound speed (m/s), density (kg/m^3) and a
power-law attenuation ``alpha(f) = alpha_coeff * (f / 1 MHz) ** alpha_power`` (alpha_coeff
in dB/(MHz^y cm), the k-Wave convention) on a regular grid of spacing ``spacing`` (m).

* :func:`hounsfield_to_acoustic`: CT -> acoustic maps by the porosity mapping of Aubry et
  al. 2003 (J Acoust Soc Am 113:84) or by a user table (piecewise linear in HU).
* :func:`layered_skull` (flat) and :func:`spherical_skull` (curved): synthetic
  skin / cortical / trabecular / cortical / brain layers with the ITRUSST benchmark values
  (Aubry et al. 2022, J Acoust Soc Am 152:1003, table I; 500 kHz): :data:`ITRUSST_LAYERS`.
* :func:`template_head_media`: the shipped MNI152 atlas (:func:`biosim.geometry.anatomy.
  mni_anatomy`) resampled to an acoustic grid, skull split into cortical tables and
  trabecular diploe by depth.
"""

from __future__ import annotations

import numpy as np

from ..._core.errors import ParameterError, ShapeError
from ..._core.pytree import pytree_dataclass, static_field
from ..._core.validation import check_all_finite, check_positive

__all__ = [
    "AcousticMaps",
    "LayerProperties",
    "ITRUSST_LAYERS",
    "WATER",
    "db_to_neper",
    "hounsfield_to_acoustic",
    "layered_skull",
    "spherical_skull",
    "template_head_media",
]

#: dB -> Np: 1 Np = 20 / ln(10) dB.
DB_PER_NEPER = 20.0 / np.log(10.0)


def db_to_neper(alpha_db_per_cm):
    """dB/cm -> Np/m."""
    return np.asarray(alpha_db_per_cm) * 100.0 / DB_PER_NEPER


@pytree_dataclass
class AcousticMaps:
    """Acoustic properties on a regular grid (2D or 3D).

    Attributes
    ----------
    sound_speed : array
        m/s.
    density : array
        kg/m^3.
    alpha_coeff : array
        Attenuation prefactor, dB/(MHz^y cm).
    spacing : float (static)
        Grid step, m (isotropic).
    alpha_power : float (static)
        Power-law exponent y.
    labels : array of int or None
        Tissue label of each voxel (index into ``label_names``), for per-tissue indices.
    label_names : tuple of str (static)
    """

    sound_speed: object
    density: object
    alpha_coeff: object
    labels: object = None
    spacing: float = static_field(default=1e-3)
    alpha_power: float = static_field(default=1.0)
    label_names: tuple = static_field(default=())

    def __post_init__(self):
        shape = np.shape(self.sound_speed)
        for name in ("density", "alpha_coeff"):
            if np.shape(getattr(self, name)) != shape:
                raise ShapeError(name, np.shape(getattr(self, name)), f"{shape} like sound_speed")
        if len(shape) not in (2, 3):
            raise ShapeError("sound_speed", shape, "a 2D or 3D grid")

    @property
    def shape(self) -> tuple:
        return tuple(np.shape(self.sound_speed))

    def attenuation(self, frequency):
        """Attenuation at ``frequency`` (Hz), Np/m."""
        check_positive("frequency", frequency, "Hz")
        return db_to_neper(self.alpha_coeff) * (frequency / 1e6) ** self.alpha_power

    def medium(self, frequency, alpha_power=2.0):
        """The solver's :class:`~biosim.physics.acoustics.medium.Medium` for a
        continuous wave at ``frequency`` (Hz).

        The attenuation is re-expressed with exponent ``alpha_power`` (default 2, for which
        the Treeby-Cox dispersion term vanishes, so the sound speeds are exactly these
        maps') keeping its value at ``frequency``: exact for a single-frequency field.
        """
        from .medium import Medium

        check_positive("frequency", frequency, "Hz")
        fm = frequency / 1e6
        alpha0 = np.asarray(self.alpha_coeff) * fm**self.alpha_power / fm**alpha_power
        return Medium(self.sound_speed, self.density, alpha0, alpha_power=alpha_power)


@pytree_dataclass
class LayerProperties:
    """One homogeneous layer: sound speed (m/s), density (kg/m^3), attenuation (dB/cm at
    the benchmark frequency)."""

    sound_speed: float
    density: float
    alpha_db_cm: float


#: ITRUSST intercomparison layers at 500 kHz (Aubry et al. 2022, table I).
ITRUSST_LAYERS = {
    "water": LayerProperties(1500.0, 1000.0, 0.0),
    "skin": LayerProperties(1610.0, 1090.0, 0.2),
    "cortical": LayerProperties(2800.0, 1850.0, 4.0),
    "trabecular": LayerProperties(2300.0, 1700.0, 8.0),
    "brain": LayerProperties(1560.0, 1040.0, 0.3),
}
WATER = ITRUSST_LAYERS["water"]
#: The ITRUSST benchmark frequency, Hz.
ITRUSST_FREQUENCY = 500e3
_LAYER_ORDER = ("water", "skin", "cortical", "trabecular", "brain")


def _maps_from_labels(labels, layers, names, spacing, frequency, alpha_power):
    """AcousticMaps of a label volume, layer attenuations given at ``frequency``."""
    c = np.array([layers[n].sound_speed for n in names])[labels]
    rho = np.array([layers[n].density for n in names])[labels]
    a = np.array([layers[n].alpha_db_cm for n in names])[labels] / (frequency / 1e6) ** alpha_power
    return AcousticMaps(c, rho, a, labels.astype(np.int32), spacing, alpha_power, tuple(names))


def _check_grid(shape, spacing):
    s = tuple(int(n) for n in np.atleast_1d(shape))
    if len(s) not in (2, 3) or min(s) < 1 or s != tuple(np.atleast_1d(shape)):
        raise ParameterError("shape", shape, "2 or 3 positive integers")
    check_positive("spacing", spacing, "m")
    return s


def _check_thicknesses(thicknesses):
    t = np.asarray(thicknesses, float)
    if t.shape != (4,) or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ParameterError(
            "thicknesses",
            thicknesses,
            "4 non-negative thicknesses (skin, outer cortical, trabecular, inner cortical), m",
        )
    return t


# layer index of each slab from the skin inwards
_SLABS = (1, 2, 3, 2)


def layered_skull(
    shape,
    spacing,
    skin_depth,
    thicknesses=(4e-3, 1.5e-3, 4e-3, 1.0e-3),
    layers=None,
    frequency=ITRUSST_FREQUENCY,
    alpha_power=1.0,
):
    """A flat layered skull: water, then skin / cortical / trabecular / cortical, then brain,
    stacked along axis 0.

    Parameters
    ----------
    shape : 2 or 3 ints
    spacing : float
        Grid step, m.
    skin_depth : float
        Depth (m, along axis 0 from the first voxel's centre) where the skin begins.
    thicknesses : 4 floats
        Skin, outer cortical table, trabecular diploe, inner cortical table, m.
    layers : dict, optional
        Name -> :class:`LayerProperties` replacing :data:`ITRUSST_LAYERS` entries.
    frequency : float
        Frequency (Hz) at which the layers' attenuations are given.
    alpha_power : float
        Power-law exponent y the attenuation is extrapolated with.

    Returns
    -------
    AcousticMaps
        Labels 0 water, 1 skin, 2 cortical, 3 trabecular, 4 brain; a voxel belongs to the
        layer holding its centre.
    """
    shape = _check_grid(shape, spacing)
    t = _check_thicknesses(thicknesses)
    check_all_finite(skin_depth=skin_depth)
    check_positive("frequency", frequency, "Hz")
    layers = {**ITRUSST_LAYERS, **(layers or {})}
    depth = np.arange(shape[0]) * spacing - skin_depth
    edges = np.concatenate([[0.0], np.cumsum(t)])
    lab = np.where(depth < 0, 0, 4)
    for i, code in enumerate(_SLABS):
        lab = np.where((depth >= edges[i]) & (depth < edges[i + 1]), code, lab)
    lab = np.broadcast_to(lab.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
    return _maps_from_labels(
        np.array(lab), layers, _LAYER_ORDER, float(spacing), frequency, alpha_power
    )


def spherical_skull(
    shape,
    spacing,
    center,
    outer_radius,
    thicknesses=(4e-3, 1.5e-3, 4e-3, 1.0e-3),
    layers=None,
    frequency=ITRUSST_FREQUENCY,
    alpha_power=1.0,
):
    """A curved layered skull: concentric spherical (3D) or circular (2D) shells.

    Parameters
    ----------
    center : 2 or 3 floats
        Centre of curvature, m, in grid coordinates (voxel ``i`` at ``i * spacing``).
    outer_radius : float
        Radius of the skin's outer surface, m; outside is water, inside the inner cortical
        table brain.

    Other parameters as :func:`layered_skull`.
    """
    shape = _check_grid(shape, spacing)
    t = _check_thicknesses(thicknesses)
    ctr = np.asarray(center, float)
    if ctr.shape != (len(shape),) or not np.all(np.isfinite(ctr)):
        raise ParameterError("center", center, f"{len(shape)} finite coordinates, m")
    check_positive("outer_radius", outer_radius, "m")
    if t.sum() >= outer_radius:
        raise ParameterError(
            "thicknesses", thicknesses, f"layers thinner in total than outer_radius {outer_radius}"
        )
    layers = {**ITRUSST_LAYERS, **(layers or {})}
    axes = [np.arange(n) * spacing - c for n, c in zip(shape, ctr)]
    r = np.sqrt(sum(a**2 for a in np.meshgrid(*axes, indexing="ij")))
    depth = outer_radius - r
    edges = np.concatenate([[0.0], np.cumsum(t)])
    lab = np.where(depth < 0, 0, 4)
    for i, code in enumerate(_SLABS):
        lab = np.where((depth >= edges[i]) & (depth < edges[i + 1]), code, lab)
    return _maps_from_labels(lab, layers, _LAYER_ORDER, float(spacing), frequency, alpha_power)


def hounsfield_to_acoustic(
    hu,
    spacing,
    method="aubry2003",
    table=None,
    rho_water=1000.0,
    rho_bone=2100.0,
    c_water=1500.0,
    c_bone=2900.0,
    alpha_min=2.0,
    alpha_max=80.0,
    beta=0.5,
    hu_bone=1000.0,
    alpha_power=1.0,
):
    """CT Hounsfield units -> sound speed, density and attenuation.

    ``method="aubry2003"`` (Aubry et al. 2003, J Acoust Soc Am 113:84, eqs. 1-3): porosity
    ``psi = 1 - HU / hu_bone`` (clamped to [0, 1]: HU <= 0 is water-like soft tissue,
    HU >= ``hu_bone`` dense cortical bone), then::

        rho   = psi rho_water + (1 - psi) rho_bone
        c     = c_water + (c_bone - c_water) (1 - psi)
        alpha = alpha_min + (alpha_max - alpha_min) psi ** beta      (dB/cm at 1 MHz)

    The defaults are those of the paper (rho 1000-2100 kg/m^3, c 1500-2900 m/s, alpha
    0.2-8 dB/mm, beta 0.5). Attenuation at other frequencies follows ``alpha_power``.
    Applied to soft tissue (psi = 1) it gives alpha_max, so voxels below 0 HU are assigned
    the water/soft-tissue value ``alpha_min`` instead (only bone is porous).

    ``method="table"``: ``table`` is an (n, 4) array of rows (HU, c m/s, rho kg/m^3, alpha
    dB/(MHz^y cm)) in increasing HU; the maps are interpolated linearly (values beyond the
    first/last row refused, nothing extrapolated silently).

    Parameters
    ----------
    hu : array (2D or 3D)
        CT image, HU.
    spacing : float
        Voxel size, m.

    Returns
    -------
    AcousticMaps
    """
    hu = np.asarray(hu, float)
    check_all_finite(hu=hu)
    _check_grid(hu.shape, spacing)
    if method == "aubry2003":
        for name, v in dict(
            rho_water=rho_water,
            rho_bone=rho_bone,
            c_water=c_water,
            c_bone=c_bone,
            alpha_max=alpha_max,
            hu_bone=hu_bone,
            beta=beta,
        ).items():
            check_positive(name, v)
        if alpha_min < 0 or alpha_min > alpha_max:
            raise ParameterError("alpha_min", alpha_min, f"a value in [0, alpha_max={alpha_max}]")
        psi = np.clip(1.0 - hu / hu_bone, 0.0, 1.0)
        rho = psi * rho_water + (1.0 - psi) * rho_bone
        c = c_water + (c_bone - c_water) * (1.0 - psi)
        alpha = np.where(hu > 0, alpha_min + (alpha_max - alpha_min) * psi**beta, alpha_min)
        return AcousticMaps(c, rho, alpha, None, float(spacing), float(alpha_power))
    if method == "table":
        tab = np.asarray(table, float) if table is not None else np.zeros((0, 4))
        if tab.ndim != 2 or tab.shape[1] != 4 or len(tab) < 2 or np.any(np.diff(tab[:, 0]) <= 0):
            raise ParameterError(
                "table", table, "rows (HU, c, rho, alpha) with at least 2 increasing HU"
            )
        if hu.min() < tab[0, 0] or hu.max() > tab[-1, 0]:
            raise ParameterError(
                "hu",
                f"range [{hu.min():g}, {hu.max():g}]",
                f"values within the table's [{tab[0, 0]:g}, {tab[-1, 0]:g}] HU",
            )
        c, rho, alpha = (np.interp(hu, tab[:, 0], tab[:, k]) for k in (1, 2, 3))
        return AcousticMaps(c, rho, alpha, None, float(spacing), float(alpha_power))
    raise ParameterError("method", method, "'aubry2003' or 'table'")


#: Acoustic label names of :func:`template_head_media` (index = label).
TEMPLATE_LABELS = ("water", "skin", "cortical", "trabecular", "brain", "csf")


def template_head_media(
    affine,
    shape,
    cortical_thickness=1.5e-3,
    bone_threshold=0.5,
    layers=None,
    frequency=ITRUSST_FREQUENCY,
    alpha_power=1.0,
    transform=None,
    anatomy=None,
):
    """Acoustic maps of the template head (MNI152 atlas) on a grid.

    The atlas's tissue fractions (:data:`biosim.geometry.anatomy.TISSUES`) are resampled
    (partial volumes) to the grid; each voxel takes its majority class: bone (fraction >=
    ``bone_threshold``) is cortical within ``cortical_thickness`` of the skull's surfaces
    and trabecular deeper; soft tissue is skin; grey and white matter brain; CSF water-like
    (1500 m/s, 1000 kg/m^3, ITRUSST water); outside the head and the air cavities
    (sinuses, which a wave solver at these resolutions cannot represent) are coupling water.
    Values from :data:`ITRUSST_LAYERS` unless ``layers`` overrides them (a ``"csf"`` entry
    too).

    Parameters
    ----------
    affine : (4, 4)
        Voxel index -> MNI152 mm; the columns must be orthogonal with equal length (an
        isotropic grid, spacing = that length).
    shape : 3 ints
    transform : (4, 4), optional
        Rigid head -> grid-frame motion, mm (:meth:`Anatomy.resample`).
    anatomy : Anatomy, optional
        Defaults to :func:`~biosim.geometry.anatomy.mni_anatomy`.

    Returns
    -------
    AcousticMaps
        With ``labels`` indexing :data:`TEMPLATE_LABELS`.
    """
    from scipy.ndimage import distance_transform_edt

    from ...geometry.anatomy import TISSUES, mni_anatomy

    a = np.asarray(affine, float)
    cols = np.linalg.norm(a[:3, :3], axis=0) if a.shape == (4, 4) else np.zeros(3)
    if a.shape != (4, 4) or not np.allclose(cols, cols[0]) or cols[0] <= 0:
        raise ParameterError("affine", affine, "a 4x4 affine of an isotropic grid")
    check_positive("cortical_thickness", cortical_thickness, "m")
    spacing_mm = float(cols[0])
    anat = (anatomy or mni_anatomy()).resample(a, shape, transform=transform)
    f = np.asarray(anat.fractions, float)
    gm, wm, csf, bone, soft, air = (f[TISSUES.index(t)] for t in TISSUES)
    outside = 1.0 - f.sum(0)
    classes = np.stack([outside + air, soft, bone, gm + wm, csf])  # water, skin, bone, brain, csf
    major = np.argmax(classes, axis=0)
    is_bone = (bone >= bone_threshold) | (major == 2)
    # depth of each bone voxel's centre below the skull's nearest surface
    depth_mm = (distance_transform_edt(is_bone) - 0.5) * spacing_mm
    lab = np.choose(major, [0, 1, 2, 4, 5])
    lab = np.where(is_bone, np.where(depth_mm <= cortical_thickness * 1e3, 2, 3), lab)
    lab = np.where(~is_bone & (lab == 2), 4, lab)
    layers = {**ITRUSST_LAYERS, "csf": ITRUSST_LAYERS["water"], **(layers or {})}
    return _maps_from_labels(
        lab, layers, TEMPLATE_LABELS, spacing_mm * 1e-3, frequency, alpha_power
    )
