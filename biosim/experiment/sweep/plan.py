"""Planning a sweep: which runs, with which specs, under which ids.

:func:`expand_sweep` turns a validated experiment and a set of changes (seeds,
a grid of values for dotted keys, lists of values that change together) into
:class:`SweepRun` records, each with its full validated spec, a hash of it and
a stable readable id (``seed-2_devices.mri.te-0.02``; a list index
``blocks[1]`` reads ``blocks.1``).  Ids do not depend on a run's position, so
extending a sweep keeps the runs already done; characters outside
``[A-Za-z0-9._,+-]`` become ``_``, long values are cut, and an id that lost
information that way ends in a short hash of its changes.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..._core.errors import SpecError
from .. import spec as _spec

_SAFE = re.compile(r"[^A-Za-z0-9._,+-]")
_MAX_VALUE_CHARS = 40
_MAX_ID_CHARS = 150
_LABELS = {"subject.id": "sub", "experiment.seed": "seed"}
_PART_RE = re.compile(r"^([^.\[\]]+)((?:\[\d+\])*)$")


# ----------------------------------------------------------------------------- spec keys
def _parse_key(key: str) -> list[str | int]:
    """``"protocol.blocks[0].onset"`` -> ``["protocol", "blocks", 0, "onset"]``."""
    if not isinstance(key, str) or not key:
        raise SpecError(
            f"sweep key {key!r} is invalid: expected a dotted key such as 'devices.mri.te'"
        )
    tokens: list[str | int] = []
    for part in key.split("."):
        match = _PART_RE.match(part)
        if match is None:
            raise SpecError(
                f"sweep key {key!r} is invalid: expected a dotted key such as "
                "'devices.mri.te' or 'protocol.blocks[0].onset'"
            )
        tokens.append(match.group(1))
        tokens.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    return tokens


def _set_key(spec: dict, key: str, value: Any) -> None:
    """Set ``key`` in ``spec`` in place; the key must already exist (no silent typos)."""
    tokens = _parse_key(key)
    node: Any = spec
    where = ""
    for i, tok in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(tok, int):
            if not isinstance(node, list) or not 0 <= tok < len(node):
                size = len(node) if isinstance(node, list) else "no"
                raise SpecError(
                    f"{key} is not a key of the experiment: {where or 'the spec'} "
                    f"has {size} entries, expected an index below it"
                )
            where = f"{where}[{tok}]"
        else:
            if not isinstance(node, dict) or tok not in node:
                known = sorted(node) if isinstance(node, dict) else []
                raise SpecError(
                    f"{key} is not a key of the experiment: expected one of "
                    f"{[f'{where}.{k}'.lstrip('.') for k in known]}"
                )
            where = f"{where}.{tok}".lstrip(".")
        if last:
            node[tok] = copy.deepcopy(value)
        else:
            node = node[tok]


def apply_overrides(spec: dict, overrides: Mapping[str, Any], source: str = "<spec>") -> dict:
    """A validated copy of ``spec`` with dotted keys replaced.

    Parameters
    ----------
    spec : dict
        An experiment spec (from :func:`biosim.experiment.load_experiment`).
    overrides : mapping
        ``{"devices.mri.te": 0.02, "activity.drive.visual": [0.1, 0.1, 0.0],
        "protocol.blocks[0].onset": 10.0}``.  Every key must already exist in
        ``spec`` (after defaults are filled in), so a misspelt key is an error
        rather than a silently ignored setting.
    source : str
        Named in error messages.

    Raises
    ------
    SpecError
        For an unknown key or a value that fails validation, naming both.
    """
    out = _spec.validate_spec(spec, source)
    for key, value in overrides.items():
        _set_key(out, key, value)
    return _spec.validate_spec(out, source)


def _canonical(obj: Any) -> Any:
    # ints become floats for hashing so that 0 and 0.0 (same physics) hash alike
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, int) and abs(obj) < 2**53:
        return float(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def spec_hash(spec: dict) -> str:
    """A 12-hex-digit SHA-256 fingerprint of a validated spec (key order and
    ``0`` vs ``0.0`` do not matter)."""
    text = json.dumps(_canonical(spec), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# ----------------------------------------------------------------------------- expansion
@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its id, its changes to the base spec and the full spec."""

    run_id: str
    seed: int
    overrides: dict
    spec: dict
    spec_hash: str


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_format_value(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_format_value(v)}" for k, v in value.items())
    return str(value)


