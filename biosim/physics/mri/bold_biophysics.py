"""GRE vs SE BOLD biophysics: extravascular relaxation around vessels.

A vessel (infinite cylinder of radius a, at angle theta to B0) filled with
blood of oxygen saturation Y perturbs the field outside it by (SI units)::

    dB(r, phi) = (dchi / 2) B0 sin^2(theta) (a / r)^2 cos(2 phi)
    dchi       = dchi_do Hct (1 - Y)

with ``dchi_do`` the susceptibility difference between fully deoxygenated and
oxygenated blood (0.27 ppm CGS = 4 pi x 0.27e-6 SI; Spees et al. 2001).

*Static dephasing* (Yablonskiy & Haacke 1994): for randomly oriented
cylinders of volume fraction zeta and t >> 1/dw, the GRE signal decays with::

    R2' = zeta dw,      dw = gamma dchi B0 / 3

(derived from the area integral of 1 - J0(w_c t a^2/r^2), whose long-time
limit gives zeta w_c for a perpendicular cylinder, times <sin^2 theta> = 2/3).

*Diffusion* (Boxerman et al. 1995; Uludag et al. 2009): spins diffusing
(D ~ 1 um^2/ms) average the field around small vessels.  Spin-echo
refocusing removes static dephasing, so SE Delta R2 peaks for radii of a few
micrometres (capillaries) and falls for large vessels, whereas GRE Delta R2*
rises to the static-dephasing plateau.  :func:`monte_carlo_relaxation`
simulates this with spins random-walking in the plane perpendicular to one
randomly oriented cylinder per spin inside a square cell of area
``pi a^2 / zeta`` (periodic images of the nearest 3 x 3 cells included);
walls are impermeable (steps into the vessel are rejected), so only the
extravascular signal is modelled.  One vessel per cell gives a cell signal
``S_cell = 1 - zeta X``; a medium of independent vessels multiplies their
phase factors, so its signal is ``exp(-zeta X) = exp(-(1 - S_cell))``
(the statistical approach of Yablonskiy & Haacke 1994, exact to first order in
zeta), hence ``R = (1 - S_cell) / TE``.  In the static limit (D = 0) the slope
of R TE versus TE tends to the static-dephasing R2' above.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..._core.units import GAMMA_PROTON
from ..._core.validation import check_all_finite, check_positive, check_range

#: Susceptibility difference of fully deoxygenated vs oxygenated blood, SI
#: (0.27 ppm in CGS units, Spees et al. 2001, times 4 pi).
DCHI_DEOXY = 4 * np.pi * 0.27e-6


def susceptibility_difference(saturation, hematocrit=0.4):
    """dchi (SI) of blood at oxygen saturation ``saturation`` vs tissue."""
    check_range("saturation", saturation, 0.0, 1.0)
    check_range("hematocrit", hematocrit, 0.0, 1.0)
    return DCHI_DEOXY * hematocrit * (1.0 - saturation)


def characteristic_frequency(saturation, field_strength, hematocrit=0.4):
    """Yablonskiy-Haacke dw = gamma dchi B0 / 3, rad/s."""
    check_positive("field_strength", field_strength, "T")
    return GAMMA_PROTON * susceptibility_difference(saturation, hematocrit) * field_strength / 3.0


def static_dephasing_r2prime(volume_fraction, saturation, field_strength, hematocrit=0.4):
    """Extravascular R2' (1/s) of randomly oriented cylinders, static regime."""
    check_range("volume_fraction", volume_fraction, 0.0, 1.0)
    return volume_fraction * characteristic_frequency(saturation, field_strength, hematocrit)


