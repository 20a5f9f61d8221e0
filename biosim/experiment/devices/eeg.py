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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ... import __version__
from ..._core.errors import ParameterError, SpecError
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
from ..subject import region_dipoles, sphere_head, template_bem
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
KEYS = set(DEFAULTS) | {"type", "channels", "range"}
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
    if spec["subject"]["head"] != "template":
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


@dataclasses.dataclass(frozen=True)
class ScannerArtifacts:
    """What the MRI scanner added to an EEG recorded inside it (V, s)."""

    gradient: np.ndarray  # (n_channels, n_times)
    bcg: np.ndarray  # (n_channels, n_times)
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
    data : array (n_channels, n_times)
        Recorded potentials, V (noise, artifacts, quantisation).
    times : array (n_times,)
        Sample times, s (true time; the amplifier's clock may drift).
    moments : array (n_times, n_regions)
        Dipole moments at those samples, A m.
    leadfield : array (n_channels, n_regions)
        Referenced lead field of the region dipoles, V / (A m).
    clean : array (n_channels, n_times)
        Noise-free, artifact-free potentials, V.
    dipole_positions, dipole_orientations : array (n_regions, 3)
    events : list of EventRow
        Markers on the amplifier's clock: blocks, and slice/volume triggers in the scanner.
    artifacts : ScannerArtifacts or None
        Set when recorded inside the MRI scanner.
    """

    amplifier: EEGAmplifier
    electrodes: EEGSensors
    data: np.ndarray
    times: np.ndarray
    moments: np.ndarray
    leadfield: np.ndarray
    clean: np.ndarray
    dipole_positions: np.ndarray
    dipole_orientations: np.ndarray
    events: list
    artifacts: ScannerArtifacts | None = None

    @property
    def sample_rate(self) -> float:
        return self.amplifier.sample_rate

    @property
    def in_scanner(self) -> bool:
        return self.artifacts is not None

    def truth_arrays(self, key: str) -> dict[str, np.ndarray]:
        out = {
            f"{key}_times": self.times,
            f"{key}_moments": self.moments,
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


def _scanner_artifacts(ctx: DeviceContext, electrodes: EEGSensors, times: np.ndarray):
    """Gradient artifact of the scanner's EPI sequence, BCG and slice times."""
    from ...instruments.eeg_fmri import (
        EPIGradients,
        bcg_artifact,
        cardiac_r_peaks,
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
    grad = gradient_artifact(
        electrodes.positions,
        loops,
        EPIGradients.for_sequence(seq),
        slice_period,
        n_slices_total,
        times,
    )
    r_peaks = cardiac_r_peaks(duration, seed=ctx.new_seed())
    bcg = bcg_artifact(loops, mri.field_strength, r_peaks, times, seed=ctx.new_seed())
    slice_times = np.arange(n_slices_total) * slice_period
    return ScannerArtifacts(grad, bcg, r_peaks, slice_times, seq.n_slices)


def simulate(ctx: DeviceContext) -> EEGRecording:
    """Lead field x source moments, scanner artifacts when in the MRI, then the amplifier."""
    from ...physics.electromag import eeg_gain
    from .mri import MRIRecording

    eeg, spec, key = ctx.table, ctx.spec, ctx.key
    electrodes = build_electrodes(eeg, spec)
    amp = build_amplifier(eeg, seed=ctx.new_seed())
    pos, ori = region_dipoles(spec)
    if spec["subject"]["head"] == "template":  # BEM, template head
        g = np.asarray(template_bem(spec, eeg=electrodes).eeg_gain(pos))  # referenced (C, R, 3)
        lead = np.einsum("csk,sk->cs", g, ori)
    else:  # exact sphere series
        head, _, _ = sphere_head(spec)
        g = np.asarray(eeg_gain(head, electrodes.positions, pos))  # (C, R, 3)
        lead = electrodes.reference_matrix() @ np.einsum("csk,sk->cs", g, ori)  # V/(A m)
    times = amp.sample_times(ctx.protocol.duration)
    moments = ctx.simulation.sources.at(times)  # (T, R) A m
    clean = lead @ moments.T  # (C, T) V
    total = clean
    events = [(b.onset, b.condition) for b in ctx.protocol.blocks]
    artifacts = None
    if any(isinstance(r, MRIRecording) for r in ctx.simulation.recordings.values()):
        artifacts = _scanner_artifacts(ctx, electrodes, times)
        total = clean + artifacts.gradient + artifacts.bcg
        events += [(ts, "slice") for ts in artifacts.slice_times]
        events += [(ts, "volume") for ts in artifacts.slice_times[:: artifacts.slices_per_volume]]
    with instrument_errors(f"devices.{key}", eeg, _KEY_OF):
        data = amp.record(total, electrodes.names)
    drift = 1 + amp.clock_drift_ppm * 1e-6  # markers stamped on the amplifier's clock
    markers = [EventRow(t * drift, 0.0, d) for t, d in events]
    return EEGRecording(
        amp, electrodes, data, times, moments, lead, clean, pos, ori, markers, artifacts
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
