"""The EEG amplifier device (alone or inside the MRI scanner).

Region dipoles on the fsaverage cortex project through the exact multi-shell
sphere lead field to the montage's electrodes; the amplifier adds its noise,
mains, clock drift and quantisation (:class:`biosim.instruments.eeg.EEGAmplifier`).
When the experiment also has an MRI scanner the EEG is recorded inside it:
the gradient artifact (Faraday induction of the EPI gradients in the lead
loops), the ballistocardiogram and the scanner's slice/volume triggers are
added (:mod:`biosim.instruments.eeg_fmri`).  Output: BrainVision + BIDS sidecars.
"""

from __future__ import annotations

import json

import numpy as np

from ..._core.atomic import atomic_write_text
from ..._core.errors import ParameterError, SpecError
from ..keys import check_keys, require, set_default
from . import device_instances, register_device
from ..subject import region_dipoles, source_moments, sphere_head, template_bem, write_events

DEFAULTS = dict(montage="standard_1020", reference="average", sample_rate=250.0,
                noise_density=50e-9, line_noise=0.0, line_frequency=50.0, clock_drift_ppm=0.0,
                bit_depth=24)


KEYS = set(DEFAULTS) | {"type", "channels", "range"}


def validate(eeg: dict, spec: dict, where: str):
    from ...physics.electromag.montage import standard_montage

    check_keys(eeg, KEYS, where)

    for k, v in DEFAULTS.items():
        eeg.setdefault(k, v)
    require(eeg, "montage", where, str)
    require(eeg, "reference", where, str)
    if "channels" in eeg:
        require(eeg, "channels", where, list, lambda v: len(v) >= 2 and all(
            isinstance(c, str) for c in v), "a list of at least two channel names")
    try:
        standard_montage(eeg["montage"], reference=eeg["reference"], channels=eeg.get("channels"))
    except ParameterError as err:
        raise SpecError(f"{where}: {err}") from err
    require(eeg, "sample_rate", where, float, lambda v: v > 0, "a positive rate in Hz")
    require(eeg, "noise_density", where, float, lambda v: v >= 0,
            "a non-negative noise density in V/sqrt(Hz)")
    require(eeg, "line_noise", where, float, lambda v: v >= 0, "a non-negative V")
    require(eeg, "line_frequency", where, float, lambda v: v in (50.0, 60.0), "50 or 60 Hz")
    require(eeg, "clock_drift_ppm", where, float, lambda v: abs(v) < 1000,
            "a clock error within +-1000 ppm")
    require(eeg, "bit_depth", where, int, lambda v: 8 <= v <= 32, "8 to 32 bits")
    set_default(eeg, "range", where, 0.4, float, lambda v: v > 0, "a positive input range in V")


