"""Rebuild biosim's shipped montage and cortex data from MNE-Python's and nilearn's wheels.

    python meshes/make_sensor_and_cortex_data.py

Writes
------
biosim/data/montages/<name>.tsv
    Electrode name and position (m) in MNE's head coordinate frame, from
    ``mne.channels.make_standard_montage`` (MNE-Python, BSD-3-Clause; the
    positions come from the montage files MNE ships).
biosim/data/cortex/fsaverage5.npz
    fsaverage5 white-matter surfaces of both hemispheres (ico5, 10242
    vertices each; FreeSurfer's fsaverage, distributed with nilearn under the
    FreeSurfer licence), vertices in m (MNI305 space, mm / 1000), triangles,
    area-weighted vertex normals (outward), hemisphere index.
"""

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1] / "biosim" / "data"
MONTAGES = ["standard_1020", "standard_1005", "biosemi64", "easycap-M1"]
# MNE >= 1.13 names the standard 10-20/10-05 positions after their source head (colin27)
MNE_NAMES = {
    "standard_1020": ["colin27_1020", "standard_1020"],
    "standard_1005": ["colin27_1005", "standard_1005"],
}


def write_montages():
    import mne

    available = set(mne.channels.get_builtin_montages())
    for name in MONTAGES:
        source = next(n for n in MNE_NAMES.get(name, [name]) if n in available)
        pos = mne.channels.make_standard_montage(source).get_positions()["ch_pos"]
        lines = ["name\tx\ty\tz"] + [
            f"{k}\t{v[0]:.6f}\t{v[1]:.6f}\t{v[2]:.6f}" for k, v in pos.items()
        ]
        (ROOT / "montages" / f"{name}.tsv").write_text("\n".join(lines) + "\n")
        print(f"{name}: {len(pos)} electrodes")


def vertex_normals(vertices, faces):
    n = np.zeros_like(vertices)
    fn = np.cross(
        vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    )
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def write_cortex():
    import nibabel as nib
    from nilearn import datasets

    fs = datasets.fetch_surf_fsaverage("fsaverage5")
    verts, faces, hemi = [], [], []
    offset = 0
    for h, key in enumerate(("white_left", "white_right")):
        g = nib.load(fs[key])
        v = g.darrays[0].data.astype(float) / 1000.0
        f = g.darrays[1].data.astype(np.int64)
        n = vertex_normals(v, f)
        # outward: normals point away from the hemisphere's centroid on average
        if np.mean(np.sum((v - v.mean(0)) * n, 1)) < 0:
            f = f[:, ::-1]
        verts.append(v)
        faces.append(f + offset)
        hemi.append(np.full(len(v), h))
        offset += len(v)
    v = np.concatenate(verts)
    f = np.concatenate(faces)
    n = vertex_normals(v, f)
    np.savez_compressed(
        ROOT / "cortex" / "fsaverage5.npz",
        vertices=v.astype(np.float32),
        faces=f.astype(np.int32),
        normals=n.astype(np.float32),
        hemisphere=np.concatenate(hemi).astype(np.int8),
    )
    print(f"fsaverage5 white: {len(v)} vertices, {len(f)} triangles")


if __name__ == "__main__":
    write_montages()
    write_cortex()
