"""Atomic file and folder output.

A failed or interrupted run must never leave a half-written output that looks
complete.  Files are written to a temporary sibling and renamed into place
(``os.replace`` is atomic on POSIX).  A dataset folder is built in a hidden
staging folder and moved into place once everything inside has been written:

- a folder that does not exist yet is staged beside it and renamed;
- an existing *empty* folder (``-o .``, a Docker volume or another mount point,
  which cannot be renamed over) is filled in place: the staging folder is made
  inside it and its entries are moved up at the end, so the folder itself (its
  inode, owner and mount) is kept;
- an existing non-empty folder is refused, unless ``overwrite`` is asked *and*
  the folder was written by biosim: it holds the marker file :data:`MARKER`
  listing the files biosim wrote there, and nothing else.  Its contents are then
  replaced, in place, once the new dataset is complete.

Permissions follow the umask like any other program's output (0644 files and
0755 folders with the usual umask 022), not the 0600/0700 of :mod:`tempfile`.
SIGINT/SIGTERM raised as :class:`~biosim._core.interrupt.Interrupted` are
cleaned up like any other error; the final moves run with signals held
(:func:`~biosim._core.interrupt.deferred`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from .interrupt import check as _check_interrupt
from .interrupt import deferred

#: hidden file at the root of every dataset biosim writes: what wrote it and which files
MARKER = ".biosim"
_STAGE_PREFIX = ".biosim-"
_STAGE_SUFFIXES = (".partial", ".old")


def _new_name(parent: Path, prefix: str, suffix: str) -> Path:
    return parent / f"{prefix}{secrets.token_hex(4)}{suffix}"


def make_temp_file(parent: str | os.PathLike, prefix: str, suffix: str) -> Path:
    """Create an empty, uniquely named file in ``parent`` with umask permissions."""
    parent = Path(parent)
    while True:
        path = _new_name(parent, prefix, suffix)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path


def make_temp_dir(parent: str | os.PathLike, prefix: str, suffix: str) -> Path:
    """Create a uniquely named folder in ``parent`` with umask permissions."""
    parent = Path(parent)
    while True:
        path = _new_name(parent, prefix, suffix)
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a staging folder, with SIGINT/SIGTERM held so it is not left half-removed."""
    with deferred(raise_after=False):
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Works for writers that need a file *name* (nibabel, mne, matplotlib).
    The temporary keeps the final suffix(es) so that writers choosing a format
    from the extension still work.
    """
    _check_interrupt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    tmp_path = make_temp_file(path.parent, f".{path.name.split('.')[0]}.", f".part{suffix}")
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ----------------------------------------------------------------------------- dataset folders
def _is_stage(name: str) -> bool:
    return name.startswith(_STAGE_PREFIX) and name.endswith(_STAGE_SUFFIXES)


def _files_under(folder: Path) -> list[str]:
    """Relative POSIX paths of every file (and link) under ``folder``, sorted."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / f).as_posix() for f in files]
        out += [(rel / d).as_posix() for d in dirs if os.path.islink(os.path.join(root, d))]
    return sorted(out)


def write_marker(folder: str | os.PathLike, info: Mapping | None = None) -> None:
    """Write :data:`MARKER` into ``folder``: ``info`` plus the list of its files."""
    folder = Path(folder)
    doc = {"written_by": "biosim", **(info or {})}
    doc["files"] = [f for f in _files_under(folder) if f != MARKER]
    atomic_write_text(folder / MARKER, json.dumps(doc, indent=2, default=str) + "\n")


def add_to_marker(folder: str | os.PathLike, names: list[str]) -> None:
    """Record files added to a finished biosim folder (relative paths) in its marker."""
    folder = Path(folder)
    doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    doc["files"] = sorted(set(doc.get("files", [])) | set(names))
    atomic_write_text(folder / MARKER, json.dumps(doc, indent=2, default=str) + "\n")


