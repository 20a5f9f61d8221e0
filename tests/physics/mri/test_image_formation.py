"""EPI image formation: exactness without decay, distortion shift, T2* blurring, noise, timing."""

import jax
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.mri import image_formation as imf

FOV = (0.064, 0.064)


def _phantom(n=16):
    img = np.zeros((n, n))
    img[5:11, 4:12] = 1.0
    img[7:9, 6:8] = 2.0
    return img


def test_no_decay_reconstructs_exactly():
    rho = _phantom()
    k = imf.epi_kspace(rho, 0.0, FOV, echo_time=0.03, echo_spacing=5e-4)
    np.testing.assert_allclose(np.asarray(imf.reconstruct(k)).real, rho, atol=1e-12)


def test_off_resonance_shifts_along_phase_encode():
    n, esp = 16, 5e-4
    rho = np.zeros((n, n))
    rho[8, 8] = 1.0
    df = 2.0 / (n * esp)  # expected shift: df * Ny * ESP = 2 pixels
    img = np.abs(
        np.asarray(imf.reconstruct(imf.epi_kspace(rho, 0.0, FOV, 0.03, esp, off_resonance=df)))
    )
    ix, iy = np.unravel_index(np.argmax(img), img.shape)
    assert ix == 8 and abs(iy - 8) == 2


def test_t2star_blurs_phase_encode_direction():
    n = 16
    rho = np.zeros((n, n))
    rho[8, 8] = 1.0

    def width(r2):
        img = np.abs(np.asarray(imf.reconstruct(imf.epi_kspace(rho, r2, FOV, 0.03, 1e-3))))
        return img[8].sum() / img[8].max(), img[:, 8].sum() / img[:, 8].max()

    w_pe_sharp, w_pe_blur = width(1.0)[0], width(150.0)[0]
    assert w_pe_blur > 1.3 * w_pe_sharp


def test_rician_noise_and_timing():
    rho = np.full((16, 16), 10.0)
    k = imf.epi_kspace(rho, 0.0, FOV, 0.03, 5e-4)
    noisy = imf.reconstruct(imf.add_thermal_noise(k, 0.5, jax.random.PRNGKey(1)))
    resid = np.asarray(noisy) - rho
    assert resid.real.std() == pytest.approx(0.5, rel=0.15)
    np.testing.assert_allclose(imf.slice_timing(2.0, 4, "interleaved"), [0.0, 1.0, 0.5, 1.5])
    with pytest.raises(ParameterError, match="echo_time"):
        imf.epi_kspace(rho, 0.0, FOV, echo_time=0.001, echo_spacing=5e-4)
    with pytest.raises(ParameterError, match="order"):
        imf.slice_timing(2.0, 4, "random")
