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


# --- fast line model (epi_kspace_lines): oracles for timing, distortion, blurring, batching


def _line_oracle(a, rate, df, esp):
    """Direct sum with every phase-encode line at tau_m = (m - Ny/2) esp, readout instantaneous."""
    nx, ny = a.shape
    c = ny // 2
    tau = (np.arange(ny) - c) * esp
    e = np.exp(-2j * np.pi * np.outer(np.arange(ny) - c, np.arange(ny) - c) / ny)  # (m, y)
    decay = np.exp(-tau[:, None, None] * (rate + 2j * np.pi * df))  # (m, x, y)
    g = np.einsum("mxy,my->xm", a * decay, e)
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(g, axes=0), axis=0), axes=0)


def test_lines_equal_per_line_oracle_and_exact_sum_up_to_readout_timing():
    rng = np.random.default_rng(0)
    n, te = 16, 0.03
    rho = _phantom(n) * (1 + 0.2 * rng.random((n, n)))
    r2 = 20 + 10 * rng.random((n, n))
    df0 = rng.normal(0, 1, (n, n))
    oracle_err, exact_err = [], []
    for esp, scale, rate in [
        (5e-4, 20.0, r2),
        (5e-4, 1.0, 0.0),
        (5e-4, 2.0, 0.0),
        (1e-3, 1.0, 0),
    ]:
        df = scale * df0
        a = rho * np.exp(-te * (rate + 2j * np.pi * df))  # transverse magnetisation at TE
        fast = imf.epi_kspace_lines(a, rate, esp, off_resonance=df)
        ref = _line_oracle(a, rate, df, esp)
        oracle_err.append(np.abs(fast - ref).max() / np.abs(ref).max())
        exact = np.asarray(imf.epi_kspace(rho, rate, FOV, te, esp, off_resonance=df))
        exact_err.append(np.linalg.norm(fast - exact) / np.linalg.norm(exact))
        # neglected in-line phase 2 pi df t_n, |t_n| <= esp / 2: bound pi |df| esp
        assert exact_err[-1] < np.pi * np.abs(df).max() * esp
    assert max(oracle_err) < 1e-12
    # the readout-timing error is linear in df * esp (vanishes with the readout's share)
    assert exact_err[2] / exact_err[1] == pytest.approx(2.0, rel=0.05)
    assert exact_err[3] / exact_err[1] == pytest.approx(2.0, rel=0.05)
    # without off-resonance the in-line timing only adds a readout decay ~ R2 esp
    a = rho * np.exp(-te * r2)
    exact = np.asarray(imf.epi_kspace(rho, r2, FOV, te, 5e-4))
    fast = imf.epi_kspace_lines(a, r2, 5e-4)
    assert np.linalg.norm(fast - exact) / np.linalg.norm(exact) < 30 * 5e-4 / 2


