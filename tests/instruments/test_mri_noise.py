"""fMRI noise: the fluctuation generator against its set statistics, aliasing of the
physiological terms at the TR and slice times, and fit_noise round trips."""

import dataclasses

import numpy as np
import pytest
from scipy.fft import dct

from biosim import ParameterError
from biosim.instruments.eeg_fmri import cardiac_r_peaks
from biosim.instruments.mri_noise import (
    FluctuationModel,
    NoiseParameters,
    NoiseTissue,
    ar_autocovariance,
    cardiac_phase,
    fit_noise,
    respiratory_field_shift,
    respiratory_phase,
    respiratory_trace,
)

SHAPE = (16, 16, 8)
VOX = np.array([3e-3, 3e-3, 3e-3])
TR = 2.0
N_T = 300
TRUE = NoiseParameters(sfnr=70.0, snr=100.0, ar=(0.5,), fwhm=6e-3, drift=0.01)


def _forman(field, voxel_size, axes=(1, 2, 3)):
    """Per-axis FWHM (m) of a zero-mean field (n, X, Y, Z), Forman et al. 1995."""
    var = np.mean(field**2)
    out = []
    for ax in axes:
        ratio = 1 - np.mean(np.diff(field, axis=ax) ** 2) / (2 * var)
        out.append(voxel_size[ax - 1] * np.sqrt(-2 * np.log(2) / np.log(ratio)))
    return np.array(out)


def _magnitude(fluct, brain, seed):
    """|1000 (1 + fluct) + complex noise of std 1000 / snr per channel| in the brain,
    the noise alone outside, (X, Y, Z, T)."""
    s0 = np.where(brain, 1000.0, 0.0)[..., None]
    rng = np.random.default_rng(seed)
    shape = brain.shape + (fluct.shape[0],)
    noise = TRUE.thermal_std(1000.0) * (
        rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    )
    return np.abs(s0 * (1 + np.moveaxis(fluct, 0, -1)) + noise)


@pytest.fixture(scope="module")
def simulated():
    """A magnitude series: an ellipsoidal brain (1000) in background (0), the model's
    fluctuations, complex thermal noise of std 1000 / snr per channel."""
    model = FluctuationModel(TRUE, SHAPE, VOX, N_T * TR, seed=1)
    slice_times = np.arange(N_T)[:, None] * TR + np.arange(8)[None] * TR / 8
    fluct = model(np.arange(N_T), slice_times)
    g = np.mgrid[:16, :16, :8].astype(float)
    brain = ((g[0] - 7.5) / 6) ** 2 + ((g[1] - 7.5) / 6) ** 2 + ((g[2] - 3.5) / 3.2) ** 2 < 1
    data = _magnitude(fluct, brain, seed=5)
    return dict(model=model, fluct=fluct, slice_times=slice_times, data=data, brain=brain)


def test_chunks_equal_one_call_and_seed_determines(simulated):
    fluct, st = simulated["fluct"], simulated["slice_times"]
    assert fluct.dtype == np.float32 and fluct.shape == (N_T,) + SHAPE
    model = FluctuationModel(TRUE, SHAPE, VOX, N_T * TR, seed=1)
    chunks = [model(np.arange(a, min(a + 37, N_T)), st[a : a + 37]) for a in range(0, N_T, 37)]
    np.testing.assert_array_equal(np.concatenate(chunks), fluct)
    # an earlier volume restarts the recursion; gaps are skipped over
    np.testing.assert_array_equal(model(np.array([3, 9]), st[[3, 9]]), fluct[[3, 9]])
    other = FluctuationModel(TRUE, SHAPE, VOX, N_T * TR, seed=2)(np.arange(5), st[:5])
    assert not np.allclose(other, fluct[:5])


