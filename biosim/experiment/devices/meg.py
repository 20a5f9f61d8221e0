"""The MEG device: a SQUID helmet or an on-scalp OPM array.

The same region dipoles as the EEG project through the Sarvas sphere lead
field (integrated over each coil's points) to the sensors; the system adds
white noise at each sensor type's floor and mains interference
(:class:`biosim.instruments.meg.MEGSystem`).  Systems:

``"squid306"``  102 triple sensors (magnetometer + two planar gradiometers), Elekta/MEGIN-like helmet
``"axial275"``  275 first-order axial gradiometers (CTF-like)
``"opm"``       ``n_sensors`` on-scalp OPM cells, ``standoff`` m above the scalp,
                ``opm_axes`` "radial", "dual" or "triaxial"

Output: FIF through MNE-Python (``meg/…_meg.fif``) with channels.tsv and a
BIDS sidecar.
"""

from __future__ import annotations

import json

import numpy as np

from ..._core.atomic import atomic_write_text
from ..._core.errors import ParameterError, SpecError
from ..keys import check_keys, require, set_default
from . import register_device
from ..subject import region_dipoles, source_moments, sphere_head, template_bem, write_events

SYSTEMS = ("squid306", "axial275", "opm")
_BIDS_TYPE = {"mag": "MEGMAG", "grad": "MEGGRADPLANAR", "axial": "MEGGRADAXIAL", "opm": "MEGMAG"}


KEYS = {"type", "system", "sample_rate", "noise_scale", "noise_floor", "line_noise",
        "line_frequency", "helmet_gap", "n_sensors", "standoff", "opm_axes"}


def validate(meg: dict, spec: dict, where: str):
    check_keys(meg, KEYS, where)
    system = set_default(meg, "system", where, "squid306", str, lambda v: v in SYSTEMS,
                         f"one of {list(SYSTEMS)}")
    set_default(meg, "sample_rate", where, 1000.0, float, lambda v: v > 0, "a positive rate in Hz")
    set_default(meg, "noise_scale", where, 1.0, float, lambda v: v >= 0,
                "a non-negative factor on the sensors' noise floors")
    if "noise_floor" in meg:
        require(meg, "noise_floor", where, float, lambda v: v > 0,
                "a positive magnetometer/OPM noise floor in fT/sqrt(Hz)")
    set_default(meg, "line_noise", where, 0.0, float, lambda v: v >= 0,
                "a non-negative mains amplitude in fT")
    set_default(meg, "line_frequency", where, 50.0, float, lambda v: v in (50.0, 60.0),
                "50 or 60 Hz")
    set_default(meg, "helmet_gap", where, 0.03, float, lambda v: 0.005 <= v <= 0.1,
                "a scalp-to-helmet distance in [0.005, 0.1] m")
    if system == "opm":
        set_default(meg, "n_sensors", where, 64, int, lambda v: 4 <= v <= 512, "4 to 512 cells")
        set_default(meg, "standoff", where, 0.006, float, lambda v: 0 <= v <= 0.05,
                    "a sensor-to-scalp distance in [0, 0.05] m")
        set_default(meg, "opm_axes", where, "radial", str,
                    lambda v: v in ("radial", "dual", "triaxial"),
                    "'radial', 'dual' or 'triaxial'")


def sensors_for(meg: dict, spec: dict):
    """The device's :class:`~biosim.physics.electromag.sensors.MEGSensors`, placed
    around the subject's head: a helmet ``helmet_gap`` beyond the scalp, or OPM
    cells ``standoff`` above it (on the template scalp for the template head)."""
    from ...physics.electromag.sensors import (MEGSensors, axial_system_275, opm, opm_array,
                                              squid_helmet_306)

    if spec["subject"]["head"] == "template":
        from ...geometry.template_head import project_to_scalp, template_center, template_head

        center = template_center()
        scalp = template_head(spec["subject"]["bem_vertices"])[-1].vertices - center
        dist = np.linalg.norm(scalp, axis=1)
        cap = scalp[:, 2] / dist > np.cos(np.deg2rad(105))     # the helmet's coverage
        radius = float(dist[cap].max())
    else:
        _, center, radius = sphere_head(spec)
    if meg["system"] == "squid306":
        return squid_helmet_306(radius=radius + meg["helmet_gap"], center=center)
    if meg["system"] == "axial275":
        return axial_system_275(radius=radius + meg["helmet_gap"], center=center)
    if spec["subject"]["head"] != "template":
        return opm_array(meg["n_sensors"], scalp_radius=radius, standoff=meg["standoff"],
                         center=center, axes=meg["opm_axes"])
    # on-scalp cells: directions of the standard OPM layout, projected onto the template scalp
    unit = opm_array(meg["n_sensors"], scalp_radius=1.0, standoff=0.0, axes=meg["opm_axes"])
    cells = project_to_scalp(center + unit.positions, spec["subject"]["bem_vertices"])
    radial = unit.positions / np.linalg.norm(unit.positions, axis=1, keepdims=True)
    placed = cells + (meg["standoff"] + 0.002) * radial     # 2 mm clearance over the flat facets
    return MEGSensors.concatenate(*[opm(n, p, a) for n, p, a in zip(
        unit.names, placed, unit.orientations)])


