"""Independent ML-LLG runs one after another on all cores vs side by side, one process per core.

    python bench/independent_runs.py [--model spinforce/models/tetra_triangular_kT03.ts]
                                     [--size 12] [--runs 2] [--steps 400] [--repeats 3] [--name NAME]

What `spinforce learn` does with the quenches of a stage (spinforce.runtime.run_independent):
  sequential: the runs one after another in this process, torch on all cores;
  side by side: one worker process per core, one run each at a time, the cores shared out.
A small lattice keeps one thread busy but hardly two, so side by side gains up to the number of
cores. Both write the same files (the same seeds); the timing includes the workers' start.
Interleaved, medians; ratio = sequential / side by side. JSON to bench/results/independent_runs.json.
"""
from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path

import spinforce  # noqa: F401  (before torch: idle OpenMP threads sleep)
import torch

from spinforce.runtime import run_independent
from spinforce.simulate import simulate
from _common import interleaved_medians, write_json

SHIPPED = Path(__file__).resolve().parents[1] / "python" / "spinforce" / "models" / "tetra_triangular_kT03.ts"


def configs(folder: Path, model: Path, kind: str, size: int, runs: int, steps: int) -> list:
    return [{"output": str(folder / f"run{k}.h5"), "lattice": {"kind": kind, "shape": [size, size]},
             "method": {"name": "ml", "path": str(model)}, "model": {},
             "dynamics": {"dt": 0.05, "alpha": 0.3, "kT": 0.002, "steps": steps, "save_every": steps, "seed": 1 + k,
                          "initial": "random"}} for k in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--kind", default="triangular")
    parser.add_argument("--size", type=int, default=12)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="independent_runs", help="bench/results/NAME.json")
    args = parser.parse_args()
    cores = torch.get_num_threads()
    run = functools.partial(simulate, overwrite=True, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = configs(Path(tmp), args.model, args.kind, args.size, args.runs, args.steps)

        def sequential():
            for job in jobs:
                run(job)

        def side_by_side():
            run_independent(run, jobs, cores=cores, progress=False)
        times = interleaved_medians({"sequential": sequential, "side_by_side": side_by_side}, repeats=args.repeats)
    spin_steps = args.runs * args.steps * args.size ** 2
    ratio = times["sequential"] / times["side_by_side"]
    print(f"{args.runs} runs of {args.size}x{args.size}, {args.steps} steps, {cores} cores: one after another "
          f"{times['sequential']:.1f} s ({spin_steps / times['sequential']:.0f} spin-steps/s), side by side "
          f"{times['side_by_side']:.1f} s ({spin_steps / times['side_by_side']:.0f} spin-steps/s): {ratio:.2f}x")
    write_json(args.name, {"model": args.model.name, "kind": args.kind, "size": args.size, "runs": args.runs,
                                    "steps": args.steps, "cores": cores, "repeats": args.repeats,
                                    "seconds": times, "ratio_sequential_over_side_by_side": ratio})


if __name__ == "__main__":
    main()
