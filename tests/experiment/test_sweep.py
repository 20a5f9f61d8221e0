"""Sweeps: expansion and validation, skip-when-complete, resume after failure or
interruption, stale folders, deterministic outputs per seed, sweep.json, the
command line, and one real Dask LocalCluster of two worker processes."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from biosim import ParameterError, SpecError, experiment
from biosim.cli import sweep as sweep_cli
from biosim.experiment import sweep as sw


@pytest.fixture(scope="module")
def tiny(tiny_toml):
    return experiment.load_experiment(tiny_toml)


GRID = {"devices.mri.te": [0.02, 0.03]}


@pytest.fixture(scope="module")
def done_sweep(tiny, tmp_path_factory):
    """2 seeds x 2 echo times, run one after another in this process."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    report = sw.run_sweep(
        tiny, out, seeds=[0, 1], grid=GRID, scheduler="sequential", progress=False
    )
    return out, report


def _counting_runner(monkeypatch, fail=lambda spec, n: False):
    """Replace run_experiment by a wrapper that counts calls and can raise."""
    real = experiment.run_experiment
    calls = []

    def wrapper(spec, out_dir, **kwargs):
        calls.append((spec["experiment"]["seed"], spec["devices"]["mri"]["te"]))
        exc = fail(spec, len(calls))
        if exc:
            raise exc
        return real(spec, out_dir, **kwargs)

    monkeypatch.setattr(experiment.pipeline, "run_experiment", wrapper)
    return calls


# ----------------------------------------------------------------------------- expansion
def test_expand_is_a_validated_cartesian_product(tiny):
    runs = sw.expand_sweep(tiny, seeds=[0, 1, 2], grid=GRID)
    assert [r.run_id for r in runs] == [
        f"seed-{s}_devices.mri.te-{te}" for te in (0.02, 0.03) for s in (0, 1, 2)
    ]
    for r in runs:
        assert r.spec["experiment"]["seed"] == r.seed
        assert r.spec["devices"]["mri"]["te"] == r.overrides["devices.mri.te"]
        assert r.spec_hash == sw.spec_hash(r.spec)
        assert r.spec["devices"]["mri"]["tr"] == 2.0  # untouched keys kept
    assert len({r.spec_hash for r in runs}) == 6
    again = sw.expand_sweep(tiny, seeds=[0, 1, 2], grid=GRID)
    assert [(r.run_id, r.spec_hash) for r in again] == [(r.run_id, r.spec_hash) for r in runs]
    # ids do not depend on a run's position: extending the sweep keeps earlier runs' ids
    more = sw.expand_sweep(tiny, seeds=[5, 0], grid={"devices.mri.te": [0.03]})
    by_id = {r.run_id: r.spec_hash for r in runs}
    assert by_id["seed-0_devices.mri.te-0.03"] == more[1].spec_hash
    # no seeds: the base spec's seed; no grid: one run
    (single,) = sw.expand_sweep(tiny)
    assert single.run_id == "seed-0" and single.spec_hash == sw.spec_hash(tiny)


def test_expand_zipped_keys_lists_and_indices(tiny):
    runs = sw.expand_sweep(
        tiny,
        grid={
            ("subject.id", "experiment.seed"): [("01", 1), ("02", 2)],
            "activity.drive.visual": [[0.1, 0.1], [0.2, 0]],
            "protocol.blocks[1].onset": [12.0],
        },
    )
    assert runs[0].run_id == (
        "sub-01_seed-1_activity.drive.visual-0.1,0.1_protocol.blocks.1.onset-12.0"
    )
    assert [(r.spec["subject"]["id"], r.seed) for r in runs] == [
        ("01", 1),
        ("01", 1),
        ("02", 2),
        ("02", 2),
    ]
    assert runs[1].spec["activity"]["drive"]["visual"] == [0.2, 0]
    assert runs[1].run_id.startswith("sub-01_seed-1_activity.drive.visual-0.2,0_")
    assert all(r.spec["protocol"]["blocks"][1]["onset"] == 12.0 for r in runs)


def test_run_ids_are_sanitised_and_unique():
    ids = {sw.plan.run_id_for(0, {"subject.id": "01", "x.name": v}) for v in ("a b", "a_b", "a/b")}
    assert len(ids) == 3
    assert "sub-01_seed-0_x.name-a_b" in ids  # nothing lost: no hash
    assert all(i.startswith("sub-01_seed-0_x.name-a_b") for i in ids)
    long = sw.plan.run_id_for(3, {"activity.drive.visual": list(np.linspace(0, 1, 40))})
    assert len(long) < 200 and "_h" in long