@partial(jax.jit, static_argnames=("n_spins", "n_steps", "images"))
def _mc(key, radius, volume_fraction, omega_c, diffusion, echo_time, n_spins, n_steps, images):
    k_theta, k_phi, k_pos, k_walk = jax.random.split(key, 4)
    cell = radius * jnp.sqrt(jnp.pi / volume_fraction)
    cos_t = jax.random.uniform(k_theta, (n_spins,), minval=-1.0, maxval=1.0)
    w_amp = omega_c * (1.0 - cos_t**2)  # omega_c sin^2(theta)
    rot = jax.random.uniform(k_phi, (n_spins,), maxval=jnp.pi)
    rng_img = range(-images, images + 1)
    offsets = jnp.array([[i, j] for i in rng_img for j in rng_img], float) * cell

    def inside(p):
        return jnp.sum(p**2, -1) < radius**2

    def wrap(p):
        return (p + cell / 2) % cell - cell / 2

    def freq(p):
        q = p[:, None, :] - offsets[None]
        r2 = jnp.sum(q**2, -1)
        r2 = jnp.maximum(r2, radius**2)
        c, s = jnp.cos(2 * rot)[:, None], jnp.sin(2 * rot)[:, None]
        cos2 = ((q[..., 0] ** 2 - q[..., 1] ** 2) * c + 2 * q[..., 0] * q[..., 1] * s) / r2
        return w_amp * jnp.sum(radius**2 / r2 * cos2, -1)

    # start uniformly outside the vessel (rejection by resampling a few times)
    p = jax.random.uniform(k_pos, (n_spins, 2), minval=-cell / 2, maxval=cell / 2)
    for i in range(8):
        redo = jax.random.uniform(
            jax.random.fold_in(k_pos, i), (n_spins, 2), minval=-cell / 2, maxval=cell / 2
        )
        p = jnp.where(inside(p)[:, None], redo, p)
    valid = ~inside(p)
    dt = echo_time / n_steps
    sigma = jnp.sqrt(2.0 * diffusion * dt)
    half = n_steps // 2

    def step(carry, inp):
        p, phase_gre, phase_se = carry
        k, idx = inp
        w = freq(p)
        phase_gre = phase_gre + w * dt
        phase_se = phase_se + jnp.where(idx < half, -1.0, 1.0) * w * dt
        trial = wrap(p + sigma * jax.random.normal(k, p.shape))
        p = jnp.where(inside(trial)[:, None], p, trial)
        return (p, phase_gre, phase_se), None

    keys = jax.random.split(k_walk, n_steps)
    zero = jnp.zeros(n_spins)
    (p, ph_gre, ph_se), _ = jax.lax.scan(step, (p, zero, zero), (keys, jnp.arange(n_steps)))
    wts = valid / jnp.sum(valid)
    # one vessel per cell: S_cell = 1 - zeta X; independent vessels: S = exp(-zeta X)
    s_gre = jnp.abs(jnp.sum(wts * jnp.exp(1j * ph_gre)))
    s_se = jnp.abs(jnp.sum(wts * jnp.exp(1j * ph_se)))
    return (1.0 - s_gre) / echo_time, (1.0 - s_se) / echo_time


def monte_carlo_relaxation(
    radius,
    volume_fraction,
    saturation,
    field_strength,
    echo_time,
    diffusion=1e-9,
    hematocrit=0.4,
    n_spins=4000,
    n_steps=200,
    seed=0,
    images=1,
):
    """Extravascular GRE R2* and SE R2 (1/s) around randomly oriented vessels.

    Parameters
    ----------
    radius : float
        Vessel radius, m.
    volume_fraction : float
        Blood volume fraction zeta.
    saturation : float
        Blood oxygen saturation Y.
    field_strength : float
        B0, T.
    echo_time : float
        TE, s (the SE refocusing pulse at TE/2).
    diffusion : float
        Water diffusion coefficient, m^2/s.
    n_spins, n_steps : int
        Monte Carlo size; the step length is sqrt(2 D TE / n_steps).
    images : int
        Rings of periodic cell images whose fields are added (1: 3 x 3 cells).

    Returns
    -------
    (r2star_gre, r2_se) : floats, 1/s
    """
    check_positive("radius", radius, "m")
    check_range("volume_fraction", volume_fraction, 0.0, 0.5, inclusive=False)
    check_positive("echo_time", echo_time, "s")
    check_range("diffusion", diffusion, 0.0, 1e-8)
    omega_c = 1.5 * characteristic_frequency(
        saturation, field_strength, hematocrit
    )  # gamma dchi B0/2
    return _mc(
        jax.random.PRNGKey(seed),
        radius,
        volume_fraction,
        omega_c,
        diffusion,
        echo_time,
        int(n_spins),
        int(n_steps),
        int(images),
    )


#: Donahue et al. (2011), NMR Biomed 24:25: total GRE Delta R2* on activation, 1/s.
DONAHUE_2011_DR2STAR = {1.5: -0.6, 3.0: -0.7, 7.0: -1.4}


def bold_contributions(
    v, q, field_strength, echo_time, epsilon=1.0, resting_extraction=0.4, resting_venous_volume=0.04
):
    """Extra- and intravascular parts of the revised BOLD model (Stephan et al. 2007).

    The k1 term of :mod:`biosim.physics.hemodynamics.bold` is the extravascular
    signal change, the k2 and k3 terms the intravascular one (Obata et al.
    2004).  Returns fractional signal changes and the equivalent relaxation-rate
    changes ``dR2* = -dS/S / TE`` (1/s) for each.
    """
    check_all_finite(v=v, q=q)
    from ..hemodynamics.bold import BOLDParams

    b = BOLDParams(
        field_strength=field_strength,
        echo_time=echo_time,
        epsilon=epsilon,
        resting_extraction=resting_extraction,
        resting_venous_volume=resting_venous_volume,
    )
    k1, k2, k3 = b.coefficients()
    ev = resting_venous_volume * k1 * (1 - q)
    iv = resting_venous_volume * (k2 * (1 - q / v) + k3 * (1 - v))
    return {
        "extravascular": ev,
        "intravascular": iv,
        "dR2star_extravascular": -ev / echo_time,
        "dR2star_intravascular": -iv / echo_time,
    }
