"""BEM lead fields: biosim's symmetric Galerkin BEM vs MNE-Python and OpenMEEG, one run.

Problem: three concentric spheres, radii 78.3/82.8/90 mm,
conductivities 0.3/0.006/0.3 S/m (ratio 50; also ratio 80), meshed as
icospheres (642 or 2562 vertices per surface; a 4-shell model at 642);
64 EEG electrodes (BioSemi 64, projected onto the scalp sphere, average
reference), 306 MEG channels (biosim's squid_helmet_306, 102 magnetometers +
204 planar gradiometers, 4-point coils) and, for biosim, 64 radial OPMs 6 mm
above the scalp.

* biosim's EEG readout (``--readout``): Green's representation in the scalp
  compartment (the default) and the P1 interpolant at the electrodes (as
  the anchors), both from the same operators.
* Accuracy: RDM = || u/|u| - v/|v| || and MAG = |u|/|v| against the exact
  multi-shell series (EEG) and Sarvas (MEG), one dipole per eccentricity
  (radial and tangential; MEG scored on tangential dipoles, whose field is
  not zero), and over the large source set.
* Timing (``--large``): 3 x 2562 vertices, 370 sensors, 8196 sources x 3
  orientations (uniform in a ball of 0.9 x the inner radius, so that the
  analytic sphere is the reference; the same sources as the anchors' timing
  run).  biosim's "solution" = operator assembly + factorisation and
  transfer solve (sensor functionals as right-hand sides); "forward" = gain
  matrix (exact source terms on the inner surface times the transfer
  matrix).  Peak memory: resident set sampled every 5 ms (includes LAPACK
  and XLA buffers) and tracemalloc's peak of Python/numpy allocations.

Anchors (benchmarks/_bem_anchors.py): MNE-Python's linear-collocation BEM
(isolated-skull approach, 3 layers only) and OpenMEEG's symmetric BEM, at
biosim's coil integration points.  JAX compilation is timed separately
(a warm-up on a small mesh).  The machine (2 cores) was shared while the
tables in the notes were measured.

Usage::

    python benchmarks/leadfield_bem.py                    # both of the following
    python benchmarks/leadfield_bem.py --table 3          # 642-vertex accuracy tables
    python benchmarks/leadfield_bem.py --table 4 --ratio80 --four-shell --tools ""   # biosim only
    python benchmarks/leadfield_bem.py --vertices 1280 --tools ""   # Fibonacci spheres, biosim only
    python benchmarks/leadfield_bem.py --large            # 2562: timing + accuracy
    python benchmarks/leadfield_bem.py --gradient 3 4 --geometry matched   # conductivity gradients
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
import tracemalloc

import numpy as np

import biosim  # noqa: F401
from biosim.geometry.mesh import nested_spheres
from biosim.physics.electromag import EEGSensors, MEGSensors, SphereHead, eeg_gain, meg_gain
from biosim.physics.electromag.bem import BEMForward, BEMOperators
from biosim.physics.electromag.montage import standard_montage
from biosim.physics.electromag.sensors import opm_array, squid_helmet_306

try:
    import _bem_anchors as anchors
except ImportError:  # the anchors live in another branch until merged
    anchors = None

RADII = (0.0783, 0.0828, 0.090)
SIGMA50 = (0.3, 0.006, 0.3)
SIGMA80 = (0.3, 0.3 / 80, 0.3)
ECC = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


class PeakRSS:
    """Peak resident memory (MiB) above the level at entry, sampled every 5 ms."""

    def __enter__(self):
        self.base = self.peak = self.phase_peak = self._rss()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def _run(self):
        while not self._stop:
            rss = self._rss()
            self.peak = max(self.peak, rss)
            self.phase_peak = max(self.phase_peak, rss)
            time.sleep(0.005)

    def phase(self):
        """Peak (MiB above the level at entry) since the previous call, and reset."""
        rss = self._rss()
        peak, self.phase_peak = max(self.phase_peak, rss), rss
        return peak - self.base

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())
        self.delta = self.peak - self.base


def sensors_setup():
    e = standard_montage("biosemi64").positions
    c = e.mean(0)
    elec = (e - c) / np.linalg.norm(e - c, axis=1)[:, None] * RADII[-1]
    eeg = EEGSensors(tuple(f"EEG{i:03d}" for i in range(len(elec))), elec)
    helmet = squid_helmet_306()
    opms = opm_array(64, scalp_radius=RADII[-1], axes="radial")
    return eeg, helmet, opms


def test_dipoles(seed=1, inner=RADII[0]):
    rng = np.random.default_rng(seed)
    ecc = np.asarray(ECC)
    d = rng.normal(size=(len(ecc), 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    t = np.cross(d, rng.normal(size=d.shape))
    t /= np.linalg.norm(t, axis=1)[:, None]
    pos = ecc[:, None] * inner * d
    return pos, d, t


def rdm_mag(u, v):
    """Column-wise RDM and MAG of u (n, k) against v (n, k)."""
    nu, nv = np.linalg.norm(u, axis=0), np.linalg.norm(v, axis=0)
    return np.linalg.norm(u / nu - v / nv, axis=0), nu / nv


def oriented(g, ori):
    return np.einsum("csk,sk->cs", np.asarray(g), ori)


def references(head, eeg, meg, pos):
    ge = eeg.reference_matrix() @ np.asarray(eeg_gain(head, eeg.positions, pos)).reshape(
        eeg.n_channels, -1
    )
    gm = np.asarray(meg_gain(meg, pos))
    return ge.reshape(eeg.n_channels, len(pos), 3), gm


def print_rows(label, ecc, rows):
    print(f"  {label:26s}" + "".join(f"{e:7.2f}" for e in ecc))
    for name, vals in rows:
        print(f"  {name:26s}" + "".join(f"{x:7.4f}" for x in vals))


def biosim_rows(fwd, eeg, helmet, opms, head, pos, rad, tan):
    g = np.asarray(fwd.gain(pos))
    ne, nh = eeg.n_channels, helmet.n_channels
    ref_e, ref_h = references(head, eeg, helmet, pos)
    ref_o = np.asarray(meg_gain(opms, pos))
    er, emr = rdm_mag(oriented(g[:ne], rad), oriented(ref_e, rad))
    et, emt = rdm_mag(oriented(g[:ne], tan), oriented(ref_e, tan))
    mags = [i for i, k in enumerate(helmet.kinds) if k == "mag"]
    grads = [i for i, k in enumerate(helmet.kinds) if k == "grad"]
    gh = oriented(g[ne : ne + nh], tan)
    rh = oriented(ref_h, tan)
    mr, mm = rdm_mag(gh[mags], rh[mags])
    gr, gm = rdm_mag(gh[grads], rh[grads])
    orr, om = rdm_mag(oriented(g[ne + nh :], tan), oriented(ref_o, tan))
    return [
        ("EEG radial RDM", er),
        ("EEG radial MAG", emr),
        ("EEG tangential RDM", et),
        ("EEG tangential MAG", emt),
        ("MEG mag RDM (tang.)", mr),
        ("MEG mag MAG", mm),
        ("MEG grad RDM (tang.)", gr),
        ("MEG grad MAG", gm),
        ("OPM RDM (tang.)", orr),
        ("OPM MAG", om),
    ]


def anchor_rows(tool, surfaces, sigma, eeg, helmet, head, pos, rad, tan):
    if anchors is None:
        print(f"  {tool}: benchmarks/_bem_anchors.py not importable")
        return None
    fn = anchors.run_mne_bem if tool == "mne" else anchors.run_openmeeg
    p2 = np.r_[pos, pos]
    o2 = np.r_[rad, tan]
    try:
        r = fn(surfaces, sigma, eeg.positions, helmet, p2, o2)
    except Exception as exc:  # noqa: BLE001  (report, keep benchmarking)
        print(f"  {tool}: failed ({type(exc).__name__}: {exc})")
        return None
    if r is None:
        print(f"  {tool}: not available")
        return None
    n = len(pos)
    ge = r["eeg_gain"] - r["eeg_gain"].mean(0)
    ref_e, ref_h = references(head, eeg, helmet, pos)
    er, emr = rdm_mag(ge[:, :n], oriented(ref_e, rad))
    et, emt = rdm_mag(ge[:, n:], oriented(ref_e, tan))
    mags = [i for i, k in enumerate(helmet.kinds) if k == "mag"]
    grads = [i for i, k in enumerate(helmet.kinds) if k == "grad"]
    gh = r["meg_gain"][:, n:]
    rh = oriented(ref_h, tan)
    mr, mm = rdm_mag(gh[mags], rh[mags])
    gr, gm = rdm_mag(gh[grads], rh[grads])
    print(
        f"  {r.get('tool', tool)}: solution {r['times']['solution']:.1f} s, forward "
        f"{r['times']['forward']:.1f} s"
    )
    return [
        ("EEG radial RDM", er),
        ("EEG radial MAG", emr),
        ("EEG tangential RDM", et),
        ("EEG tangential MAG", emt),
        ("MEG mag RDM (tang.)", mr),
        ("MEG mag MAG", mm),
        ("MEG grad RDM (tang.)", gr),
        ("MEG grad MAG", gm),
    ]


def table(
    subdivisions,
    sigma=SIGMA50,
    four_shell=False,
    tools=("mne", "openmeeg"),
    n_vertices=None,
    flux="p0",
    geometry="flat",
    n_directions=1,
    readouts=("representation", "interpolation"),
):
    eeg, helmet, opms = sensors_setup()
    if four_shell:
        head = SphereHead.four_shell(RADII[-1])
        radii = tuple(np.asarray(head.radii).tolist())
        sigma = tuple(np.asarray(head.conductivities).tolist())
        names = ("inner_skull", "csf", "outer_skull", "scalp")
    else:
        radii = RADII
        head = SphereHead.create(radii, sigma)
        names = ("inner_skull", "outer_skull", "scalp")
    surfaces = nested_spheres(radii, subdivisions, names=names, n_vertices=n_vertices)
    pos, rad, tan = test_dipoles(inner=radii[0])
    t0 = time.perf_counter()
    ops = BEMOperators.create(surfaces, min_gap=0.0005, flux=flux, geometry=geometry)
    t1 = time.perf_counter()
    for k, readout in enumerate(readouts):
        t1 = time.perf_counter()
        fwd = BEMForward.from_operators(
            ops, sigma, eeg=eeg, meg=MEGSensors.concatenate(helmet, opms), eeg_readout=readout
        )
        t2 = time.perf_counter()
        if k == 0:
            print(
                f"# {len(surfaces)} x {len(surfaces[0].vertices)} vertices, radii "
                f"{[round(r * 1e3, 1) for r in radii]} mm, sigma {list(sigma)} S/m; biosim "
                f"{ops.n_unknowns} unknowns (flux {flux}, {geometry} elements): assembly "
                f"{t1 - t0:.1f} s, "
                f"solve {t2 - t1:.1f} s"
            )
        print_rows(
            f"biosim ({geometry}, {flux}, {readout[:6]}.)",
            ECC,
            biosim_rows(fwd, eeg, helmet, opms, head, pos, rad, tan),
        )
        if n_directions > 1:
            directions_table(fwd, eeg, helmet, head, radii[0], n_directions)
    for tool in tools:
        if tool == "mne" and len(surfaces) != 3:
            continue
        rows = anchor_rows(tool, surfaces, sigma, eeg, helmet, head, pos, rad, tan)
        if rows is not None:
            print_rows(tool, ECC, rows)
            if n_directions > 1:
                directions_table(
                    None, eeg, helmet, head, radii[0], n_directions, tool, surfaces, sigma
                )
    return ops


def directions_table(
    fwd, eeg, helmet, head, inner, n_directions, anchor=None, surfaces=None, sigma=None
):
    """Mean and worst EEG RDM / MAG over ``n_directions`` random dipole directions
    per eccentricity (the single-draw tables above depend on the draw); with
    ``anchor`` ("mne" or "openmeeg") for that tool on ``surfaces``, one run for
    all the directions."""
    rows = {k: [] for k in ("rad", "tan")}
    draws = [test_dipoles(seed, inner) for seed in range(1, n_directions + 1)]
    if anchor is not None:
        fn = anchors.run_mne_bem if anchor == "mne" else anchors.run_openmeeg
        pos_all = np.concatenate([p for p, _, _ in draws])
        try:
            r = fn(
                surfaces,
                sigma,
                eeg.positions,
                None,
                np.r_[pos_all, pos_all],
                np.r_[
                    np.concatenate([d for _, d, _ in draws]),
                    np.concatenate([t for _, _, t in draws]),
                ],
            )
        except Exception as exc:  # noqa: BLE001
            print(f"  {anchor}: failed ({type(exc).__name__}: {exc})")
            return
        if r is None:
            return
        ge = r["eeg_gain"] - r["eeg_gain"].mean(0)
        m = len(pos_all)
    for k, (pos, rad, tan) in enumerate(draws):
        ref_e, _ = references(head, eeg, helmet, pos)
        if anchor is None:
            g = np.asarray(fwd.gain(pos))[: eeg.n_channels]
            g_rad, g_tan = oriented(g, rad), oriented(g, tan)
        else:
            sl = slice(k * len(pos), (k + 1) * len(pos))
            g_rad, g_tan = ge[:, sl], ge[:, m:][:, sl]
        rows["rad"].append(rdm_mag(g_rad, oriented(ref_e, rad)))
        rows["tan"].append(rdm_mag(g_tan, oriented(ref_e, tan)))
    out = []
    for k, label in (("rad", "radial"), ("tan", "tangential")):
        r = np.array([x[0] for x in rows[k]])
        m = np.array([x[1] for x in rows[k]])
        out += [
            (f"EEG {label} RDM mean", r.mean(0)),
            (f"EEG {label} RDM max", r.max(0)),
            (f"EEG {label} MAG mean", m.mean(0)),
            (f"EEG {label} |1-MAG| max", np.abs(1 - m).max(0)),
        ]
    print_rows(f"{n_directions} directions per ecc." + (f" ({anchor})" if anchor else ""), ECC, out)


def large(
    subdivisions=4,
    n_sources=8196,
    tools=("mne", "openmeeg"),
    seed=0,
    flux="p0",
    geometry="flat",
    n_directions=1,
    readouts=("representation", "interpolation"),
):
    eeg, helmet, opms = sensors_setup()
    head = SphereHead.three_shell()
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_sources, 3))
    src = (
        d
        / np.linalg.norm(d, axis=1)[:, None]
        * 0.9
        * RADII[0]
        * rng.uniform(0.0, 1.0, (n_sources, 1)) ** (1 / 3)
    )
    # JAX compilation on a small mesh (same jitted kernels, other shapes compile again
    # only for the chunk shapes, which are fixed)
    tc = time.perf_counter()
    small = BEMForward.create(
        nested_spheres(
            RADII,
            1,
        ),
        SIGMA50,
        eeg=eeg,
        meg=helmet,
        min_gap=0.0005,
        flux=flux,
        geometry=geometry,
    )
    small.gain(src[:300] * 0.5)
    t_compile = time.perf_counter() - tc
    surfaces = nested_spheres(RADII, subdivisions)
    tracemalloc.start()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        ops = BEMOperators.create(surfaces, flux=flux, geometry=geometry)
        t1 = time.perf_counter()
        m_asm = mem.phase()
        fwd = BEMForward.from_operators(ops, SIGMA50, eeg=eeg, meg=helmet, eeg_readout=readouts[0])
        t2 = time.perf_counter()
        m_sol = mem.phase()
        g = np.asarray(fwd.gain(src))
        t3 = time.perf_counter()
        m_gain = mem.phase()
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ne = eeg.n_channels
    ref_e, ref_h = references(head, eeg, helmet, src)
    re, me = rdm_mag(g[:ne].reshape(ne, -1), ref_e.reshape(ne, -1))
    rm, mm = rdm_mag(g[ne:].reshape(helmet.n_channels, -1), ref_h.reshape(helmet.n_channels, -1))
    print(
        f"# large: 3 x {len(surfaces[0].vertices)} vertices ({ops.n_unknowns} unknowns, "
        f"flux {flux}, "
        f"{geometry} elements, EEG readout {readouts[0]}), "
        f"{helmet.n_channels} MEG + {ne} EEG x {n_sources} sources x 3"
    )
    print(
        f"biosim: assembly {t1 - t0:.1f} s, factorisation + transfer {t2 - t1:.1f} s "
        f"(solution {t2 - t0:.1f} s), gain {t3 - t2:.1f} s, total {t3 - t0:.1f} s "
        f"(JAX compile warm-up {t_compile:.1f} s); peak RSS +{mem.delta:.0f} MiB (assembly "
        f"+{m_asm:.0f}, factorisation + transfer +{m_sol:.0f}, gain +{m_gain:.0f}), "
        f"tracemalloc peak {tm_peak / 2**20:.0f} MiB; "
        f"EEG RDM median {np.median(re):.4f} max {re.max():.4f}, MAG median {np.median(me):.4f}; "
        f"MEG RDM median {np.median(rm):.4f} max {rm.max():.4f} (all x/y/z dipoles, 0 < ecc < 0.9)"
    )
    # accuracy at the test eccentricities from the same forward model (and, after
    # the timed part, from the other readouts)
    pos, rad, tan = test_dipoles()
    ref_e, ref_h = references(head, eeg, helmet, pos)
    for k, readout in enumerate(readouts):
        if k:
            fwd = BEMForward.from_operators(ops, SIGMA50, eeg=eeg, meg=helmet, eeg_readout=readout)
            g = np.asarray(fwd.gain(src))
            re, me = rdm_mag(g[:ne].reshape(ne, -1), ref_full(head, eeg, src))
            print(
                f"biosim, EEG readout {readout}: EEG RDM median {np.median(re):.4f} max "
                f"{re.max():.4f}, "
                f"MAG median {np.median(me):.4f} (the same sources)"
            )
        ge = np.asarray(fwd.gain(pos))
        rows = [
            ("EEG radial RDM", rdm_mag(oriented(ge[:ne], rad), oriented(ref_e, rad))[0]),
            ("EEG radial MAG", rdm_mag(oriented(ge[:ne], rad), oriented(ref_e, rad))[1]),
            ("EEG tangential RDM", rdm_mag(oriented(ge[:ne], tan), oriented(ref_e, tan))[0]),
            ("EEG tangential MAG", rdm_mag(oriented(ge[:ne], tan), oriented(ref_e, tan))[1]),
            ("MEG RDM (tang.)", rdm_mag(oriented(ge[ne:], tan), oriented(ref_h, tan))[0]),
            ("MEG MAG (tang.)", rdm_mag(oriented(ge[ne:], tan), oriented(ref_h, tan))[1]),
        ]
        print_rows(f"biosim 2562 test dipoles ({geometry}, {flux}, {readout[:6]}.)", ECC, rows)
        if n_directions > 1:
            directions_table(fwd, eeg, helmet, head, RADII[0], n_directions)
    del fwd
    for tool in tools:
        if anchors is None:
            print(f"{tool}: benchmarks/_bem_anchors.py not importable")
            continue
        fn = anchors.run_mne_bem if tool == "mne" else anchors.run_openmeeg
        ta = time.perf_counter()
        try:
            r = fn(surfaces, SIGMA50, eeg.positions, helmet, src)
        except Exception as exc:  # noqa: BLE001
            print(f"{tool}: failed ({type(exc).__name__}: {exc})")
            continue
        wall = time.perf_counter() - ta
        if r is None:
            print(f"{tool}: not available / timed out")
            continue
        ae = r["eeg_gain"] - r["eeg_gain"].mean(0)
        are, ame = rdm_mag(ae, ref_full(head, eeg, src))
        arm, amm = rdm_mag(
            r["meg_gain"], np.asarray(meg_gain(helmet, src)).reshape(helmet.n_channels, -1)
        )
        sol, fwd_t = r["times"]["solution"], r["times"]["forward"]
        print(
            f"{r.get('tool', tool)}: solution {sol:.1f} s, forward {fwd_t:.1f} s (wall "
            f"{wall:.1f} s), "
            f"peak memory +{r['peak_mem_mb']:.0f} MiB; EEG RDM median {np.median(are):.4f} max "
            f"{are.max():.4f}, MAG median {np.median(ame):.4f}; MEG RDM median "
            f"{np.median(arm):.4f} "
            f"max {arm.max():.4f}; time ratio anchor/biosim: solution {sol / (t2 - t0):.2f}, "
            f"total {(sol + fwd_t) / (t3 - t0):.2f}"
        )


def template_flux(n_vertices=642, n_sources=300, seed=0):
    """P1 against P0 normal currents on the realistic template head (no analytic
    reference there: the two discretisations should converge to each other)."""
    from biosim.geometry.template_head import project_to_scalp, template_center, template_head

    surfaces = template_head(n_vertices)
    c = template_center()
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(64, 3))
    d[:, 2] = np.abs(d[:, 2]) + 0.2
    d /= np.linalg.norm(d, axis=1)[:, None]
    eeg = EEGSensors(
        tuple(f"E{i}" for i in range(64)), project_to_scalp(c + 0.2 * d, n_vertices=n_vertices)
    )
    s = rng.normal(size=(n_sources, 3))
    s /= np.linalg.norm(s, axis=1)[:, None]
    src = c + s * 0.045 * rng.uniform(0, 1, (n_sources, 1)) ** (1 / 3)
    gains = {}
    for flux in ("p0", "p1"):
        t0 = time.perf_counter()
        ops = BEMOperators.create(surfaces, flux=flux)
        fwd = BEMForward.from_operators(ops, (0.33, 0.0066, 0.33), eeg=eeg)
        gains[flux] = np.asarray(fwd.gain(src)).reshape(eeg.n_channels, -1)
        print(
            f"template 3 x {n_vertices}, flux {flux}: {ops.n_unknowns} unknowns, "
            f"{time.perf_counter() - t0:.1f} s (incl. JAX compilation)"
        )
    r, m = rdm_mag(gains["p1"], gains["p0"])
    print(
        f"template 3 x {n_vertices}: p1 vs p0 over {3 * n_sources} dipoles: RDM median "
        f"{np.median(r):.4f} "
        f"max {r.max():.4f}; MAG range [{m.min():.4f}, {m.max():.4f}]"
    )


def conductivity_gradient(subdivisions=4, n_sources=300, geometry="matched", seed=0, dense=None):
    """Gradient of an EEG + MEG misfit with respect to the three conductivities.

    The misfit: squared difference between the BEM gain at conductivities
    (0.33, 0.0042, 0.33) and the analytic 3-shell sphere at the benchmark's
    (0.3, 0.006, 0.3), over ``n_sources`` dipoles and all 370 channels (each
    kind scaled to unit norm).  Timed: one concrete forward (transfer + gain),
    ``jax.value_and_grad`` with the adjoint rule (default of
    ``BEMForward.from_operators``), the dense JAX solve (``derivatives="dense"``,
    small meshes only: 2N + 1 dense matrices), and central finite differences
    of the concrete path (6 forwards: the alternative without derivatives),
    which also check the gradient.  Operator assembly is not included (it does
    not depend on the conductivities)."""
    import jax
    import jax.numpy as jnp

    from biosim.physics.electromag.bem import meg_surface_functionals

    eeg, helmet, _ = sensors_setup()
    head = SphereHead.create(RADII, SIGMA50)
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_sources, 3))
    src = (
        d
        / np.linalg.norm(d, axis=1)[:, None]
        * 0.9
        * RADII[0]
        * rng.uniform(0, 1, (n_sources, 1)) ** (1 / 3)
    )
    ref_e, ref_h = references(head, eeg, helmet, src)
    ne = eeg.n_channels
    ref = np.concatenate([ref_e / np.linalg.norm(ref_e), ref_h / np.linalg.norm(ref_h)])
    scale = np.concatenate(
        [
            np.full(ne, 1 / np.linalg.norm(ref_e)),
            np.full(helmet.n_channels, 1 / np.linalg.norm(ref_h)),
        ]
    )[:, None, None]
    surfaces = nested_spheres(RADII, subdivisions)
    ta = time.perf_counter()
    ops = BEMOperators.create(surfaces, geometry=geometry)
    mf = meg_surface_functionals(ops, helmet)
    t_ops = time.perf_counter() - ta
    sig0 = np.array([0.33, 0.0042, 0.33])

    def loss(sig, derivatives="adjoint"):
        fwd = BEMForward.from_operators(
            ops, sig, eeg=eeg, meg=helmet, meg_functionals=mf, derivatives=derivatives
        )
        return jnp.sum((fwd.gain(src) * scale - ref) ** 2)

    print(
        f"# conductivity gradient: 3 x {len(surfaces[0].vertices)} vertices "
        f"({ops.n_unknowns} unknowns, "
        f"{geometry}), {ne} EEG + {helmet.n_channels} MEG x {n_sources} dipoles; operators + MEG "
        f"functionals {t_ops:.1f} s (not in the timings)"
    )
    loss(sig0)  # JAX compilation of the gain kernels
    with PeakRSS() as m_f:
        t0 = time.perf_counter()
        v0 = float(loss(sig0))
        t_f = time.perf_counter() - t0
    jax.value_and_grad(loss)(jnp.asarray(sig0 * 1.01))  # compilation of the traced path
    with PeakRSS() as m_a:
        t0 = time.perf_counter()
        v_a, g_a = jax.value_and_grad(loss)(jnp.asarray(sig0))
        g_a = np.asarray(g_a)
        t_a = time.perf_counter() - t0
    print(f"concrete forward: {t_f:.1f} s, peak RSS +{m_f.delta:.0f} MiB; misfit {v0:.6g}")
    print(
        f"adjoint value_and_grad: {t_a:.1f} s ({t_a / t_f:.2f} x the forward), peak RSS "
        f"+{m_a.delta:.0f} MiB; "
        f"grad {np.array2string(g_a, precision=6)}"
    )
    dense_bytes = 8 * (2 * len(sig0) + 3) * ops.n_unknowns**2
    if dense is None:
        dense = dense_bytes < 4e9
    if dense:
        with PeakRSS() as m_d:
            t0 = time.perf_counter()
            v_d, g_d = jax.value_and_grad(lambda s: loss(s, "dense"))(jnp.asarray(sig0))
            g_d = np.asarray(g_d)
            t_d = time.perf_counter() - t0
        print(
            f"dense value_and_grad: {t_d:.1f} s (incl. compilation), peak RSS "
            f"+{m_d.delta:.0f} MiB; "
            f"max rel. difference to adjoint {np.max(np.abs(g_d - g_a) / np.abs(g_a)):.1e}"
        )
    else:
        print(f"dense value_and_grad: skipped (~{dense_bytes / 2**30:.0f} GiB of dense matrices)")
    t0 = time.perf_counter()
    fd = np.zeros(3)
    for k in range(3):
        h = 1e-4 * sig0[k]
        up, dn = sig0.copy(), sig0.copy()
        up[k] += h
        dn[k] -= h
        fd[k] = (float(loss(up)) - float(loss(dn))) / (2 * h)
    t_fd = time.perf_counter() - t0
    print(
        f"central differences (6 forwards): {t_fd:.1f} s; ratio FD/adjoint {t_fd / t_a:.2f}; "
        f"max rel. difference to adjoint {np.max(np.abs(fd - g_a) / np.abs(g_a)):.1e}"
    )


def ref_full(head, eeg, src):
    ge = np.asarray(eeg_gain(head, eeg.positions, src)).reshape(eeg.n_channels, -1)
    return ge - ge.mean(0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--table",
        type=int,
        nargs="*",
        default=None,
        help="icosphere subdivisions for the accuracy tables (3: 642, 4: 2562)",
    )
    ap.add_argument(
        "--vertices",
        type=int,
        nargs="*",
        default=None,
        help="Fibonacci-sphere vertex counts for more accuracy tables (e.g. 1280)",
    )
    ap.add_argument("--ratio80", action="store_true", help="also the conductivity ratio 80")
    ap.add_argument("--four-shell", action="store_true", help="also the 4-shell sphere")
    ap.add_argument("--large", action="store_true", help="timing run at 3 x 2562")
    ap.add_argument("--n-sources", type=int, default=8196)
    ap.add_argument("--tools", default="mne,openmeeg")
    ap.add_argument(
        "--template",
        type=int,
        nargs="*",
        default=None,
        help="P1 vs P0 currents on the template head at these vertex counts (642, 2562)",
    )
    ap.add_argument(
        "--flux",
        default="p0",
        choices=("p0", "p1"),
        help="normal-current basis of the symmetric BEM: p0 per triangle (Kybic et al. "
        "2005, as OpenMEEG), p1 per vertex (fewer unknowns)",
    )
    ap.add_argument(
        "--geometry",
        default="flat",
        choices=("flat", "matched", "curved"),
        help="biosim's elements: the mesh's flat triangles (as MNE and OpenMEEG), flat "
        "triangles enclosing the smooth surface's volume (vertices moved 0.06 mm at "
        "2562) or curved elements through the same vertices "
        "(BEMOperators.create(geometry=...))",
    )
    ap.add_argument(
        "--gradient",
        type=int,
        nargs="*",
        default=None,
        help="time conductivity gradients (adjoint, dense, finite differences) at these "
        "icosphere subdivisions (3: 642, 4: 2562)",
    )
    ap.add_argument(
        "--readout",
        default="both",
        choices=("representation", "interpolation", "both"),
        help="biosim's EEG readout (BEMForward.from_operators(eeg_readout=...)): Green's "
        "representation in the scalp compartment (the default), the P1 interpolant "
        "(as MNE and OpenMEEG), or both (timing with the first)",
    )
    ap.add_argument(
        "--directions",
        type=int,
        default=1,
        help="also mean and worst EEG RDM/MAG over this many random directions per eccentricity",
    )
    args = ap.parse_args()
    tools = tuple(t for t in args.tools.split(",") if t)
    readouts = ("representation", "interpolation") if args.readout == "both" else (args.readout,)
    for nv in args.template or []:
        template_flux(nv)
    for sub in args.gradient or []:
        conductivity_gradient(sub, geometry=args.geometry)
    if (
        args.table is None
        and not args.large
        and not args.vertices
        and args.template is None
        and args.gradient is None
    ):  # default: the 642 table and the 2562 timing run
        args.table, args.large = [3], True
    for sub in args.table or []:
        kw = {
            "flux": args.flux,
            "geometry": args.geometry,
            "n_directions": args.directions,
            "readouts": readouts,
        }
        table(sub, SIGMA50, tools=tools, **kw)
        if args.ratio80:
            table(sub, SIGMA80, tools=tools, **kw)
        if args.four_shell:
            table(sub, four_shell=True, tools=("openmeeg",) if "openmeeg" in tools else (), **kw)
    for nv in args.vertices or []:
        table(
            None,
            SIGMA50,
            tools=tools,
            n_vertices=nv,
            flux=args.flux,
            geometry=args.geometry,
            n_directions=args.directions,
            readouts=readouts,
        )
    if args.large:
        large(
            4,
            args.n_sources,
            tools,
            flux=args.flux,
            geometry=args.geometry,
            n_directions=args.directions,
            readouts=readouts,
        )
