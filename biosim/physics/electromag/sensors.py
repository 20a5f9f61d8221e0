"""EEG electrodes and MEG sensors (coils with integration points).

MEG channels are linear functionals of the magnetic field: channel c measures
``sum_p w_p B(r_p) . n_p`` over its integration points p.  Magnetometers
average B.n over their pick-up loop (T); planar gradiometers take the
difference of two loops divided by the baseline (T/m); axial gradiometers the
difference of two coaxial loops (T); optically pumped magnetometers (OPMs)
are point sensors along a sensitive axis (T).  Loop integration uses
Gauss-Legendre product rules, like MNE-Python's coil definitions (1, 4 or 16
points for a square magnetometer; 2, 4 or 8 for a planar gradiometer).

Array generators build a 306-channel-like helmet (102 magnetometers + 204
planar gradiometers), a 275-channel axial-gradiometer system and on-scalp
OPM arrays; positions lie on spherical caps (a geometric stand-in for real
helmet shapes, which MNE ships and biosim reads when available).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..._core.errors import ParameterError
from ..._core.units import FT
from ..._core.validation import check_all_finite, check_finite

#: Typical white-noise floors, T / sqrt(Hz).
NOISE_FLOOR = {
    "mag": 3.0 * FT,
    "grad": 3.0 * FT / 0.01,
    "axial": 5.0 * FT,
    "opm": 15.0 * FT,
    "eeg": 5e-9,
}


@dataclasses.dataclass(frozen=True)
class EEGSensors:
    """EEG electrodes.

    Parameters
    ----------
    names : tuple of str
    positions : array (n, 3), m
    reference : "average" or an electrode name
    """

    names: tuple
    positions: np.ndarray
    reference: str = "average"

    def __post_init__(self):
        pos = np.asarray(self.positions, dtype=float)
        if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] != len(self.names):
            raise ParameterError(
                "positions",
                f"array of shape {pos.shape}",
                f"shape ({len(self.names)}, 3), one row per name",
            )
        check_finite("positions", pos)
        if len(set(self.names)) != len(self.names):
            raise ParameterError("names", "duplicate names", "distinct electrode names")
        if self.reference != "average" and self.reference not in self.names:
            raise ParameterError(
                "reference", self.reference, "'average' or one of the electrode names"
            )
        object.__setattr__(self, "positions", pos)

    @property
    def n_channels(self):
        return len(self.names)

    def reference_matrix(self):
        """Matrix R (n, n) with referenced data = R @ unreferenced."""
        n = self.n_channels
        if self.reference == "average":
            return np.eye(n) - np.full((n, n), 1.0 / n)
        r = np.eye(n)
        r[:, self.names.index(self.reference)] -= 1.0
        return r


@dataclasses.dataclass(frozen=True)
class MEGSensors:
    """MEG channels as weighted integration points.

    Parameters
    ----------
    names : tuple of str
    kinds : tuple of str
        "mag", "grad" (planar, T/m), "axial" or "opm" per channel.
    points, normals : arrays (P, 3)
        Integration points (m) and the field component each one measures.
    weights : array (P,)
    channel : int array (P,)
        Channel index of each point.
    positions, orientations : arrays (C, 3)
        Channel centres and main axes (for plotting and checks).
    """

    names: tuple
    kinds: tuple
    points: np.ndarray
    normals: np.ndarray
    weights: np.ndarray
    channel: np.ndarray
    positions: np.ndarray
    orientations: np.ndarray

    def __post_init__(self):
        check_all_finite(
            points=self.points,
            normals=self.normals,
            weights=self.weights,
            positions=self.positions,
            orientations=self.orientations,
        )

    @property
    def n_channels(self):
        return len(self.names)

    def units(self):
        return tuple("T/m" if k == "grad" else "T" for k in self.kinds)

    def noise_floor(self):
        """White-noise floor per channel, T/sqrt(Hz) (T/m/sqrt(Hz) for planar gradiometers)."""
        return np.array([NOISE_FLOOR[k] for k in self.kinds])

    def select(self, kinds):
        keep = [i for i, k in enumerate(self.kinds) if k in kinds]
        remap = {old: new for new, old in enumerate(keep)}
        pts = np.isin(self.channel, keep)
        return MEGSensors(
            tuple(self.names[i] for i in keep),
            tuple(self.kinds[i] for i in keep),
            self.points[pts],
            self.normals[pts],
            self.weights[pts],
            np.array([remap[c] for c in self.channel[pts]]),
            self.positions[keep],
            self.orientations[keep],
        )

    @staticmethod
    def concatenate(*groups: MEGSensors) -> MEGSensors:
        offset, chans = 0, []
        for g in groups:
            chans.append(g.channel + offset)
            offset += g.n_channels
        return MEGSensors(
            sum((g.names for g in groups), ()),
            sum((g.kinds for g in groups), ()),
            np.concatenate([g.points for g in groups]),
            np.concatenate([g.normals for g in groups]),
            np.concatenate([g.weights for g in groups]),
            np.concatenate(chans),
            np.concatenate([g.positions for g in groups]),
            np.concatenate([g.orientations for g in groups]),
        )


def _frame(normal):
    """Two unit vectors orthogonal to ``normal`` (and to each other)."""
    n = normal / np.linalg.norm(normal)
    helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(n, u)


def _square_rule(side, n_per_axis):
    x, w = np.polynomial.legendre.leggauss(n_per_axis)
    xx, yy = np.meshgrid(x * side / 2, x * side / 2, indexing="ij")
    ww = np.outer(w, w) / 4.0
    return np.stack([xx.ravel(), yy.ravel()], 1), ww.ravel()


_MAG_POINTS = {1: 1, 4: 2, 16: 4}


def magnetometer(name, position, normal, side=0.0258, accuracy=4):
    """Square magnetometer loop (Vectorview: 25.8 mm) with 1, 4 or 16 points."""
    check_all_finite(position=position, normal=normal)
    if accuracy not in _MAG_POINTS:
        raise ParameterError("accuracy", accuracy, "1, 4 or 16 integration points")
    u, v = _frame(np.asarray(normal, float))
    offs, w = _square_rule(side, _MAG_POINTS[accuracy])
    pts = np.asarray(position) + offs[:, :1] * u + offs[:, 1:] * v
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    return MEGSensors(
        (name,),
        ("mag",),
        pts,
        np.tile(n, (len(w), 1)),
        w,
        np.zeros(len(w), int),
        np.asarray(position, float)[None],
        n[None],
    )


def planar_gradiometer(name, position, normal, axis, baseline=0.0168, side=0.0084, accuracy=4):
    """Planar gradiometer (dB_n/d axis, T/m): two loops at +-baseline/2 along ``axis``;
    2, 4 or 8 integration points (1, 2 or 4 per loop)."""
    check_all_finite(position=position, normal=normal, axis=axis)
    per_loop = {2: (1, 1), 4: (2, 1), 8: (2, 2)}
    if accuracy not in per_loop:
        raise ParameterError("accuracy", accuracy, "2, 4 or 8 integration points")
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    a = np.asarray(axis, float)
    a = a - (a @ n) * n
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    na, nb = per_loop[accuracy]
    xa, wa = np.polynomial.legendre.leggauss(na)
    xb, wb = np.polynomial.legendre.leggauss(nb)
    pts, wts = [], []
    for sign in (+1, -1):
        for x1, w1 in zip(xa, wa):
            for x2, w2 in zip(xb, wb):
                pts.append(
                    np.asarray(position)
                    + (sign * baseline / 2 + x1 * side / 2) * a
                    + x2 * side / 2 * b
                )
                # Gauss weights on [-1, 1] sum to 2 per axis: each loop averages B.n
                wts.append(sign * w1 * w2 / 4.0 / baseline)
    w = np.array(wts)
    return MEGSensors(
        (name,),
        ("grad",),
        np.array(pts),
        np.tile(n, (len(w), 1)),
        w,
        np.zeros(len(w), int),
        np.asarray(position, float)[None],
        a[None],
    )


def axial_gradiometer(name, position, normal, baseline=0.05, radius=0.009, accuracy=1):
    """First-order axial gradiometer: coaxial loops at the position and at
    ``baseline`` farther out along ``normal`` (CTF: 50 mm), B difference in T;
    1 or 4 points per loop."""
    check_all_finite(position=position, normal=normal)
    if accuracy not in (1, 4):
        raise ParameterError("accuracy", accuracy, "1 or 4 points per loop")
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    u, v = _frame(n)
    if accuracy == 1:
        offs = np.zeros((1, 3))
    else:
        ang = np.arange(4) * np.pi / 2
        offs = radius / np.sqrt(2) * (np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * v)
    k = offs.shape[0]
    pts = np.concatenate([np.asarray(position) + offs, np.asarray(position) + baseline * n + offs])
    w = np.r_[np.full(k, 1.0 / k), np.full(k, -1.0 / k)]
    return MEGSensors(
        (name,),
        ("axial",),
        pts,
        np.tile(n, (2 * k, 1)),
        w,
        np.zeros(2 * k, int),
        np.asarray(position, float)[None],
        n[None],
    )


def opm(name, position, axis):
    """Optically pumped magnetometer: a point sensor of B along ``axis`` (T)."""
    check_all_finite(position=position, axis=axis)
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    p = np.asarray(position, float)[None]
    return MEGSensors((name,), ("opm",), p, a[None], np.ones(1), np.zeros(1, int), p, a[None])


def _cap_points(n, radius, center, max_polar_deg):
    """n roughly uniform points (Fibonacci spiral) on a spherical cap around +z."""
    i = np.arange(n) + 0.5
    cos_max = np.cos(np.deg2rad(max_polar_deg))
    z = 1 - i / n * (1 - cos_max)
    phi = i * np.pi * (3 - np.sqrt(5))
    rho = np.sqrt(1 - z**2)
    dirs = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], 1)
    return np.asarray(center) + radius * dirs, dirs


# Vendor channel names.  The Fibonacci-cap locations of the model helmets are
# matched one to one (least total squared distance, scipy's linear_sum_assignment)
# to the sensor locations of MNE-Python's 2D layouts "Vectorview-all" and
# "CTF-275" (azimuthal projection about the vertex, both clouds centred and
# scaled to unit RMS radius), so that each channel carries the name of the
# vendor sensor at about the same place and MNE's layouts and topographic plots
# find every channel.  Entry k names location k of ``_cap_points``.
_VECTORVIEW_LOCATIONS = (
    "071 074 073 063 183 072 043 221 104 182 114 042 224 111 181 222 064 201 112 044 223 103 "
    "184 113 041 202 124 023 244 062 191 134 022 203 102 162 241 033 204 131 024 231 101 163 "
    "133 032 211 123 161 243 061 194 132 021 234 094 164 242 054 192 122 151 232 082 173 261 "
    "034 233 093 152 263 053 193 141 013 251 091 172 262 031 212 121 154 252 052 174 144 011 "
    "254 092 153 264 051 214 142 014 253 081 171 143 012 213"
).split()
"""Neuromag/MEGIN location codes: channels ``MEG<code>1`` (magnetometer),
``MEG<code>2`` and ``MEG<code>3`` (the two planar gradiometers)."""

_CTF275_NAMES = (
    "MZC03 MLC62 MRC62 MLC61 MLC63 MRC61 MLC53 MRC63 MZC02 MLC54 MRC53 MLC52 MZC04 MRC52 MLC42 "
    "MRC54 MLC51 MLC55 MRC41 MLC41 MRC55 MRC51 MLP12 MRC42 MLC21 MLP11 MRC22 MLC31 MRP12 MZC01 "
    "MLP22 MRC31 MLC22 MRP11 MRC21 MLP23 MRP23 MLC12 MLP21 MRC23 MLC24 MRP22 MRC11 MLP34 MRC32 "
    "MLC13 MRP21 MRC13 MLC32 MRP34 MLC11 MLP32 MRC15 MLC23 MRP32 MRC12 MLP35 MRP35 MLF62 MLP31 "
    "MRC14 MLC25 MRP33 MZF03 MLP33 MRC24 MLC14 MRP31 MRF62 MLP45 MRP44 MLF61 MLP41 MRF65 MLC15 "
    "MRP42 MRF61 MLP44 MRC25 MLF63 MZP01 MRF63 MLC17 MRP43 MLF51 MLP42 MRC16 MLF64 MRP41 MRF52 "
    "MLP56 MRP45 MLF53 MLP52 MRF64 MLC16 MRP54 MRF51 MLP43 MRC17 MLF54 MRP51 MRF53 MLP57 MRP55 "
    "MLF52 MLP53 MRF56 MLF65 MRP53 MRF42 MLP55 MRP57 MLF44 MLP51 MRF54 MLF67 MRO14 MLF41 MLP54 "
    "MRF66 MLF55 MRP52 MRF44 MLT15 MRP56 MLF43 MLO12 MRF55 MLF66 MRO13 MRF41 MLO14 MRT14 MLF45 "
    "MZO01 MRF45 MLT14 MRT16 MLF42 MLO13 MRT13 MLF56 MRO12 MRF43 MLT16 MRT15 MLF33 MLO11 MRF46 "
    "MLT13 MRO24 MZF02 MLO24 MRF67 MLF46 MRO11 MRF34 MLT25 MRT26 MLF32 MLO22 MRT12 MLT12 MRO23 "
    "MRF32 MLT27 MRT25 MLF34 MLO21 MRF35 MLT24 MRT27 MLF31 MLO33 MRT23 MLT11 MRO22 MRF33 MLT26 "
    "MRT36 MLF24 MLO31 MRT11 MLT23 MRO33 MRF31 MLO34 MRT24 MLF35 MRO21 MRF25 MLT35 MRT37 MLF22 "
    "MLO23 MRT33 MLT22 MRO32 MRF22 MLT37 MRT35 MLF25 MLO41 MRT21 MLT34 MRO34 MLF21 MLO44 MRT34 "
    "MLT32 MRO31 MRF24 MLT36 MRT46 MLF23 MLO32 MRT22 MLT33 MRO43 MRF11 MLT47 MRT44 MLT21 MZO02 "
    "MRT31 MLT54 MRT47 MLF11 MLO43 MRT52 MLT42 MRO42 MRF23 MLT46 MRT45 MLF14 MLO51 MRT32 MLT53 "
    "MRO44 MRF21 MLT57 MRT53 MLT41 MRO41 MRF14 MLT45 MRT56 MLF12 MLO52 MRT42 MLT52 MRO52 MRF12 "
    "MLT56 MRT54 MLT31 MZO03 MRT41 MLT44 MRT57 MZF01 MLO53 MRT43 MLT51 MRO51 MRF13 MLT55 MRT55 "
    "MLF13 MLO42 MRT51 MLT43 MRO53"
).split()
"""CTF 275-channel axial gradiometer names (``MLC11``: left central 11, ...)."""


def squid_helmet_306(radius=0.12, center=(0.0, 0.0, 0.04), accuracy="normal"):
    """306-channel-like helmet: 102 locations, each a magnetometer and two
    orthogonal planar gradiometers ("normal": 4/4 points; "accurate": 16/8;
    "point": 1/2).

    Channels are named as on a Neuromag/MEGIN Vectorview/TRIUX system
    (``MEG0111`` magnetometer, ``MEG0112`` and ``MEG0113`` gradiometers of
    location ``011``), each location taking the code of the vendor location
    nearest to it on MNE's ``Vectorview-all`` layout.
    """
    check_all_finite(radius=radius, center=center)
    acc = {"point": (1, 2), "normal": (4, 4), "accurate": (16, 8)}[accuracy]
    pos, dirs = _cap_points(102, radius, center, 105)
    groups = []
    for code, p, n in zip(_VECTORVIEW_LOCATIONS, pos, dirs):
        u, v = _frame(n)
        groups += [
            magnetometer(f"MEG{code}1", p, n, accuracy=acc[0]),
            planar_gradiometer(f"MEG{code}2", p, n, u, accuracy=acc[1]),
            planar_gradiometer(f"MEG{code}3", p, n, v, accuracy=acc[1]),
        ]
    return MEGSensors.concatenate(*groups)


def axial_system_275(radius=0.115, center=(0.0, 0.0, 0.04), accuracy=1):
    """275-channel first-order axial-gradiometer system (CTF-like), channels named
    as on a CTF system (``MLC11``, ``MRF42``, ``MZO01``, ...), each the name of
    the vendor sensor nearest to it on MNE's ``CTF-275`` layout."""
    check_all_finite(radius=radius, center=center)
    pos, dirs = _cap_points(275, radius, center, 105)
    return MEGSensors.concatenate(
        *[
            axial_gradiometer(name, p, n, accuracy=accuracy)
            for name, p, n in zip(_CTF275_NAMES, pos, dirs)
        ]
    )


def opm_array(
    n_sensors,
    scalp_radius=0.09,
    standoff=0.006,
    center=(0.0, 0.0, 0.0),
    axes="radial",
    max_polar_deg=100,
):
    """On-scalp OPM array: ``n_sensors`` cells ``standoff`` m above a spherical scalp.

    ``axes``: "radial", "tangential", "dual" (radial + one tangential) or
    "triaxial" (radial + two tangential) channels per cell.
    """
    check_all_finite(scalp_radius=scalp_radius, standoff=standoff, center=center)
    modes = {"radial": (0,), "tangential": (1,), "dual": (0, 1), "triaxial": (0, 1, 2)}
    if axes not in modes:
        raise ParameterError("axes", axes, f"one of {sorted(modes)}")
    if standoff < 0:
        raise ParameterError("standoff", standoff, "a non-negative distance in m")
    pos, dirs = _cap_points(n_sensors, scalp_radius + standoff, center, max_polar_deg)
    groups = []
    for k, (p, n) in enumerate(zip(pos, dirs)):
        u, v = _frame(n)
        frame = (n, u, v)
        for j in modes[axes]:
            groups.append(opm(f"OPM{k:03d}{'RXY'[j]}", p, frame[j]))
    return MEGSensors.concatenate(*groups)
