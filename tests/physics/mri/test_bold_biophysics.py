"""GRE vs SE BOLD: static dephasing oracle and the Boxerman radius dependence."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics.mri import bold_biophysics as bb

Y, B0 = 0.6, 3.0


def test_static_dephasing_formula():
    # dw = gamma dchi B0 / 3 with dchi = 4 pi 0.27 ppm Hct (1 - Y)
    dw = float(bb.characteristic_frequency(Y, B0, 0.4))
    assert dw == pytest.approx(
        2.6752218744e8 * 4 * np.pi * 0.27e-6 * 0.4 * 0.4 * 3.0 / 3, rel=1e-12
    )
    assert float(bb.static_dephasing_r2prime(0.02, Y, B0)) == pytest.approx(0.02 * dw)
    # linear in B0 and in (1 - Y)
    assert float(bb.static_dephasing_r2prime(0.02, Y, 7.0)) / float(
        bb.static_dephasing_r2prime(0.02, Y, 3.0)
    ) == pytest.approx(7 / 3)


def test_monte_carlo_static_limit_matches_yablonskiy_haacke():
    zeta = 0.005
    r = [
        float(
            bb.monte_carlo_relaxation(
                50e-6, zeta, Y, B0, te, diffusion=0.0, n_spins=20000, n_steps=2, images=0
            )[0]
        )
        for te in (0.05, 0.1)
    ]
    slope = (0.1 * r[1] - 0.05 * r[0]) / 0.05
    assert slope == pytest.approx(float(bb.static_dephasing_r2prime(zeta, Y, B0)), rel=0.02)


def test_se_peaks_at_capillary_radii_and_gre_plateaus():
    radii = np.array([1.5, 4.0, 10.0, 40.0, 100.0]) * 1e-6
    out = np.array(
        [
            [
                float(v)
                for v in bb.monte_carlo_relaxation(a, 0.02, Y, B0, 0.04, n_spins=1500, n_steps=80)
            ]
            for a in radii
        ]
    )
    gre, se = out[:, 0], out[:, 1]
    assert np.argmax(se) in (1, 2)  # peak at a few micrometres
    assert se[-1] < 0.2 * se.max()  # large vessels are refocused
    assert gre[-1] > 2 * se[-1]
    assert abs(gre[-1] - gre[-2]) < 0.1 * gre[-1]  # GRE plateau for large vessels
    assert gre[0] < gre[-1]


def test_bad_input():
    with pytest.raises(ParameterError, match="saturation"):
        bb.susceptibility_difference(1.2)
    with pytest.raises(ParameterError, match="radius"):
        bb.monte_carlo_relaxation(-1e-6, 0.02, Y, B0, 0.04)


def test_intra_extravascular_decomposition_sums_to_bold():
    from biosim.physics.hemodynamics import BalloonParams, BOLDParams, bold_signal, steady_state

    x = np.asarray(steady_state(0.16, BalloonParams.spm()))  # flow +50 %
    v, q = np.exp(x[2]), np.exp(x[3])
    for b0, te in ((1.5, 0.05), (3.0, 0.035), (7.0, 0.025)):
        parts = bb.bold_contributions(v, q, b0, te)
        total = float(bold_signal(v, q, BOLDParams(field_strength=b0, echo_time=te)))
        assert parts["extravascular"] + parts["intravascular"] == pytest.approx(total, rel=1e-12)
        assert parts["extravascular"] > 0 and parts["intravascular"] > 0
    # at 1.5 T the model's total dR2* is close to Donahue et al. (2011), -0.6 1/s
    p15 = bb.bold_contributions(v, q, 1.5, 0.05)
    total15 = p15["dR2star_extravascular"] + p15["dR2star_intravascular"]
    assert total15 == pytest.approx(bb.DONAHUE_2011_DR2STAR[1.5], rel=0.15)
