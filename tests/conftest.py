"""Shared test configuration: float64 on, progress bars off, compiled XLA
executables cached on disk, the BIDS validator.

Most of the suite's time is JAX compilation, and much of it is repeated: the
two xdist workers compile the same functions, and functions rebuilt around new
closures (a BEM forward per geometry, a model per fit) retrace to the same
program.  JAX's persistent compilation cache lets every later compilation of
an identical program load the executable instead (the key is the program, the
compile options, the backend and the JAX version, so a hit is the same
machine code).  It lives in pytest's cache directory
(``.pytest_cache/d/jax-compilation``; capped at 1 GiB, least recently used
first out, where ``filelock`` is installed; ``--cache-clear`` empties it);
``BIOSIM_TEST_JAX_CACHE=0`` turns it off, ``BIOSIM_TEST_JAX_CACHE=/some/dir``
puts it elsewhere.

After each test module (its module fixtures torn down) the in-memory JAX
caches are dropped and freed heap returned to the system, so that a worker's
resident memory does not grow with every module it has run (a later module
compiling the same program loads it from the disk cache).
"""

import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("BIOSIM_PROGRESS", "0")

import jax  # noqa: E402

import biosim  # noqa: E402,F401  (applies the float64 policy)

_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _share_the_cores_between_workers(config):
    """Under xdist (-n N), give each worker's BLAS cpu_count // N threads.

    With the default (a BLAS thread per core in every worker) the workers'
    BLAS threads spin while the other worker holds the cores: on 2 cores with
    -n 2 an eLORETA solve (numpy pinv / eigh) took 27 s of CPU instead of
    0.95 s, and the inference tests ran 2x longer.  Set in the controller
    before the workers start (they inherit the environment, and their numpy
    reads it on import); a variable already set is left alone."""
    n = getattr(config.option, "numprocesses", None)
    if hasattr(config, "workerinput") or not n:
        return
    cores = os.cpu_count() or 1
    n = cores if isinstance(n, str) else int(n)
    for var in _BLAS_THREADS:
        os.environ.setdefault(var, str(max(1, cores // max(n, 1))))


def pytest_configure(config):
    _share_the_cores_between_workers(config)
    where = os.environ.get("BIOSIM_TEST_JAX_CACHE", "")
    if where == "0":
        return
    if not where:
        cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
        where = (
            str(cache.mkdir("jax-compilation"))
            if cache is not None
            else os.path.join(tempfile.gettempdir(), "biosim-test-jax-compilation")
        )
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:
        import filelock  # noqa: F401  (JAX needs it to evict; without it the cache is unbounded)

        jax.config.update("jax_compilation_cache_max_size", 1 << 30)
    except ImportError:
        pass


try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if nextitem is None or nextitem.module is not item.module:
        jax.clear_caches()
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)


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


#: A small fMRI experiment (2 regions, 20 s, an 8 x 8 x 1 EPI of 24 mm voxels through the
#: occipital cortex) that runs in seconds.
TINY_TOML = """
[experiment]
name = "tiny"
seed = 0
duration = 20.0

[subject]
regions = ["V1", "V5"]
voxel_size = 24.0

[activity]
dt = 0.1
[activity.drive]
visual = [0.15, 0.10]
attention = [0.0, 0.08]

[protocol]
blocks = [
  { onset = 4.0, duration = 6.0, condition = "visual" },
  { onset = 12.0, duration = 4.0, condition = "attention" },
]

[devices.mri]
field_strength = 3.0
tr = 2.0
te = 0.03
matrix = [8, 8]
n_slices = 1
noise_std = 2.0
anatomical = false
"""


#: A three-region fMRI experiment of the "drive" activity model (whole brain at 4 mm).
DRIVE_TOML = """
[experiment]
name = "drive"
duration = 240.0

[subject]
regions = ["V1", "V5", "PFC"]
voxel_size = 4.0

[activity]
model = "drive"
dt = 0.1
[activity.drive]
visual = [0.15, 0.10, 0.0]
attention = [0.0, 0.08, 0.12]

[protocol]
blocks = [
  { onset = 20.0, duration = 20.0, condition = "visual" },
  { onset = 60.0, duration = 20.0, condition = "attention" },
]

[devices.mri]
field_strength = 3.0
tr = 2.0
te = 0.03  # s
flip_angle = 77.0
matrix = [48, 48]
n_slices = 28
noise_std = 3.0
"""


@pytest.fixture(scope="session")
def tiny_toml(tmp_path_factory):
    """Path of :data:`TINY_TOML` written to a file."""
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path