def run_id_for(seed: int, overrides: dict) -> str:
    """The readable, position-independent id of the run with ``seed`` and ``overrides``."""
    parts, lossy = [], False
    if "subject.id" in overrides:
        parts.append(("sub", overrides["subject.id"]))
    parts.append(("seed", seed))
    parts += [(k, v) for k, v in overrides.items() if k not in _LABELS]
    pieces = []
    for label, value in parts:
        text = _format_value(value)
        safe = _SAFE.sub("_", text)
        if len(safe) > _MAX_VALUE_CHARS:
            safe = safe[:_MAX_VALUE_CHARS]
        lossy |= safe != text
        plain = re.sub(r"\[(\d+)\]", r".\1", label)  # blocks[1] -> blocks.1
        key = _SAFE.sub("_", plain)
        lossy |= key != plain
        pieces.append(f"{key}-{safe}")
    run_id = "_".join(pieces)
    if len(run_id) > _MAX_ID_CHARS:
        run_id, lossy = run_id[:_MAX_ID_CHARS], True
    if lossy:
        digest = hashlib.sha256(
            json.dumps(_canonical({"seed": seed, **overrides}), sort_keys=True).encode()
        ).hexdigest()[:8]
        run_id = f"{run_id}_h{digest}"
    return run_id


def _axes(seeds, grid) -> list[tuple[tuple[str, ...], list[tuple]]]:
    """Normalise ``grid`` (plus ``seeds``) to a list of (keys, list of value tuples)."""
    axes: list[tuple[tuple[str, ...], list[tuple]]] = []
    seen: set[str] = set()
    for keys, values in (grid or {}).items():
        zipped = isinstance(keys, tuple)
        keys = tuple(keys) if zipped else (keys,)
        for k in keys:
            _parse_key(k)
            if k in seen:
                raise SpecError(f"sweep key {k!r} appears twice in the grid")
            seen.add(k)
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise SpecError(
                f"grid[{keys[0] if not zipped else keys!r}] = {values!r} is invalid: "
                "expected a list of values"
            )
        values = list(values)
        if not values:
            raise SpecError(
                f"grid[{keys[0] if not zipped else keys!r}] is empty: expected at least one value"
            )
        if zipped:
            for v in values:
                if not isinstance(v, (tuple, list)) or len(v) != len(keys):
                    raise SpecError(
                        f"grid[{keys!r}] entry {v!r} is invalid: expected "
                        f"{len(keys)} values changed together"
                    )
            values = [tuple(v) for v in values]
        else:
            values = [(v,) for v in values]
        axes.append((keys, values))
    if seeds is not None:
        if "experiment.seed" in seen:
            raise SpecError("seeds and grid['experiment.seed'] both set the seed: use one")
        seeds = list(seeds)
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if not seeds or bad:
            raise SpecError(
                f"seeds = {seeds!r} is invalid: expected a non-empty list of non-negative integers"
            )
        axes.append((("experiment.seed",), [(s,) for s in seeds]))
    return axes


def expand_sweep(
    spec: dict, seeds: Iterable[int] | None = None, grid: Mapping[Any, Sequence] | None = None
) -> list[SweepRun]:
    """Every run of a sweep, validated, in a deterministic order.

    Parameters
    ----------
    spec : dict
        Base experiment (from :func:`biosim.experiment.load_experiment`).
    seeds : iterable of int, optional
        Random seeds (``experiment.seed``); the innermost loop.  ``None``: the
        base spec's seed only.
    grid : mapping, optional
        ``{"devices.mri.te": [0.02, 0.03], ...}``: the Cartesian product of the
        value lists, in key order.  A tuple of keys maps to values that change
        together (one axis), e.g. ``{("subject.id", "experiment.seed"):
        [("01", 1), ("02", 2)]}``.

    Returns
    -------
    list of SweepRun
        ``grid`` axes outermost, seeds innermost.

    Raises
    ------
    SpecError
        A key that is not in the spec, a value that fails validation (naming the
        run, the key and the value), or two runs with the same id.
    """
    base = _spec.validate_spec(spec)
    axes = _axes(seeds, grid)
    runs, ids = [], {}
    for combo in itertools.product(*(values for _, values in axes)):
        overrides = {}
        for (keys, _), values in zip(axes, combo):
            overrides.update(zip(keys, values))
        seed = overrides.get("experiment.seed", base["experiment"]["seed"])
        shown = {k: v for k, v in overrides.items() if k != "experiment.seed"}
        label = run_id_for(seed, shown) if isinstance(seed, int) else "?"
        try:
            run_spec = apply_overrides(base, overrides, source=f"sweep run {label}")
        except SpecError as err:
            changes = ", ".join(f"{k} = {v!r}" for k, v in overrides.items())
            raise SpecError(f"sweep run {label} ({changes}): {err}") from err
        seed = run_spec["experiment"]["seed"]
        run_id = run_id_for(seed, shown)
        if run_id in ids:
            raise SpecError(
                f"sweep runs {ids[run_id]!r} and {overrides!r} have the same id "
                f"{run_id!r}: a seed or grid value is repeated"
            )
        ids[run_id] = overrides
        runs.append(
            SweepRun(
                run_id=run_id,
                seed=seed,
                overrides=shown,
                spec=run_spec,
                spec_hash=spec_hash(run_spec),
            )
        )
    return runs
