"""The ground-truth archive of a simulated experiment.

``truth.npz`` holds the arrays that made the data (activity, hemodynamic
states, lead fields, artifacts, ...); ``truth.json`` says what each array is,
with its units, and keeps the full specification that produced it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._core.atomic import atomic_path, atomic_write_text


def write_truth(
    folder: Path,
    arrays: Mapping[str, Any],
    descriptions: Mapping[str, str],
    extra: Mapping[str, Any],
) -> None:
    """Write ``truth.npz`` (compressed) and ``truth.json`` into ``folder``.

    Parameters
    ----------
    arrays : mapping
        Name to array.
    descriptions : mapping
        Name to a one-line description with units (arrays without one are listed
        without a description).
    extra : mapping
        Further JSON content (e.g. the regions and the specification).
    """
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    with atomic_path(folder / "truth.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    doc = {name: descriptions[name] for name in arrays if name in descriptions}
    atomic_write_text(
        folder / "truth.json", json.dumps({**extra, "arrays": doc}, indent=2, default=float) + "\n"
    )
