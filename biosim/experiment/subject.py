"""The virtual subject: cortical regions and the head model every device shares.

Regions are patches of the fsaverage cortex around named landmarks
(:data:`biosim.geometry.source_space.LANDMARKS_MNI`); the head is either
concentric spheres fitted to the 10-20 montage (exact series) or the fsaverage
template head (symmetric BEM).  All positions are in m in the fsaverage MRI
(FreeSurfer surface RAS) frame.
"""

from __future__ import annotations

import numpy as np

from .._core.errors import SpecError
from ..geometry.source_space import LANDMARKS_MNI

#: Names an experiment's ``subject.regions`` may use.
REGION_NAMES = tuple(sorted(LANDMARKS_MNI))


def check_regions(regions: list[str], where: str = "subject.regions") -> None:
    """SpecError naming the first region that has no cortical location."""
    for name in regions:
        if name not in LANDMARKS_MNI:
            raise SpecError(
                f"{where}: {name!r} is not a known region: expected names from {list(REGION_NAMES)}"
            )


def sphere_head(spec: dict):
    """The subject's concentric-sphere head: ``(SphereHead, center (3,) m, scalp radius m)``.

    The sphere is fitted to the standard 10-20 electrode positions (MNE's
    fsaverage MRI frame, like the cortex); ``subject.relative_radii`` and
    ``subject.conductivities`` give the shells.
    """
    from ..physics.electromag import SphereHead
    from ..physics.electromag.montage import fit_sphere, standard_montage

    subj = spec["subject"]
    center, radius = fit_sphere(standard_montage("standard_1020").positions)
    head = SphereHead.create(
        np.asarray(subj["relative_radii"], float) * radius, subj["conductivities"], center
    )
    return head, center, radius


def template_bem(spec: dict, eeg=None, meg=None):
    """:class:`~biosim.physics.electromag.bem.BEMForward` of the template head
    (``subject.bem_vertices`` per surface, ``subject.conductivities`` of brain,
    skull and scalp, ``subject.bem_elements`` flat, matched or curved) for the given sensors."""
    from ..geometry.template_head import template_head
    from ..physics.electromag import BEMForward

    subj = spec["subject"]
    surfaces = template_head(subj["bem_vertices"])
    return BEMForward.create(
        surfaces,
        subj["conductivities"],
        eeg=eeg,
        meg=meg,
        geometry=subj.get("bem_elements", "matched"),
    )


def region_dipoles(spec: dict):
    """Dipole position (m) and unit orientation of each region: the centroid and
    mean normal of its patch of the fsaverage cortex (left hemisphere first)."""
    from ..geometry.source_space import cortical_surface

    check_regions(spec["subject"]["regions"])
    source_space = cortical_surface("ico4")
    pos, ori = [], []
    for name in spec["subject"]["regions"]:
        key = next(f"{name}-{h}" for h in ("lh", "rh") if f"{name}-{h}" in source_space.regions)
        idx = source_space.regions[key]
        n = source_space.normals[idx].mean(0)
        pos.append(source_space.positions[idx].mean(0))
        ori.append(n / np.linalg.norm(n))
    return np.array(pos), np.array(ori)
