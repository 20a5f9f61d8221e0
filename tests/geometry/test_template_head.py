"""The shipped template head: BEM-ready surfaces, cortex inside, electrodes on the scalp."""

from importlib import resources

import numpy as np
import pytest
from scipy.spatial import cKDTree

from biosim._core.errors import ParameterError
from biosim.geometry.checks import _point_triangle_distance, check_head_model, winding_number
from biosim.geometry.mesh import TriangleMesh, icosphere
from biosim.geometry.source_space import cortical_surface
from biosim.geometry.template_head import (
    LAYERS,
    MONTAGE_FILES,
    SIZES,
    head_to_mri,
    montage_to_mri,
    project_to_scalp,
    template_center,
    template_electrodes,
    template_fiducials,
    template_head,
)


def exact_distance(mesh, points):
    """Exact point-to-mesh distance: nearest-vertex bound, then every triangle that may be
    closer."""
    tri = mesh.vertices[mesh.faces]
    cen = tri.mean(1)
    reach = np.max(np.linalg.norm(tri - cen[:, None], axis=2))
    bound, _ = cKDTree(mesh.vertices).query(points)
    cand = cKDTree(cen).query_ball_point(points, bound + reach + 1e-12)
    pi = np.concatenate([np.full(len(c), i) for i, c in enumerate(cand)]).astype(int)
    fi = np.concatenate([np.asarray(c, int) for c in cand])
    d = _point_triangle_distance(points[pi], tri[fi, 0], tri[fi, 1], tri[fi, 2])
    out = np.full(len(points), np.inf)
    np.minimum.at(out, pi, d)
    return out


@pytest.fixture(scope="module")
def heads():
    return {n: template_head(n) for n in SIZES}


@pytest.mark.parametrize("n", [642, 2562])
def test_shipped_surfaces_pass_head_model_checks(heads, n):
    surfaces = heads[n]
    assert [s.name for s in surfaces] == list(LAYERS)
    assert all(len(s.vertices) == n and len(s.faces) == 2 * n - 4 for s in surfaces)
    check_head_model(surfaces, min_gap=0.002)


@pytest.mark.slow
def test_finest_surfaces_pass_head_model_checks(heads):
    check_head_model(heads[10242], min_gap=0.002)


def test_resolutions_are_nested_icosphere_samplings(heads):
    for n, level in zip(SIZES, (3, 4, 5)):
        np.testing.assert_array_equal(heads[n][0].faces, icosphere(level).faces)
        assert all(np.array_equal(s.faces, heads[n][0].faces) for s in heads[n])
    for coarse, fine in zip(SIZES, SIZES[1:]):
        for a, b in zip(heads[coarse], heads[fine]):
            np.testing.assert_array_equal(a.vertices, b.vertices[:coarse])
    assert len(template_head(642, layers=1)) == 1


def test_surfaces_star_shaped_from_centre(heads):
    # every vertex lies on the ray of its icosphere direction from the centre
    c = template_center()
    u = icosphere(4).vertices
    for s in heads[2562]:
        d = s.vertices - c
        np.testing.assert_allclose(d / np.linalg.norm(d, axis=1, keepdims=True), u, atol=1e-6)


def test_volumes_and_thicknesses_are_plausible(heads):
    inner, outer, scalp = heads[2562]
    # fsaverage (MNI305) is larger than an individual head: inner skull ~2.2 L
    assert 1.8e-3 < inner.volume < 2.5e-3
    assert inner.volume < outer.volume < scalp.volume < 6e-3
    skull = exact_distance(outer, inner.vertices)
    scalp_t = exact_distance(scalp, outer.vertices)
    assert 4e-3 < np.median(skull) < 7e-3 and skull.min() >= 2e-3 and skull.max() < 12e-3
    assert 4e-3 < np.median(scalp_t) < 12e-3 and scalp_t.min() >= 2e-3


@pytest.mark.parametrize("n", [642, 2562])
def test_cortex_inside_inner_skull_with_margin(heads, n):
    cortex = cortical_surface("ico5").positions
    inner = heads[n][0]
    assert np.all(winding_number(inner, cortex[::16]) > 0.5)
    # exact distances for the points that can be closest (nearest vertex within the bound)
    bound, _ = cKDTree(inner.vertices).query(cortex)
    reach = np.max(
        np.linalg.norm(
            inner.vertices[inner.faces] - inner.vertices[inner.faces].mean(1)[:, None], axis=2
        )
    )
    margin = exact_distance(inner, cortex[bound < bound.min() + 2 * reach])
    assert margin.min() > 3e-3  # measured 3.7 mm (642), 4.2 mm (2562)


@pytest.mark.crosscheck
def test_remeshed_surfaces_match_mne_fsaverage(heads):
    mne = pytest.importorskip("mne")
    from pathlib import Path

    d = Path(mne.__file__).parent / "data" / "fsaverage"
    orig = mne.read_bem_surfaces(d / "fsaverage-inner_skull-bem.fif", verbose=False)[0]
    orig = TriangleMesh(orig["rr"], orig["tris"], "fsaverage inner skull")
    inner = heads[2562][0]
    assert abs(inner.volume / orig.volume - 1) < 0.01
    dist = exact_distance(inner, orig.vertices)
    assert dist.max() < 4e-3 and dist.mean() < 0.3e-3
    head = mne.read_bem_surfaces(d / "fsaverage-head.fif", verbose=False)[0]
    keep = head["rr"][:, 2] > -0.095  # above the neck cut and its rounding
    dist = exact_distance(heads[2562][2], head["rr"][keep])
    assert dist.max() < 4e-3 and dist.mean() < 0.4e-3
    np.testing.assert_allclose(head_to_mri(), mne.read_trans(d / "fsaverage-trans.fif")["trans"])


