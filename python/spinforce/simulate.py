"""Thermal-quench LLG runs from a TOML config: `spinforce simulate CONFIG.toml`.

A run integrates stochastic LLG with any field provider (a trained ML model, or the exact
Heisenberg / ED / KPM providers for small systems), writes frames to an
HDF5 run file every `save_every` steps (the spinforce dataset format, so `spinforce analyze` and training read it),
checkpoints the spins every `checkpoint_every` steps and resumes from the latest of checkpoint
and last frame. The thermal noise of step n depends only on (seed, n, site), so a resumed run
reproduces the uninterrupted one bit for bit. See docs/simulate.md for the config keys.
Under torchrun an ML or Heisenberg run is split into slabs, one per process (docs/distributed.md).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import time as _time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .config import Key, boolean, check_sections, check_table, integer, string
from .data import open_h5
from .run_setup import DYNAMICS as RUN_DYNAMICS, LATTICE, PROVIDERS, add_set_argument, apply_overrides, \
    check_initial, check_method, check_sd_model, initial_spins, read_config
from .run_setup import build_provider as build_run
from .outputs import atomic_write, with_partial
from .providers import UNCERTAINTY_SCALARS, uncertainty_scalars

__all__ = ["load_config", "build_provider", "simulate", "output_patterns",
           "SimulationResult", "HELP", "add_arguments", "run"]

# The config schema is that of a run (run_setup.py: lattice, model, method, dynamics, output), with
# every provider of the registry, and two more keys (ovf, dynamics.checkpoint_every).
DYNAMICS = {**RUN_DYNAMICS, "checkpoint_every": Key(RUN_DYNAMICS["steps"].check, 0)}
SECTIONS = ("output", "ovf", "lattice", "model", "method", "dynamics")
CHECKPOINT_FORMAT = "spinforce-checkpoint"


def load_config(config, overrides=(), base_dir=None) -> dict:
    """A checked config with defaults filled in, from a TOML file path or a dict.

    overrides: "SECTION.KEY=VALUE" strings as for `spinforce generate --set`. Relative paths
    (output, method.path, a .npy dynamics.initial) are resolved against the config file's
    folder (or base_dir).
    """
    if isinstance(config, (str, os.PathLike)):
        raw = read_config(config, overrides)
        base_dir = Path(config).parent if base_dir is None else base_dir
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
        apply_overrides(raw, overrides)
    else:
        raise ValueError(f"config must be a TOML file path or a dict, got {type(config).__name__}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    check_sections("the config", raw, SECTIONS)
    if "output" not in raw:
        raise ValueError("output must be given: the path of the HDF5 run file to write")
    method = check_method(raw)
    name = method["name"]
    if name == "ml":
        method["path"] = str((base / method["path"]).resolve())
    cfg = {"output": str((base / string("the path of the HDF5 run file")(raw["output"], "output")).resolve()),
           "ovf": boolean()(raw.get("ovf", False), "ovf"),
           "lattice": check_table("lattice", raw.get("lattice", {}), LATTICE),
           "method": method,
           "model": check_table("model", raw.get("model", {}), PROVIDERS[name].model),
           "dynamics": check_table("dynamics", raw.get("dynamics", {}), DYNAMICS)}
    if PROVIDERS[name].electrons:
        cfg["model"] = {"mu": None, "filling": None, **cfg["model"]}
        check_sd_model(cfg["model"])
    cfg["dynamics"]["initial"] = check_initial(cfg["dynamics"]["initial"], base)
    return cfg


def build_provider(cfg: dict, shape=None, device=None):
    """(lattice, provider) described by a checked config (run_setup.build_provider); shape and
    device, when given, replace lattice.shape and method.device (a slab's padded lattice, a
    rank's GPU)."""
    built = build_run(cfg, shape=shape, device=device)
    return built.lattice, built.provider


def split_provider(cfg: dict, ranks, device):
    """(slabs, slab provider, padded provider) of this rank for a run on several processes: the
    lattice cut into slabs (distributed.Slabs) with the halo the provider needs, the provider of
    the padded slab, and the halo provider the integrator runs (its fields are the slab's)."""
    from . import _core
    from .distributed import Slabs, reach
    name = cfg["method"]["name"]
    lattice = _lattice(cfg)
    if name == "heisenberg":  # a field sums the coupled neighbours
        m = cfg["model"]
        halo = max((reach(lattice.shell_offsets(k)) for k, J in ((1, m["J1"]), (2, m["J2"])) if J != 0), default=0)
        why = "the Heisenberg couplings reach"
    elif name == "ml":  # a field is a derivative of the site energies of its neighbours, each reading its own
        from .ml.model import read_exported
        from .ml.provider import exported_neighbor_offsets
        script = read_exported(cfg["method"]["path"])
        if script is not None and not math.isnan(getattr(script, "fixed_filling", math.nan)):
            raise ValueError(f"{cfg['method']['path']} runs at a fixed electron count: its chemical potential is one "
                             "number for the whole lattice, solved for at every step; it cannot be split into slabs "
                             "(start one process, or export the model at a fixed mu with --mu)")
        offsets = exported_neighbor_offsets(cfg["method"]["path"])
        halo = 2 * reach(offsets)
        why = f"the model needs (twice the {halo // 2} rows of its neighbourhood)"
    else:
        raise ValueError(f"method.name = {name!r} cannot run on several processes: the fields of an electron model "
                         "are not local; only 'heisenberg' and 'ml' runs are split into slabs (start one process)")
    slabs = Slabs(lattice.shape, ranks, halo, why)
    _, padded = build_provider(cfg, shape=slabs.padded_shape, device=device)
    return slabs, _core._HaloProvider(padded, slabs.num_sites, slabs.first, slabs.exchange), padded


def _lattice(cfg: dict):
    import spinforce
    return spinforce.Lattice(cfg["lattice"]["kind"], cfg["lattice"]["shape"])


@dataclass
class SimulationResult:
    path: str
    steps: int
    frames: int
    spins: np.ndarray | None  # the final spins of the whole lattice (None on ranks other than 0)
    wall_seconds: float
    spin_steps_per_second: float
    resumed_from: int
    max_uncertainty: float | None = None  # largest site uncertainty of this call's frames (committees)
    rank: int = 0  # this process's rank in a run on several processes
    halo_bytes: int = 0  # bytes this rank sent in halo exchanges (several processes)


@dataclass
class _Frame:
    """A frame of the whole lattice, as the run file records it."""
    spins: np.ndarray
    fields: np.ndarray
    energy: float
    uncertainty: np.ndarray | None = None


def _checkpoint_path(run_path: Path) -> Path:
    return run_path.with_name(run_path.stem + ".checkpoint.h5")


def _ovf_dir(run_path: Path) -> Path:
    return run_path.with_name(run_path.stem + "_ovf")


def output_patterns(run_path) -> tuple:
    """The files a run writes beside `run_path`, relative to its folder (outputs.py)."""
    run_path = Path(run_path)
    name, ovf = run_path.name, _ovf_dir(run_path).name
    ckpt = _checkpoint_path(run_path)
    return with_partial(name, ckpt.name, f"{ovf}/frame_*.ovf")


def _write_checkpoint(path: Path, spins: np.ndarray, step: int, fingerprint: str) -> None:
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:  # a crash leaves the previous checkpoint
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.attrs["step"] = int(step)
        f.attrs["fingerprint"] = fingerprint
        f.create_dataset("spins", data=spins)


def _read_checkpoint(path: Path, fingerprint: str):
    if not path.exists():
        return None
    with open_h5(path, what="spinforce checkpoint") as f:
        if f.attrs.get("format") != CHECKPOINT_FORMAT or f.attrs.get("fingerprint") != fingerprint:
            raise ValueError(f"checkpoint {path} belongs to a different run; remove it or use --overwrite")
        return int(f.attrs["step"]), f["spins"][()]


def simulate(config, *, resume: bool = False, overwrite: bool = False, steps: int | None = None,
             overrides=(), progress: bool = True, base_dir=None) -> SimulationResult:
    """Run the quench described by `config` (TOML path or dict); see the module doc.

    steps overrides dynamics.steps (the total number of steps of the run, counted from step 0);
    overrides are "SECTION.KEY=VALUE" strings.
    An existing run file is continued with resume=True, replaced with overwrite=True, and
    otherwise left alone (FileExistsError). The config, every file it names and the first frame
    are checked before any existing output is touched. The run file always ends with the state
    of the last step, also when that step is not a multiple of save_every.

    Started by torchrun on P processes (or inside an initialised torch.distributed group), a
    Heisenberg or ML run is split into P slabs along the lattice's last axis, one per process,
    which exchange halos before every field evaluation; rank 0 writes the files. The trajectory
    is that of one process (docs/distributed.md).
    """
    import torch

    from .distributed import join_ranks

    cfg = load_config(config, overrides, base_dir)
    if steps is not None:
        cfg["dynamics"]["steps"] = integer(0)(steps, "steps")
    if resume and overwrite:
        raise ValueError("give at most one of --resume and --overwrite")
    device = torch.device(cfg["method"]["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("method.device is 'cuda' but no CUDA device is available")
    ranks, device, started = join_ranks(cfg["method"]["device"], setting="method.device", command="simulate")
    try:
        return _simulate(cfg, ranks, device, resume, overwrite, progress and ranks.rank == 0)
    finally:
        if started:
            torch.distributed.destroy_process_group()


def simulate_runs(configs: list, *, cores: int = 0, progress: bool = True, desc: str = "runs") -> list:
    """Run (or continue) independent simulate configs, side by side on `cores` CPU cores (0:
    torch's threads; spinforce.runtime.run_independent), runs on a GPU one after another;
    finished runs are skipped. Returns the run paths."""
    from .runtime import run_independent
    todo = [rc for rc in configs if _last_step(Path(rc["output"])) != rc["dynamics"]["steps"]]
    run_independent(functools.partial(simulate, resume=True, overwrite=False, progress=progress), todo,
                    cores=cores, devices=[rc["method"].get("device", "cpu") for rc in todo], progress=progress,
                    desc=desc)
    return [Path(rc["output"]) for rc in configs]


def run_settings(cfg: dict) -> dict:
    """A run's method and dynamics without its steps (the run file's method_settings)."""
    return {"method": cfg["method"], "dynamics": {k: v for k, v in cfg["dynamics"].items() if k != "steps"}}


def run_fingerprint(cfg: dict) -> str:
    """What must match for a run file to be a continuation of the run of `cfg`: run_settings, model
    and lattice, but not the output path or the steps (they may grow), nor the number of processes."""
    return json.dumps({**run_settings(cfg), "model": cfg["model"], "lattice": cfg["lattice"]}, sort_keys=True)


def _last_step(path: Path) -> int:
    """The step of a run file's last saved frame (-1: no file or no frame)."""
    if not path.exists():
        return -1
    with open_h5(path) as f:
        n = int(f["energy"].shape[0])
        return int(f["step"][n - 1]) if n else -1


def _simulate(cfg, ranks, device, resume, overwrite, progress) -> SimulationResult:
    import contextlib

    import torch
    from tqdm.auto import tqdm

    from .data import DatasetWriter, replaceable_output
    from .dynamics import LLG
    from .outputs import prepare_outputs
    from .ovf import write_ovf

    d = cfg["dynamics"]
    root = ranks.rank == 0
    if ranks.distributed:
        slabs, provider, padded = split_provider(cfg, ranks, device)
        lattice = _lattice(cfg)
    else:
        slabs, padded = None, None
        lattice, provider = build_provider(cfg)
    llg = LLG(provider, dt=d["dt"], alpha=d["alpha"], kT=d["kT"], gamma=d["gamma"], integrator=d["integrator"],
              seed=d["seed"], site_offset=slabs.site_offset if slabs else 0)
    run_path = Path(cfg["output"])
    total = int(d["steps"])
    n = lattice.num_sites
    settings, fingerprint = run_settings(cfg), run_fingerprint(cfg)
    ckpt_path = _checkpoint_path(run_path)
    ovf_dir = _ovf_dir(run_path)
    # A committee's uncertainty is recorded per frame; past its threshold the run warns once.
    network = provider if padded is None else padded  # the provider with the model's attributes
    committee = getattr(network, "committee_size", 1) > 1
    watch = _UncertaintyWatch(getattr(network, "uncertainty_threshold", None) if committee else None)
    # A force field at fixed electron count records the chemical potential it solved for.
    frame_scalars = (UNCERTAINTY_SCALARS if committee else ()) + (
        ("mu",) if not math.isnan(getattr(network, "fixed_filling", math.nan)) else ())

    def numpy(t):
        return None if t is None else t.detach().cpu().numpy()

    def whole(state, result=None):
        """The _Frame of the whole lattice at `state` (this process's spins, a tensor) on rank 0,
        None on the others; result: the provider's result for `state` when already known."""
        if slabs is None:
            result = provider.compute(state) if result is None else result
            return _Frame(numpy(state), numpy(result.fields), float(result.energy),
                          numpy(result.uncertainty) if committee else None)
        spins_padded = slabs.exchange(state)
        if result is None:
            r = padded.compute(spins_padded)
            fields, uncertainty = slabs.slab_of(r.fields), slabs.slab_of(r.uncertainty) if committee else None
        else:
            fields, uncertainty = result.fields, result.uncertainty
        # the energy of a slab: the site energies of its own sites
        (energy,) = ranks.sum([float(slabs.slab_of(padded.site_energies(spins_padded)).sum())])
        parts = [slabs.gather(t) for t in (state, fields) + ((uncertainty,) if committee else ())]
        if not root:
            return None
        return _Frame(*(numpy(t) for t in parts[:2]), energy, numpy(parts[2]) if committee else None)

    def share(spins):
        """This process's spins (a tensor on the device) from rank 0's spins of the whole lattice."""
        if slabs is None:
            return torch.from_numpy(np.ascontiguousarray(spins)).to(device)
        return slabs.scatter(spins, device)

    def scalars_of(frame):
        if not frame_scalars:
            return None
        out = uncertainty_scalars(frame.uncertainty) if committee else {}
        if "mu" in frame_scalars:
            out["mu"] = network.chemical_potential(frame.spins)
        return out

    continuing = ranks.on_rank0(lambda: resume and run_path.exists())
    spins0 = _on_rank0_value(ranks, lambda: np.asarray(initial_spins(cfg, lattice), dtype=np.float64))
    state0 = share(spins0)
    # a new run computes its first frame before an existing output is touched
    first = None if continuing else whole(state0)

    def open_writer():
        prepare_outputs(run_path.parent, output_patterns(run_path), command="spinforce simulate",
                        overwrite=overwrite, keep=resume, resumable=True, exclusive=False,
                        owned=functools.partial(replaceable_output, datasets=(run_path.name,)))
        return DatasetWriter(run_path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=n,
                             method=cfg["method"]["name"], model=cfg["model"], method_settings=settings,
                             seed=d["seed"], provenance={"config": cfg, "command": "spinforce simulate"},
                             overwrite=overwrite, resume=resume,
                             # HDF5 allocates whole chunks: keep them near 4 MiB, one frame for big lattices
                             chunk_frames=max(1, min(16, (4 << 20) // (24 * n))),
                             scalars=frame_scalars)
    writer = _on_rank0_value(ranks, open_writer)  # the writer lives on rank 0 alone

    def export_ovf(step, spins):
        if cfg["ovf"]:
            write_ovf(ovf_dir / f"frame_{step:09d}.ovf", spins, lattice, title=f"spinforce step {step}",
                      time=step * llg.dt, overwrite=True)

    def record(step, frame):
        """Rank 0 appends a frame of the whole lattice to the run file."""
        def append():
            writer.append(frame.spins, frame.fields, frame.energy, time=step * llg.dt, step=step,
                          scalars=scalars_of(frame))
            export_ovf(step, frame.spins)
            watch(step, frame)
        ranks.on_rank0(append)

    def checkpoint(step, state):
        spins = state if slabs is None else slabs.gather(state)
        ranks.on_rank0(lambda: _write_checkpoint(ckpt_path, numpy(spins), step, fingerprint))

    with writer if writer is not None else contextlib.nullcontext():
        box = {}

        def where_to_start():
            """(step to start from, whether it continues the file) on rank 0."""
            if writer.num_frames == 0:  # a new run: the initial frame at t = 0
                return 0, False
            last = writer.last_frame()
            start, spins = int(last["step"]), last["spins"]
            ckpt = _read_checkpoint(ckpt_path, fingerprint)
            if ckpt is not None and ckpt[0] > start:
                start, spins = ckpt
            if start > total:
                raise ValueError(f"{run_path} already holds steps up to {start}; dynamics.steps = {total} is smaller")
            box["spins"] = spins
            return start, True
        start, continued = ranks.on_rank0(where_to_start)
        if continued:
            state = share(box.get("spins"))
        else:
            state = state0
            record(0, whole(state0) if continuing else first)  # (first is None on ranks other than 0)
        every, ckpt_every = d["save_every"], d["checkpoint_every"]
        if slabs is None:  # the integrator appends the frames; OVF files and the committee watch here
            def on_frame(k, s, result):
                export_ovf(k, numpy(s))
                watch(k, result)
            frames = {"writer": writer, "callback": on_frame if (cfg["ovf"] or committee) else None}
        else:
            frames = {"callback": lambda k, s, result: record(k, whole(s, result))}
        bar = tqdm(total=total * n, initial=start * n, unit="spin-step", unit_scale=True, disable=not progress,
                   desc=f"LLG {cfg['method']['name']} N={n}" + (f" on {ranks.world} processes" if slabs else ""),
                   dynamic_ncols=True)
        chunk, step, began, finished = 1, start, _time.perf_counter(), False
        try:
            while step < total:
                end = min(total, step + chunk)
                if ckpt_every:
                    end = min(end, (step // ckpt_every + 1) * ckpt_every)
                t0 = _time.perf_counter()
                state = llg.run(state, end - step, every=every, start_step=step, **frames)
                elapsed = _time.perf_counter() - t0
                bar.update((end - step) * n)
                bar.set_postfix(step=end, refresh=False)
                step = end
                if ckpt_every and step % ckpt_every == 0:
                    checkpoint(step, state)
                # aim at about half a second per chunk: the bar moves, Python overhead stays small
                chunk = int(max(1, min(chunk * 4, chunk * 0.5 / max(elapsed, 1e-9))))
            finished = True
        finally:
            bar.close()
            # whatever happened, the spins reached so far can be resumed; on several processes
            # only when every rank got here (a failed rank would leave the others waiting)
            if step > start and (finished or slabs is None):
                checkpoint(step, state)
        # the last step is not a multiple of save_every: the run file ends with it all the same
        if ranks.on_rank0(lambda: int(writer.last_frame()["step"]) < step):
            record(step, whole(state))
        wall = _time.perf_counter() - began
        frames = ranks.on_rank0(lambda: writer.num_frames)
    final = state if slabs is None else slabs.gather(state)
    return SimulationResult(path=str(run_path), steps=total, frames=frames, spins=numpy(final),
                            wall_seconds=wall, resumed_from=start, max_uncertainty=watch.max_seen,
                            spin_steps_per_second=(total - start) * n / wall if wall > 0 and total > start else 0.0,
                            rank=ranks.rank, halo_bytes=slabs.halo_bytes if slabs else 0)


def _on_rank0_value(ranks, make):
    """make() on rank 0, None on the other ranks (for values that do not travel: arrays, open
    files); an error on rank 0 is raised on every rank."""
    box = {}

    def run():
        box["value"] = make()
    ranks.on_rank0(run)
    return box.get("value")


class _UncertaintyWatch:
    """Follows a committee's per-frame maximum uncertainty and warns the first time it passes
    the threshold the committee file carries (no threshold: it only keeps the maximum)."""

    def __init__(self, threshold):
        self.threshold = threshold
        self.max_seen = None
        self.warned = False

    def __call__(self, step, result) -> None:
        if result.uncertainty is None:
            return
        u = uncertainty_scalars(result.uncertainty)["uncertainty_max"]
        self.max_seen = u if self.max_seen is None else max(self.max_seen, u)
        if self.threshold is not None and u > self.threshold and not self.warned:
            self.warned = True
            import warnings
            from .ml.committee import UncertaintyWarning
            warnings.warn(f"at step {step} the committee uncertainty reached {u:.4g} at a site, above the model's "
                          f"threshold {self.threshold:.4g}: the model is extrapolating and its fields there are not "
                          "to be trusted (run `spinforce learn` to add such states; this warning is shown once)",
                          UncertaintyWarning, stacklevel=2)


# --- command line -------------------------------------------------------------------------
HELP = "thermal-quench LLG run with any field provider (ML model, Heisenberg, ED, KPM) from a TOML config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="TOML config file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run file from its last checkpoint/frame")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run file")
    p.add_argument("--steps", type=int, default=None, help="total number of steps (overrides dynamics.steps)")
    add_set_argument(p, "dynamics.kT=0.01")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    result = simulate(args.config, resume=args.resume, overwrite=args.overwrite, steps=args.steps,
                      overrides=args.overrides, progress=not args.quiet)
    if result.rank != 0:  # rank 0 reports for a run on several processes
        return 0
    extra = "" if result.max_uncertainty is None else f"; max committee uncertainty {result.max_uncertainty:.4g}"
    print(f"{result.path}: {result.frames} frames, step {result.steps}; "
          f"{result.spin_steps_per_second:.4g} spin-steps/s over {result.wall_seconds:.1f} s{extra}")
    return 0
