"""Analyses run on a simulated dataset inside ``biosim run`` (``[analysis]``).

``[analysis.dcm]`` fits DCMs for fMRI to the region-mean signals the MRI
device measured (percent change from the pre-stimulus baseline; the inputs are
the protocol's conditions, as an analyst would build them from events.tsv)
and compares them by free energy.  Models are given as masks of free
connections; without ``models`` the structure of the generating
``[activity.dcm]`` network is fitted.  The posterior (means and SDs in Hz,
free energies, model probabilities) and, when the activity was a DCM, the
comparison with the true connectivity are written to
``derivatives/biosim-dcm/sub-<id>_task-<name>_dcm.json``.

``[analysis.dcm_erp]`` fits a DCM for ERPs (SPM's neural mass,
:func:`biosim.inference.dcm.fit_erp`) to the averaged EEG epochs of each
condition: the EEG is cleaned first when it was recorded in the scanner
(average artifact subtraction on the slice triggers, then the mean pulse
template on the R peaks), epochs start ``onset`` (60 ms) before each event
and are resampled to 4 ms; the region dipoles' lead field is the
observation model (SPM's fixed ECD).  Written to
``derivatives/biosim-dcm-erp/sub-<id>_task-<name>_dcm.json``.

``[analysis.glm]`` runs the whole-brain GLM a lab would (brain mask from the mean
image, SPM HRF and cosine drifts, AR(1) prewhitening, the six realignment
parameters as confounds with ``motion_regressors = "realign"``), writes a z map
per condition to ``derivatives/biosim-glm/sub-<id>/func/`` and scores it at
``threshold`` against the true activation (:func:`glm_truth_masks`): sensitivity,
false-positive rate and the realignment error against the true head motion, in
``derivatives/biosim-glm/sub-<id>_task-<name>_glm.json``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import SpecError
from ..io.bids import BIDSDataset, derivative_dataset, write_json
from .devices import device_instances
from .keys import check_keys, require, set_default
from .protocol import Protocol


def validate_analysis(spec: dict) -> None:
    """Validate ``[analysis]`` (optional) in place."""
    ana = spec.get("analysis")
    if ana is None:
        return
    if not isinstance(ana, dict):
        raise SpecError(f"analysis = {ana!r} is invalid: expected a table")
    unknown = set(ana) - {"dcm", "dcm_erp", "glm"}
    if unknown:
        raise SpecError(
            f"analysis.{sorted(unknown)[0]} is not a known analysis: expected 'dcm', "
            "'dcm_erp' or 'glm'"
        )
    if "glm" in ana:
        _validate_glm(spec, ana["glm"])
    if "dcm_erp" in ana:
        _validate_dcm_erp(spec, ana["dcm_erp"])
    if "dcm" in ana:
        dcm = ana["dcm"]
        where = "analysis.dcm"
        check_keys(dcm, {"device", "n_micro", "models"}, where)
        scanners = [k for k, _ in device_instances(spec, "mri")]
        if not scanners:
            raise SpecError(f"{where} needs an MRI device in [devices]")
        set_default(
            dcm,
            "device",
            where,
            scanners[0],
            str,
            lambda v: v in scanners,
            f"one of the MRI devices {scanners}",
        )
        set_default(dcm, "n_micro", where, 16, int, lambda v: 1 <= v <= 64, "1 to 64 steps per TR")
        n = len(spec["subject"]["regions"])
        conds = list(Protocol.from_spec(spec).conditions)
        if "models" not in dcm:
            if spec["activity"]["model"] != "dcm":
                raise SpecError(
                    f"{where}.models is missing: expected model masks (the activity "
                    "is not a DCM, so there is no generating structure to fit)"
                )
            dcm["models"] = {"generating": _true_masks(spec, conds)}
        models = require(
            dcm, "models", where, dict, lambda v: len(v) > 0, "a table name = {a, b, c}"
        )
        for name, m in models.items():
            w = f"{where}.models.{name}"
            check_keys(m, {"a", "b", "c"}, w)
            a = np.asarray(require(m, "a", w, list), float)
            if a.shape != (n, n):
                raise SpecError(f"{w}.a has shape {a.shape}: expected ({n}, {n})")
            for key, shape in (("b", (n, n)), ("c", (n,))):
                table = set_default(m, key, w, {}, dict)
                for cond, mask in table.items():
                    if cond not in conds:
                        raise SpecError(f"{w}.{key}.{cond}: not a protocol condition {conds}")
                    if np.asarray(mask, float).shape != shape:
                        raise SpecError(
                            f"{w}.{key}.{cond} has shape {np.asarray(mask).shape}: expected {shape}"
                        )
            if not m["c"]:
                raise SpecError(f"{w}.c is empty: expected at least one driving input")


def _true_masks(spec, conds):
    d = spec["activity"]["dcm"]
    return {
        "a": (np.asarray(d["A"]) != 0).astype(int).tolist(),
        "b": {
            c: (np.asarray(v) != 0).astype(int).tolist()
            for c, v in d["B"].items()
            if np.any(np.asarray(v) != 0)
        },
        "c": {
            c: (np.asarray(v) != 0).astype(int).tolist()
            for c, v in d["C"].items()
            if np.any(np.asarray(v) != 0)
        },
    }


def _structure(model, conds, tr, n_micro, field, te):
    from ..inference.dcm import DCMStructure

    n = len(model["a"])
    b = np.zeros((len(conds), n, n), bool)
    c = np.zeros((n, len(conds)), bool)
    for j, cond in enumerate(conds):
        if cond in model["b"]:
            b[j] = np.asarray(model["b"][cond]) != 0
        if cond in model["c"]:
            c[:, j] = np.asarray(model["c"][cond]) != 0
    return DCMStructure(
        np.asarray(model["a"]) != 0,
        b,
        c,
        tr=tr,
        n_micro=n_micro,
        field_strength=field,
        echo_time=te,
    )


def _to_hz(a, b, c):
    """SPM parametrisation -> Hz (diagonal -exp(a_ii)/2, inputs / 16)."""
    a_hz = a.copy()
    np.fill_diagonal(a_hz, -0.5 * np.exp(np.diag(a)))
    return a_hz, b, c / 16.0


def run_dcm_analysis(
    spec: dict, protocol: Protocol, recordings: dict, dataset: BIDSDataset
) -> dict:
    """Fit the ``[analysis.dcm]`` models to the MRI's region signals; write the summary
    into ``derivatives/biosim-dcm`` and return it."""
    from ..inference.dcm import fit_dcm, model_probabilities
    from ..inference.slice_timing import region_delays, shift_series

    cfg = spec["analysis"]["dcm"]
    meas = recordings[cfg["device"]]
    tr, n_micro = meas.tr, cfg["n_micro"]
    # slice-timing correction: each region's signal moved to the volume's start
    delays = region_delays(meas.labels, meas.sequence.slice_times(), meas.image.fractions[0])
    signal = shift_series(meas.region_signal, delays, tr)  # (n_scans, n_regions)
    n_base = max(int(protocol.first_onset / tr), 1)
    y = 100.0 * (signal / signal[:n_base].mean(axis=0) - 1.0)
    conds = list(protocol.conditions)
    u = protocol.boxcars(tr / n_micro, signal.shape[0] * n_micro)
    results, energies = {}, []
    for name, model in cfg["models"].items():
        st = _structure(model, conds, tr, n_micro, meas.field_strength, meas.te)
        res = fit_dcm(st, y, u)
        a, b, c = _to_hz(*res.connectivity())
        sd_full = np.zeros(st.free_index().max() + 1)
        sd_full[st.free_index()] = np.sqrt(np.diag(res.vl.cov))
        n = st.n_regions
        results[name] = {
            "free_energy": float(res.free_energy),
            "iterations": res.vl.n_iterations,
            "converged": bool(res.vl.converged),
            "A_hz": a.tolist(),
            "B_hz": {cd: b[j].tolist() for j, cd in enumerate(conds)},
            "C_hz": {cd: c[:, j].tolist() for j, cd in enumerate(conds)},
            "A_sd": sd_full[: n * n].reshape(n, n).tolist() if sd_full.size >= n * n else None,
        }
        energies.append(res.free_energy)
    probs = model_probabilities(energies)
    for r, p in zip(results.values(), probs):
        r["posterior_probability"] = float(p)
    summary = {
        "regions": spec["subject"]["regions"],
        "conditions": conds,
        "data": "region-mean MRI magnitude (grey-matter weighted, slice-timing corrected), "
        "percent change from the pre-stimulus scans",
        "models": results,
        "best_model": list(results)[int(np.argmax(energies))],
    }
    if spec["activity"]["model"] == "dcm":
        true_a = np.asarray(spec["activity"]["dcm"]["A"])
        best = results[summary["best_model"]]
        est = np.asarray(best["A_hz"])
        off = ~np.eye(len(true_a), dtype=bool) & (true_a != 0)
        summary["recovery"] = {
            "true_A_hz": true_a.tolist(),
            "sign_pattern_recovered": bool(np.all(np.sign(est[off]) == np.sign(true_a[off]))),
        }
    _write_summary(dataset, "biosim-dcm", summary)
    return summary


def _validate_dcm_erp(spec: dict, cfg: dict) -> None:
    where = "analysis.dcm_erp"
    check_keys(cfg, {"device", "forward", "backward", "lateral", "n_samples"}, where)
    eegs = [k for k, _ in device_instances(spec, "eeg")]
    if not eegs:
        raise SpecError(f"{where} needs an EEG device in [devices]")
    set_default(
        cfg, "device", where, eegs[0], str, lambda v: v in eegs, f"one of the EEG devices {eegs}"
    )
    set_default(
        cfg,
        "n_samples",
        where,
        64,
        int,
        lambda v: 16 <= v <= 256,
        "16 to 256 samples of 4 ms per epoch",
    )
    n = len(spec["subject"]["regions"])
    nm = spec["activity"].get("neural_mass", {})
    for key in ("forward", "backward", "lateral"):
        default = (
            (np.asarray(nm[key]) != 0).astype(int).tolist()
            if key in nm
            else np.zeros((n, n), int).tolist()
        )
        mask = np.asarray(set_default(cfg, key, where, default, list), float)
        if mask.shape != (n, n) or np.any(np.diag(mask) != 0):
            raise SpecError(
                f"{where}.{key} = {mask.tolist()} is invalid: expected an {n} x {n} "
                "mask with a zero diagonal"
            )
    if not any(np.any(np.asarray(cfg[k]) != 0) for k in ("forward", "backward", "lateral")):
        raise SpecError(f"{where}: no extrinsic connection: set forward/backward/lateral masks")
    for b in spec["protocol"]["blocks"]:
        if b["duration"] > 0.5:
            raise SpecError(
                f"{where}: protocol block at {b['onset']:g} s lasts "
                f"{b['duration']:g} s: expected events (ERP trials)"
            )


def _clean_in_scanner_eeg(data, fs, artifacts):
    """Slice-locked average artifact subtraction, then OBS of the BCG at the R peaks."""
    from ..inference.eegfmri.artifacts import average_artifact_subtraction, optimal_basis_set

    slices = artifacts.slice_times
    slice_len = int(round(np.diff(slices).mean() * fs))
    aas = average_artifact_subtraction(
        data, np.round(slices * fs).astype(int), slice_len, window=30
    )
    return optimal_basis_set(
        aas,
        np.round(artifacts.r_peaks * fs).astype(int),
        pre=int(0.1 * fs),
        post=int(0.6 * fs),
        n_components=0,
    )


def run_dcm_erp_analysis(
    spec: dict, protocol: Protocol, recordings: dict, dataset: BIDSDataset
) -> dict:
    """Fit the ``[analysis.dcm_erp]`` ERP DCM to the EEG's averaged epochs; write the
    summary into ``derivatives/biosim-dcm-erp`` and return it."""
    from ..inference.dcm import ERPStructure, fit_erp

    cfg = spec["analysis"]["dcm_erp"]
    meas = recordings[cfg["device"]]
    data, fs = meas.data, meas.sample_rate
    if meas.in_scanner:
        data = _clean_in_scanner_eeg(data, fs, meas.artifacts)
    conds = list(protocol.conditions)
    dt, n_samp, lead_in = 0.004, cfg["n_samples"], 0.06
    t_data = np.arange(data.shape[1]) / fs
    grid = np.arange(1, n_samp + 1) * dt - lead_in  # relative to each event
    y = []
    for cond in conds:
        onsets = [
            o for o in protocol.onsets(cond) if o + grid[-1] < t_data[-1] and o - lead_in >= 0
        ]
        epochs = [np.stack([np.interp(o + grid, t_data, ch) for ch in data]) for o in onsets]
        avg = np.mean(epochs, axis=0)  # (channels, samples)
        y.append((avg - avg[:, grid < 0].mean(axis=1, keepdims=True)).T)
    y = np.asarray(y)  # (trials, samples, ch)
    n = len(spec["subject"]["regions"])
    c = np.zeros((n, 1), bool)
    nm = spec["activity"].get("neural_mass")
    driven = (
        np.any([np.asarray(v) != 0 for v in nm["C"].values()], axis=0)
        if nm
        else np.eye(n, dtype=bool)[0]
    )
    c[:, 0] = driven
    n_eff = len(conds) - 1  # condition effects
    design = np.zeros((len(conds), n_eff))
    for j in range(n_eff):
        design[j + 1, j] = 1.0
    mod = (
        np.asarray(cfg["forward"]) + np.asarray(cfg["backward"]) + np.asarray(cfg["lateral"])
    ) != 0
    structure = ERPStructure(
        np.asarray(cfg["forward"]) != 0,
        np.asarray(cfg["backward"]) != 0,
        np.asarray(cfg["lateral"]) != 0,
        np.broadcast_to(mod, (n_eff, n, n)),
        c,
        design=design if n_eff else None,
        dt=dt,
        n_samples=n_samp,
        onset=lead_in,
    )
    res = fit_erp(structure, y, meas.leadfield)
    blocks, sds = res.blocks(), res.posterior_sd()
    pred = np.asarray(res.vl.prediction)
    feats = (y @ res.modes / res.scale).reshape(pred.shape)
    r2 = 1.0 - float(np.sum((feats - pred) ** 2) / np.sum((feats - feats.mean(0)) ** 2))
    summary = {
        "regions": spec["subject"]["regions"],
        "conditions": conds,
        "data": "condition-averaged EEG epochs (cleaned of scanner artifacts when "
        "recorded in the MRI), 4 ms samples, baseline-corrected",
        "n_epochs": {cd: len(protocol.onsets(cd)) for cd in conds},
        "free_energy": float(res.free_energy),
        "iterations": res.vl.n_iterations,
        "converged": bool(res.vl.converged),
        "explained_variance": r2,
        "posterior_mean": {k: np.asarray(v).tolist() for k, v in blocks.items()},
        "posterior_sd": {k: np.asarray(v).tolist() for k, v in sds.items()},
    }
    _write_summary(dataset, "biosim-dcm-erp", summary)
    return summary


def _write_summary(dataset: BIDSDataset, pipeline: str, summary: dict) -> None:
    """``derivatives/<pipeline>/sub-<id>_task-<task>_dcm.json``, in a derivative dataset
    (its ``dataset_description.json``; the summary, outside BIDS derivative naming,
    listed in its ``.bidsignore``)."""
    what = {"biosim-dcm": "DCM for fMRI", "biosim-dcm-erp": "DCM for ERPs"}.get(pipeline, pipeline)
    folder = derivative_dataset(
        dataset.root,
        pipeline,
        f"biosim {what}: task {dataset.task}",
        f"{what} fitted to the simulated data: estimates, truth and model comparison",
        ignore=["*_dcm.json"],
    )
    write_json(folder / f"sub-{dataset.subject}_task-{dataset.task}_dcm.json", summary)


GLM_KEYS = {"device", "threshold", "motion_regressors", "active_fraction"}


def _validate_glm(spec: dict, cfg: dict) -> None:
    where = "analysis.glm"
    if not isinstance(cfg, dict):
        raise SpecError(f"{where} = {cfg!r} is invalid: expected a table")
    check_keys(cfg, GLM_KEYS, where)
    scanners = [k for k, _ in device_instances(spec, "mri")]
    if not scanners:
        raise SpecError(f"{where} needs an MRI device in [devices]")
    set_default(
        cfg, "device", where, scanners[0], str, lambda v: v in scanners, f"one of {scanners}"
    )
    set_default(cfg, "threshold", where, 3.1, float, lambda v: v > 0, "a positive z threshold")
    set_default(
        cfg,
        "motion_regressors",
        where,
        "realign",
        str,
        lambda v: v in ("realign", "none"),
        "'realign' (six parameters estimated from the images) or 'none'",
    )
    set_default(
        cfg,
        "active_fraction",
        where,
        0.2,
        float,
        lambda v: 0 < v < 1,
        "a fraction in (0, 1) of the largest true response",
    )


def glm_truth_masks(bold, tr, weights, shape, protocol: Protocol, active_fraction: float) -> dict:
    """The true activation mask of each condition on the EPI grid.

    The noise-free region BOLD (truth) is regressed on the condition regressors
    (SPM HRF, TR of the recording); the regions whose response to a condition
    exceeds ``active_fraction`` of the largest are active, and so are the voxels
    whose grey matter lies mostly (more than half) in active regions.

    Parameters
    ----------
    bold : array (n_scans, n_regions)
        Noise-free fractional BOLD change at the scans.
    tr : float
        s.
    weights : scipy.sparse matrix (n_regions, n_voxels)
        Each region's grey-matter share of each voxel of the grid ``shape``.
    """
    from ..inference.design import design_matrix

    bold = np.asarray(bold)
    x, names = design_matrix(bold.shape[0], tr, _events(protocol), high_pass_period=128.0)
    beta, *_ = np.linalg.lstsq(x, bold, rcond=None)
    w = weights.tocsc()
    total = np.asarray(w.sum(axis=0)).ravel()
    masks = {}
    for cond in protocol.conditions:
        b = beta[names.index(cond)]
        active = b > active_fraction * max(b.max(), 1e-12)
        in_active = np.asarray(w[active].sum(axis=0)).ravel() if active.any() else 0 * total
        masks[cond] = ((total > 0) & (in_active > 0.5 * total)).reshape(shape)
    return masks


def _events(protocol: Protocol) -> list[dict]:
    return [
        {"onset": e.onset, "duration": e.duration, "trial_type": e.trial_type}
        for e in protocol.events()
    ]


def run_glm_analysis(
    spec: dict, protocol: Protocol, recordings: dict, dataset: BIDSDataset
) -> dict:
    """Whole-brain GLM of the MRI series as a lab would run it (brain mask from the
    mean image, nilearn's SPM-shaped HRF via :func:`~biosim.inference.design.design_matrix`,
    cosine drifts, AR(1), motion parameters from realignment),
    scored against the truth: z maps in ``derivatives/biosim-glm`` and each
    condition's sensitivity and false-positive rate at ``threshold``."""
    from ..inference.design import design_matrix
    from ..inference.glm import fit_glm
    from ..inference.metrics import detection_rates
    from ..io.nifti import write_nifti

    cfg = spec["analysis"]["glm"]
    rec = recordings[cfg["device"]]
    data = np.asarray(rec.acquisition.magnitude, float)  # (X, Y, Z, T)
    affine = np.asarray(rec.acquisition.affine)
    mean = data.mean(axis=3)
    mask = mean > 0.2 * np.percentile(mean, 99)
    n_scans = data.shape[3]
    confounds, motion = None, None
    if cfg["motion_regressors"] == "realign":
        from ..inference.registration import realign

        motion = realign(data, affine, mask=mask).parameters
        confounds = motion - motion.mean(axis=0)
    x, names = design_matrix(n_scans, rec.tr, _events(protocol), confounds=confounds)
    fit = fit_glm(data[mask].T, x, noise_model="ar1")
    truth = glm_truth_masks(
        rec.bold, rec.tr, rec.image.weights, rec.image.shape, protocol, cfg["active_fraction"]
    )
    folder = derivative_dataset(
        dataset.root,
        "biosim-glm",
        f"biosim whole-brain GLM: task {dataset.task}",
        "mass-univariate GLM of the simulated fMRI, scored against the true activation",
        ignore=["*_glm.json"],
    )
    stem = f"sub-{dataset.subject}_task-{dataset.task}"
    out_dir = folder / f"sub-{dataset.subject}" / "func"
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    for cond in protocol.conditions:
        c = np.zeros(x.shape[1])
        c[names.index(cond)] = 1.0
        _, z = fit.t_contrast(c)
        zmap = np.zeros(mask.shape, np.float32)
        zmap[mask] = z
        write_nifti(out_dir / f"{stem}_contrast-{cond}_stat-z_statmap.nii.gz", zmap, affine)
        r = detection_rates(zmap, truth[cond], cfg["threshold"], mask=mask)
        scores[cond] = dataclasses.asdict(r)
    summary = {
        "threshold_z": cfg["threshold"],
        "conditions": list(protocol.conditions),
        "noise_model": "ar1",
        "hrf": "nilearn spm_hrf (design_matrix hrf_model='spm')",
        "n_voxels_in_mask": int(mask.sum()),
        "truth": f"voxels mostly in regions whose noise-free BOLD response exceeds "
        f"{cfg['active_fraction']:g} of the largest",
        "detection": scores,
    }
    if motion is not None:
        summary["motion_regressors"] = "six parameters from biosim.inference.registration"
        if rec.motion is not None:
            true = rec.motion - rec.motion[0]
            est = motion - motion[0]
            summary["realignment_error"] = {
                "translation_rms_mm": float(
                    1e3 * np.sqrt(np.mean((est[:, :3] - true[:, :3]) ** 2))
                ),
                "rotation_rms_deg": float(
                    np.rad2deg(np.sqrt(np.mean((est[:, 3:] - true[:, 3:]) ** 2)))
                ),
            }
    write_json(folder / f"{stem}_glm.json", summary)
    return summary
