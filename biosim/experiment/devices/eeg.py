"""The EEG amplifier device (alone or inside the MRI scanner).

Region dipoles on the fsaverage cortex project through the head model's lead
field (exact multi-shell sphere, or the template head's BEM with the electrodes
placed on its scalp) to the montage's electrodes; the amplifier adds its noise,
mains, clock drift and quantisation (:class:`biosim.instruments.eeg.EEGAmplifier`).
When the experiment also has an MRI scanner the EEG is recorded inside it:
the gradient artifact of the scanner's actual EPI sequence (Faraday induction
in the lead loops), the ballistocardiogram and the scanner's slice/volume
triggers are added (:mod:`biosim.instruments.eeg_fmri`).  Output: BrainVision +
BIDS sidecars.

The session is simulated in time chunks (a few seconds each) into one float32
(channels x samples) array, so a long session at a high rate never holds
several copies of itself: sources, artifacts and amplifier are evaluated per
chunk, with the same values as in one piece.  The ground truth (clean signal,
artifacts) is kept at ``truth_sample_rate`` (default: ``sample_rate`` divided
by the smallest integer that brings it to 1 kHz or below), as every q-th sample
of the device's (no filter), so that ``recorded[:, ::q] - clean - gradient - bcg``
is exactly the amplifier's noise, mains and quantisation.

Rigid head motion does not change the EEG lead field: the electrodes are glued
to the scalp and move with the head (the motion-sensitive parts of an EEG in
the scanner are the gradient and ballistocardiogram artifacts).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import threading

import numpy as np

from ... import __version__
from ..._core.errors import ParameterError, SpecError
from ..._core.parallel import n_threads
from ...instruments.eeg import EEGAmplifier
from ...io.bids import (
    FSAVERAGE_LANDMARKS,
    BIDSDataset,
    EventRow,
    events_sidecar,
    write_coordsystem,
    write_electrodes,
    write_events,
    write_json,
    write_tsv,
)
from ...physics.electromag.sensors import EEGSensors
from ..keys import check_keys, instrument_errors, require, set_default
from ..subject import head_forward, region_dipoles, sphere_head
from . import DeviceContext, Recording, acq_label, register_device

DEFAULTS = dict(
    montage="standard_1020",
    reference="average",
    sample_rate=250.0,
    noise_density=50e-9,
    line_noise=0.0,
    line_frequency=50.0,
    clock_drift_ppm=0.0,
    bit_depth=24,
)
KEYS = set(DEFAULTS) | {"type", "channels", "range", "truth_sample_rate"}
#: Amplifier argument -> TOML key, where they differ.
_KEY_OF = {"range_v": "range"}


def build_amplifier(eeg: dict, seed: int = 0) -> EEGAmplifier:
    """The amplifier of a validated ``[devices.<key>]`` table."""
    return EEGAmplifier(
        sample_rate=eeg["sample_rate"],
        noise_density=eeg["noise_density"],
        line_noise=eeg["line_noise"],
        line_frequency=eeg["line_frequency"],
        clock_drift_ppm=eeg["clock_drift_ppm"],
        bit_depth=eeg["bit_depth"],
        range_v=eeg["range"],
        seed=seed,
    )


def build_electrodes(eeg: dict, spec: dict) -> EEGSensors:
    """The montage's electrodes as placed on the subject: as given for the sphere
    head, projected onto the scalp for the template head."""
    from ...physics.electromag.montage import standard_montage

    montage = standard_montage(
        eeg["montage"], reference=eeg["reference"], channels=eeg.get("channels")
    )
    if spec["subject"]["head"] not in ("template", "fem"):
        return montage
    from ...geometry.template_head import project_to_scalp

    return EEGSensors(
        montage.names,
        project_to_scalp(montage.positions, spec["subject"]["bem_vertices"]),
        montage.reference,
    )


def validate(eeg: dict, spec: dict, where: str):
    """Defaults and types here; the montage and the amplifier check their own limits."""
    from ...physics.electromag.montage import standard_montage

    check_keys(eeg, KEYS, where)
    for k, v in DEFAULTS.items():
        eeg.setdefault(k, v)
    require(eeg, "montage", where, str)
    require(eeg, "reference", where, str)
    if "channels" in eeg:
        require(
            eeg,
            "channels",
            where,
            list,
            lambda v: len(v) >= 2 and all(isinstance(c, str) for c in v),
            "a list of at least two channel names",
        )
    try:
        standard_montage(eeg["montage"], reference=eeg["reference"], channels=eeg.get("channels"))
    except ParameterError as err:
        raise SpecError(f"{where}: {err}") from err
    for key in ("sample_rate", "noise_density", "line_noise", "line_frequency", "clock_drift_ppm"):
        require(eeg, key, where, float)
    require(
        eeg,
        "clock_drift_ppm",
        where,
        float,
        lambda v: abs(v) < 1000,
        "a clock error within +-1000 ppm",
    )
    require(eeg, "bit_depth", where, int)
    set_default(eeg, "range", where, 0.4, float)
    with instrument_errors(where, eeg, _KEY_OF):
        build_amplifier(eeg)
    check_truth_rate(eeg, where)


def check_truth_rate(table: dict, where: str) -> None:
    """``truth_sample_rate``, when given, must be ``sample_rate`` divided by an integer
    (it is not filled in: its default follows ``sample_rate``, see :func:`truth_decimation`)."""
    if "truth_sample_rate" not in table:
        return
    fs = table["sample_rate"]
    require(
        table,
        "truth_sample_rate",
        where,
        float,
        lambda v: 0 < v <= fs and abs(fs / v - round(fs / v)) < 1e-6 * fs / v,
        f"a rate that divides sample_rate = {fs:g} Hz by an integer",
    )


#: Highest default rate of the ground truth arrays, Hz.
TRUTH_RATE = 1000.0


def truth_decimation(table: dict) -> int:
    """q: the truth keeps every q-th sample, ``sample_rate / truth_sample_rate``; by
    default the smallest q that brings the truth to :data:`TRUTH_RATE` or below."""
    fs = float(table["sample_rate"])
    if "truth_sample_rate" in table:
        return int(round(fs / float(table["truth_sample_rate"])))
    return max(1, int(np.ceil(fs / TRUTH_RATE - 1e-9)))


def map_chunks(fn, starts) -> None:
    """Run ``fn(start)`` for every chunk, on up to :data:`CHUNK_WORKERS` threads (NumPy
    releases the GIL; each chunk writes its own columns, so the result does not
    depend on the order)."""
    starts = list(starts)
    workers = min(CHUNK_WORKERS, len(starts))
    if workers <= 1:
        for a in starts:
            fn(a)
        return
    try:  # one BLAS thread per chunk thread: nested BLAS threads oversubscribe the CPUs
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scipy's stack
        limits = contextlib.nullcontext()
    with limits, concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(fn, a) for a in starts]:
            future.result()


#: Threads that simulate chunks at once (at most 4; ``BIOSIM_NUM_THREADS`` caps it).
CHUNK_WORKERS = min(4, n_threads())


def chunk_length(q: int, block: int, width: int, budget: float = 8e6) -> int:
    """Samples per simulated chunk: a multiple of the truth decimation ``q`` and of
    the amplifier's noise ``block``, holding a (samples x ``width``) float64 array
    within about ``budget`` bytes."""
    unit = int(np.lcm(int(q), int(block)))
    return unit * max(1, int(budget // (8 * max(width, 1) * unit)))


@dataclasses.dataclass(frozen=True)
class ScannerArtifacts:
    """What the MRI scanner added to an EEG recorded inside it (V, s).

    ``gradient`` and ``bcg`` are at the recording's ``truth_times``.
    """

    gradient: np.ndarray  # (n_channels, n_truth_times)
    bcg: np.ndarray  # (n_channels, n_truth_times)
    r_peaks: np.ndarray  # cardiac R peaks, true time
    slice_times: np.ndarray  # slice acquisition starts, scanner clock
    slices_per_volume: int


@dataclasses.dataclass(frozen=True)
class EEGRecording(Recording):
    """What the EEG amplifier recorded, and the truth behind it.

    Attributes
    ----------
    amplifier : EEGAmplifier
    electrodes : EEGSensors
        Names, positions (m) as placed on the head, reference.
    data : float32 array (n_channels, n_times)
        Recorded potentials, V (noise, artifacts, quantisation).
    times : array (n_times,)
        Sample times, s (true time; the amplifier's clock may drift).
    leadfield : array (n_channels, n_regions)
        Referenced lead field of the region dipoles, V / (A m).
    clean : float32 array (n_channels, n_truth_times)
        Noise-free, artifact-free potentials at ``truth_times``, V.
    dipole_positions, dipole_orientations : array (n_regions, 3)
    events : list of EventRow
        Markers on the amplifier's clock: blocks, and slice/volume triggers in the scanner.
    artifacts : ScannerArtifacts or None
        Set when recorded inside the MRI scanner.
    truth_times : array (n_truth_times,) or None
        ``times[::q]`` (``truth_sample_rate``); None: ``times``.
    """

    amplifier: EEGAmplifier
    electrodes: EEGSensors
    data: np.ndarray
    times: np.ndarray
    leadfield: np.ndarray
    clean: np.ndarray
    dipole_positions: np.ndarray
    dipole_orientations: np.ndarray
    events: list
    artifacts: ScannerArtifacts | None = None
    truth_times: np.ndarray | None = None

    @property
    def sample_rate(self) -> float:
        return self.amplifier.sample_rate

    @property
    def clean_times(self) -> np.ndarray:
        """Time axis of ``clean`` and the artifacts, s."""
        return self.times if self.truth_times is None else self.truth_times

    @property
    def in_scanner(self) -> bool:
        return self.artifacts is not None

    def truth_arrays(self, key: str) -> dict[str, np.ndarray]:
        out = {
            f"{key}_times": self.clean_times,
            f"{key}_leadfield": self.leadfield,
            f"{key}_clean": self.clean,
            f"{key}_sensor_positions": self.electrodes.positions,
            "dipole_positions": self.dipole_positions,
            "dipole_orientations": self.dipole_orientations,
        }
        if self.artifacts is not None:
            out.update(
                {
                    f"{key}_gradient_artifact": self.artifacts.gradient,
                    f"{key}_bcg_artifact": self.artifacts.bcg,
                    "r_peaks": self.artifacts.r_peaks,
                    "mri_slice_times": self.artifacts.slice_times,
                }
            )
        return out


def _scanner_model(ctx: DeviceContext, electrodes: EEGSensors, sample_interval: float):
    """The scanner's artifact generators: (gradient(t), bcg(t), r_peaks, slice_times,
    slices per volume, field strength); each generator takes a chunk of sample times."""
    from ...instruments.eeg_fmri import (
        EPIGradients,
        bcg_artifact,
        gradient_artifact,
        lead_loops,
    )
    from .mri import MRIRecording

    mri = next(r for r in ctx.simulation.recordings.values() if isinstance(r, MRIRecording))
    seq = mri.sequence
    duration = ctx.protocol.duration
    slice_period = seq.tr / seq.n_slices
    n_slices_total = int(round(duration / slice_period))
    loops = lead_loops(electrodes.n_channels, seed=ctx.new_seed())
    train = EPIGradients.for_sequence(seq)
    r_peaks = ctx.simulation.physiology.r_peaks  # the heartbeat the fMRI's cardiac noise follows
    bcg_seed = ctx.new_seed()

    def gradient(t, out):
        return gradient_artifact(
            electrodes.positions,
            loops,
            train,
            slice_period,
            n_slices_total,
            t,
            sample_interval=sample_interval,
            out=out,
        )

    def bcg(t, out):
        return bcg_artifact(loops, mri.field_strength, r_peaks, t, seed=bcg_seed, out=out)

    slice_times = np.arange(n_slices_total) * slice_period
    return gradient, bcg, r_peaks, slice_times, seq.n_slices


def eeg_leadfield(eeg: dict, spec: dict, electrodes: EEGSensors):
    """Referenced lead field (C, R) of the region dipoles, V/(A m), with the dipoles'
    positions and orientations."""
    from ...physics.electromag import eeg_gain

    pos, ori = region_dipoles(spec)
    if spec["subject"]["head"] in ("template", "fem"):  # BEM or FEM, template head
        g = np.asarray(head_forward(spec, eeg=electrodes).eeg_gain(pos))  # referenced (C, R, 3)
        lead = np.einsum("csk,sk->cs", g, ori)
    else:  # exact sphere series
        head, _, _ = sphere_head(spec)
        g = np.asarray(eeg_gain(head, electrodes.positions, pos))  # (C, R, 3)
        lead = electrodes.reference_matrix() @ np.einsum("csk,sk->cs", g, ori)  # V/(A m)
    return lead, pos, ori


def simulate(ctx: DeviceContext) -> EEGRecording:
    """Lead field x source moments, scanner artifacts when in the MRI, then the
    amplifier: chunk by chunk into one float32 array (see the module docstring)."""
    from .mri import MRIRecording

    eeg, spec, key = ctx.table, ctx.spec, ctx.key
    electrodes = build_electrodes(eeg, spec)
    amp = build_amplifier(eeg, seed=ctx.new_seed())
    lead, pos, ori = eeg_leadfield(eeg, spec, electrodes)
    times = amp.sample_times(ctx.protocol.duration)
    sample_interval = 1 / (amp.sample_rate * (1 + amp.clock_drift_ppm * 1e-6))
    sources = ctx.simulation.sources
    events = [(b.onset, b.condition) for b in ctx.protocol.blocks]
    in_scanner = any(isinstance(r, MRIRecording) for r in ctx.simulation.recordings.values())
    if in_scanner:
        gradient, bcg, r_peaks, slice_times, per_volume = _scanner_model(
            ctx, electrodes, sample_interval
        )
        events += [(ts, "slice") for ts in slice_times]
        events += [(ts, "volume") for ts in slice_times[::per_volume]]
    n_ch, n_t = lead.shape[0], len(times)
    q = truth_decimation(eeg)
    n_truth = -(-n_t // q)
    data = np.empty((n_ch, n_t), np.float32)
    clean = np.empty((n_ch, n_truth), np.float32)
    grad_truth = np.empty((n_ch, n_truth), np.float32) if in_scanner else None
    bcg_truth = np.empty((n_ch, n_truth), np.float32) if in_scanner else None
    step = chunk_length(q, amp.NOISE_BLOCK, max(n_ch, lead.shape[1]))
    local = threading.local()  # each worker's buffers, reused by its chunks

    def one_chunk(a):
        b = min(a + step, n_t)
        if not hasattr(local, "total"):
            local.total = np.empty((n_ch, min(step, n_t)))
            local.work = np.empty_like(local.total) if in_scanner else None
        t = times[a:b]
        total, tq = local.total[:, : b - a], slice(a // q, -(-b // q))
        total[...] = sources.project(lead, t)  # (C, chunk) V
        clean[:, tq] = total[:, ::q]
        if in_scanner:
            work = gradient(t, local.work[:, : b - a])
            grad_truth[:, tq] = work[:, ::q]
            total += work
            work = bcg(t, work)
            bcg_truth[:, tq] = work[:, ::q]
            total += work
        data[:, a:b] = amp.record(total, electrodes.names, start=a, out=total)

    with instrument_errors(f"devices.{key}", eeg, _KEY_OF):
        map_chunks(one_chunk, range(0, n_t, step))
    artifacts = None
    if in_scanner:
        artifacts = ScannerArtifacts(grad_truth, bcg_truth, r_peaks, slice_times, per_volume)
    drift = 1 + amp.clock_drift_ppm * 1e-6  # markers stamped on the amplifier's clock
    markers = [EventRow(t * drift, 0.0, d) for t, d in events]
    return EEGRecording(
        amp,
        electrodes,
        data,
        times,
        lead,
        clean,
        pos,
        ori,
        markers,
        artifacts,
        times[::q] if q > 1 else None,
    )


def _event_rows(rec: EEGRecording, ctx: DeviceContext) -> list[EventRow]:
    """``events.tsv`` rows on the amplifier's clock (as the BrainVision markers): the
    protocol's blocks with their durations, and the scanner's slice and volume triggers."""
    drift = 1 + rec.amplifier.clock_drift_ppm * 1e-6
    rows = [
        EventRow(e.onset * drift, e.duration * drift, e.trial_type) for e in ctx.protocol.events()
    ]
    rows += [e for e in rec.events if e.trial_type in ("slice", "volume")]
    return rows


def write(rec: EEGRecording, ctx: DeviceContext, dataset: BIDSDataset):
    """BrainVision data and markers, sidecar, channels, electrodes, coordinate system, events."""
    from ...io.brainvision import write_brainvision

    eeg, acq = ctx.table, acq_label(ctx.key, "eeg")
    names = rec.electrodes.names
    write_brainvision(
        dataset.path("eeg", "eeg.vhdr", acq),
        rec.data,
        rec.sample_rate,
        names,
        [(e.onset, e.trial_type) for e in rec.events],
    )
    in_scanner = rec.artifacts is not None
    write_json(
        dataset.path("eeg", "eeg.json", acq),
        {
            "TaskName": dataset.task,
            "TaskDescription": f"simulated experiment {ctx.spec['experiment']['name']!r} "
            f"(conditions: {', '.join(ctx.protocol.conditions)})",
            "SamplingFrequency": rec.sample_rate,
            "EEGReference": eeg["reference"],
            "EEGGround": "n/a",
            "PowerLineFrequency": rec.amplifier.line_frequency,
            "SoftwareFilters": "n/a",
            "HardwareFilters": "n/a",
            "EEGChannelCount": len(names),
            "ECGChannelCount": 0,
            "EMGChannelCount": 0,
            "EOGChannelCount": 0,
            "MISCChannelCount": 0,
            "TriggerChannelCount": 0,
            "RecordingType": "continuous",
            "RecordingDuration": float(len(rec.times) / rec.sample_rate),
            "EEGPlacementScheme": eeg["montage"],
            "CapManufacturer": "n/a",
            "CapManufacturersModelName": "n/a",
            "Manufacturer": "biosim",
            "ManufacturersModelName": "virtual EEG amplifier",
            "SoftwareVersions": f"biosim {__version__}",
            "SubjectArtefactDescription": (
                "MR gradient artifact and ballistocardiogram (recorded in the MRI scanner)"
                if in_scanner
                else "n/a"
            ),
        },
    )
    write_tsv(
        dataset.path("eeg", "channels.tsv", acq),
        {"name": list(names), "type": ["EEG"] * len(names), "units": ["uV"] * len(names)},
    )
    write_electrodes(dataset.subject_path("eeg", "electrodes.tsv"), names, rec.electrodes.positions)
    write_coordsystem(
        dataset.subject_path("eeg", "coordsystem.json"),
        "EEG",
        "fsaverage",
        "m",
        "fsaverage MRI (FreeSurfer surface RAS) frame, the frame of the cortex and template head",
        FSAVERAGE_LANDMARKS,
    )
    write_events(dataset.path("eeg", "events.tsv", acq), _event_rows(rec, ctx))
    triggers = {}
    if in_scanner:
        triggers = {
            "slice": "MR scanner slice trigger (start of a slice acquisition)",
            "volume": "MR scanner volume trigger (start of a volume, its first slice)",
        }
    write_json(
        dataset.path("eeg", "events.json", acq),
        events_sidecar(ctx.protocol.conditions, triggers),
    )


register_device(
    "eeg",
    validate=validate,
    simulate=simulate,
    write=write,
    order=20,
    description="EEG amplifier (in the MRI scanner when the experiment has one): "
    "BrainVision + BIDS sidecars",
)
