"""Progress reporting for long work.

Progress bars (tqdm) are shown only when standard error is a terminal, and
never when ``BIOSIM_PROGRESS=0`` is set or ``disable=True`` is passed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(disable: bool | None = None) -> bool:
    """Whether progress bars should be drawn."""
    if disable is not None:
        return not disable
    if os.environ.get("BIOSIM_PROGRESS", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", disable: bool | None = None
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when progress is enabled."""
    if not progress_enabled(disable):
        yield from iterable
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a core dependency, but degrade gracefully
        yield from iterable
        return
    yield from tqdm(iterable, total=total, desc=desc, leave=False)
