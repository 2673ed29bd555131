"""Train a Behler-Parrinello force field from one or more datasets.

    spinforce train CONFIG.toml [--resume] [--overwrite] [--no-progress]
    torchrun --nproc_per_node=P -m spinforce train CONFIG.toml    (P processes, one run)

The config (TOML) names the datasets, the descriptor, the network and the training schedule;
see docs/ml.md. The run directory gets log.csv, checkpoint.pt, model.pt (the best model),
metrics.json and plots/.
"""
from __future__ import annotations

import json

HELP = "train a force field from datasets (CONFIG.toml)"


def add_arguments(p) -> None:
    p.add_argument("config", help="training config (TOML); see docs/ml.md")
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in the output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from .training import train
    result = train(args.config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if result.rank == 0:  # one summary for a run on several processes
        print(json.dumps({"model": str(result.model_path), "best_epoch": result.best_epoch, **result.best}, indent=2))
    return 0
