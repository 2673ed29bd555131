"""Analyse the frames of a spinforce run or dataset file.

    spinforce analyze RUN.h5 [MORE.h5 ...] [--out DIR] [--compare OTHER.h5] [--fit-window TMIN TMAX]

Writes timeseries.csv, summary.json (fitted growth exponents with standard errors),
correlation.csv, cluster_sizes.csv and PNG plots (docs/analysis.md).
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
    p.add_argument("--labels", nargs=2, default=("this run", "other run"), metavar=("THIS", "OTHER"),
                   help="legend labels of the two runs in the correlation comparison")
    p.add_argument("--snapshot-side", type=int, default=128, help="snapshots show at most this many sites per side")
    p.add_argument("--overwrite", action="store_true", help="replace results already in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from .run import analyze_run
    first = args.run[0]
    out = args.out if args.out is not None else first.with_name(first.stem + "_analysis")
    result = analyze_run(args.run, out, threshold=args.threshold, fit_window=args.fit_window, every=args.every,
                         compare=args.compare, compare_labels=tuple(args.labels), snapshot_side=args.snapshot_side,
                         overwrite=args.overwrite, progress=not args.quiet)
    runs = str(first) if len(args.run) == 1 else f"{len(args.run)} runs"
    skipped = result.summary["samples_skipped"]
    note = f" (skipped {skipped} independent samples: not part of the trajectory)" if skipped else ""
    print(f"analysed {result.summary['frames_analysed']} trajectory frames of {runs}{note}; "
          f"fit window t = {result.fit_window[0]:g} .. {result.fit_window[1]:g}")
    for name, fit in result.fits.items():
        print(f"  {name:18s} L ~ t^n, n = {fit.exponent:.4f} +- {fit.stderr:.4f} ({fit.num_points} points)")
    print(f"results in {out}/")
    return 0
