"""Forward + backward time per site of the descriptors: custom ops vs pure-torch reference.

Both paths compute identical features (tests/test_descriptors.py). The op path evaluates the
local bond/chirality variables (torch.ops.spinforce.local_spin_variables) and the invariants
(torch.ops.spinforce.descriptor_invariants) in C++; the reference does both in torch. Each timing
is the median of several interleaved repeats of energy = sum(features * w) and its gradient
w.r.t. the spins (the work of one force evaluation); the local-variable op alone is timed
against its reference too. Writes bench/results/descriptors.json.

    python bench/descriptors.py [--size 64] [--repeats 9] [--threads N]
"""
from __future__ import annotations

import argparse

import torch

from _common import interleaved_medians, write_json
from spinforce import Descriptor, Lattice


def forward_backward(desc, spins, weights):
    """Energy sum(features * w) and its gradient w.r.t. the spins: the work of one force call."""
    def call():
        s = spins.detach().requires_grad_(True)
        torch.autograd.grad((desc(s) * weights).sum(), s)
    return call


def variables_forward_backward(variables, patch, pairs, triangles):
    def call():
        p = patch.detach().requires_grad_(True)
        torch.autograd.grad(variables(p, pairs, triangles).sum(), p)
    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="linear lattice size L (L x L sites)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from spinforce.descriptors import local_spin_variables as reference_variables

    results = {"size": args.size, "repeats": args.repeats, "dtype": "float64", "lattices": {}}
    for kind in ("square", "triangular"):
        lattice = Lattice(kind, (args.size, args.size))
        op = Descriptor(lattice)
        ref = Descriptor(lattice, implementation="reference")
        spins = torch.as_tensor(lattice.random_spins(seed=0), dtype=torch.float64)
        weights = torch.randn(op.num_features, dtype=torch.float64)
        patch = torch.cat([spins[:, None], spins[op.neighbors]], dim=1)
        medians = interleaved_medians({
            "op": forward_backward(op, spins, weights),
            "reference": forward_backward(ref, spins, weights),
            "variables_op": variables_forward_backward(torch.ops.spinforce.local_spin_variables, patch, op.pairs,
                                                       op.triangles),
            "variables_reference": variables_forward_backward(reference_variables, patch, op.pairs, op.triangles),
        }, args.repeats)
        t_op, t_ref, v_op, v_ref = (medians[k] for k in ("op", "reference", "variables_op", "variables_reference"))
        N = lattice.num_sites
        row = {
            "num_sites": N, "num_features": op.num_features, "feature_counts": op.feature_counts,
            "num_neighbors": int(len(op.neighbor_offsets)), "num_variables": op.environment.num_variables,
            "descriptor_op_us_per_site": 1e6 * t_op / N, "descriptor_reference_us_per_site": 1e6 * t_ref / N,
            "descriptor_speedup": t_ref / t_op,
            "variables_op_us_per_site": 1e6 * v_op / N, "variables_reference_us_per_site": 1e6 * v_ref / N,
            "variables_speedup": v_ref / v_op,
        }
        results["lattices"][kind] = row
        print(f"{kind:10s} N={N} F={op.num_features}: forward+backward per site "
              f"op {row['descriptor_op_us_per_site']:.2f} us, reference {row['descriptor_reference_us_per_site']:.2f} us, "
              f"ratio reference/op = {row['descriptor_speedup']:.2f}; local variables alone: "
              f"op {row['variables_op_us_per_site']:.2f} us, reference {row['variables_reference_us_per_site']:.2f} us, "
              f"ratio {row['variables_speedup']:.2f}")
    write_json("descriptors", results)


if __name__ == "__main__":
    main()
