"""Virtual devices of an experiment: a registry of device types.

A device type turns the simulated brain activity of an experiment into what an
instrument records (MRI scanner, EEG amplifier, MEG system) and writes it into
the subject's BIDS folder.  Each ``[devices.<key>]`` table of an experiment
names its type with ``type = "..."`` (default: the key itself), so one
experiment can hold several devices of a type, e.g. a SQUID and an OPM MEG::

    [devices.meg_squid]
    type = "meg"
    system = "squid306"

    [devices.meg_opm]
    type = "meg"
    system = "opm"

Stimulation devices (TMS, TES, focused ultrasound) plug in the same way:
:func:`register_device` with a ``validate`` and a ``run`` function.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from ..._core.errors import SpecError

__all__ = ["DeviceType", "DeviceContext", "register_device", "device_type", "device_types",
           "device_instances"]


@dataclasses.dataclass
class DeviceContext:
    """Everything a device's ``run`` receives.

    Attributes
    ----------
    key : str
        The device's key in ``[devices]`` (prefix of its ground-truth arrays).
    table : dict
        Its validated table.
    spec : dict
        The whole validated experiment.
    truth : dict
        Ground-truth arrays; the activity model filled ``times``,
        ``neural_input`` and ``source_activity``; devices add their own.
    rng : numpy.random.Generator
    sub_dir : Path
        The subject folder (``sub-<id>``) inside the dataset being written.
    stem : str
        ``sub-<id>_task-<name>``: the BIDS file-name stem.
    show_progress : bool
    outputs : dict
        What the device measured, for the analyses of ``[analysis]``
        (e.g. the MRI's region-mean signals), keyed by device key.
    """

    key: str
    table: dict
    spec: dict
    truth: dict
    rng: np.random.Generator
    sub_dir: Path
    stem: str
    show_progress: bool = False
    outputs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DeviceType:
    """A registered device type.

    Attributes
    ----------
    name : str
    description : str
    validate : callable (table, spec, where) -> None
        Fills defaults into ``table`` and raises SpecError naming ``where.key``.
    run : callable (DeviceContext) -> None
    order : int
        Devices run in increasing order (devices that record others' artifacts,
        like an EEG in the scanner, run after the scanner).
    """

    name: str
    description: str
    validate: Callable
    run: Callable
    order: int = 50


_REGISTRY: dict[str, DeviceType] = {}


def register_device(name: str, *, validate: Callable, run: Callable, description: str,
                    order: int = 50, replace: bool = False) -> DeviceType:
    """Register a device type under ``name`` (the ``type`` of a devices table)."""
    if not name.isidentifier():
        raise SpecError(f"device type name {name!r} is invalid: expected an identifier")
    if name in _REGISTRY and not replace:
        raise SpecError(f"device type {name!r} is already registered (pass replace=True)")
    dev = DeviceType(name, description, validate, run, order)
    _REGISTRY[name] = dev
    return dev


def device_types() -> dict[str, DeviceType]:
    """All registered device types by name."""
    return dict(_REGISTRY)


def device_type(name: str, where: str = "devices") -> DeviceType:
    """The device type ``name``; SpecError listing the known ones otherwise."""
    if name not in _REGISTRY:
        raise SpecError(f"{where}: {name!r} is not a known device type: expected one of "
                        f"{sorted(_REGISTRY)}")
    return _REGISTRY[name]


def device_instances(spec: dict, type_name: str | None = None) -> list[tuple[str, dict]]:
    """``(key, table)`` of the experiment's devices (of one type when given), in run order."""
    out = []
    for key, table in spec["devices"].items():
        t = table.get("type", key)
        if type_name is None or t == type_name:
            out.append((key, table))
    return sorted(out, key=lambda kv: (_REGISTRY[kv[1].get("type", kv[0])].order
                                       if kv[1].get("type", kv[0]) in _REGISTRY else 99))


from . import eeg as _eeg  # noqa: E402,F401  (registers the built-in devices)
from . import meg as _meg  # noqa: E402,F401
from . import mri as _mri  # noqa: E402,F401
