"""Generate training snapshots: LLG dynamics driven by exact electron fields (ED or KPM).

    spinforce generate CONFIG.toml [--set dynamics.steps=200 ...] [--output PATH]
    spinforce generate --example ed_quench_square      (a config shipped with spinforce)
    spinforce generate --list-examples

The run starts from `dynamics.initial` (a quench when that is random spins), integrates
`dynamics.steps` LLG steps at spin temperature `dynamics.kT`, and saves spins, fields, energy
and time every `dynamics.save_every` steps (step 0 included); optional independent random or
perturbed configurations follow the trajectory in the same file. The HDF5 schema is that of
spinforce.data (read it with spinforce.data.read_dataset); the run config is stored in the
file's provenance. Running the same command on an existing, unfinished output resumes it from
its last frame, bit-identically; a finished one is left alone. An output written with a
different config is never replaced unless --overwrite is given. docs/dynamics.md has the
config schema.
"""
from __future__ import annotations

import copy
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .config import (OMIT, Key, check_sections, check_table, integer, list_of, multiple_of, number, number_or,
                     one_of, shipped_config_lines, shipped_configs, string)
from .outputs import prepare_outputs, with_partial
from .run_setup import (DYNAMICS, ELECTRON_METHODS, INITIAL_STATES, LATTICE, SD_MODEL, add_set_argument,
                        build_provider, check_initial, check_method, check_sd_model, config_source, initial_spins,
                        read_config)

HELP = "LLG runs with ED or KPM fields, saved as training snapshots (HDF5)"

# The config schema of the sections of its own (config.py); the shared ones are in run_setup.py.
SAMPLES = {"random": Key(integer(0), 0), "perturbed": Key(integer(0), 0),
           "perturbation": Key(number(0, lo_open=True), 0.2)}
# Optional sections: several runs (one trajectory each) merged into the output, relabelled at a
# fixed chemical potential. Absent [ensemble] keys take the value of [dynamics].
ENSEMBLE = {"seeds": Key(list_of(integer(0, 2**63 - 1), "noise seeds (integers >= 0)"), OMIT),
            "kT": Key(list_of(number(0), "spin temperatures (numbers >= 0)"), OMIT),
            "initial": Key(list_of(one_of(*INITIAL_STATES), "initial states"), OMIT)}
LABELS = {"mu": Key(number_or("auto")), "mu_from_time": Key(number(0), 0.0)}
SECTIONS = ("output", "lattice", "model", "method", "dynamics", "samples", "ensemble", "labels")
# Raising these extends an existing output rather than contradicting it (perturbed samples come
# last, so more of them append cleanly).
_EXTENSIBLE = {("dynamics", "steps"), ("samples", "perturbed"), ("output",)}


# --- configs ---------------------------------------------------------------------------------------
def examples() -> dict:
    """Example configs shipped with spinforce: name -> path."""
    return shipped_configs("configs")


def example_path(name: str) -> Path:
    return config_source(None, name, examples())


def load_config(path, overrides=()) -> dict:
    """Read a TOML config, apply ``SECTION.KEY=VALUE`` overrides, fill defaults and check it."""
    return check_config(read_config(path, overrides), base=Path(path).parent)


def check_config(cfg: dict, base: Path | None = None) -> dict:
    """Validate a config dict against the schema; returns a completed copy (ValueError on problems)."""
    check_sections("the config", cfg, SECTIONS)
    if "output" not in cfg:
        raise ValueError("output must be given: the path of the HDF5 file to write")
    out = {"output": string("the path of the HDF5 file to write")(cfg["output"], "output"),
           "lattice": check_table("lattice", cfg.get("lattice", {}), LATTICE),
           "model": check_table("model", cfg.get("model", {}), SD_MODEL),
           "method": check_method(cfg, ELECTRON_METHODS),
           "dynamics": check_table("dynamics", cfg.get("dynamics", {}), DYNAMICS),
           "samples": check_table("samples", cfg.get("samples", {}), SAMPLES)}
    check_sd_model(out["model"])
    d = out["dynamics"]
    multiple_of(d, "steps", "save_every", "dynamics")
    d["initial"] = check_initial(d["initial"], base)
    for name, keys in (("ensemble", ENSEMBLE), ("labels", LABELS)):
        if name in cfg:
            out[name] = check_table(name, cfg[name], keys)
    if out.get("labels", {}).get("mu") == "auto" and "filling" not in out["model"]:
        raise ValueError('labels.mu = "auto" needs model.filling: the filling the fixed mu must give')
    return out


