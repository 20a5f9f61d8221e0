"""MEG recordings as FIF files through MNE-Python (optional dependency ``mne``).

:func:`meg_info` describes biosim's MEG sensors as an ``mne.Info`` (channel
kind, coil type, unit and the 12-number ``loc`` of each channel: position,
then the coil's x, y, z axes; for planar gradiometers x is the gradient
direction, as in Elekta/MEGIN files), with the MEG device frame equal to the
head frame.  :func:`write_meg_fif` writes a ``RawArray`` with annotations and a
trigger channel ``STI101`` (as on a MEGIN TRIUX system) carrying the events as
integer codes, so that ``mne.find_events(raw)`` returns them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.errors import ParameterError

STIM_CHANNEL = "STI101"
"""Name of the trigger channel of written FIF files."""

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


def event_codes(descriptions):
    """Trigger codes of event descriptions: 1, 2, ... in alphabetical order."""
    return {d: i + 1 for i, d in enumerate(sorted(set(descriptions)))}


def stim_channel(events, codes, sfreq, n_times, pulse=0.01):
    """Trigger channel samples: a pulse of ``codes[description]`` at each event.

    Each pulse lasts ``pulse`` s (at least 2 samples, MNE's shortest event) or
    up to the next event's sample, whichever is shorter.

    Parameters
    ----------
    events : sequence of (onset s, description)
    codes : mapping description -> positive int
    sfreq : float, Hz
    n_times : int
    pulse : float, s

    Returns
    -------
    ndarray (n_times,)
    """
    stim = np.zeros(n_times)
    rows = sorted((int(round(t * sfreq)), codes[d]) for t, d in events)
    width = max(2, int(round(pulse * sfreq)))
    for i, (start, code) in enumerate(rows):
        if not 0 <= start < n_times:
            continue
        stop = start + width
        if i + 1 < len(rows):
            stop = min(stop, rows[i + 1][0])
        stim[start : min(stop, n_times)] = code
    return stim


def write_meg_fif(path, data, sfreq, sensors, events=(), line_freq=None, codes=None):
    """Write MEG ``data`` (n_channels, n_times; T and T/m) to a FIF file.

    ``events``: (onset s, description) pairs, stored as annotations and as
    pulses on the trigger channel :data:`STIM_CHANNEL` (``codes``: description
    -> trigger code, default :func:`event_codes`).  The data (float32 or float64)
    are handed to MNE's writer block by block (a raw object that reads its
    segments from ``data``), so writing holds no float64 copy of the session.
    The caller is responsible for atomicity (biosim writes whole datasets into
    a temporary folder that is renamed when complete).
    """
    import mne

    data = np.asarray(data)
    if data.ndim != 2 or data.shape[0] != sensors.n_channels:
        raise ParameterError(
            "data", f"array of shape {data.shape}", f"shape ({sensors.n_channels}, n_times)"
        )
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(float)
    codes = event_codes([d for _, d in events]) if codes is None else codes
    info = meg_info(sensors, sfreq)
    stim_info = mne.create_info([STIM_CHANNEL], float(sfreq), "stim")
    with info._unlock():
        info["chs"] = [*info["chs"], *stim_info["chs"]]
        if line_freq is not None:
            info["line_freq"] = float(line_freq)
        info._update_redundant()
    stim = stim_channel(events, codes, sfreq, data.shape[1])
    raw = _BlockRaw(info, data, stim)
    if len(events):
        onsets, desc = zip(*events)
        raw.set_annotations(
            mne.Annotations(np.asarray(onsets, float), np.zeros(len(onsets)), list(desc))
        )
    raw.save(Path(path), overwrite=True, verbose="error")
    return Path(path)


def _block_raw_class():
    import mne

    class BlockRaw(mne.io.BaseRaw):
        """MNE raw object whose segments are read from arrays in memory on demand."""

        def __init__(self, info, data, stim):
            super().__init__(
                info,
                preload=False,
                last_samps=[data.shape[1] - 1],
                raw_extras=[dict(data=data, stim=stim)],
                orig_format="double",
                verbose="error",
            )

        def _read_segment_file(self, out, idx, fi, start, stop, cals, mult):
            data, stim = self._raw_extras[fi]["data"], self._raw_extras[fi]["stim"]
            block = np.empty((data.shape[0] + 1, stop - start))
            block[:-1] = data[:, start:stop]
            block[-1] = stim[start:stop]
            block = block[idx]
            out[:] = block * cals if mult is None else mult @ block

    return BlockRaw


def _BlockRaw(info, data, stim):  # noqa: N802  (the class needs MNE, imported on demand)
    return _block_raw_class()(info, data, stim)
