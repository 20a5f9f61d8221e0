"""Relaxation times, proton density and susceptibility of the anatomy's tissues.

Values per tissue of :data:`biosim.geometry.anatomy.TISSUES` at a field strength B0.
Grey and white matter are interpolated between published in-vivo measurements at 1.5, 3
and 7 T, each quantity from one study that measured all three fields:

* T1: Wright et al. (2008) MAGMA 21:121 (MPRAGE): GM 1197, 1607, 1939 ms; WM 646, 838,
  1126 ms. Interpolated as a piecewise power law (linear in log T1 vs log B0),
  extrapolated with the end exponents (T1 ~ B0^0.2-0.4 as in Rooney et al. 2007, MRM
  57:308).
* T2: Cox & Gowland (2010) MRM 64:1440 (frontal GM 87, 76, 47 ms; WM 80, 71, 47 ms).
  R2 = 1/T2 piecewise linear in B0, extrapolated linearly.
* T2*: Peters et al. (2007) Magn Reson Imaging 25:748 (GM 84.0, 66.0, 33.2 ms; WM 66.2,
  53.2, 26.8 ms). The reversible part R2' = R2* - R2 is piecewise linear in B0, going to 0
  at B0 = 0 below 1.5 T, so T2* <= T2 at every field.

CSF: T1 4.3 s, field-independent (Rooney et al. 2007), T2 2.0 s, R2' = (1/3 s^-1/T) B0.
Soft tissue (scalp, muscle): skeletal muscle T1 1008 / 1412 ms at 1.5 / 3 T (Stanisz et al.
2005, MRM 54:507; power law through both), T2 47 ms at every field (Stanisz: 44 / 50 ms),
R2' = (10/3 s^-1/T) B0 (a modelling choice).
Cortical bone: T1 0.25 s, T2 0.5 ms, T2* 0.4 ms (bound water, ultrashort echo time
studies, e.g. Du & Bydder 2013, NMR Biomed 26:489): no signal at EPI echo times. Air: no
signal (proton density 0; relaxation times are placeholders).

Proton density relative to water: GM 0.80, WM 0.70 (Tofts 2003, *Quantitative MRI of
the brain*, ch. 4), CSF 1.0, muscle 0.75, cortical bone 0.1, air 0.

Volume susceptibility (SI, ppm): water -9.05 (Schenck 1996, Med Phys 23:815); CSF and
soft tissue as water; GM +0.02 and WM -0.03 ppm relative to CSF (typical QSM contrasts,
e.g. Wharton & Bowtell 2010 NeuroImage 53:515); cortical bone -11.3 (Hopkins & Wehrli
1997, MRM 37:494); air +0.36 (Schenck 1996).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..._core.errors import ParameterError
from ..._core.validation import check_range
from ...geometry.anatomy import TISSUES

#: Field strengths (T) accepted, the range of :class:`biosim.instruments.mri.MRIScanner`.
FIELD_STRENGTH_RANGE = (0.05, 11.7)

_B = np.array([1.5, 3.0, 7.0])
_T1_MS = {"gm": (1197.0, 1607.0, 1939.0), "wm": (646.0, 838.0, 1126.0)}
_T2_MS = {"gm": (87.0, 76.0, 47.0), "wm": (80.0, 71.0, 47.0)}
_T2S_MS = {"gm": (84.0, 66.0, 33.2), "wm": (66.2, 53.2, 26.8)}
_MUSCLE_B = np.array([1.5, 3.0])
_MUSCLE_T1_MS = (1008.0, 1412.0)
_MUSCLE_T2 = 0.047  # s: field-independent, between Stanisz's 44 (1.5 T) and 50 ms (3 T)

PROTON_DENSITY = {"gm": 0.80, "wm": 0.70, "csf": 1.0, "bone": 0.1, "soft": 0.75, "air": 0.0}
SUSCEPTIBILITY_PPM = {
    "gm": -9.03,
    "wm": -9.08,
    "csf": -9.05,
    "bone": -11.3,
    "soft": -9.05,
    "air": 0.36,
}


def _piecewise(b0, xs, ys, origin=False):
    """Piecewise-linear interpolation with linear extrapolation (through 0 at B0 = 0 below
    the first point when ``origin``)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if b0 < xs[0]:
        if origin:
            return ys[0] * b0 / xs[0]
        return ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (b0 - xs[0])
    if b0 > xs[-1]:
        return ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (b0 - xs[-1])
    return float(np.interp(b0, xs, ys))


