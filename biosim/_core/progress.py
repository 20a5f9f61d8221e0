"""Progress reporting for long work.

One rule decides whether anything is drawn (:func:`progress_enabled`): a bar is
shown only when

* standard error is a terminal (never into a piped or redirected log),
* ``BIOSIM_PROGRESS`` is not ``0`` (or ``false``, ``no``, ``off``),
* no enclosing :func:`quiet` block is active (``biosim run --quiet``), and
* the caller did not pass ``disable=True``.

A caller can only switch progress *off*: ``disable=False`` does not force a bar
into a log or past ``BIOSIM_PROGRESS=0``.

:func:`progress` wraps an iterable; :func:`task` is a bar updated by hand (with a
free-text status such as the free energy of a fit); :func:`phase` shows a
single step of unknown length (a factorisation) with its elapsed time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_OFF = {"0", "false", "no", "off"}
_QUIET = 0  # depth of active quiet() blocks
_LOCK = threading.Lock()


def progress_enabled(disable: bool | None = None) -> bool:
    """Whether progress bars should be drawn (see the module docstring).

    Parameters
    ----------
    disable : bool or None
        ``True`` switches progress off; ``False`` or ``None`` leave the decision
        to the terminal, ``BIOSIM_PROGRESS`` and :func:`quiet`.
    """
    if disable:
        return False
    if _QUIET > 0:
        return False
    if os.environ.get("BIOSIM_PROGRESS", "1").strip().lower() in _OFF:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


@contextlib.contextmanager
def quiet(active: bool = True):
    """Within this block no progress is drawn (``biosim run --quiet``)."""
    global _QUIET
    if not active:
        yield
        return
    with _LOCK:
        _QUIET += 1
    try:
        yield
    finally:
        with _LOCK:
            _QUIET -= 1


def _size() -> dict:
    """Bar size: the terminal's, or 80 x 24 where it reports none (a pseudo-terminal
    without a size, where tqdm would hide every bar)."""
    cols, rows = shutil.get_terminal_size((80, 24))
    return {"ncols": cols if cols > 0 else 80, "nrows": rows if rows > 0 else 24}


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a core dependency, but degrade gracefully
        return None
    return tqdm


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", disable: bool | None = None
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when progress is enabled."""
    tqdm = _tqdm() if progress_enabled(disable) else None
    if tqdm is None:
        yield from iterable
        return
    yield from tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, **_size())


class _NoBar:
    """What :func:`task` yields when nothing is drawn: every call is a no-op."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_bar(
    desc: str,
    total: int | None = None,
    unit: str = "it",
    disable: bool | None = None,
    bar_format: str | None = None,
):
    """A tqdm bar on standard error when progress is enabled, else a no-op stand-in
    (``update``, ``set_postfix_str``, ``refresh``, ``close``); the caller closes it."""
    tqdm = _tqdm() if progress_enabled(disable) else None
    if tqdm is None:
        return _NoBar()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        file=sys.stderr,
        bar_format=bar_format,
        **_size(),
    )


@contextlib.contextmanager
def task(
    desc: str,
    total: int | None = None,
    unit: str = "it",
    disable: bool | None = None,
    bar_format: str | None = None,
):
    """A bar advanced by hand: ``with task("DCM", total=64) as bar: bar.update()``.

    The bar's elapsed time is refreshed about once a second even between
    updates, so a slow step still shows the run is alive.
    """
    bar = open_bar(desc, total, unit, disable, bar_format)
    if isinstance(bar, _NoBar):
        yield bar
        return
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield bar
    finally:
        stop.set()
        ticker.join()
        bar.close()


@contextlib.contextmanager
def phase(desc: str, disable: bool | None = None):
    """One step of unknown length, shown with its elapsed time while it runs."""
    with task(desc, disable=disable, bar_format="{desc}: running, {elapsed} elapsed"):
        yield
