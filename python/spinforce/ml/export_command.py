"""Export a trained model, or a committee of models, for the C++ field provider.

    spinforce export MODEL --torchscript OUT [--overwrite]
    spinforce export MODEL --pt2 OUT.pt2 [--dtype float32] [--device cuda] [--overwrite]
    spinforce export MODEL MODEL ... --torchscript OUT [--uncertainty-threshold X]
    spinforce export COMMITTEE_DIR --pt2 OUT.pt2 [--uncertainty-threshold X]
    spinforce export EXPORTED.ts --pt2 OUT.pt2        (e.g. a committee shipped in spinforce/models)
    spinforce export MODEL --torchscript OUT --fixed-filling F   (a model with mu input, fixed N_e)
    spinforce export MODEL --torchscript OUT --mu MU             (a model with mu input, fixed mu)
    spinforce export EXPORTED.ts --torchscript OUT --mu MU       (an exported one, to another ensemble)

Two formats, both run by spinforce.MLForceField(OUT, lattice) (and `method.path` of
`spinforce simulate`):
- TorchScript: forward(spins (N,3), neighbors (N,m)) -> (energy, fields) for any N on the
  lattice kind of the model, with neighbors = lattice.neighbor_table(module.neighbor_offsets);
  runs in any dtype and on any device.
- .pt2 (torch.export + AOTInductor, spinforce.ml.pt2): forward and backward compiled into one
  library, no autograd at run time; fixed to one dtype, one device type and the CPU
  instruction set of the machine that compiled it. Compiling needs a C++ compiler and takes
  ~0.5-2 min.
Several model files, or a directory of committee members (written by
spinforce.ml.committee.train_committee), make one committee: its fields are the members' mean and
FieldResult.uncertainty holds the spread of their torques per site; `spinforce simulate` warns
once when that passes the threshold X stored in the file.
A model trained with the chemical potential as input (model.mu_input) is exported for one
ensemble: a fixed electron count N_e = F * 2N (--fixed-filling F; mu is solved for at every
evaluation: --sample-steps Newton steps on a sample of the sites, then --newton-steps on all) or a
fixed chemical potential (--mu MU). An exported file with mu input is exported again for another
ensemble in the same way (e.g. the shipped fixed-N committee at a fixed mu, or at another filling
inside its trained mu range); the solve's steps not given stay as in the file.
--point-group one runs each member on one point-group image of each site instead of their mean
(ordered bonds: 1/8 of the networks' work on the square lattice, 1/12 on the triangular; docs/ml.md,
"One point-group image per member").
"""
from __future__ import annotations

from pathlib import Path

from .model import DEFAULT_NEWTON_STEPS, DEFAULT_SAMPLE_STEPS, POINT_GROUP_MODES

HELP = "export a trained model (or a committee of models) as TorchScript or a compiled .pt2 package"