def run(ctx):
    from ...io.fif import write_meg_fif
    from ...physics.electromag import meg_gain
    from ...instruments.meg import MEGSystem

    meg, spec, truth, key = ctx.table, ctx.spec, ctx.truth, ctx.key
    try:
        import mne  # noqa: F401  (only to fail early with a clear message)
    except ImportError as err:
        raise SpecError(f"devices.{key}: writing MEG (FIF) needs MNE-Python: "
                        "pip install 'biosim[io]'") from err
    try:
        system = MEGSystem(sample_rate=meg["sample_rate"], noise_scale=meg["noise_scale"],
                           noise_floor=meg["noise_floor"] * 1e-15 if "noise_floor" in meg else None,
                           line_noise=meg["line_noise"] * 1e-15,
                           line_frequency=meg["line_frequency"],
                           seed=int(ctx.rng.integers(2 ** 31)))
    except ParameterError as err:
        raise SpecError(f"devices.{key}: {err}") from err
    sensors = sensors_for(meg, spec)
    pos, ori = region_dipoles(spec)
    if spec["subject"]["head"] == "template":                             # BEM (Geselowitz)
        g = np.asarray(template_bem(spec, meg=sensors).meg_gain(pos))
    else:                                                                 # Sarvas sphere
        _, center, _ = sphere_head(spec)
        g = np.asarray(meg_gain(sensors, pos, center=center))            # (C, R, 3)
    lead = np.einsum("csk,sk->cs", g, ori)                               # (C, R) T/(A m)
    times = system.sample_times(spec["experiment"]["duration"])
    moments = source_moments(ctx, times)
    clean = lead @ moments.T
    data = system.record(clean, sensors)
    truth.update({f"{key}_times": times, f"{key}_leadfield": lead, f"{key}_clean": clean,
                  f"{key}_sensor_positions": sensors.positions,
                  f"{key}_sensor_orientations": sensors.orientations,
                  f"{key}_noise_std": system.channel_noise(sensors),
                  "dipole_positions": pos, "dipole_orientations": ori})
    meg_dir = ctx.sub_dir / "meg"
    meg_dir.mkdir(parents=True, exist_ok=True)
    stem = ctx.stem if key == "meg" else f"{ctx.stem}_acq-{''.join(ch for ch in key if ch.isalnum())}"
    events = [(b["onset"], b["condition"]) for b in spec["protocol"]["blocks"]]
    write_meg_fif(meg_dir / f"{stem}_meg.fif", data, system.sample_rate, sensors, events,
                  line_freq=meg["line_frequency"])
    kinds = sensors.kinds
    atomic_write_text(meg_dir / f"{stem}_meg.json", json.dumps({
        "TaskName": spec["experiment"]["name"], "SamplingFrequency": system.sample_rate,
        "PowerLineFrequency": meg["line_frequency"], "DewarPosition": "upright",
        "SoftwareFilters": "n/a", "DigitizedLandmarks": False, "DigitizedHeadPoints": False,
        "MEGChannelCount": sensors.n_channels,
        "RecordingDuration": float(len(times) / system.sample_rate),
        "Manufacturer": "biosim",
        "ManufacturersModelName": {"squid306": "virtual 306-channel SQUID helmet",
                                   "axial275": "virtual 275-channel axial gradiometer system",
                                   "opm": f"virtual {meg.get('n_sensors')}-cell OPM array"}[
                                       meg["system"]]}, indent=2) + "\n")
    noise = system.channel_noise(sensors) / np.sqrt(system.sample_rate / 2)
    atomic_write_text(meg_dir / f"{stem}_channels.tsv",
                      "name\ttype\tunits\tsampling_frequency\tnoise_floor\n" + "".join(
                          f"{n}\t{_BIDS_TYPE[k]}\t{'T/m' if k == 'grad' else 'T'}\t"
                          f"{system.sample_rate:g}\t{f:.3e}\n"
                          for n, k, f in zip(sensors.names, kinds, noise)))
    write_events(spec, meg_dir / f"{stem}_events.tsv")


register_device("meg", validate=validate, run=run, order=30,
                description="MEG system: SQUID helmet (306 or 275 channels) or OPM array "
                            "(FIF via MNE-Python)")
