"""Executing a sweep: many subjects or parameter sets of one experiment, in one call.

A sweep takes a validated experiment (see :mod:`biosim.experiment`) and a set of
changes to it -- random seeds, a grid of values for dotted keys, or lists of
values that change together -- and runs every combination as an independent
:func:`~biosim.experiment.run_experiment` on a Dask cluster (a local cluster of
single-threaded worker processes by default, or an existing scheduler's
address), or one after another in this process (``scheduler="sequential"``)::

    OUT/
      sweep.json                             every run: changes, spec hash, status, seconds
      seed-0_devices.mri.te-0.02/            one complete BIDS-style dataset per run
        sweep_run.json                       stamp: run id, spec hash, the full spec
        .bidsignore                          lists sweep_run.json (not a BIDS file)
        dataset_description.json, README, sub-01/, derivatives/
      seed-0_devices.mri.te-0.03/
      ...

Every run's spec is validated before anything runs, so a bad value fails at
once with a :class:`~biosim.SpecError` naming the run, the key and the value.
A run's folder appears only when the run is complete (it is built in a hidden
sibling and renamed into place, stamp included), so a sweep that is killed can
be started again with the same arguments: runs whose folder is complete and
whose stamp records the same spec hash are skipped, and only the missing (or
failed) ones execute.  A folder left by a *different* spec under the same run id is an
error unless ``overwrite`` is set (and even then a folder holding files biosim
did not write is refused).  SIGINT/SIGTERM stop the sweep (see
:mod:`biosim._core.interrupt`): the hidden build folders of unfinished runs are
removed and ``sweep.json`` marks them pending.  One run failing does not stop the others;
failures are collected in the report and in ``sweep.json``.

Run ids are readable and stable: ``sub-<id>`` when the subject id is swept,
``seed-<n>``, then ``<dotted.key>-<value>`` for each other swept key, e.g.
``seed-2_devices.mri.te-0.02`` (a list index ``blocks[1]`` reads ``blocks.1``).
They do not depend on the position of a run in the sweep, so extending a sweep
(more seeds, more values) keeps the runs already done.  Characters outside
``[A-Za-z0-9._,+-]`` become ``_`` and long values are cut; an id that lost
information that way ends in a short hash of its changes, so different runs
never share an id.

On a real cluster the output folder must be on a filesystem that every worker
sees at the same path; start workers with one thread each
(``dask worker ADDRESS --nthreads 1``, and ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``)
since each run is itself a JAX computation.  Only one sweep should write to an
output folder at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ... import __version__
from ..._core.atomic import (
    add_to_marker,
    atomic_write_text,
    make_temp_dir,
    remove_tree,
    why_not_replaceable,
)
from ..._core.errors import ParameterError
from ..._core.interrupt import check as _check_interrupt
from ..._core.interrupt import deferred
from ..._core.progress import open_bar
from ...io.bids import add_bidsignore
from .. import pipeline as _pipeline
from .. import spec as _spec
from .plan import SweepRun, expand_sweep, spec_hash

SWEEP_FILE = "sweep.json"
STAMP_FILE = "sweep_run.json"
COMPLETE_MARKER = "dataset_description.json"
#: environment of local worker processes: one thread per worker for XLA, BLAS and biosim
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "BIOSIM_NUM_THREADS": "1",
    "BIOSIM_PROGRESS": "0",
}
_XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class RunResult:
    """Outcome of one run: ``status`` is ``"done"`` (ran now), ``"skipped"``
    (already complete), ``"failed"`` (``error`` says why) or ``"pending"`` (the
    sweep was interrupted before it finished)."""

    run_id: str
    seed: int
    overrides: dict
    spec_hash: str
    status: str
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None
    path: Path | None = None

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "path": self.run_id,
            "seed": self.seed,
            "overrides": self.overrides,
            "spec_hash": self.spec_hash,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "traceback": self.traceback,
        }


@dataclass(frozen=True)
class SweepReport:
    """What a sweep did; ``str(report)`` is a one-line summary."""

    out_root: Path
    runs: tuple[RunResult, ...]
    scheduler: str
    seconds: float
    counts: dict = field(default_factory=dict)

    def __post_init__(self):
        counts = {s: 0 for s in ("done", "skipped", "failed", "pending")}
        for r in self.runs:
            counts[r.status] += 1
        object.__setattr__(self, "counts", counts)

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.runs if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every run is complete (done now or skipped)."""
        return all(r.status in ("done", "skipped") for r in self.runs)

    def __getitem__(self, run_id: str) -> RunResult:
        for r in self.runs:
            if r.run_id == run_id:
                return r
        raise KeyError(run_id)

    def __str__(self) -> str:
        c = self.counts
        text = (
            f"sweep of {len(self.runs)} run(s) in {self.out_root} ({self.scheduler}, "
            f"{self.seconds:.1f} s): {c['done']} done, {c['skipped']} skipped, "
            f"{c['failed']} failed"
        )
        return text + (f", {c['pending']} not run" if c["pending"] else "")