def _stored_label_mu(path: Path):
    from .data import open_h5
    with open_h5(path) as f:
        return json.loads(f.attrs.get("method_settings", "{}")).get("mu")


def ensemble_runs(cfg: dict) -> list[dict]:
    """The run configs of an [ensemble]: every combination of seeds, spin temperatures and
    initial states, each writing OUTPUT_STEM.runs/runK.h5."""
    e = cfg.get("ensemble", {})
    d = cfg["dynamics"]
    folder = _runs_folder(cfg["output"])
    runs = []
    for init in e.get("initial") or [d["initial"]]:
        for kT in e.get("kT") or [d["kT"]]:
            for seed in e.get("seeds") or [d["seed"]]:
                run = copy.deepcopy({k: v for k, v in cfg.items() if k not in ("ensemble", "labels")})
                run["dynamics"].update(initial=init, kT=kT, seed=seed)
                run["output"] = str(folder / f"run{len(runs)}.h5")
                runs.append(run)
    return runs


def _runs_folder(output) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".runs")


def generate_ensemble(cfg: dict, *, output=None, overwrite: bool = False, resume: bool = True,
                      progress: bool = True, cores: int = 1) -> dict:
    """Run every member of a checked config's [ensemble] (or the single run), then merge their
    frames into the output with one trajectory id per run (independent samples keep ids of
    their own), relabelled at the fixed mu of [labels] when given. Resumable at every run and
    every merged frame; see docs/dynamics.md. On the CPU the runs go side by side to `cores`
    worker processes (0: torch's number of threads; spinforce.runtime.run_independent)."""
    from tqdm.auto import tqdm

    from .data import DatasetWriter, dict_differences, read_dataset, replaceable_output
    from .electrons import mu_for_filling
    from .runtime import run_independent

    cfg = copy.deepcopy(cfg)
    if output is not None:
        cfg["output"] = str(output)
    path = Path(cfg["output"])
    runs = ensemble_runs(cfg)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a folder; give the path of an HDF5 file")
    if path.exists() and not overwrite and not resume:
        raise FileExistsError(f"{path} exists; use --overwrite to replace it or drop --no-resume to continue it")
    # every run's model, method and start are checked before an existing output is touched
    for run in runs:
        initial_spins(run, build_provider(run)[0])
    prepare_outputs(path.parent, output_patterns(path, ensemble=True), command="spinforce generate",
                    overwrite=overwrite, keep=resume, exclusive=False,
                    owned=functools.partial(replaceable_output, datasets=(path.name,)))
    run_independent(functools.partial(generate, overwrite=overwrite, resume=resume, progress=progress), runs,
                    cores=cores, devices=[cfg["method"]["device"]], progress=progress, desc="ensemble runs")
    datasets = [read_dataset(r["output"]) for r in runs]
    lattice, model, _, settings = build_provider(cfg)
    labels = cfg.get("labels")
    fixed = None
    if labels is not None:
        mu = labels["mu"]
        stored = _stored_label_mu(path) if path.exists() and not overwrite else None
        if mu == "auto" and stored is not None:
            mu = stored  # a resumed merge keeps the mu its frames were labelled with
        elif mu == "auto":
            late = np.concatenate([ds.spins[(ds.step >= 0) & (ds.time >= labels["mu_from_time"])] for ds in datasets])
            if len(late) == 0:
                raise ValueError(f"no trajectory frame has time >= labels.mu_from_time = {labels['mu_from_time']}")
            fixed = mu_for_filling(model, late, progress=progress)
            mu = fixed.mu
        label_cfg = copy.deepcopy(cfg)
        label_cfg["model"].update(mu=float(mu), filling=None)
        _, label_model, label_provider, _ = build_provider(label_cfg)
        label_settings = {**settings, "labels": "fixed mu", "mu": float(mu),
                          "mu_from_time": labels["mu_from_time"] if labels["mu"] == "auto" else None}
    else:
        label_model, label_provider, label_settings = model, None, settings
    provenance = {"config": cfg, "command": "spinforce generate", "torch": torch.__version__,
                  "runs": [r["output"] for r in runs], "fixed_mu": fixed.to_dict() if fixed is not None else None}
    total = sum(ds.num_frames for ds in datasets)
    device = torch.device(cfg["method"]["device"])
    with DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method=cfg["method"]["name"], model=label_model.parameters(), method_settings=label_settings,
                       seed=cfg["dynamics"]["seed"], provenance=provenance, overwrite=overwrite,
                       resume=resume) as writer:
        stored = writer.provenance.get("config")
        if stored is not None and _comparable(stored) != _comparable(cfg):
            raise ValueError(f"{path} was written with a different config "
                             f"({'; '.join(dict_differences(_comparable(stored), _comparable(cfg)))}); "
                             "use --overwrite to replace it or another output path")
        done = writer.num_frames
        bar = tqdm(total=total, initial=done, unit="frame", desc=f"merge {path.name}", dynamic_ncols=True,
                   disable=not progress or done >= total)
        k, offset = 0, 0
        for ds in datasets:
            for j in range(ds.num_frames):
                if k >= done:
                    spins = ds.spins[j]
                    if label_provider is None:
                        fields, energy = ds.fields[j], ds.energy[j]
                    else:
                        r = label_provider.compute(torch.as_tensor(spins).to(device))
                        fields, energy = r.fields.detach().cpu().numpy(), r.energy
                    writer.append(spins, fields, energy, time=ds.time[j], step=int(ds.step[j]),
                                  trajectory=offset + int(ds.trajectory[j]))
                    bar.update(1)
                k += 1
            offset += int(ds.trajectory.max()) + 1
        bar.close()
        return {"path": str(path), "frames": writer.num_frames, "runs": len(runs), "frames_before": done,
                "mu": label_settings.get("mu"), "fixed_mu": fixed.to_dict() if fixed is not None else None}


