"""How many Newton steps the fixed-filling solve for mu needs, and what the solve costs.

A model with mu as input exported at a fixed filling solves sum_i n_i(mu) = N_e for mu at every
force evaluation (spinforce.ml.model.ChemicalPotentialSolve): `sample_steps` safeguarded Newton
steps from the mean training mu on a sample of the feature rows (every 4th site; image 0 of every
site for a descriptor with point-group images), each row counted as a site, then `newton_steps` on
all rows (`spinforce export --sample-steps S --newton-steps K`). Fixed numbers, not a tolerance,
keep the exported forward free of data-dependent control flow. This script measures:

- convergence, for the shipped `de_square_fixed_n` committee (bond shells): the largest relative
  residual |N_e(mu) - N_e| / N_e over random and Neel-like states (Neel order with noise 0.3, the
  states of the fixed-N quench) of 8x8 .. 64x64 lattices, after K full steps from the mean training
  mu (no sample steps), and after the sample steps and then K full steps; in float64 and float32.
  (A ferromagnet-like state needs mu ~ -2.5 for 1.5 % holes, far outside the trained range
  [-4.9, -3.3]: the solve stops at the edge of its bracket there, and MLForceField.chemical_potential
  warns.)
- cost: one force evaluation through spinforce.MLForceField (float32, one thread) of the file
  solving with 8 full steps from the mean training mu (`--sample-steps 0 --newton-steps 8`, the
  solve before the sample steps) and with the default solve, median of interleaved repeats, for
  the shipped committee and for a committee of 3 random ordered-bond members (cutoff 3, 64-64, 8
  images: the cost does not depend on the weights).

Writes bench/results/NAME.json (--name, default newton_steps). --model measures the convergence of
another fixed-filling file (on --sizes; --no-cost skips the timing).

    python bench/newton_steps.py [--size 64] [--repeats 7] [--threads 1]
    python bench/newton_steps.py --model FILE.ts --sizes 12 20 30 48 --no-cost --name NAME
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import spinforce  # before torch: the OpenMP settings
import numpy as np
import torch

from _common import interleaved_medians, write_json
from ordered_bonds import committee_file
from spinforce import Lattice, MLForceField
from spinforce.ml.committee import load_exported
from spinforce.ml.model import DEFAULT_NEWTON_STEPS, DEFAULT_SAMPLE_STEPS, export_torchscript, set_ensemble

SHIPPED = Path(spinforce.__file__).resolve().parent / "models" / "de_square_fixed_n.ts"
OLD_SOLVE = {"sample_steps": 0, "newton_steps": 8}  # the solve before the sample steps
NEW_SOLVE = {"sample_steps": DEFAULT_SAMPLE_STEPS, "newton_steps": DEFAULT_NEWTON_STEPS}
SIZES = (8, 12, 30, 64)
STATES_PER_KIND = 4  # random and Neel-like states per lattice size


def states(lattice, count: int = STATES_PER_KIND):
    """Random and Neel-like spins (Neel order with noise 0.3), `count` each."""
    rng = np.random.default_rng(0)
    x, y = np.asarray(lattice.positions).T
    neel = np.zeros((lattice.num_sites, 3))
    neel[:, 2] = np.where((np.rint(x) + np.rint(y)) % 2 == 0, 1.0, -1.0)
    out = []
    for k in range(count):
        s = neel + 0.3 * rng.normal(size=neel.shape)
        out += [lattice.random_spins(k), s / np.linalg.norm(s, axis=1, keepdims=True)]
    return out


def residuals(model, dtype, sample_steps: int, full_steps, sizes=SIZES) -> dict:
    """Largest relative electron-count residual after each number of full Newton steps (after
    `sample_steps` on the site sample), over the states of every lattice size in `sizes`."""
    model = model.to(dtype)
    worst = {k: 0.0 for k in full_steps}
    with torch.no_grad():
        for size in sizes:
            lattice = Lattice("square", (size, size))
            neighbors = lattice.neighbor_table(model.neighbor_offsets)
            target = model.fixed_filling * 2.0 * lattice.num_sites
            for s in states(lattice):
                features = model.descriptor.site_features(torch.as_tensor(s, dtype=dtype), neighbors)
                for k in full_steps:
                    model.sample_steps, model.newton_steps = sample_steps, k
                    count, _ = model.electron_count(features, model.solve_mu(features))
                    worst[k] = max(worst[k], abs(float(count) - target) / target)
    return worst


def evaluation_cost(model, lattice, spins, repeats: int, tmp: Path, name: str) -> dict:
    """us per site of one float32 evaluation with the old and the default solve, and their ratio."""
    calls = {}
    for label, solve in (("old", OLD_SOLVE), ("default", NEW_SOLVE)):
        set_ensemble(model, fixed_filling=model.fixed_filling, **solve)
        field = MLForceField(export_torchscript(model, tmp / f"{name}_{label}.ts"), lattice, dtype="float32")
        calls[label] = lambda field=field: field.compute(spins)
    t = interleaved_medians(calls, repeats=repeats)
    us = {k: v / lattice.num_sites * 1e6 for k, v in t.items()}
    return {"us_per_site": us, "ratio": us["old"] / us["default"]}


def solve_costs(lattice, spins, repeats: int) -> dict:
    """evaluation_cost of the shipped bond-shell committee and of a random ordered-bond one."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shipped = evaluation_cost(load_exported(SHIPPED), lattice, spins, repeats, tmp, "shipped")
        ordered = load_exported(committee_file(lattice, {"kind": "ordered_bonds", "cutoff": 3.0}, "float32",
                                               "fixed_n", tmp / "ordered.ts"))
        return {"de_square_fixed_n (bond shells)": shipped,
                "random ordered-bond committee": evaluation_cost(ordered, lattice, spins, repeats, tmp, "ordered")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="linear lattice size L of the timed evaluation")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, default=SHIPPED, help="fixed-filling file whose convergence is measured "
                        "(default: the shipped de_square_fixed_n committee)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="lattice sides of the convergence")
    parser.add_argument("--name", default="newton_steps", help="JSON name in bench/results")
    parser.add_argument("--no-cost", action="store_true", help="measure the convergence only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    convergence = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        full_only = residuals(load_exported(args.model), dtype, 0, range(2, 11), args.sizes)
        sampled = residuals(load_exported(args.model), dtype, DEFAULT_SAMPLE_STEPS, range(1, 7), args.sizes)
        convergence[name] = {"full_steps_only": {str(k): v for k, v in full_only.items()},
                             f"after_{DEFAULT_SAMPLE_STEPS}_sample_steps": {str(k): v for k, v in sampled.items()}}
        print(f"{name}: largest |N_e(mu) - N_e| / N_e on {'/'.join(map(str, args.sizes))}-square lattices")
        print("  K full steps:                   " + ", ".join(f"K={k} {v:.0e}" for k, v in full_only.items()))
        print(f"  {DEFAULT_SAMPLE_STEPS} sample steps + K full steps:  "
              + ", ".join(f"K={k} {v:.0e}" for k, v in sampled.items()))
    lattice = Lattice("square", (args.size, args.size))
    spins = states(lattice, 1)[0]
    cost = {} if args.no_cost else solve_costs(lattice, spins, args.repeats)
    for name, c in cost.items():
        print(f"one evaluation, float32, {name}: 8 full steps {c['us_per_site']['old']:.1f} us/site, "
              f"{DEFAULT_SAMPLE_STEPS} sample + {DEFAULT_NEWTON_STEPS} full {c['us_per_site']['default']:.1f} us/site: "
              f"{c['ratio']:.2f}x")
    model = args.model.resolve()
    shown = model.relative_to(SHIPPED.parents[2]) if model.is_relative_to(SHIPPED.parents[2]) else model
    write_json(args.name, {"model": str(shown), "sizes": args.sizes,
                           "states_per_size": 2 * STATES_PER_KIND, "timed_size": args.size,
                           "repeats": args.repeats, "threads": args.threads,
                           "default_solve": NEW_SOLVE, "old_solve": OLD_SOLVE,
                           "max_relative_residual": convergence, "cost": cost})


if __name__ == "__main__":
    main()
