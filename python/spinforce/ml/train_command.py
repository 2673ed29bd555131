"""Train a Behler-Parrinello force field from one or more datasets.

    spinforce train CONFIG.toml [--resume] [--overwrite] [--no-progress]
    spinforce train CONFIG.toml --members K [--resume] [--overwrite]    (a committee of K)
    torchrun --nproc_per_node=P -m spinforce train CONFIG.toml    (P processes, one run)

The config (TOML) names the datasets, the descriptor, the network and the training schedule;
see docs/ml.md. The run directory gets log.csv, checkpoint.pt, model.pt (the best model),
metrics.json and plots/. With --members K the run directory holds a committee instead:
member{k}/ (k = 0..K-1) is a run of the config with training seed seed + k (initial weights,
validation split and data order follow it), trained side by side on training.threads cores,
and committee.json lists them; `spinforce export RUN_DIR --torchscript OUT` writes the committee
file (mean fields and a per-site uncertainty; spinforce.ml.committee).
"""
from __future__ import annotations

import json
import os

HELP = "train a force field from datasets (CONFIG.toml)"


def add_arguments(p) -> None:
    p.add_argument("config", help="training config (TOML); see docs/ml.md")
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in the output directory")
    p.add_argument("--members", type=int, default=None, metavar="K",
                   help="train a committee of K >= 2 models (training seeds seed .. seed + K - 1) into "
                        "RUN_DIR/member0 .. member{K-1}")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from .training import train
    if args.members is not None:
        return _committee(args)
    result = train(args.config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if result.rank == 0:  # one summary for a run on several processes
        print(json.dumps({"model": str(result.model_path), "best_epoch": result.best_epoch, **result.best}, indent=2))
    return 0


def _committee(args) -> int:
    from .committee import train_committee
    from .training import load_config
    if args.members < 2:
        raise ValueError(f"--members must be an integer >= 2 (the committee size), got {args.members}")
    out_dir = load_config(args.config)["output"]["dir"]
    paths = train_committee(args.config, out_dir, args.members, resume=args.resume, overwrite=args.overwrite,
                            progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary for a committee trained on several processes
        validation = [json.loads((p.parent / "metrics.json").read_text()).get("val", {}).get("torque_rmse") for p in paths]
        print(json.dumps({"committee": out_dir, "members": [str(p) for p in paths],
                          "val_torque_rmse": validation}, indent=2))
    return 0