# --- building the run ------------------------------------------------------------------------------
def independent_sample(cfg: dict, index: int, lattice, trajectory_spins) -> np.ndarray:
    """Sample `index` after the trajectory: random spins, then perturbed trajectory frames.

    Each sample has its own random stream keyed by (seed, index), so a resumed run draws the
    same samples. `trajectory_spins(j)` returns trajectory frame j.
    """
    s = cfg["samples"]
    rng = np.random.default_rng([cfg["dynamics"]["seed"], 0x5A4D, index])
    if index < s["random"]:
        spins = rng.normal(size=(lattice.num_sites, 3))
    else:
        n_traj = cfg["dynamics"]["steps"] // cfg["dynamics"]["save_every"] + 1
        spins = trajectory_spins(int(rng.integers(n_traj))) + s["perturbation"] * rng.normal(size=(lattice.num_sites, 3))
    return spins / np.linalg.norm(spins, axis=1, keepdims=True)


def _comparable(cfg: dict) -> dict:
    c = copy.deepcopy(cfg)
    for path in _EXTENSIBLE:
        node = c
        for k in path[:-1]:
            node = node.get(k, {})
        node.pop(path[-1], None)
    return json.loads(json.dumps(c, sort_keys=True))


def output_patterns(path, ensemble: bool = False) -> tuple:
    """The files `generate` writes for the output `path`, relative to its folder (outputs.py);
    with an [ensemble] (or [labels]) also the runs merged into it."""
    name, runs = Path(path).name, _runs_folder(path).name
    return with_partial(name, *([f"{runs}/run*.h5"] if ensemble else []))


