"""TMS of the left motor cortex and C3-Fp2 TES on the template head: E-field magnitude,
normal and tangential parts on the cortical surface (fsaverage5 white surface) and on a
NIfTI grid.

A figure-8 coil (two 35 mm dipole-model windings) 4 mm above the scalp over the hand knob
(MNI152 (-37, -21, 58) mm), handle 45 deg posterior-lateral, dI/dt = 100 A/us; a
C3 (anode) - Fp2 (cathode) montage of 5 x 5 cm sponges (3 mm gel, 1 S/m) at 1 mA.
SimNIBS-like conductivities (Thielscher et al. 2015): WM 0.126, GM 0.275, CSF 1.654,
bone 0.010, scalp 0.465 S/m.

Run: ``python examples/tms_motor_cortex.py`` (6 mm mesh, 0.14 M tetrahedra, about 1 min of
CPU; measured: TMS peak 28 V/m on the cortex 10 mm from the target for this single-turn
coil model, TES 0.1-0.25 V/m per mA, inward under the anode)
"""

# %%
from pathlib import Path

import numpy as np

import biosim  # noqa: F401
from biosim.geometry.anatomy import FSAVERAGE_TO_MNI152
from biosim.geometry.source_space import cortical_surface
from biosim.geometry.template_head import template_electrodes
from biosim.geometry.tetmesh import template_head_tet_mesh
from biosim.physics.fem import tissue_conductivity
from biosim.physics.stimulation import (
    Montage,
    StimulationModel,
    field_on_grid,
    figure8_dipole_coil,
    place_coil,
    rect_electrode,
    surface_field,
)

SIGMA = {1: 0.126, 2: 0.275, 3: 1.654, 4: 0.010, 5: 0.465}  # S/m
TARGET_MNI_MM = np.array([-37.0, -21.0, 58.0])  # left M1 hand knob
DIDT = 1e8  # A/s (100 A/us)


def mni_to_template(p_mm):
    """MNI152 mm -> the template head's fsaverage (MNI305) frame, m."""
    inv = np.linalg.inv(FSAVERAGE_TO_MNI152)
    return (inv[:3, :3] @ np.asarray(p_mm, float) + inv[:3, 3]) / 1e3


def run(edge_length=0.006, grid_spacing=0.004, out_dir=None, decimation="ico5", recovered=True):
    """Solve TMS and TES on the template head; return summary numbers (and, with
    ``out_dir``, write the NIfTI of |E| and a figure there; ``grid_spacing`` None: no
    grid, no files).  ``recovered``: sample the patch-recovered field (P1 element
    fields otherwise)."""
    mesh = template_head_tet_mesh(edge_length=edge_length)
    model = StimulationModel(mesh, tissue_conductivity(mesh.labels, SIGMA))
    cent = mesh.nodes[mesh.tets].mean(axis=1)
    gm = mesh.labels == 2

    # TMS: coil over the scalp point above the target
    target = mni_to_template(TARGET_MNI_MM)
    point, normal = model.scalp_point(target)
    coil = figure8_dipole_coil(0.035, n_rings=4)
    placement = place_coil(point, normal, angle=0.75 * np.pi, distance=0.004)
    tms = model.tms(coil, placement, didt=DIDT)  # checks that the coil clears the scalp
    e_el = np.linalg.norm(tms.element_field(), axis=1)
    peak = np.flatnonzero(gm)[np.argmax(e_el[gm])]

    # TES: C3 anode, Fp2 cathode, 1 mA
    _, pos = template_electrodes("standard_1020", ["C3", "Fp2"])
    els = []
    for p, name in zip(pos, ("C3", "Fp2")):
        c, _ = model.scalp_point(p)
        els.append(rect_electrode(c, 0.05, 0.05, gel_thickness=0.003, name=name))
    tes = model.tes(Montage.create(els, [1e-3, -1e-3]))

    # cortical surface: fsaverage white surface, outward normals
    ctx = cortical_surface(decimation)
    v, nrm = ctx.positions, ctx.normals
    out = dict(
        n_tets=mesh.n_tets,
        scalp_point=point,
        coil_center=np.asarray(placement.origin),
        target=target,
        tms_peak_gm=float(e_el[peak]),
        tms_peak_gm_distance_to_target=float(np.linalg.norm(cent[peak] - target)),
        tes_delivered=np.asarray(tes.delivered_currents()),
    )
    for name, f in (("tms", tms), ("tes", tes)):
        e, en, et = surface_field(f, v, nrm, recovered=recovered)
        mag = np.linalg.norm(e, axis=1)
        out[f"{name}_cortex"] = (v, mag, en, et)
        out[f"{name}_cortex_peak"] = float(mag.max())
        out[f"{name}_cortex_peak_position"] = v[np.argmax(mag)]

    if grid_spacing is None:
        return out
    # NIfTI grid (|E| of TMS), voxels over the head's bounding box
    lo, hi = mesh.nodes.min(0), mesh.nodes.max(0)
    shape = np.ceil((hi - lo) / grid_spacing).astype(int) + 1
    affine = np.eye(4)
    affine[:3, :3] *= grid_spacing
    affine[:3, 3] = lo
    grid, mask = field_on_grid(tms, shape, affine, recovered=recovered)
    mag_grid = np.linalg.norm(grid, axis=-1)
    out["grid_peak"] = float(mag_grid.max())
    out["grid_inside_fraction"] = float(mask.mean())
    if out_dir is not None:
        from biosim.io.nifti import write_nifti

        out_dir = Path(out_dir)
        aff_mm = affine.copy()
        aff_mm[:3] *= 1e3  # m -> mm at the file boundary
        write_nifti(out_dir / "tms_emag.nii.gz", mag_grid, aff_mm)
        out["figure"] = plot(out, mag_grid, affine, out_dir / "tms_motor_cortex.png")
    return out


