"""Shared test configuration: float64 on, progress bars off."""

import os

os.environ.setdefault("BIOSIM_PROGRESS", "0")

import biosim  # noqa: E402,F401  (applies the float64 policy)