def test_head_to_mri_is_rigid_and_consistent_with_fiducials():
    t = head_to_mri()
    r = t[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-6)
    inv = np.linalg.inv(t)
    fid = {k: inv[:3, :3] @ v + inv[:3, 3] for k, v in template_fiducials().items()}
    # MNE head frame: nasion on +y, LPA and RPA on the x axis
    assert abs(fid["nasion"][0]) < 1e-3 and abs(fid["nasion"][2]) < 1e-3 and fid["nasion"][1] > 0.08
    for k in ("LPA", "RPA"):
        assert abs(fid[k][1]) < 1e-3 and abs(fid[k][2]) < 1e-3


@pytest.mark.parametrize("montage", MONTAGE_FILES)
def test_electrodes_lie_on_the_scalp(heads, montage):
    names, pos = template_electrodes(montage, n_vertices=642)
    assert len(names) == len(pos) and len(set(names)) == len(names)
    scalp = heads[642][2]
    assert exact_distance(scalp, pos).max() < 1e-9
    u = pos - template_center()
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    assert np.all(winding_number(scalp, pos + 1e-4 * u) < 0.5)  # just outside
    assert np.all(winding_number(scalp, pos - 1e-4 * u) > 0.5)  # just inside
    # the montage's own positions, mapped to the MRI frame, are near the scalp
    native = np.loadtxt(
        resources.files("biosim") / "data" / "montages" / f"{montage}.tsv",
        skiprows=1,
        usecols=(1, 2, 3),
    )
    t = montage_to_mri(montage)
    moved = np.linalg.norm(native @ t[:3, :3].T + t[:3, 3] - pos, axis=1)
    assert np.median(moved) < 8e-3 and moved.max() < 25e-3


def test_electrode_selection_frames_and_resolution():
    names, pos = template_electrodes("standard_1020", channels=["Cz", "Oz", "Fpz"])
    assert names == ["Cz", "Oz", "Fpz"]
    assert pos[0, 2] > 0.09 and pos[1, 1] < -0.09 and pos[2, 1] > 0.08  # vertex, back, front

    class Sensors:
        names = ("A", "B")
        positions = np.array([[0.0, 0.0, 0.1], [0.0, 0.09, 0.0]])

    _, p_mri = template_electrodes(Sensors(), frame="mri")
    np.testing.assert_allclose(p_mri, project_to_scalp(Sensors.positions))
    _, p_head = template_electrodes(Sensors(), frame="head")
    np.testing.assert_allclose(p_head, project_to_scalp(Sensors.positions, frame="head"))
    _, p_t = template_electrodes(Sensors(), frame=head_to_mri())
    np.testing.assert_allclose(p_t, p_head)
    fine = project_to_scalp(Sensors.positions, n_vertices=10242)
    assert np.linalg.norm(fine - p_mri, axis=1).max() < 3e-3


def test_loader_errors():
    with pytest.raises(ParameterError, match="n_vertices"):
        template_head(1000)
    with pytest.raises(ParameterError, match="layers"):
        template_head(642, layers=2)
    with pytest.raises(ParameterError, match="montage"):
        template_electrodes("standard_1010")
    with pytest.raises(ParameterError, match="channels"):
        template_electrodes("standard_1020", channels=["Cz", "XX"])
    with pytest.raises(ParameterError, match="frame"):
        template_electrodes("standard_1020", frame="mri")
    with pytest.raises(ParameterError, match="frame"):
        template_electrodes(type("S", (), {"names": ("A",), "positions": np.ones((1, 3))})())
    with pytest.raises(ParameterError, match="n_vertices"):
        template_electrodes("standard_1020", n_vertices=12)
    with pytest.raises(ParameterError, match="points"):
        project_to_scalp(template_center()[None])
    with pytest.raises(ParameterError, match="points"):
        project_to_scalp(np.ones(3))
    with pytest.raises(ParameterError, match="frame"):
        project_to_scalp(np.ones((1, 3)), frame="ras")
    with pytest.raises(ParameterError, match="name"):
        montage_to_mri("standard_1010")


def _mne_bem_surfaces(mne, n):
    FIFF = mne.io.constants.FIFF
    surfs = [dict(rr=m.vertices * 1e3, tris=m.faces.copy()) for m in template_head(n)[::-1]]  # mm
    ids = [FIFF.FIFFV_BEM_SURF_ID_HEAD, FIFF.FIFFV_BEM_SURF_ID_SKULL, FIFF.FIFFV_BEM_SURF_ID_BRAIN]
    return mne.bem._surfaces_to_bem(surfs, ids, [0.3, 0.006, 0.3], incomplete="raise")


@pytest.mark.crosscheck
@pytest.mark.parametrize("n", [642, pytest.param(2562, marks=pytest.mark.slow)])
def test_mne_accepts_the_three_layer_model(n):
    # MNE's own topology, nesting ("inner skull is not completely inside outer skull")
    # and thickness checks
    mne = pytest.importorskip("mne")
    bem = _mne_bem_surfaces(mne, n)
    assert [len(s["rr"]) for s in bem] == [n] * 3


@pytest.mark.slow
@pytest.mark.crosscheck
def test_mne_solves_the_three_layer_bem():
    mne = pytest.importorskip("mne")
    sol = mne.make_bem_solution(_mne_bem_surfaces(mne, 642), verbose=False)
    assert sol["solution"].shape == (3 * 642, 3 * 642) and np.all(np.isfinite(sol["solution"]))