# %%
def plot(out, mag_grid, affine, path):
    """Maps of |E|, E . n and |E_t| on the dorsal cortex (seen from above) for TMS and
    TES; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from biosim._core.atomic import atomic_path

    fig, ax = plt.subplots(2, 3, figsize=(13, 8))
    for row, (name, unit, scale) in enumerate((("tms", "V/m", 1.0), ("tes", "V/m", 1.0))):
        v, mag, en, et = out[f"{name}_cortex"]
        top = v[:, 2] > out["target"][2] - 0.04  # the dorsal cortex, seen from above
        o = np.argsort(v[top, 2])
        for col, (val, lab, cmap) in enumerate(
            ((mag, "|E|", "hot"), (en, "E . n (outward)", "RdBu_r"), (et, "|E_t|", "hot"))
        ):
            a = ax[row, col]
            vals = val[top][o] * scale
            lim = np.percentile(np.abs(vals), 99.5)  # robust to isolated nodes
            kw = dict(cmap=cmap, s=4, vmin=-lim if cmap == "RdBu_r" else 0.0, vmax=lim)
            sc = a.scatter(1e3 * v[top, 0][o], 1e3 * v[top, 1][o], c=vals, **kw)
            a.plot(1e3 * out["target"][0], 1e3 * out["target"][1], "c+", ms=12)
            a.set_title(f"{name.upper()} {lab} ({unit}), dorsal cortex")
            a.set_aspect("equal")
            a.set_xlabel("x (mm)")
            a.set_ylabel("y (mm)")
            fig.colorbar(sc, ax=a, shrink=0.8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


# %%
if __name__ == "__main__":
    import tempfile

    res = run(out_dir=Path(tempfile.mkdtemp()))
    print(f"{res['n_tets']} tets")
    print(
        f"TMS: peak |E| in GM {res['tms_peak_gm']:.1f} V/m, "
        f"{1e3 * res['tms_peak_gm_distance_to_target']:.1f} mm from the target; "
        f"cortex peak {res['tms_cortex_peak']:.1f} V/m"
    )
    print(f"TES: delivered {res['tes_delivered']} A; cortex peak {res['tes_cortex_peak']:.3f} V/m")
    print("figure:", res["figure"])