# --- the run -----------------------------------------------------------------------------------------
def generate(cfg: dict, *, output=None, overwrite: bool = False, resume: bool = True,
             progress: bool = True) -> dict:
    """Run a checked config; returns a summary dict. See the module docstring.

    Everything the config names is built and checked, and the first frame computed, before an
    existing output is touched: a failing run leaves the file as it was.
    """
    import spinforce
    from .data import DatasetWriter, check_replaceable, dict_differences
    from tqdm.auto import tqdm

    cfg = copy.deepcopy(cfg)
    if output is not None:
        cfg["output"] = str(output)
    path = Path(cfg["output"])
    if overwrite and resume and path.exists():
        resume = False  # --overwrite wins over the default of continuing
    device = torch.device(cfg["method"]["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("method.device is 'cuda' but no CUDA device is available")
    lattice, model, provider, settings = build_provider(cfg)
    d = cfg["dynamics"]
    llg = spinforce.LLG(provider, dt=d["dt"], alpha=d["alpha"], kT=d["kT"], gamma=d["gamma"],
                        integrator=d["integrator"], seed=d["seed"])
    spins0 = initial_spins(cfg, lattice)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a folder; give the path of an HDF5 file")
    if path.exists() and not overwrite and not resume:
        raise FileExistsError(f"{path} exists; use --overwrite to replace it or drop --no-resume to continue it")
    if path.exists() and overwrite:
        check_replaceable(path)

    def to_device(spins):
        return torch.as_tensor(np.asarray(spins, dtype=np.float64)).to(device)

    # the first frame of a new file, computed before anything is written
    first = None if (path.exists() and not overwrite) else provider.compute(to_device(spins0))
    provenance = {"config": cfg, "command": "spinforce generate", "torch": torch.__version__}
    writer = DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                           method=cfg["method"]["name"], model=model.parameters(), method_settings=settings,
                           seed=d["seed"], provenance=provenance, overwrite=overwrite, resume=resume)
    with writer:
        stored = writer.provenance.get("config")
        if first is None and stored is not None and _comparable(stored) != _comparable(cfg):
            raise ValueError(f"{path} was written with a different config "
                             f"({'; '.join(dict_differences(_comparable(stored), _comparable(cfg)))}); "
                             "use --overwrite to replace it or another output path")
        steps = writer.steps
        n_traj_done = int(np.sum(steps >= 0))
        n_traj = d["steps"] // d["save_every"] + 1
        n_samples_done = int(np.sum(steps < 0))
        if n_samples_done and n_traj_done < n_traj:
            raise ValueError(f"{path} already holds independent samples after a trajectory of {n_traj_done} frames; "
                             f"it cannot be extended to {n_traj} frames")
        frames_before = writer.num_frames

        def append(spins, result, step):
            writer.append(spins, result.fields.detach().cpu().numpy(), result.energy,
                          time=step * d["dt"] if step >= 0 else float("nan"), step=step)

        if n_traj_done == 0:
            append(spins0, first if first is not None else provider.compute(to_device(spins0)), 0)
            n_traj_done = 1
        start = int(writer.frame(n_traj_done - 1)["step"])
        if start < d["steps"]:
            bar = tqdm(total=d["steps"], initial=start, unit="step", desc=f"LLG {path.name}", dynamic_ncols=True,
                       disable=not progress)
            try:
                llg.run(to_device(writer.frame(n_traj_done - 1)["spins"]), d["steps"] - start, every=d["save_every"],
                        writer=writer, start_step=start, progress=bar)
            except KeyboardInterrupt:
                bar.close()
                print(f"\n{path}: stopped after {writer.num_frames} frames; run the same command to resume",
                      file=sys.stderr)
                raise
            bar.close()
        n_samples = cfg["samples"]["random"] + cfg["samples"]["perturbed"]
        if n_samples_done < n_samples:
            for i in tqdm(range(n_samples_done, n_samples), total=n_samples, initial=n_samples_done, unit="sample",
                          desc=f"samples {path.name}", dynamic_ncols=True, disable=not progress):
                spins = independent_sample(cfg, i, lattice, lambda j: writer.frame(j)["spins"])
                append(spins, provider.compute(to_device(spins)), -1)
        return {"path": str(path), "frames": writer.num_frames, "frames_before": frames_before,
                "trajectory_frames": n_traj, "samples": n_samples}


# --- command line ------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("config", nargs="?", help="TOML config file")
    p.add_argument("--example", metavar="NAME", help="use a config shipped with spinforce (see --list-examples)")
    p.add_argument("--list-examples", action="store_true", help="list the shipped example configs and exit")
    add_set_argument(p, "dynamics.steps=200")
    p.add_argument("--output", "-o", help="output file (overrides the config's output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cores", type=int, default=None, metavar="N",
                   help="CPU cores to use (0: all of torch's threads); an [ensemble]'s runs go side by side, one "
                        "worker process per core (default: one after another on torch's threads)")


def run(args) -> int:
    if args.list_examples:
        print("\n".join(shipped_config_lines(examples(), width=28)))
        return 0
    source = config_source(args.config, args.example, examples())
    cfg = load_config(source, args.overrides)
    if args.cores is not None and args.cores < 0:
        raise ValueError(f"--cores must be >= 0 (0: all of torch's threads), got {args.cores}")
    options = {"output": args.output, "overwrite": args.overwrite, "resume": not args.no_resume,
               "progress": not args.no_progress}
    if "ensemble" in cfg or "labels" in cfg:
        summary = generate_ensemble(cfg, cores=1 if args.cores is None else args.cores, **options)
    else:
        if args.cores:
            torch.set_num_threads(args.cores)  # one run: its threads
        summary = generate(cfg, **options)
    before, frames = summary["frames_before"], summary["frames"]
    if before == frames:
        note = " (already complete: nothing to do)"
    elif before:
        note = f" ({frames - before} added to the {before} already there)"
    else:
        note = ""
    print(f"{summary['path']}: {frames} frames{note}")
    if summary.get("mu") is not None:
        print(f"labelled at fixed mu = {summary['mu']:.6g}")
    return 0
