"""Source spaces: where dipoles may sit.

* :func:`volume_grid`: a regular grid (spacing in m) inside a sphere or any
  ``inside(points) -> bool`` test;
* :func:`cortical_surface`: the fsaverage5 white-matter surface (shipped,
  see ``biosim/data/README.md``) with outward normals for fixed-orientation
  sources, decimated along fsaverage's nested icosahedral levels (ico5:
  20484, ico4: 5124, ico3: 1284 vertices in both hemispheres), and named
  regions as patches around MNI landmarks.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

import numpy as np

from .._core.errors import ParameterError

#: Landmark MNI coordinates (mm) of named regions; a region is the set of
#: vertices of the hemisphere within ``radius`` of the landmark.
LANDMARKS_MNI = {
    "V1": (10.0, -92.0, 2.0),
    "V5": (46.0, -70.0, 2.0),
    "A1": (50.0, -20.0, 8.0),
    "M1": (38.0, -22.0, 58.0),
    "S1": (40.0, -32.0, 56.0),
    "PFC": (42.0, 36.0, 28.0),
    "FEF": (30.0, -4.0, 52.0),
    "IPS": (30.0, -58.0, 50.0),
    "FFA": (40.0, -52.0, -18.0),
}
ICO_SIZES = {"ico5": 10242, "ico4": 2562, "ico3": 642}


@dataclasses.dataclass(frozen=True)
class SourceSpace:
    """Dipole locations.

    Attributes
    ----------
    positions : (n, 3) m
    normals : (n, 3) unit vectors or None (free orientation)
    hemisphere : (n,) int (0 left, 1 right; -1 for volume grids)
    regions : dict name -> index array
    kind : "surface" or "volume"
    """

    positions: np.ndarray
    normals: np.ndarray | None
    hemisphere: np.ndarray
    regions: dict
    kind: str

    @property
    def n_sources(self):
        return len(self.positions)

    def region_indices(self, name):
        if name not in self.regions:
            raise ParameterError("region", name, f"one of {sorted(self.regions)}")
        return self.regions[name]


def volume_grid(spacing, radius=None, center=(0.0, 0.0, 0.0), inside=None) -> SourceSpace:
    """Grid points ``spacing`` m apart inside a sphere (``radius``) or ``inside(points)``."""
    if spacing <= 0:
        raise ParameterError("spacing", spacing, "a positive spacing in m")
    if (radius is None) == (inside is None):
        raise ParameterError("radius/inside", None, "exactly one of radius or inside")
    extent = radius if radius is not None else 0.12
    ax = np.arange(-extent, extent + spacing / 2, spacing)
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3) + np.asarray(center)
    keep = (
        (np.linalg.norm(g - center, axis=1) < radius)
        if radius is not None
        else np.asarray(inside(g), bool)
    )
    pos = g[keep]
    return SourceSpace(pos, None, np.full(len(pos), -1), {}, "volume")


def cortical_surface(decimation: str = "ico4", region_radius: float = 0.015) -> SourceSpace:
    """fsaverage5 white surface as a fixed-orientation source space.

    Parameters
    ----------
    decimation : {"ico5", "ico4", "ico3"}
    region_radius : float
        Radius (m) of the patches that define the named regions
        (``<name>-lh`` / ``<name>-rh`` for each entry of :data:`LANDMARKS_MNI`).
    """
    if decimation not in ICO_SIZES:
        raise ParameterError("decimation", decimation, f"one of {sorted(ICO_SIZES)}")
    with resources.files("biosim").joinpath("data/cortex/fsaverage5.npz").open("rb") as fh:
        data = np.load(fh)
        v, n, hemi = (data[k].astype(float) for k in ("vertices", "normals", "hemisphere"))
    hemi = hemi.astype(int)
    per = ICO_SIZES[decimation]
    keep = np.r_[np.arange(per), 10242 + np.arange(per)]  # nested icosahedral ordering
    v, n, hemi = v[keep], n[keep], hemi[keep]
    regions = {}
    for name, (x, y, z) in LANDMARKS_MNI.items():
        for h, sign, tag in ((0, -1, "lh"), (1, 1, "rh")):
            c = np.array([sign * x, y, z]) / 1000.0
            idx = np.flatnonzero((hemi == h) & (np.linalg.norm(v - c, axis=1) < region_radius))
            if idx.size:
                regions[f"{name}-{tag}"] = idx
    return SourceSpace(v, n, hemi, regions, "surface")
