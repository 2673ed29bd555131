"""How many Newton steps the fixed-filling solve for mu needs, and what each costs.

A model with mu as input exported at a fixed filling solves sum_i n_i(mu) = N_e for mu at every
force evaluation with a fixed number of safeguarded Newton steps from the mean training mu
(spinforce.ml.model.ChemicalPotentialSolve; `spinforce export --newton-steps K`). A fixed number,
not a tolerance, keeps the exported forward free of data-dependent control flow. This script
measures, for the shipped `de_square_fixed_n` committee on the square lattice:

- convergence: the largest relative residual |N_e(mu_K) - N_e| / N_e after K steps, in float64
  and float32, over random and Neel-like states (Neel order with noise 0.3) of an L x L lattice,
  the states of the fixed-N quench. (A ferromagnet-like state needs mu ~ -2.5 for 1.5 % holes,
  far outside the trained range [-4.9, -3.3]: the solve stops at the edge of its bracket there, and
  MLForceField.chemical_potential warns.)
- cost: one force evaluation through spinforce.MLForceField (float32, one thread) with the file
  exported at the default K = DEFAULT_NEWTON_STEPS and at a smaller K (`--fewer`, 6), median of
  interleaved repeats, and their ratio.

Writes bench/results/newton_steps.json.

    python bench/newton_steps.py [--size 64] [--repeats 9] [--threads 1] [--fewer 6]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import spinforce  # before torch: the OpenMP settings
import numpy as np
import torch

from _common import interleaved_medians, write_json
from spinforce import Lattice, MLForceField
from spinforce.ml.committee import load_exported
from spinforce.ml.model import DEFAULT_NEWTON_STEPS, export_torchscript, set_ensemble

SHIPPED = Path(spinforce.__file__).resolve().parent / "models" / "de_square_fixed_n.ts"


def states(lattice, count: int = 4):
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


def residuals(model, lattice, spin_states, dtype, steps) -> dict:
    """Largest relative electron-count residual after each number of Newton steps."""
    model = model.to(dtype)
    neighbors = lattice.neighbor_table(model.neighbor_offsets)
    target = model.fixed_filling * 2.0 * lattice.num_sites
    worst = {k: 0.0 for k in steps}
    with torch.no_grad():
        for s in spin_states:
            features = model.descriptor.features(torch.as_tensor(s, dtype=dtype), neighbors)
            for k in steps:
                model.newton_steps = k
                count, _ = model.electron_count(features, model.solve_mu(features))
                worst[k] = max(worst[k], abs(float(count) - target) / target)
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="linear lattice size L (L x L sites)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fewer", type=int, default=6, help="the smaller number of Newton steps timed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lattice = Lattice("square", (args.size, args.size))
    spin_states = states(lattice)
    steps = list(range(2, 11))
    convergence = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        worst = residuals(load_exported(SHIPPED), lattice, spin_states, dtype, steps)
        convergence[name] = {str(k): v for k, v in worst.items()}
        print(f"{name}: largest |N_e(mu_K) - N_e| / N_e: " + ", ".join(f"K={k} {v:.1e}" for k, v in worst.items()))
    spins = spin_states[0]
    with tempfile.TemporaryDirectory() as tmp:
        calls = {}
        for k in (DEFAULT_NEWTON_STEPS, args.fewer):
            model = load_exported(SHIPPED)
            set_ensemble(model, fixed_filling=model.fixed_filling, newton_steps=k)
            path = export_torchscript(model, Path(tmp) / f"newton{k}.ts")
            field = MLForceField(path, lattice, dtype="float32")
            calls[k] = lambda field=field: field.compute(spins)
        t = interleaved_medians(calls, repeats=args.repeats)
    us = {k: v / lattice.num_sites * 1e6 for k, v in t.items()}
    ratio = us[DEFAULT_NEWTON_STEPS] / us[args.fewer]
    print(f"one evaluation, float32: K={DEFAULT_NEWTON_STEPS} (default) {us[DEFAULT_NEWTON_STEPS]:.1f} us/site, "
          f"K={args.fewer} {us[args.fewer]:.1f} us/site: {ratio:.2f}x")
    write_json("newton_steps", {"model": "spinforce/models/de_square_fixed_n.ts", "size": args.size,
                                "states": len(spin_states), "repeats": args.repeats,
                                "max_relative_residual": convergence,
                                "us_per_site": {str(k): v for k, v in us.items()}, "ratio": ratio})


if __name__ == "__main__":
    main()