def test_spec_hash_ignores_int_float_and_key_order(tiny):
    a = json.loads(json.dumps(tiny))
    a["activity"]["drive"]["attention"] = [0, 0.08]
    b = {k: a[k] for k in reversed(list(a))}
    assert sw.spec_hash(a) == sw.spec_hash(tiny) == sw.spec_hash(b)
    a["activity"]["drive"]["attention"] = [0, 0.09]
    assert sw.spec_hash(a) != sw.spec_hash(tiny)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(grid={"devices.mri.te": [0.02, 2.5]}),
            r"sweep run seed-0_devices.mri.te-2.5 .*devices.mri.te = 2.5 is invalid: "
            r"expected an echo",
        ),
        (dict(grid={"devices.mri.TE": [0.02]}), r"devices.mri.TE is not a key of the experiment"),
        (
            dict(grid={"protocol.blocks[7].onset": [1.0]}),
            r"protocol.blocks\[7\].onset is not a key",
        ),
        (
            dict(grid={"activity.drive.visual": [[0.1, 0.1, 0.1]]}),
            r"activity.drive.visual = \[0.1, 0.1, 0.1\] is invalid",
        ),
        (dict(seeds=[0, 1, 0]), r"same id 'seed-0'"),
        (dict(seeds=[-1]), r"seeds = \[-1\] is invalid"),
        (dict(seeds=[0], grid={"experiment.seed": [1]}), r"both set the seed"),
        (dict(grid={"devices.mri.te": []}), r"is empty"),
        (dict(grid={"devices.mri.te": 0.02}), r"expected a list of values"),
        (dict(grid={("subject.id", "experiment.seed"): [("01",)]}), r"2 values changed together"),
        (dict(grid={"devices..te": [0.02]}), r"expected a dotted key"),
    ],
)
def test_invalid_sweeps_fail_before_running(tiny, tmp_path, monkeypatch, kwargs, message):
    calls = _counting_runner(monkeypatch)
    with pytest.raises(SpecError, match=message):
        sw.expand_sweep(tiny, **kwargs)
    with pytest.raises(SpecError, match=message):
        sw.run_sweep(tiny, tmp_path / "out", scheduler="sequential", progress=False, **kwargs)
    assert calls == [] and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- running
def test_sweep_writes_every_run_and_sweep_json(done_sweep, tiny):
    out, report = done_sweep
    assert report.ok and report.counts == {"done": 4, "skipped": 0, "failed": 0, "pending": 0}
    assert "4 done, 0 skipped, 0 failed" in str(report)
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["summary"] == report.counts and doc["seeds"] == [0, 1]
    assert doc["grid"] == {"devices.mri.te": [0.02, 0.03]}
    assert doc["base_spec_hash"] == sw.spec_hash(tiny) and doc["experiment"] == "tiny"
    runs = sw.expand_sweep(tiny, seeds=[0, 1], grid=GRID)
    assert [r["run_id"] for r in doc["runs"]] == [r.run_id for r in runs]
    for rec, run in zip(doc["runs"], runs):
        assert rec["status"] == "done" and rec["error"] is None and rec["seconds"] > 0
        assert rec["spec_hash"] == run.spec_hash and rec["seed"] == run.seed
        folder = out / rec["path"]
        assert (folder / "dataset_description.json").is_file()
        assert (folder / "sub-01" / "func" / "sub-01_task-tiny_events.tsv").is_file()
        stamp = json.loads((folder / "sweep_run.json").read_text())
        assert stamp["spec_hash"] == run.spec_hash and sw.spec_hash(stamp["spec"]) == run.spec_hash
        truth = json.loads((folder / "derivatives" / "biosim-truth" / "truth.json").read_text())
        assert truth["spec"]["devices"]["mri"]["te"] == run.overrides["devices.mri.te"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["sweep.json"] + [r.run_id for r in runs])


def test_sweep_run_folders_are_valid_bids(done_sweep, bids_errors):
    out, report = done_sweep
    folder = out / report.runs[0].run_id
    assert "sweep_run.json" in (folder / ".bidsignore").read_text().split()
    assert bids_errors(folder) == []


