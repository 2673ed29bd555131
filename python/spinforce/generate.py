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
import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import torch

HELP = "LLG runs with ED or KPM fields, saved as training snapshots (HDF5)"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Allowed keys per section with defaults (None: required). [method] also passes any further
# keys to the method's constructor (KPM accuracy settings).
SCHEMA = {
    "output": None,
    "lattice": {"kind": None, "shape": None},
    "model": {"t": 1.0, "J": None, "mu": None, "filling": None, "kT": 0.0, "t2": 0.0, "t3": 0.0},
    "method": {"name": "ed", "device": "cpu"},
    "dynamics": {"dt": None, "alpha": None, "kT": 0.0, "gamma": 1.0, "integrator": "sib", "steps": None,
                 "save_every": None, "initial": "random", "seed": 0},
    "samples": {"random": 0, "perturbed": 0, "perturbation": 0.2},
}
# Optional sections: several runs (one trajectory each) merged into the output, relabelled at a
# fixed chemical potential.
ENSEMBLE = {"seeds": None, "kT": None, "initial": None}
LABELS = {"mu": None, "mu_from_time": 0.0}
_OPTIONAL = {("model", "mu"), ("model", "filling")}
METHODS = ("ed", "kpm")
INITIAL_STATES = ("random", "ferromagnetic", "neel", "tetrahedral")
# Raising these extends an existing output rather than contradicting it (perturbed samples come
# last, so more of them append cleanly).
_EXTENSIBLE = {("dynamics", "steps"), ("samples", "perturbed"), ("output",)}


# --- configs ---------------------------------------------------------------------------------------
def examples() -> dict:
    """Example configs shipped with spinforce: name -> path."""
    folder = resources.files("spinforce") / "configs"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def example_path(name: str) -> Path:
    found = examples()
    if name not in found:
        raise ValueError(f"unknown example {name!r}; shipped examples: {', '.join(sorted(found))}")
    return found[name]