# ----------------------------------------------------------------------------- one run
def run_state(out_root: str | Path, run: SweepRun) -> str:
    """``"complete"`` (same spec, can be skipped), ``"missing"``, or a sentence
    saying why an existing folder does not belong to this run."""
    folder = Path(out_root) / run.run_id
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return "missing"
    if not folder.is_dir():
        return f"{folder} exists and is not a folder"
    stamp = folder / STAMP_FILE
    if not stamp.is_file() or not (folder / COMPLETE_MARKER).is_file():
        return f"{folder} exists but is not a complete sweep run (no {STAMP_FILE})"
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8")).get("spec_hash")
    except (OSError, ValueError, AttributeError):
        return f"{folder / STAMP_FILE} is unreadable"
    if recorded != run.spec_hash:
        return (
            f"{folder} holds a different spec (hash {recorded}, this sweep's run has "
            f"{run.spec_hash})"
        )
    return "complete"


_PARTIAL = re.compile(r"^\.(?P<run_id>.+)\.[A-Za-z0-9_]+\.sweep-partial$")


def _clean_partials(out_root: Path, run_ids: set[str]) -> None:
    """Remove hidden build folders of ``run_ids`` left by a hard-killed earlier sweep."""
    for entry in out_root.iterdir() if out_root.is_dir() else ():
        match = _PARTIAL.match(entry.name)
        if match and match.group("run_id") in run_ids:
            shutil.rmtree(entry, ignore_errors=True)


def _check_replaceable(folder: Path) -> None:
    """Raise ``FileExistsError`` unless ``folder`` holds only what biosim wrote."""
    if folder.is_dir():
        why = why_not_replaceable(folder)
        if why is not None:
            raise FileExistsError(f"refusing to overwrite {folder}: {why}")


def _execute(run: SweepRun, out_root: str, overwrite: bool, progress: bool) -> dict:
    """Run one experiment into ``out_root/run_id`` (atomically, stamp included).

    Called in a worker process; returns a plain dict (never raises an
    ``Exception``) so that one failed run does not disturb the others.
    """
    t0 = time.perf_counter()
    root = Path(out_root)
    try:
        state = run_state(root, run)
        if state == "complete":
            return {"status": "skipped", "seconds": 0.0, "error": None, "traceback": None}
        if state != "missing" and not overwrite:
            raise FileExistsError(f"{state}; pass overwrite to replace it")
        if state != "missing":
            _check_replaceable(root / run.run_id)
        _check_interrupt()
        root.mkdir(parents=True, exist_ok=True)
        stage = make_temp_dir(root, f".{run.run_id}.", ".sweep-partial")
        try:
            built = stage / run.run_id
            _pipeline.run_experiment(run.spec, built, overwrite=False, progress=progress)
            seconds = time.perf_counter() - t0
            atomic_write_text(
                built / STAMP_FILE,
                json.dumps(
                    {
                        "run_id": run.run_id,
                        "spec_hash": run.spec_hash,
                        "seed": run.seed,
                        "overrides": run.overrides,
                        "seconds": round(seconds, 3),
                        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                        "biosim_version": __version__,
                        "spec": run.spec,
                    },
                    indent=2,
                )
                + "\n",
            )
            add_bidsignore(built, STAMP_FILE)  # the run folder stays a valid BIDS dataset
            add_to_marker(built, [STAMP_FILE, ".bidsignore"])
            final = root / run.run_id
            with deferred(raise_after=False):  # the run is complete: move it in whole
                if final.exists():
                    old = stage / f"{run.run_id}.old"
                    os.replace(final, old)
                os.replace(built, final)
        finally:
            remove_tree(stage)
        return {
            "status": "done",
            "seconds": time.perf_counter() - t0,
            "error": None,
            "traceback": None,
        }
    except Exception as err:  # noqa: BLE001  (reported, not swallowed)
        return {
            "status": "failed",
            "seconds": time.perf_counter() - t0,
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        }


# ----------------------------------------------------------------------------- the sweep
def _import_distributed():
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise ImportError(
            "biosim sweeps on a Dask cluster need dask.distributed: "
            "pip install 'biosim[distributed]' (or pass scheduler='sequential' to run the "
            "sweep one run after another in this process)"
        ) from err
    return Client, LocalCluster, as_completed


def _worker_env() -> dict:
    env = dict(WORKER_ENV)
    xla = os.environ.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{xla} {_XLA_SINGLE_THREAD}".strip()
    return env