def test_outputs_are_deterministic_per_seed(done_sweep, tiny, tmp_path):
    out, _ = done_sweep
    report = sw.run_sweep(
        tiny,
        tmp_path,
        seeds=[1],
        grid={"devices.mri.te": [0.02]},
        scheduler="sequential",
        progress=False,
    )
    run_id = "seed-1_devices.mri.te-0.02"
    assert report[run_id].status == "done"
    a = np.load(out / run_id / "derivatives" / "biosim-truth" / "truth.npz")
    b = np.load(tmp_path / run_id / "derivatives" / "biosim-truth" / "truth.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    nib = pytest.importorskip("nibabel")
    img = "sub-01/func/sub-01_task-tiny_bold.nii.gz"
    y1 = np.asarray(nib.load(out / run_id / img).dataobj)
    np.testing.assert_array_equal(y1, np.asarray(nib.load(tmp_path / run_id / img).dataobj))
    # another seed: the same noise-free BOLD, another thermal-noise realisation
    y0 = np.asarray(nib.load(out / "seed-0_devices.mri.te-0.02" / img).dataobj)
    t0 = np.load(out / "seed-0_devices.mri.te-0.02" / "derivatives" / "biosim-truth" / "truth.npz")
    np.testing.assert_array_equal(t0["bold"], a["bold"])
    assert np.abs(y0 - y1).max() > 0.5


def test_complete_runs_are_skipped(done_sweep, tiny, monkeypatch):
    out, _ = done_sweep
    calls = _counting_runner(monkeypatch)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_dir()}
    report = sw.run_sweep(
        tiny, out, seeds=[0, 1], grid=GRID, scheduler="sequential", progress=False
    )
    assert calls == [] and report.ok
    assert report.counts == {"done": 0, "skipped": 4, "failed": 0, "pending": 0}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_dir()} == before
    # extending the sweep runs only the new seed
    report = sw.run_sweep(
        tiny, out, seeds=[0, 1, 2], grid=GRID, scheduler="sequential", progress=False
    )
    assert sorted(calls) == [(2, 0.02), (2, 0.03)]
    assert report.counts == {"done": 2, "skipped": 4, "failed": 0, "pending": 0}


def test_failed_run_is_isolated_then_retried(tiny, tmp_path, monkeypatch):
    attempts = []

    def fail_first_attempt_of_seed_1(spec, n):
        if spec["experiment"]["seed"] == 1:
            attempts.append(n)
            return RuntimeError("disk full") if len(attempts) == 1 else None

    calls = _counting_runner(monkeypatch, fail=fail_first_attempt_of_seed_1)
    report = sw.run_sweep(tiny, tmp_path, seeds=[0, 1, 2], scheduler="sequential", progress=False)
    assert not report.ok and report.counts["failed"] == 1 and report.counts["done"] == 2
    (failed,) = report.failed
    assert failed.run_id == "seed-1" and failed.error == "RuntimeError: disk full"
    assert "disk full" in failed.traceback and failed.path is None
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["status"] for r in doc["runs"]] == ["done", "failed", "done"]
    assert doc["runs"][1]["error"] == "RuntimeError: disk full"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-0", "seed-2", "sweep.json"]
    calls.clear()
    report = sw.run_sweep(tiny, tmp_path, seeds=[0, 1, 2], scheduler="sequential", progress=False)
    assert calls == [(1, 0.03)] and report.ok
    assert [r.status for r in report.runs] == ["skipped", "done", "skipped"]


def test_interrupted_sweep_resumes(tiny, tmp_path, monkeypatch):
    interrupted = []

    def interrupt_second_run_once(spec, n):
        if n == 2 and not interrupted:
            interrupted.append(n)
            return KeyboardInterrupt()

    calls = _counting_runner(monkeypatch, fail=interrupt_second_run_once)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(tiny, tmp_path, seeds=[0, 1, 2], scheduler="sequential", progress=False)
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["status"] for r in doc["runs"]] == ["done", "pending", "pending"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-0", "sweep.json"]  # no debris
    # a worker killed hard leaves a hidden partial folder: the next sweep removes it
    (tmp_path / ".seed-2.abc123_x.sweep-partial" / "junk").mkdir(parents=True)
    calls.clear()
    report = sw.run_sweep(tiny, tmp_path, seeds=[0, 1, 2], scheduler="sequential", progress=False)
    assert calls == [(1, 0.03), (2, 0.03)] and report.ok
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "seed-0",
        "seed-1",
        "seed-2",
        "sweep.json",
    ]


