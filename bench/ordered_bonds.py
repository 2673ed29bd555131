"""Force-evaluation cost of a committee on ordered bonds (network averaged over the point group)
vs on bond and pair-orbit sums.

The `ordered_bonds` descriptor keeps every bond of the neighbourhood in place and the network
runs once per point-group image (8 on the square lattice, 12 on the triangular), so its network
costs |G| times more per site than one on the invariant sums of `bond_shells` (docs/ml.md,
"Descriptors"). Timed: one force evaluation (energy, fields and uncertainty) of an exported
committee of 3 members, 64-64 SiLU networks with random weights, through spinforce.MLForceField,
median of interleaved repeats, per site. Square lattice at cutoff 3 (the de_square models; at a
fixed mu and, for mu-input members, at a fixed electron count with its Newton solve for mu) and
triangular at cutoff 3 (tetra_triangular), in float64 and float32. Writes
bench/results/ordered_bonds.json.

    python bench/ordered_bonds.py [--size 64] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import spinforce  # before torch: the OpenMP settings
import torch

from _common import interleaved_medians, write_json
from spinforce import Lattice, MLForceField
from spinforce.ml.committee import CommitteeModel
from spinforce.ml.model import build_model, export_torchscript, set_ensemble

SUMS = {"kind": "bond_shells", "cutoff": 3.0, "powers": [1, 2], "pair_orbits": True}
CASES = [  # (name, lattice kind, ensemble, descriptor of the compared committees)
    ("square_fixed_mu", "square", None, {"kind": "ordered_bonds", "cutoff": 3.0}),
    ("square_fixed_n", "square", "fixed_n", {"kind": "ordered_bonds", "cutoff": 3.0}),
    ("triangular_fixed_mu", "triangular", None, {"kind": "ordered_bonds", "cutoff": 3.0, "chirality": True}),
]


def committee_file(lattice, descriptor: dict, dtype: str, ensemble, out: Path) -> Path:
    """An exported committee of 3 random members (mu input and fixed filling 0.4925 for "fixed_n")."""
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        settings = {k: v for k, v in descriptor.items() if k != "kind"}
        m = build_model(lattice, descriptor["kind"], settings, [64, 64], "silu", dtype, mu_input=ensemble == "fixed_n")
        if ensemble == "fixed_n":  # the mu normalisation of the de_square_fixed_n training data
            m.mu_mean, m.mu_std, m.mu_min, m.mu_max, m.density_mean = -4.1, 0.57, -4.9, -3.3, 0.985
        members.append(m)
    committee = CommitteeModel(members)
    if ensemble == "fixed_n":
        set_ensemble(committee, fixed_filling=0.4925)
    return export_torchscript(committee, out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="linear lattice size L (L x L sites)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, ensemble, ordered in CASES:
            lattice = Lattice(kind, (args.size, args.size))
            spins = lattice.random_spins(0)
            for dtype in ("float64", "float32"):
                calls, features = {}, {}
                for label, descriptor in (("ordered", ordered), ("sums", SUMS)):
                    path = committee_file(lattice, descriptor, dtype, ensemble, Path(tmp) / f"{name}_{dtype}_{label}.ts")
                    field = MLForceField(path, lattice)
                    calls[label] = lambda field=field: field.compute(spins)
                    d = build_model(lattice, descriptor["kind"], {k: v for k, v in descriptor.items() if k != "kind"},
                                    [64, 64], "silu", dtype).descriptor
                    features[label] = {"features": int(d.num_features), "images": int(d.images)}
                t = interleaved_medians(calls, repeats=args.repeats)
                us = {k: v / lattice.num_sites * 1e6 for k, v in t.items()}
                results[f"{name}_{dtype}"] = {"lattice": kind, "ensemble": ensemble or "fixed_mu", "dtype": dtype,
                                              "ordered": {**ordered, **features["ordered"]},
                                              "sums": {**SUMS, **features["sums"]},
                                              "ordered_us_per_site": us["ordered"], "sums_us_per_site": us["sums"],
                                              "ratio": us["ordered"] / us["sums"]}
                print(f"{name} {dtype}: ordered bonds {us['ordered']:.1f} us/site, sums {us['sums']:.1f} us/site: "
                      f"ordered / sums = {us['ordered'] / us['sums']:.2f}")
    write_json("ordered_bonds", {"size": args.size, "repeats": args.repeats, "committee_size": 3, "cases": results})


if __name__ == "__main__":
    main()