def _parse_override(text: str):
    if "=" not in text:
        raise ValueError(f"--set needs SECTION.KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word such as sib or random
    return key.strip().split("."), parsed


def read_config(path, overrides=()) -> dict:
    """Read a TOML config and apply ``SECTION.KEY=VALUE`` overrides (not yet checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    apply_overrides(cfg, overrides)
    return cfg


def apply_overrides(cfg: dict, overrides=()) -> None:
    """Set ``SECTION.KEY=VALUE`` overrides in a config dict, in place."""
    for text in overrides:
        keys, value = _parse_override(text)
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value


def load_config(path, overrides=()) -> dict:
    """Read a TOML config, apply ``SECTION.KEY=VALUE`` overrides, fill defaults and check it."""
    return check_config(read_config(path, overrides), base=Path(path).parent)


def check_config(cfg: dict, base: Path | None = None) -> dict:
    """Validate a config dict against SCHEMA; returns a completed copy (ValueError on problems)."""
    cfg = copy.deepcopy(cfg)
    for section in cfg:
        if section not in SCHEMA and section not in ("ensemble", "labels"):
            raise ValueError(f"unknown config section or key {section!r}; allowed: {', '.join(SCHEMA)}, "
                             "ensemble, labels")
    _check_ensemble(cfg)
    if not isinstance(cfg.get("output"), str) or not cfg["output"]:
        raise ValueError("output must be given: the path of the HDF5 file to write")
    for section, keys in SCHEMA.items():
        if keys is None:
            continue
        given = cfg.setdefault(section, {})
        if not isinstance(given, dict):
            raise ValueError(f"[{section}] must be a table")
        if section != "method":
            for k in given:
                if k not in keys:
                    raise ValueError(f"unknown key {k!r} in [{section}]; allowed: {', '.join(keys)}")
        for k, default in keys.items():
            if k not in given:
                if default is None and (section, k) not in _OPTIONAL:
                    raise ValueError(f"[{section}] needs {k!r}")
                if default is not None:
                    given[k] = default
    m, d, s = cfg["method"], cfg["dynamics"], cfg["samples"]
    if m["name"] not in METHODS:
        raise ValueError(f"method.name must be one of {METHODS}, got {m['name']!r}")
    if m["name"] == "ed" and set(m) - {"name", "device"}:
        raise ValueError(f"method 'ed' takes no settings besides device, got {sorted(set(m) - {'name', 'device'})}")
    if (cfg["model"].get("mu") is None) == (cfg["model"].get("filling") is None):
        raise ValueError("[model] needs exactly one of mu (fixed chemical potential) and filling")
    for k in ("steps", "save_every", "seed"):
        if not isinstance(d[k], int) or isinstance(d[k], bool) or d[k] < (1 if k == "save_every" else 0):
            raise ValueError(f"dynamics.{k} must be an integer >= {1 if k == 'save_every' else 0}, got {d[k]!r}")
    if d["steps"] % d["save_every"]:
        raise ValueError(f"dynamics.steps ({d['steps']}) must be a multiple of dynamics.save_every ({d['save_every']})")
    for k in ("random", "perturbed"):
        if not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] < 0:
            raise ValueError(f"samples.{k} must be an integer >= 0, got {s[k]!r}")
    if not (isinstance(s["perturbation"], (int, float)) and s["perturbation"] > 0):
        raise ValueError(f"samples.perturbation must be > 0, got {s['perturbation']!r}")
    init = d["initial"]
    if init not in INITIAL_STATES:
        p = Path(init) if base is None or Path(init).is_absolute() else Path(base) / init
        if p.suffix != ".npy":
            raise ValueError(f"dynamics.initial must be one of {INITIAL_STATES} or a .npy file of spins, got {init!r}")
        d["initial"] = str(p.resolve())
    return cfg


def _check_ensemble(cfg: dict) -> None:
    """Check and complete the optional [ensemble] and [labels] sections, in place."""
    for name, keys in (("ensemble", ENSEMBLE), ("labels", LABELS)):
        if name not in cfg:
            continue
        given = cfg[name]
        if not isinstance(given, dict):
            raise ValueError(f"[{name}] must be a table")
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in [{name}]; allowed: {', '.join(keys)}")
        cfg[name] = {**keys, **given}
    for key in ENSEMBLE:
        value = cfg.get("ensemble", {}).get(key)
        if value is not None and (not isinstance(value, list) or not value):
            raise ValueError(f"ensemble.{key} must be a non-empty list (or left out: the [dynamics] value), got {value!r}")
    for seed in (cfg.get("ensemble", {}).get("seeds") or []):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"ensemble.seeds must be integers >= 0, got {seed!r}")
    for kT in (cfg.get("ensemble", {}).get("kT") or []):
        if isinstance(kT, bool) or not isinstance(kT, (int, float)) or kT < 0:
            raise ValueError(f"ensemble.kT must be numbers >= 0 (spin temperatures), got {kT!r}")
    for init in (cfg.get("ensemble", {}).get("initial") or []):
        if init not in INITIAL_STATES:
            raise ValueError(f"ensemble.initial entries must be among {INITIAL_STATES}, got {init!r}")
    if "labels" in cfg:
        mu = cfg["labels"]["mu"]
        if mu != "auto" and (isinstance(mu, bool) or not isinstance(mu, (int, float))):
            raise ValueError(f"labels.mu must be a number or \"auto\" (found for the model's filling), got {mu!r}")
        if mu == "auto" and cfg.get("model", {}).get("filling") is None:
            raise ValueError("labels.mu = \"auto\" needs model.filling: the filling the fixed mu must give")


def _stored_label_mu(path: Path):
    import h5py
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs.get("method_settings", "{}")).get("mu")


def ensemble_runs(cfg: dict) -> list[dict]:
    """The run configs of an [ensemble]: every combination of seeds, spin temperatures and
    initial states, each writing OUTPUT_STEM.runs/runK.h5."""
    e = cfg.get("ensemble", {})
    d = cfg["dynamics"]
    out = Path(cfg["output"])
    folder = out.with_name(out.stem + ".runs")
    runs = []
    for init in e.get("initial") or [d["initial"]]:
        for kT in e.get("kT") or [d["kT"]]:
            for seed in e.get("seeds") or [d["seed"]]:
                run = copy.deepcopy({k: v for k, v in cfg.items() if k not in ("ensemble", "labels")})
                run["dynamics"].update(initial=init, kT=kT, seed=seed)
                run["output"] = str(folder / f"run{len(runs)}.h5")
                runs.append(run)
    return runs


def generate_ensemble(cfg: dict, *, output=None, overwrite: bool = False, resume: bool = True,
                      progress: bool = True) -> dict:
    """Run every member of a checked config's [ensemble] (or the single run), then merge their
    frames into the output with one trajectory id per run (independent samples keep ids of
    their own), relabelled at the fixed mu of [labels] when given. Resumable at every run and
    every merged frame; see docs/dynamics.md."""
    import spinforce
    from tqdm.auto import tqdm

    from .data import DatasetWriter, read_dataset
    from .electrons import model_at_mu, mu_for_filling

    cfg = copy.deepcopy(cfg)
    if output is not None:
        cfg["output"] = str(output)
    path = Path(cfg["output"])
    runs = ensemble_runs(cfg)
    if path.exists() and not overwrite and not resume:
        raise FileExistsError(f"{path} exists; use --overwrite to replace it or drop --no-resume to continue it")
    for k, run in enumerate(runs):
        generate(run, overwrite=overwrite, resume=resume, progress=progress)
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
            raise ValueError(f"{path} was written with a different config; use --overwrite to replace it "
                             "or another output path")
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
        return {"path": str(path), "frames": writer.num_frames, "runs": len(runs), "resumed_from": done,
                "mu": label_settings.get("mu"), "fixed_mu": fixed.to_dict() if fixed is not None else None}


# --- building the run ------------------------------------------------------------------------------
def build_provider(cfg: dict):
    """(lattice, model, provider, method_settings) for a checked config."""
    import spinforce
    lattice = spinforce.Lattice(cfg["lattice"]["kind"], cfg["lattice"]["shape"])
    model = spinforce.SDModel(lattice, **cfg["model"])
    settings = {k: v for k, v in cfg["method"].items() if k not in ("name", "device")}
    if cfg["method"]["name"] == "ed":
        return lattice, model, spinforce.ExactDiagonalization(model), settings
    KPM = getattr(spinforce, "KPM", None)
    if KPM is None:
        raise ValueError("method 'kpm' needs spinforce.KPM, which this installation of spinforce does not provide")
    return lattice, model, KPM(model, **settings), settings


def initial_spins(cfg: dict, lattice) -> np.ndarray:
    init, seed = cfg["dynamics"]["initial"], cfg["dynamics"]["seed"]
    if init == "random":
        return lattice.random_spins(seed)
    if init in ("ferromagnetic", "neel", "tetrahedral"):
        return getattr(lattice, init)()
    spins = np.load(init)
    if spins.shape != (lattice.num_sites, 3):
        raise ValueError(f"dynamics.initial {init} holds shape {spins.shape}, the lattice needs ({lattice.num_sites}, 3)")
    return spins


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


def _comparable(cfg: dict) -> str:
    c = copy.deepcopy(cfg)
    for path in _EXTENSIBLE:
        node = c
        for k in path[:-1]:
            node = node.get(k, {})
        node.pop(path[-1], None)
    return json.dumps(c, sort_keys=True)


# --- the run -----------------------------------------------------------------------------------------
def generate(cfg: dict, *, output=None, overwrite: bool = False, resume: bool = True,
             progress: bool = True) -> dict:
    """Run a checked config; returns a summary dict. See the module docstring."""
    import spinforce
    from .data import DatasetWriter
    from tqdm.auto import tqdm

    cfg = copy.deepcopy(cfg)
    if output is not None:
        cfg["output"] = str(output)
    path = Path(cfg["output"])
    device = torch.device(cfg["method"]["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("method.device is 'cuda' but no CUDA device is available")
    lattice, model, provider, settings = build_provider(cfg)
    d = cfg["dynamics"]
    llg = spinforce.LLG(provider, dt=d["dt"], alpha=d["alpha"], kT=d["kT"], gamma=d["gamma"],
                        integrator=d["integrator"], seed=d["seed"])
    if path.exists() and not overwrite and not resume:
        raise FileExistsError(f"{path} exists; use --overwrite to replace it or drop --no-resume to continue it")
    provenance = {"config": cfg, "command": "spinforce generate", "torch": torch.__version__}
    writer = DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                           method=cfg["method"]["name"], model=model.parameters(), method_settings=settings,
                           seed=d["seed"], provenance=provenance, overwrite=overwrite, resume=resume)
    with writer:
        stored = writer.provenance.get("config")
        if stored is not None and _comparable(stored) != _comparable(cfg):
            raise ValueError(f"{path} was written with a different config; use --overwrite to replace it "
                             "or another output path")
        steps = writer.steps
        n_traj_done = int(np.sum(steps >= 0))
        n_traj = d["steps"] // d["save_every"] + 1
        n_samples_done = int(np.sum(steps < 0))
        if n_samples_done and n_traj_done < n_traj:
            raise ValueError(f"{path} already holds independent samples after a trajectory of {n_traj_done} frames; "
                             f"it cannot be extended to {n_traj} frames")
        resumed_from = writer.num_frames

        def to_device(spins):
            return torch.as_tensor(np.asarray(spins, dtype=np.float64)).to(device)

        def append(spins, result, step):
            writer.append(spins, result.fields.detach().cpu().numpy(), result.energy,
                          time=step * d["dt"] if step >= 0 else float("nan"), step=step)

        if n_traj_done == 0:
            spins0 = initial_spins(cfg, lattice)
            append(spins0, provider.compute(to_device(spins0)), 0)
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
        return {"path": str(path), "frames": writer.num_frames, "resumed_from": resumed_from,
                "trajectory_frames": n_traj, "samples": n_samples}


# --- command line ------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("config", nargs="?", help="TOML config file")
    p.add_argument("--example", metavar="NAME", help="use a config shipped with spinforce (see --list-examples)")
    p.add_argument("--list-examples", action="store_true", help="list the shipped example configs and exit")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set dynamics.steps=200 (repeatable)")
    p.add_argument("--output", "-o", help="output file (overrides the config's output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.list_examples:
        for name, path in sorted(examples().items()):
            first = path.read_text().splitlines()[0].lstrip("# ")
            print(f"{name:28s} {first}")
        return 0
    if (args.config is None) == (args.example is None):
        raise ValueError("give exactly one of a CONFIG file and --example NAME")
    source = example_path(args.example) if args.example else Path(args.config)
    cfg = load_config(source, args.overrides)
    run_one = generate if "ensemble" not in cfg and "labels" not in cfg else generate_ensemble
    summary = run_one(cfg, output=args.output, overwrite=args.overwrite, resume=not args.no_resume,
                      progress=not args.no_progress)
    note = f" (resumed from frame {summary['resumed_from']})" if summary["resumed_from"] else ""
    print(f"{summary['path']}: {summary['frames']} frames{note}")
    if summary.get("mu") is not None:
        print(f"labelled at fixed mu = {summary['mu']:.6g}")
    return 0
