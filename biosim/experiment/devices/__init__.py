"""Virtual devices of an experiment: a registry of device types.

A device type turns the simulated brain activity of an experiment into what an
instrument records (MRI scanner, EEG amplifier, MEG system) in three steps:

``validate(table, spec, where)``
    fills defaults into its ``[devices.<key>]`` table and builds its instrument
    objects, so every limit of the instrument is checked before anything runs
    (errors name the TOML key);
``simulate(ctx) -> Recording``
    simulates and records, returning a small typed recording;
``write(recording, ctx, dataset)``
    writes the recording's files through :mod:`biosim.io`.

Each ``[devices.<key>]`` table names its type with ``type = "..."`` (default:
the key itself), so one experiment can hold several devices of a type, e.g. a
SQUID and an OPM MEG::

    [devices.meg_squid]
    type = "meg"
    system = "squid306"

    [devices.meg_opm]
    type = "meg"
    system = "opm"

Stimulation devices plug in the same way, with :func:`register_device`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from ..._core.errors import SpecError
from ...geometry.motion import RigidMotion
from ..activity import Activity, SourceActivity, source_activity
from ..protocol import Protocol

__all__ = [
    "DeviceType",
    "DeviceContext",
    "Recording",
    "Simulation",
    "register_device",
    "device_type",
    "device_types",
    "device_instances",
    "acq_label",
]


class Recording:
    """Base of the typed recordings that devices return.

    A recording holds what the device measured and the ground truth that made
    it; :meth:`truth_arrays` names the arrays of the truth archive.
    """

    def truth_arrays(self, key: str) -> dict[str, np.ndarray]:
        """Ground-truth arrays of device ``key`` (shared names or ``<key>_<name>``)."""
        return {}


@dataclasses.dataclass
class Simulation:
    """The state of one run that every device sees.

    Attributes
    ----------
    spec : dict
        The validated experiment.
    protocol : Protocol
    activity : Activity
    rng : numpy.random.Generator
        Draws each device's seeds, in device order.
    show_progress : bool
    recordings : dict
        Recordings of the devices that already ran, by device key.
    motion : RigidMotion or None
        The subject's rigid head motion (head -> scanner/helmet frame), if any: the
        MEG's lead field follows it (the EEG's does not: the electrodes move with
        the head).
    """

    spec: dict
    protocol: Protocol
    activity: Activity
    rng: np.random.Generator
    show_progress: bool = False
    recordings: dict[str, Recording] = dataclasses.field(default_factory=dict)
    motion: RigidMotion | None = None

    @functools.cached_property
    def sources(self) -> SourceActivity:
        """Dipole moments of the regions, drawn once for every electrophysiology device
        (lazy: each device evaluates them at its own sample times, chunk by chunk)."""
        rates = [t["sample_rate"] for t in self.spec["devices"].values() if "sample_rate" in t]
        return source_activity(self.spec, self.activity, rates)

    @functools.cached_property
    def physiology(self):
        """The subject's heartbeat and breathing, drawn once for every device
        (:func:`biosim.experiment.subject.physiology`)."""
        from ..subject import physiology

        return physiology(self.spec)

    def drawn_sources(self) -> SourceActivity | None:
        """The sources if the activity model or a device produced them, else None."""
        return self.__dict__.get("sources", self.activity.sources)


@dataclasses.dataclass(frozen=True)
class DeviceContext:
    """What a device's ``simulate`` and ``write`` receive: its key, its
    validated table and the run's :class:`Simulation`."""

    key: str
    table: dict
    simulation: Simulation

    @property
    def spec(self) -> dict:
        return self.simulation.spec

    @property
    def protocol(self) -> Protocol:
        return self.simulation.protocol

    @property
    def activity(self) -> Activity:
        return self.simulation.activity

    @property
    def rng(self) -> np.random.Generator:
        return self.simulation.rng

    @property
    def show_progress(self) -> bool:
        return self.simulation.show_progress

    def new_seed(self) -> int:
        """A seed for one of this device's random generators."""
        return int(self.rng.integers(2**31))


@dataclasses.dataclass(frozen=True)
class DeviceType:
    """A registered device type.

    Attributes
    ----------
    name : str
    description : str
    validate : callable (table, spec, where) -> None
        Fills defaults into ``table``, builds the instrument and raises a
        SpecError naming ``where.key``.
    simulate : callable (DeviceContext) -> Recording
    write : callable (Recording, DeviceContext, BIDSDataset) -> None
    order : int
        Devices run in increasing order (devices that record others' artifacts,
        like an EEG in the scanner, run after the scanner).
    """

    name: str
    description: str
    validate: Callable
    simulate: Callable
    write: Callable
    order: int = 50


_REGISTRY: dict[str, DeviceType] = {}


def register_device(
    name: str,
    *,
    validate: Callable,
    simulate: Callable,
    write: Callable,
    description: str,
    order: int = 50,
    replace: bool = False,
) -> DeviceType:
    """Register a device type under ``name`` (the ``type`` of a devices table)."""
    if not name.isidentifier():
        raise SpecError(f"device type name {name!r} is invalid: expected an identifier")
    if name in _REGISTRY and not replace:
        raise SpecError(f"device type {name!r} is already registered (pass replace=True)")
    dev = DeviceType(name, description, validate, simulate, write, order)
    _REGISTRY[name] = dev
    return dev


def device_types() -> dict[str, DeviceType]:
    """All registered device types by name."""
    return dict(_REGISTRY)


def device_type(name: str, where: str = "devices") -> DeviceType:
    """The device type ``name``; SpecError listing the known ones otherwise."""
    if name not in _REGISTRY:
        raise SpecError(
            f"{where}: {name!r} is not a known device type: expected one of {sorted(_REGISTRY)}"
        )
    return _REGISTRY[name]


def device_instances(spec: dict, type_name: str | None = None) -> list[tuple[str, dict]]:
    """``(key, table)`` of the experiment's devices (of one type when given), in run order."""
    out = []
    for key, table in spec["devices"].items():
        t = table.get("type", key)
        if type_name is None or t == type_name:
            out.append((key, table))
    return sorted(
        out,
        key=lambda kv: (
            _REGISTRY[kv[1].get("type", kv[0])].order
            if kv[1].get("type", kv[0]) in _REGISTRY
            else 99
        ),
    )


def acq_label(key: str, type_name: str) -> str | None:
    """BIDS ``acq`` label telling apart devices of one type: none when the key is
    the type's name, else the key's letters and digits."""
    return None if key == type_name else "".join(ch for ch in key if ch.isalnum())


from . import eeg as _eeg  # noqa: E402,F401  (registers the built-in devices)
from . import meg as _meg  # noqa: E402,F401
from . import mri as _mri  # noqa: E402,F401
from . import ultrasound as _ultrasound  # noqa: E402,F401