@pytest.mark.parametrize("shift_px", [1.0, 2.5, -0.3, 3.25])
def test_uniform_off_resonance_shifts_by_df_ny_esp(shift_px):
    n, esp = 32, 5e-4
    df = shift_px / (n * esp)
    y = np.arange(n) - n // 2
    blob = np.exp(-0.5 * (y[:, None] ** 2 + (y[None, :] + 2) ** 2) / 2.0**2)
    img = imf.reconstruct_hybrid(imf.epi_hybrid(blob, 0.0, esp, off_resonance=df))
    mag = np.abs(img)
    com = lambda m: (m.sum(0) * y).sum() / m.sum()  # noqa: E731
    assert com(mag) - com(blob) == pytest.approx(shift_px, abs=2e-3)
    # phase slope of the image's DFT along PE: exp(-2 pi i shift k / N)
    ratio = np.fft.fft(img[n // 2]) / np.fft.fft(blob[n // 2])
    assert np.angle(ratio[1]) == pytest.approx(-2 * np.pi * shift_px / n, abs=1e-6)


def test_t2star_psf_width_is_that_of_the_decay_window():
    n, esp = 64, 1e-3
    point = np.zeros((4, n))
    point[:, n // 2] = 1.0
    c = n // 2
    widths = []
    for r2 in (50.0, 100.0, 200.0):
        psf = np.abs(imf.reconstruct_hybrid(imf.epi_hybrid(point, r2, esp)))[0]
        # analytic PSF: DFT of the window exp(-R tau_m), tau_m = (m - c) esp
        m = np.arange(n) - c
        window_ft = np.exp(2j * np.pi * np.outer(m, m) / n) @ np.exp(-r2 * m * esp) / n
        np.testing.assert_allclose(psf, np.abs(window_ft), atol=1e-12)
        half = psf.max() / 2
        above = np.flatnonzero(psf >= half)
        lo, hi = above[0], above[-1]
        left = lo - (psf[lo] - half) / (psf[lo] - psf[lo - 1])
        right = hi + (psf[hi] - half) / (psf[hi] - psf[hi + 1])
        widths.append(right - left)
    # long-window limit: |1 / (R + 2 pi i f)|, FWHM sqrt(3) R / pi Hz = sqrt(3) R N esp / pi px
    predicted = np.sqrt(3) * 200.0 * n * esp / np.pi
    assert widths[2] == pytest.approx(predicted, rel=0.05)
    assert widths[0] < widths[1] < widths[2]


def test_lines_batch_equals_loop_and_spin_echo_refocuses():
    rng = np.random.default_rng(1)
    a = rng.random((2, 3, 8, 8)) + 0.1j * rng.random((2, 3, 8, 8))
    rate = 20 + rng.random((2, 3, 8, 8))
    df = rng.normal(0, 30, (2, 3, 8, 8))
    batch = imf.epi_kspace_lines(a, rate, 5e-4, off_resonance=df, r2prime=8.0, spin_echo=True)
    for i in range(2):
        for j in range(3):
            one = imf.epi_kspace_lines(
                a[i, j], rate[i, j], 5e-4, off_resonance=df[i, j], r2prime=8.0, spin_echo=True
            )
            np.testing.assert_allclose(batch[i, j], one, atol=1e-13)
    # spin echo against the exact sum (exp(-t R2 - |t - TE| R2')) up to readout timing
    rho, r2, r2p, te = _phantom(), 12.0, 10.0, 0.06
    exact = np.asarray(imf.epi_kspace(rho, r2, FOV, te, 5e-4, r2prime=r2p, spin_echo=True))
    fast = imf.epi_kspace_lines(rho * np.exp(-te * r2), r2, 5e-4, r2prime=r2p, spin_echo=True)
    assert np.linalg.norm(fast - exact) / np.linalg.norm(exact) < (r2 + r2p) * 5e-4 / 2
    f32 = imf.epi_kspace_lines(rho, 30.0, 5e-4, off_resonance=40.0, dtype=np.complex64)
    f64 = imf.epi_kspace_lines(rho, 30.0, 5e-4, off_resonance=40.0)
    assert np.abs(f32 - f64).max() / np.abs(f64).max() < 1e-5
    # very fast decay (T2* 0.3 ms): the factor before TE is formed in double precision
    fast_rate = np.full((16, 16), 3000.0)
    a = rho * np.exp(-0.03 * fast_rate)
    f32 = imf.epi_hybrid(a, fast_rate, 5e-4, dtype=np.complex64)
    f64 = imf.epi_hybrid(a, fast_rate, 5e-4)
    assert np.abs(f32 - f64).max() <= 1e-5 * np.abs(f64).max()
    with pytest.raises(ParameterError, match="transverse"):
        imf.epi_hybrid(rho, fast_rate * 10, 5e-4, dtype=np.complex64)  # not decayed to TE
    with pytest.raises(ParameterError, match="rate"):
        imf.epi_hybrid(rho, -1.0, 5e-4)
    with pytest.raises(ParameterError, match="r2prime"):
        imf.epi_hybrid(rho, 1.0, 5e-4, r2prime=2.0)
    with pytest.raises(ParameterError, match="off_resonance"):
        imf.epi_hybrid(rho, 1.0, 5e-4, off_resonance=np.ones(3))


# --- sub-voxel sources along phase encode


@pytest.mark.parametrize("spin_echo", [False, True])
def test_subvoxels_equal_point_sources_for_uniform_rate_and_field(spin_echo):
    # the sub-voxel comb's response D(k) is divided out: with a uniform field where
    # there is signal (no field, or a uniform shift df Ny esp) the lines are those
    # of s = 1 (a field uniform along phase encode everywhere takes that shortcut;
    # here it differs in two empty rows so the sub-voxel sum itself is checked)
    rng = np.random.default_rng(2)
    a = rng.random((2, 8, 16)) + 0.3j * rng.random((2, 8, 16))
    a[..., :2] = 0.0
    kw = dict(r2prime=6.0, spin_echo=True) if spin_echo else {}
    for df in (0.0, 0.3 / (16 * 5e-4), 2.5 / (16 * 5e-4)):
        one = imf.epi_hybrid(a, 25.0, 5e-4, df, **kw)
        field = np.full(a.shape, df)
        field[..., 0] += 40.0
        for s in (2, 3, 4):
            sub = imf.epi_hybrid(a, 25.0, 5e-4, field, subvoxels=s, echo_time=0.03, **kw)
            np.testing.assert_allclose(sub, one, rtol=0, atol=1e-12 * np.abs(one).max())
    with pytest.raises(ParameterError, match="subvoxels"):
        imf.epi_hybrid(a, 25.0, 5e-4, subvoxels=0)
    with pytest.raises(ParameterError, match="echo_time"):
        imf.epi_hybrid(a, 25.0, 5e-4, subvoxels=2, echo_time=-1.0)


def test_subvoxels_converge_and_remove_point_source_stripes():
    # uniform object, Gaussian field bump (100 Hz, 3 px s.d.: shift up to 3.2 px, its
    # gradient up to 0.65 px per px): point sources (s = 1) misplace the signal and
    # paint stripes of period 2 px; the sub-voxel image converges as ~1/s^2
    n, esp, te = 32, 1e-3, 0.03
    a = np.zeros((n, n))
    a[3:29, 3:29] = 1.0
    x, y = np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2, indexing="ij")
    df = 100 * np.exp(-(x**2 + y**2) / (2 * 3.0**2))
    obj = a * np.exp(-2j * np.pi * te * df)

    def image(s):
        lines = imf.epi_hybrid(obj, 20.0, esp, df, subvoxels=s, echo_time=te)
        return np.abs(imf.reconstruct_hybrid(lines))

    ref = image(32)
    err = {s: image(s) - ref for s in (1, 2, 4)}
    peak = {s: np.abs(e[3:29, 3:29]).max() for s, e in err.items()}
    assert peak[1] > 0.5 and peak[4] < 0.02 and peak[4] < peak[2] / 3

    def nyquist_energy(e):  # alternating component along PE, inside, away from edges
        alt = (e * (-1.0) ** np.arange(n))[8:24, 7:25]
        return np.mean(((alt[:, :-1] + alt[:, 1:]) / 2) ** 2)

    assert nyquist_energy(err[4]) < 1e-3 * nyquist_energy(err[1])
