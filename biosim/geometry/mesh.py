"""Closed triangle meshes: the surfaces of head models.

:class:`TriangleMesh` holds vertices (n, 3) in m and faces (m, 3) of vertex
indices, counter-clockwise seen from outside (outward normals).
:func:`icosphere` subdivides an icosahedron (each triangle into four, new
vertices projected onto the sphere): 12, 42, 162, 642, 2562, 10242 vertices
for subdivisions 0-5; :func:`fibonacci_sphere` triangulates a golden-angle
lattice with any number of vertices (e.g. 1280).  Meshes are read and written with meshio (binary
formats; meshio 5.3 writes broken ASCII gmsh with numpy 2) or FreeSurfer's
surface format (nibabel), with unit conversion at the boundary.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
from scipy.spatial import ConvexHull

from .._core.errors import ParameterError

_UNITS = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}


@dataclasses.dataclass(frozen=True)
class TriangleMesh:
    vertices: np.ndarray
    faces: np.ndarray
    name: str = "surface"

    def __post_init__(self):
        v = np.asarray(self.vertices, float)
        f = np.asarray(self.faces, np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ParameterError(
                f"{self.name}.vertices", f"array of shape {v.shape}", "shape (n, 3)"
            )
        if f.ndim != 2 or f.shape[1] != 3 or f.size == 0:
            raise ParameterError(f"{self.name}.faces", f"array of shape {f.shape}", "shape (m, 3)")
        if f.min() < 0 or f.max() >= len(v):
            raise ParameterError(
                f"{self.name}.faces",
                f"indices in [{f.min()}, {f.max()}]",
                f"indices in [0, {len(v) - 1}]",
            )
        if not np.all(np.isfinite(v)):
            raise ParameterError(f"{self.name}.vertices", "non-finite coordinates", "finite values")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

    @property
    def face_normals(self):
        """Unnormalised face normals (twice the face area, along the normal)."""
        v, f = self.vertices, self.faces
        return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])

    @property
    def areas(self):
        return 0.5 * np.linalg.norm(self.face_normals, axis=1)

    @property
    def volume(self):
        """Signed enclosed volume (m^3): positive for outward orientation."""
        v, f = self.vertices, self.faces
        return float(
            np.sum(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]]))) / 6
        )

    def vertex_normals(self):
        n = np.zeros_like(self.vertices)
        fn = self.face_normals
        for k in range(3):
            np.add.at(n, self.faces[:, k], fn)
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    def scaled(self, factor, center=(0.0, 0.0, 0.0), name=None):
        c = np.asarray(center, float)
        return TriangleMesh(c + (self.vertices - c) * factor, self.faces, name or self.name)


def icosphere(subdivisions=3, radius=1.0, center=(0.0, 0.0, 0.0), name="sphere"):
    """Icosphere of ``radius`` (m) with 10 * 4**subdivisions + 2 vertices."""
    if int(subdivisions) != subdivisions or subdivisions < 0:
        raise ParameterError("subdivisions", subdivisions, "a non-negative integer")
    if radius <= 0:
        raise ParameterError("radius", radius, "a positive radius in m")
    t = (1 + 5**0.5) / 2
    v = [
        (-1, t, 0),
        (1, t, 0),
        (-1, -t, 0),
        (1, -t, 0),
        (0, -1, t),
        (0, 1, t),
        (0, -1, -t),
        (0, 1, -t),
        (t, 0, -1),
        (t, 0, 1),
        (-t, 0, -1),
        (-t, 0, 1),
    ]
    f = [
        (0, 11, 5),
        (0, 5, 1),
        (0, 1, 7),
        (0, 7, 10),
        (0, 10, 11),
        (1, 5, 9),
        (5, 11, 4),
        (11, 10, 2),
        (10, 7, 6),
        (7, 1, 8),
        (3, 9, 4),
        (3, 4, 2),
        (3, 2, 6),
        (3, 6, 8),
        (3, 8, 9),
        (4, 9, 5),
        (2, 4, 11),
        (6, 2, 10),
        (8, 6, 7),
        (9, 8, 1),
    ]
    verts = [np.array(p, float) / np.linalg.norm(p) for p in v]
    faces = [tuple(x) for x in f]
    for _ in range(int(subdivisions)):
        cache, new = {}, []

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    vv = np.asarray(center, float) + radius * np.array(verts)
    mesh = TriangleMesh(vv, np.array(faces), name)
    if mesh.volume < 0:
        mesh = TriangleMesh(vv, np.array(faces)[:, ::-1], name)
    return mesh


def fibonacci_sphere(n_vertices=1280, radius=1.0, center=(0.0, 0.0, 0.0), name="sphere"):
    """Sphere of ``radius`` (m) with any number of vertices: the Fibonacci
    (golden-angle) lattice, triangulated by its convex hull (the Delaunay
    triangulation on the sphere; 2 n - 4 faces, outward).  Near-uniform but
    unstructured, unlike :func:`icosphere`, whose counts are 10 * 4**k + 2.
    """
    if int(n_vertices) != n_vertices or n_vertices < 12:
        raise ParameterError("n_vertices", n_vertices, "an integer >= 12")
    if radius <= 0:
        raise ParameterError("radius", radius, "a positive radius in m")
    n = int(n_vertices)
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (3.0 - 5**0.5) * k
    rho = np.sqrt(1.0 - z * z)
    unit = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    faces = ConvexHull(unit).simplices.copy()
    tri = unit[faces]
    outward = (
        np.einsum(
            "ij,ij->i", np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), tri.mean(axis=1)
        )
        > 0
    )
    faces[~outward] = faces[~outward][:, ::-1]
    return TriangleMesh(np.asarray(center, float) + radius * unit, faces, name)


def nested_spheres(
    radii,
    subdivisions=3,
    center=(0.0, 0.0, 0.0),
    names=("inner_skull", "outer_skull", "scalp"),
    n_vertices=None,
):
    """Concentric spheres, innermost first (e.g. brain, skull, scalp):
    icospheres of ``subdivisions``, or Fibonacci spheres of ``n_vertices``
    each (same angular vertex pattern on every layer)."""
    radii = list(radii)
    if any(b <= a for a, b in zip(radii, radii[1:])):
        raise ParameterError("radii", radii, "strictly increasing radii (innermost first)")
    names = (
        list(names)[-len(radii) :]
        if len(names) >= len(radii)
        else [f"layer{i}" for i in range(len(radii))]
    )
    if n_vertices is not None:
        return [fibonacci_sphere(n_vertices, r, center, n) for r, n in zip(radii, names)]
    return [icosphere(subdivisions, r, center, n) for r, n in zip(radii, names)]


# what third-party readers raise on a corrupt or truncated file
_PARSE_ERRORS = (
    ValueError,
    UnicodeDecodeError,
    IndexError,
    KeyError,
    TypeError,
    EOFError,
    AssertionError,
    struct.error,
)


def read_mesh(path, units="m", name=None):
    """Read a surface (meshio formats, or FreeSurfer geometry via nibabel) in ``units``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ParameterError
        Naming the file, when it is not a triangle mesh that can be read (a corrupt
        or truncated STL/PLY/OBJ/..., an unknown format, no triangles, bad faces).
    """
    if units not in _UNITS:
        raise ParameterError("units", units, f"one of {sorted(_UNITS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file {str(path)!r} does not exist")
    name = name or path.stem
    import meshio

    try:
        try:
            m = meshio.read(path)
        except meshio.ReadError as err:  # not a meshio format: FreeSurfer geometry?
            import nibabel.freesurfer as fs

            try:
                v, f = fs.read_geometry(str(path))
            except _PARSE_ERRORS as fs_err:
                raise ParameterError(
                    "path",
                    str(path),
                    "a mesh file meshio reads (.stl, .ply, .obj, .off, .vtk, .msh, ...) or a "
                    f"FreeSurfer surface (meshio: {err}; FreeSurfer: {fs_err})",
                ) from fs_err
            return TriangleMesh(v * _UNITS[units], f, name)
    except ParameterError:
        raise
    except _PARSE_ERRORS as err:
        raise ParameterError(
            "path",
            str(path),
            f"a readable mesh file; it is corrupt or truncated ({type(err).__name__}: "
            f"{str(err).strip()[:200]})",
        ) from err
    tri = [c.data for c in m.cells if c.type == "triangle"]
    if not tri or len(m.points) == 0:
        raise ParameterError("path", str(path), "a file with triangle cells")
    return TriangleMesh(m.points[:, :3] * _UNITS[units], np.concatenate(tri), name)


def write_mesh(mesh: TriangleMesh, path, units="m"):
    """Write a surface with meshio in a binary format (``.stl``, ``.ply``, ``.msh``...)."""
    import meshio

    from .._core.atomic import atomic_path

    if units not in _UNITS:
        raise ParameterError("units", units, f"one of {sorted(_UNITS)}")
    path = Path(path)
    with atomic_path(path) as tmp:
        meshio.write(
            tmp,
            meshio.Mesh(mesh.vertices / _UNITS[units], [("triangle", mesh.faces)]),
            binary=True,
            file_format=meshio.extension_to_filetypes[path.suffix][0],
        )
    return path
