"""MEG recordings as FIF files through MNE-Python (optional dependency ``mne``).

:func:`meg_info` describes biosim's MEG sensors as an ``mne.Info`` (channel
kind, coil type, unit and the 12-number ``loc`` of each channel: position,
then the coil's x, y, z axes; for planar gradiometers x is the gradient
direction, as in Elekta/MEGIN files), with the MEG device frame equal to the
head frame.  :func:`write_meg_fif` writes a ``RawArray`` with annotations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.errors import ParameterError

_COIL = {
    "mag": "FIFFV_COIL_VV_MAG_T3",
    "grad": "FIFFV_COIL_VV_PLANAR_T1",
    "axial": "FIFFV_COIL_CTF_GRAD",
    "opm": "FIFFV_COIL_QUSPIN_ZFOPM_MAG2",
}


def _frame(z, x=None):
    z = np.asarray(z, float) / np.linalg.norm(z)
    if x is None:
        x = np.cross(z, [1.0, 0, 0] if abs(z[0]) < 0.9 else [0, 1.0, 0])
    x = x - (x @ z) * z
    x /= np.linalg.norm(x)
    return x, np.cross(z, x), z


def meg_info(sensors, sfreq):
    """``mne.Info`` of a :class:`~biosim.physics.electromag.sensors.MEGSensors`."""
    import mne
    from mne.io.constants import FIFF

    types = ["grad" if k in ("grad", "axial") else "mag" for k in sensors.kinds]
    info = mne.create_info(list(sensors.names), float(sfreq), types)
    for c, ch in enumerate(info["chs"]):
        kind = sensors.kinds[c]
        normal = sensors.normals[np.flatnonzero(sensors.channel == c)[0]]
        if kind == "grad":
            ex, ey, ez = _frame(normal, sensors.orientations[c])
        else:
            ex, ey, ez = _frame(sensors.orientations[c])
        ch["loc"][:12] = np.r_[sensors.positions[c], ex, ey, ez]
        ch["coil_type"] = getattr(FIFF, _COIL[kind])
        ch["coord_frame"] = FIFF.FIFFV_COORD_DEVICE
        ch["unit"] = FIFF.FIFF_UNIT_T_M if kind == "grad" else FIFF.FIFF_UNIT_T
    with info._unlock():
        info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
    return info


def write_meg_fif(path, data, sfreq, sensors, events=(), line_freq=None):
    """Write MEG ``data`` (n_channels, n_times; T and T/m) to a FIF file.

    ``events``: (onset s, description) pairs stored as annotations.  The
    caller is responsible for atomicity (biosim writes whole datasets into a
    temporary folder that is renamed when complete).
    """
    import mne

    data = np.asarray(data, float)
    if data.ndim != 2 or data.shape[0] != sensors.n_channels:
        raise ParameterError(
            "data", f"array of shape {data.shape}", f"shape ({sensors.n_channels}, n_times)"
        )
    info = meg_info(sensors, sfreq)
    if line_freq is not None:
        with info._unlock():
            info["line_freq"] = float(line_freq)
    raw = mne.io.RawArray(data, info, verbose="error")
    if len(events):
        onsets, desc = zip(*events)
        raw.set_annotations(
            mne.Annotations(np.asarray(onsets, float), np.zeros(len(onsets)), list(desc))
        )
    raw.save(Path(path), overwrite=True, verbose="error")
    return Path(path)
