"""MRIScanner at scale: the fast path against the per-slice exact path, partial volume,
region BOLD with slice timing, field dropout, motion, spin history, fluctuation hook."""

import numpy as np
import pytest
import scipy.sparse as sp

from biosim import ParameterError
from biosim.geometry.motion import RigidMotion
from biosim.instruments.mri import (
    FieldMap,
    GradientEchoEPI,
    MRIScanner,
    RegionBOLD,
    SpinEchoEPI,
    TissueMaps,
)
from biosim.physics.mri import image_formation as imf

SEQ = dict(matrix=(16, 16), fov=(0.048, 0.048), n_slices=4, slice_thickness=0.003, tr=1.0, te=0.03)
SHAPE = (16, 16, 4)


def _tissue(m0=None, t2star=0.045, off=0.0):  # off: Hz, scalar or (X, Y, Z)
    if m0 is None:
        m0 = np.zeros(SHAPE)
        m0[4:12, 5:11] = 1.0
        m0[6:8, 7:9] = 1.5
    ones = np.ones(SHAPE)
    return TissueMaps(m0, 1.4 * ones, 0.08 * ones, t2star * ones, off * ones)


def _motion(times, tz=None, rz=None, tx=None):
    n = len(times)
    trans, rot = np.zeros((n, 3)), np.zeros((n, 3))
    for col, arr, vals in ((0, trans, tx), (2, trans, tz), (2, rot, rz)):
        if vals is not None:
            arr[:, col] = vals
    return RigidMotion(np.asarray(times, float), trans, rot)


@pytest.mark.parametrize("seq_cls", [GradientEchoEPI, SpinEchoEPI])
def test_static_phantom_equals_per_slice_exact_path(seq_cls):
    seq = seq_cls(**{**SEQ, "te": 0.05})
    rng = np.random.default_rng(0)
    off = rng.normal(0, 10, SHAPE[:2])[:, :, None] * np.ones(SHAPE)  # uniform through slices
    if seq.spin_echo:  # the exact sum keeps the phase 2 pi df TE that a spin echo refocuses
        off = np.full(SHAPE, 15.0)
    tissue = _tissue(off=off)
    bold = np.zeros((2,) + SHAPE)
    bold[1, 4:12, 5:11] = 0.03
    scanner = MRIScanner(sequence=seq)
    # the exact sum has one point source per voxel: compare like with like (s = 1;
    # sub-voxels spread each voxel over its share of a non-uniform field)
    acq = scanner.acquire(tissue, bold, reference_echo_time=0.04, keep_phase=True, subvoxels=1)
    sub = scanner.acquire(tissue, bold, reference_echo_time=0.04, subvoxels=4).magnitude
    if seq.spin_echo:  # a uniform field: sub-voxels change nothing
        np.testing.assert_allclose(sub, acq.magnitude, rtol=1e-4, atol=1e-5 * sub.max())
    else:  # this field is white noise across voxels: they change the image
        assert np.abs(sub - acq.magnitude).max() > 1e-2 * acq.magnitude.max()
    with pytest.raises(ParameterError, match="subvoxels"):
        scanner.acquire(tissue, bold, subvoxels=0)
    # the former path: exact sum per slice and volume
    rho = np.asarray(seq.steady_state(tissue.m0, tissue.t1, tissue.t2, tissue.t2star))
    r2, r2p = 1 / tissue.t2, 1 / tissue.t2star - 1 / tissue.t2
    for v in range(2):
        d = -np.log1p(bold[v]) / 0.04
        for z in range(4):
            if seq.spin_echo:
                irr, rev = r2[..., z] + 0.5 * d[..., z], r2p[..., z] + 0.5 * d[..., z]
            else:
                irr, rev = r2[..., z] + r2p[..., z] + d[..., z], 0.0
            k = imf.epi_kspace(
                rho[..., z], irr, seq.fov, seq.te, seq.echo_spacing, off[..., z], rev, seq.spin_echo
            )
            ref = np.asarray(imf.reconstruct(k))
            if seq.spin_echo:
                ref = ref * np.exp(2j * np.pi * 15.0 * seq.te)
            got = acq.magnitude[..., z, v] * np.exp(1j * acq.phase[..., z, v])
            # the fast model neglects the in-line readout time: error < (R + pi |df|) esp
            bound = (np.max(irr) + np.max(rev) + np.pi * np.abs(off).max()) * seq.echo_spacing
            assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < bound


