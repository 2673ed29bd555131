"""One ED force evaluation vs the bare eigensolver on the same matrix (30x30 square lattice).

    python bench/ed.py [--size 30] [--repeats 5]

The ratio (ED step / bare torch.linalg.eigh) measures what the force evaluation adds on top
of LAPACK: Hamiltonian assembly, occupations and the on-site density-matrix blocks.
Target: at most 1.15.
"""
import argparse

import torch

import spinforce as sf
from _common import interleaved_medians, write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    lat = sf.Lattice("square", args.size)
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=6.0, filling=0.485))
    spins = torch.from_numpy(lat.random_spins(0))
    H = ed.hamiltonian(spins)

    medians = interleaved_medians({"eigh": lambda: torch.linalg.eigh(H), "ed": lambda: ed.compute(spins)},
                                  args.repeats)
    t_eigh, t_ed = medians["eigh"], medians["ed"]
    ratio = t_ed / t_eigh
    print(f"square {args.size}x{args.size}: matrix {H.shape[0]}x{H.shape[0]} complex128, "
          f"{torch.get_num_threads()} threads")
    print(f"  bare eigensolver (torch.linalg.eigh)  median {t_eigh * 1e3:8.1f} ms")
    print(f"  ED force evaluation                   median {t_ed * 1e3:8.1f} ms")
    print(f"  ratio ED / eigensolver = {ratio:.3f}   (target <= 1.15)")
    write_json("ed", {"lattice": f"square {args.size}x{args.size}", "eigh_s": t_eigh, "ed_s": t_ed,
                      "ratio": ratio, "target": 1.15, "repeats": args.repeats})


if __name__ == "__main__":
    main()
