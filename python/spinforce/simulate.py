"""Thermal-quench LLG runs from a TOML config: `spinforce simulate CONFIG.toml`.

A run integrates stochastic LLG with any field provider (a trained ML model, or the exact
Heisenberg / ED / KPM providers for small systems), writes frames every `every` steps to an
HDF5 run file (the spinforce dataset format, so `spinforce analyze` and training read it),
checkpoints the spins every `checkpoint_every` steps and resumes from the latest of checkpoint
and last frame. The thermal noise of step n depends only on (seed, n, site), so a resumed run
reproduces the uninterrupted one bit for bit. See docs/simulate.md for the config keys.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEFAULTS", "load_config", "build_lattice", "build_provider", "initial_spins", "simulate",
           "SimulationResult", "HELP", "add_arguments", "run"]

# Every accepted key with its default; None means required (or optional without default).
DEFAULTS = {
    "lattice": {"kind": None, "shape": None},
    "provider": {"kind": None},
    "llg": {"dt": None, "alpha": None, "kT": 0.0, "gamma": 1.0, "integrator": "sib", "seed": 0, "steps": None},
    "initial": {"state": "random", "seed": 0, "chirality": 1},
    "output": {"path": None, "every": 10, "checkpoint_every": 0, "ovf": False, "device": "cpu"},
}
PROVIDER_KEYS = {
    "heisenberg": {"J1": None, "J2": 0.0, "field": [0.0, 0.0, 0.0], "anisotropy": 0.0, "axis": [0.0, 0.0, 1.0]},
    "ed": {"t": 1.0, "J": None, "mu": None, "filling": None, "kT": 0.0, "t2": 0.0, "t3": 0.0},
    "kpm": {"t": 1.0, "J": None, "mu": None, "filling": None, "kT": 0.0, "t2": 0.0, "t3": 0.0,
            "moments": None, "probing_distance": None},
    "ml": {"path": None},
}
INITIAL_STATES = ("random", "ferromagnetic", "neel", "tetrahedral")
CHECKPOINT_FORMAT = "spinforce-checkpoint"


def _fill(section: str, given: dict, defaults: dict) -> dict:
    if not isinstance(given, dict):
        raise ValueError(f"[{section}] must be a table, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{section}]; allowed: {sorted(defaults)}")
    out = {**defaults, **given}
    missing = [k for k, v in out.items() if v is None and k not in ("mu", "filling", "moments", "probing_distance")]
    if missing:
        raise ValueError(f"[{section}] needs the key(s) {missing}")
    return out


def load_config(config, base_dir=None) -> dict:
    """A validated config dict with defaults filled in, from a TOML file path or a dict.

    Relative paths (output.path, provider.path) are resolved against the config file's folder
    (or base_dir).
    """
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from None
        base_dir = path.parent if base_dir is None else base_dir
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
    else:
        raise ValueError(f"config must be a TOML file path or a dict, got {type(config).__name__}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    cfg = {name: _fill(name, raw.get(name, {}), DEFAULTS[name]) for name in DEFAULTS if name != "provider"}
    prov = raw.get("provider", {})
    kind = prov.get("kind") if isinstance(prov, dict) else None
    if kind not in PROVIDER_KEYS:
        raise ValueError(f"provider.kind must be one of {sorted(PROVIDER_KEYS)}, got {kind!r}")
    cfg["provider"] = {"kind": kind, **_fill("provider", {k: v for k, v in prov.items() if k != "kind"},
                                             PROVIDER_KEYS[kind])}
    if kind in ("ed", "kpm") and (cfg["provider"]["mu"] is None) == (cfg["provider"]["filling"] is None):
        raise ValueError("[provider] of an electron model needs exactly one of mu and filling")
    if kind == "kpm" and (cfg["provider"]["moments"] is None or cfg["provider"]["probing_distance"] is None):
        raise ValueError("[provider] kind 'kpm' needs moments and probing_distance")
    if kind == "ml":
        cfg["provider"]["path"] = str((base / cfg["provider"]["path"]).resolve())
    cfg["output"]["path"] = str((base / cfg["output"]["path"]).resolve())
    llg, out = cfg["llg"], cfg["output"]
    for name, value, lo in (("llg.steps", llg["steps"], 0), ("output.every", out["every"], 1),
                            ("output.checkpoint_every", out["checkpoint_every"], 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    if cfg["initial"]["state"] not in INITIAL_STATES:
        raise ValueError(f"initial.state must be one of {INITIAL_STATES}, got {cfg['initial']['state']!r}")
    return cfg


def build_lattice(cfg: dict):
    from .lattice import Lattice
    return Lattice(cfg["lattice"]["kind"], cfg["lattice"]["shape"])


def build_provider(cfg: dict, lattice):
    """The field provider described by cfg["provider"] on `lattice`."""
    import spinforce
    p = {k: v for k, v in cfg["provider"].items() if k != "kind"}
    kind = cfg["provider"]["kind"]
    if kind == "heisenberg":
        return spinforce.Heisenberg(lattice, **p)
    if kind == "ml":
        if not Path(p["path"]).exists():
            raise FileNotFoundError(f"ML model file {p['path']} (provider.path) does not exist")
        return spinforce.MLForceField(p["path"], lattice)
    settings = {k: p.pop(k) for k in ("moments", "probing_distance") if k in p}
    model = spinforce.SDModel(lattice, **p)
    if kind == "ed":
        return spinforce.ExactDiagonalization(model)
    return spinforce.KPM(model, **settings)


def initial_spins(cfg: dict, lattice) -> np.ndarray:
    init = cfg["initial"]
    if init["state"] == "random":
        return lattice.random_spins(init["seed"])
    if init["state"] == "ferromagnetic":
        return lattice.ferromagnetic()
    if init["state"] == "neel":
        return lattice.neel()
    return lattice.tetrahedral(init["chirality"])


@dataclass
class SimulationResult:
    path: str
    steps: int
    frames: int
    spins: np.ndarray
    wall_seconds: float
    spin_steps_per_second: float
    resumed_from: int


def _checkpoint_path(run_path: Path) -> Path:
    return run_path.with_name(run_path.stem + ".checkpoint.h5")


def _ovf_dir(run_path: Path) -> Path:
    return run_path.with_name(run_path.stem + "_ovf")


def _write_checkpoint(path: Path, spins: np.ndarray, step: int, fingerprint: str) -> None:
    tmp = path.with_suffix(".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.attrs["step"] = int(step)
        f.attrs["fingerprint"] = fingerprint
        f.create_dataset("spins", data=spins)
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint intact


def _read_checkpoint(path: Path, fingerprint: str):
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != CHECKPOINT_FORMAT or f.attrs.get("fingerprint") != fingerprint:
            raise ValueError(f"checkpoint {path} belongs to a different run; remove it or use --overwrite")
        return int(f.attrs["step"]), f["spins"][()]


def simulate(config, *, resume: bool = False, overwrite: bool = False, steps: int | None = None,
             progress: bool = True, base_dir=None) -> SimulationResult:
    """Run the quench described by `config` (TOML path or dict); see the module doc.

    steps overrides llg.steps (the total number of steps of the run, counted from step 0).
    An existing run file is continued with resume=True, replaced with overwrite=True, and
    otherwise left alone (FileExistsError).
    """
    import torch
    from tqdm.auto import tqdm

    from .data import DatasetWriter
    from .dynamics import LLG
    from .ovf import write_ovf

    cfg = load_config(config, base_dir)
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        cfg["llg"]["steps"] = steps
    if resume and overwrite:
        raise ValueError("give at most one of resume and overwrite")
    lattice = build_lattice(cfg)
    provider = build_provider(cfg, lattice)
    llg_cfg, out = cfg["llg"], cfg["output"]
    device = torch.device(out["device"])
    llg = LLG(provider, dt=llg_cfg["dt"], alpha=llg_cfg["alpha"], kT=llg_cfg["kT"], gamma=llg_cfg["gamma"],
              integrator=llg_cfg["integrator"], seed=llg_cfg["seed"])
    run_path = Path(out["path"])
    total = int(llg_cfg["steps"])
    n = lattice.num_sites
    # What must match for a file to be a continuation of this run (steps may grow).
    settings = {k: v for k, v in llg_cfg.items() if k != "steps"}
    settings.update(initial=cfg["initial"], every=out["every"])
    fingerprint = json.dumps({"provider": cfg["provider"], "llg": settings, "lattice": cfg["lattice"]},
                             sort_keys=True)
    ckpt_path = _checkpoint_path(run_path)
    if overwrite and ckpt_path.exists():
        ckpt_path.unlink()
    writer = DatasetWriter(run_path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=n,
                           method=cfg["provider"]["kind"], model=cfg["provider"], method_settings=settings,
                           seed=llg_cfg["seed"], provenance={"config": cfg, "command": "spinforce simulate"},
                           overwrite=overwrite, resume=resume)
    ovf_dir = _ovf_dir(run_path)

    def to_device(s):
        return torch.from_numpy(np.ascontiguousarray(s)).to(device)

    def export_ovf(step, s):
        if out["ovf"]:
            write_ovf(ovf_dir / f"frame_{step:09d}.ovf", np.asarray(s.cpu() if torch.is_tensor(s) else s), lattice,
                      title=f"spinforce step {step}", time=step * llg.dt, overwrite=True)

    with writer:
        if writer.num_frames == 0:  # a new run: the initial frame at t = 0
            start, spins = 0, initial_spins(cfg, lattice)
            res = provider.compute(to_device(spins))
            writer.append(spins, res.fields.cpu().numpy() if torch.is_tensor(res.fields) else res.fields,
                          res.energy, time=0.0, step=0)
            export_ovf(0, spins)
        else:
            last = writer.last_frame()
            start, spins = int(last["step"]), last["spins"]
            ckpt = _read_checkpoint(ckpt_path, fingerprint)
            if ckpt is not None and ckpt[0] > start:
                start, spins = ckpt
        if start > total:
            raise ValueError(f"{run_path} already holds steps up to {start}; llg.steps = {total} is smaller")
        state = to_device(spins)
        every, ckpt_every = out["every"], out["checkpoint_every"]
        bar = tqdm(total=total * n, initial=start * n, unit="spin-step", unit_scale=True, disable=not progress,
                   desc=f"LLG {cfg['provider']['kind']} N={n}", dynamic_ncols=True)
        chunk, step, began = 1, start, _time.perf_counter()
        try:
            while step < total:
                end = min(total, step + chunk)
                if ckpt_every:
                    end = min(end, (step // ckpt_every + 1) * ckpt_every)
                t0 = _time.perf_counter()
                state = llg.run(state, end - step, every=every, writer=writer, start_step=step,
                                callback=(lambda k, s, r: export_ovf(k, s)) if out["ovf"] else None)
                elapsed = _time.perf_counter() - t0
                bar.update((end - step) * n)
                bar.set_postfix(step=end, refresh=False)
                step = end
                if ckpt_every and step % ckpt_every == 0:
                    _write_checkpoint(ckpt_path, state.cpu().numpy(), step, fingerprint)
                # aim at about half a second per chunk: the bar moves, Python overhead stays small
                chunk = int(max(1, min(chunk * 4, chunk * 0.5 / max(elapsed, 1e-9))))
        finally:
            bar.close()
            if step > start:  # whatever happened, the spins reached so far can be resumed
                _write_checkpoint(ckpt_path, state.cpu().numpy(), step, fingerprint)
        wall = _time.perf_counter() - began
        frames = writer.num_frames
    return SimulationResult(path=str(run_path), steps=total, frames=frames, spins=state.cpu().numpy(),
                            wall_seconds=wall, resumed_from=start,
                            spin_steps_per_second=(total - start) * n / wall if wall > 0 and total > start else 0.0)


# --- command line -------------------------------------------------------------------------
HELP = "thermal-quench LLG run with any field provider (ML model, Heisenberg, ED, KPM) from a TOML config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="TOML config file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run file from its last checkpoint/frame")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run file")
    p.add_argument("--steps", type=int, default=None, help="total number of steps (overrides llg.steps)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    result = simulate(args.config, resume=args.resume, overwrite=args.overwrite, steps=args.steps,
                      progress=not args.quiet)
    print(f"{result.path}: {result.frames} frames, step {result.steps}; "
          f"{result.spin_steps_per_second:.4g} spin-steps/s over {result.wall_seconds:.1f} s")
    return 0
