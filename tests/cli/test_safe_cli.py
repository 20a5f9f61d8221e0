"""``biosim run``, ``sweep`` and ``examples --copy`` write safely: umask permissions,
an existing empty folder (``-o .``, a mount point) filled in place, ``--overwrite``
only for a dataset biosim wrote, edited example copies kept, and SIGINT/SIGTERM
stopping a run with one line, exit status 130/143 and nothing left behind (real
signals sent to a ``python -m biosim.cli`` subprocess)."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import biosim
from biosim.cli import main


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def tiny(tiny_toml):
    return tiny_toml


@pytest.fixture(scope="module")
def volume_run(tiny, tmp_path_factory):
    """The tiny experiment run into an existing empty folder under umask 027."""
    volume = tmp_path_factory.mktemp("volume")
    inode = volume.stat().st_ino
    old = os.umask(0o027)
    try:
        assert main(["run", str(tiny), "-o", str(volume), "--no-progress"]) == 0
    finally:
        os.umask(old)
    return volume, inode


def test_run_fills_an_empty_folder_in_place_with_umask_permissions(volume_run):
    volume, inode = volume_run
    assert volume.stat().st_ino == inode  # filled in place: a mount point would work
    assert not [p for p in volume.iterdir() if p.name.startswith(".biosim-")]
    files = [p for p in volume.rglob("*") if p.is_file()]
    dirs = [p for p in volume.rglob("*") if p.is_dir()]
    assert len(files) >= 6 and dirs
    assert {_mode(p) for p in files} == {0o640}
    assert {_mode(p) for p in dirs} == {0o750}
    marker = json.loads((volume / ".biosim").read_text())
    assert marker["biosim_version"] == biosim.__version__ and len(marker["spec_sha256"]) == 64
    assert "dataset_description.json" in marker["files"]


def test_bids_validator_ignores_the_marker(volume_run):
    exe = shutil.which("bids-validator-deno") or Path(sys.executable).parent / "bids-validator-deno"
    if not Path(exe).exists():
        pytest.skip("bids-validator-deno not installed")
    proc = subprocess.run(
        [str(exe), str(volume_run[0]), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    issues = json.loads(proc.stdout)["issues"]["issues"]
    assert not [i for i in issues if ".biosim" in (i.get("location") or "")]


def test_run_into_the_current_folder(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny), "-o", ".", "--no-progress"]) == 0
    assert (tmp_path / "dataset_description.json").is_file()
    assert (tmp_path / ".biosim").is_file()
    assert {_mode(p) for p in tmp_path.rglob("*") if p.is_file()} == {0o644}
    # now not empty: refused at once, with the reason
    capsys.readouterr()
    assert main(["run", str(tiny), "-o", ".", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    # --overwrite replaces a dataset biosim wrote (in place)
    inode = tmp_path.stat().st_ino
    (tmp_path / "derivatives" / "biosim-report" / "activity.png").unlink()
    assert main(["run", str(tiny), "-o", ".", "--overwrite", "--no-progress"]) == 0
    assert (tmp_path / "derivatives" / "biosim-report" / "activity.png").is_file()
    assert tmp_path.stat().st_ino == inode


def test_overwrite_refuses_a_folder_biosim_did_not_write(tiny, tmp_path, capsys, monkeypatch):
    from biosim.experiment import pipeline

    def no_simulation(*args, **kwargs):
        raise AssertionError("refused only after simulating")

    monkeypatch.setattr(pipeline, "simulate_activity", no_simulation)
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    assert main(["run", str(tiny), "-o", str(folder), "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and str(folder) in err and "chapter1.tex" in err
    assert [p.name for p in folder.iterdir()] == ["chapter1.tex"]
    assert (folder / "chapter1.tex").read_text() == "precious"


def test_examples_copy_keeps_edited_copies(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert main(["examples", "--copy", str(tmp_path)]) == 0
        assert {_mode(p) for p in tmp_path.iterdir()} == {0o644}
    finally:
        os.umask(old)
    edited = tmp_path / "fmri.toml"
    edited.write_text(edited.read_text() + "# my change\n")
    capsys.readouterr()
    assert main(["examples", "--copy", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(edited) in err and "--overwrite" in err
    assert edited.read_text().endswith("# my change\n")
    assert main(["examples", "--copy", str(tmp_path), "--overwrite"]) == 0
    assert "# my change" not in edited.read_text()
    assert main(["examples", "--copy", str(tmp_path)]) == 0  # identical copies: fine


def test_sweep_runs_honour_the_umask_and_overwrite_only_biosim_folders(tiny, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", str(tiny), "-o", str(out), "--scheduler", "sequential", "--no-progress"]
    assert main(args) == 0
    run = next(p for p in out.iterdir() if p.is_dir())
    assert {_mode(p) for p in run.rglob("*") if p.is_file()} == {0o644}
    assert {_mode(p) for p in [run, *run.rglob("*")] if p.is_dir()} == {0o755}
    assert "sweep_run.json" in json.loads((run / ".biosim").read_text())["files"]
    # a run folder that holds someone's file is not replaced by --overwrite
    (run / "sweep_run.json").write_text("{}")  # a different spec: stale
    (run / "mine.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 2
    assert "mine.txt" in capsys.readouterr().err and (run / "mine.txt").is_file()
    (run / "mine.txt").unlink()
    assert main([*args, "--overwrite"]) == 0


# ----------------------------------------------------------------------------- real signals
def _start(args, cwd):
    env = dict(os.environ, BIOSIM_PROGRESS="0")
    root = str(Path(biosim.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    # python -m biosim.cli, with Python's usual SIGINT handler even when the tests run
    # in a background job (which ignores SIGINT, and biosim honours an ignored signal)
    code = (
        "import signal, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('biosim.cli', run_name='__main__')"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc, ready, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"finished before the signal (rc {proc.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run never started staging")
        time.sleep(0.02)


def _stages(folder, pattern):
    return list(Path(folder).glob(pattern)) if Path(folder).is_dir() else []


@pytest.mark.parametrize(
    "sig, where, existing",
    [
        (signal.SIGINT, "compile", False),  # as soon as staging starts: JAX is compiling
        (signal.SIGTERM, "compile", True),  # an existing empty folder (a mount point)
        (signal.SIGTERM, "devices", False),  # while the scanner is simulated
    ],
)
def test_signal_stops_run_cleanly(tiny, tmp_path, sig, where, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        inode = out.stat().st_ino
        pattern, parent = ".biosim-*.partial", out
    else:
        pattern, parent = ".out.*.partial", tmp_path
    proc = _start(["run", str(tiny), "-o", str(out), "--no-progress"], tmp_path)
    if where == "compile":
        _wait_for(proc, lambda: _stages(parent, pattern))
    else:
        _wait_for(proc, lambda: any((s / "sub-01").is_dir() for s in _stages(parent, pattern)))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    name = signal.Signals(sig).name
    assert err.strip().splitlines() == [
        f"biosim: interrupted ({name}); nothing was written to {out}"
    ]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out"]
    assert leftovers == []
    if existing:
        assert out.stat().st_ino == inode and list(out.iterdir()) == []
    else:
        assert not out.exists()


def test_sigterm_stops_a_sweep_without_hidden_folders(tiny, tmp_path):
    out = tmp_path / "sweep"
    proc = _start(
        [
            "sweep",
            str(tiny),
            "-o",
            str(out),
            "--seeds",
            "0-1",
            "--scheduler",
            "sequential",
            "--no-progress",
        ],
        tmp_path,
    )
    _wait_for(proc, lambda: _stages(out, ".*.sweep-partial"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "interrupted (SIGTERM)" in err
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["summary"]["pending"] >= 1


_SLOW_COMPILE = """
import os, pathlib, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
import jax, jax.numpy as jnp
from biosim.cli import main
from biosim.experiment import pipeline