def test_ar_autocorrelation_and_std():
    params = NoiseParameters(sfnr=50.0, ar=(0.5, 0.2), fwhm=0.0, drift=0.0)
    model = FluctuationModel(params, (16, 16, 4), VOX, 600.0, seed=3)
    x = model(np.arange(400), np.zeros(400)).reshape(400, -1).astype(float)
    var = np.mean(x**2)
    rho = [np.mean(x[k:] * x[: 400 - k]) / var for k in (1, 2)]
    # Yule-Walker for AR(2): rho1 = a1 / (1 - a2), rho2 = a1 rho1 + a2
    rho1 = 0.5 / 0.8
    assert rho == pytest.approx([rho1, 0.5 * rho1 + 0.2], abs=0.02)  # 1024 voxels x 400: se 0.003
    assert np.sqrt(var) == pytest.approx(1 / 50, rel=0.03)
    acov = ar_autocovariance((0.5, 0.2), 3)
    assert acov[1:] / acov[0] == pytest.approx([rho1, 0.5 * rho1 + 0.2], rel=1e-10)


@pytest.mark.parametrize("fwhm", [4e-3, 9e-3])
def test_spatial_smoothness_matches_fwhm(fwhm):
    vox = np.array([3e-3, 3e-3, 4e-3])
    params = NoiseParameters(sfnr=50.0, ar=(), fwhm=fwhm, drift=0.0)
    x = FluctuationModel(params, SHAPE, vox, 200.0, seed=4)(np.arange(100), np.zeros(100))
    # Gaussian kernel of std s: neighbour correlation exp(-dx^2 / (4 s^2))
    assert _forman(x, vox) == pytest.approx([fwhm] * 3, rel=0.04)
    assert np.std(x) == pytest.approx(1 / 50, rel=0.03)


def test_drift_is_slow_cosine_of_set_amplitude():
    params = NoiseParameters(sfnr=1e6, ar=(), fwhm=0.0, drift=0.02)
    model = FluctuationModel(params, (4, 4, 2), VOX, 640.0, seed=5)
    # at mid-interval times the SPM cosine basis is the DCT-II of the series
    x = model(np.arange(320), (np.arange(320) + 0.5) * TR)[:, 0, 0, 0].astype(float)
    assert np.std(x) == pytest.approx(0.02, rel=0.02)
    coef = dct(x, norm="ortho")
    n_slow = int(2 * 640.0 / 128)  # k / (2 T) < 1/128 Hz
    assert np.sum(coef[n_slow + 1 :] ** 2) < 1e-8 * np.sum(coef**2)


def test_fit_round_trip(simulated):
    """Sampling spread over 8 seeds of this set-up (16x16x8, 300 volumes): sfnr 0.7 %,
    snr 0.1 %, ar 1.4 %, fwhm 0.7 %, drift 2 % (std); tolerances are ~4 std."""
    fit = fit_noise(simulated["data"], tr=TR, voxel_size=VOX)
    assert fit.sfnr == pytest.approx(TRUE.sfnr, rel=0.04)
    assert fit.snr == pytest.approx(TRUE.snr, rel=0.01)
    assert fit.ar[0] == pytest.approx(TRUE.ar[0], rel=0.08)
    assert fit.fwhm == pytest.approx(TRUE.fwhm, rel=0.04)
    assert fit.drift == pytest.approx(TRUE.drift, rel=0.1)
    # the fit with the known mask is the same to sampling accuracy
    masked = fit_noise(simulated["data"], tr=TR, voxel_size=VOX, mask=simulated["brain"])
    assert masked.sfnr == pytest.approx(fit.sfnr, rel=1e-6)