def test_partial_volume_sums_compartment_signals():
    seq = GradientEchoEPI(**SEQ)
    ones = np.ones(SHAPE)
    frac = np.array([0.6, 0.3, 0.1])  # GM, WM, CSF volume fractions, uniform object
    t1, t2, t2s = np.array([1.33, 0.83, 4.0]), np.array([0.083, 0.075, 0.5]), [0.05, 0.045, 0.4]
    comp = TissueMaps(
        frac[:, None, None, None] * ones,
        t1[:, None, None, None] * ones,
        t2[:, None, None, None] * ones,
        np.asarray(t2s)[:, None, None, None] * ones,
        0 * ones,
    )
    mag = MRIScanner(sequence=seq).acquire(comp, n_volumes=1).magnitude
    expected = sum(
        frac[c] * float(seq.steady_state(1.0, t1[c], t2[c], t2s[c])) * np.exp(-seq.te / t2s[c])
        for c in range(3)
    )
    # a uniform object is imaged exactly (the PSF sums to the window at the echo, 1)
    np.testing.assert_allclose(mag, expected, rtol=2e-5)
    # one compartment given as C = 1 equals the plain maps
    single = _tissue()
    stacked = TissueMaps(
        single.m0[None], single.t1[None], single.t2[None], single.t2star[None], single.off_resonance
    )
    np.testing.assert_array_equal(
        MRIScanner(sequence=seq).acquire(stacked, n_volumes=1).magnitude,
        MRIScanner(sequence=seq).acquire(single, n_volumes=1).magnitude,
    )


def _region(mask, times, fraction):
    w = sp.csr_matrix(mask.ravel()[None].astype(float))
    return RegionBOLD(np.asarray(times, float), np.asarray(fraction, float)[:, None], w)


def test_region_bold_only_in_its_voxels_at_te():
    seq = GradientEchoEPI(**{**SEQ, "echo_spacing": 1e-5})  # negligible T2* blurring
    mask = np.zeros(SHAPE, bool)
    mask[6:9, 7:10, 1:3] = True
    rb = _region(mask, [0.0, 1.5, 10.0], [0.0, 0.0, 0.0])
    rb_on = _region(mask, [0.0, 10.0], [0.02, 0.02])
    m0 = np.ones(SHAPE)
    base = MRIScanner(sequence=seq).acquire(_tissue(m0), n_volumes=2, region_bold=rb).magnitude
    on = MRIScanner(sequence=seq).acquire(
        _tissue(m0), n_volumes=2, region_bold=rb_on, reference_echo_time=seq.te
    )
    change = on.magnitude / base - 1
    np.testing.assert_allclose(change[mask], 0.02, rtol=2e-3)
    assert np.abs(change[~mask]).max() < 2e-4
    # the same as a dense bold_fraction over those voxels
    dense = np.zeros((2,) + SHAPE)
    dense[:, mask] = 0.02
    ref = MRIScanner(sequence=seq).acquire(_tissue(m0), dense, reference_echo_time=seq.te)
    np.testing.assert_allclose(on.magnitude, ref.magnitude, rtol=1e-5)


def test_region_bold_step_follows_slice_timing():
    seq = GradientEchoEPI(**{**SEQ, "slice_order": "interleaved"})
    st = seq.slice_times()  # [0, 0.5, 0.25, 0.75]
    mask = np.zeros(SHAPE, bool)
    mask[4:12, 4:12] = True
    t_step = 2.4
    rb = _region(mask, [0.0, t_step - 1e-6, t_step, 10.0], [0.0, 0.0, 0.05, 0.05])
    mag = MRIScanner(sequence=seq).acquire(_tissue(np.ones(SHAPE)), n_volumes=5, region_bold=rb)
    sig = mag.magnitude[8, 8]  # (Z, V)
    for k in range(4):
        first = int(np.ceil((t_step - st[k]) / seq.tr))
        assert np.all(sig[k, :first] == sig[k, 0])
        assert np.all(sig[k, first:] > sig[k, 0] * 1.01)
    assert seq.slice_times()[1] > 0.4  # slice 1 (t = 2.5) sees the step in volume 2, slice 2 not