def test_stale_folders_need_overwrite(done_sweep, tiny, tmp_path):
    out, _ = done_sweep
    changed = sw.apply_overrides(tiny, {"activity.drive.visual": [0.2, 0.1]})
    with pytest.raises(FileExistsError, match=r"2 run folder\(s\) .* different spec .*overwrite"):
        sw.run_sweep(changed, out, seeds=[0], grid=GRID, scheduler="sequential", progress=False)
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "seed-0" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete sweep run"):
        sw.run_sweep(tiny, tmp_path, scheduler="sequential", progress=False)
    # overwrite replaces only run folders biosim wrote: notes.txt is kept
    with pytest.raises(FileExistsError, match=r"refusing to overwrite .*notes\.txt"):
        sw.run_sweep(tiny, tmp_path, scheduler="sequential", overwrite=True, progress=False)
    assert (tmp_path / "seed-0" / "notes.txt").read_text() == "mine"
    (tmp_path / "seed-0" / "notes.txt").unlink()
    report = sw.run_sweep(tiny, tmp_path, scheduler="sequential", overwrite=True, progress=False)
    assert report.ok and report["seed-0"].status == "done"
    stamp = json.loads((tmp_path / "seed-0" / "sweep_run.json").read_text())
    assert stamp["spec_hash"] == sw.spec_hash(tiny)