def test_fit_with_recorded_physiology(simulated):
    """Cardiac and respiratory amplitudes fitted by RETROICOR at each slice's time
    (spread over 4 seeds: 1.3 % and 0.5 %; breathing depth varies by 20 %, and the
    part of the respiratory term it modulates is left to the AR model: -2 % bias)."""
    params = dataclasses.replace(TRUE, cardiac=0.008, respiratory=0.006)
    duration = N_T * TR + 5
    peaks, breath = cardiac_r_peaks(duration, seed=2), respiratory_trace(duration, seed=2)
    model = FluctuationModel(
        params, SHAPE, VOX, N_T * TR, cardiac_peaks=peaks, respiration=breath, seed=2
    )
    fluct = model(np.arange(N_T), simulated["slice_times"])
    data = _magnitude(fluct, simulated["brain"], seed=6)
    timing = simulated["slice_times"][0]
    fit = fit_noise(
        data, TR, voxel_size=VOX, cardiac_peaks=peaks, respiration=breath, slice_timing=timing
    )
    assert fit.cardiac == pytest.approx(0.008, rel=0.06)
    assert fit.respiratory == pytest.approx(0.006, rel=0.06)
    assert fit.sfnr == pytest.approx(70.0, rel=0.04)
    assert fit.ar[0] == pytest.approx(0.5, rel=0.1)
    # without the recordings the physiology is counted in sfnr (and whitens the AR)
    blind = fit_noise(data, TR, voxel_size=VOX)
    assert blind.cardiac == blind.respiratory == 0.0
    assert blind.sfnr == pytest.approx(70.0, rel=0.04)


def test_fit_without_background_warns(simulated):
    inside = simulated["data"][4:12, 4:12, 2:6]
    with pytest.warns(UserWarning, match="background"):
        fit = fit_noise(inside, TR, voxel_size=VOX)
    assert fit.snr == 1e9  # thermal noise then counted in sfnr: 1 / sqrt(70**-2 + 100**-2)
    assert fit.sfnr == pytest.approx(57.3, rel=0.06)