def add_arguments(p) -> None:
    p.add_argument("model", nargs="+",
                   help="model file written by `spinforce train` (RUN_DIR/model.pt); several model files or a "
                        "committee directory (member*/model.pt) export a committee; a TorchScript file from "
                        "`spinforce export` is exported again (e.g. --pt2, or with mu input --mu / --fixed-filling)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--torchscript", metavar="OUT", help="TorchScript file to write")
    out.add_argument("--pt2", metavar="OUT", help="AOTInductor package to write (a path ending in .pt2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="--pt2 only: the precision the package is compiled for (default: the model's)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="--pt2 only: the device type the package is compiled for (default: cpu)")
    p.add_argument("--uncertainty-threshold", type=float, default=None, metavar="X",
                   help="committee only: per-site torque uncertainty above which simulations warn")
    p.add_argument("--fixed-filling", type=float, default=None, metavar="F",
                   help="model with mu input: run at the fixed filling F = N_e / 2N in (0, 1), mu solved for "
                        "sum_i n_i(mu) = N_e at every evaluation")
    p.add_argument("--mu", type=float, default=None, metavar="MU",
                   help="model with mu input: run at this fixed chemical potential (inside the trained range)")
    p.add_argument("--newton-steps", type=int, default=None, metavar="K",
                   help=f"--fixed-filling: Newton steps of the solve for mu on all sites (default {DEFAULT_NEWTON_STEPS})")
    p.add_argument("--sample-steps", type=int, default=None, metavar="K",
                   help=f"--fixed-filling: Newton steps on a sample of the sites before them, a cheap start "
                        f"(default {DEFAULT_SAMPLE_STEPS}; 0: none)")
    p.add_argument("--point-group", choices=POINT_GROUP_MODES, default=None,
                   help="descriptor with point-group images: 'average' (as trained; exactly symmetric) or 'one' "
                        "(each member reads one image, member k image k: 1/|G| of the network's cost, for members "
                        "trained with training.point_group = 'sample'; docs/ml.md); default: as in the file, "
                        "else average")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    from .committee import committee_member_paths, load_committee, model_from_exported
    from .model import export_torchscript, load_model, point_group_mode, read_exported, set_ensemble, set_point_group
    if args.torchscript and (args.dtype is not None or args.device != "cpu"):
        raise ValueError("--dtype and --device choose what a --pt2 package is compiled for; a TorchScript file "
                         "runs in any dtype and on any device (MLForceField(..., dtype=, device=))")
    paths = committee_member_paths(args.model)
    exported = read_exported(paths[0]) if len(paths) == 1 else None
    solve = args.newton_steps is not None or args.sample_steps is not None
    ensemble = args.fixed_filling is not None or args.mu is not None or solve
    if exported is not None:  # e.g. a shipped committee, into another format
        if args.uncertainty_threshold is not None:
            raise ValueError("--uncertainty-threshold: an exported file keeps the threshold it was exported with")
        model = model_from_exported(exported, paths[0])
        what = f"committee of {model.committee_size} force fields" if hasattr(model, "committee_size") else "force field"
    elif len(paths) == 1 and not Path(args.model[0]).is_dir():
        if args.uncertainty_threshold is not None:
            raise ValueError("--uncertainty-threshold needs a committee (several models or a committee directory)")
        model, what = load_model(paths[0]), "force field"
    else:
        model = load_committee(paths, uncertainty_threshold=args.uncertainty_threshold)
        what = f"committee of {len(paths)} force fields"
    if exported is None or ensemble:
        # An exported file with mu input may move to another ensemble (e.g. a shipped fixed-N
        # committee at a fixed mu or another filling); what is not given stays as in the file.
        # (every model has the ensemble attributes: NaN filling and the default steps without mu input)
        kept = exported is not None
        filling = args.fixed_filling
        if kept and filling is None and args.mu is None and model.fixed_filling == model.fixed_filling:
            filling = model.fixed_filling
        if solve and filling is None:
            raise ValueError("--newton-steps / --sample-steps set the solve for mu at a fixed filling: give "
                             "--fixed-filling too")
        newton_steps = model.newton_steps if kept else DEFAULT_NEWTON_STEPS
        sample_steps = model.sample_steps if kept else DEFAULT_SAMPLE_STEPS
        set_ensemble(model, fixed_filling=filling, fixed_mu=args.mu,
                     newton_steps=newton_steps if args.newton_steps is None else args.newton_steps,
                     sample_steps=sample_steps if args.sample_steps is None else args.sample_steps)
    if args.point_group is not None:
        set_point_group(model, args.point_group)
    if getattr(model, "mu_input", False):
        what += (f" at fixed filling {model.fixed_filling:g}" if model.fixed_filling == model.fixed_filling
                 else f" at fixed mu {model.fixed_mu:g}")
    if point_group_mode(model) == "one":
        what += " (one point-group image per member)"
    if args.torchscript:
        out = export_torchscript(model, args.torchscript, overwrite=args.overwrite)
        print(f"wrote {out}: TorchScript {what} for the {model.lattice_kind} lattice")
        return 0
    from .pt2 import export_pt2
    print(f"compiling the {what} (AOTInductor, {args.device}); this takes a minute or two", flush=True)
    out = export_pt2(model, args.pt2, dtype=args.dtype, device=args.device, overwrite=args.overwrite)
    print(f"wrote {out}: compiled .pt2 {what} for the {model.lattice_kind} lattice")
    return 0
