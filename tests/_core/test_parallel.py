import jax
import jax.numpy as jnp
import numpy as np

from biosim._core.parallel import map_over_sources


def test_parallel_chunks_equal_direct_and_stay_differentiable(monkeypatch):
    monkeypatch.setenv("BIOSIM_NUM_THREADS", "3")
    fn = jax.jit(lambda p: jnp.stack([jnp.sin(p), jnp.cos(p)])[..., 0] * 2.0)  # (2, n)
    pos = jnp.asarray(np.random.default_rng(0).normal(size=(1001, 3)))
    np.testing.assert_allclose(
        map_over_sources(fn, pos, min_per_thread=100), fn(pos), rtol=0, atol=0
    )
    g = jax.grad(lambda p: map_over_sources(fn, p, min_per_thread=100).sum())(pos)
    np.testing.assert_allclose(g[:, 0], 2 * (jnp.cos(pos[:, 0]) - jnp.sin(pos[:, 0])), rtol=1e-12)