def test_linear_through_slice_gradient_drops_signal_as_sinc():
    seq = GradientEchoEPI(**SEQ)
    scanner = MRIScanner(sequence=seq, field_strength=3.0)
    grad = 0.5  # ppm / m... F_zz = grad * z (z in m): dF/dz = gamma B0 grad 1e-6 Hz/m
    z = (np.arange(4) - 2) * seq.slice_thickness
    zz = np.broadcast_to(z, SHAPE)
    for g in (0.0, 1500.0, 4000.0):  # ppm/m
        fm = FieldMap.from_zz(g * zz)
        mag = scanner.acquire(_tissue(np.ones(SHAPE)), n_volumes=1, field=fm).magnitude
        if g == 0:
            ref = mag
            continue
        dfdz = 42.577478e6 * 3.0 * g * 1e-6
        expected = abs(np.sinc(dfdz * seq.slice_thickness * seq.te))
        np.testing.assert_allclose(mag / ref, expected, rtol=1e-4)
    del grad
    # spin echo refocuses the static dephasing
    se = MRIScanner(sequence=SpinEchoEPI(**{**SEQ, "te": 0.05}))
    a = se.acquire(_tissue(np.ones(SHAPE)), n_volumes=1, field=FieldMap.from_zz(4000.0 * zz))
    b = se.acquire(_tissue(np.ones(SHAPE)), n_volumes=1)
    np.testing.assert_allclose(a.magnitude, b.magnitude, rtol=1e-4)


def _acq(tissue, n_volumes=1, seq=None, **kw):
    return MRIScanner(sequence=seq or GradientEchoEPI(**SEQ)).acquire(
        tissue, n_volumes=n_volumes, **kw
    )


def test_still_motion_equals_no_motion_and_one_voxel_shift():
    tissue = _tissue()
    static = _acq(tissue, 2).magnitude
    still = _acq(tissue, 2, motion=_motion([0.0, 5.0])).magnitude
    np.testing.assert_allclose(still, static, rtol=1e-5, atol=1e-7)
    vx = SEQ["fov"][0] / SEQ["matrix"][0]
    moved = _acq(tissue, 2, motion=_motion([0.0, 5.0], tx=[vx, vx])).magnitude
    np.testing.assert_allclose(moved[1:], static[:-1], rtol=1e-5, atol=1e-7)


def test_rotation_about_z_rotates_the_image():
    tissue = _tissue()
    rot = _acq(tissue, 1, motion=_motion([0.0, 5.0], rz=[np.pi / 2] * 2)).magnitude
    # the head turned by +90 deg about z through the grid centre (voxel 8, 8): the
    # scanner sees the tissue maps rotated (x, y) -> (-y, x)
    rotated_maps = [np.zeros(SHAPE) for _ in range(4)]
    for src, dst in zip(
        (tissue.m0, tissue.t1, tissue.t2, tissue.t2star), rotated_maps, strict=True
    ):
        for i in range(16):
            for j in range(16):
                # scanner voxel (i, j) = head point R^T (i - 8, j - 8) = (j - 8, -(i - 8))
                hi, hj = j, 16 - i
                dst[i, j] = src[hi, hj] if 0 <= hj < 16 else (1.0 if src is not tissue.m0 else 0)
    ref = _acq(TissueMaps(*rotated_maps, tissue.off_resonance), 1).magnitude
    np.testing.assert_allclose(rot, ref, rtol=1e-5, atol=1e-6)