def slow_compile(*args, **kwargs):  # an XLA compile of several seconds
    def body(i, x):
        return jnp.linalg.solve(jnp.eye(40) + 0.01 * jnp.outer(x, x), x) * jnp.sin(x).sum()
    def f(x):
        for k in range(60):
            x = jax.lax.fori_loop(0, 3, body, x) + k
        return x
    lowered = jax.jit(f).lower(jnp.ones(40))
    pathlib.Path(os.environ["MARK"]).touch()
    lowered.compile()
    raise AssertionError("the compile was not interrupted")

pipeline.simulate_activity = slow_compile
sys.argv = ["biosim", "run", os.environ["SPEC"], "-o", os.environ["OUT"], "--no-progress"]
main()
"""


def test_sigint_during_an_xla_compile(tiny, tmp_path):
    """Ctrl-C during an XLA compile once ended in a segmentation fault (rc 139) as
    the interpreter shut down around the still-running compile; biosim now leaves
    with os._exit after removing the staging folder."""
    out, mark = tmp_path / "out", tmp_path / "compiling"
    env = dict(os.environ, BIOSIM_PROGRESS="0", SPEC=str(tiny), OUT=str(out), MARK=str(mark))
    root = str(Path(biosim.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_COMPILE],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(proc, mark.exists)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        f"biosim: interrupted (SIGINT); nothing was written to {out}"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compiling"]
