"""Coils, placement, dA/dt and waveforms: segment Biot-Savart against the elliptic-integral
loop potential, the .ccd round trip, placement gradients, pulse shapes."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from biosim import ParameterError
from biosim._core.errors import GeometryError
from biosim.physics.stimulation import (
    biphasic_pulse,
    check_coil_outside,
    circular_coil,
    circular_dipole_coil,
    coil_from_points,
    dadt,
    dipole_coil,
    figure8_coil,
    loop_vector_potential,
    monophasic_pulse,
    place_coil,
    place_on_sphere,
    read_ccd,
    transform_coil,
    vector_potential,
    write_ccd,
)


def test_segment_biot_savart_matches_elliptic_loop():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(40, 3)) * 0.03 + [0.0, 0.0, -0.03]
    exact = loop_vector_potential(pts, 0.04, current=1.0)
    for n_seg, tol in ((90, 1.2e-3), (720, 2e-5)):
        # an inscribed polygon errs by ~ (2 pi / N)^2 / 6
        got = np.asarray(vector_potential(circular_coil(0.04, n_segments=n_seg), pts))
        err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
        assert err < tol
        assert err > 0.2 * tol  # second-order convergence, not an accident
    # the dipole model tends to the loop far away (leading multipole)
    far = pts + [0.0, 0.0, -0.3]
    dip = np.asarray(vector_potential(circular_dipole_coil(0.04, n_rings=6), far))
    ref = loop_vector_potential(far, 0.04)
    assert np.linalg.norm(dip - ref) / np.linalg.norm(ref) < 2e-3


def test_figure8_centre_current_and_didt_scaling():
    coil = figure8_coil(0.035, n_segments=64)
    p = np.array([[0.0, 0.0, -0.02]])
    a = np.asarray(dadt(coil, p, didt=1e6))
    # current under the centre flows along +y: A (and dA/dt) point along +y there
    assert a[0, 1] > 0 and abs(a[0, 0]) < 1e-9 * abs(a[0, 1])
    np.testing.assert_allclose(a, 1e6 * np.asarray(vector_potential(coil, p)), rtol=1e-14)


def test_ccd_round_trip_and_errors(tmp_path):
    coil = dipole_coil(np.eye(3) * 0.01, np.ones((3, 3)) * 1e-4, didt_max=1.4e8, name="c")
    path = tmp_path / "c.ccd"
    write_ccd(coil, path)
    back = read_ccd(path)
    np.testing.assert_allclose(back.dip_pos, coil.dip_pos, rtol=1e-9)
    np.testing.assert_allclose(back.dip_moment, coil.dip_moment, rtol=1e-9)
    assert back.didt_max == pytest.approx(1.4e8)
    path.write_text("# x\n2\n0 0 0.1 0 0 1\n")
    with pytest.raises(ParameterError, match="dipole count"):
        read_ccd(path)
    path.write_text("0 0 0.1 0 1\n")
    with pytest.raises(ParameterError, match="6 numbers"):
        read_ccd(path)


def test_placement_and_gradient_wrt_position():
    coil = coil_from_points(
        np.array([[0.02, 0, 0], [0, 0.02, 0], [-0.02, 0, 0], [0, -0.02, 0]]), closed=True
    )
    pl = place_coil([0.0, 0.0, 0.09], [0.0, 0.0, 1.0], angle=0.0, distance=0.005)
    np.testing.assert_allclose(pl.origin, [0, 0, 0.095])
    np.testing.assert_allclose(
        np.asarray(pl.rotation) @ np.asarray(pl.rotation).T, np.eye(3), atol=1e-14
    )
    moved = transform_coil(coil, pl)
    np.testing.assert_allclose(np.asarray(moved.seg_start)[:, 2], 0.095)
    target = jnp.array([[0.01, 0.0, 0.06]])

    def ex(theta, phi, angle):
        pl = place_on_sphere(theta, phi, angle, 0.004, radius=0.09)
        return vector_potential(coil, target, pl)[0, 0]

    check_grads(ex, (0.2, 0.3, 0.4), order=1, modes=["rev"], atol=1e-9, rtol=1e-5)


def test_coil_inside_head_is_refused():
    coil = circular_coil(0.04, n_segments=16)
    rng = np.random.default_rng(1)
    nodes = rng.normal(size=(2000, 3))
    nodes /= np.linalg.norm(nodes, axis=1, keepdims=True)
    pl = place_coil([0, 0, 0.08], [0, 0, 1], distance=0.0)  # ring 89.4 mm from the centre
    with pytest.raises(GeometryError, match="intersects the head"):  # the ring cuts into the scalp
        check_coil_outside(coil, pl, 0.09 * nodes, nodes)
    check_coil_outside(
        coil, place_coil([0, 0, 0.09], [0, 0, 1], distance=0.02), 0.09 * nodes, nodes
    )
    with pytest.raises(ParameterError, match="distance"):
        place_coil([0, 0, 0.09], [0, 0, 1], distance=-0.01)


def test_pulse_waveforms():
    t = np.linspace(0, 300e-6, 3001)
    bi = biphasic_pulse(300e-6, peak_didt=1.4e8)
    mono = monophasic_pulse(70e-6, 200e-6, peak_didt=1e8)
    for p in (bi, mono):
        d = np.asarray(p.didt(t))
        assert np.max(np.abs(d)) == pytest.approx(p.peak_didt, rel=1e-6)
        # dI/dt is the derivative of I
        num = np.gradient(np.asarray(p.current(t)), t)
        smooth = np.abs(t - p.duration) > 1e-6  # dI/dt jumps where the pulse ends or decays
        np.testing.assert_allclose(num[smooth][1:-1], d[smooth][1:-1], atol=2e-3 * p.peak_didt)
    assert float(bi.current(300e-6)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ParameterError):
        biphasic_pulse(-1.0)
