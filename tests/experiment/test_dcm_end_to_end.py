"""End to end: DCM recovers the connectivity of the default network from the 4D NIfTI
that ``biosim run`` writes (region means, percent signal change, the design from
events.tsv), without touching the ground truth until the comparison."""

import json

import numpy as np
import pytest

from biosim import experiment
from biosim.inference.dcm import DCMStructure, fit_dcm
from biosim.inference.slice_timing import region_delays, shift_series


@pytest.fixture(scope="module")
def fmri_only(tmp_path_factory):
    spec = experiment.load_experiment("dcm_fmri")  # the 3-region network, 360 s
    del spec["analysis"]  # the analyst fits it below
    out = tmp_path_factory.mktemp("dcm") / "ds"
    experiment.run_experiment(spec, out, progress=False)
    return spec, out


def test_dcm_recovers_the_connectivity_sign_pattern(fmri_only):
    nib = pytest.importorskip("nibabel")
    spec, out = fmri_only
    func = out / "sub-01" / "func"
    img = nib.load(func / "sub-01_task-dcmfmri_bold.nii.gz")
    sidecar = json.loads((func / "sub-01_task-dcmfmri_bold.json").read_text())
    tr, te = sidecar["RepetitionTime"], sidecar["EchoTime"]
    events = [
        line.split("\t")
        for line in (func / "sub-01_task-dcmfmri_events.tsv").read_text().splitlines()[1:]
    ]
    # regions: the analyst's ROI masks (the label volume plays the atlas here)
    labels = np.load(out / "derivatives" / "biosim-truth" / "truth.npz")["labels"]
    vol = np.asarray(img.dataobj, float)
    n_scans = vol.shape[-1]
    signal = np.stack([vol[labels == r + 1].mean(axis=0) for r in range(3)], axis=1)
    # slice-timing correction from the sidecar, as an analyst would
    delays = region_delays(labels, sidecar["SliceTiming"])
    signal = shift_series(signal, delays, tr)
    first_onset = min(float(e[0]) for e in events)
    baseline = signal[: int(first_onset / tr)].mean(axis=0)
    y = 100 * (signal / baseline - 1)  # percent signal change
    n_micro = 16
    t = np.arange(n_scans * n_micro) * tr / n_micro
    names = ["attention", "visual"]
    u = np.zeros((t.size, 2))
    for onset, dur, cond in events:
        u[(t >= float(onset)) & (t < float(onset) + float(dur)), names.index(cond)] = 1.0
    a = np.ones((3, 3), bool) & ~np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], bool)  # no V1<->PFC
    b = np.zeros((2, 3, 3), bool)
    b[0, 1, 0] = True  # attention on V1 -> V5
    c = np.zeros((3, 2), bool)
    c[0, 1] = True  # visual drives V1
    structure = DCMStructure(a, b, c, tr=tr, n_micro=n_micro, field_strength=3.0, echo_time=te)
    res = fit_dcm(structure, y, u)
    A, B, C = res.connectivity()
    sd = np.sqrt(np.diag(res.vl.cov))
    truth_a = np.asarray(spec["activity"]["dcm"]["A"])
    # the simulated network: V1 -> V5 (+0.4), V5 -> PFC (+0.5), PFC -> V5 (-0.2), no V5 -> V1;
    # measured posterior means 0.27 / 0.33 / -0.23 (shrunk towards the prior at this SNR)
    for i, j in [(1, 0), (2, 1), (1, 2)]:
        assert np.sign(A[i, j]) == np.sign(truth_a[i, j]), (i, j, A[i, j])
    assert abs(A[0, 1]) < 0.1  # the absent backward link
    assert B[0, 1, 0] > 0.1 and C[0, 1] > 0  # attention gain, visual drive
    # posterior means of the present forward links lie within 3 SD of zero's far side
    idx = structure.free_index()
    for i, j in [(1, 0), (2, 1)]:
        k = list(idx).index(i * 3 + j)
        assert res.vl.mean[k] / sd[k] > 3
