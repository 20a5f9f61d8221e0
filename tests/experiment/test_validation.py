"""`biosim validate` rejects everything `biosim run` would, before any simulation.

Each case edits a shipped experiment's TOML text, then checks that validation
fails with a message naming the key, and that `run_experiment` fails the same
way without simulating anything.
"""

import re
import tomllib
from pathlib import Path

import pytest
from conftest import DRIVE_TOML

from biosim import SpecError, experiment
from biosim.cli import main

SHIPPED = experiment.spec.shipped_dir()


def _edit(name: str, *replacements: tuple[str, str]) -> str:
    text = DRIVE_TOML if name == "drive" else (SHIPPED / f"{name}.toml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"{old!r} is not in {name}.toml"
        text = text.replace(old, new, 1)
    return text


#: (id, shipped experiment, edits, pattern the error must match)
CASES = [
    (
        "epi-te-before-k-space-centre",
        "drive",
        [("te = 0.03 ", "te = 0.012 "), ("matrix = [48, 48]", "matrix = [64, 64]")],
        r"devices\.mri\.te = 0\.012 is invalid: expected >= 32 x echo_spacing",
    ),
    (
        "epi-slices-do-not-fit-the-tr",
        "drive",
        [("matrix = [48, 48]", "matrix = [80, 80]"), ("n_slices = 28", "n_slices = 48")],
        r"devices\.mri\.tr = 2\.0 is invalid: expected >= n_slices x per-slice time",
    ),
    (
        "unknown-region-fmri-only",
        "drive",
        [('regions = ["V1", "V5", "PFC"]', 'regions = ["V1", "V5", "XYZ"]')],
        r"subject\.regions: 'XYZ' is not a known region",
    ),
    (
        "infinite-duration",
        "fmri",
        [("duration = 240.0", "duration = inf")],
        r"experiment\.duration = inf is invalid: expected a finite number",
    ),
    (
        "nan-echo-time",
        "fmri",
        [("te = 0.03 ", "te = nan ")],
        r"devices\.mri\.te = nan is invalid: expected a finite number",
    ),
    (
        "field-strength-below-the-scanner",
        "fmri",
        [("field_strength = 3.0", "field_strength = 0.01")],
        r"devices\.mri\.field_strength = 0\.01 is invalid: expected a value in \[0\.05, 11\.7\]",
    ),
    (
        "flip-angle-above-180",
        "fmri",
        [("flip_angle = 77.0", "flip_angle = 200.0")],
        r"devices\.mri\.flip_angle = 200\.0 is invalid",
    ),
    (
        "odd-matrix",
        "drive",
        [("matrix = [48, 48]", "matrix = [47, 48]")],
        r"devices\.mri\.matrix = \[47, 48\] is invalid: expected two even integers",
    ),
    (
        "slab-misses-a-region",
        "drive",
        [("n_slices = 28", "n_slices = 2")],
        r"devices\.mri\.slab_center = .* region 'V1' at MNI .* lies outside the slab",
    ),
    (
        "unknown-roi-set-member",
        "drive",
        [('regions = ["V1", "V5", "PFC"]', 'regions = ["V1", "V5", "power264_999"]')],
        r"subject\.regions: 'power264_999' is not in the power264 set",
    ),
    (
        "bad-coordinate",
        "drive",
        [
            ('regions = ["V1", "V5", "PFC"]', 'regions = ["V1", "V5", "mine"]'),
            ("voxel_size = 4.0", "voxel_size = 4.0\ncoordinates = { mine = [1, 2] }"),
        ],
        r"subject\.coordinates\.mine = \[1, 2\] is invalid: expected \[x, y, z\]",
    ),
    (
        "motion-of-unknown-key",
        "drive",
        [("voxel_size = 4.0", "voxel_size = 4.0\nmotion = { translaton = 0.2 }")],
        r"subject\.motion\.translaton is not a known key",
    ),
    (
        "noise-ar-not-stationary",
        "drive",
        [("noise_std = 3.0", "noise_std = 3.0\nnoise = { ar = [1.2] }")],
        r"devices\.mri\.noise\.ar = .* is invalid",
    ),
    (
        "eeg-negative-range",
        "eeg",
        [("[devices.eeg]", "[devices.eeg]\nrange = -1.0")],
        r"devices\.eeg\.range = -1\.0 is invalid",
    ),
    (
        "eeg-bit-depth",
        "eeg",
        [("bit_depth = 24", "bit_depth = 40")],
        r"devices\.eeg\.bit_depth = 40 is invalid: expected an integer from 8 to 32",
    ),
    (
        "meg-negative-sample-rate",
        "meg_squid",
        [("sample_rate = 1000.0", "sample_rate = -5.0")],
        r"devices\.meg\.sample_rate = -5\.0 is invalid",
    ),
    (
        "meg-line-frequency",
        "meg_squid",
        [("line_frequency = 50.0", "line_frequency = 55.0")],
        r"devices\.meg\.line_frequency = 55\.0 is invalid: expected 50 or 60 Hz",
    ),
]

#: Time-course files that cannot be used, (id, bytes, pattern)
BAD_TIMECOURSES = [
    ("binary", b"\xff\xfe\x00\x81garbage", r"cannot be read as UTF-8 text"),
    ("not-numbers", b"V1\tV5\tPFC\n0\tx\t0\n", r"row 2 holds a value that is not a number"),
    ("empty", b"", r"the file is empty"),
    ("wrong-header", b"A\tB\tC\n0\t0\t0\n", r"header \['A', 'B', 'C'\] does not match"),
    ("too-few-rows", b"V1\tV5\tPFC\n0\t0\t0\n", r"1 rows found: expected 2400 rows"),
    ("ragged", b"V1\tV5\tPFC\n0\t0\n", r"row 2 has 2 values: expected 3 finite numbers"),
    ("infinite", b"V1\tV5\tPFC\n0\tinf\t0\n", r"row 2 has 3 values: expected 3 finite numbers"),
]


def _no_simulation(monkeypatch):
    """Make any simulation fail loudly: validation must stop the run first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the run simulated activity before validating the spec")

    monkeypatch.setattr(experiment.pipeline, "simulate_activity", forbidden)


def _raw_spec(path: Path) -> dict:
    """The TOML as a user would hand it to run_experiment, unvalidated."""
    spec = tomllib.loads(path.read_text(encoding="utf-8"))
    spec["_source_dir"] = str(path.parent)
    return spec


def _check(tmp_path, monkeypatch, capsys, text, pattern):
    path = tmp_path / "exp.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("biosim: error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err), err
    _no_simulation(monkeypatch)
    with pytest.raises(SpecError, match=pattern):
        experiment.run_experiment(_raw_spec(path), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_validate_rejects_what_run_would(case, tmp_path, monkeypatch, capsys):
    _, name, edits, pattern = case
    _check(tmp_path, monkeypatch, capsys, _edit(name, *edits), pattern)


@pytest.mark.parametrize("case", BAD_TIMECOURSES, ids=[c[0] for c in BAD_TIMECOURSES])
def test_unusable_timecourse_files_are_refused(case, tmp_path, monkeypatch, capsys):
    _, content, pattern = case
    (tmp_path / "tc.tsv").write_bytes(content)
    text = _edit(
        "drive", ('model = "drive"', 'model = "timecourses"\ntimecourses = { file = "tc.tsv" }')
    )
    _check(tmp_path, monkeypatch, capsys, text, pattern)


def test_missing_timecourse_file_is_refused(tmp_path, monkeypatch, capsys):
    text = _edit(
        "drive", ('model = "drive"', 'model = "timecourses"\ntimecourses = { file = "no.tsv" }')
    )
    _check(
        tmp_path,
        monkeypatch,
        capsys,
        text,
        r"activity\.timecourses\.file = 'no\.tsv': .* does not exist",
    )


def test_shipped_experiments_still_validate():
    for entry in SHIPPED.iterdir():
        if entry.name.endswith(".toml"):
            experiment.load_experiment(entry.name)