def run(ctx):
    from ...io.brainvision import write_brainvision
    from ...physics.electromag import eeg_gain
    from ...physics.electromag.montage import standard_montage
    from ...instruments.eeg import EEGAmplifier

    eeg, spec, truth, key = ctx.table, ctx.spec, ctx.truth, ctx.key
    try:
        montage = standard_montage(eeg["montage"], reference=eeg["reference"],
                                   channels=eeg.get("channels"))
        amp = EEGAmplifier(sample_rate=eeg["sample_rate"], noise_density=eeg["noise_density"],
                           line_noise=eeg["line_noise"], line_frequency=eeg["line_frequency"],
                           clock_drift_ppm=eeg["clock_drift_ppm"], bit_depth=eeg["bit_depth"],
                           range_v=eeg["range"], seed=int(ctx.rng.integers(2 ** 31)))
    except ParameterError as err:
        raise SpecError(f"devices.{key}: {err}") from err
    pos, ori = region_dipoles(spec)
    if spec["subject"]["head"] == "template":                            # BEM, template head
        from ...geometry.template_head import project_to_scalp
        from ...physics.electromag.sensors import EEGSensors

        montage = EEGSensors(montage.names, project_to_scalp(
            montage.positions, spec["subject"]["bem_vertices"]), montage.reference)
        g = np.asarray(template_bem(spec, eeg=montage).eeg_gain(pos))   # referenced (C, R, 3)
        lead = np.einsum("csk,sk->cs", g, ori)
    else:                                                                # exact sphere series
        head, _, _ = sphere_head(spec)
        g = np.asarray(eeg_gain(head, montage.positions, pos))           # (C, R, 3)
        lead = montage.reference_matrix() @ np.einsum("csk,sk->cs", g, ori)  # (C, R) V/(A m)
    times = amp.sample_times(spec["experiment"]["duration"])
    moments = source_moments(ctx, times)                                 # (T, R) A m
    clean = lead @ moments.T                                             # (C, T) V
    total = clean
    events = [(b["onset"], b["condition"]) for b in spec["protocol"]["blocks"]]
    scanners = device_instances(spec, "mri")
    if scanners:                                                         # EEG inside the scanner
        from ...instruments.eeg_fmri import (EPIGradients, bcg_artifact, cardiac_r_peaks,
                                         gradient_artifact, lead_loops)

        mri = scanners[0][1]
        slice_period = mri["tr"] / mri["n_slices"]
        n_slices_total = int(round(spec["experiment"]["duration"] / slice_period))
        loops = lead_loops(montage.n_channels, seed=int(ctx.rng.integers(2 ** 31)))
        grad = gradient_artifact(montage.positions, loops, EPIGradients(), slice_period,
                                 n_slices_total, times)
        r_peaks = cardiac_r_peaks(spec["experiment"]["duration"],
                                  seed=int(ctx.rng.integers(2 ** 31)))
        bcg = bcg_artifact(loops, mri["field_strength"], r_peaks, times,
                           seed=int(ctx.rng.integers(2 ** 31)))
        total = clean + grad + bcg
        slice_times = np.arange(n_slices_total) * slice_period
        truth.update({f"{key}_gradient_artifact": grad, f"{key}_bcg_artifact": bcg,
                      "r_peaks": r_peaks, "mri_slice_times": slice_times})
        events += [(ts, "slice") for ts in slice_times]
        events += [(ts, "volume") for ts in slice_times[::mri["n_slices"]]]
    try:
        data = amp.record(total, montage.names)
    except ParameterError as err:
        raise SpecError(f"devices.{key}.range: {err}") from err
    ctx.outputs[key] = {"data": data, "sample_rate": amp.sample_rate, "leadfield": lead,
                        "in_scanner": bool(scanners)}
    drift = 1 + amp.clock_drift_ppm * 1e-6        # markers stamped on the amplifier's clock
    events = [(t * drift, d) for t, d in events]
    truth.update({f"{key}_times": times, f"{key}_moments": moments, f"{key}_leadfield": lead,
                  f"{key}_clean": clean, "dipole_positions": pos, "dipole_orientations": ori})
    eeg_dir = ctx.sub_dir / "eeg"
    eeg_dir.mkdir(parents=True, exist_ok=True)
    stem = ctx.stem if key == "eeg" else f"{ctx.stem}_acq-{''.join(ch for ch in key if ch.isalnum())}"
    write_brainvision(eeg_dir / f"{stem}_eeg.vhdr", data, amp.sample_rate, montage.names, events)
    atomic_write_text(eeg_dir / f"{stem}_eeg.json", json.dumps({
        "TaskName": spec["experiment"]["name"], "SamplingFrequency": amp.sample_rate,
        "EEGReference": eeg["reference"], "PowerLineFrequency": amp.line_frequency,
        "SoftwareFilters": "n/a", "EEGChannelCount": montage.n_channels,
        "RecordingDuration": float(len(times) / amp.sample_rate),
        "EEGPlacementScheme": eeg["montage"],
        "Manufacturer": "biosim", "ManufacturersModelName": "virtual EEG amplifier"},
        indent=2) + "\n")
    atomic_write_text(eeg_dir / f"{stem}_channels.tsv", "name\ttype\tunits\n" + "".join(
        f"{n}\tEEG\tuV\n" for n in montage.names))
    atomic_write_text(eeg_dir / f"{ctx.sub_dir.name}_electrodes.tsv", "name\tx\ty\tz\n" + "".join(
        f"{n}\t{p[0]:.5f}\t{p[1]:.5f}\t{p[2]:.5f}\n"
        for n, p in zip(montage.names, montage.positions)))
    atomic_write_text(eeg_dir / f"{ctx.sub_dir.name}_coordsystem.json", json.dumps({
        "EEGCoordinateSystem": "Other", "EEGCoordinateUnits": "m",
        "EEGCoordinateSystemDescription": "fsaverage MRI (FreeSurfer surface RAS) frame, "
                                          "the frame of the cortex and template head"},
        indent=2) + "\n")
    write_events(spec, eeg_dir / f"{stem}_events.tsv")


register_device("eeg", validate=validate, run=run, order=20,
                description="EEG amplifier (in the MRI scanner when the experiment has one): "
                            "BrainVision + BIDS sidecars")
