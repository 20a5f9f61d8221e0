"""Atomic file and folder output (re-exported from :mod:`biosim._core.atomic`,
so that every layer can write atomically without importing upward)."""

from .._core.atomic import atomic_directory, atomic_path, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_directory", "atomic_path", "atomic_write_bytes", "atomic_write_text"]