def test_spin_history_of_a_one_slice_jump_and_of_leaving_the_slab():
    seq = GradientEchoEPI(**{**SEQ, "slice_order": "ascending"})
    st = seq.slice_times()  # 0, 0.25, 0.5, 0.75
    dz = SEQ["slice_thickness"]
    t1 = 1.4
    ones = np.ones(SHAPE)
    tissue = TissueMaps(ones, t1 * ones, 0.08 * ones, 0.045 * ones, 0 * ones)  # uniform
    # up one slice between volumes 1 and 2, back between volumes 4 and 5
    motion = _motion([0, 1.8, 1.9, 4.8, 4.9, 7.0], tz=[0, 0, dz, dz, 0, 0])
    mag = _acq(tissue, 7, seq=seq, motion=motion).magnitude[8, 8]  # (Z, V)
    static = _acq(tissue, 1, seq=seq).magnitude[8, 8, 0, 0]
    cos_a, e1 = np.cos(np.deg2rad(seq.flip_angle)), np.exp(-seq.tr / t1)
    m_ss = (1 - e1) / (1 - e1 * cos_a)

    def recover(m_after, dt):
        return 1 - (1 - m_after) * np.exp(-dt / t1)

    np.testing.assert_allclose(mag[:, :2], static, rtol=1e-5)
    for j in range(3):  # head slice j now in scanner slice j + 1
        m2 = recover(m_ss * cos_a, seq.tr + st[j + 1] - st[j])
        m3 = recover(m2 * cos_a, seq.tr)
        assert mag[j + 1, 2] / static == pytest.approx(m2 / m_ss, rel=1e-5)
        assert mag[j + 1, 3] / static == pytest.approx(m3 / m_ss, rel=1e-5)
    assert mag[0, 2] == 0.0  # nothing of the head below the slab's first slice
    # head slice 3 left the slab (no excitation from volume 2 to 4) and comes back brighter
    m_back = recover(m_ss * cos_a, 5 + st[3] - (1 + st[3]))
    assert mag[3, 5] / static == pytest.approx(m_back / m_ss, rel=1e-5)
    assert m_back / m_ss > 1.2
    # head slices 0-2 return one slice down, excited again after TR - 0.25 s: darker
    m = recover(m_ss * cos_a, seq.tr + 0.25)  # head slice 1: volume 2 in scanner slice 2
    m = recover(recover(m * cos_a, seq.tr) * cos_a, seq.tr)  # volumes 3, 4
    assert mag[1, 5] / static == pytest.approx(recover(m * cos_a, seq.tr - 0.25) / m_ss, rel=1e-5)


@pytest.mark.parametrize(
    "offset",  # in voxels (3 mm): through-plane only, and in-plane + through-plane
    [(0.0, 0.0, 1 / 6), (0.0, 0.0, 1 / 3), (0.0, 0.0, 0.47), (0.3, -0.2, 0.4)],
)
def test_constant_offset_of_a_z_uniform_object_keeps_its_steady_state(offset):
    # every spin of a z-uniform object is excited once per TR by the one slice it sits
    # in whatever the constant offset: the signal equals that of the in-plane offset
    # alone in every volume (spin history and trilinear band must not change it)
    seq = GradientEchoEPI(**{**SEQ, "n_slices": 6, "slice_order": "interleaved"})
    shape = (16, 16, 6)
    m0 = np.zeros(shape)
    m0[4:12, 5:11] = 1.0
    m0[6:8, 7:9] = 1.5
    ones = np.ones(shape)
    t1 = 1.4 * ones
    t1[6:8, 7:9] = 0.9  # a second T1: the steady state differs by voxel
    tissue = TissueMaps(m0, t1, 0.08 * ones, 0.045 * ones, 0 * ones)
    shift = np.array(offset) * 0.003

    def run(t):
        return _acq(tissue, 3, seq=seq, motion=RigidMotion([0.0, 9.0], [t, t], np.zeros((2, 3))))

    moved, ref = run(shift), run(shift * [1, 1, 0])
    a, b = moved.magnitude[:, :, 1:5], ref.magnitude[:, :, 1:5]  # slab edges lose signal
    inside = b > 0.05 * b.max()
    np.testing.assert_allclose(a[inside] / b[inside], 1.0, atol=1e-6)


