"""Atomic output: umask permissions, filling an existing empty folder in place,
overwriting only what biosim wrote, and signals turned into a clean exception."""

import gc
import os
import signal
import stat
import time

import pytest

from biosim._core import interrupt
from biosim._core.atomic import MARKER, atomic_directory, atomic_write_text, why_not_replaceable


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(
    "mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]
)
@pytest.mark.parametrize("existing", [False, True])
def test_output_honours_the_umask(tmp_path, umask, mask, file_mode, dir_mode, existing):
    umask(mask)
    target = tmp_path / "ds"
    if existing:
        target.mkdir()
    with atomic_directory(target, marker={"x": 1}) as tmp:
        atomic_write_text(tmp / "a.txt", "a")
        atomic_write_text(tmp / "sub" / "b.txt", "b")
    if not existing:  # the folder biosim created; an existing one keeps its own mode
        assert _mode(target) == dir_mode
    assert _mode(target / "sub") == dir_mode
    for f in ("a.txt", "sub/b.txt", MARKER):
        assert _mode(target / f) == file_mode, f


def test_empty_folder_is_filled_in_place(tmp_path, monkeypatch):
    target = tmp_path / "volume"
    target.mkdir()
    inode = target.stat().st_ino
    with atomic_directory(target, marker={}) as tmp:
        assert tmp.parent == target and tmp.name.startswith(".biosim-")
        atomic_write_text(tmp / "dataset_description.json", "{}")
    assert target.stat().st_ino == inode
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "dataset_description.json"]
    # the current folder (-o .)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with atomic_directory(".") as tmp:
        atomic_write_text(tmp / "x.txt", "x")
    assert sorted(p.name for p in cwd.iterdir()) == ["x.txt"]


def test_failure_leaves_the_empty_folder_empty(tmp_path):
    target = tmp_path / "volume"
    target.mkdir()
    with pytest.raises(interrupt.Interrupted):
        with atomic_directory(target) as tmp:
            atomic_write_text(tmp / "half.txt", "x")
            raise interrupt.Interrupted(signal.SIGTERM)
    assert list(target.iterdir()) == []


def test_overwrite_replaces_only_what_biosim_wrote(tmp_path):
    target = tmp_path / "ds"
    with atomic_directory(target, marker={"v": 1}) as tmp:
        atomic_write_text(tmp / "sub" / "old.txt", "old")
    inode = target.stat().st_ino
    with pytest.raises(FileExistsError, match="not empty"):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True, marker={"v": 2}) as tmp:
        atomic_write_text(tmp / "new.txt", "new")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "new.txt"]
    assert target.stat().st_ino == inode  # replaced in place (works on a mount point)
    # a file biosim did not write blocks --overwrite, before the block runs
    atomic_write_text(target / "notes.txt", "mine")
    assert "notes.txt" in why_not_replaceable(target)
    with pytest.raises(FileExistsError, match=r"refusing to overwrite .*notes\.txt"):
        with atomic_directory(target, overwrite=True):
            raise AssertionError("must not run")
    # a folder of someone else's files
    other = tmp_path / "thesis"
    atomic_write_text(other / "chapter1.tex", "precious")
    with pytest.raises(FileExistsError, match=r"not written by biosim .*chapter1\.tex"):
        with atomic_directory(other, overwrite=True):
            raise AssertionError("must not run")
    assert (other / "chapter1.tex").read_text() == "precious"
    assert (target / "notes.txt").read_text() == "mine"


def test_signal_is_raised_and_deferred():
    with interrupt.handle_signals():
        with pytest.raises(interrupt.Interrupted) as exc:
            os.kill(os.getpid(), signal.SIGTERM)
        assert exc.value.exit_status == 143 and str(exc.value) == "interrupted (SIGTERM)"
        with pytest.raises(interrupt.Interrupted):
            with interrupt.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done = True  # the block finishes before the exception
        assert done
    assert interrupt.pending() is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_signal_in_a_gc_callback_is_not_lost():
    """JAX's gc callback is often the first Python code to run after an XLA compile;
    an exception raised there would be printed and ignored, and the run would go on."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            # SIGTERM: pytest-xdist workers ignore SIGINT, and an ignored signal stays ignored
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs in this frame

    with interrupt.handle_signals():
        gc.callbacks.append(callback)
        try:
            with pytest.raises(interrupt.Interrupted) as exc:
                gc.collect()
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            gc.callbacks.remove(callback)
    assert fired and exc.value.signum == signal.SIGTERM
