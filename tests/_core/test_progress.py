"""Progress bars: one rule (terminal, BIOSIM_PROGRESS, quiet, disable) for every
bar, and bars on the long phases (activity, devices, BEM, DCM with F, CLI)."""

import io
import sys

import numpy as np
import pytest

from biosim._core import progress as pg


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def _stderr(monkeypatch, terminal):
    """Make stderr a (fake) terminal or a pipe and unset BIOSIM_PROGRESS (set inside
    the test: pytest's capture replaces sys.stderr between fixture and test)."""
    err = FakeTTY() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delenv("BIOSIM_PROGRESS", raising=False)
    return err


def _draw_all(disable=None):
    list(pg.progress(range(3), total=3, desc="loop", disable=disable))
    with pg.task("hand", total=2, disable=disable) as bar:
        bar.set_postfix_str("F = 1.0")
        bar.update()
    with pg.phase("step", disable=disable):
        pass


def test_no_bar_into_a_pipe_even_when_asked(monkeypatch):
    pipe = _stderr(monkeypatch, False)
    # before: disable=False (what `biosim run` passes) forced bars into piped logs
    _draw_all(disable=False)
    _draw_all()
    assert pipe.getvalue() == ""
    assert not pg.progress_enabled(False)


def test_bars_on_a_terminal(monkeypatch):
    term = _stderr(monkeypatch, True)
    _draw_all()
    out = term.getvalue()
    assert "loop" in out and "hand" in out and "F = 1.0" in out and "step" in out


@pytest.mark.parametrize("value", ["0", "false", "off", " NO "])
def test_biosim_progress_0_wins(monkeypatch, value):
    term = _stderr(monkeypatch, True)
    monkeypatch.setenv("BIOSIM_PROGRESS", value)
    _draw_all(disable=False)
    assert term.getvalue() == ""


def test_quiet_and_disable_win(monkeypatch):
    term = _stderr(monkeypatch, True)
    with pg.quiet():
        _draw_all(disable=False)
        with pg.quiet(False):  # a nested no-op block keeps it quiet
            _draw_all()
    _draw_all(disable=True)
    assert term.getvalue() == ""
    assert pg.progress_enabled()  # quiet ended


def test_closed_stderr_is_not_a_terminal(monkeypatch):
    err = io.StringIO()
    err.close()
    monkeypatch.setattr(sys, "stderr", err)
    assert not pg.progress_enabled()


def test_bem_assembly_and_factorisation_bars(monkeypatch):
    term = _stderr(monkeypatch, True)
    from biosim.geometry.mesh import nested_spheres
    from biosim.physics.electromag import BEMForward, EEGSensors

    surfaces = nested_spheres([0.09], subdivisions=1, names=("scalp",))  # cheap: one shell
    ele = 0.09 * np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])
    BEMForward.create(surfaces, [0.33], eeg=EEGSensors(("a", "b", "c"), ele))
    out = term.getvalue()
    assert "BEM assembly" in out and "block" in out
    assert "BEM factorisation" in out


def test_dcm_iterations_show_free_energy(monkeypatch):
    term = _stderr(monkeypatch, True)
    from biosim.inference.dcm.variational_laplace import invert

    t = np.linspace(0, 1, 20)
    y = (2.0 * t)[:, None] + 0.01 * np.random.default_rng(0).normal(size=(20, 1))
    invert(lambda th, tt: th[0] * tt[:, None], y, [0.0], [4.0], args=(t,), max_iter=8)
    out = term.getvalue()
    assert "variational Laplace" in out and "F = " in out


def test_run_shows_phases_and_quiet_silences_them(monkeypatch, tmp_path, tiny_toml):
    term = _stderr(monkeypatch, True)
    from biosim import experiment
    from biosim.cli import main

    spec = tiny_toml
    assert main(["run", str(spec), "-o", str(tmp_path / "a")]) == 0
    out = term.getvalue()
    assert "activity" in out and "devices.mri" in out and "MRI volumes" in out
    # --quiet (and --no-progress) silence every nested bar: checked on a stand-in run
    seen = []

    def fake_run(spec, out_dir, overwrite=False, progress=True):
        with pg.quiet(not progress):
            _draw_all(disable=False)
        seen.append(progress)
        return out_dir

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    term.seek(0)
    term.truncate()
    for flag in ("--quiet", "-q", "--no-progress"):
        assert main(["run", str(spec), "-o", str(tmp_path / "b"), flag]) == 0
    assert seen == [False, False, False]
    assert "loop" not in term.getvalue()


def test_sweep_bar_follows_the_same_rule(monkeypatch):
    from biosim.experiment.sweep.execute import _Bar

    def draw():
        bar = _Bar(2, True)
        bar.update("seed-0 done")
        bar.close()

    term = _stderr(monkeypatch, True)
    draw()
    assert "biosim sweep" in term.getvalue()
    pipe = _stderr(monkeypatch, False)
    draw()
    term = _stderr(monkeypatch, True)
    monkeypatch.setenv("BIOSIM_PROGRESS", "0")
    draw()
    assert pipe.getvalue() == "" and term.getvalue() == ""