def test_fluctuation_hook_keep_phase_sidecar_and_validation():
    seq = GradientEchoEPI(**SEQ)
    seen = []

    def hook(vols, slice_times):
        seen.append((np.array(vols), np.array(slice_times)))
        return np.full((len(vols),) + SHAPE, 0.1)

    tissue = _tissue(np.ones(SHAPE))
    plain = _acq(tissue, 3)
    acq = MRIScanner(sequence=seq).acquire(
        tissue, n_volumes=3, fluctuation=hook, chunk_volumes=2, keep_phase=True
    )
    np.testing.assert_allclose(acq.magnitude, 1.1 * plain.magnitude, rtol=1e-5)
    assert [v.tolist() for v, _ in seen] == [[0, 1], [2]]
    np.testing.assert_allclose(seen[1][1], 2 * seq.tr + seq.slice_times()[None])
    assert plain.phase is None and acq.phase.shape == acq.magnitude.shape
    assert acq.magnitude.dtype == np.float32
    assert acq.sidecar["TotalReadoutTime"] == pytest.approx(15 * seq.echo_spacing)
    assert acq.sidecar["PhaseEncodingDirection"] == "j"
    scanner = MRIScanner(sequence=seq)
    bad = [
        (dict(n_volumes=0), "n_volumes"),
        (dict(n_volumes=2, motion=_motion([0.5, 3.0])), "motion.times"),
        (dict(n_volumes=2, field=FieldMap(np.zeros((6, 4, 4, 4)))), "field.components"),
        (dict(n_volumes=2, fluctuation=lambda v, t: np.zeros((1, 2))), "fluctuation"),
        (dict(n_volumes=2, affine=np.zeros((4, 4))), "affine"),
        (dict(n_volumes=9, region_bold=_region(np.ones(SHAPE, bool), [0, 2], [0, 0])), "times"),
        (
            dict(
                bold_fraction=np.zeros((2,) + SHAPE),
                region_bold=_region(np.ones(SHAPE, bool), [0, 9], [0, 0]),
            ),
            "region_bold",
        ),
    ]
    for kwargs, name in bad:
        with pytest.raises(ParameterError, match=name):
            scanner.acquire(tissue, **kwargs)
    with pytest.raises(ParameterError, match="weights"):
        RegionBOLD(np.array([0.0, 1.0]), np.zeros((2, 2)), np.ones((2, 5)))


@pytest.mark.parametrize("seq_cls", [GradientEchoEPI, SpinEchoEPI])
def test_motion_path_without_motion_equals_static_path(seq_cls, monkeypatch):
    """All features through the banded motion path (in batches of 3 slices) with a
    still head against the motionless path."""
    import biosim.instruments.mri as mri_mod

    monkeypatch.setattr(mri_mod, "_SLICE_BATCH", 3)
    seq = seq_cls(**{**SEQ, "te": 0.05})
    rng = np.random.default_rng(3)
    ones = np.ones(SHAPE)
    frac = np.stack([0.5 + 0.2 * rng.random(SHAPE), 0.3 * ones, 0.05 * ones])
    tissue = TissueMaps(
        frac,
        np.array([1.33, 0.83, 4.0])[:, None, None, None] * ones,
        np.array([0.083, 0.075, 0.5])[:, None, None, None] * ones,
        np.array([0.05, 0.045, 0.4])[:, None, None, None] * ones,
        rng.normal(0, 5, SHAPE),
    )
    x, y, z = np.meshgrid(*(np.arange(n) - n / 2 for n in SHAPE), indexing="ij")
    comp = np.zeros((6,) + SHAPE)
    comp[2] = 0.5 * np.exp(-(x**2 + (y - 3) ** 2 + (z - 1) ** 2) / 20)
    comp[3] = 0.2 * comp[2]
    weights = sp.csr_matrix(np.stack([frac[0].ravel() * (x.ravel() < 0), frac[0].ravel()]) / 2)
    rb = RegionBOLD(
        np.array([0.0, 3.0, 9.0]), np.array([[0, 0], [0.03, -0.01], [0.0, 0.02]]), weights
    )

    def hook(vols, times):
        return 0.01 * np.sin(times)[:, None, None, :] * np.ones((len(vols),) + SHAPE)

    scanner = MRIScanner(sequence=seq)
    kw = dict(n_volumes=3, region_bold=rb, field=FieldMap(comp), fluctuation=hook)
    ref = scanner.acquire(tissue, **kw).magnitude
    got = scanner.acquire(tissue, motion=_motion([0.0, 9.0]), **kw).magnitude
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5 * ref.max())
    plain = scanner.acquire(tissue, n_volumes=3).magnitude  # the features do act
    assert np.abs(plain - ref).max() > 100 * np.abs(got - ref).max()
    dense = 0.03 * rng.random((2,) + SHAPE)  # voxel BOLD instead of regions
    ref = scanner.acquire(tissue, dense, field=FieldMap(comp)).magnitude
    got = scanner.acquire(tissue, dense, field=FieldMap(comp), motion=_motion([0.0, 9.0]))
    np.testing.assert_allclose(got.magnitude, ref, rtol=2e-4, atol=2e-5 * ref.max())