def why_not_replaceable(folder: str | os.PathLike) -> str | None:
    """``None`` when ``folder`` holds only what biosim wrote there (its marker lists
    every file), else a sentence saying why it must not be replaced."""
    folder = Path(folder)
    entries = [e for e in folder.iterdir() if not _is_stage(e.name)]
    if not entries:
        return None  # empty, or only staging folders left by a killed biosim run
    marker = folder / MARKER
    if not marker.is_file():
        names = ", ".join(sorted(e.name for e in entries)[:5])
        return (
            f"it was not written by biosim (no {MARKER} marker file; it holds {names}"
            f"{', ...' if len(entries) > 5 else ''})"
        )
    try:
        listed = set(json.loads(marker.read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MARKER} marker file is unreadable"
    extra = [
        f
        for f in _files_under(folder)
        if f != MARKER and f not in listed and not _is_stage(f.split("/")[0])
    ]
    if extra:
        more = f" (and {len(extra) - 5} more)" if len(extra) > 5 else ""
        return f"it holds files biosim did not write: {', '.join(extra[:5])}{more}"
    return None


def _move_entries(src: Path, dest: Path, last: tuple[str, ...] = ()) -> None:
    """Move every entry of ``src`` into ``dest``, the names in ``last`` at the end."""
    entries = [e for e in src.iterdir() if e.name not in last]
    entries += [src / name for name in last if (src / name).exists()]
    for entry in entries:
        os.replace(entry, dest / entry.name)


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike, overwrite: bool = False, marker: Mapping | None = None
) -> Iterator[Path]:
    """Build a folder in a hidden staging folder and move it to ``path`` at the end.

    Parameters
    ----------
    path : path-like
        Final folder.  When it exists and is empty it is filled in place (it can
        be a mount point, or the current folder).
    overwrite : bool
        Replace the contents of an existing non-empty folder (only once the new
        one is complete), which is allowed only for a folder biosim wrote (see
        :func:`why_not_replaceable`).  When False a non-empty folder is an error.
    marker : mapping, optional
        Written to :data:`MARKER` in the finished folder (with the list of its
        files), which makes it replaceable by a later ``overwrite``.

    Raises
    ------
    FileExistsError
        At once (before the block runs) when ``path`` is a file, or a non-empty
        folder that may not be replaced.
    """
    path = Path(os.path.abspath(path))
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"output path {str(path)!r} exists and is not a folder")
    in_place = path.is_dir()
    if in_place:
        occupied = [e for e in path.iterdir() if not _is_stage(e.name)]
        if occupied and not overwrite:
            raise FileExistsError(
                f"output folder {str(path)!r} exists and is not empty; choose another "
                "folder, or pass overwrite (--overwrite) to replace a dataset biosim wrote"
            )
        if occupied:
            why = why_not_replaceable(path)
            if why is not None:
                raise FileExistsError(
                    f"refusing to overwrite output folder {str(path)!r}: {why}. Remove "
                    "it yourself or choose another folder"
                )
        tmp = make_temp_dir(path, f"{_STAGE_PREFIX}{os.getpid()}-", ".partial")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(path.parent, f".{path.name}.", ".partial")
    try:
        yield tmp
        if marker is not None:
            write_marker(tmp, marker)
        _check_interrupt()
        with deferred(raise_after=False):  # complete once begun; the next check() raises
            if not in_place:
                os.replace(tmp, path)
            else:
                _commit_in_place(tmp, path, overwrite)
    except BaseException:
        remove_tree(tmp)
        raise


def _commit_in_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the staged entries of ``tmp`` into ``path``, the old ones out of the way."""
    old = None
    current = [e for e in path.iterdir() if e != tmp and not _is_stage(e.name)]
    if current:  # something appeared while we were simulating, or we replace a dataset
        why = why_not_replaceable(path) if overwrite else "it is no longer empty"
        if why is not None:
            raise FileExistsError(f"refusing to overwrite output folder {str(path)!r}: {why}")
        old = make_temp_dir(path, f"{_STAGE_PREFIX}{os.getpid()}-", ".old")
        for entry in current:
            os.replace(entry, old / entry.name)
    try:
        # the files that make a dataset look complete go last
        _move_entries(tmp, path, last=("dataset_description.json", MARKER))
    except BaseException:
        for entry in path.iterdir():  # roll back: the staged entries return, the old ones too
            if entry not in (tmp, old) and not _is_stage(entry.name):
                os.replace(entry, tmp / entry.name)
        if old is not None:
            _move_entries(old, path)
            old.rmdir()
        raise
    tmp.rmdir()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for entry in path.iterdir():  # staging folders left by killed runs
        if _is_stage(entry.name) and _stale(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def _stale(name: str) -> bool:
    """Whether the staging folder ``name`` belongs to a process that no longer runs."""
    try:
        pid = int(name[len(_STAGE_PREFIX) :].split("-")[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
