"""Corrupt or truncated mesh files give a ParameterError naming the file, not a
third-party UnicodeDecodeError / numpy ValueError / meshio error."""

import numpy as np
import pytest

from biosim import ParameterError
from biosim.geometry.mesh import icosphere, read_mesh, write_mesh

_RNG = np.random.default_rng(0)


def _noise(n):
    """Deterministic random bytes."""
    return _RNG.integers(0, 256, n, dtype=np.uint8).tobytes()


PLY_HEADER = (
    "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
    "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
)

CORRUPT = {
    "random.stl": _noise(300),  # before: UnicodeDecodeError
    "text.stl": b"solid x\nfacet normal 0 0 1\n outer loop\n vertex 0 0 x\nendloop\n",  # ValueError
    "truncated.ply": (PLY_HEADER + "0 0 0\n1 0\n").encode(),  # numpy ValueError
    "random_body.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\n"
    b"property float x\nproperty float y\nproperty float z\nend_header\n" + _noise(50),
    "latin1.ply": b"ply\nformat ascii 1.0\ncomment \xff\xfe\xe9\nelement vertex 1\n",
    "random.obj": bytes(range(128, 256)) * 2,
    "bad.off": b"OFF\n3 1 0\n0 0 0\nx y z\n",
    "random.vtk": bytes(range(128, 256)) * 2,
    "lh.white": _noise(200),  # not a meshio format, not a FreeSurfer surface
    "empty.stl": b"",
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # meshio's STL size test overflows
@pytest.mark.parametrize("filename", sorted(CORRUPT))
def test_corrupt_mesh_names_the_file(tmp_path, filename):
    path = tmp_path / filename
    path.write_bytes(CORRUPT[filename])
    with pytest.raises(ParameterError) as info:
        read_mesh(path)
    assert str(path) in str(info.value)


def test_good_meshes_still_read(tmp_path):
    sphere = icosphere(1, 0.09)
    for ext in ("stl", "ply"):
        back = read_mesh(write_mesh(sphere, tmp_path / f"s.{ext}"))
        assert back.faces.shape == sphere.faces.shape
