"""Thread-parallel evaluation of compiled JAX functions over independent sources.

XLA releases the GIL while a compiled computation runs, and on CPU a single
fused elementwise computation uses one core.  Lead-field assembly is
independent per source, so splitting the sources into equal chunks (padded to
one shape, so a single compilation serves all chunks) and running the chunks
on a thread pool uses every core.  Under ``jax.jit``/``grad`` tracing the
function is called directly.  ``BIOSIM_NUM_THREADS`` sets the pool size
(default: the number of CPUs, at most 8).  :func:`run_chunks` and
:func:`run_chunks_axis1` run a function over fixed-size row chunks of concrete
numpy arrays on the same pool.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from .validation import is_concrete

_POOL = None


def n_threads() -> int:
    value = os.environ.get("BIOSIM_NUM_THREADS")
    return max(1, int(value)) if value else max(1, min(8, os.cpu_count() or 1))


def _pool(n):
    global _POOL
    if _POOL is None or _POOL._max_workers != n:
        _POOL = ThreadPoolExecutor(n)
    return _POOL


def map_over_sources(fn, positions, axis=1, min_per_thread=256):
    """``fn(positions)`` computed in parallel chunks of ``positions`` (n, 3),
    concatenated along ``axis`` of the result."""
    n = n_threads()
    count = positions.shape[0]
    if n == 1 or count < 2 * min_per_thread or not is_concrete(positions):
        return fn(positions)
    size = -(-count // n)
    pad = size * n - count
    padded = jnp.concatenate([positions, jnp.repeat(positions[-1:], pad, axis=0)])
    chunks = [padded[i * size : (i + 1) * size] for i in range(n)]
    results = list(_pool(n).map(lambda c: jax.block_until_ready(fn(c)), chunks))
    out = jnp.concatenate(results, axis=axis)
    return jax.lax.slice_in_dim(out, 0, count, axis=axis)


def run_chunks(fn, arrays, n, chunk, n_out=1):
    """``fn`` over rows ``[s, s + chunk)`` of ``arrays``, stacked along axis 0.

    ``fn`` (usually jitted) takes one chunk of every array in ``arrays`` (each
    with ``n`` rows) and returns ``n_out`` arrays with one row per input row.
    The last chunk is padded by repeating its last row, so one compilation
    serves all; chunks run on the shared thread pool (XLA releases the GIL) and
    each result is copied into the output as it arrives.  Returns one array
    (``n_out=1``) or a list of ``n_out``; None for ``n = 0``."""
    starts = list(range(0, n, chunk))

    def one(s):
        e = min(s + chunk, n)
        parts = [x[s:e] for x in arrays]
        if e - s < chunk:
            parts = [np.concatenate([p, np.repeat(p[-1:], chunk - (e - s), axis=0)]) for p in parts]
        res = jax.block_until_ready(fn(*parts))
        res = (res,) if n_out == 1 else res
        return [np.asarray(r)[: e - s] for r in res]

    if not starts:
        return None
    if n_threads() > 1 and len(starts) > 1:
        results = _pool(n_threads()).map(one, starts)  # in order, as they complete
    else:
        results = (one(s) for s in starts)
    out = None
    for s, res in zip(starts, results):
        if out is None:
            out = [np.empty((n,) + r.shape[1:], r.dtype) for r in res]
        for o, r in zip(out, res):
            o[s : s + len(r)] = r
    return out[0] if n_out == 1 else out


def run_chunks_axis1(fn, positions, chunk):
    """``fn`` over padded chunks of ``positions`` ((n, ...), ``chunk`` rows
    each), on the shared thread pool, its (C, chunk, ...) results concatenated
    along axis 1 into (C, n, ...)."""
    n = len(positions)
    starts = list(range(0, n, chunk))

    def one(s):
        e = min(s + chunk, n)
        p = positions[s:e]
        if e - s < chunk:
            p = np.concatenate([p, np.repeat(p[-1:], chunk - (e - s), axis=0)])
        return np.asarray(fn(p))[:, : e - s]

    if n_threads() > 1 and len(starts) > 1:
        res = list(_pool(n_threads()).map(one, starts))
    else:
        res = [one(s) for s in starts]
    return np.concatenate(res, axis=1)


@contextlib.contextmanager
def single_threaded_blas():
    """Run NumPy's BLAS/LAPACK on one thread inside the block.

    Dense algebra on a few hundred unknowns (the variational Laplace steps) is
    no faster on two threads, and when other processes share the cores a
    multi-threaded BLAS oversubscribes them: a 263 x 263 inverse measured
    0.44 s against 22 ms single-threaded on the 2-core machine.  Needs
    ``threadpoolctl``; without it the block runs unchanged.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
