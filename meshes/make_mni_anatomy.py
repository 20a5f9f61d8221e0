"""Build ``biosim/data/anatomy/``: the 1 mm MNI152 tissue atlas and the ROI coordinate sets.

Needs nilearn (its wheel ships the MNI152 ICBM 2009 symmetric T1/GM/WM maps and the ROI
tables; nothing is downloaded) and biosim itself (the template head). Run from the
repository root::

    python meshes/make_mni_anatomy.py [--png /tmp/anatomy.png]

Method (all positions MNI152 mm)
--------------------------------
* Grid: 1 mm, aligned with the MNI152 2009 template grid, covering biosim's template scalp.
* Grey / white matter: nilearn's MNI152 2009 probability maps (``..._gm_...``,
  ``..._wm_...``), rescaled where they sum above 1. nilearn's T1 is skull-stripped and
  stops at z = -72 mm, so it gives no skull or scalp.
* Inner skull, outer skull, scalp: biosim's template head (fsaverage's inner skull and
  head surfaces, ``biosim/data/head/README.md``) mapped MNI305 -> MNI152 by
  ``FSAVERAGE_TO_MNI152``. The surfaces are star-shaped about the template centre, so each
  voxel's radial distance to a surface (interpolated on the surface's triangle hit by the
  ray from the centre) gives a partial-volume fraction across a 1 mm ramp.
* CSF: intracranial volume (inside the inner skull) not taken by grey or white matter
  (ventricles, sulcal and subarachnoid CSF). Bone: between inner and outer skull. Soft
  tissue: between outer skull and scalp. Brain voxels the template brain places outside
  fsaverage's inner skull stay brain.
* Air spaces: bone and soft tissue inside the ellipsoids of :func:`air_spaces` (centres and
  semi-axes in mm, placed from anatomy atlases relative to this head's nasion and
  pre-auricular points (``fiducials_mri`` of the template head) and checked against the
  slices written with ``--png``) become air. Intracranial tissue is never changed.
  Resulting centres (MNI152 mm) and air volumes: frontal sinus (0, 77, -14) 2.6 ml;
  ethmoid cells (0, 57, -42) 5.2 ml; nasal cavity (0, 55, -66) 14.8 ml; sphenoid sinus
  (0, 15, -44) 3.0 ml; maxillary sinuses (+-26, 47, -64) 8.8 ml each; ear canals
  (-69, -35, -39) / (72, -32, -41) 0.6 / 0.8 ml; mastoid air cells (-61, -51, -51) /
  (64, -48, -53) 3.8 / 4.4 ml. Total air 53 ml.
* Neck: below z = -95 mm every voxel is at least as full of soft tissue as the voxel above
  it at z = -95 mm, so the head continues into the grid's lower face.
* Storage: uint8 fractions quantised on the cumulative sum (so the 6 stored fractions of
  a voxel never sum above 255), an uncompressed ``.npz`` compressed with LZMA (xz; 3.0 MB
  against 5.9 MB for ``np.savez_compressed``).
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import lzma
import os

import nibabel as nib
import numpy as np
from scipy.spatial import cKDTree

from biosim.geometry.anatomy import FSAVERAGE_TO_MNI152, TISSUES
from biosim.geometry.template_head import _data as template_head_data

OUT = os.path.join(os.path.dirname(__file__), "..", "biosim", "data", "anatomy")
NILEARN_DATA = glob.glob(
    os.path.join(os.path.dirname(__import__("nilearn").__file__), "datasets", "data")
)[0]


#: MNI152 z (mm) below which the head continues as a neck (see ``build``).
NECK_Z = -95.0


def _mni(points_mm):
    return points_mm @ FSAVERAGE_TO_MNI152[:3, :3].T + FSAVERAGE_TO_MNI152[:3, 3]


def air_spaces(nasion, lpa, rpa):
    """Ellipsoids (name, centre mm, semi-axes mm) of the air spaces inside the head.

    Placed relative to the nasion (n) and the pre-auricular points, using typical adult
    dimensions (Gray's Anatomy; sinus sizes as in radiological atlases): frontal sinus
    behind and above the nasion; ethmoid cells between the orbits; nasal cavity from the
    piriform aperture to the choanae; sphenoid sinus under the sella turcica; maxillary
    sinuses below the orbits lateral to the nasal cavity; external ear canals running
    ~25 mm medially from the pre-auricular points; mastoid air cells behind and below
    the ear canals.
    """
    n = np.asarray(nasion)
    spaces = [
        ("frontal_sinus", n + (0, -10, 20), (14, 6, 11)),
        ("ethmoid_cells", n + (0, -30, -8), (11, 17, 9)),
        ("nasal_cavity", n + (0, -32, -32), (8, 26, 17)),
        ("sphenoid_sinus", n + (0, -72, -10), (12, 11, 9)),
    ]
    for side, p in (("left", np.asarray(lpa)), ("right", np.asarray(rpa))):
        s = np.sign(p[0])
        spaces += [
            (f"maxillary_sinus_{side}", (s * 26, n[1] - 40, n[2] - 30), (10, 15, 14)),
            (f"ear_canal_{side}", p + (-s * 12, -6, 0), (13, 4, 4)),
            (f"mastoid_cells_{side}", p + (-s * 20, -22, -12), (9, 11, 11)),
        ]
    return spaces


def radial_depth(points, vertices, faces, center):
    """Signed radial distance (mm) of points inside a star-shaped surface
    (positive inside): r_surface(u) - |p - c| along the ray from ``center``."""
    c = np.asarray(center)
    tri = vertices[faces]
    cen = tri.mean(1) - c
    tree = cKDTree(cen / np.linalg.norm(cen, axis=1, keepdims=True))
    out = np.empty(len(points))
    for s in range(0, len(points), 500_000):
        d = points[s : s + 500_000] - c
        r = np.linalg.norm(d, axis=1)
        u = d / np.maximum(r, 1e-9)[:, None]
        _, cand = tree.query(u, k=8)
        a, b, cc = (tri[cand, i] - c for i in range(3))  # (m, 8, 3)
        e1, e2 = b - a, cc - a
        pv = np.cross(u[:, None, :], e2)
        det = np.einsum("mkj,mkj->mk", e1, pv)
        tv = -a
        bu = np.einsum("mkj,mkj->mk", tv, pv) / det
        qv = np.cross(tv, e1)
        bv = np.einsum("mj,mkj->mk", u, qv) / det
        t = np.einsum("mkj,mkj->mk", e2, qv) / det
        ok = (bu >= -1e-6) & (bv >= -1e-6) & (bu + bv <= 1 + 1e-6) & (t > 0)
        t = np.where(ok, t, -np.inf).max(1)
        if not np.all(np.isfinite(t)):
            raise RuntimeError("a ray missed the surface")
        out[s : s + 500_000] = t - r
    return out


def build(png=None):
    gm_img = nib.load(
        os.path.join(NILEARN_DATA, "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")
    )
    wm_img = nib.load(
        os.path.join(NILEARN_DATA, "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
    )
    t_aff = gm_img.affine
    assert np.allclose(t_aff[:3, :3], np.eye(3))
    head = template_head_data()
    layers = {
        k: _mni(head[f"{k}_10242"].astype(float) * 1000)
        for k in ("inner_skull", "outer_skull", "scalp")
    }
    faces = head["faces_10242"].astype(int)
    center = _mni(head["center"] * 1000)
    lpa, nasion, rpa = _mni(head["fiducials_mri"] * 1000)

    lo = np.floor(layers["scalp"].min(0)) - 2
    hi = np.ceil(layers["scalp"].max(0)) + 2
    maps = [np.asarray(img.dataobj, dtype=float) / 255.0 for img in (gm_img, wm_img)]
    nz = np.argwhere((maps[0] + maps[1]) > 0)
    lo = np.minimum(lo, nz.min(0) + t_aff[:3, 3])  # keep the whole template brain
    hi = np.maximum(hi, nz.max(0) + t_aff[:3, 3])
    shape = tuple((hi - lo + 1).astype(int))
    affine = np.eye(4)
    affine[:3, 3] = lo
    print("grid", shape, "origin", lo)

    brain = np.zeros((2, *shape))
    src0 = np.maximum(lo - t_aff[:3, 3], 0).astype(int)
    src1 = np.minimum(hi - t_aff[:3, 3] + 1, maps[0].shape).astype(int)
    dst0 = (t_aff[:3, 3] + src0 - lo).astype(int)
    for i, a in enumerate(maps):
        dst = tuple(slice(d, d + e - s) for d, s, e in zip(dst0, src0, src1))
        brain[i][dst] = a[tuple(slice(s, e) for s, e in zip(src0, src1))]
    assert np.isclose(brain.sum(), sum(m.sum() for m in maps))
    total = brain.sum(0)
    over = total > 1
    brain[:, over] /= total[over]
    print(f"GM+WM above 1 in {over.sum()} voxels (rescaled)")
    b = brain.sum(0)

    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1).reshape(-1, 3)
    pts = ijk + lo
    inside = {}
    for k, v in layers.items():
        inside[k] = np.clip(radial_depth(pts, v, faces, center) + 0.5, 0, 1).reshape(shape)
        print(f"{k}: volume {inside[k].sum() / 1e6:.3f} L")
    ic = inside["inner_skull"]
    osk = np.maximum(inside["outer_skull"], ic)
    sc = np.maximum(inside["scalp"], osk)

    csf = np.clip(ic - b, 0, 1)
    used = np.maximum(b, ic)
    bone = np.clip(osk - used, 0, 1)
    used = np.maximum(used, osk)
    soft = np.clip(sc - used, 0, 1)
    air = np.zeros(shape)
    for name, c, r in air_spaces(nasion, lpa, rpa):
        q = (((pts - c) / r) ** 2).sum(1).reshape(shape) <= 1
        air[q] += bone[q] + soft[q]
        bone[q] = 0
        soft[q] = 0
        print(f"{name}: centre {np.round(c, 1)}, air {air[q].sum() / 1e3:.1f} ml")
    # the neck: below NECK_Z the head continues as the soft-tissue cross-section at NECK_Z
    # (fsaverage's head is closed at z = -115 mm; a closed stump would put an air interface
    # under the cerebellum in field maps; field_shift pads with edge values, so the neck
    # continues through the grid's lower face)
    k_neck = int(round(NECK_Z - lo[2]))
    stump = np.clip(soft[:, :, k_neck] + bone[:, :, k_neck], 0, 1)
    for k in range(k_neck):
        soft[:, :, k] = np.maximum(soft[:, :, k], stump - air[:, :, k] - bone[:, :, k])
    frac = np.stack([brain[0], brain[1], csf, bone, soft, air])
    print(f"brain outside the inner skull: {np.clip(b - ic, 0, 1).sum() / 1e3:.1f} ml")
    for t, f in zip(TISSUES, frac):
        print(f"{t}: {f.sum() / 1e6:.3f} L")
    cum = np.round(np.cumsum(frac, 0) * 255).clip(0, 255).astype(np.int16)
    q = np.diff(cum, axis=0, prepend=0).astype(np.uint8)
    assert q.astype(int).sum(0).max() <= 255
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "mni152_tissue_1mm.npz.xz")
    buf = io.BytesIO()
    np.savez(buf, fractions=q, affine=affine, tissues=np.array(TISSUES))
    with open(path, "wb") as fh:
        fh.write(lzma.compress(buf.getvalue(), preset=9))
    print(path, os.path.getsize(path) / 1e6, "MB")
    if png:
        _png(q / 255.0, lo, png)


def _png(frac, lo, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = np.array(
        [[0.6, 0.6, 0.6], [1, 1, 1], [0.2, 0.4, 1], [1, 0.9, 0.5], [0.9, 0.4, 0.4], [0, 0.8, 0]]
    )
    rgb = np.tensordot(frac, colours, axes=(0, 0))
    fig, ax = plt.subplots(2, 4, figsize=(24, 12))
    ext_s = (lo[1] - 0.5, lo[1] + rgb.shape[1] - 0.5, lo[2] - 0.5, lo[2] + rgb.shape[2] - 0.5)
    ext_a = (lo[0] - 0.5, lo[0] + rgb.shape[0] - 0.5, lo[1] - 0.5, lo[1] + rgb.shape[1] - 0.5)
    for a, x in zip(ax[0], (0, 12, 28, 62)):
        a.imshow(rgb[int(x - lo[0])].transpose(1, 0, 2), origin="lower", extent=ext_s)
        a.set_title(f"x = {x} mm")
    for a, z in zip(ax[1], (20, -10, -30, -45)):
        a.imshow(rgb[:, :, int(z - lo[2])].transpose(1, 0, 2), origin="lower", extent=ext_a)
        a.set_title(f"z = {z} mm")
    for a in ax.ravel():
        a.grid(True, color="r", alpha=0.3)
    plt.tight_layout()
    plt.savefig(path, dpi=60)


def roi_tables():
    """Write the ROI coordinate sets (MNI mm) as CSV: name, x, y, z, network."""
    rows = {}
    with open(os.path.join(NILEARN_DATA, "dosenbach_2010.csv")) as fh:
        rows["dosenbach160"] = [
            (f"dosenbach160_{int(r['number']):03d}", r["x"], r["y"], r["z"], r["network"])
            for r in csv.DictReader(fh)
        ]
    with open(os.path.join(NILEARN_DATA, "power_2011.csv")) as fh:
        rows["power264"] = [
            (f"power264_{int(r['ROI']):03d}", r["X"], r["Y"], r["Z"], "")
            for r in csv.DictReader(fh)
        ]
    with open(os.path.join(NILEARN_DATA, "seitzman_2018_ROIs_300inVol_MNI_allInfo.txt")) as fh:
        lines = [ln.split() for ln in fh.read().splitlines()[1:] if ln.strip()]
        rows["seitzman300"] = [
            (f"seitzman300_{i + 1:03d}", x, y, z, net)
            for i, (x, y, z, _, _, net) in enumerate(lines)
        ]
    for name, r in rows.items():
        with open(os.path.join(OUT, f"{name}.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(("name", "x", "y", "z", "network"))
            w.writerows(r)
        print(name, len(r))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--png", default=None)
    args = p.parse_args()
    build(args.png)
    roi_tables()
