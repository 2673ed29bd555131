"""Cost of one training step of an ordered-bond model: every point-group image of every site
(training.point_group = "average") vs one drawn image per site (point_group = "sample").

The `ordered_bonds` network is averaged over the |G| images of each site (8 on the square
lattice), so a training step, which differentiates the fields twice, runs it on |G| rows per site.
With point_group = "sample" each step runs it on one image per site, drawn at random (docs/ml.md,
"Training"); the per-epoch metrics and the saved model still average. Timed with the training
code itself (`_batch_loss` and its backward pass, and `evaluate` for one frame, the per-epoch
metric cost), on one 30x30 frame (a batch of one frame, as the de_square_fixed_n members train)
of random spins with a mu per frame and densities: mu-input members in float32 at cutoff 3 and
4.5, median of interleaved repeats. Writes bench/results/training_step.json.

    python bench/training_step.py [--size 30] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse

import spinforce  # before torch: the OpenMP settings
import numpy as np
import torch

from _common import interleaved_medians, write_json
from spinforce import Lattice
from spinforce.ml.model import build_model
from spinforce.ml.training import _batch_loss, _Part, evaluate

CASES = [(3.0, [64, 64]), (3.0, [128, 128]), (4.5, [128, 128])]  # (cutoff, hidden)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30, help="linear lattice size L (L x L sites)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lattice = Lattice("square", args.size)
    n = lattice.num_sites
    rng = np.random.default_rng(0)
    part = _Part(torch.as_tensor(lattice.random_spins(1)[None], dtype=torch.float32),
                 torch.as_tensor(rng.normal(size=(1, n, 3)), dtype=torch.float32), torch.zeros(1), None,
                 np.array([0]), np.array([0]), np.zeros(0, dtype=np.int64),
                 torch.tensor([-4.1]), torch.full((1, n), 0.985))
    rows = []
    for cutoff, hidden in CASES:
        torch.manual_seed(0)
        model = build_model(lattice, "ordered_bonds", {"cutoff": cutoff}, hidden, "silu", "float32", mu_input=True)
        model.mu_mean, model.mu_std, model.density_mean = -4.1, 0.57, 0.985
        part.neighbors = lattice.neighbor_table(model.neighbor_offsets)
        draws = torch.Generator().manual_seed(0)

        def step(images):
            model.zero_grad(set_to_none=True)
            _batch_loss(model, part, [0], 1, 0.1, 1.0, 1.0, 1.0, images).backward()

        times = interleaved_medians({"average": lambda: step(None), "sample": lambda: step(draws),
                                     "metrics": lambda: evaluate(model, [part], "train", 1)},
                                    repeats=args.repeats)
        row = {"cutoff": cutoff, "hidden": hidden, "features": model.descriptor.num_features,
               "images": model.images, "step_average_s": times["average"], "step_sample_s": times["sample"],
               "metrics_per_frame_s": times["metrics"], "ratio_average_over_sample": times["average"] / times["sample"]}
        rows.append(row)
        print(f"cutoff {cutoff:g}, {'-'.join(map(str, hidden))}: step {times['average'] * 1e3:.1f} ms averaged, "
              f"{times['sample'] * 1e3:.1f} ms sampled ({row['ratio_average_over_sample']:.2f}x); "
              f"metrics of one frame {times['metrics'] * 1e3:.1f} ms")
    write_json("training_step", {"size": args.size, "sites": n, "threads": args.threads, "repeats": args.repeats,
                                 "dtype": "float32", "mu_input": True, "rows": rows})


if __name__ == "__main__":
    main()
