import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biosim._core import ParameterError, pytree_dataclass, static_field, x64_enabled
from biosim._core.atomic import atomic_directory, atomic_write_text
from biosim._core.validation import check_finite, check_positive, check_range, check_shape


def test_x64_enabled_by_import():
    assert x64_enabled()
    assert jnp.zeros(1).dtype == jnp.float64


def test_x64_opt_out_by_environment():
    code = "import biosim, jax.numpy as jnp; print(jnp.zeros(1).dtype)"
    env = dict(os.environ, BIOSIM_X64="0")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "float32"


def test_require_float64_warns_in_float32():
    code = (
        "import warnings, biosim; from biosim._core import require_float64, PrecisionError\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always'); require_float64('BEM solve')\n"
        "assert 'BEM solve' in str(w[0].message)\n"
        "try:\n    require_float64('BEM solve', strict=True)\n"
        "except PrecisionError: print('raised')\n"
    )
    env = dict(os.environ, BIOSIM_X64="0")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "raised"


def test_pytree_dataclass_leaves_and_static():
    @pytree_dataclass
    class P:
        a: float = 1.0
        n: int = static_field(default=3)

    p = P(a=2.0)
    assert jax.tree_util.tree_leaves(p) == [2.0]
    g = jax.grad(lambda q: q.a**2 * q.n)(p)
    assert g.a == pytest.approx(12.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.a = 3.0


def test_checks_name_argument_value_and_expectation():
    with pytest.raises(
        ParameterError, match=r"TR = -1.0 is invalid: expected a positive value in s"
    ):
        check_positive("TR", -1.0, "s")
    with pytest.raises(ParameterError, match=r"data = \[1.0, nan\] is invalid: expected finite"):
        check_finite("data", np.array([1.0, np.nan]))
    with pytest.raises(ParameterError, match="array with 1 non-finite"):
        check_finite("data", np.r_[np.ones(9), np.inf])
    with pytest.raises(ParameterError, match=r"flip_angle"):
        check_range("flip_angle", 200.0, 0.0, 180.0, "deg")
    with pytest.raises(ParameterError, match=r"shape \(n, 3\)"):
        check_shape("positions", np.zeros((4, 2)), (None, 3))
    # no-ops under tracing
    jax.jit(lambda x: (check_positive("x", x), x)[1])(-1.0)


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "dataset"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            atomic_write_text(tmp / "half.txt", "x")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        atomic_write_text(tmp / "done.txt", "ok")
    assert (target / "done.txt").read_text() == "ok"
    with pytest.raises(FileExistsError):
        with atomic_directory(target):
            pass
