"""Clean interrupts: SIGINT and SIGTERM become an exception that cleanup code sees.

Python turns SIGINT into :class:`KeyboardInterrupt`, but SIGTERM (what ``timeout``,
SLURM and ``docker stop`` send) kills the process at once, so ``finally`` blocks
never run and staging folders are left behind.  :func:`handle_signals` installs
one handler for both that raises :class:`Interrupted` (a ``KeyboardInterrupt``,
so ``except Exception`` does not swallow it), which the atomic writers of
:mod:`biosim._core.atomic` clean up after.

Two places would lose the exception, and the handler avoids both:

- a signal that arrives while the main thread is inside a garbage-collector
  callback or a ``__del__`` method (JAX registers a gc callback, and it is often
  the first Python code to run after a long stretch of compiled code, such as an
  XLA compile) would be printed as "Exception ignored" and the run would go on.
  There the handler only records the signal and asks for it to be delivered
  again a moment later (:func:`_thread.interrupt_main`);
- code that must not stop half-way (moving a finished dataset into place,
  removing a staging folder) runs inside :func:`deferred`, which holds the
  signal until the block is done.

Signals are recorded even when an exception is raised, so :func:`check` (called
by the atomic writers before every file and before the final rename) raises
again if some library did catch it.

A signal during an XLA compile surfaces as the exception when JAX's compile call
checks for signals, while the compile itself goes on in the background; letting
the interpreter shut down around it ended in a segmentation fault (exit status
139) in our tests.  The ``biosim`` command therefore leaves with ``os._exit``
once the staging folders are removed (:func:`biosim.cli.main`).
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import signal
import threading
from collections.abc import Iterator

#: exit status of a process stopped by a signal, as a shell reports it
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}

_pending: int | None = None
_defer_depth = 0
_redeliver_scheduled = False
_raised = False


class Interrupted(KeyboardInterrupt):
    """The process received SIGINT or SIGTERM (``signum``)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def signame(self) -> str:
        """``"SIGINT"`` or ``"SIGTERM"``."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (128 + the signal number)."""
        return 128 + self.signum

    def __str__(self) -> str:
        return f"interrupted ({self.signame})"


def pending() -> int | None:
    """The signal received since :func:`handle_signals` started (None if none)."""
    return _pending


def check() -> None:
    """Raise :class:`Interrupted` if a signal was received (outside :func:`deferred`)."""
    global _raised
    if _pending is not None and _defer_depth == 0:
        _raised = True
        raise Interrupted(_pending)


@contextlib.contextmanager
def deferred(raise_after: bool = True) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs.

    Parameters
    ----------
    raise_after : bool
        Raise :class:`Interrupted` after the block (when it finished normally)
        if a signal arrived.  False leaves it to the next :func:`check`: the
        block's work (a finished dataset moved into place) is then kept and
        reported as written.
    """
    global _defer_depth
    _defer_depth += 1
    try:
        yield
    finally:
        _defer_depth -= 1
    if raise_after:
        check()


def _in_swallowing_frame(frame) -> bool:
    """Whether an exception raised in ``frame`` would be printed and ignored."""
    if frame is None:
        return False
    code = frame.f_code
    if code.co_name == "__del__":
        return True
    return any(getattr(cb, "__code__", None) is code for cb in gc.callbacks)


def _redeliver(signum: int) -> None:
    global _redeliver_scheduled

    def fire():
        global _redeliver_scheduled
        _redeliver_scheduled = False
        if not _raised and _pending is not None:  # not raised elsewhere meanwhile
            with contextlib.suppress(Exception):
                _thread.interrupt_main(signum)

    if not _redeliver_scheduled:
        _redeliver_scheduled = True
        timer = threading.Timer(0.05, fire)
        timer.daemon = True
        timer.start()


def _handler(signum, frame) -> None:
    global _pending, _raised
    if _pending is None or _pending == signal.SIGINT:
        _pending = signum  # a SIGTERM after a SIGINT is reported as SIGTERM
    if _defer_depth:
        return
    if _in_swallowing_frame(frame):
        _redeliver(signum)
        return
    _raised = True
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` while the block runs.

    Only in the main thread (elsewhere Python cannot install handlers: the block
    runs unchanged), and not for a signal that is ignored (``nohup``, a
    background job of a script).  The previous handlers are restored afterwards.
    """
    global _pending, _raised
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _handler)
    _pending, _raised = None, False
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _pending, _raised = None, False
