import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.mri.shim import shim, shim_basis


def _grid(shape=(12, 10, 8), vox=4.0):
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = -vox * (np.array(shape) - 1) / 2
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return aff, (idx @ aff[:3, :3].T + aff[:3, 3]) * 1e-3


def test_shim_removes_second_order_fields_exactly_and_keeps_higher_orders():
    aff, p = _grid()
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    low = 20 + 300 * x - 50 * z + 4e3 * x * y + 2e3 * (2 * z**2 - x**2 - y**2)
    mask = np.ones(x.shape, bool)
    out, coef = shim(low, mask, aff)
    np.testing.assert_allclose(out, 0, atol=1e-9)
    cubic = 1e5 * x**3
    out3, _ = shim(low + cubic, mask, aff)
    # what stays is the cubic minus its own projection on the shim space
    assert 0.1 * np.std(cubic) < np.std(out3) < np.std(cubic)
    lin, _ = shim(low, mask, aff, order=1)
    assert np.std(lin) > 0.5  # linear shims leave the 2nd-order part (std 0.81 Hz here)


def test_shim_over_a_mask_only_fits_the_mask():
    aff, p = _grid()
    f = 10 * p[..., 0] * 1e3
    mask = p[..., 2] > 0
    f_out = f.copy()
    f_out[~mask] += 500.0  # outside the mask: ignored by the fit
    out, _ = shim(f_out, mask, aff, order=1)
    np.testing.assert_allclose(out[mask], 0, atol=1e-9)


def test_shim_errors():
    aff, p = _grid()
    with pytest.raises(ParameterError, match="order"):
        shim_basis(p.reshape(-1, 3), 3)
    with pytest.raises(ParameterError, match="mask"):
        shim(np.zeros((12, 10, 8)), np.zeros((12, 10, 8), bool), aff)
