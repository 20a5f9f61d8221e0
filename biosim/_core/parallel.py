"""Thread-parallel evaluation of compiled JAX functions over independent sources.

XLA releases the GIL while a compiled computation runs, and on CPU a single
fused elementwise computation uses one core.  Lead-field assembly is
independent per source, so splitting the sources into equal chunks (padded to
one shape, so a single compilation serves all chunks) and running the chunks
on a thread pool uses every core.  Under ``jax.jit``/``grad`` tracing the
function is called directly.  ``BIOSIM_NUM_THREADS`` sets the pool size
(default: the number of CPUs, at most 8).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp

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
    chunks = [padded[i * size:(i + 1) * size] for i in range(n)]
    results = list(_pool(n).map(lambda c: jax.block_until_ready(fn(c)), chunks))
    out = jnp.concatenate(results, axis=axis)
    return jax.lax.slice_in_dim(out, 0, count, axis=axis)
