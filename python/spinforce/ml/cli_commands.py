"""`spinforce train` and `spinforce export`: argparse subcommands (add_arguments + run)."""
from __future__ import annotations

import argparse
import json

__all__ = ["COMMANDS"]


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training config (TOML); see docs/ml.md")
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in the output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _train_run(args) -> int:
    from .training import train
    result = train(args.config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    summary = {"model": str(result.model_path), "best_epoch": result.best_epoch, **result.best}
    print(json.dumps(summary, indent=2))
    return 0


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file written by `spinforce train` (RUN_DIR/model.pt)")
    p.add_argument("--torchscript", required=True, metavar="OUT", help="TorchScript file to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _export_run(args) -> int:
    from .model import export_torchscript, load_model
    model = load_model(args.model)
    out = export_torchscript(model, args.torchscript, overwrite=args.overwrite)
    print(f"wrote {out}: forward(spins (N,3), neighbors (N,m)) -> (energy, fields) for the "
          f"{model.lattice_kind} lattice, neighbors = lattice.neighbor_table(module.neighbor_offsets)")
    return 0


# name -> (help, add_arguments, run)
COMMANDS = {
    "train": ("train a force field from datasets (CONFIG.toml)", _train_arguments, _train_run),
    "export": ("export a trained model as TorchScript for the C++ provider", _export_arguments, _export_run),
}
