"""Force-evaluation cost of exported force-field files against each other and against ED.

    python bench/model_cost.py MODEL.ts [OTHER.ts ...] [--sizes 30 96] [--ed-size 30] [--threads 2]
                               [--repeats 7] [--name NAME]

One evaluation (energy, fields and, for a committee, the uncertainty; for a file exported at a
fixed electron count, its solve for mu) through spinforce.MLForceField, every file timed
interleaved with the others on the same random spins, at each L x L of --sizes; medians, in µs
per site. At --ed-size exact diagonalisation of the same s-d model (--J, --kT; at the first
file's fixed filling, else at --mu) is timed too: ED / ML is the speed-up of the force field
over the exact electrons per force evaluation (the target of docs/ml.md: at least 100x at 30x30).
Ratios are to the first file. JSON to bench/results/NAME.json (--name, default model_cost).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import spinforce  # before torch: the OpenMP settings
import torch

from _common import interleaved_medians, median_time, write_json
from spinforce.ml.model import read_exported


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="exported TorchScript files (the first is the one the ratios are to)")
    p.add_argument("--sizes", type=int, nargs="+", default=[30, 96])
    p.add_argument("--ed-size", type=int, default=30, help="lattice side of the ED timing (0: none)")
    p.add_argument("--J", type=float, default=6.0)
    p.add_argument("--kT", type=float, default=0.0, help="electron temperature of the ED timing")
    p.add_argument("--mu", type=float, default=-4.69, help="ED's mu when the first file is not at a fixed filling")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--name", default="model_cost")
    a = p.parse_args()
    if a.repeats < 1 or a.threads < 0 or a.ed_size < 0 or any(L < 2 for L in a.sizes):
        p.error("--repeats must be >= 1, --threads and --ed-size >= 0, --sizes >= 2")
    if a.threads:
        torch.set_num_threads(a.threads)
    first = read_exported(a.models[0])
    if first is None:
        p.error(f"{a.models[0]} is not a TorchScript force field written by `spinforce export`")
    kind = str(first.lattice_kind)
    filling = getattr(first, "fixed_filling", None)
    filling = math.nan if filling is None else float(filling)
    names = [Path(m).name for m in a.models]
    if len(set(names)) < len(names):
        names = [str(m) for m in a.models]
    rows = []
    for L in sorted(set(a.sizes) | ({a.ed_size} if a.ed_size else set())):
        lat = spinforce.Lattice(kind, L)
        spins = torch.from_numpy(lat.random_spins(0))
        providers = {n: spinforce.MLForceField(m, lat) for n, m in zip(names, a.models)}
        # TorchScript specialises over its first calls: three warm-up evaluations each
        t = interleaved_medians({n: (lambda f=f: f.compute(spins)) for n, f in providers.items()}, a.repeats, warmup=3)
        row = {"L": L, "sites": lat.num_sites, "us_per_site": {n: t[n] / lat.num_sites * 1e6 for n in names},
               "ratio_to_first": {n: t[n] / t[names[0]] for n in names}}
        msg = f"{L}x{L}: " + ", ".join(f"{n} {row['us_per_site'][n]:.1f} µs/site" for n in names)
        if L == a.ed_size:
            ensemble = {"mu": a.mu} if math.isnan(filling) else {"filling": filling}
            ed = spinforce.ExactDiagonalization(spinforce.SDModel(lat, t=1.0, J=a.J, kT=a.kT, **ensemble))
            t_ed = median_time(lambda: ed.compute(spins), max(1, a.repeats // 2), warmup=1)
            row.update(ed_s=t_ed, ed_model={"J": a.J, "kT": a.kT, **ensemble},
                       ed_over_ml={n: t_ed / t[n] for n in names})
            msg += f"; ED {t_ed:.2f} s, ED/ML " + ", ".join(f"{row['ed_over_ml'][n]:.1f}x" for n in names)
        rows.append(row)
        print(msg, flush=True)
    write_json(a.name, {"models": [str(m) for m in a.models], "lattice_kind": kind, "repeats": a.repeats,
                        "rows": rows})


if __name__ == "__main__":
    main()
