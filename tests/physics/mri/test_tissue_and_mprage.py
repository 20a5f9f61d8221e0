import jax
import numpy as np
import pytest

from biosim import ParameterError
from biosim.geometry.anatomy import TISSUES
from biosim.physics.mri.signal_equations import mprage
from biosim.physics.mri.tissue import susceptibility_map, tissue_properties

GM, WM, CSF = (TISSUES.index(t) for t in ("gm", "wm", "csf"))


def test_tissue_properties_match_the_cited_tables():
    # Wright et al. 2008 (T1), Cox & Gowland 2010 (T2), Peters et al. 2007 (T2*), ms
    table = {
        1.5: ((1197, 646), (87, 80), (84.0, 66.2)),
        3.0: ((1607, 838), (76, 71), (66.0, 53.2)),
        7.0: ((1939, 1126), (47, 47), (33.2, 26.8)),
    }
    for b0, (t1, t2, t2s) in table.items():
        p = tissue_properties(b0)
        np.testing.assert_allclose(p.t1[[GM, WM]] * 1e3, t1, rtol=1e-12)
        np.testing.assert_allclose(p.t2[[GM, WM]] * 1e3, t2, rtol=1e-12)
        np.testing.assert_allclose(p.t2star[[GM, WM]] * 1e3, t2s, rtol=1e-12)
    fields = np.linspace(0.05, 11.7, 60)
    props = [tissue_properties(b) for b in fields]
    t1 = np.array([p.t1 for p in props])
    assert np.all(np.diff(t1[:, [GM, WM]], axis=0) > 0)  # T1 increases with B0
    for p in props:
        assert np.all(p.t2star <= p.t2) and np.all(p.t2star > 0)
    p3 = props[0]
    assert p3.proton_density[TISSUES.index("air")] == 0
    assert p3.susceptibility[TISSUES.index("air")] > 0 > p3.susceptibility[GM]
    with pytest.raises(ParameterError, match="field_strength"):
        tissue_properties(14.0)


def test_susceptibility_map_fills_the_background_with_air():
    p = tissue_properties(3.0)
    f = np.zeros((6, 2, 1, 1))
    f[GM, 0] = 1.0
    chi = susceptibility_map(f, p)
    np.testing.assert_allclose(chi[:, 0, 0], [p.susceptibility[GM], 0.36])


def _brute_force(m0, t1, t2s, ti, esp, fa, n, tr, te, k, n_reps=12):
    """Step Mz through every inversion, pulse and recovery for n_reps repetitions."""
    mz = m0
    for _ in range(n_reps):
        t = 0.0
        mz = -mz  # inversion at t = 0
        t_first = ti - k * esp
        mz = m0 + (mz - m0) * np.exp(-t_first / t1)
        t += t_first
        for j in range(n):
            if j == k:
                sig = mz * np.sin(fa) * np.exp(-te / t2s)
            mz *= np.cos(fa)
            mz = m0 + (mz - m0) * np.exp(-esp / t1)
            t += esp
        mz = m0 + (mz - m0) * np.exp(-(tr - t) / t1)
    return sig


def test_mprage_closed_form_matches_the_recursion_and_gives_t1_contrast():
    p = tissue_properties(3.0)
    s = np.asarray(mprage(p.proton_density, p.t1, p.t2star))
    args = (0.9, 7.1e-3, np.deg2rad(9.0), 176, 2.3, 2.98e-3, 88)
    for i in (GM, WM, CSF):
        ref = _brute_force(p.proton_density[i], p.t1[i], p.t2star[i], *args)
        np.testing.assert_allclose(s[i], ref, rtol=1e-9)
    assert s[WM] > s[GM] > s[CSF]  # T1-weighted contrast at 3 T
    # another centre line and timing
    got = mprage(1.0, 1.2, 0.05, 1.1, 8e-3, 0.14, 128, 2.5, 3e-3, k_centre=20)
    ref = _brute_force(1.0, 1.2, 0.05, 1.1, 8e-3, 0.14, 128, 2.5, 3e-3, 20)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    g = jax.grad(lambda t1: mprage(1.0, t1, 0.05))(1.0)
    fd = (mprage(1.0, 1.0 + 1e-6, 0.05) - mprage(1.0, 1.0 - 1e-6, 0.05)) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    assert g < 0  # longer T1, less recovered signal at TI 0.9 s
    with pytest.raises(ParameterError, match="inversion_time"):
        mprage(1.0, 1.0, 0.05, inversion_time=0.3)
    with pytest.raises(ParameterError, match="repetition_time"):
        mprage(1.0, 1.0, 0.05, repetition_time=1.5)
    with pytest.raises(ParameterError, match="k_centre"):
        mprage(1.0, 1.0, 0.05, k_centre=200)
    for name in ("inversion_time", "repetition_time", "echo_spacing", "flip_angle"):
        with pytest.raises(ParameterError, match=name):
            mprage(1.0, 1.0, 0.05, **{name: float("nan")})
    with pytest.raises(ParameterError, match="T1"):
        mprage(1.0, float("nan"), 0.05)
