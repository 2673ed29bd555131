"""Competing magnetic orders of the triangular s-d model at filling 1/4, by exact diagonalisation.

    python -m spinforce.examples.ground_states [--size 12] [--out ground_states.png]

Prints the electronic energy per site of the tetrahedral (triple-Q), ferromagnetic, 120-degree
and collinear-stripe states for J = 1, 2, 4 and plots them. The tetrahedral state is the
lowest: the chiral ground state whose coarsening spinforce is built to simulate.
"""
from __future__ import annotations

import argparse

import numpy as np

import spinforce as sf


def candidate_states(lattice: sf.Lattice) -> dict:
    y = lattice.coordinates[:, 1]
    return {
        "tetrahedral": lattice.tetrahedral(),
        "ferromagnetic": lattice.ferromagnetic(),
        "120-degree": lattice.spiral((4 * np.pi / 3, 0.0)),
        "stripe": np.where((y % 2 == 0)[:, None], 1.0, -1.0) * np.array([0.0, 0.0, 1.0]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="Energies of competing orders, triangular s-d model, filling 1/4")
    parser.add_argument("--size", type=int, default=12, help="lattice side, a multiple of 6 (default 12)")
    parser.add_argument("--out", default="ground_states.png", help="PNG to write")
    args = parser.parse_args(argv)
    if args.size % 6:
        parser.error("--size must be a multiple of 6 (tetrahedral and 120-degree cells fit)")

    lattice = sf.Lattice("triangular", args.size)
    states = candidate_states(lattice)
    couplings = (1.0, 2.0, 4.0)
    table = {name: [] for name in states}
    print(f"triangular {args.size}x{args.size}, filling 1/4, T_el = 0: energy per site (units of t)")
    print(f"{'J':>5} " + " ".join(f"{name:>14}" for name in states))
    for J in couplings:
        ed = sf.ExactDiagonalization(sf.SDModel(lattice, J=J, filling=0.25))
        row = [ed.compute(s).energy / lattice.num_sites for s in states.values()]
        for name, e in zip(states, row):
            table[name].append(e)
        print(f"{J:5.1f} " + " ".join(f"{e:14.5f}" for e in row))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, energies in table.items():
        ax.plot(couplings, np.array(energies) - np.array(table["tetrahedral"]), "o-", label=name)
    ax.set_xlabel("J / t")
    ax.set_ylabel("E/N - E_tetra/N")
    ax.set_title("triangular s-d model, filling 1/4")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
