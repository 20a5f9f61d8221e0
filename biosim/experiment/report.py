"""Report figures of a simulated experiment (matplotlib, optional; MNE for topographies).

Each function draws one PNG with ``plt`` (already switched to the Agg backend by the
caller) and writes it atomically; they read the validated spec, the protocol, the
activity and the devices' recordings:

- :func:`activity_figure`: the design (condition boxcars) and the neural activity.
- :func:`mri_figure`: a slice mosaic of the mean acquired image (what the NIfTI holds)
  with the region labels outlined, and each region's percent signal change measured
  from the acquired images beside the noise-free BOLD.
- :func:`electrophysiology_figure`: EEG/MEG traces as recorded (noise, mains and, in
  the scanner, gradient and ballistocardiogram artifacts) beside the clean signal,
  with channel names and scale bars, and each region's lead-field topography drawn
  by :func:`mne.viz.plot_topomap` (head outline, sensors, colour bar).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.atomic import atomic_path
from .devices.eeg import EEGRecording

_TRACE_WINDOW = 3.0  # s of traces shown
_MAX_EEG_TRACES = 20
_MAX_MEG_TRACES = 10  # per channel type
_REFERENCE_MOMENT = 100e-9  # A m: topographies show the field of a 100 nA m dipole


def _save(fig, path: Path, plt) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _region_colors(plt, n: int) -> list:
    cmap = plt.get_cmap("tab10")
    return [cmap(r % 10) for r in range(n)]


def _condition_colors(plt, protocol) -> dict:
    cmap = plt.get_cmap("Set2")
    return {c: cmap(j % 8) for j, c in enumerate(protocol.conditions)}


def _shade_blocks(protocol, axes, plt, window=None):
    """Shade each block in its condition's colour (a line for an event of zero
    duration), limited to ``window`` = (t0, t1)."""
    colors = _condition_colors(plt, protocol)
    for b in protocol.blocks:
        t0, t1 = b.onset, b.onset + b.duration
        if window is not None:
            t0, t1 = max(t0, window[0]), min(t1, window[1])
            if t1 < t0:
                continue
        for ax in axes:
            if t1 > t0:
                ax.axvspan(t0, t1, color=colors[b.condition], alpha=0.25, lw=0, zorder=0)
            else:
                ax.axvline(t0, color=colors[b.condition], alpha=0.8, lw=1, zorder=0)


def _condition_handles(protocol, plt):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for name, c in _condition_colors(plt, protocol).items():
        if any(b.duration > 0 for b in protocol.blocks if b.condition == name):
            handles.append(Patch(color=c, alpha=0.4, label=f"{name} block"))
        else:
            handles.append(Line2D([], [], color=c, lw=1, label=f"{name} event"))
    return handles


def activity_figure(spec, protocol, activity, path, plt):
    """The design (one boxcar row per condition, blocks shaded) and the neural
    activity of each region (1/s), sharing the time axis."""
    conditions = protocol.conditions
    regions = spec["subject"]["regions"]
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(10, 5.5),
        sharex=True,
        gridspec_kw={"height_ratios": [1 + 0.3 * len(conditions), 3]},
        layout="constrained",
    )
    u = activity.condition_inputs
    ccol = _condition_colors(plt, protocol)
    for j, c in enumerate(conditions):
        level = len(conditions) - 1 - j
        axes[0].fill_between(
            activity.times, level, level + 0.8 * u[:, j], step="post", color=ccol[c], alpha=0.9
        )
        for b in protocol.blocks:  # events of zero duration
            if b.condition == c and b.duration == 0:
                axes[0].plot([b.onset] * 2, [level, level + 0.8], color=ccol[c], lw=1.5)
    axes[0].set_yticks(np.arange(len(conditions)) + 0.4, conditions[::-1])
    axes[0].set_ylim(-0.1, len(conditions))
    axes[0].set_ylabel("condition")
    z = np.asarray(activity.neural_input)
    shown = np.arange(z.shape[1])
    if shown.size > MAX_REGIONS_SHOWN:  # many regions: all in grey, the most active in colour
        shown = np.sort(np.argsort(-z.std(axis=0))[:MAX_REGIONS_SHOWN])
        axes[1].plot(activity.times, z, color="0.75", lw=0.4, zorder=1)
        axes[1].plot([], [], color="0.75", lw=0.8, label=f"all {z.shape[1]} regions")
    colors = _region_colors(plt, len(shown))
    for r, col in zip(shown, colors):
        axes[1].plot(activity.times, z[:, r], color=col, lw=1.2, label=regions[r], zorder=2)
    _shade_blocks(protocol, axes[1:], plt)
    axes[1].set_ylabel("neural activity (1/s)")
    axes[1].set_xlabel("time (s)")
    axes[1].set_xlim(activity.times[0], activity.times[-1])
    axes[1].legend(
        handles=axes[1].get_legend_handles_labels()[0] + _condition_handles(protocol, plt),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=9,
        title="region / design",
        title_fontsize=9,
    )
    axes[0].set_title(
        f"{spec['experiment']['name']}: design (top) and {spec['activity']['model']} "
        f"neural activity per region (bottom)"
    )
    return _save(fig, path, plt)


def _rest_scans(protocol, scan_times, lag: float = 12.0):
    """Scans outside every block and its hemodynamic tail (``lag`` s)."""
    rest = np.ones(scan_times.shape, bool)
    for b in protocol.blocks:
        rest &= ~((scan_times >= b.onset) & (scan_times < b.onset + b.duration + lag))
    return rest


#: Regions whose time courses the fMRI figure shows at most.
MAX_REGIONS_SHOWN = 6


def mri_figure(spec, protocol, key, recording, path, plt):
    """Mosaic of the mean acquired magnitude image (every slice of the NIfTI) with the
    region labels outlined, and each region's percent signal change from the
    acquired images (grey-matter-weighted mean over its voxels, relative to the rest
    scans) with the noise-free BOLD change (dashed) and the blocks shaded.  Of many
    regions, the :data:`MAX_REGIONS_SHOWN` with the largest BOLD response are shown."""
    mag = np.asarray(recording.acquisition.magnitude)  # (Nx, Ny, Nz, Nt)
    bold = np.asarray(recording.bold)
    shown = np.arange(bold.shape[1])
    if shown.size > MAX_REGIONS_SHOWN:
        shown = np.sort(np.argsort(-bold.std(axis=0))[:MAX_REGIONS_SHOWN])
    all_labels = np.asarray(recording.labels)
    labels = np.zeros_like(all_labels)
    for i, r in enumerate(shown):
        labels[all_labels == r + 1] = i + 1
    affine = np.asarray(recording.acquisition.affine)
    regions = [spec["subject"]["regions"][r] for r in shown]
    colors = _region_colors(plt, len(regions))
    nz = mag.shape[2]
    n_cols = min(nz, 6)
    n_mosaic_rows = -(-nz // n_cols)
    n_reg = len(regions)
    row_h = 9.5 / n_cols * mag.shape[1] / mag.shape[0] + 0.45  # in: a slice's aspect + title
    mosaic_h = row_h * n_mosaic_rows + 0.3
    fig = plt.figure(figsize=(11, mosaic_h + 1.5 * n_reg + 0.6), layout="constrained")
    sub = fig.subfigures(2, 1, height_ratios=[mosaic_h, 1.5 * n_reg + 0.6])
    mean = mag.mean(axis=3)
    vmax = np.percentile(mean, 99.5) or 1.0
    axes = np.atleast_1d(sub[0].subplots(n_mosaic_rows, n_cols)).ravel()
    extent = None
    for z, ax in enumerate(axes):
        ax.set_axis_off()
        if z >= nz:
            continue
        im = ax.imshow(mean[:, :, z].T, origin="lower", cmap="gray", vmin=0, vmax=vmax)
        for r, col in enumerate(colors):
            mask = (labels[:, :, z] == r + 1).T.astype(float)
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=[col], linewidths=1.5)
                ax.imshow(
                    np.ma.masked_where(mask == 0, mask),
                    origin="lower",
                    cmap=plt.matplotlib.colors.ListedColormap([col]),
                    alpha=0.3,
                    vmin=0,
                    vmax=1,
                )
        if z == nz // 2:
            for r, (name, col) in enumerate(zip(regions, colors)):
                xs, ys = np.nonzero(labels[:, :, z] == r + 1)
                if xs.size:
                    ax.text(
                        xs.mean(),
                        ys.max() + 1.2,
                        name,
                        color=col,
                        fontsize=9,
                        ha="center",
                        va="bottom",
                        fontweight="bold",
                    )
        z_mm = (affine @ np.array([0, 0, z, 1.0]))[2]
        ax.set_title(f"slice {z}  (z = {z_mm:.0f} mm)", fontsize=9)
        extent = im
    if extent is not None:
        sub[0].colorbar(extent, ax=axes.tolist(), shrink=0.8, label="signal (a.u.)", pad=0.01)
    tr = recording.tr
    sub[0].suptitle(
        f"{key}: mean of {mag.shape[3]} acquired volumes (the NIfTI, {mag.shape[0]}x"
        f"{mag.shape[1]}x{nz}, TR {tr:g} s), regions outlined",
        fontsize=10,
    )
    t = np.asarray(recording.scan_times)
    rest = _rest_scans(protocol, t)
    tax = np.atleast_1d(sub[1].subplots(n_reg, 1, sharex=True))
    for r, name, col, ax in zip(shown, regions, colors, tax):
        signal = np.asarray(recording.region_signal)[:, r]  # (Nt,)
        base = signal[rest].mean() if rest.sum() >= 2 else signal.mean()
        psc = 100 * (signal / base - 1)
        ax.plot(t, psc, color=col, marker=".", ms=4, lw=1.2, label="measured (NIfTI)")
        ax.plot(
            t,
            100 * bold[:, r],
            "--",
            color="k",
            lw=1.0,
            label="noise-free BOLD",
        )
        _shade_blocks(protocol, [ax], plt)
        ax.set_ylabel(f"{name}\n(% change)", fontsize=9)
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_xlim(0, protocol.duration)
    tax[0].legend(
        handles=tax[0].get_legend_handles_labels()[0] + _condition_handles(protocol, plt),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    tax[-1].set_xlabel("time (s)")
    sub[1].suptitle(
        "percent signal change of each region's mean voxel signal (rest scans = 0 %)"
        + (
            f", the {len(shown)} most active of {bold.shape[1]} regions"
            if len(shown) < bold.shape[1]
            else ""
        ),
        fontsize=10,
    )
    return _save(fig, path, plt)


def _nice(x: float) -> float:
    """1, 2 or 5 x 10^k at or below ``x``."""
    if not np.isfinite(x) or x <= 0:
        return 1.0
    k = np.floor(np.log10(x))
    m = x / 10**k
    return float((5 if m >= 5 else 2 if m >= 2 else 1) * 10**k)


def _trace_panel(ax, t, x, names, unit, title, marks=()):
    """Stacked traces (channel mean removed) with names on the y axis and an L-shaped
    scale bar (amplitude ``unit``, time s) in the right margin."""
    y = x - x.mean(axis=1, keepdims=True)
    amp = float(np.percentile(np.abs(y), 99.5)) if y.size else 0.0
    if amp <= 0:
        amp = float(np.abs(y).max()) or 1.0
    spacing = 2.4 * amp
    offsets = -spacing * np.arange(len(names))
    ax.plot(t, (y + offsets[:, None]).T, color="k", lw=0.5)
    ax.set_yticks(offsets, names, fontsize=7 if len(names) > 12 else 8)
    ax.set_ylim(offsets[-1] - spacing, spacing)
    t0, t1 = t[0], t[-1]
    w = t1 - t0
    ax.set_xlim(t0, t1 + 0.16 * w)
    bar_a = _nice(amp)
    bar_t = _nice(w / 6)
    xb = t1 + 0.04 * w
    yb = offsets[-1] - 0.5 * spacing
    ax.plot([xb, xb, xb + bar_t], [yb + bar_a, yb, yb], color="C3", lw=2, clip_on=False)
    ax.text(xb, yb + bar_a, f"{bar_a:g} {unit}", fontsize=8, ha="left", va="bottom", color="C3")
    ax.text(xb, yb - 0.1 * spacing, f"{bar_t:g} s", fontsize=8, ha="left", va="top", color="C3")
    for tm, label in marks:
        if t0 <= tm <= t1:
            ax.axvline(tm, color="C0", lw=1, ls="--")
            ax.text(tm, spacing * 0.95, f" {label}", color="C0", fontsize=8, va="top")
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 1.2 * spacing:  # traces cross their neighbours' rows: say how far
        title += f"\n(row spacing {spacing:.3g} {unit}; peaks reach {peak:.3g} {unit})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (s)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _head_sphere(spec):
    """(x, y, z, radius) in m of the subject's head, for MNE's topographies."""
    from ..physics.electromag.montage import fit_sphere, standard_montage

    center, radius = fit_sphere(standard_montage("standard_1020").positions)
    if spec["subject"].get("head") in ("template", "fem"):
        from ..geometry.template_head import template_center

        center = template_center()
    return (*np.asarray(center, float), float(radius))


def _radial(positions, orientations, center, cos_min: float = 0.8):
    d = positions - np.asarray(center)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    return np.abs(np.einsum("ij,ij->i", orientations, d)) > cos_min


def _groups(recording, sphere):
    """Channel groups to draw: (label, unit, scale to the unit, trace picks, topography
    picks or None, number of channels).  EEG: one group; MEG: field channels (magnetometers, axial
    gradiometers, OPM) and planar gradiometers."""
    lead = np.abs(np.asarray(recording.leadfield))

    def strongest(idx, n):
        """Up to ``n`` of ``idx``: the strongest channels of each region in turn."""
        idx = np.asarray(idx)
        if len(idx) <= n:
            return idx
        ranked = [idx[np.argsort(lead[idx, r])[::-1]] for r in range(lead.shape[1])]
        chosen = []
        for row in zip(*ranked):
            for c in row:
                if c not in chosen and len(chosen) < n:
                    chosen.append(c)
        return np.sort(chosen)

    if isinstance(recording, EEGRecording):
        idx = np.arange(lead.shape[0])
        return [("EEG", "µV", 1e6, strongest(idx, _MAX_EEG_TRACES), idx, len(idx))]
    sensors = recording.sensors
    kinds = np.asarray(sensors.kinds)
    groups = []
    field = np.flatnonzero(kinds != "grad")
    if field.size:
        radial = field[_radial(sensors.positions[field], sensors.orientations[field], sphere[:3])]
        label = {"mag": "magnetometers", "axial": "axial gradiometers", "opm": "OPM"}
        kinds_here = sorted(set(kinds[field]))
        groups.append(
            (
                " + ".join(label.get(k, k) for k in kinds_here),
                "fT",
                1e15,
                strongest(field, _MAX_MEG_TRACES),
                radial if radial.size >= 4 else None,
                field.size,
            )
        )
    grad = np.flatnonzero(kinds == "grad")
    if grad.size:
        groups.append(
            (
                "planar gradiometers",
                "fT/cm",
                1e13,
                strongest(grad, _MAX_MEG_TRACES),
                None,
                grad.size,
            )
        )
    return groups


def _topomap(ax, fig, values, names, positions, kind, sphere, unit, title, show_names):
    """One lead-field topography by :func:`mne.viz.plot_topomap` on an ``mne.Info``
    holding the sensors' positions."""
    import mne

    names = list(names)
    # centred on the head sphere: MNE draws the outline and the interpolation about the origin
    positions = np.asarray(positions, float) - np.asarray(sphere[:3])
    sphere = (0.0, 0.0, 0.0, sphere[3])
    if kind == "eeg":
        info = mne.create_info(names, 1000.0, "eeg")
        montage = mne.channels.make_dig_montage(
            ch_pos=dict(zip(names, positions)), coord_frame="head"
        )
        info.set_montage(montage)
    else:
        info = mne.create_info(names, 1000.0, "mag")
        for ch, p in zip(info["chs"], positions):
            ch["loc"][:3] = p
    lim = float(np.abs(values).max()) or 1.0
    im, _ = mne.viz.plot_topomap(
        values,
        info,
        axes=ax,
        show=False,
        sphere=sphere,
        cmap="RdBu_r",
        vlim=(-lim, lim),
        contours=6,
        sensors="k." if len(names) > 40 else True,
        names=names if show_names else None,
    )
    ax.set_title(title, fontsize=9)
    cb = fig.colorbar(im, ax=ax, shrink=0.7, pad=0.02)
    cb.set_label(unit, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    if show_names:
        for text in ax.texts:
            text.set_fontsize(6)


def electrophysiology_figure(spec, protocol, key, recording, path, plt):
    """EEG or MEG: a window of the recorded data (what the file holds: noise, mains,
    artifacts) beside the clean signal of the same channels, per channel type, with
    channel names and scale bars; then each region's lead-field topography (the
    signal of a 100 nA m dipole, field channels for MEG) with head outline, sensors
    and colour bar."""
    regions = list(spec["subject"]["regions"])[:MAX_REGIONS_SHOWN]  # topographies drawn
    n_regions = len(spec["subject"]["regions"])
    eeg = isinstance(recording, EEGRecording)
    sphere = _head_sphere(spec)
    groups = _groups(recording, sphere)
    t = np.asarray(recording.times)
    onset = protocol.blocks[0].onset if protocol.blocks else t[0]
    t0 = min(max(onset - 1.0, t[0]), max(t[-1] - _TRACE_WINDOW, t[0]))
    sel = (t >= t0) & (t < t0 + _TRACE_WINDOW)
    tc = np.asarray(getattr(recording, "clean_times", t))  # the truth may be decimated
    sel_c = (tc >= t0) & (tc < t0 + _TRACE_WINDOW)
    truth_rate = ""
    if len(tc) != len(t) and len(tc) > 1:
        truth_rate = f", {recording.sample_rate / round(len(t) / len(tc)):g} Hz"
    marks = [(b.onset, f"{b.condition} onset") for b in protocol.blocks]
    names = recording.electrodes.names if eeg else recording.sensors.names
    names = np.asarray(names)
    data, clean = np.asarray(recording.data), np.asarray(recording.clean)
    in_scanner = eeg and recording.artifacts is not None
    topo_groups = [g for g in groups if g[4] is not None]
    n_topo = len(regions)
    n_trace = max(len(g[3]) for g in groups)
    trace_h = 0.22 * n_trace + 1.2
    heights = [trace_h] * len(groups) + ([3.6] if topo_groups else [])
    fig = plt.figure(figsize=(12, sum(heights) + 0.6), layout="constrained")
    sub = np.atleast_1d(fig.subfigures(len(heights), 1, height_ratios=heights))
    what = "recorded (artifacts + noise)" if in_scanner else "recorded (noise included)"
    for g, (label, unit, scale, picks, _, n_all) in enumerate(groups):
        ax_raw, ax_clean = sub[g].subplots(1, 2, sharex=True)
        tt = t[sel]
        _trace_panel(
            ax_raw,
            tt,
            data[np.ix_(picks, np.flatnonzero(sel))] * scale,
            names[picks],
            unit,
            f"{label}: {what}",
            marks,
        )
        if in_scanner:
            vol = recording.artifacts.slice_times[:: recording.artifacts.slices_per_volume]
            for tv in vol[(vol >= tt[0]) & (vol <= tt[-1])]:
                ax_raw.plot(tv, ax_raw.get_ylim()[1], "v", color="C1", ms=5, clip_on=False)
            ax_raw.plot([], [], "v", color="C1", ms=5, label="MRI volume start")
            ax_raw.legend(
                loc="lower left",
                fontsize=7,
                bbox_to_anchor=(0.0, 1.02),
                frameon=False,
                borderaxespad=0,
            )
        _trace_panel(
            ax_clean,
            tc[sel_c],
            clean[np.ix_(picks, np.flatnonzero(sel_c))] * scale,
            names[picks],
            unit,
            f"{label}: clean signal (noise- and artifact-free truth{truth_rate})",
            marks,
        )
        shown = (
            f"all {n_all} channels"
            if len(picks) == n_all
            else f"{len(picks)} of {n_all} channels (each region's strongest)"
        )
        sub[g].suptitle(
            f"{key}: {shown}, {recording.sample_rate:g} Hz, channel means removed",
            fontsize=10,
        )
    if topo_groups:
        label, unit, scale, _, topo, _ = topo_groups[0]
        lead = np.asarray(recording.leadfield)[topo][:, : len(regions)] * scale * _REFERENCE_MOMENT
        axes = np.atleast_1d(sub[-1].subplots(1, n_topo))
        for r, ax in enumerate(axes):
            _topomap(
                ax,
                sub[-1],
                lead[:, r],
                names[topo],
                (recording.electrodes.positions if eeg else recording.sensors.positions)[topo],
                "eeg" if eeg else "meg",
                sphere,
                unit,
                f"{regions[r]}",
                show_names=eeg and len(topo) <= 32,
            )
        where = "the electrodes" if eeg else f"the {label}"
        if label == "OPM":
            where = "the OPM radial axes"
        first = (
            f" (the first {len(regions)} of {n_regions} regions)"
            if n_regions > len(regions)
            else ""
        )
        sub[-1].suptitle(
            f"lead field: signal of each region's 100 nA m dipole at {where}{first} "
            f"({len(topo)} sensors, seen from above, nose up)",
            fontsize=10,
        )
    return _save(fig, path, plt)


def ultrasound_figure(spec, protocol, key, recording, path, plt):
    """Focused ultrasound: pressure and peak temperature rise in the beam plane, and the
    PRFS thermometry against the truth at the hottest thermometry voxel."""
    rec = recording
    mid = rec.pressure.shape[0] // 2  # the plane through the beam axis (grid axes 1, 2)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), layout="constrained")
    h = rec.placement.affine[:3, :3]
    step = float(np.linalg.norm(h[:, 0]))
    extent = (0, rec.pressure.shape[2] * step, 0, rec.pressure.shape[1] * step)
    for ax, data, title, unit in (
        (axes[0], rec.pressure[mid] / 1e3, "pressure amplitude", "kPa"),
        (axes[1], rec.max_delta_t[mid], "peak temperature rise", "K"),
    ):
        im = ax.imshow(data, origin="lower", extent=extent, cmap="inferno", aspect="equal")
        ax.contour(
            rec.labels[mid],
            levels=[1.5, 3.5],
            colors="w",
            linewidths=0.6,
            extent=extent,
            origin="lower",
        )
        ax.set(title=f"{key}: {title}", xlabel="along the beam (mm)", ylabel="across (mm)")
        fig.colorbar(im, ax=ax, label=unit, shrink=0.8)
    truth, recon = rec.thermometry_truth, rec.thermometry_reconstructed
    t = rec.series.times[1:]
    in_brain = np.where(rec.thermometry_brain, truth, -np.inf)  # the hottest brain voxel
    frame, *vox = np.unravel_index(np.argmax(in_brain), truth.shape)
    axes[2].plot(t, truth[(slice(None), *vox)], "k", label="truth")
    axes[2].plot(t, recon[(slice(None), *vox)], ".", color="tab:red", label="PRFS")
    _shade_blocks(protocol, [axes[2]], plt)
    axes[2].set(title="hottest brain voxel (thermometry)", xlabel="time (s)", ylabel="rise (K)")
    axes[2].legend(frameon=False)
    z = vox[2]
    shown = np.where(rec.thermometry_brain[:, :, z], recon[frame, :, :, z], np.nan)
    im = axes[3].imshow(shown.T, origin="lower", cmap="inferno")  # brain only
    fig.colorbar(im, ax=axes[3], label="K", shrink=0.8)
    axes[3].set(
        title=f"PRFS map in the brain at {t[frame]:g} s (RMSE {rec.error.rmse:.2f} K)",
        xlabel="x (voxels)",
        ylabel="y (voxels)",
    )
    return _save(fig, path, plt)
