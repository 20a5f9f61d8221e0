"""Experiment specifications: loading a TOML file and validating it.

An experiment names a subject (head, cortex regions), brain activity (a model
driven by the protocol's conditions: :mod:`biosim.experiment.activity`), the
devices that observe it (:mod:`biosim.experiment.devices`) and the protocol.
:func:`load_experiment` reads a TOML file (or a shipped experiment by name, or
the built-in default) and :func:`validate_spec` checks it into a normalised
nested dict.  Every validation error is a :class:`~biosim.SpecError` naming the
key.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path

from .._core.atomic import atomic_write_text
from .._core.errors import SpecError
from .activity import validate_activity
from .analysis import validate_analysis
from .devices import device_instances, device_type
from .estimate import check_resources, check_sampling
from .keys import check_keys, require, set_default
from .subject import (
    FEM_CONDUCTIVITIES,
    FEM_EDGE_LENGTH_MM,
    validate_motion,
    validate_physiology,
    validate_subject_regions,
)

DEFAULT_EXPERIMENT = "eeg_fmri.toml"


# ----------------------------------------------------------------------------- loading
def shipped_dir():
    """The folder of the shipped experiments (a package resource)."""
    return resources.files("biosim.experiment") / "shipped"


def list_examples(copy_to: str | None = None, overwrite: bool = False) -> list[str]:
    """Names and one-line descriptions of the shipped experiments.

    Parameters
    ----------
    copy_to : path-like, optional
        Copy the experiments into this folder (created if needed).  Copies that
        are already there and identical are left as they are.
    overwrite : bool
        Replace copies in ``copy_to`` that differ from the shipped files (edited
        copies).  When False such a copy is an error and nothing is copied.

    Raises
    ------
    FileExistsError
        When ``copy_to`` holds a different file of the same name as a shipped
        experiment (naming them) and ``overwrite`` is False.
    """
    lines, texts = [], {}
    for entry in sorted(shipped_dir().iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".toml"):
            continue
        text = entry.read_text(encoding="utf-8")
        first = next(
            (ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), ""
        )
        lines.append(f"{entry.name}: {first}")
        texts[entry.name] = text
    if copy_to is None:
        return lines
    dest = Path(copy_to)
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"examples --copy {str(copy_to)!r}: it exists and is not a folder")
    differ = []
    for name, text in texts.items():
        target = dest / name
        if target.exists() and not target.is_file():
            raise FileExistsError(f"examples --copy: {str(target)!r} exists and is not a file")
        if target.exists() and target.read_bytes() != text.encode():
            differ.append(name)
    if differ and not overwrite:
        one = len(differ) == 1
        raise FileExistsError(
            f"examples --copy {str(copy_to)!r}: {', '.join(str(dest / n) for n in differ)} "
            + (
                "already exists and differs from the shipped experiment (an edited copy?)"
                if one
                else "already exist and differ from the shipped experiments (edited copies?)"
            )
            + "; nothing was copied. Pass overwrite (--overwrite) to replace "
            + ("it" if one else "them")
            + ", or copy into another folder"
        )
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name, text in texts.items():
        target = dest / name
        if target.is_file() and target.read_bytes() == text.encode():
            continue
        atomic_write_text(target, text)
        copied += 1
    lines.append(
        f"copied {copied} experiment(s) to {copy_to}"
        + (f" ({len(texts) - copied} already there)" if copied < len(texts) else "")
        + (f", replacing {', '.join(differ)}" if differ else "")
    )
    return lines


def load_experiment(path: str | Path | None = None) -> dict:
    """Read and validate an experiment.

    ``path``: a TOML file; or the name of a shipped experiment (``"meg_opm"``
    or ``"meg_opm.toml"``, see :func:`list_examples`); ``None``: the built-in
    default (a simultaneous EEG-fMRI experiment of a 3-region network).
    Relative file paths inside the spec resolve against the TOML's folder.
    """
    base = None
    if path is None:
        path = DEFAULT_EXPERIMENT
    p = Path(path)
    if p.is_file():
        text, source, base = p.read_text(encoding="utf-8"), str(p), p.resolve().parent
    else:
        shipped = shipped_dir() / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
        if p.parent != Path(".") or not shipped.is_file():
            names = [e.name for e in shipped_dir().iterdir() if e.name.endswith(".toml")]
            raise FileNotFoundError(
                f"experiment file {str(path)!r} does not exist (and is not "
                f"a shipped experiment: {sorted(names)})"
            )
        text, source = shipped.read_text(encoding="utf-8"), f"<built-in {shipped.name}>"
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: not valid TOML: {err}") from err
    if base is not None:
        spec["_source_dir"] = str(base)
    return validate_spec(spec, source)


def with_seed(spec: dict, seed: int) -> dict:
    """A copy of ``spec`` with ``experiment.seed`` replaced."""
    out = copy.deepcopy(spec)
    out["experiment"]["seed"] = int(seed)
    return out


def describe(spec: dict) -> str:
    """One-line summary of a validated spec."""
    e, s = spec["experiment"], spec["subject"]
    devices = ", ".join(sorted(spec["devices"]))
    return (
        f"experiment {e['name']!r}: {len(s['regions'])} regions, {e['duration']:g} s, "
        f"devices: {devices}"
    )


def validate_spec(spec: dict, source: str = "<spec>") -> dict:
    """Check types, ranges and cross-references; return a normalised copy.

    Raises
    ------
    SpecError
        Naming the key (``devices.mri.te``) and what was expected, or the keys
        that drive a memory estimate beyond what this machine has
        (:func:`~biosim.experiment.estimate.check_resources`).

    Warns
    -----
    AliasingWarning
        When a device samples slower than twice the rhythm or the mains frequency.
    """
    spec = copy.deepcopy(spec)
    for section in ("experiment", "subject", "activity", "protocol", "devices"):
        if not isinstance(spec.get(section), dict):
            raise SpecError(f"{source}: section [{section}] is missing")
    check_keys(
        spec,
        {"experiment", "subject", "activity", "protocol", "devices", "analysis", "_source_dir"},
        source,
    )
    exp, subj, prot, dev = (spec[k] for k in ("experiment", "subject", "protocol", "devices"))
    check_keys(exp, {"name", "seed", "duration"}, "experiment")
    check_keys(
        subj,
        {
            "id",
            "regions",
            "coordinates",
            "region_radius",
            "motion",
            "physiology",
            "voxel_size",
            "head",
            "bem_vertices",
            "bem_elements",
            "fem_edge_length",
            "relative_radii",
            "conductivities",
        },
        "subject",
    )
    check_keys(prot, {"blocks"}, "protocol")
    check_keys(
        spec["activity"],
        {
            "model",
            "dt",
            "hemodynamics",
            "drive",
            "dcm",
            "timecourses",
            "neural_mass",
            "network",
            "moment_per_input",
            "moment_per_mv",
            "carrier_hz",
            "rhythm_bandwidth",
        },
        "activity",
    )
    positive = lambda v: v > 0  # noqa: E731
    require(
        exp,
        "name",
        "experiment",
        str,
        lambda v: v.isidentifier(),
        "a name of letters, digits and underscores",
    )
    set_default(exp, "seed", "experiment", 0, int, lambda v: v >= 0, "a non-negative integer")
    duration = require(exp, "duration", "experiment", float, positive, "a positive duration in s")
    set_default(subj, "id", "subject", "01", str, lambda v: v.isalnum(), "letters and digits")
    validate_subject_regions(subj)
    validate_motion(spec)
    validate_physiology(subj)
    set_default(subj, "voxel_size", "subject", 3.0, float, positive, "a positive size in mm")
    head = set_default(
        subj,
        "head",
        "subject",
        "sphere",
        str,
        lambda v: v in ("sphere", "template", "fem"),
        "'sphere' (concentric shells fitted to the 10-20 montage, exact series), "
        "'template' (the fsaverage template head, symmetric BEM) or 'fem' (the template "
        "head as a tetrahedral mesh with WM, GM, CSF, bone and scalp, FEM)",
    )
    if head == "fem":
        set_default(
            subj,
            "fem_edge_length",
            "subject",
            FEM_EDGE_LENGTH_MM,
            float,
            lambda v: 4.0 <= v <= 20.0,
            "an FEM mesh edge length in [4, 20] mm",
        )
    elif "fem_edge_length" in subj:
        raise SpecError(
            f"subject.fem_edge_length = {subj['fem_edge_length']!r} is invalid: "
            "expected it only with subject.head = 'fem'"
        )
    set_default(
        subj,
        "bem_vertices",
        "subject",
        642,
        int,
        lambda v: v in (642, 2562),
        "642 or 2562 vertices per template-head surface",
    )
    set_default(
        subj,
        "bem_elements",
        "subject",
        "matched",
        str,
        lambda v: v in ("flat", "matched", "curved"),
        "'flat' (the mesh's flat triangles), 'matched' (flat triangles enclosing the smooth "
        "surface's volume) or 'curved' (curved elements through the same vertices)",
    )
    set_default(
        subj,
        "relative_radii",
        "subject",
        [0.87, 0.92, 1.0],
        list,
        lambda v: (
            len(v) >= 1
            and all(isinstance(x, (int, float)) for x in v)
            and list(v) == sorted(set(v))
            and v[-1] == 1.0
            and v[0] > 0
        ),
        "increasing relative shell radii ending with 1.0",
    )
    n_layers = {"sphere": len(subj["relative_radii"]), "template": 3, "fem": 5}[head]
    what = {
        "sphere": "shell",
        "template": "compartment (brain, skull, scalp)",
        "fem": "tissue (WM, GM, CSF, bone, scalp)",
    }[head]
    set_default(
        subj,
        "conductivities",
        "subject",
        list(FEM_CONDUCTIVITIES) if head == "fem" else [0.33, 0.0042, 0.33],
        list,
        lambda v: len(v) == n_layers and all(isinstance(x, (int, float)) and x > 0 for x in v),
        f"one positive conductivity (S/m) per {what}",
    )
    blocks = require(
        prot,
        "blocks",
        "protocol",
        list,
        lambda v: len(v) > 0,
        "a non-empty list of {onset, duration, condition}",
    )
    for i, b in enumerate(blocks):
        where = f"protocol.blocks[{i}]"
        if not isinstance(b, dict):
            raise SpecError(f"{where} = {b!r} is invalid: expected a table")
        check_keys(b, {"onset", "duration", "condition"}, where)
        onset = require(
            b,
            "onset",
            where,
            float,
            lambda v: 0 <= v < duration,
            f"an onset in [0, {duration:g}) s",
        )
        require(
            b,
            "duration",
            where,
            float,
            lambda v: v >= 0 and onset + v <= duration,
            f"a non-negative duration ending by {duration:g} s",
        )
        require(
            b,
            "condition",
            where,
            str,
            lambda v: v.isidentifier(),
            "a condition name (letters, digits, underscores)",
        )
    validate_activity(spec, {b["condition"] for b in blocks})
    act = spec["activity"]
    set_default(
        act,
        "moment_per_input",
        "activity",
        1e-6,
        float,
        positive,
        "a positive dipole moment per unit neural activity, A m s",
    )
    set_default(
        act,
        "carrier_hz",
        "activity",
        10.0,
        float,
        lambda v: 0 <= v < 200,
        "a rhythm frequency in [0, 200) Hz (0: no rhythm)",
    )
    set_default(
        act,
        "rhythm_bandwidth",
        "activity",
        1.0,
        float,
        lambda v: v >= 0,
        "a non-negative line width in Hz",
    )
    if not dev:
        raise SpecError(f"{source}: [devices] names no device")
    for key, table in dev.items():
        where = f"devices.{key}"
        if not isinstance(table, dict):
            raise SpecError(f"{where} = {table!r} is invalid: expected a table")
        if not key.isidentifier():
            raise SpecError(f"{where}: the device key must be an identifier")
        kind = set_default(table, "type", where, key, str)
        device_type(kind, where).validate(table, spec, where)
    if len(device_instances(spec, "mri")) > 1:
        raise SpecError("[devices] holds more than one MRI scanner: expected at most one")
    validate_analysis(spec)
    check_sampling(spec)  # AliasingWarning
    check_resources(spec)  # SpecError when the memory estimate exceeds what is available
    return spec
