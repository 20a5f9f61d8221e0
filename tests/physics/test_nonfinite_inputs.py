"""NaN and inf are rejected at every public physics entry point with a
ParameterError naming the argument (a table: entry point, argument, bad value),
and the checks do not get in the way of jit/grad tracing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biosim import ParameterError
from biosim.physics import electromag as em
from biosim.physics import hemodynamics as hd
from biosim.physics import neural
from biosim.physics.mri import bloch, bold_biophysics, epg, image_formation, prfs, rf
from biosim.physics.mri import signal_equations as se

NAN, INF = float("nan"), float("inf")
ELECTRODES = 0.09 * np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])
DIPOLE = np.array([[0.0, 0.0, 0.05]])


def _head(conductivities=(0.33, 0.0042, 0.33)):
    return em.SphereHead.create([0.08, 0.085, 0.09], conductivities)


def _erp(forward=1.0):
    z = np.zeros((2, 2))
    return neural.ERPParams.spm(
        forward=np.array([[0, 0], [forward, 0]]), backward=z, lateral=z, input_gain=np.ones((2, 1))
    )


def _tiny_bem(conductivities):
    from biosim.geometry.mesh import nested_spheres

    s = nested_spheres([0.09], subdivisions=0, names=("scalp",))
    return em.BEMForward.create(s, conductivities, eeg=em.EEGSensors(("a", "b", "c"), ELECTRODES))


U = np.zeros((20, 1))

# (entry point, argument named in the error, call with the bad value)
CASES = [
    # MRI signal equations
    ("spoiled_gre", "m0", lambda b: se.spoiled_gre(b, 1.0, 0.05, 0.1, 0.03, 0.5)),
    ("spoiled_gre", "TE", lambda b: se.spoiled_gre(1.0, 1.0, 0.05, 0.1, b, 0.5)),
    ("spoiled_gre", "flip_angle", lambda b: se.spoiled_gre(1.0, 1.0, 0.05, 0.1, 0.03, b)),
    ("spin_echo", "TE", lambda b: se.spin_echo(1.0, 1.0, 0.1, 2.0, b)),
    ("inversion_recovery", "TI", lambda b: se.inversion_recovery(1.0, 1.0, 0.1, b, 3.0, 0.05)),
    ("bssfp", "flip_angle", lambda b: se.bssfp(1.0, 1.0, 0.1, 0.005, b)),
    ("multi_echo", "echo_times", lambda b: se.multi_echo(1.0, 0.05, [0.01, b])),
    ("ernst_angle", "TR", lambda b: se.ernst_angle(b, 1.0)),
    # EPG and Bloch
    (
        "epg.spoiled_gre_train",
        "flip_angle",
        lambda b: epg.spoiled_gre_train(1, 0.1, 0.01, 0.005, b, 4),
    ),
    ("epg.cpmg_train", "refocus_angle", lambda b: epg.cpmg_train(1.0, 0.1, 0.01, b, 4)),
    ("epg.cpmg_train", "T1", lambda b: epg.cpmg_train(b, 0.1, 0.01, np.pi, 4)),
    ("bloch.make_spins", "t1", lambda b: bloch.make_spins([[0.0, 0, 0]], b, 0.1)),
    ("bloch.make_spins", "positions", lambda b: bloch.make_spins([[b, 0, 0]], 1.0, 0.1)),
    ("bloch.make_spins", "off_resonance", lambda b: bloch.make_spins([[0.0, 0, 0]], 1, 0.1, 1, b)),
    ("bloch.make_sequence", "flip", lambda b: bloch.make_sequence([1e-3], flip=[b])),
    (
        "bloch.spoiled_gre_sequence",
        "flip_angle",
        lambda b: bloch.spoiled_gre_sequence(b, 0.01, 0.005, 2),
    ),
    # image formation, RF, thermometry, BOLD biophysics
    (
        "epi_kspace",
        "proton_density",
        lambda b: image_formation.epi_kspace(
            np.full((4, 4), b), np.full((4, 4), 20.0), (0.2, 0.2), 0.03, 5e-4
        ),
    ),
    (
        "epi_kspace",
        "off_resonance",
        lambda b: image_formation.epi_kspace(
            np.ones((4, 4)), np.full((4, 4), 20.0), (0.2, 0.2), 0.03, 5e-4, off_resonance=b
        ),
    ),
    (
        "epi_kspace",
        "echo_time",
        lambda b: image_formation.epi_kspace(
            np.ones((4, 4)), np.full((4, 4), 20.0), (0.2, 0.2), b, 5e-4
        ),
    ),
    (
        "epi_kspace",
        "fov",
        lambda b: image_formation.epi_kspace(
            np.ones((4, 4)), np.full((4, 4), 20.0), (b, 0.2), 0.03, 5e-4
        ),
    ),
    (
        "add_thermal_noise",
        "noise_std",
        lambda b: image_formation.add_thermal_noise(
            jnp.ones((4, 4), complex), b, jax.random.PRNGKey(0)
        ),
    ),
    ("sinc_pulse", "flip_angle", lambda b: rf.sinc_pulse(b, 1e-3)),
    ("prfs_phase", "delta_t", lambda b: prfs.prfs_phase(b, 3.0, 0.02)),
    (
        "temperature_change",
        "image",
        lambda b: prfs.temperature_change(np.array([b, 1j]), np.array([1.0, 1j]), 3.0, 0.02),
    ),
    (
        "susceptibility_difference",
        "saturation",
        lambda b: bold_biophysics.susceptibility_difference(b),
    ),
    ("bold_contributions", "v", lambda b: bold_biophysics.bold_contributions(b, 1.0, 3.0, 0.03)),
    # hemodynamics
    ("simulate_bold", "neural_input", lambda b: hd.simulate_bold(np.full((20, 1), b), 0.1)),
    ("simulate_bold", "dt", lambda b: hd.simulate_bold(U, b)),
    ("simulate_bold", "tr", lambda b: hd.simulate_bold(U, 0.1, tr=b)),
    ("integrate_balloon", "x0", lambda b: hd.integrate_balloon(U, 0.1, x0=np.full((1, 4), b))),
    ("BalloonParams", "decay_rate", lambda b: hd.simulate_bold(U, 0.1, hd.BalloonParams(b))),
    ("BOLDParams", "field_strength", lambda b: hd.simulate_bold(U, 0.1, None, hd.BOLDParams(b))),
    ("spm_hrf", "onset", lambda b: hd.spm_hrf(1.0, onset=b)),
    ("spm_hrf", "rt", lambda b: hd.spm_hrf(b)),
    ("nilearn_spm_hrf", "onset", lambda b: hd.nilearn_spm_hrf(1.0, onset=b)),
    ("nilearn_glover_hrf", "tr", lambda b: hd.nilearn_glover_hrf(b)),
    ("event_boxcar", "amplitudes", lambda b: hd.event_boxcar([1.0], [2.0], [b], np.arange(10.0))),
    ("event_boxcar", "times", lambda b: hd.event_boxcar([1.0], [2.0], [1.0], np.array([0.0, b]))),
    ("sample_at", "sample_times", lambda b: hd.sample_at(np.ones(10), np.arange(10.0), [1.0, b])),
    (
        "convolve_kernels",
        "signal",
        lambda b: hd.convolve_kernels(np.array([1.0, b]), np.ones((1, 3))),
    ),
    # neural models
    ("ERPParams.spm", "forward", lambda b: _erp(b)),
    (
        "simulate_neural_mass",
        "inputs",
        lambda b: neural.simulate_neural_mass(_erp(), lambda t: np.full((t.size, 1), b), 1e-3, 10),
    ),
    (
        "event_related_activity",
        "onsets",
        lambda b: neural.event_related_activity(_erp(), [[b]], 0.1),
    ),
    (
        "event_related_activity",
        "duration",
        lambda b: neural.event_related_activity(_erp(), [[0.01]], b),
    ),
    # electromagnetism
    ("SphereHead.create", "conductivities", lambda b: _head((0.33, b, 0.33))),
    ("SphereHead.create", "radii", lambda b: em.SphereHead.create([0.08, b, 0.09], [1, 1, 1])),
    ("eeg_gain", "electrodes", lambda b: em.eeg_gain(_head(), np.full((3, 3), b), DIPOLE)),
    ("eeg_gain", "positions", lambda b: em.eeg_gain(_head(), ELECTRODES, np.full((1, 3), b))),
    (
        "eeg_potential",
        "moment",
        lambda b: em.eeg_potential(_head(), ELECTRODES, DIPOLE[0], np.array([0, 0, b])),
    ),
    (
        "homogeneous_sphere_potential",
        "conductivity",
        lambda b: em.homogeneous_sphere_potential(
            ELECTRODES, DIPOLE[0], np.array([0, 0, 1e-8]), 0.09, b
        ),
    ),
    ("meg_gain", "positions", lambda b: em.meg_gain(em.opm_array(4), np.full((1, 3), b))),
    ("meg_gain", "center", lambda b: em.meg_gain(em.opm_array(4), DIPOLE, center=(0, 0, b))),
    ("sarvas_field_matrix", "points", lambda b: em.sarvas_field_matrix(np.full((2, 3), b), DIPOLE)),
    ("EEGSensors", "positions", lambda b: em.EEGSensors(("a",), np.array([[b, 0, 0.09]]))),
    ("opm", "position", lambda b: em.opm("a", [0, 0, b], [0, 0, 1.0])),
    (
        "apply_moments",
        "moments",
        lambda b: em.apply_moments(np.ones((2, 1, 3)), np.full((1, 3), b)),
    ),
    ("BEMForward.create", "conductivities", lambda b: _tiny_bem([b])),
]


@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("entry", "arg", "call"), CASES, ids=[f"{e}-{a}" for e, a, _ in CASES])
def test_nonfinite_rejected(entry, arg, call, bad):
    with pytest.raises(ParameterError, match=rf"\b{arg}\b"):
        call(bad)


def test_checks_do_not_break_tracing():
    # the same entry points stay differentiable and jit-compilable
    g = jax.grad(lambda te: se.spoiled_gre(1.0, 1.0, 0.05, 0.1, te, 0.5))(0.03)
    assert np.isfinite(g)
    head = _head()
    h = jax.jit(lambda p: em.eeg_gain(head, ELECTRODES, p))(DIPOLE)
    assert np.all(np.isfinite(np.asarray(h)))
    bold = jax.jit(lambda u: hd.simulate_bold(u, 0.1).bold)(jnp.ones((20, 1)) * 0.1)
    assert np.all(np.isfinite(np.asarray(bold)))
