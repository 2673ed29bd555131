"""Analyse the frames of a spinforce run or dataset file.

    spinforce analyze RUN.h5 [MORE.h5 ...] [--out DIR] [--compare OTHER.h5] [--fit-window TMIN TMAX]
    spinforce analyze ML1.h5 ML2.h5 ... --reference ED1.h5 ED2.h5 ... [--labels ML ED]

Writes timeseries.csv, summary.json (fitted growth exponents with standard errors),
correlation.csv, cluster_sizes.csv and PNG plots (docs/analysis.md). With --reference, the runs
are also compared as an ensemble with the reference ensemble (e.g. ML-LLG against ED-LLG quenches
of the same lattice and dynamics, different noise seeds): at every saved time the bond average and
(triangular) the mean |chirality|, and C(r) at the last time, as means with standard errors over
the runs; the runs' mean should lie within two standard errors of the difference of the means
(spinforce.analysis.ensemble.compare_ensembles). ensembles.json and ensembles.png hold it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "chirality, bond averages, structure factors, domain growth and clusters of a run (HDF5)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, nargs="+",
                   help="HDF5 run or dataset file (spinforce-dataset format); several runs of one ensemble "
                        "(same lattice and frame times) are analysed together, with ensemble-averaged S(q) and C(r)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_analysis beside the file)")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="a bond S_i.S_j above this is ferromagnetic (clusters), in [-1, 1) (default 0.9)")
    p.add_argument("--fit-window", type=float, nargs=2, metavar=("TMIN", "TMAX"), default=None,
                   help="time window of the growth-exponent fits (default: the last decade of times)")
    p.add_argument("--every", type=int, default=1, help="analyse every k-th frame (the last is always analysed)")
    p.add_argument("--compare", type=Path, default=None,
                   help="a second run on the same lattice: its spin correlation C(r) is plotted against this run's")
    p.add_argument("--reference", type=Path, nargs="+", default=None, metavar="REF.h5",
                   help="a reference ensemble (at least 2 runs, same lattice and saved times): the runs are compared "
                        "with it time by time (ensembles.json, ensembles.png)")
    p.add_argument("--labels", nargs=2, default=None, metavar=("THIS", "OTHER"),
                   help="legend labels of the runs and of the --compare run or --reference ensemble "
                        "(default: 'this run' 'other run', with --reference 'runs' 'reference')")
    p.add_argument("--snapshot-side", type=int, default=128, help="snapshots show at most this many sites per side")
    p.add_argument("--overwrite", action="store_true", help="replace results already in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from .run import analyze_run
    if args.labels and args.compare is None and not args.reference:
        raise ValueError("--labels names the ensembles of --compare or --reference (THIS OTHER); "
                         "give one of them or leave --labels out")
    if args.snapshot_side < 2:
        raise ValueError(f"--snapshot-side must be >= 2 sites, got {args.snapshot_side}")
    first = args.run[0]
    out = args.out if args.out is not None else first.with_name(first.stem + "_analysis")
    labels = tuple(args.labels) if args.labels else (("runs", "reference") if args.reference else ("this run", "other run"))
    ensembles = None
    if args.reference:  # computed (every file checked) before anything is written
        from .ensemble import compare_ensembles
        ensembles = compare_ensembles(args.reference, args.run, labels=(labels[1], labels[0]))
    result = analyze_run(args.run, out, threshold=args.threshold, fit_window=args.fit_window, every=args.every,
                         compare=args.compare, compare_labels=labels, snapshot_side=args.snapshot_side,
                         overwrite=args.overwrite, progress=not args.quiet)
    if ensembles is not None:
        _write_ensemble_comparison(ensembles, out, args)
    runs = str(first) if len(args.run) == 1 else f"{len(args.run)} runs"
    skipped = result.summary["samples_skipped"]
    note = f" (skipped {skipped} independent samples: not part of the trajectory)" if skipped else ""
    print(f"analysed {result.summary['frames_analysed']} trajectory frames of {runs}{note}; "
          f"fit window t = {result.fit_window[0]:g} .. {result.fit_window[1]:g}")
    for name, fit in result.fits.items():
        print(f"  {name:18s} L ~ t^n, n = {fit.exponent:.4f} +- {fit.stderr:.4f} ({fit.num_points} points)")
    if not result.fits:
        print("  no growth exponent fitted: no length measure has 3 usable points in the fit window")
    print(f"results in {out}/")
    return 0


def _write_ensemble_comparison(ensembles: dict, out: Path, args) -> None:
    """ensembles.json and ensembles.png, and a line per observable."""
    import json
    from .ensemble import plot_ensemble_comparison
    ensembles["png"] = str(plot_ensemble_comparison(ensembles, out / "ensembles.png"))
    ensembles["runs"] = [str(p) for p in args.run]
    ensembles["reference_runs"] = [str(p) for p in args.reference]
    (out / "ensembles.json").write_text(json.dumps(ensembles, indent=1))
    sigmas = ensembles["sigmas"]
    print(f"{len(args.run)} runs against the reference ensemble of {len(args.reference)}, within {sigmas:g} standard "
          "errors of the difference of the means:")
    for name, a in ensembles["agreement"].items():
        if a is None:
            print(f"  {name:12s} not compared (the ensembles end at different times)")
            continue
        where = "distances at the last time" if name == "correlation" else "saved times"
        units = a["max_deviation_in_stderr"]
        units = f"{units:.2f}" if units < 1e6 else "> 1e6"  # runs without spread: no standard error
        print(f"  {name:12s} {sum(a['within'])} of {len(a['within'])} {where}; largest deviation "
              f"{a['max_deviation']:.3g} ({units} standard errors)")
