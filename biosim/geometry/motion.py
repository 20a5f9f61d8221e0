"""Rigid head motion: six time courses and the transforms they define.

Convention (as SPM's ``spm_matrix`` and the six columns motion-correction tools
write): translations ``(x, y, z)`` in m and rotations ``(pitch, roll, yaw)``
about the x, y and z axes in rad.  A point ``p`` of the head (MNI frame, m)
sits at ``R (p - c) + c + t`` in the scanner at that time, with
``R = Rx(pitch) Ry(roll) Rz(yaw)`` and ``c`` the centre of rotation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import ParameterError
from .._core.validation import check_all_finite


def rotation_matrix(angles) -> np.ndarray:
    """``Rx(pitch) @ Ry(roll) @ Rz(yaw)`` for ``angles`` (..., 3) rad -> (..., 3, 3)."""
    a = np.asarray(angles, dtype=float)
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    one, zero = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(a.shape[:-1] + (3, 3))
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(a.shape[:-1] + (3, 3))
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(a.shape[:-1] + (3, 3))
    return rx @ ry @ rz


@dataclasses.dataclass(frozen=True)
class RigidMotion:
    """Head pose over time, linearly interpolated between samples.

    Attributes
    ----------
    times : array (n,)
        Increasing sample times, s.
    translations : array (n, 3)
        m.
    rotations : array (n, 3)
        Pitch, roll, yaw, rad.
    center : array (3,)
        Centre of rotation in the head frame, m.
    """

    times: np.ndarray
    translations: np.ndarray
    rotations: np.ndarray
    center: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))

    def __post_init__(self):
        t = np.asarray(self.times, dtype=float)
        if t.ndim != 1 or t.size < 1:
            raise ParameterError("times", f"array of shape {t.shape}", "a 1-D array of times")
        if np.any(np.diff(t) <= 0):
            raise ParameterError("times", "non-increasing values", "increasing times in s")
        for name in ("translations", "rotations"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.shape != (t.size, 3):
                raise ParameterError(name, f"array of shape {arr.shape}", f"shape ({t.size}, 3)")
        check_all_finite(
            times=t, translations=self.translations, rotations=self.rotations, center=self.center
        )
        if np.shape(self.center) != (3,):
            raise ParameterError("center", self.center, "a point (3,) in m")

    @classmethod
    def still(cls, duration: float = 1.0) -> RigidMotion:
        """No motion."""
        return cls(np.array([0.0, max(float(duration), 1e-9)]), np.zeros((2, 3)), np.zeros((2, 3)))

    @property
    def parameters(self) -> np.ndarray:
        """(n, 6): translations (m) then rotations (rad), the motion-correction layout."""
        return np.hstack([self.translations, self.rotations])

    def at(self, times) -> tuple[np.ndarray, np.ndarray]:
        """Translations (m, 3) and rotations (rad, 3) at ``times`` (s), shape (..., 3)."""
        t = np.asarray(times, dtype=float)
        interp = lambda a: np.stack(  # noqa: E731
            [np.interp(t, self.times, a[:, i]) for i in range(3)], -1
        )
        return interp(np.asarray(self.translations)), interp(np.asarray(self.rotations))

    def matrices(self, times) -> np.ndarray:
        """Head -> scanner affine transforms (..., 4, 4) at ``times``, m."""
        trans, rot = self.at(times)
        r = rotation_matrix(rot)
        c = np.asarray(self.center, dtype=float)
        out = np.zeros(r.shape[:-2] + (4, 4))
        out[..., :3, :3] = r
        out[..., :3, 3] = c - r @ c + trans
        out[..., 3, 3] = 1.0
        return out

    def apply(self, points, time: float) -> np.ndarray:
        """Scanner positions (n, 3) m of head points ``points`` (n, 3) m at ``time`` (s)."""
        m = self.matrices(time)
        return np.asarray(points, dtype=float) @ m[:3, :3].T + m[:3, 3]

    def framewise_displacement(self, radius: float = 0.05) -> np.ndarray:
        """Power et al. (2012) framewise displacement (m) between samples: the sum of
        absolute translation changes and rotation changes as arc lengths on a
        sphere of ``radius`` m (50 mm by convention)."""
        d = np.abs(np.diff(self.parameters, axis=0))
        return np.r_[0.0, d[:, :3].sum(1) + radius * d[:, 3:].sum(1)]


def random_motion(
    duration: float,
    sample_interval: float,
    translation_std: float = 3e-4,
    rotation_std: float = 2e-3,
    n_jerks: int = 0,
    jerk_size: float = 1e-3,
    correlation_time: float = 30.0,
    center=(0.0, 0.0, 0.0),
    seed: int = 0,
) -> RigidMotion:
    """A plausible in-scanner head motion: slow drift plus sudden jerks.

    Each of the six parameters is an Ornstein-Uhlenbeck process (correlation
    time ``correlation_time`` s; stationary std ``translation_std`` m or
    ``rotation_std`` rad) plus ``n_jerks`` steps at random times, each moving
    the head by about ``jerk_size`` m (and ``jerk_size / 0.05`` rad) and
    settling back within a few seconds.
    """
    check_all_finite(duration=duration, sample_interval=sample_interval)
    if duration <= 0:
        raise ParameterError("duration", duration, "a positive duration in s")
    if sample_interval <= 0 or sample_interval > duration:
        raise ParameterError("sample_interval", sample_interval, f"in (0, {duration:g}] s")
    for name, v in (
        ("translation_std", translation_std),
        ("rotation_std", rotation_std),
        ("jerk_size", jerk_size),
    ):
        if not np.isfinite(v) or v < 0:
            raise ParameterError(name, v, "a finite non-negative number")
    if correlation_time <= 0:
        raise ParameterError("correlation_time", correlation_time, "a positive time in s")
    if int(n_jerks) != n_jerks or n_jerks < 0:
        raise ParameterError("n_jerks", n_jerks, "a non-negative integer")
    rng = np.random.default_rng(seed)
    times = np.arange(int(np.floor(duration / sample_interval)) + 1) * sample_interval
    phi = np.exp(-sample_interval / correlation_time)
    scale = np.r_[np.full(3, translation_std), np.full(3, rotation_std)]
    x = np.zeros((times.size, 6))
    x[0] = rng.normal(0.0, 1.0, 6) * scale
    innov = rng.normal(0.0, 1.0, (times.size, 6)) * scale * np.sqrt(1 - phi**2)
    for i in range(1, times.size):
        x[i] = phi * x[i - 1] + innov[i]
    for onset in rng.uniform(0, duration, int(n_jerks)):
        direction = rng.normal(0.0, 1.0, 6)
        direction /= np.linalg.norm(direction)
        size = np.r_[np.full(3, jerk_size), np.full(3, jerk_size / 0.05)] * direction
        after = times >= onset
        x[after] += size * np.exp(-(times[after] - onset) / 3.0)[:, None]
    return RigidMotion(times, x[:, :3], x[:, 3:], np.asarray(center, float))


def read_motion(path, sample_interval: float, units: str = "mm") -> RigidMotion:
    """Six-column motion parameters (translations then rotations in rad, one row per
    volume ``sample_interval`` s apart), as FSL's ``.par`` reversed or SPM's ``rp_*.txt``.

    ``units``: "mm" or "m" for the translation columns.
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ParameterError("path", str(p), "an existing text file of six columns")
    try:
        data = np.loadtxt(p, ndmin=2)
    except ValueError as err:
        raise ParameterError("path", str(p), f"numeric columns ({err})") from None
    if data.shape[1] != 6 or data.shape[0] < 1:
        raise ParameterError("path", str(p), f"six columns, got shape {data.shape}")
    if units not in ("mm", "m"):
        raise ParameterError("units", units, "'mm' or 'm'")
    scale = 1e-3 if units == "mm" else 1.0
    times = np.arange(data.shape[0]) * float(sample_interval)
    return RigidMotion(times, data[:, :3] * scale, data[:, 3:])