def test_bad_scheduler_arguments(tiny, tmp_path):
    with pytest.raises(ParameterError, match="n_workers = 0 is invalid"):
        sw.run_sweep(tiny, tmp_path, n_workers=0, progress=False)
    with pytest.raises(ParameterError, match="scheduler = 3 is invalid"):
        sw.run_sweep(tiny, tmp_path, scheduler=3, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_distributed_names_the_extra(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'biosim\[distributed\]'.*sequential"):
        sw.run_sweep(tiny, tmp_path / "out", progress=False)


# ----------------------------------------------------------------------------- command line
def _cli(argv):
    parser = argparse.ArgumentParser(prog="biosim")
    sweep_cli.add_sweep_parser(parser.add_subparsers(dest="command"))
    return sweep_cli.main_sweep(parser.parse_args(argv))


def test_parse_seeds_and_values():
    assert sweep_cli.parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert sweep_cli.parse_seeds("7") == [7]
    for bad in ("3-1", "a", "-1", "1,,2"):
        with pytest.raises(SpecError, match="--seeds"):
            sweep_cli.parse_seeds(bad)
    assert sweep_cli.parse_value("0.02") == 0.02 and sweep_cli.parse_value("spm") == "spm"
    assert sweep_cli.parse_value("[0.1, 0.1,0]") == [0.1, 0.1, 0]
    assert sweep_cli._split_top_level("[0.1,0.2],[0.3,0.4], spm") == [
        "[0.1,0.2]",
        "[0.3,0.4]",
        "spm",
    ]


def test_cli_sweep(tiny_toml, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "sweep",
        str(tiny_toml),
        "-o",
        str(out),
        "--scheduler",
        "sequential",
        "--no-progress",
        "--set",
        "activity.drive.visual=[0.2,0.1]",
        "--zip",
        "subject.id=01,02",
        "--zip",
        "experiment.seed=3,4",
        "--grid",
        "activity.hemodynamics=spm,friston2000",
    ]
    assert _cli(argv + ["--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "sub-01_seed-3_activity.hemodynamics-spm" in text and "missing" in text
    assert not out.exists()
    assert _cli(argv) == 0
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().out
    stamp = json.loads(
        (out / "sub-02_seed-4_activity.hemodynamics-friston2000" / "sweep_run.json").read_text()
    )
    assert stamp["spec"]["subject"]["id"] == "02" and stamp["spec"]["experiment"]["seed"] == 4
    assert stamp["spec"]["activity"]["drive"]["visual"] == [0.2, 0.1]
    assert (out / "sub-02_seed-4_activity.hemodynamics-friston2000" / "sub-02").is_dir()
    assert _cli(argv + ["--dry-run"]) == 0
    assert capsys.readouterr().out.count("\tcomplete") == 4
    assert _cli(argv) == 0
    assert "0 done, 4 skipped" in capsys.readouterr().out
    # invalid sweeps exit 2 with the key and the value named
    assert (
        _cli(
            argv[:2]
            + ["-o", str(out), "--grid", "devices.mri.te=0.02,3.0", "--scheduler", "sequential"]
        )
        == 2
    )
    assert "devices.mri.te = 3.0 is invalid" in capsys.readouterr().err
    assert _cli(argv[:2] + ["--grid", "devices.mri.te"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert _cli(argv[:2] + ["--zip", "subject.id=01,02", "--zip", "experiment.seed=1"]) == 2
    assert "different lengths" in capsys.readouterr().err


#: A drive the Balloon model cannot follow: a valid spec whose run fails.
BAD_DRIVE = {"activity.drive.visual": [50.0, 0.1]}


def test_cli_sweep_with_a_failed_run_exits_1(tiny_toml, tmp_path, capsys):
    argv = [
        "sweep",
        str(tiny_toml),
        "-o",
        str(tmp_path),
        "--scheduler",
        "sequential",
        "--no-progress",
        "--grid",
        "activity.drive.visual=[0.15,0.1],[50.0,0.1]",
    ]
    assert _cli(argv) == 1
    err = capsys.readouterr().err
    assert f"run {sw.plan.run_id_for(0, BAD_DRIVE)} failed: SpecError" in err
    assert "hemodynamic response" in err and "run the same command again" in err


# ----------------------------------------------------------------------------- Dask
def test_local_dask_cluster_matches_sequential(done_sweep, tiny, tmp_path):
    """A real LocalCluster of two worker processes: same bytes as the sequential
    run, one run failing does not stop the others, and a rerun skips."""
    pytest.importorskip("dask.distributed")
    out, _ = done_sweep
    good = {"devices.mri.te": 0.02, "activity.drive.visual": [0.15, 0.1]}
    bad = dict(good, **BAD_DRIVE)
    grid = {"devices.mri.te": [0.02], "activity.drive.visual": [[0.15, 0.1], [50.0, 0.1]]}
    report = sw.run_sweep(tiny, tmp_path, seeds=[0, 1], grid=grid, n_workers=2, progress=False)
    assert report.scheduler == "local Dask cluster of 2 process(es)"
    status = {r.run_id: r.status for r in report.runs}
    assert status == {
        sw.plan.run_id_for(0, good): "done",
        sw.plan.run_id_for(1, good): "done",
        sw.plan.run_id_for(0, bad): "failed",
        sw.plan.run_id_for(1, bad): "failed",
    }
    assert all("hemodynamic response" in r.error for r in report.failed)
    for seed in (0, 1):
        ours = tmp_path / sw.plan.run_id_for(seed, good)
        ref = out / f"seed-{seed}_devices.mri.te-0.02"
        a, b = (
            np.load(ours / "derivatives" / "biosim-truth" / "truth.npz"),
            np.load(ref / "derivatives" / "biosim-truth" / "truth.npz"),
        )
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
        assert (
            json.loads((ours / "sweep_run.json").read_text())["spec_hash"]
            == json.loads((ref / "sweep_run.json").read_text())["spec_hash"]
        )
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["summary"] == {"done": 2, "skipped": 0, "failed": 2, "pending": 0}
    # rerun without the failing value: everything is already there, no cluster is started
    report = sw.run_sweep(
        tiny,
        tmp_path,
        seeds=[0, 1],
        grid={"devices.mri.te": [0.02], "activity.drive.visual": [[0.15, 0.1]]},
        progress=False,
    )
    assert report.counts["skipped"] == 2 and report.ok


# ----------------------------------------------------------------------------- example
def test_sweep_subjects_example(tmp_path):
    path = Path(__file__).resolve().parents[2] / "examples" / "sweep_subjects.py"
    spec = importlib.util.spec_from_file_location("sweep_subjects", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run(tmp_path, n_subjects=2, duration=40.0, scheduler="sequential")
    assert res["report"].ok and len(res["report"].runs) == 4
    for preset in ("spm", "friston2000"):
        est, true = res["peak_estimated"][preset], res["peak_true"][preset]
        assert est.shape == (2,) and 0.005 < true < 0.06
        assert np.all(np.abs(est - true) < 0.5 * true)


def test_scheduler_address_and_client(tiny, tmp_path):
    """An existing scheduler, by address or as a Client (here an in-process cluster
    of one thread, which is cheap to start)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        report = sw.run_sweep(
            tiny, tmp_path, seeds=[0, 1], scheduler=cluster.scheduler_address, progress=False
        )
        assert report.ok and report.counts["done"] == 2
        assert report.scheduler == f"Dask scheduler {cluster.scheduler_address}"
        with distributed.Client(cluster) as client:
            report = sw.run_sweep(tiny, tmp_path, seeds=[0, 1, 2], scheduler=client, progress=False)
            assert [r.status for r in report.runs] == ["skipped", "skipped", "done"]
            assert client.status == "running"  # a Client passed in is left open
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["scheduler"].startswith("Dask client")
