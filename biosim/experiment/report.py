"""Report figures of a simulated experiment (matplotlib, optional).

Each function draws one PNG with ``plt`` (already switched to the Agg
backend by the caller) and writes it atomically; they read the validated spec,
the protocol, the activity and the devices' recordings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._core.atomic import atomic_path
from .devices.eeg import EEGRecording


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _shade_blocks(protocol, axes):
    for b in protocol.blocks:
        for ax in axes:
            ax.axvspan(b.onset, b.onset + b.duration, color="0.92", zorder=0)


def activity_figure(spec, protocol, activity, path, plt):
    """The design (condition boxcars) and the neural activity per region."""
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    u = activity.condition_inputs
    for j, c in enumerate(protocol.conditions):
        axes[0].plot(activity.times, u[:, j] * (1 - 0.1 * j), label=c)
    for r, name in enumerate(spec["subject"]["regions"]):
        axes[1].plot(activity.times, activity.neural_input[:, r], label=name)
    _shade_blocks(protocol, axes)
    axes[0].set_ylabel("condition")
    axes[0].legend(loc="upper right")
    axes[1].set_ylabel("neural activity (1/s)")
    axes[1].set_xlabel("time (s)")
    axes[1].legend(loc="upper right")
    axes[0].set_title(
        f"biosim experiment {spec['experiment']['name']!r}: design and "
        f"{spec['activity']['model']} activity"
    )
    return _save(fig, path, plt)


def bold_figure(spec, protocol, recording, path, plt):
    """Noise-free BOLD per region at the scan times of an MRI recording."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for r, name in enumerate(spec["subject"]["regions"]):
        ax.plot(recording.scan_times, 100 * recording.bold[:, r], marker=".", label=name)
    _shade_blocks(protocol, [ax])
    ax.set_ylabel("BOLD change (%)")
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right")
    ax.set_title("hemodynamic response (Balloon-Windkessel), sampled every TR")
    return _save(fig, path, plt)


def _azimuthal(points, center):
    """Azimuthal equidistant projection of sensor positions seen from above."""
    d = np.asarray(points) - center
    r = np.linalg.norm(d, axis=1)
    theta = np.arccos(np.clip(d[:, 2] / r, -1, 1))
    phi = np.arctan2(d[:, 1], d[:, 0])
    return theta * np.cos(phi), theta * np.sin(phi)


def electrophysiology_figure(spec, protocol, key, recording, path, plt):
    """Noise-free traces around the first block and the topography of each
    region's lead field at the sensors the device used (EEG: electrodes as
    placed on the head; MEG: magnetometers/OPM channels)."""
    t, v, lead = recording.times, recording.clean, recording.leadfield
    regions = spec["subject"]["regions"]
    kind = "eeg" if isinstance(recording, EEGRecording) else "meg"
    unit, scale = ("uV", 1e6) if kind == "eeg" else ("fT (/cm)", 1e15)
    t0 = max(protocol.blocks[0].onset - 2.0, 0.0)
    sel = (t >= t0) & (t < t0 + 6.0)
    fig = plt.figure(figsize=(12, 5))
    ax = fig.add_subplot(1, 1 + len(regions), 1)
    picks = np.linspace(0, v.shape[0] - 1, min(8, v.shape[0])).astype(int)
    spacing = 2.5 * np.abs(v[picks][:, sel]).max() * scale if sel.any() else 1.0
    for k, c in enumerate(picks):
        ax.plot(t[sel], v[c, sel] * scale - k * spacing, lw=0.8)
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.set_title(f"{key}: noise-free traces ({unit})", fontsize=9)
    if kind == "eeg":
        pos = recording.electrodes.positions
        keep = np.arange(lead.shape[0])
    else:
        pos, ori = recording.sensors.positions, recording.sensors.orientations
        center = pos.mean(0) - np.array([0, 0, 0.04])
        radial = (
            np.abs(
                np.einsum(
                    "ij,ij->i",
                    ori,
                    (pos - center) / np.linalg.norm(pos - center, axis=1, keepdims=True),
                )
            )
            > 0.8
        )
        keep = np.flatnonzero(radial)
    center = pos.mean(0) - np.array([0.0, 0.0, 0.04])
    x, y = _azimuthal(pos[keep], center)
    for r, name in enumerate(regions):
        a = fig.add_subplot(1, 1 + len(regions), 2 + r)
        vals = lead[keep, r]
        lim = np.abs(vals).max() or 1.0
        a.scatter(x, y, c=vals, cmap="RdBu_r", vmin=-lim, vmax=lim, s=30)
        a.set_aspect("equal")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"{name} lead field", fontsize=9)
    return _save(fig, path, plt)
