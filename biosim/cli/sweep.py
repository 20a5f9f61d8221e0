"""The ``biosim sweep`` command: parse seeds, ``--set``, ``--grid`` and ``--zip``
options into a sweep and run it (:func:`biosim.experiment.sweep.run_sweep`)."""

from __future__ import annotations

import re
import sys
from typing import Any

from .._core.errors import BiosimError, SpecError
from ..experiment import spec as _spec
from ..experiment.sweep import SWEEP_FILE, apply_overrides, expand_sweep, run_state, run_sweep


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9, ``"1,4,7"``, ``"0-3,10"``; ranges are inclusive."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None or (
            match.group(2) is not None and int(match.group(2)) < int(match.group(1))
        ):
            raise SpecError(
                f"--seeds {text!r} is invalid: expected non-negative integers and "
                "increasing ranges, e.g. '0-9' or '1,4,7' or '0-3,10'"
            )
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        seeds.extend(range(lo, hi + 1))
    return seeds


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets, braces or quotes."""
    items, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur))
    return [i.strip() for i in items]


def parse_value(text: str) -> Any:
    """A command-line value as TOML (``0.02``, ``[0.1, 0.1, 0]``, ``"spm"``, ``true``);
    anything that is not TOML is taken as a bare string (``spm``)."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _key_value(option: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise SpecError(
            f"{option} {text!r} is invalid: expected KEY=VALUE, e.g. devices.mri.te=0.02"
        )
    return key.strip(), value.strip()


def add_sweep_parser(subparsers) -> Any:
    """Add the ``sweep`` command to the ``biosim`` argument parser's subparsers."""
    p = subparsers.add_parser(
        "sweep",
        help="run many seeds / parameter sets of an experiment (Dask, resumable)",
        description="Run every combination of seeds and parameter values of an experiment, "
        "each as an independent dataset under OUT/<run id>. Complete runs are "
        "skipped, so an interrupted sweep resumes when run again.",
    )
    p.add_argument(
        "experiment",
        nargs="?",
        default=None,
        help="experiment TOML file (default: the built-in default experiment)",
    )
    p.add_argument(
        "-o", "--out", default="biosim_sweep", help="output folder (default: %(default)s)"
    )
    p.add_argument(
        "--seeds",
        default=None,
        metavar="LIST",
        help="random seeds, e.g. 0-9 or 1,4,7 (default: the experiment's seed)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="set_",
        help="change a key for every run, e.g. activity.drive.visual=[0.1,0.1,0] "
        "(repeatable; VALUE is TOML, bare words are strings)",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="sweep a key over values (repeatable: the Cartesian product), e.g. "
        "devices.mri.te=0.02,0.03",
    )
    p.add_argument(
        "--zip",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="keys whose values change together (all --zip lists have one length "
        "and form one axis), e.g. --zip subject.id=01,02 --zip "
        "experiment.seed=1,2",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler address (default: a local cluster), or 'sequential' "
        "to run here one after another",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes of the local cluster (default: one per CPU)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace run folders that hold a different spec (only folders biosim wrote)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs and whether each is complete, then stop",
    )
    p.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    return p


def _parse_for_key(key: str, text: str) -> Any:
    if key == "subject.id":  # ids such as 01 are text, not the integer 1
        return text.strip().strip("\"'")
    return parse_value(text)


def _args_to_sweep(args) -> tuple[dict, list[int] | None, dict]:
    spec = _spec.load_experiment(args.experiment)
    if args.set_:
        pairs = [_key_value("--set", s) for s in args.set_]
        spec = apply_overrides(spec, {k: _parse_for_key(k, v) for k, v in pairs}, source="--set")
    grid: dict[Any, list] = {}
    for text in args.grid:
        key, values = _key_value("--grid", text)
        grid[key] = [_parse_for_key(key, v) for v in _split_top_level(values)]
    if args.zip:
        keys, columns = [], []
        for text in args.zip:
            key, values = _key_value("--zip", text)
            keys.append(key)
            columns.append([_parse_for_key(key, v) for v in _split_top_level(values)])
        if len({len(c) for c in columns}) != 1:
            raise SpecError(
                f"--zip lists have different lengths "
                f"{[len(c) for c in columns]}: expected one value per run for "
                f"every key ({', '.join(keys)})"
            )
        grid[tuple(keys)] = list(zip(*columns))
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    return spec, seeds, grid


def main_sweep(args) -> int:
    """Run ``biosim sweep`` from parsed arguments; 0 when every run is complete,
    1 when some run failed, 2 for an invalid sweep (nothing ran)."""
    try:
        spec, seeds, grid = _args_to_sweep(args)
        if args.dry_run:
            runs = expand_sweep(spec, seeds=seeds, grid=grid)
            for run in runs:
                print(f"{run.run_id}\t{run.spec_hash}\t{run_state(args.out, run)}")
            print(f"biosim: {len(runs)} run(s) of {_spec.describe(spec)}")
            return 0
        report = run_sweep(
            spec,
            args.out,
            seeds=seeds,
            grid=grid,
            scheduler=args.scheduler,
            n_workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (BiosimError, FileNotFoundError, FileExistsError, ImportError, OSError) as err:
        print(f"biosim: error: {err}", file=sys.stderr)
        return 2
    print(f"biosim: {report}")
    for r in report.failed:
        print(f"biosim: run {r.run_id} failed: {r.error}", file=sys.stderr)
    if report.failed:
        print(
            f"biosim: run the same command again to retry the failed run(s); details in "
            f"{report.out_root / SWEEP_FILE}",
            file=sys.stderr,
        )
    return 0 if report.ok else 1
