"""What several devices share: events files, the head model, region sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.atomic import atomic_write_text
from .._core.errors import SpecError


def write_events(spec: dict, path: Path, extra=()):
    """BIDS events.tsv of the protocol's blocks (plus ``extra`` (onset, description))."""
    rows = [(b["onset"], b["duration"], b["condition"]) for b in spec["protocol"]["blocks"]]
    rows += [(t, 0.0, d) for t, d in extra]
    lines = ["onset\tduration\ttrial_type"]
    lines += [f"{o:.4f}\t{d:.4f}\t{c}" for o, d, c in sorted(rows, key=lambda r: r[0])]
    atomic_write_text(path, "\n".join(lines) + "\n")


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
    head = SphereHead.create(np.asarray(subj["relative_radii"], float) * radius,
                             subj["conductivities"], center)
    return head, center, radius


def template_bem(spec: dict, eeg=None, meg=None):
    """:class:`~biosim.physics.electromag.bem.BEMForward` of the template head
    (``subject.bem_vertices`` per surface, ``subject.conductivities`` of brain,
    skull and scalp, ``subject.bem_elements`` flat, matched or curved) for the given sensors."""
    from ..geometry.template_head import template_head
    from ..physics.electromag import BEMForward

    subj = spec["subject"]
    surfaces = template_head(subj["bem_vertices"])
    return BEMForward.create(surfaces, subj["conductivities"], eeg=eeg, meg=meg,
                             geometry=subj.get("bem_elements", "matched"))


def region_dipoles(spec: dict):
    """Dipole position (m) and unit orientation of each region: the centroid and
    mean normal of its patch of the fsaverage cortex (left hemisphere first)."""
    from ..geometry.source_space import cortical_surface

    source_space = cortical_surface("ico4")
    pos, ori = [], []
    for name in spec["subject"]["regions"]:
        key = next((f"{name}-{h}" for h in ("lh", "rh") if f"{name}-{h}" in source_space.regions),
                   None)
        if key is None:
            names = sorted({k.rsplit("-", 1)[0] for k in source_space.regions})
            raise SpecError(f"subject.regions: {name!r} has no cortical location for the "
                            f"EEG/MEG forward model: expected one of {names}")
        idx = source_space.regions[key]
        n = source_space.normals[idx].mean(0)
        pos.append(source_space.positions[idx].mean(0))
        ori.append(n / np.linalg.norm(n))
    return np.array(pos), np.array(ori)


def source_moments(ctx, times):
    """Dipole moments (n_times, n_regions) in A m at ``times`` (s).

    The same sources feed every electrophysiological device: they are drawn
    once per experiment on a 1 ms grid (or finer) and cached in the truth.
    Moment = ``activity.moment_per_input`` x neural activity x a narrowband
    rhythm at ``activity.carrier_hz`` whose phase diffuses with a Lorentzian
    line width ``activity.rhythm_bandwidth`` (Hz), so it is locked to nothing.
    """
    truth, act = ctx.truth, ctx.spec["activity"]
    if "source_moments" not in truth:
        rates = [t.get("sample_rate", 0.0) for t in ctx.spec["devices"].values()]
        fs = max([1000.0] + [float(r) for r in rates if isinstance(r, (int, float))])
        grid = np.arange(int(np.ceil(ctx.spec["experiment"]["duration"] * fs)) + 1) / fs
        z = truth["neural_input"]
        idx = np.minimum((grid / act["dt"]).astype(int), z.shape[0] - 1)
        zg = z[idx]
        if act["carrier_hz"] > 0:
            rng = np.random.default_rng(ctx.spec["experiment"]["seed"] + 7919)
            steps = rng.normal(0.0, np.sqrt(2 * np.pi * act["rhythm_bandwidth"] / fs),
                               zg.shape)
            phase = np.cumsum(steps, axis=0)
            zg = zg * np.sin(2 * np.pi * act["carrier_hz"] * grid[:, None] + phase)
        truth["source_times"] = grid
        truth["source_moments"] = act["moment_per_input"] * zg
    grid, m = truth["source_times"], truth["source_moments"]
    return np.stack([np.interp(times, grid, m[:, r]) for r in range(m.shape[1])], axis=1)
