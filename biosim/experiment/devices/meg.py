"""The MEG device: a SQUID helmet or an on-scalp OPM array.

The same region dipoles as the EEG project through the Sarvas sphere lead
field (integrated over each coil's points) to the sensors; the system adds
white noise at each sensor type's floor and mains interference
(:class:`biosim.instruments.meg.MEGSystem`).  Systems:

``"squid306"``  102 triple sensors (magnetometer + two planar gradiometers),
                Elekta/MEGIN-like helmet
``"axial275"``  275 first-order axial gradiometers (CTF-like)
``"opm"``       ``n_sensors`` on-scalp OPM cells, ``standoff`` m above the scalp,
                ``opm_axes`` "radial", "dual" or "triaxial"

Output: FIF through MNE-Python (``meg/…_meg.fif``) with channels.tsv and a
BIDS sidecar.

The session is simulated in time chunks into one float32 (channels x samples)
array (see :mod:`biosim.experiment.devices.eeg`); the truth keeps the clean
signal at ``truth_sample_rate`` (every q-th sample; default: at most 1 kHz).

Head motion (``Simulation.motion``, a :class:`~biosim.geometry.motion.RigidMotion`,
head -> device): the sensors stay in the helmet while the head moves, so the
lead field follows the pose.  With the sphere model the sphere moves with the
head; the sensors are carried into the head frame by the inverse pose and the
gain is recomputed at pose knots (every second, or sooner when a sensor has
moved 0.5 mm relative to the head since the last knot), linearly interpolated
between knots.  Motion with the template-head BEM is not supported yet (it
would rebuild the BEM's sensor transfer at every knot).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ... import __version__
from ..._core.errors import SpecError
from ...instruments.meg import MEGSystem
from ...io.bids import (
    BIDSDataset,
    EventRow,
    events_sidecar,
    write_events,
    write_json,
    write_tsv,
)
from ...physics.electromag.sensors import MEGSensors
from ..keys import check_keys, instrument_errors, require, set_default
from ..subject import head_forward, region_dipoles, sphere_head
from . import DeviceContext, Recording, acq_label, register_device
from .eeg import check_truth_rate

SYSTEMS = ("squid306", "axial275", "opm")
_BIDS_TYPE = {"mag": "MEGMAG", "grad": "MEGGRADPLANAR", "axial": "MEGGRADAXIAL", "opm": "MEGMAG"}


KEYS = {
    "type",
    "system",
    "sample_rate",
    "noise_scale",
    "noise_floor",
    "line_noise",
    "line_frequency",
    "helmet_gap",
    "n_sensors",
    "standoff",
    "opm_axes",
    "truth_sample_rate",
}


def build_system(meg: dict, seed: int = 0) -> MEGSystem:
    """The acquisition system of a validated ``[devices.<key>]`` table (fT in the
    table, T in the system)."""
    return MEGSystem(
        sample_rate=meg["sample_rate"],
        noise_scale=meg["noise_scale"],
        noise_floor=meg["noise_floor"] * 1e-15 if "noise_floor" in meg else None,
        line_noise=meg["line_noise"] * 1e-15,
        line_frequency=meg["line_frequency"],
        seed=seed,
    )


def validate(meg: dict, spec: dict, where: str):
    """Defaults, types and the sensor layout here; the system checks its own limits."""
    check_keys(meg, KEYS, where)
    if "motion" in spec["subject"] and spec["subject"]["head"] in ("template", "fem"):
        raise SpecError(
            f"{where}: head motion ([subject.motion]) with subject.head = "
            f"{spec['subject']['head']!r} (BEM/FEM) is "
            "not supported yet: expected subject.head = 'sphere' for a moving head in the MEG"
        )
    system = set_default(
        meg, "system", where, "squid306", str, lambda v: v in SYSTEMS, f"one of {list(SYSTEMS)}"
    )
    set_default(meg, "sample_rate", where, 1000.0, float)
    set_default(meg, "noise_scale", where, 1.0, float)
    if "noise_floor" in meg:
        require(meg, "noise_floor", where, float, None, "a noise floor in fT/sqrt(Hz)")
    set_default(meg, "line_noise", where, 0.0, float, None, "a mains amplitude in fT")
    set_default(meg, "line_frequency", where, 50.0, float)
    set_default(
        meg,
        "helmet_gap",
        where,
        0.03,
        float,
        lambda v: 0.005 <= v <= 0.1,
        "a scalp-to-helmet distance in [0.005, 0.1] m",
    )
    if system == "opm":
        set_default(meg, "n_sensors", where, 64, int, lambda v: 4 <= v <= 512, "4 to 512 cells")
        set_default(
            meg,
            "standoff",
            where,
            0.006,
            float,
            lambda v: 0 <= v <= 0.05,
            "a sensor-to-scalp distance in [0, 0.05] m",
        )
        set_default(
            meg,
            "opm_axes",
            where,
            "radial",
            str,
            lambda v: v in ("radial", "dual", "triaxial"),
            "'radial', 'dual' or 'triaxial'",
        )
    with instrument_errors(where, meg):
        build_system(meg)
    check_truth_rate(meg, where)


def sensors_for(meg: dict, spec: dict):
    """The device's :class:`~biosim.physics.electromag.sensors.MEGSensors`, placed
    around the subject's head: a helmet ``helmet_gap`` beyond the scalp, or OPM
    cells ``standoff`` above it (on the template scalp for the template head)."""
    from ...physics.electromag.sensors import (
        MEGSensors,
        axial_system_275,
        opm,
        opm_array,
        squid_helmet_306,
    )

    if spec["subject"]["head"] in ("template", "fem"):
        from ...geometry.template_head import project_to_scalp, template_center, template_head

        center = template_center()
        scalp = template_head(spec["subject"]["bem_vertices"])[-1].vertices - center
        dist = np.linalg.norm(scalp, axis=1)
        cap = scalp[:, 2] / dist > np.cos(np.deg2rad(105))  # the helmet's coverage
        radius = float(dist[cap].max())
    else:
        _, center, radius = sphere_head(spec)
    if meg["system"] == "squid306":
        return squid_helmet_306(radius=radius + meg["helmet_gap"], center=center)
    if meg["system"] == "axial275":
        return axial_system_275(radius=radius + meg["helmet_gap"], center=center)
    if spec["subject"]["head"] not in ("template", "fem"):
        return opm_array(
            meg["n_sensors"],
            scalp_radius=radius,
            standoff=meg["standoff"],
            center=center,
            axes=meg["opm_axes"],
        )
    # on-scalp cells: directions of the standard OPM layout, projected onto the template scalp
    unit = opm_array(meg["n_sensors"], scalp_radius=1.0, standoff=0.0, axes=meg["opm_axes"])
    cells = project_to_scalp(center + unit.positions, spec["subject"]["bem_vertices"])
    radial = unit.positions / np.linalg.norm(unit.positions, axis=1, keepdims=True)
    placed = cells + (meg["standoff"] + 0.002) * radial  # 2 mm clearance over the flat facets
    return MEGSensors.concatenate(
        *[opm(n, p, a) for n, p, a in zip(unit.names, placed, unit.orientations)]
    )


#: Pose knots of a moving head: at most this far apart, s ...
POSE_INTERVAL = 1.0
#: ... or sooner, once a sensor has moved this far relative to the head, m.
POSE_DISPLACEMENT = 5e-4
#: Poses are checked on a grid this fine, s.
POSE_CHECK = 0.05


@dataclasses.dataclass(frozen=True)
class MEGRecording(Recording):
    """What the MEG system recorded, and the truth behind it.

    Attributes
    ----------
    system : MEGSystem
    sensors : MEGSensors
        Channel names, kinds, positions (m) and orientations as placed.
    data : float32 array (n_channels, n_times)
        Recorded fields (T) and gradients (T/m).
    times : array (n_times,)
        s.
    leadfield : array (n_channels, n_regions)
        T / (A m) or T / m / (A m), with the head at rest (its reference pose).
    clean : float32 array (n_channels, n_truth_times)
        Noise-free signal at ``truth_times``.
    dipole_positions, dipole_orientations : array (n_regions, 3)
    truth_times : array or None
        ``times[::q]`` (``truth_sample_rate``); None: ``times``.
    pose_times : array or None
        Times of the pose knots where the lead field was evaluated (head motion), s.
    """

    system: MEGSystem
    sensors: MEGSensors
    data: np.ndarray
    times: np.ndarray
    leadfield: np.ndarray
    clean: np.ndarray
    dipole_positions: np.ndarray
    dipole_orientations: np.ndarray
    truth_times: np.ndarray | None = None
    pose_times: np.ndarray | None = None

    @property
    def sample_rate(self) -> float:
        return self.system.sample_rate

    @property
    def clean_times(self) -> np.ndarray:
        """Time axis of ``clean``, s."""
        return self.times if self.truth_times is None else self.truth_times

    def truth_arrays(self, key: str) -> dict[str, np.ndarray]:
        out = {
            f"{key}_times": self.clean_times,
            f"{key}_leadfield": self.leadfield,
            f"{key}_clean": self.clean,
            f"{key}_sensor_positions": self.sensors.positions,
            f"{key}_sensor_orientations": self.sensors.orientations,
            f"{key}_noise_std": self.system.channel_noise(self.sensors),
            "dipole_positions": self.dipole_positions,
            "dipole_orientations": self.dipole_orientations,
        }
        if self.pose_times is not None:
            out[f"{key}_pose_times"] = self.pose_times
        return out


def sensors_in_head(sensors: MEGSensors, matrix: np.ndarray) -> MEGSensors:
    """The helmet's sensors seen from a head at pose ``matrix`` (head -> device, 4 x 4,
    m): points and axes carried by the inverse pose."""
    r, t = np.asarray(matrix)[:3, :3], np.asarray(matrix)[:3, 3]
    # x_head = R^T (x_device - t); for row vectors: (x - t) @ R
    return dataclasses.replace(
        sensors,
        points=(np.asarray(sensors.points) - t) @ r,
        normals=np.asarray(sensors.normals) @ r,
        positions=(np.asarray(sensors.positions) - t) @ r,
        orientations=np.asarray(sensors.orientations) @ r,
    )


def pose_knots(motion, duration: float, sensors: MEGSensors) -> np.ndarray:
    """Times (s) at which a moving head's lead field is evaluated: 0, then every
    :data:`POSE_INTERVAL` s or as soon as a sensor point has moved more than
    :data:`POSE_DISPLACEMENT` m relative to the head since the last knot (checked
    every :data:`POSE_CHECK` s and at the motion's own samples), and the end."""
    check = np.union1d(
        np.arange(0.0, duration, POSE_CHECK),
        np.asarray(motion.times)[(motion.times > 0) & (motion.times < duration)],
    )
    check = np.r_[check, duration]
    mats = motion.matrices(check)  # (n, 4, 4)
    pts = np.asarray(sensors.positions)
    # sensor positions in the head frame at every check time, (n, C, 3)
    rel = np.einsum("ncj,nji->nci", pts[None] - mats[:, None, :3, 3], mats[:, :3, :3])
    knots, last = [0], 0
    for i in range(1, len(check)):
        moved = np.linalg.norm(rel[i] - rel[last], axis=1).max()
        if moved > POSE_DISPLACEMENT or check[i] - check[last] >= POSE_INTERVAL - 1e-9:
            knots.append(i)
            last = i
    if knots[-1] != len(check) - 1:
        knots.append(len(check) - 1)
    return check[np.unique(knots)]


def simulate(ctx: DeviceContext) -> MEGRecording:
    """Lead field (Sarvas sphere or template-head BEM) x source moments, then the
    system, chunk by chunk into one float32 array; a moving head's lead field follows
    its pose (see the module docstring)."""
    from ...physics.electromag import meg_gain
    from .eeg import chunk_length, map_chunks, truth_decimation

    meg, spec, key = ctx.table, ctx.spec, ctx.key
    try:
        import mne  # noqa: F401  (only to fail early with a clear message)
    except ImportError as err:
        raise SpecError(
            f"devices.{key}: writing MEG (FIF) needs MNE-Python: pip install 'biosim[io]'"
        ) from err
    system = build_system(meg, seed=ctx.new_seed())
    sensors = sensors_for(meg, spec)
    pos, ori = region_dipoles(spec)
    motion = ctx.simulation.motion
    if spec["subject"]["head"] in ("template", "fem"):  # BEM/FEM; no motion (validated)
        g = np.asarray(head_forward(spec, meg=sensors).meg_gain(pos))
        center = None
    else:  # Sarvas sphere
        _, center, _ = sphere_head(spec)
        g = np.asarray(meg_gain(sensors, pos, center=center))  # (C, R, 3)
    lead = np.einsum("csk,sk->cs", g, ori)  # (C, R) T/(A m)
    duration = ctx.protocol.duration
    times = system.sample_times(duration)
    knots, leads = None, {}
    if motion is not None:
        knots = pose_knots(motion, duration, sensors)
        mats = motion.matrices(knots)

        def lead_at(k):
            if k not in leads:
                if len(leads) > 2:
                    leads.pop(min(leads))
                moved = sensors_in_head(sensors, mats[k])
                gk = np.asarray(meg_gain(moved, pos, center=center))
                leads[k] = np.einsum("csk,sk->cs", gk, ori)
            return leads[k]

    sources = ctx.simulation.sources
    n_ch, n_t = lead.shape[0], len(times)
    q = truth_decimation(meg)
    data = np.empty((n_ch, n_t), np.float32)
    clean = np.empty((n_ch, -(-n_t // q)), np.float32)
    step = chunk_length(q, system.NOISE_BLOCK, max(n_ch, lead.shape[1]))

    def one_chunk(a):
        b = min(a + step, n_t)
        t = times[a:b]
        if knots is None:
            field = sources.project(lead, t)
        else:
            field = np.empty((n_ch, b - a))
            seg = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
            for k in np.unique(seg):
                on = np.flatnonzero(seg == k)
                w = (t[on] - knots[k]) / (knots[k + 1] - knots[k])
                field[:, on] = (1 - w) * sources.project(lead_at(k), t[on]) + w * (
                    sources.project(lead_at(k + 1), t[on])
                )
        clean[:, a // q : -(-b // q)] = field[:, ::q]
        data[:, a:b] = system.record(field, sensors, start=a, out=field)

    if knots is None:  # chunks in parallel
        map_chunks(one_chunk, range(0, n_t, step))
    else:  # in order: the pose knots' lead fields are computed as the chunks reach them
        for a in range(0, n_t, step):
            one_chunk(a)
    return MEGRecording(
        system,
        sensors,
        data,
        times,
        lead,
        clean,
        pos,
        ori,
        times[::q] if q > 1 else None,
        knots,
    )


def write(rec: MEGRecording, ctx: DeviceContext, dataset: BIDSDataset):
    """FIF (through MNE-Python) with a trigger channel, sidecar, channels and events."""
    from ...io.fif import STIM_CHANNEL, event_codes, write_meg_fif

    meg, acq = ctx.table, acq_label(ctx.key, "meg")
    sensors, fs = rec.sensors, rec.sample_rate
    events = [(b.onset, b.condition) for b in ctx.protocol.blocks]
    codes = event_codes(ctx.protocol.conditions)
    write_meg_fif(
        dataset.path("meg", "meg.fif", acq),
        rec.data,
        fs,
        sensors,
        events,
        line_freq=meg["line_frequency"],
        codes=codes,
    )
    write_json(
        dataset.path("meg", "meg.json", acq),
        {
            "TaskName": dataset.task,
            "TaskDescription": f"simulated experiment {ctx.spec['experiment']['name']!r} "
            f"(conditions: {', '.join(ctx.protocol.conditions)})",
            "SamplingFrequency": fs,
            "PowerLineFrequency": meg["line_frequency"],
            "DewarPosition": "upright",
            "SoftwareFilters": "n/a",
            "HardwareFilters": "n/a",
            "DigitizedLandmarks": False,
            "DigitizedHeadPoints": False,
            "MEGChannelCount": sensors.n_channels,
            "MEGREFChannelCount": 0,
            "EEGChannelCount": 0,
            "EOGChannelCount": 0,
            "ECGChannelCount": 0,
            "EMGChannelCount": 0,
            "MiscChannelCount": 0,
            "TriggerChannelCount": 1,
            "RecordingType": "continuous",
            "RecordingDuration": float(len(rec.times) / fs),
            "Manufacturer": "biosim",
            "ManufacturersModelName": {
                "squid306": "virtual 306-channel SQUID helmet",
                "axial275": "virtual 275-channel axial gradiometer system",
                "opm": f"virtual {meg.get('n_sensors')}-cell OPM array",
            }[meg["system"]],
            "SoftwareVersions": f"biosim {__version__}",
        },
    )
    noise = rec.system.channel_noise(sensors) / np.sqrt(fs / 2)
    kinds = sensors.kinds
    write_tsv(
        dataset.path("meg", "channels.tsv", acq),
        {
            "name": [*sensors.names, STIM_CHANNEL],
            "type": [_BIDS_TYPE[k] for k in kinds] + ["TRIG"],
            "units": ["T/m" if k == "grad" else "T" for k in kinds] + ["n/a"],
            "sampling_frequency": [fs] * (len(kinds) + 1),
            "noise_floor": [f"{v:.3e}" for v in noise] + ["n/a"],
        },
        formats={"sampling_frequency": "g"},
    )
    write_json(
        dataset.path("meg", "channels.json", acq),
        {
            "noise_floor": {
                "LongName": "white-noise floor",
                "Description": "Amplitude spectral density of the channel's simulated white "
                "sensor noise, in the channel's units per square root of hertz (T/sqrt(Hz) for "
                "magnetometers and OPMs, T/m/sqrt(Hz) for planar gradiometers).",
            },
        },
    )
    write_events(
        dataset.path("meg", "events.tsv", acq),
        [
            EventRow(e.onset, e.duration, e.trial_type, codes[e.trial_type])
            for e in ctx.protocol.events()
        ],
    )
    write_json(
        dataset.path("meg", "events.json", acq),
        events_sidecar(
            ctx.protocol.conditions,
            codes=codes,
            value_description=f"trigger code on the {STIM_CHANNEL} channel of the FIF file",
        ),
    )


register_device(
    "meg",
    validate=validate,
    simulate=simulate,
    write=write,
    order=30,
    description="MEG system: SQUID helmet (306 or 275 channels) or OPM array (FIF via MNE-Python)",
)
