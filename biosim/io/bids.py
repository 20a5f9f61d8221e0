"""BIDS files of a dataset: paths, JSON sidecars, TSV tables, events,
coordinate systems and dataset descriptions (BIDS 1.9).

Every file is written atomically (:mod:`biosim._core.atomic`), so a failed
run never leaves a half-written file.  Devices of an experiment hand their
recordings to these writers instead of formatting files themselves.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._core.atomic import atomic_write_text

BIDS_VERSION = "1.9.0"


@dataclasses.dataclass(frozen=True)
class EventRow:
    """One row of an ``events.tsv``: onset and duration in s, and its trial type."""

    onset: float
    duration: float
    trial_type: str


@dataclasses.dataclass(frozen=True)
class BIDSDataset:
    """File names of one subject's recordings of one task inside a dataset folder.

    Parameters
    ----------
    root : Path
        The dataset folder.
    subject : str
        Subject label (letters and digits).
    task : str
        Task label.
    """

    root: Path
    subject: str
    task: str

    @property
    def subject_dir(self) -> Path:
        return self.root / f"sub-{self.subject}"

    def datatype_dir(self, datatype: str) -> Path:
        """``sub-<label>/<datatype>`` (``func``, ``eeg``, ``meg``), created on demand."""
        path = self.subject_dir / datatype
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, datatype: str, suffix: str, acq: str | None = None) -> Path:
        """``sub-<label>/<datatype>/sub-<label>_task-<task>[_acq-<acq>]_<suffix>``."""
        stem = f"sub-{self.subject}_task-{self.task}"
        if acq:
            stem += f"_acq-{acq}"
        return self.datatype_dir(datatype) / f"{stem}_{suffix}"

    def subject_path(self, datatype: str, suffix: str) -> Path:
        """``sub-<label>/<datatype>/sub-<label>_<suffix>`` (task-independent files)."""
        return self.datatype_dir(datatype) / f"sub-{self.subject}_{suffix}"


def write_json(path: Path, content: Mapping[str, Any]) -> Path:
    """A JSON file (indented, numpy scalars converted to floats)."""
    atomic_write_text(path, json.dumps(content, indent=2, default=float) + "\n")
    return path


def write_tsv(path: Path, columns: Mapping[str, Sequence], formats: Mapping[str, str] = {}) -> Path:
    """A tab-separated table, one column per key; ``formats`` gives a format spec
    per column (``".4f"``), others are written with ``str``."""
    names = list(columns)
    n = {len(v) for v in columns.values()}
    if len(n) > 1:
        raise ValueError(f"columns of {path.name} have different lengths {sorted(n)}")
    rows = ["\t".join(names)]
    for i in range(n.pop() if n else 0):
        rows.append("\t".join(format(columns[c][i], formats.get(c, "")) for c in names))
    atomic_write_text(path, "\n".join(rows) + "\n")
    return path


def write_events(path: Path, events: Sequence[EventRow]) -> Path:
    """``events.tsv``: onset, duration (s) and trial type, sorted by onset."""
    rows = sorted(events, key=lambda e: e.onset)
    return write_tsv(
        path,
        {
            "onset": [e.onset for e in rows],
            "duration": [e.duration for e in rows],
            "trial_type": [e.trial_type for e in rows],
        },
        formats={"onset": ".4f", "duration": ".4f"},
    )


def write_electrodes(path: Path, names: Sequence[str], positions_m: np.ndarray) -> Path:
    """``electrodes.tsv``: electrode names and positions in m."""
    pos = np.asarray(positions_m, float)
    return write_tsv(
        path,
        {"name": list(names), "x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2]},
        formats={"x": ".5f", "y": ".5f", "z": ".5f"},
    )


def write_coordsystem(path: Path, modality: str, system: str, units: str, description: str) -> Path:
    """``coordsystem.json`` of an EEG or MEG recording (``modality`` ``"EEG"``/``"MEG"``)."""
    return write_json(
        path,
        {
            f"{modality}CoordinateSystem": system,
            f"{modality}CoordinateUnits": units,
            f"{modality}CoordinateSystemDescription": description,
        },
    )


def write_dataset_description(
    root: Path, name: str, generated_by: Sequence[Mapping[str, str]], dataset_type: str = "raw"
) -> Path:
    """``dataset_description.json`` of a raw or derivative dataset."""
    return write_json(
        root / "dataset_description.json",
        {
            "Name": name,
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": dataset_type,
            "GeneratedBy": list(generated_by),
        },
    )