def test_fit_from_nifti_file(simulated, tmp_path):
    nib = pytest.importorskip("nibabel")
    img = nib.Nifti1Image(simulated["data"].astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((3.0, 3.0, 3.0, TR))
    path = tmp_path / "bold.nii.gz"
    nib.save(img, path)
    from_file = fit_noise(path)
    from_array = fit_noise(simulated["data"].astype(np.float32), tr=TR, voxel_size=VOX)
    for name in ("sfnr", "snr", "fwhm", "drift"):
        assert getattr(from_file, name) == pytest.approx(getattr(from_array, name), rel=1e-5)


def test_physiological_peaks_alias_where_predicted():
    """TR 2 s (Nyquist 0.25 Hz): a steady 1.17 Hz heart rate aliases to
    |1.17 - round(1.17 TR) / TR| = 0.17 Hz, its 2nd harmonic to |2.34 - 2.5| = 0.16 Hz;
    breathing at 0.22 Hz is below Nyquist and stays there."""
    n = 400  # bins of 1/800 Hz: 0.16, 0.17 and 0.22 Hz fall on bins
    peaks = cardiac_r_peaks(n * TR + 2, mean_rr=1 / 1.17, rr_std=0.0)
    params = NoiseParameters(sfnr=85.0, ar=(), fwhm=0.0, drift=0.0, cardiac=0.01, respiratory=0.005)
    model = FluctuationModel(
        params, (4, 4, 4), VOX, n * TR, cardiac_peaks=peaks, respiration=(0.22, 0.3), seed=6
    )
    volume_times = np.arange(n) * TR
    x = model(np.arange(n), volume_times)[:, 1, 2, 0].astype(float)
    freqs = np.fft.rfftfreq(n, TR)
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    top = set(np.round(freqs[np.argsort(power)[-3:]], 4))
    assert top == {0.16, 0.17, 0.22}
    # slice timing: slice z at dz after the volume start shifts the aliased component's
    # phase by 2 pi f_true dz (not f_alias), for each physiological term alone
    dz = 0.75
    shifted = volume_times[:, None] + np.array([0.0, 0.0, 0.0, dz])[None]
    base = model.physiological(np.repeat(volume_times[:, None], 4, 1))[:, 1, 2, 3]
    late = model.physiological(shifted)[:, 1, 2, 3]
    for f_true, f_alias in ((1.17, 0.17), (0.22, 0.22)):
        k = int(round(f_alias * n * TR))
        dphi = np.angle(np.fft.rfft(late)[k] / np.fft.rfft(base)[k])
        assert np.angle(np.exp(1j * (dphi - 2 * np.pi * f_true * dz))) == pytest.approx(0, abs=0.02)


def test_csf_carries_stronger_physiological_noise():
    peaks = cardiac_r_peaks(200.0, seed=1)
    params = NoiseParameters(sfnr=60.0, ar=(), fwhm=0.0, drift=0.0, cardiac=0.01)
    brain = np.ones((2, 2, 2))
    brain[0] = 0.0
    tissue = NoiseTissue(brain=brain, csf=1 - brain)
    model = FluctuationModel(params, (2, 2, 2), VOX, 200.0, tissue, cardiac_peaks=peaks)
    x = model.physiological(np.repeat(np.arange(90)[:, None] * 2.0, 2, 1))
    rms = np.sqrt(np.mean(x**2, axis=0))
    assert rms[1].mean() == pytest.approx(0.01, rel=0.15)  # phase sampling over 90 volumes
    assert rms[0].mean() / rms[1].mean() == pytest.approx(3.0, rel=0.15)


def test_cardiac_and_respiratory_phase():
    peaks = np.array([1.0, 2.0, 3.5])
    phase = cardiac_phase(peaks, [1.0, 1.5, 2.75, 3.5, 4.25, 0.5])
    np.testing.assert_allclose(phase, [0, np.pi, np.pi, 0, np.pi, np.pi], atol=1e-12)
    trace = respiratory_trace(300.0, rate=0.25, seed=2)
    cycles = (trace.phase[-1] - trace.phase[0]) / (2 * np.pi)
    assert cycles / 300.0 == pytest.approx(0.25, rel=0.1)
    assert np.all(respiratory_phase(trace, [0.0, 100.0]) >= 0)
    assert np.mean(trace.amplitude) == pytest.approx(1.0)


def test_respiratory_field_shift_peak_to_peak():
    shift = respiratory_field_shift((0.25, 0.0), np.linspace(0, 4, 401), peak_shift=1.28)
    assert shift.max() - shift.min() == pytest.approx(1.28, rel=1e-6)  # 0.01 ppm at 3 T


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: NoiseParameters(ar=(1.2,)), "ar"),
        (lambda: NoiseParameters(sfnr=50, cardiac=0.02, respiratory=0.02), "cardiac"),
        (lambda: NoiseParameters(fwhm=-1e-3), "fwhm"),
        (lambda: NoiseParameters(snr=float("nan")), "snr"),
        (lambda: FluctuationModel(NoiseParameters(cardiac=0.005), SHAPE, VOX, 10.0), "cardiac"),
        (lambda: FluctuationModel(TRUE, (16, 16), VOX, 10.0), "shape"),
        (lambda: FluctuationModel(TRUE, SHAPE, [3.0, 3.0, 3.0], 10.0), "voxel_size"),
        (lambda: FluctuationModel(TRUE, SHAPE, VOX, 10.0)(np.arange(2), np.zeros((2, 3))), "slice"),
        (lambda: FluctuationModel(TRUE, SHAPE, VOX, 10.0)(np.array([2, 1]), np.zeros(2)), "vol"),
        (lambda: cardiac_phase([1.0], [0.5]), "r_peaks"),
        (lambda: fit_noise(np.ones((4, 4, 4, 30)), voxel_size=VOX), "tr"),
        (lambda: fit_noise(np.ones((4, 4, 30)), tr=2.0, voxel_size=VOX), "data"),
        (lambda: fit_noise(np.full((4, 4, 4, 30), np.nan), tr=2.0, voxel_size=VOX), "data"),
        (lambda: fit_noise("/nonexistent/bold.nii.gz"), "data"),
    ],
)
def test_bad_input(make, name):
    with pytest.raises(ParameterError, match=name):
        make()


def test_fit_drift_basis_spans_spm_cosine_set():
    from biosim.inference.design import cosine_drifts
    from biosim.instruments.mri_noise import _dct_basis

    n, tr = 150, 2.0
    ours = _dct_basis((np.arange(n) + 0.5) * tr, n * tr, minimum=0)
    spm = cosine_drifts(n, tr)
    assert ours.shape == spm.shape
    np.testing.assert_allclose(ours * np.sqrt(2.0 / n), spm, atol=1e-12)
