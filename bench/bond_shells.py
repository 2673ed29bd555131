"""Bond-shell descriptor with pair orbits: orbit sums by gather vs by the dense 0/1 orbit matrix.

The pair-orbit features sum the bonds S_j . S_l among the neighbours of a site over each orbit of
pairs. The descriptor gathers each orbit's pairs from the m x m bonds and sums them
(BondShellDescriptor.orbit_sums); the reference, as releases up to 0.1 did, multiplies the m^2
bonds by the (m^2, O) 0/1 orbit matrix stored in model files. Both give the same features
(tests/test_ml.py). Timed: features and their energy gradient (forward + backward, the
descriptor's work in one force evaluation) per site, median of interleaved repeats, on the square
lattice at cutoff 3 (the shipped de_square models) and 4.5, in float64 and float32. Writes
bench/results/bond_shells.json.

    python bench/bond_shells.py [--size 64] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse

import spinforce  # noqa: F401  (before torch: the OpenMP settings)
import torch

from _common import interleaved_medians, write_json
from spinforce import Lattice
from spinforce.descriptors import BondShellDescriptor


class DenseOrbitSums(BondShellDescriptor):
    """The same descriptor with the orbit sums as a product with the dense orbit matrix."""

    def orbit_sums(self, pair_values):
        return pair_values.reshape(pair_values.shape[0], -1) @ self.orbit_sum.to(pair_values.dtype)


def force_call(desc, spins, neighbors, weights):
    def call():
        s = spins.detach().requires_grad_(True)
        torch.autograd.grad((desc.features(s, neighbors) * weights).sum(), s)
    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="linear lattice size L (L x L sites)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lattice = Lattice("square", (args.size, args.size))
    results = {}
    for cutoff in (3.0, 4.5):
        settings = {"cutoff": cutoff, "powers": [1, 2], "pair_orbits": True}
        for dtype in (torch.float64, torch.float32):
            gather = BondShellDescriptor(lattice, **settings).to(dtype)
            dense = DenseOrbitSums(lattice, **settings).to(dtype)
            neighbors = lattice.neighbor_table(gather.neighbor_offsets)
            spins = torch.from_numpy(lattice.random_spins(0)).to(dtype)
            weights = torch.randn(lattice.num_sites, gather.num_features, generator=torch.Generator().manual_seed(1),
                                  dtype=torch.float64).to(dtype)
            t = interleaved_medians({"gather": force_call(gather, spins, neighbors, weights),
                                     "dense": force_call(dense, spins, neighbors, weights)}, repeats=args.repeats)
            us = {k: v / lattice.num_sites * 1e6 for k, v in t.items()}
            name = str(dtype).replace("torch.", "")
            results[f"cutoff_{cutoff:g}_{name}"] = {
                "cutoff": cutoff, "dtype": name, "neighbors": int(neighbors.shape[1]),
                "orbits": int(gather.orbit_sum.shape[1]), "num_features": gather.num_features,
                "gather_us_per_site": us["gather"], "dense_us_per_site": us["dense"],
                "speedup": us["dense"] / us["gather"]}
            print(f"cutoff {cutoff:g} {name}: {gather.num_features} features, {us['gather']:.2f} us/site by gather, "
                  f"{us['dense']:.2f} us/site dense: {us['dense'] / us['gather']:.2f}x")
    write_json("bond_shells", {"size": args.size, "repeats": args.repeats, "square": results})


if __name__ == "__main__":
    main()
