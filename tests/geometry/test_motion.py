import numpy as np
import pytest

from biosim import ParameterError
from biosim.geometry.motion import RigidMotion, random_motion, read_motion, rotation_matrix


def test_rotation_matrix_is_spm_order_and_orthonormal():
    a = np.array([0.1, -0.2, 0.3])
    r = rotation_matrix(a)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-14)
    # yaw alone rotates x towards y
    np.testing.assert_allclose(
        rotation_matrix([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-15
    )
    rx = rotation_matrix([a[0], 0, 0])
    ry = rotation_matrix([0, a[1], 0])
    rz = rotation_matrix([0, 0, a[2]])
    np.testing.assert_allclose(r, rx @ ry @ rz, atol=1e-15)


def test_transform_rotates_about_centre_and_interpolates():
    c = np.array([0.0, 0.01, 0.02])
    m = RigidMotion(
        np.array([0.0, 2.0]),
        np.array([[0, 0, 0], [0.002, 0, 0]]),
        np.array([[0, 0, 0], [0, 0, 0.2]]),
        c,
    )
    np.testing.assert_allclose(m.apply(c[None], 2.0)[0], c + [0.002, 0, 0], atol=1e-15)
    t, r = m.at(1.0)
    np.testing.assert_allclose(t, [0.001, 0, 0])
    np.testing.assert_allclose(r, [0, 0, 0.1])
    p = np.array([[0.05, 0.01, 0.02]])
    d = np.linalg.norm(m.apply(p, 2.0) - m.apply(c[None], 2.0))
    assert d == pytest.approx(0.05)  # distances kept


def test_random_motion_statistics_and_fd():
    m = random_motion(600.0, 2.0, translation_std=3e-4, rotation_std=2e-3, seed=1)
    assert m.parameters.shape == (301, 6)
    assert 1e-4 < m.translations.std() < 6e-4
    fd = m.framewise_displacement()
    assert fd[0] == 0 and np.all(fd >= 0)
    jerky = random_motion(600.0, 2.0, n_jerks=3, jerk_size=2e-3, seed=1)
    assert jerky.framewise_displacement().max() > fd.max()


def test_read_motion_and_errors(tmp_path):
    f = tmp_path / "rp.txt"
    np.savetxt(f, np.tile([1.0, 0, 0, 0.01, 0, 0], (4, 1)))
    m = read_motion(f, 2.0)
    np.testing.assert_allclose(m.translations[:, 0], 1e-3)
    np.testing.assert_allclose(m.times, [0, 2, 4, 6])
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ParameterError, match="six columns"):
        read_motion(tmp_path / "bad.txt", 2.0)
    with pytest.raises(ParameterError, match="times"):
        RigidMotion(np.array([0.0, 0.0]), np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ParameterError, match="translations"):
        RigidMotion(np.array([0.0, 1.0]), np.zeros((3, 3)), np.zeros((2, 3)))
    with pytest.raises(ParameterError, match="sample_interval"):
        random_motion(10.0, 20.0)