@dataclasses.dataclass(frozen=True)
class TissueProperties:
    """MR properties of the tissues of :data:`TISSUES` (arrays of shape (6,)).

    Attributes
    ----------
    field_strength : float
        T.
    proton_density : relative to water
    t1, t2, t2star : s
    susceptibility : ppm (SI volume susceptibility)
    """

    field_strength: float
    proton_density: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t2star: np.ndarray
    susceptibility: np.ndarray


def tissue_properties(field_strength: float) -> TissueProperties:
    """Tissue properties at ``field_strength`` (T, in [0.05, 11.7]); sources in the module
    docstring."""
    check_range("field_strength", field_strength, *FIELD_STRENGTH_RANGE, "T")
    b0 = float(field_strength)
    t1, t2, t2s = {}, {}, {}
    for t in ("gm", "wm"):
        t1[t] = np.exp(_piecewise(np.log(b0), np.log(_B), np.log(_T1_MS[t]))) * 1e-3
        r2 = _piecewise(b0, _B, 1e3 / np.array(_T2_MS[t]))
        r2p = _piecewise(b0, _B, 1e3 / np.array(_T2S_MS[t]) - 1e3 / np.array(_T2_MS[t]), True)
        t2[t], t2s[t] = 1.0 / r2, 1.0 / (r2 + r2p)
    t1["csf"], t2["csf"], t2s["csf"] = 4.3, 2.0, 1.0 / (0.5 + b0 / 3.0)
    mb = np.log(_MUSCLE_B)
    t1["soft"] = np.exp(_piecewise(np.log(b0), mb, np.log(_MUSCLE_T1_MS))) * 1e-3
    r2 = 1.0 / _MUSCLE_T2
    t2["soft"], t2s["soft"] = _MUSCLE_T2, 1.0 / (r2 + 10.0 * b0 / 3.0)
    t1["bone"], t2["bone"], t2s["bone"] = 0.25, 0.5e-3, 0.4e-3
    t1["air"], t2["air"], t2s["air"] = 1.0, 1e-3, 1e-3
    props = TissueProperties(
        b0,
        np.array([PROTON_DENSITY[t] for t in TISSUES]),
        np.array([t1[t] for t in TISSUES]),
        np.array([t2[t] for t in TISSUES]),
        np.array([t2s[t] for t in TISSUES]),
        np.array([SUSCEPTIBILITY_PPM[t] for t in TISSUES]),
    )
    for name in ("t1", "t2", "t2star"):
        a = getattr(props, name)
        if not np.all(np.isfinite(a) & (a > 0)):  # guards the extrapolations
            raise ParameterError("field_strength", b0, f"a field where every {name} > 0")
    return props


def susceptibility_map(fractions, props: TissueProperties, background_ppm: float | None = None):
    """Volume susceptibility (ppm) of a voxel grid of tissue fractions ((6, ...), as
    :attr:`biosim.geometry.anatomy.Anatomy.fractions`): the fraction-weighted sum, the rest
    of each voxel (outside the head) air unless ``background_ppm`` is given."""
    f = np.asarray(fractions)
    if f.shape[:1] != (len(TISSUES),):
        raise ParameterError("fractions", f.shape, f"({len(TISSUES)}, ...) tissue fractions")
    chi = np.tensordot(np.asarray(props.susceptibility, f.dtype), f, axes=1)
    bg = SUSCEPTIBILITY_PPM["air"] if background_ppm is None else float(background_ppm)
    return chi + (1.0 - f.sum(0)) * bg
