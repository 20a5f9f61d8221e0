"""Standard EEG montages (10-20, 10-05, BioSemi, EasyCap) and user positions.

Positions ship with biosim (``biosim/data/montages``, derived from MNE-Python's
montage files by ``meshes/make_sensor_and_cortex_data.py``), so MNE is not
needed at run time.  The files keep MNE's native frames (fsaverage's MRI frame
for the 10-20/10-05 systems, a spherical frame with its own fiducials for
BioSemi and EasyCap); :func:`standard_montage` returns every montage in
fsaverage's MRI frame, the frame of the cortex source space and the template
head (transforms from :func:`biosim.geometry.template_head.montage_to_mri`).
The 10-10 system is the subset of the 10-05 positions with 10-10 names.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..._core.errors import ParameterError
from ...geometry.template_head import montage_to_mri
from .sensors import EEGSensors

#: 10-10 electrode names (American Clinical Neurophysiology Society 2006 layout).
_1010 = (
    "Fp1 Fpz Fp2 AF9 AF7 AF5 AF3 AF1 AFz AF2 AF4 AF6 AF8 AF10 F9 F7 F5 F3 F1 Fz F2 F4 F6 F8 "
    "F10 FT9 FT7 FC5 FC3 FC1 FCz FC2 FC4 FC6 FT8 FT10 T9 T7 C5 C3 C1 Cz C2 C4 C6 T8 T10 TP9 "
    "TP7 CP5 CP3 CP1 CPz CP2 CP4 CP6 TP8 TP10 P9 P7 P5 P3 P1 Pz P2 P4 P6 P8 P10 PO9 PO7 PO5 "
    "PO3 PO1 POz PO2 PO4 PO6 PO8 PO10 O1 Oz O2 I1 Iz I2"
).split()
MONTAGES = ("standard_1020", "standard_1010", "standard_1005", "biosemi64", "easycap-M1")


def _read(name):
    text = (resources.files("biosim") / "data" / "montages" / f"{name}.tsv").read_text()
    rows = [ln.split("\t") for ln in text.strip().splitlines()[1:]]
    return [r[0] for r in rows], np.array([[float(v) for v in r[1:]] for r in rows])


def standard_montage(
    name: str = "standard_1020", reference: str = "average", channels=None
) -> EEGSensors:
    """A standard montage as :class:`EEGSensors`.

    Parameters
    ----------
    name : str
        One of :data:`MONTAGES`.
    reference : "average" or an electrode name
    channels : list of str, optional
        Keep only these electrodes (in this order).
    """
    if name not in MONTAGES:
        raise ParameterError("name", name, f"one of {MONTAGES}")
    file = "standard_1005" if name == "standard_1010" else name
    names, pos = _read(file)
    t = montage_to_mri(file)
    pos = pos @ t[:3, :3].T + t[:3, 3]  # native -> fsaverage MRI frame
    if name == "standard_1010":
        keep = [i for i, n in enumerate(names) if n in _1010]
        names, pos = [names[i] for i in keep], pos[keep]
    if channels is not None:
        missing = [c for c in channels if c not in names]
        if missing:
            raise ParameterError("channels", missing[0], f"an electrode of montage {name!r}")
        idx = [names.index(c) for c in channels]
        names, pos = [names[i] for i in idx], pos[idx]
    return EEGSensors(tuple(names), pos, reference)


def fit_sphere(points):
    """Least-squares sphere through points (n, 3): returns (center (3,), radius)."""
    p = np.asarray(points, float)
    a = np.c_[2 * p, np.ones(len(p))]
    b = np.sum(p**2, 1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    center = sol[:3]
    return center, float(np.sqrt(sol[3] + center @ center))
