"""Minimal BrainVision writer (.vhdr header, .vmrk markers, .eeg IEEE float32
multiplexed data), the format BIDS-EEG and MNE-Python read
(``mne.io.read_raw_brainvision``).  Written atomically, data first and
header last, so a complete header means a complete recording.  The data are
streamed to disk in blocks of samples, so writing holds no full-size copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.atomic import atomic_path, atomic_write_text
from .._core.errors import ParameterError

#: Bytes of float64 data converted and written at a time.
BLOCK_BYTES = 16e6


def write_brainvision(vhdr_path, data, sfreq, ch_names, events=(), unit="uV"):
    """Write a recording.

    Parameters
    ----------
    vhdr_path : path-like, ending in ``.vhdr``
    data : array (n_channels, n_times), V
    sfreq : float, Hz
    ch_names : sequence of str
    events : sequence of (onset_s, description)
    unit : {"uV", "V"}
        Unit stored in the file (values are scaled accordingly).
    """
    vhdr = Path(vhdr_path)
    if vhdr.suffix != ".vhdr":
        raise ParameterError("vhdr_path", str(vhdr), "a path ending in .vhdr")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[0] != len(ch_names):
        raise ParameterError(
            "data", f"array of shape {data.shape}", f"shape ({len(ch_names)}, n_times)"
        )
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype, np.integer):
        raise ParameterError("data", f"array of dtype {data.dtype}", "a real numeric array")
    scale = {"uV": 1e6, "V": 1.0}[unit]
    step = max(1, int(BLOCK_BYTES // (8 * max(len(ch_names), 1))))
    stem = vhdr.stem
    eeg_name, vmrk_name = stem + ".eeg", stem + ".vmrk"
    with atomic_path(vhdr.with_name(eeg_name)) as tmp, open(tmp, "wb") as fh:
        buf = np.empty((min(step, data.shape[1]), data.shape[0]), "<f4")
        for a in range(0, data.shape[1], step):
            part = data[:, a : a + step]
            if not np.all(np.isfinite(part)):  # the partial file is removed
                raise ParameterError("data", "array with non-finite values", "finite values")
            block = buf[: part.shape[1]]  # (samples, channels), C order: multiplexed
            np.multiply(part.T, scale, out=block, casting="unsafe")
            block.tofile(fh)
    markers = [
        "Brain Vision Data Exchange Marker File, Version 1.0",
        "",
        "[Common Infos]",
        "Codepage=UTF-8",
        f"DataFile={eeg_name}",
        "",
        "[Marker Infos]",
        "Mk1=New Segment,,1,1,0",
    ]
    for i, (onset, desc) in enumerate(events, start=2):
        markers.append(f"Mk{i}=Stimulus,{desc},{int(round(onset * sfreq)) + 1},1,0")
    atomic_write_text(vhdr.with_name(vmrk_name), "\n".join(markers) + "\n")
    header = [
        "Brain Vision Data Exchange Header File Version 1.0",
        "",
        "[Common Infos]",
        "Codepage=UTF-8",
        f"DataFile={eeg_name}",
        f"MarkerFile={vmrk_name}",
        "DataFormat=BINARY",
        "DataOrientation=MULTIPLEXED",
        f"NumberOfChannels={len(ch_names)}",
        f"SamplingInterval={1e6 / sfreq:.6f}",
        "",
        "[Binary Infos]",
        "BinaryFormat=IEEE_FLOAT_32",
        "",
        "[Channel Infos]",
    ]
    unit_txt = "µV" if unit == "uV" else "V"
    header += [f"Ch{i + 1}={name},,1,{unit_txt}" for i, name in enumerate(ch_names)]
    atomic_write_text(vhdr, "\n".join(header) + "\n")
    return vhdr
