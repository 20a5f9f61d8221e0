"""Shared test configuration: float64 on, progress bars off; the BIDS validator."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("BIOSIM_PROGRESS", "0")

import biosim  # noqa: E402,F401  (applies the float64 policy)


def _validator():
    """The ``bids-validator-deno`` executable (on PATH or beside this Python), or None."""
    found = shutil.which("bids-validator-deno")
    beside = Path(sys.executable).parent / "bids-validator-deno"
    return found or (str(beside) if beside.is_file() else None)


@pytest.fixture(scope="session")
def bids_errors():
    """``bids_errors(folder)``: the errors the official BIDS validator reports on a
    dataset (derivative datasets included), as ``"CODE location"`` lines; skips
    the test when ``bids-validator-deno`` (test extra) is not installed."""
    exe = _validator()
    if exe is None:
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")

    def run(folder):
        proc = subprocess.run(
            [exe, "--recursive", "--format", "json", str(folder)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        try:
            issues = json.loads(proc.stdout)["issues"]["issues"]
        except (ValueError, KeyError) as exc:
            raise AssertionError(
                f"bids-validator-deno gave no JSON (rc {proc.returncode}): {proc.stderr[-2000:]}"
            ) from exc
        return [
            f"{i['code']} {i.get('location', '')} {i.get('subCode') or ''}".strip()
            for i in issues
            if i["severity"] == "error"
        ]

    return run
