"""The ``biosim`` command line.

``biosim run [EXPERIMENT.toml] [-o OUT]``  simulate an experiment (the built-in
default when no file is given) and write its dataset, ground truth and report.
``biosim validate EXPERIMENT.toml``         check a specification without running it.
``biosim examples [--copy DIR]``            list (or copy) the shipped experiments.
``biosim devices``                          list the device types an experiment can use.
``biosim sweep EXPERIMENT -o OUT --seeds 0-9 --grid KEY=V1,V2``
                                            many runs on Dask (local cluster or a scheduler
                                            address), resumable: complete runs are skipped.

``EXPERIMENT`` is a TOML file or the name of a shipped experiment (``meg_opm``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .. import __version__
from .._core.errors import BiosimError
from .._core.interrupt import Interrupted, deferred, handle_signals, pending


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biosim",
        description="Differentiable physics simulation of brain measurement and stimulation.",
        epilog="Region names for subject.regions: `biosim regions` lists them.",
    )
    parser.add_argument("--version", action="version", version=f"biosim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="simulate an experiment and write its dataset")
    run.add_argument(
        "experiment",
        nargs="?",
        default=None,
        help="experiment TOML file or shipped experiment name (default: the "
        "built-in simultaneous EEG-fMRI experiment)",
    )
    run.add_argument(
        "-o", "--out", default="biosim_out", help="output folder (default: %(default)s)"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder that holds an earlier biosim dataset (a folder "
        "with other files is never replaced)",
    )
    run.add_argument("--seed", type=int, default=None, help="override the experiment's random seed")
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars (they are drawn only on a terminal, and never with "
        "BIOSIM_PROGRESS=0)",
    )
    run.add_argument("--no-progress", action="store_true", help="the same as --quiet")

    val = sub.add_parser("validate", help="check an experiment specification")
    val.add_argument("experiment", help="experiment TOML file")

    ex = sub.add_parser("examples", help="list or copy the shipped example experiments")
    ex.add_argument("--copy", metavar="DIR", default=None, help="copy the examples into DIR")
    ex.add_argument(
        "--overwrite",
        action="store_true",
        help="with --copy: replace copies in DIR that differ from the shipped files",
    )

    sub.add_parser("devices", help="list the device types an experiment can use")
    reg = sub.add_parser(
        "regions",
        help="list the region names subject.regions can use (landmarks, ROI sets)",
    )
    reg.add_argument(
        "roi_set",
        nargs="?",
        default=None,
        help="list every region of this ROI set with its MNI152 coordinate",
    )

    from .sweep import add_sweep_parser

    add_sweep_parser(sub)
    return parser


def _load(experiment, name):
    """Load a spec; its warnings (aliasing) are printed as one line each."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = experiment.load_experiment(name)
    for msg in dict.fromkeys(str(w.message) for w in caught):
        print(f"biosim: warning: {msg}", file=sys.stderr)
    return spec


def _region_lines(roi_set: str | None) -> list[str]:
    """The landmarks and ROI sets (or one set's regions) with MNI152 coordinates."""
    from ..geometry.regions import ROI_SETS, landmark_regions, region_names_help, roi_set_regions
    from ..geometry.source_space import LANDMARKS_MNI

    if roi_set is not None:
        return [
            f"{r.name}: MNI ({r.center_mni[0]:.0f}, {r.center_mni[1]:.0f}, {r.center_mni[2]:.0f})"
            for r in roi_set_regions(roi_set)
        ]
    lines = [region_names_help(), "", "landmarks (MNI152 mm, left hemisphere; -rh mirrors):"]
    for r in landmark_regions(sorted(LANDMARKS_MNI)):
        x, y, z = r.center_mni
        lines.append(f"  {r.name}: ({x:.0f}, {y:.0f}, {z:.0f})")
    lines.append("ROI sets (`biosim regions SET` lists their regions):")
    lines += [f"  {name}: {n} regions" for name, n in ROI_SETS.items()]
    return lines


def _estimate(spec) -> str:
    from ..experiment.estimate import estimate_resources

    return estimate_resources(spec).summary()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``biosim`` console script; returns the exit status.

    SIGINT (Ctrl-C) and SIGTERM (``timeout``, SLURM, ``docker stop``) stop a
    command cleanly: whatever was being written is removed, one line says so on
    standard error, and the status is 130 or 143 (128 + the signal number).
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    with handle_signals():
        try:
            return _run_command(args)
        except BaseException as err:
            signum = err.signum if isinstance(err, Interrupted) else pending()
            if signum is None:
                raise
            with deferred(raise_after=False):  # a second Ctrl-C: still one line
                status = _report_interrupt(args, signum)
                if argv is None:
                    # console use: exit at once, without the interpreter's teardown around
                    # an XLA compile that may still run (it segfaulted); staging is removed
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(status)
    return status


def _report_interrupt(args, signum: int) -> int:
    """Print the one line saying what an interrupt left; return the exit status."""
    name = signal.Signals(signum).name
    if args.command == "run":
        what = f"; nothing was written to {args.out}"
    elif args.command == "sweep":
        what = (
            f"; complete runs are kept in {args.out}, run the same command again to do the others"
        )
    elif args.command == "examples" and args.copy:
        what = f"; files already copied to {args.copy} are complete"
    else:
        what = ""
    if getattr(sys.stderr, "isatty", lambda: False)():
        print("\r\033[K", end="", file=sys.stderr)  # clear a half-drawn progress bar
    print(f"biosim: interrupted ({name}){what}", file=sys.stderr)
    return 128 + signum


def _run_command(args) -> int:
    if args.command == "sweep":
        from .sweep import main_sweep

        return main_sweep(args)
    from .. import experiment

    try:
        if args.command == "run":
            spec = _load(experiment, args.experiment)
            if args.seed is not None:
                spec = experiment.with_seed(spec, args.seed)
            print(f"biosim: {_estimate(spec)}", flush=True)
            out = experiment.run_experiment(
                spec,
                args.out,
                overwrite=args.overwrite,
                progress=not (args.quiet or args.no_progress),
            )
            print(f"biosim: wrote {out}")
        elif args.command == "validate":
            spec = _load(experiment, args.experiment)
            print(f"biosim: {args.experiment} is valid ({experiment.describe(spec)})")
            print(f"biosim: {_estimate(spec)}")
        elif args.command == "examples":
            lines = experiment.list_examples(copy_to=args.copy, overwrite=args.overwrite)
            for line in lines:
                print(line)
        elif args.command == "devices":
            from ..experiment.devices import device_types

            for name, dev in sorted(device_types().items()):
                print(f"{name}: {dev.description}")
        elif args.command == "regions":
            for line in _region_lines(args.roi_set):
                print(line)
    except (BiosimError, FileNotFoundError, FileExistsError) as err:
        print(f"biosim: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
