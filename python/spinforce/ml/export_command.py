"""Export a trained model, or a committee of models, as TorchScript for the C++ field provider.

    spinforce export MODEL --torchscript OUT [--overwrite]
    spinforce export MODEL MODEL ... --torchscript OUT [--uncertainty-threshold X]
    spinforce export COMMITTEE_DIR --torchscript OUT [--uncertainty-threshold X]

OUT holds forward(spins (N,3), neighbors (N,m)) -> (energy, fields) for any N on the lattice
kind of the model, with neighbors = lattice.neighbor_table(module.neighbor_offsets). Run it with
spinforce.MLForceField(OUT, lattice). Several model files, or a directory of committee members
(written by spinforce.ml.committee.train_committee), make one committee file: its fields are
the members' mean and FieldResult.uncertainty holds the spread of their torques per site;
`spinforce simulate` warns once when that passes the threshold X stored in the file.
"""
from __future__ import annotations

from pathlib import Path

HELP = "export a trained model (or a committee of models) as TorchScript for spinforce.MLForceField"


def add_arguments(p) -> None:
    p.add_argument("model", nargs="+",
                   help="model file written by `spinforce train` (RUN_DIR/model.pt); several model files or a "
                        "committee directory (member*/model.pt) export a committee")
    p.add_argument("--torchscript", required=True, metavar="OUT", help="TorchScript file to write")
    p.add_argument("--uncertainty-threshold", type=float, default=None, metavar="X",
                   help="committee only: per-site torque uncertainty above which simulations warn")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    from .committee import committee_member_paths, export_committee
    from .model import export_torchscript, load_model
    paths = committee_member_paths(args.model)
    if len(paths) == 1 and not Path(args.model[0]).is_dir():
        if args.uncertainty_threshold is not None:
            raise ValueError("--uncertainty-threshold needs a committee (several models or a committee directory)")
        model = load_model(paths[0])
        out = export_torchscript(model, args.torchscript, overwrite=args.overwrite)
        print(f"wrote {out}: TorchScript force field for the {model.lattice_kind} lattice")
        return 0
    out = export_committee(paths, args.torchscript, uncertainty_threshold=args.uncertainty_threshold,
                           overwrite=args.overwrite)
    print(f"wrote {out}: TorchScript committee of {len(paths)} force fields")
    return 0
