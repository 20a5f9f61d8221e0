"""Closed-form MRI signals vs Bloch isochromats vs EPG."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import ParameterError
from biosim._core.units import GAMMA_BAR_PROTON
from biosim.physics.mri import bloch, epg, rf
from biosim.physics.mri import signal_equations as se

T1, T2 = 1.0, 0.08
DEG = np.pi / 180


def _voxel_spins(n, t1=T1, t2=T2, length=1e-3):
    z = (np.arange(n) + 0.5) / n * length - length / 2
    pos = np.stack([np.zeros(n), np.zeros(n), z], 1)
    return bloch.make_spins(pos, t1, t2, m0=1.0 / n), length


def _full_turn_gradient(length, duration):
    # gradient giving exactly one cycle of dephasing across the voxel in `duration`
    return 1.0 / (GAMMA_BAR_PROTON * length * duration)


def test_ernst_formula_with_ideal_spoiling():
    tr, te = 0.02, 0.005
    spins = bloch.make_spins(np.zeros((1, 3)), T1, T2)
    for flip in (5 * DEG, 15 * DEG, 40 * DEG):
        seq, _ = bloch.spoiled_gre_sequence(flip, tr, te, 600, ideal_spoiling=True)
        sig, _ = bloch.simulate(spins, seq)
        s_ss = np.abs(sig[-2])  # the last echo (end of a TE step)
        # no dephasing during TE for a single on-resonance spin: T2 decay only
        expected = se.spoiled_gre(1.0, T1, T2, tr, te, flip)
        assert s_ss == pytest.approx(float(expected), rel=1e-3)
    # Ernst angle maximises the closed form
    ae = float(se.ernst_angle(tr, T1))
    grid = np.linspace(0.5 * ae, 1.5 * ae, 101)
    vals = np.asarray(se.spoiled_gre(1.0, T1, T2, tr, te, grid))
    assert grid[np.argmax(vals)] == pytest.approx(ae, rel=0.02)


def test_rf_spoiled_isochromats_match_epg():
    tr, te, flip, n_tr = 0.01, 0.0, 20 * DEG, 400
    n_spins = 400
    spins, length = _voxel_spins(n_spins)
    g = _full_turn_gradient(length, tr - te)
    seq, phases = bloch.spoiled_gre_sequence(
        flip, tr, te, n_tr, rf_spoiling_increment=117 * DEG, dephasing_gradient=g
    )
    sig, _ = bloch.simulate(spins, seq)
    iso = np.asarray(sig[0::2]) * np.exp(-1j * phases)
    ep = np.asarray(epg.spoiled_gre_train(T1, T2, tr, te, flip, n_tr, n_states=300))
    tail = slice(300, None)
    np.testing.assert_allclose(np.abs(iso[tail]), np.abs(ep[tail]), rtol=1e-2)
    ideal = float(se.spoiled_gre(1.0, T1, T2, tr, te, flip))
    deviation = np.mean(np.abs(ep[tail])) / ideal - 1
    # RF spoiling at 117 deg leaves a small known bias from the Ernst formula (a few %)
    assert abs(deviation) < 0.1


def test_bssfp_steady_state_matches_closed_form():
    tr, flip, n_tr = 0.005, 40 * DEG, 800
    spins = bloch.make_spins(np.zeros((1, 3)), T1, T2)
    # alternating RF phase; echo at TE = TR/2
    dt = np.tile([tr / 2, tr / 2], n_tr)
    flips = np.zeros(2 * n_tr)
    flips[0::2] = flip
    phase = np.zeros(2 * n_tr)
    phase[0::2] = np.pi * (np.arange(n_tr) % 2)
    seq = bloch.make_sequence(dt, flip=flips, phase=phase)
    sig, _ = bloch.simulate(spins, seq)
    s = np.abs(np.asarray(sig[-2]))
    assert s == pytest.approx(float(se.bssfp(1.0, T1, T2, tr, flip)), rel=1e-3)


def test_cpmg_epg_matches_isochromats_and_t2_decay():
    esp, n_echo = 0.01, 16
    # perfect refocusing: pure T2 decay
    ep = np.abs(np.asarray(epg.cpmg_train(T1, T2, esp, np.pi, n_echo)))
    np.testing.assert_allclose(ep, np.exp(-esp * np.arange(1, n_echo + 1) / T2), rtol=1e-10)
    # imperfect refocusing (130 deg): isochromats agree with EPG
    alpha = 130 * DEG
    ep = np.abs(np.asarray(epg.cpmg_train(T1, T2, esp, alpha, n_echo)))
    spins, length = _voxel_spins(720)
    g = _full_turn_gradient(length, esp / 2)
    dt = [0.0] + [esp / 2, esp / 2] * n_echo
    # pulse at the start of the second half-step: [ESP/2 precess] [a_y, ESP/2 precess]
    flips = np.array([np.pi / 2] + sum([[0.0, alpha] for _ in range(n_echo)], []))
    phases = np.array([0.0] + sum([[0.0, np.pi / 2] for _ in range(n_echo)], []))
    grads = np.zeros((len(dt), 3))
    grads[1:, 2] = g
    seq = bloch.make_sequence(dt, flip=flips, phase=phases, gradient=grads)
    sig, _ = bloch.simulate(spins, seq)
    iso = np.abs(np.asarray(sig[2::2]))
    np.testing.assert_allclose(iso, ep, rtol=1e-2, atol=1e-3)
    assert ep[1] > ep[0] * 0.9  # stimulated echoes refill the second echo


def test_small_tip_sinc_slice_profile_is_fourier_transform():
    flip, dur, tbw, thick = 10 * DEG, 2e-3, 4.0, 5e-3
    b1, dt = rf.sinc_pulse(flip, dur, tbw, n_samples=200)
    g = rf.slice_select_gradient(dur, tbw, thick)
    z = np.linspace(-2 * thick, 2 * thick, 161)
    spins = bloch.make_spins(np.stack([0 * z, 0 * z, z], 1), 10.0, 10.0)
    n = b1.size
    # pulse under gradient, then a rephasing lobe of half the area
    seq = bloch.make_sequence(
        np.r_[np.full(n, dt), dur / 2],
        b1=np.r_[b1, 0.0],
        gradient=np.r_[np.tile([0, 0, g], (n, 1)), [[0, 0, -g]]],
    )
    m = np.asarray(bloch.simulate_per_spin(spins, seq))
    mxy = np.abs(m[:, 0] + 1j * m[:, 1])
    prof = rf.small_tip_profile(b1, dt, GAMMA_BAR_PROTON * g * z)
    np.testing.assert_allclose(mxy, np.sin(prof), atol=0.01 * np.sin(flip))
    # centre of the slice: the full flip angle; full width at half maximum = nominal thickness
    assert mxy[z.size // 2] == pytest.approx(np.sin(flip), rel=5e-3)
    above = z[mxy >= mxy.max() / 2]
    assert above.max() - above.min() == pytest.approx(thick, abs=2 * (z[1] - z[0]))


def test_closed_forms_and_errors():
    assert float(se.spin_echo(1.0, 1.0, 0.1, 10.0, 0.05)) == pytest.approx(np.exp(-0.5), rel=1e-4)
    # inversion recovery null at TI = T1 ln 2 for long TR
    assert abs(float(se.inversion_recovery(1.0, 1.0, 0.1, np.log(2), 20.0, 0.01))) < 1e-3
    me = se.multi_echo(np.array([1.0, 2.0]), np.array([0.05, 0.02]), [0.0, 0.01, 0.02])
    assert me.shape == (2, 3) and float(me[1, 1]) == pytest.approx(2 * np.exp(-0.5))
    assert float(se.snr_efficiency(1.0, 0.04)) == pytest.approx(5.0)
    with pytest.raises(ParameterError, match="TE"):
        se.spoiled_gre(1.0, 1.0, 0.05, 0.01, 0.02, 0.3)
    with pytest.raises(ParameterError, match="T1"):
        se.spin_echo(1.0, -1.0, 0.1, 1.0, 0.05)
    with pytest.raises(ParameterError, match="TE"):
        bloch.spoiled_gre_sequence(0.3, 0.01, 0.02, 10)
    with pytest.raises(ParameterError, match="flip_angle"):
        rf.sinc_pulse(-1.0, 1e-3)


def test_gradients_of_signal_models():
    f = lambda t1, t2s, a: se.spoiled_gre(1.0, t1, t2s, 0.02, 0.005, a)  # noqa: E731
    check_grads(f, (1.2, 0.05, 0.3), order=1, modes=["rev"])
    seq, _ = bloch.spoiled_gre_sequence(0.3, 0.02, 0.005, 50, ideal_spoiling=True)

    def bloch_signal(t1):
        sig, _ = bloch.simulate(
            bloch.Spins(
                jnp.zeros((1, 3)), jnp.zeros(1), jnp.array([t1]), jnp.array([T2]), jnp.ones(1)
            ),
            seq,
        )
        return jnp.abs(sig[-2])

    check_grads(bloch_signal, (1.1,), order=1, modes=["rev"], atol=1e-6, rtol=1e-5)
    check_grads(
        lambda t2: jnp.abs(epg.cpmg_train(T1, t2, 0.01, 2.5, 8)).sum(),
        (0.08,),
        order=1,
        modes=["rev"],
    )


def test_free_precession_block_equals_stepwise_simulation():
    rng = np.random.default_rng(0)
    spins = bloch.make_spins(
        rng.normal(scale=0.05, size=(50, 3)),
        rng.uniform(0.5, 2, 50),
        rng.uniform(0.03, 0.1, 50),
        off_resonance=rng.normal(scale=20, size=50),
    )
    grad = rng.normal(scale=5e-3, size=(40, 3))
    dt = rng.uniform(1e-6, 1e-5, 40)
    m0 = np.asarray(bloch.simulate(spins, bloch.make_sequence([0.0], flip=[0.7]))[1])
    sig_step, m_step = bloch.simulate(spins, bloch.make_sequence(dt, gradient=grad), m_init=m0)
    sig_blk, m_blk = bloch.free_precession_block(m0, spins, grad, dt)
    np.testing.assert_allclose(sig_blk, sig_step, atol=1e-12)
    np.testing.assert_allclose(m_blk, m_step, atol=1e-12)