class _Bar:
    """The bar over runs (on a terminal only: :mod:`biosim._core.progress`)."""

    def __init__(self, total: int, enabled: bool):
        self._bar = open_bar(
            "biosim sweep", total=total, unit="run", disable=not (enabled and total)
        )

    def update(self, text: str):
        self._bar.set_postfix_str(text[-40:], refresh=False)
        self._bar.update(1)

    def close(self):
        self._bar.close()


def _write_sweep_json(
    out_root: Path,
    base_hash: str,
    name: str,
    scheduler: str,
    seeds,
    grid,
    results: dict[str, RunResult],
    started: str,
) -> None:
    counts = {s: 0 for s in ("done", "skipped", "failed", "pending")}
    for r in results.values():
        counts[r.status] += 1
    grid_json = {
        (",".join(k) if isinstance(k, tuple) else k): list(v) for k, v in (grid or {}).items()
    }
    doc = {
        "biosim_version": __version__,
        "experiment": name,
        "base_spec_hash": base_hash,
        "scheduler": scheduler,
        "started": started,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "seeds": None if seeds is None else list(seeds),
        "grid": grid_json,
        "summary": counts,
        "runs": [r.to_json() for r in results.values()],
    }
    atomic_write_text(out_root / SWEEP_FILE, json.dumps(doc, indent=2, default=str) + "\n")


