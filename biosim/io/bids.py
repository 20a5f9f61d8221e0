"""BIDS files of a dataset: paths, JSON sidecars, TSV tables, events,
coordinate systems, dataset descriptions, README and derivative datasets
(BIDS 1.9).

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

from .. import __version__
from .._core.atomic import atomic_write_text
from .._core.errors import ParameterError

BIDS_VERSION = "1.9.0"
LICENSE = "CC0"
"""Licence of the simulated datasets (no personal data; public domain dedication)."""


def bids_label(name: str) -> str:
    """A BIDS label (letters and digits only) from a free name: ``"eeg_fmri"`` -> ``"eegfmri"``.

    Raises
    ------
    ParameterError
        When ``name`` holds no letter or digit.
    """
    label = "".join(ch for ch in str(name) if ch.isascii() and ch.isalnum())
    if not label:
        raise ParameterError("name", name, "a name with at least one ASCII letter or digit")
    return label


def generated_by(description: str | None = None) -> list[dict[str, str]]:
    """The ``GeneratedBy`` field of a dataset description: biosim and its version."""
    entry = {"Name": "biosim", "Version": __version__}
    if description:
        entry["Description"] = description
    return [entry]


@dataclasses.dataclass(frozen=True)
class EventRow:
    """One row of an ``events.tsv``: onset and duration in s, its trial type and,
    when the recording has a trigger channel, its trigger code."""

    onset: float
    duration: float
    trial_type: str
    value: int | None = None


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
    """``events.tsv``: onset, duration (s), trial type and, when any row has one,
    the trigger code (column ``value``, ``n/a`` where absent), sorted by onset."""
    rows = sorted(events, key=lambda e: e.onset)
    columns = {
        "onset": [e.onset for e in rows],
        "duration": [e.duration for e in rows],
        "trial_type": [e.trial_type for e in rows],
    }
    if any(e.value is not None for e in rows):
        columns["value"] = ["n/a" if e.value is None else str(e.value) for e in rows]
    return write_tsv(path, columns, formats={"onset": ".4f", "duration": ".4f"})


def events_sidecar(
    conditions: Sequence[str],
    trial_types: Mapping[str, str] | None = None,
    codes: Mapping[str, int] | None = None,
    value_description: str = "trigger code",
) -> dict[str, Any]:
    """Content of an ``events.json``: what the columns ``trial_type`` and ``value`` hold.

    Parameters
    ----------
    conditions : sequence of str
        The protocol's conditions (trial types of its blocks and events).
    trial_types : mapping, optional
        Further trial types (e.g. scanner triggers) -> description.
    codes : mapping, optional
        Trial type -> trigger code (column ``value``).
    value_description : str
        What the codes are (e.g. on which channel).
    """
    levels = {c: f"condition {c!r} of the protocol" for c in conditions}
    levels.update(trial_types or {})
    doc: dict[str, Any] = {
        "trial_type": {"LongName": "event type", "Description": "what happened", "Levels": levels},
        "StimulusPresentation": {
            "SoftwareName": "biosim",
            "SoftwareVersion": __version__,
            "Description": "no stimulus was shown: the protocol's conditions drive simulated "
            "neural activity",
        },
    }
    if codes:
        doc["value"] = {
            "Description": value_description,
            "Levels": {str(v): k for k, v in codes.items()},
        }
    return doc


def write_electrodes(path: Path, names: Sequence[str], positions_m: np.ndarray) -> Path:
    """``electrodes.tsv``: electrode names and positions in m."""
    pos = np.asarray(positions_m, float)
    return write_tsv(
        path,
        {"name": list(names), "x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2]},
        formats={"x": ".5f", "y": ".5f", "z": ".5f"},
    )


FSAVERAGE_LANDMARKS = {
    "NAS": [0.00147, 0.08507, -0.03484],
    "LPA": [-0.08062, -0.02909, -0.04131],
    "RPA": [0.08436, -0.02850, -0.04128],
}
"""Anatomical landmarks of fsaverage (m, surface RAS): MNE-Python's
``fsaverage-fiducials.fif``."""


def write_coordsystem(
    path: Path,
    modality: str,
    system: str,
    units: str,
    description: str,
    landmarks: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """``coordsystem.json`` of an EEG or MEG recording (``modality`` ``"EEG"``/``"MEG"``).

    ``landmarks``: anatomical landmarks (``NAS``, ``LPA``, ``RPA``) in the same
    system and units.
    """
    doc: dict[str, Any] = {
        f"{modality}CoordinateSystem": system,
        f"{modality}CoordinateUnits": units,
        f"{modality}CoordinateSystemDescription": description,
    }
    if landmarks:
        doc.update(
            AnatomicalLandmarkCoordinates={k: list(v) for k, v in landmarks.items()},
            AnatomicalLandmarkCoordinateSystem=system,
            AnatomicalLandmarkCoordinateUnits=units,
            AnatomicalLandmarkCoordinateSystemDescription=description,
        )
    return write_json(path, doc)


def write_dataset_description(
    root: Path,
    name: str,
    generated_by: Sequence[Mapping[str, str]],
    dataset_type: str = "raw",
    **fields: Any,
) -> Path:
    """``dataset_description.json`` of a raw or derivative dataset.

    ``fields``: further keys (``License``, ``Authors``, ``SourceDatasets``, ...).
    """
    if dataset_type not in ("raw", "derivative"):
        raise ParameterError("dataset_type", dataset_type, "'raw' or 'derivative'")
    root.mkdir(parents=True, exist_ok=True)
    return write_json(
        root / "dataset_description.json",
        {
            "Name": name,
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": dataset_type,
            "License": LICENSE,
            "GeneratedBy": list(generated_by),
            **fields,
        },
    )


def write_readme(root: Path, text: str) -> Path:
    """The dataset's ``README`` (plain text)."""
    atomic_write_text(root / "README", text.rstrip() + "\n")
    return root / "README"


def add_bidsignore(root: Path, *patterns: str) -> Path:
    """Add ``patterns`` (glob lines) to the dataset's ``.bidsignore``, once each."""
    path = root / ".bidsignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    lines += [p for p in patterns if p not in lines]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def derivative_dataset(
    raw_root: Path, pipeline: str, name: str, description: str, ignore: Sequence[str] = ()
) -> Path:
    """``<raw_root>/derivatives/<pipeline>/``, a derivative dataset of the raw one.

    Writes its ``dataset_description.json`` (DatasetType "derivative", GeneratedBy
    biosim and its version, the raw dataset as source) and, for files outside
    the BIDS derivatives naming (``ignore``, glob lines), a ``.bidsignore``.

    Returns
    -------
    Path
        The derivative dataset's folder.
    """
    folder = raw_root / "derivatives" / pipeline
    write_dataset_description(
        folder,
        name,
        generated_by(description),
        "derivative",
        SourceDatasets=[{"URL": "../../"}],
    )
    if ignore:
        add_bidsignore(folder, *ignore)
    return folder
