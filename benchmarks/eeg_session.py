"""EEG at the scale of a real EEG-fMRI session: simulate and write, timed.

64-channel EEG (``biosemi64``) at 5 kHz for 600 s inside a scanner with TR 2 s
and 40 slices (gradient artifact of the EPI train + ballistocardiogram +
amplifier noise, mains and clock drift), from the shipped ``eeg_fmri``
experiment.  The MRI device itself is not run: the EEG only needs the
scanner's sequence and field, so a stand-in MRI recording carries them (the
whole-brain fMRI is timed by its own benchmark).  Prints wall time and peak
resident memory of each step (the peak is reset between steps through
``/proc/self/clear_refs``; Linux), and its CPU time (all threads: on a busy
machine the wall time varies with the load, the CPU time much less).

Usage::

    python benchmarks/eeg_session.py [--duration 600] [--rate 5000] [--regions 3]
        [--truth]   # also time the truth arrays' compressed archive

``run(...)`` returns the numbers (step -> (wall s, peak RSS bytes, CPU s)), for
``benchmarks/eeg_fmri_session.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss() -> float:
    """Peak resident memory since the last reset, bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def session_spec(duration=600.0, rate=5000.0, n_slices=40, tr=2.0, montage="biosemi64"):
    """The shipped eeg_fmri experiment at session scale (validated)."""
    from biosim import experiment

    spec = experiment.load_experiment("eeg_fmri")
    spec["experiment"]["duration"] = float(duration)
    eeg = spec["devices"]["eeg"]
    eeg.pop("channels", None)
    eeg.update(montage=montage, sample_rate=float(rate), clock_drift_ppm=10.0)
    spec["devices"]["mri"].update(n_slices=int(n_slices), tr=float(tr))
    blocks = []
    for k in range(int(duration // 60)):  # a visual block a minute, attention in its second half
        blocks.append(dict(onset=60.0 * k + 20.0, duration=30.0, condition="visual"))
        blocks.append(dict(onset=60.0 * k + 35.0, duration=15.0, condition="attention"))
    spec["protocol"]["blocks"] = blocks
    return experiment.validate_spec(spec)


def run(duration=600.0, rate=5000.0, truth=False, out_dir=None, verbose=True) -> dict:
    """Simulate and write the session's EEG; returns seconds and peak bytes per step."""
    from biosim.experiment.activity import simulate_activity
    from biosim.experiment.devices import DeviceContext, Simulation
    from biosim.experiment.devices import eeg as eeg_device
    from biosim.experiment.devices.mri import MRIRecording, build_scanner
    from biosim.experiment.protocol import Protocol
    from biosim.io.bids import BIDSDataset

    spec = session_spec(duration, rate)
    protocol = Protocol.from_spec(spec)
    out = {}

    def step(name, fn):
        _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        out[name] = (time.perf_counter() - t0, _peak_rss(), time.process_time() - c0)
        if verbose:
            wall, peak, cpu = out[name]
            print(
                f"{name:>10}: {wall:7.1f} s wall, {cpu:6.1f} s CPU, peak RSS {peak / 1e9:5.2f} GB"
            )
        return value

    activity = step("activity", lambda: simulate_activity(spec, protocol))
    sim = Simulation(spec, protocol, activity, np.random.default_rng(0))
    scanner = build_scanner(spec["devices"]["mri"], spec)
    empty = np.zeros((1, 1))
    sim.recordings["mri"] = MRIRecording(scanner, None, None, empty, empty, empty, empty, empty)
    ctx = DeviceContext("eeg", spec["devices"]["eeg"], sim)
    rec = step("simulate", lambda: eeg_device.simulate(ctx))
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        dataset = BIDSDataset(Path(tmp), spec["subject"]["id"], "eegfmri")
        step("write", lambda: eeg_device.write(rec, ctx, dataset))
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        if truth:
            from biosim.io.truth import write_truth

            arrays = rec.truth_arrays("eeg")
            step("truth", lambda: write_truth(Path(tmp) / "truth", arrays, {}, {}))
    out["written_bytes"] = size
    out["shape"] = rec.data.shape
    if verbose:
        n_ch, n_t = rec.data.shape
        print(f"EEG {n_ch} ch x {n_t} samples, wrote {size / 1e9:.2f} GB")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--truth", action="store_true")
    args = parser.parse_args()
    run(args.duration, args.rate, truth=args.truth)