def run_sweep(
    spec_or_path: dict | str | Path | None,
    out_root: str | Path,
    *,
    seeds: Iterable[int] | None = None,
    grid: Mapping[Any, Sequence] | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SweepReport:
    """Run every combination of a sweep, each run independent and resumable.

    Parameters
    ----------
    spec_or_path : dict, path or None
        A spec dict, an experiment TOML file, or ``None`` for the built-in default.
    out_root : path-like
        Output folder: one sub-folder per run plus ``sweep.json``.  On a real
        cluster it must be visible to every worker at the same path.
    seeds, grid
        See :func:`expand_sweep`.
    scheduler : None, str or dask.distributed.Client
        ``None``: a :class:`dask.distributed.LocalCluster` of single-threaded
        worker processes, closed at the end; ``"sequential"``: one run after
        another in this process (no Dask needed); an address such as
        ``"tcp://10.0.0.1:8786"``: that scheduler's workers; a ``Client``: used as is.
    n_workers : int, optional
        Worker processes of the local cluster (default: one per CPU, at most one
        per run to execute).  Ignored for other schedulers.
    overwrite : bool
        Replace run folders that hold a different spec or an incomplete run,
        provided biosim wrote everything in them (their ``.biosim`` marker lists
        it); a run folder holding any other file is refused (``FileExistsError``).
        Complete runs of the same spec are always skipped (delete a run's folder
        to compute it again).
    progress : bool
        Show a progress bar over runs (on a terminal).

    Returns
    -------
    SweepReport
        Per-run status (done, skipped, failed, pending), seconds and errors; the
        same is written to ``out_root/sweep.json``.

    Raises
    ------
    SpecError
        Before anything runs, for any invalid run.
    FileExistsError
        Before anything runs, when run folders hold a different spec and
        ``overwrite`` is False.
    ImportError
        When a Dask scheduler is asked for and ``dask.distributed`` is missing.
    """
    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if n_workers is not None and (
        isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1
    ):
        raise ParameterError("n_workers", n_workers, "a positive number of worker processes")
    if not (scheduler is None or isinstance(scheduler, str) or hasattr(scheduler, "submit")):
        raise ParameterError(
            "scheduler",
            scheduler,
            "None (a local Dask cluster), "
            "'sequential', a scheduler address or a dask.distributed.Client",
        )
    if isinstance(spec_or_path, dict):
        base = _spec.validate_spec(spec_or_path)
    else:
        base = _spec.load_experiment(spec_or_path)
    seeds = None if seeds is None else list(seeds)
    runs = expand_sweep(base, seeds=seeds, grid=grid)
    out_root = Path(out_root).expanduser().resolve()
    if out_root.exists() and not out_root.is_dir():
        raise FileExistsError(f"sweep output {str(out_root)!r} exists and is not a folder")
    states = {run.run_id: run_state(out_root, run) for run in runs}
    stale = [s for s in states.values() if s not in ("complete", "missing")]
    if stale and not overwrite:
        more = f" (and {len(stale) - 5} more)" if len(stale) > 5 else ""
        raise FileExistsError(
            f"{len(stale)} run folder(s) in {out_root} do not match this "
            f"sweep: {'; '.join(stale[:5])}{more}. Pass overwrite (--overwrite) "
            "to replace them, or choose another output folder"
        )
    if stale:  # --overwrite replaces only run folders biosim wrote
        for run in runs:
            if states[run.run_id] not in ("complete", "missing"):
                _check_replaceable(out_root / run.run_id)
    out_root.mkdir(parents=True, exist_ok=True)

    results: dict[str, RunResult] = {}
    todo: list[SweepRun] = []
    for run in runs:
        if states[run.run_id] == "complete":
            results[run.run_id] = RunResult(
                run.run_id,
                run.seed,
                run.overrides,
                run.spec_hash,
                "skipped",
                path=out_root / run.run_id,
            )
        else:
            results[run.run_id] = RunResult(
                run.run_id, run.seed, run.overrides, run.spec_hash, "pending"
            )
            todo.append(run)
    _clean_partials(out_root, {run.run_id for run in runs})

    client = cluster = None
    if isinstance(scheduler, str) and scheduler == "sequential":
        label = "sequential"
    elif scheduler is None:
        label = "local Dask cluster"
    elif isinstance(scheduler, str):
        label = f"Dask scheduler {scheduler}"
    else:
        label = f"Dask client {getattr(scheduler, 'scheduler', scheduler)!s}"[:120]
    if todo and label != "sequential":
        Client, LocalCluster, _ = _import_distributed()
    name = base["experiment"]["name"]
    base_hash = spec_hash(base)

    def record(run: SweepRun, outcome: dict) -> None:
        status = outcome["status"]
        if status == "done" and not (out_root / run.run_id / STAMP_FILE).is_file():
            status = "failed"
            outcome = dict(
                outcome,
                error=(
                    f"the run finished on its worker but {out_root / run.run_id} is not visible "
                    "here: is the output folder on a filesystem shared by every worker?"
                ),
            )
        results[run.run_id] = RunResult(
            run.run_id,
            run.seed,
            run.overrides,
            run.spec_hash,
            status,
            seconds=outcome["seconds"],
            error=outcome["error"],
            traceback=outcome.get("traceback"),
            path=out_root / run.run_id if status in ("done", "skipped") else None,
        )
        if time.monotonic() - last_write[0] > 2.0:  # keep it current, not O(runs^2)
            _write_sweep_json(out_root, base_hash, name, label, seeds, grid, results, started)
            last_write[0] = time.monotonic()
        bar.update(f"{run.run_id}: {status}")

    _write_sweep_json(out_root, base_hash, name, label, seeds, grid, results, started)
    last_write = [time.monotonic()]
    bar = _Bar(len(todo), progress)
    stopped = False
    try:
        if todo and label == "sequential":
            for run in todo:
                record(run, _execute(run, str(out_root), overwrite, False))
        elif todo:
            _, _, as_completed = _import_distributed()
            if scheduler is None:
                workers = (
                    n_workers if n_workers is not None else min(os.cpu_count() or 1, len(todo))
                )
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    env=_worker_env(),
                    silence_logs=logging.ERROR,
                )
                client = Client(cluster)
                label = f"local Dask cluster of {workers} process(es)"
                active = client
            elif isinstance(scheduler, str):
                try:
                    client = Client(scheduler)
                except Exception as err:  # noqa: BLE001  (re-raised with the address named)
                    raise OSError(
                        f"could not connect to the Dask scheduler {scheduler!r}: {err} "
                        "(expected an address such as tcp://host:8786, or "
                        "'sequential')"
                    ) from err
                active = client
            else:
                active = scheduler
            futures = {}
            for run in todo:
                fut = active.submit(
                    _execute,
                    run,
                    str(out_root),
                    overwrite,
                    False,
                    key=f"biosim-sweep-{run.run_id}-{uuid.uuid4().hex[:8]}",
                    pure=False,
                )
                futures[fut] = run
            try:
                for fut in as_completed(futures):
                    run = futures[fut]
                    try:
                        outcome = fut.result()
                    except Exception as err:  # noqa: BLE001  (a worker died, a task was lost)
                        outcome = {
                            "status": "failed",
                            "seconds": 0.0,
                            "error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc(),
                        }
                    record(run, outcome)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    except BaseException:
        stopped = True  # interrupted (SIGINT/SIGTERM) or the cluster failed
        raise
    finally:
        bar.close()
        with deferred(raise_after=False):  # a second Ctrl-C must not leave workers behind
            _write_sweep_json(out_root, base_hash, name, label, seeds, grid, results, started)
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()
            if stopped and (label == "sequential" or cluster is not None):
                # the local workers are gone: remove what their unfinished runs staged
                _clean_partials(out_root, {run.run_id for run in runs})
    return SweepReport(
        out_root=out_root,
        runs=tuple(results[r.run_id] for r in runs),
        scheduler=label,
        seconds=time.perf_counter() - t0,
    )
