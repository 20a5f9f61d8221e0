"""Interoperability with MNE-Python (optional dependency ``mne``).

:func:`point_magnetometer_info` turns biosim magnetometers/OPMs into an
``mne.Info`` with point-magnetometer coils at the same positions and
orientations (device = head frame), so MNE's forward and inverse code can be
run on exactly the sensors biosim simulates (used by the cross-check tests
and benchmarks).
"""

from __future__ import annotations

import numpy as np

from .._core.errors import ParameterError


def point_magnetometer_info(sensors, sfreq=1000.0, names=None):
    """``mne.Info`` of point magnetometers matching ``sensors`` (a MEGSensors of
    kind "mag" or "opm"), channel names ``names`` (default M000, M001, ...)."""
    import mne
    from mne.io.constants import FIFF

    bad = [k for k in sensors.kinds if k not in ("mag", "opm")]
    if bad:
        raise ParameterError(
            "sensors", f"channels of kind {bad[0]!r}", "magnetometers or OPMs (point sensors)"
        )
    names = list(names) if names is not None else [f"M{i:03d}" for i in range(sensors.n_channels)]
    info = mne.create_info(names, sfreq, "mag")
    for ch, p, n in zip(info["chs"], sensors.positions, sensors.orientations):
        ex = np.cross(n, [1.0, 0, 0] if abs(n[0]) < 0.9 else [0, 1.0, 0])
        ex /= np.linalg.norm(ex)
        ch["loc"][:12] = np.r_[p, ex, np.cross(n, ex), n]
        ch["coil_type"] = FIFF.FIFFV_COIL_POINT_MAGNETOMETER
        ch["coord_frame"] = FIFF.FIFFV_COORD_HEAD
    info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
    return info
