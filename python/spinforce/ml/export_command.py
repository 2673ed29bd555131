"""Export a trained model as TorchScript for the C++ field provider.

    spinforce export MODEL --torchscript OUT [--overwrite]

OUT holds forward(spins (N,3), neighbors (N,m)) -> (energy, fields) for any N on the lattice
kind of the model, with neighbors = lattice.neighbor_table(module.neighbor_offsets). Run it with
spinforce.MLForceField(OUT, lattice).
"""
from __future__ import annotations

HELP = "export a trained model as TorchScript for spinforce.MLForceField"


def add_arguments(p) -> None:
    p.add_argument("model", help="model file written by `spinforce train` (RUN_DIR/model.pt)")
    p.add_argument("--torchscript", required=True, metavar="OUT", help="TorchScript file to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    from .model import export_torchscript, load_model
    model = load_model(args.model)
    out = export_torchscript(model, args.torchscript, overwrite=args.overwrite)
    print(f"wrote {out}: TorchScript force field for the {model.lattice_kind} lattice")
    return 0
