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


def squid_helmet_306(radius=0.12, center=(0.0, 0.0, 0.04), accuracy="normal"):
    """306-channel-like helmet: 102 locations, each a magnetometer and two
    orthogonal planar gradiometers ("normal": 4/4 points; "accurate": 16/8;
    "point": 1/2)."""
    check_all_finite(radius=radius, center=center)
    acc = {"point": (1, 2), "normal": (4, 4), "accurate": (16, 8)}[accuracy]
    pos, dirs = _cap_points(102, radius, center, 105)
    groups = []
    for k, (p, n) in enumerate(zip(pos, dirs)):
        u, v = _frame(n)
        groups += [
            magnetometer(f"MEG{k:03d}1", p, n, accuracy=acc[0]),
            planar_gradiometer(f"MEG{k:03d}2", p, n, u, accuracy=acc[1]),
            planar_gradiometer(f"MEG{k:03d}3", p, n, v, accuracy=acc[1]),
        ]
    return MEGSensors.concatenate(*groups)


def axial_system_275(radius=0.115, center=(0.0, 0.0, 0.04), accuracy=1):
    """275-channel first-order axial-gradiometer system (CTF-like)."""
    check_all_finite(radius=radius, center=center)
    pos, dirs = _cap_points(275, radius, center, 105)
    return MEGSensors.concatenate(
        *[
            axial_gradiometer(f"M{k:03d}", p, n, accuracy=accuracy)
            for k, (p, n) in enumerate(zip(pos, dirs))
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