def test_field_turns_with_the_head():
    """F_xz only: no shift at rest; a head pitched by theta about y sees B0 along
    b = R^T z = (-sin, 0, cos), a shift 2 F_xz b_x b_z, and the image moves along
    phase encode by df Ny esp pixels."""
    seq = GradientEchoEPI(**SEQ)
    g = np.exp(-0.5 * ((np.arange(16) - 8) / 1.5) ** 2)
    tissue = _tissue(g[:, None, None] * g[None, :, None] * np.ones(SHAPE))  # smooth blob
    comp = np.zeros((6,) + SHAPE)
    comp[4] = 2.0  # ppm
    field = FieldMap(comp)
    y = np.arange(16)

    def com_y(mag):
        img = mag[..., 1:3, 0].sum(-1)
        return (img.sum(0) * y).sum() / img.sum()

    rest = _acq(tissue, 1, field=field).magnitude
    np.testing.assert_allclose(rest, _acq(tissue, 1).magnitude, rtol=1e-6)
    theta = 0.1
    motion = _motion([0.0, 5.0])
    motion = RigidMotion(motion.times, np.zeros((2, 3)), np.array([[0, theta, 0]] * 2))
    with_field = _acq(tissue, 1, field=field, motion=motion).magnitude
    without = _acq(tissue, 1, motion=motion).magnitude
    df = 42.577478e6 * 3.0 * 1e-6 * 2 * 2.0 * (-np.sin(theta) * np.cos(theta))
    expected = df * 16 * seq.echo_spacing
    assert abs(expected) > 0.3
    assert com_y(with_field) - com_y(without) == pytest.approx(expected, abs=0.01)


def test_through_slice_dephasing_moves_with_the_head():
    """A head shifted by exactly one slice through a field whose z-gradient varies is the
    static image shifted by one slice: dF/dz is taken on the head's whole grid, not on
    the band of slices each scanner slice samples (one-sided at the band's ends)."""
    from biosim.geometry.motion import RigidMotion
    from biosim.instruments.mri import FieldMap, GradientEchoEPI, MRIScanner, TissueMaps

    shape = (16, 16, 8)
    seq = GradientEchoEPI(
        tr=2.0,
        te=0.03,
        flip_angle=77.0,
        matrix=(16, 16),
        fov=(0.048, 0.048),
        n_slices=8,
        slice_thickness=0.003,
        echo_spacing=5e-4,
        slice_order="interleaved",
    )
    scanner = MRIScanner(3.0, seq)
    ones = np.ones(shape)
    x = np.linspace(-1, 1, 16)
    m0 = 1000 * np.exp(-(x[:, None, None] ** 2 + x[None, :, None] ** 2)) * ones
    tissue = TissueMaps(
        m0=m0, t1=ones * 1.33, t2=ones * 0.08, t2star=ones * 0.05, off_resonance=np.zeros(shape)
    )
    z = np.arange(8)[None, None, :] * ones
    field = FieldMap.from_zz(0.05 * (z - 3.5) ** 2)  # ppm: 6 Hz to 78 Hz, gradient varies
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    still = np.asarray(scanner.acquire(tissue, n_volumes=2, field=field, affine=aff).magnitude)
    shift = RigidMotion(np.array([0.0, 10.0]), np.array([[0, 0, 3e-3]] * 2), np.zeros((2, 3)))
    moved = np.asarray(
        scanner.acquire(tissue, n_volumes=2, field=field, affine=aff, motion=shift).magnitude
    )
    np.testing.assert_allclose(
        moved[:, :, 2:7, 1], still[:, :, 1:6, 1], rtol=1e-4, atol=1e-4 * still.max()
    )
