"""Training of the Behler-Parrinello force field from snapshot datasets (``spinforce train``).

Config (TOML; relative paths are relative to the config file):

    [data]
    paths = ["train.h5"]            # one or more spinforce datasets of one lattice kind
    validation_fraction = 0.2       # fraction of the frames held out for validation ...
    test_fraction = 0.0             # ... and for the final test (never trained on, never used to choose)
    split = "trajectory"            # hold out whole trajectories ("trajectory") or single frames ("frame")
    window = 0                      # > 0: cut trajectories into time windows of this many frames,
                                    # each held out as a whole
    test_paths = []                 # datasets used only as test data

    [descriptor]                    # or: descriptor = {kind = "bond_shells", cutoff = 2.0}
    kind = "group"                  # "group" (spinforce.Descriptor), "bond_shells" or "ordered_bonds";
                                    # default: group where built in
    cutoff = 2.0                    # other keys are passed to the descriptor

    [model]
    hidden = [64, 64, 64]           # widths of the hidden layers
    activation = "silu"             # "relu", "silu" or "tanh"
    dtype = "float64"               # or "float32"
    mu_input = false                # true: site grand potentials omega_i(features, mu), each frame at the
                                    # mu of its labels; densities n_i = -d omega_i/d mu (fixed electron count)

    [training]
    seed = 0
    epochs = 200
    batch_size = 8                  # snapshots per mini-batch
    learning_rate = 1e-3
    lr_schedule = "plateau"         # "plateau" (factor, patience), "exponential" (gamma) or "constant"
    lr_factor = 0.5
    lr_patience = 10
    lr_gamma = 0.99
    min_lr = 1e-6
    energy_weight = 0.1             # lambda: loss = torque MSE + lambda * energy-per-site MSE
    energy_weight_start = 20        # epochs trained on torques only
    energy_weight_ramp = 20         # epochs over which lambda rises linearly to energy_weight
    density_weight = 1.0            # mu_input models: + density_weight * density MSE / (density spread)^2
                                    # (0: no density term; > 0 needs data with densities)
    point_group = "average"         # descriptors with point-group images (ordered_bonds): "average" runs the
                                    # network on every image of every site at every step; "sample" on one
                                    # image per site, drawn at random each step (the group as data
                                    # augmentation: 1/|G| of the network's cost). Metrics and the saved
                                    # model always average.
    train_metrics_frames = 0        # > 0: the per-epoch training metrics on this many training frames (a
                                    # fixed draw) instead of all, which on large data costs as much as
                                    # the epoch's training steps
    early_stop_patience = 40        # epochs without a better validation torque RMSE
    early_stop_min_delta = 1e-4     # relative improvement that counts as better
    threads = 0                     # torch CPU threads (0: torch's default)
    device = "cpu"                  # or "cuda"

    [output]
    dir = "runs/model"              # log.csv, checkpoint.pt, model.pt (best), plots/
    plots = true

Both loss terms are divided by the square of the RMS torque of the training data, so the loss is
dimensionless; the density term of a mu_input model by the variance of the training densities. Best model, plateau schedule and early stop all follow the validation torque RMSE;
no early stop before lambda reaches `energy_weight`, and then the best model and the early-stop
count start afresh, so that the kept model has had its energies trained.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import (OMIT, Key, boolean, check_sections, check_table, device, int_list, integer, number, one_of,
                      string, strings)
from .._validate import spin_lengths
from ..data import dict_differences, read_dataset
from ..distributed import Ranks as _Ranks, join_ranks
from ..outputs import atomic_write, prepare_outputs, with_partial
from ..run_setup import read_config
from ..descriptors.registry import DEFAULT_KIND
from .model import DTYPES, SiteEnergyModel, build_model, load_model, model_record, save_model

__all__ = ["load_config", "check_descriptor", "train", "TrainingResult", "METRICS", "OUTPUTS", "SCHEMA",
           "split_groups", "frame_groups"]
SPLITS = ("trajectory", "frame")

# The config schema (config.py): every key with its check and default.
_DESCRIPTOR_SETTINGS = {
    "bond_shells": {"cutoff": Key(number(0, lo_open=True), OMIT), "powers": Key(int_list(1), OMIT),
                    "pair_orbits": Key(boolean(), OMIT), "three_body": Key(boolean(), OMIT),
                    "half_angle": Key(boolean(), OMIT), "pair_cutoff": Key(number(0, lo_open=True), OMIT)},
    "ordered_bonds": {"cutoff": Key(number(0, lo_open=True), OMIT), "bond_cutoff": Key(number(0, lo_open=True), OMIT),
                      "half_angle": Key(boolean(), OMIT), "chirality": Key(boolean(), OMIT)},
    "group": {"cutoff": Key(number(0, lo_open=True), OMIT), "bond_cutoff": Key(number(0, lo_open=True), OMIT),
              "triangle_cutoff": Key(number(0, lo_open=True), OMIT), "block_radius": Key(number(0, lo_open=True), OMIT),
              "floor": Key(number(0, lo_open=True), OMIT), "implementation": Key(one_of("op", "reference"), OMIT)},
}
SCHEMA = {
    "data": {"paths": Key(strings("a dataset path or a list of them")),
             "validation_fraction": Key(number(0, 1, hi_open=True), 0.2),
             "test_fraction": Key(number(0, 1, hi_open=True), 0.0),
             "split": Key(one_of(*SPLITS), "trajectory"), "window": Key(integer(0), 0),
             "test_paths": Key(strings("a dataset path or a list of them (test data only)", empty=True), [])},
    "model": {"hidden": Key(int_list(1), [64, 64, 64]), "activation": Key(one_of("relu", "silu", "tanh"), "silu"),
              "dtype": Key(one_of(*DTYPES), "float64"), "mu_input": Key(boolean(), False)},
    "training": {"seed": Key(integer(0), 0), "epochs": Key(integer(1), 200), "batch_size": Key(integer(1), 8),
                 "learning_rate": Key(number(0, lo_open=True), 1e-3), "weight_decay": Key(number(0), 0.0),
                 "lr_schedule": Key(one_of("plateau", "exponential", "constant"), "plateau"),
                 "lr_factor": Key(number(0, 1, lo_open=True, hi_open=True), 0.5), "lr_patience": Key(integer(0), 10),
                 "lr_gamma": Key(number(0, 1, lo_open=True), 0.99), "min_lr": Key(number(0), 1e-6),
                 "energy_weight": Key(number(0), 0.1), "energy_weight_start": Key(integer(0), 20),
                 "energy_weight_ramp": Key(integer(0), 20), "density_weight": Key(number(0), 1.0),
                 "point_group": Key(one_of("average", "sample"), "average"),
                 "train_metrics_frames": Key(integer(0), 0),
                 "early_stop_patience": Key(integer(0), 40),
                 "early_stop_min_delta": Key(number(0), 1e-4), "threads": Key(integer(0), 0),
                 "device": Key(device(), "cpu")},
    "output": {"dir": Key(string("the path of the run folder")), "plots": Key(boolean(), True)},
}
_SECTIONS = ("data", "descriptor", "model", "training", "output")
# Sections that define the model and its data: a resumed run must not change them.
_FROZEN_ON_RESUME = ("data", "descriptor", "model")
METRICS = ("torque_rmse", "field_rmse", "energy_mae_per_site")
DENSITY_METRIC = "density_rmse"  # only for models with mu input trained on densities
_CSV_FIELDS = (["epoch", "learning_rate", "energy_weight", "loss"] + [f"train_{m}" for m in METRICS]
               + [f"val_{m}" for m in METRICS])
# What a run writes into its folder (outputs.py): --overwrite removes these and nothing else.
OUTPUTS = ("log.csv", "config.json", "metrics.json", *with_partial("checkpoint.pt", "model.pt"), "plots/parity_*.png",
           "plots/parity_*.npz", "plots/torque_error_hist_*.png")


def check_descriptor(desc, section: str = "descriptor", default_kind: bool = True) -> dict:
    """A checked descriptor table: its kind picks the settings it may hold. Without
    default_kind the kind must be given."""
    if not isinstance(desc, dict):
        raise ValueError(f"[{section}] must be a table of keys, got {desc!r}")
    if "kind" not in desc and not default_kind:
        raise ValueError(f"[{section}] needs the key 'kind' ({', '.join(_DESCRIPTOR_SETTINGS)})")
    kind = one_of(*_DESCRIPTOR_SETTINGS)(desc.get("kind", DEFAULT_KIND), f"{section}.kind")
    return {"kind": kind, **check_table(section, {k: v for k, v in desc.items() if k != "kind"},
                                        _DESCRIPTOR_SETTINGS[kind])}


def load_config(path_or_dict, base_dir=None) -> dict:
    """Read a TOML config (or take a dict), fill defaults, check values, resolve paths."""
    if isinstance(path_or_dict, dict):
        raw = copy.deepcopy(path_or_dict)
        base = Path(base_dir or ".")
    else:
        path = Path(path_or_dict)
        raw = read_config(path)
        base = path.parent
    check_sections("the training config", raw, _SECTIONS)
    cfg = {section: check_table(section, raw.get(section, {}), keys) for section, keys in SCHEMA.items()}
    cfg["descriptor"] = check_descriptor(raw.get("descriptor", {}))
    d = cfg["data"]
    for key in ("paths", "test_paths"):
        d[key] = [str((base / p).resolve()) if not Path(p).is_absolute() else p for p in d[key]]
    if d["test_fraction"] >= 1.0 - d["validation_fraction"]:
        raise ValueError(f"data.test_fraction must be < 1 - data.validation_fraction = "
                         f"{1.0 - d['validation_fraction']:g}: some frames must be left to train on, "
                         f"got {d['test_fraction']!r}")
    if torch.device(cfg["training"]["device"]).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device is {cfg['training']['device']!r} but torch sees no CUDA device")
    out = cfg["output"]["dir"]
    cfg["output"]["dir"] = str((base / out).resolve()) if not Path(out).is_absolute() else out
    return cfg


def energy_weight_at(epoch: int, training: dict) -> float:
    """The weight of the energy term in the loss at `epoch` (0-based), from the [training] settings:
    0 for the first `energy_weight_start` epochs, then a linear ramp over `energy_weight_ramp`
    epochs up to `energy_weight`."""
    start, ramp = int(training["energy_weight_start"]), int(training["energy_weight_ramp"])
    final = float(training["energy_weight"])
    if epoch < start:
        return 0.0
    return final if ramp == 0 else final * min(1.0, (epoch - start + 1) / ramp)


@dataclass
class _Part:
    """One dataset's snapshots (as tensors) and its neighbour table."""
    spins: torch.Tensor      # (M, N, 3)
    fields: torch.Tensor     # (M, N, 3)
    energy: torch.Tensor     # (M,)
    neighbors: torch.Tensor  # (N, m)
    train: np.ndarray        # snapshot indices
    val: np.ndarray
    test: np.ndarray
    mu: torch.Tensor | None = None       # (M,) the chemical potential of each frame's labels (mu_input models)
    density: torch.Tensor | None = None  # (M, N) electrons per site, when the data have them
    train_metric: np.ndarray | None = None  # the training frames of the per-epoch metrics (_metric_frames)


def _metric_frames(parts: list[_Part], count: int, seed: int) -> None:
    """Set each part's train_metric: all its training frames (count 0, or count at least their
    number), else its share of `count` frames drawn once from all parts' training frames."""
    total = sum(len(p.train) for p in parts)
    for part in parts:
        part.train_metric = part.train
    if count == 0 or count >= total:
        return
    chosen = np.zeros(total, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(total)[:count]] = True
    start = 0
    for part in parts:
        part.train_metric = np.sort(part.train[chosen[start:start + len(part.train)]])
        start += len(part.train)


def _batched_neighbors(neighbors: torch.Tensor, batch: int) -> torch.Tensor:
    """Neighbour table of `batch` independent copies of the lattice, stacked site-wise."""
    n = neighbors.shape[0]
    shift = (torch.arange(batch, dtype=neighbors.dtype, device=neighbors.device) * n).view(batch, 1, 1)
    return (neighbors.unsqueeze(0) + shift).reshape(batch * n, -1)


def predict(model: SiteEnergyModel, spins: torch.Tensor, neighbors: torch.Tensor, create_graph: bool = False,
            mu: torch.Tensor | None = None, images: torch.Generator | None = None):
    """Energies (B,) and fields (B,N,3) of a batch of snapshots spins (B,N,3). A model with mu
    input is evaluated at each frame's mu (B,) and also gives its densities n_i = -d omega_i/d mu
    (B,N) (None otherwise). With `images` (a generator) a descriptor with point-group images
    gives each site one image drawn from it instead of the average over all."""
    B, N, _ = spins.shape
    s = spins.reshape(B * N, 3).detach().requires_grad_(True)
    inputs = [s]
    if model.mu_input:
        if mu is None:
            raise ValueError("a model with mu input needs the chemical potential of every frame")
        # one leaf per site: the gradient of sum_i omega_i is then -n_i site by site
        inputs.append(mu.detach().to(s.dtype).repeat_interleave(N).requires_grad_(True))
    with torch.enable_grad():
        site_mu = inputs[1] if model.mu_input else None
        if images is not None and model.images > 1:
            image = torch.randint(model.images, (B * N,), generator=images).to(s.device)
            features = model.descriptor.image_features(s, _batched_neighbors(neighbors, B), image)
            eps = model.energies_from_features(features, site_mu, images=1)
        else:
            eps = model.site_energies(s, _batched_neighbors(neighbors, B), site_mu)
        grads = torch.autograd.grad(eps.sum(), inputs, create_graph=create_graph)
    density = -grads[1].view(B, N) if model.mu_input else None
    return eps.view(B, N).sum(1), -grads[0].view(B, N, 3), density


def _frames(part: _Part, batch):
    """The frames `batch` of a part: spins, fields, energies, mu (or None), densities (or None)."""
    return (part.spins[batch], part.fields[batch], part.energy[batch],
            None if part.mu is None else part.mu[batch], None if part.density is None else part.density[batch])


def _errors(model, part: _Part, idx: np.ndarray, batch_size: int, create_graph=False):
    """Yields (torque error, field error, energy error per site, density error or None, batch)
    per mini-batch."""
    for start in range(0, len(idx), batch_size):
        batch = torch.as_tensor(idx[start:start + batch_size])
        spins, fields, energy, mu, density = _frames(part, batch)
        energy_pred, fields_pred, density_pred = predict(model, spins, part.neighbors, create_graph, mu)
        field_error = fields_pred - fields
        density_error = None if density is None or density_pred is None else density_pred - density
        yield (torch.linalg.cross(spins, field_error, dim=-1), field_error, (energy_pred - energy) / spins.shape[1],
               density_error, batch)


def evaluate(model, parts: list[_Part], split: str, batch_size: int, ranks: _Ranks = _Ranks()) -> dict:
    """Torque RMSE, field RMSE (root mean square over sites of the vector error), the mean
    absolute energy error per site and, where there are densities, the density RMSE, over the
    snapshots of `split` (shared out over the ranks)."""
    torque_sq = field_sq = energy_abs = density_sq = 0.0
    sites = frames = density_sites = 0
    for part in parts:
        for torque_error, field_error, energy_error, density_error, _ in _errors(
                model, part, ranks.share(getattr(part, split)), batch_size):
            torque_sq += float((torque_error.detach() ** 2).sum())
            field_sq += float((field_error.detach() ** 2).sum())
            energy_abs += float(energy_error.detach().abs().sum())
            sites += torque_error.shape[0] * torque_error.shape[1]
            frames += torque_error.shape[0]
            if density_error is not None:
                density_sq += float((density_error.detach() ** 2).sum())
                density_sites += density_error.numel()
    torque_sq, field_sq, energy_abs, sites, frames, density_sq, density_sites = ranks.sum(
        [torque_sq, field_sq, energy_abs, sites, frames, density_sq, density_sites])
    if frames == 0:
        return {metric: float("nan") for metric in METRICS}
    out = {"torque_rmse": math.sqrt(torque_sq / sites), "field_rmse": math.sqrt(field_sq / sites),
           "energy_mae_per_site": energy_abs / frames}
    if density_sites:
        out[DENSITY_METRIC] = math.sqrt(density_sq / density_sites)
    return out


def frame_groups(trajectory: np.ndarray, split: str = "trajectory", window: int = 0) -> np.ndarray:
    """Group id of every frame of one file: frames of a group are held out together.

    split "trajectory": a group is a trajectory (or, with window > 0, a run of `window`
    consecutive frames of it); "frame": every frame alone (correlated frames of one trajectory
    then land in different splits: not a held-out test).
    """
    trajectory = np.asarray(trajectory, dtype=np.int64)
    if split == "frame":
        return np.arange(len(trajectory))
    if window == 0:
        return trajectory
    position = np.zeros(len(trajectory), dtype=np.int64)
    for trajectory_id in np.unique(trajectory):
        frames = np.flatnonzero(trajectory == trajectory_id)
        position[frames] = np.arange(len(frames)) // window
    _, groups = np.unique(np.stack([trajectory, position], axis=1), axis=0, return_inverse=True)
    return groups.ravel()


def split_groups(groups: list, fractions: tuple, seed: int) -> list:
    """Split the frames of several files into train / held-out sets by whole groups.

    groups: per file, the group id of every frame (`frame_groups`). fractions: the wanted
    fraction of all frames in each held-out set (validation, test, ...). Groups are drawn in a
    seeded random order; a group joins the first held-out set that it brings closer to its
    target, the rest is training data. Returns per file a list of index arrays
    [train, held-out 1, held-out 2, ...]; no group is split.
    """
    keys = [(f, int(g)) for f, ids in enumerate(groups) for g in np.unique(ids)]
    sizes = {(f, int(g)): int(n) for f, ids in enumerate(groups) for g, n in zip(*np.unique(ids, return_counts=True))}
    total = sum(sizes.values())
    targets = [int(round(fr * total)) for fr in fractions]
    order = np.random.default_rng([seed, 0]).permutation(len(keys))
    filled = [0] * len(fractions)
    assign = {}
    for k in order:
        key = keys[k]
        assign[key] = 0
        for h, target in enumerate(targets):
            if abs(filled[h] + sizes[key] - target) < abs(filled[h] - target):
                assign[key], filled[h] = h + 1, filled[h] + sizes[key]
                break
    out = []
    for f, ids in enumerate(groups):
        which = np.array([assign[(f, int(g))] for g in ids], dtype=np.int64)
        out.append([np.flatnonzero(which == h) for h in range(len(fractions) + 1)])
    return out


# Model keys that fix the electron count (mu, filling; `mus` of labels at several mu) or the lattice
# (checked apart): datasets may differ in these and still label one model (a model with mu as an
# input trains on labels at several mu; spinforce learn trains on quenches at one mu beside
# explored frames labelled at several).
_NOT_THE_MODEL = ("mu", "filling", "mus", "lattice", "shape")


def _labelled_model(ds) -> tuple[str, dict]:
    """(the model whose exact fields a dataset holds, its parameters): every s-d electron solver
    (ed, kpm) labels the s-d model; other methods (heisenberg) their own."""
    from ..run_setup import ELECTRON_METHODS
    return ("s-d" if ds.method in ELECTRON_METHODS else ds.method,
            {k: v for k, v in ds.model.items() if k not in _NOT_THE_MODEL})


def _check_labels(ds, path, first) -> None:
    """Refuse a dataset of an ML simulation (its fields are not exact labels) and one of another
    model than the first dataset `first` = (path, method, model, parameters): another model or other
    parameters besides mu and filling. Parameters only one of the two records are not compared."""
    if ds.method == "ml":
        raise ValueError(f"dataset {path} is the output of an ML simulation (method 'ml'): its fields are a force "
                         "field's predictions, not exact labels; label its frames with an exact solver (ed, kpm) "
                         "first, as spinforce learn does")
    if first is None:
        return
    path0, method0, model0, params0 = first
    model, params = _labelled_model(ds)
    if model != model0:
        raise ValueError(f"datasets {path0} and {path} label different models ({model0} by method {method0!r}, "
                         f"{model} by method {ds.method!r}): one force field learns one model")
    differ = [f"{k} = {params0[k]!r} in {path0} but {params[k]!r} in {path}"
              for k in sorted(set(params0) & set(params)) if params0[k] != params[k]]
    if differ:
        raise ValueError(f"datasets {path0} and {path} label different {model} models: {'; '.join(differ)} "
                         "(datasets of one model may differ only in mu or filling)")


def _check_one_mu(ds, path, fixed_mu):
    """For a model without mu input: refuse labels at several mu, and fixed-mu datasets at another mu
    than `fixed_mu` = (path, mu) of the first one (returned, updated); a fixed-filling dataset has a
    mu per frame by design and passes."""
    mus = ds.model.get("mus")
    if mus:
        raise ValueError(f"dataset {path} is labelled at several chemical potentials (mu = "
                         f"{', '.join(f'{m:g}' for m in mus)}) and a model without mu input learns one: set "
                         "model.mu_input = true, or train on labels at one mu")
    mu = ds.model.get("mu")
    if mu is None or ds.model.get("filling") is not None:
        return fixed_mu
    if fixed_mu is not None and float(mu) != fixed_mu[1]:
        raise ValueError(f"datasets {fixed_mu[0]} and {path} are labelled at different chemical potentials (mu = "
                         f"{fixed_mu[1]:g} and {float(mu):g}) and a model without mu input learns one: set "
                         "model.mu_input = true, or train on labels at one mu")
    return fixed_mu or (path, float(mu))


def _load_parts(cfg: dict, dtype: torch.dtype, seed: int, device: torch.device):
    d = cfg["data"]
    parts, kinds, records, lattices, groups = [], set(), [], [], []
    paths = list(d["paths"]) + list(d["test_paths"])
    mu_input = bool(cfg["model"]["mu_input"])
    use_density = mu_input and float(cfg["training"]["density_weight"]) > 0
    first = fixed_mu = None
    for n_file, path in enumerate(paths):
        ds = read_dataset(path)
        _check_labels(ds, path, first)
        first = first or (path, ds.method, *_labelled_model(ds))
        if not mu_input:
            fixed_mu = _check_one_mu(ds, path, fixed_mu)
        if ds.num_frames < 1:
            raise ValueError(f"dataset {path} holds no snapshots")
        frame_mu = ds.frame_mu() if mu_input else None
        if mu_input and frame_mu is None:
            raise ValueError(f"model.mu_input needs the chemical potential of every frame; dataset {path} was labelled "
                             "at fixed filling and stores no mu: label the states at fixed mu (python -m "
                             "spinforce.ml.sample_ed --mu ..., or spinforce.ml.sample_ed.relabel_at_mus)")
        if use_density and ds.density is None:
            raise ValueError(f"training.density_weight = {cfg['training']['density_weight']:g} needs per-site densities "
                             f"in every dataset; {path} has none: label it with densities (python -m "
                             "spinforce.ml.sample_ed --mu ..., or relabel_at_mus), or set training.density_weight = 0")
        for name in ("spins", "fields", "energy"):
            bad = ~np.isfinite(getattr(ds, name)).reshape(ds.num_frames, -1).all(axis=1)
            if bad.any():
                raise ValueError(f"dataset {path}: the {name} of {int(bad.sum())} snapshot(s) are not finite "
                                 f"(first: frame {int(np.flatnonzero(bad)[0])}); remove them or regenerate the data")
        off, span = spin_lengths(ds.spins)
        bad = off.any(axis=1)
        if bad.any():
            raise ValueError(f"dataset {path}: the spins of {int(bad.sum())} snapshot(s) are not unit vectors (|S| "
                             f"ranges over {span}; first: frame "
                             f"{int(np.flatnonzero(bad)[0])}); normalise them or regenerate the data")
        kinds.add(ds.lattice_kind)
        lattices.append(ds.lattice())
        M = ds.num_frames
        empty = np.zeros(0, dtype=np.int64)
        parts.append(_Part(torch.as_tensor(ds.spins, dtype=dtype, device=device),
                           torch.as_tensor(ds.fields, dtype=dtype, device=device),
                           torch.as_tensor(ds.energy, dtype=dtype, device=device), None, empty, empty, empty,
                           None if frame_mu is None else torch.as_tensor(frame_mu, dtype=dtype, device=device),
                           torch.as_tensor(ds.density, dtype=dtype, device=device) if use_density else None))
        if n_file < len(d["paths"]):
            groups.append(frame_groups(ds.trajectory, d["split"], int(d["window"])))
        else:
            parts[-1].test = np.arange(M)
        records.append({"path": str(path), "method": ds.method, "model": ds.model,
                        "method_settings": ds.method_settings, "lattice_shape": list(ds.lattice_shape),
                        "frames": M, "seed": ds.seed, "spinforce_version": ds.spinforce_version,
                        "role": "train" if n_file < len(d["paths"]) else "test"})
    if len(kinds) != 1:
        raise ValueError(f"all datasets of a training run must share one lattice kind, got {sorted(kinds)}")
    fractions = (float(d["validation_fraction"]), float(d["test_fraction"]))
    for part, (train, val, test) in zip(parts, split_groups(groups, fractions, seed)):
        part.train, part.val, part.test = train, val, test
    if not any(len(p.train) for p in parts):
        raise ValueError("no training frames are left after holding out validation and test trajectories; "
                         "add data or lower validation_fraction / test_fraction")
    if mu_input:
        train_mu = np.unique(np.concatenate([p.mu[p.train].cpu().numpy() for p in parts]))
        if len(train_mu) < 2:
            raise ValueError(f"model.mu_input needs training frames at two or more chemical potentials; they are all at "
                             f"mu = {train_mu[0]:g}")
    return parts, lattices, records


def torque_rms(parts: list[_Part], split: str) -> float:
    """RMS exact torque |S x H| over the sites of the frames of `split` (the scale of its errors)."""
    sq, sites = 0.0, 0
    for part in parts:
        idx = torch.as_tensor(getattr(part, split))
        s, h = part.spins[idx], part.fields[idx]
        sq += float((torch.linalg.cross(s, h, dim=-1) ** 2).sum())
        sites += s.shape[0] * s.shape[1]
    return math.sqrt(sq / sites) if sites else float("nan")


def _normalise(model: SiteEnergyModel, parts: list[_Part]) -> dict:
    """Feature mean/std over the training sites; energy shift = mean energy per site; output
    scale = RMS torque of the training data (the field scale dynamics sees); for a model with
    mu input the mean, spread and range of the training frames' mu, and (with densities) the
    spread of the densities, the scale of the density term of the loss."""
    feats, e_site, torque_sq, field_sq, n_sites = [], [], 0.0, 0.0, 0
    with torch.no_grad():
        for part in parts:
            for i in part.train:
                feats.append(model.descriptor.features(part.spins[i], part.neighbors))
            s, h = part.spins[part.train], part.fields[part.train]
            torque_sq += float((torch.linalg.cross(s, h, dim=-1) ** 2).sum())
            field_sq += float((h ** 2).sum())
            n_sites += s.shape[0] * s.shape[1]
            e_site.append(part.energy[part.train] / s.shape[1])
    f = torch.cat(feats)
    torque_rms = math.sqrt(torque_sq / n_sites)
    scale = torque_rms if torque_rms > 0 else (math.sqrt(field_sq / n_sites) or 1.0)
    shift = float(torch.cat(e_site).mean())
    model.set_normalisation(f.mean(0), f.std(0, unbiased=False), shift, scale)
    out = {"torque_rms": torque_rms, "field_rms": math.sqrt(field_sq / n_sites)}
    densities = [p.density[p.train] for p in parts if p.density is not None]
    if densities:
        out["density_std"] = max(float(torch.cat(densities).std(unbiased=False)), 1e-6)
    if model.mu_input:
        mu = torch.cat([p.mu[p.train] for p in parts]).cpu().double()
        if densities:
            density_mean = float(torch.cat(densities).mean())
        else:  # the mean density is -dOmega/dmu per site: the slope of the energies per site over mu
            e = torch.cat(e_site).cpu().double()
            density_mean = -float(((mu - mu.mean()) * (e - e.mean())).sum() / ((mu - mu.mean()) ** 2).sum())
        model.set_mu_normalisation(mu, density_mean)
        out.update(mu_min=model.mu_min, mu_max=model.mu_max, density_mean=density_mean)
    return out


def _make_scheduler(optimizer, training: dict):
    if training["lr_schedule"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=float(training["lr_factor"]),
                                                          patience=int(training["lr_patience"]),
                                                          min_lr=float(training["min_lr"]))
    if training["lr_schedule"] == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(training["lr_gamma"]))
    return None


@dataclass
class TrainingResult:
    run_dir: Path
    model_path: Path
    best_epoch: int
    best: dict          # metrics of the best model on train and val (and test, when there is one)
    history: list       # CSV rows
    stopped_early: bool
    rank: int = 0       # this process's rank in a run on several processes (0 alone)


def _write_csv(path: Path, rows: list) -> None:
    with open(path, "w", newline="") as f:
        # the density columns only for models trained on densities
        density = [name for name in (f"train_{DENSITY_METRIC}", f"val_{DENSITY_METRIC}") if rows and name in rows[0]]
        w = csv.DictWriter(f, fieldnames=_CSV_FIELDS + density)
        w.writeheader()
        w.writerows(rows)


def train(config, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
          base_dir=None) -> TrainingResult:
    """Train a force field as the config says (see the module docstring); returns where it went.

    A run directory that already holds a run is continued with ``resume=True`` (from its last
    checkpoint, continuing the same loss curve) or replaced with ``overwrite=True``.

    Started by torchrun (or inside an initialised torch.distributed process group), every
    process calls train alike: each takes its share of the snapshots of every mini-batch and the
    gradients are summed over the processes, so the run follows the loss curve of one process;
    rank 0 alone writes files and shows progress. See docs/ml.md, "Training on several processes".
    """
    cfg = load_config(config, base_dir)
    if resume and overwrite:
        raise ValueError("give at most one of --resume and --overwrite")
    ranks, device, started = join_ranks(cfg["training"]["device"], setting="training.device", command="train")
    threads = torch.get_num_threads()
    try:
        if cfg["training"]["threads"]:
            torch.set_num_threads(int(cfg["training"]["threads"]))
        return _train(cfg, resume, overwrite, progress and ranks.rank == 0, ranks, device)
    finally:
        torch.set_num_threads(threads)
        if started:
            import torch.distributed as dist
            dist.destroy_process_group()


def _batch_loss(model, part: _Part, sel, batch_frames: int, energy_weight: float, inv_scale2: float,
                density_weight: float = 0.0, inv_density2: float = 1.0,
                images: torch.Generator | None = None) -> torch.Tensor:
    """The loss of the mini-batch of batch_frames snapshots, or, for sel a share of them, the
    share's part of it: its sums divided by the whole batch's counts (the shares add up to it).
    `images`: draw one point-group image per site from this generator (predict)."""
    sel = torch.as_tensor(sel)
    spins, fields, energy, mu, density = _frames(part, sel)
    energy_pred, fields_pred, density_pred = predict(model, spins, part.neighbors, create_graph=True, mu=mu,
                                                     images=images)
    torque_sq = (torch.linalg.cross(spins, fields_pred - fields, dim=-1) ** 2).sum(-1)
    energy_sq = ((energy_pred - energy) / spins.shape[1]) ** 2
    density_sq = None
    if density_weight > 0 and density is not None and density_pred is not None:
        density_sq = (density_pred - density) ** 2
    if len(sel) == batch_frames:
        loss = torque_sq.mean() * inv_scale2
        if energy_weight > 0:
            loss = loss + energy_weight * energy_sq.mean() * inv_scale2
        if density_sq is not None:
            loss = loss + density_weight * density_sq.mean() * inv_density2
        return loss
    loss = torque_sq.sum() / (batch_frames * spins.shape[1]) * inv_scale2
    if energy_weight > 0:
        loss = loss + energy_weight * energy_sq.sum() / batch_frames * inv_scale2
    if density_sq is not None:
        loss = loss + density_weight * density_sq.sum() / (batch_frames * spins.shape[1]) * inv_density2
    return loss


def _train(cfg: dict, resume: bool, overwrite: bool, progress: bool, ranks: _Ranks = _Ranks(),
           device: torch.device | None = None) -> TrainingResult:
    training = cfg["training"]
    run_dir = Path(cfg["output"]["dir"])
    ckpt_path, model_path, log_path = run_dir / "checkpoint.pt", run_dir / "model.pt", run_dir / "log.csv"
    checkpoint = None
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"nothing to resume: {ckpt_path} does not exist")
        try:
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as err:  # a truncated or foreign file
            raise ValueError(f"{ckpt_path} is not a readable training checkpoint ({err})") from None
        for section in _FROZEN_ON_RESUME:
            if checkpoint["config"][section] != cfg[section]:
                raise ValueError(f"cannot resume {run_dir}: config [{section}] differs from the checkpoint's ("
                                 + "; ".join(dict_differences(checkpoint["config"][section], cfg[section])) + ")")
    # the data and model are checked before the run folder is touched
    seed = int(training["seed"])
    torch.manual_seed(seed)
    dtype = DTYPES[cfg["model"]["dtype"]]
    device = device or torch.device(training["device"])
    parts, lattices, data_records = _load_parts(cfg, dtype, seed, device)
    descriptor = dict(cfg["descriptor"])
    kind = descriptor.pop("kind")
    network = cfg["model"]
    model = build_model(lattices[0], kind, descriptor, network["hidden"], network["activation"],
                        network["dtype"], network["mu_input"]).to(device)
    if training["point_group"] == "sample" and model.images == 1:
        raise ValueError(f"training.point_group = 'sample' draws one of a site's point-group images; the {kind} "
                         "descriptor has one invariant row per site: use it with ordered_bonds, or leave "
                         "point_group = 'average'")
    for part, lattice in zip(parts, lattices):
        part.neighbors = lattice.neighbor_table(model.neighbor_offsets).to(device)
    def prepare():
        prepare_outputs(run_dir, OUTPUTS, command="spinforce train", overwrite=overwrite, keep=resume, resumable=True)
        run_dir.mkdir(parents=True, exist_ok=True)
    ranks.on_rank0(prepare)
    data_scale = _normalise(model, parts)
    _metric_frames(parts, int(training["train_metrics_frames"]), seed)
    # Decoupled weight decay (AdamW; 0 is plain Adam): a brake on memorising correlated frames.
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(training["learning_rate"]),
                                  weight_decay=float(training["weight_decay"]))
    scheduler = _make_scheduler(optimizer, training)
    history, start_epoch, best, best_epoch, stale = [], 0, math.inf, -1, 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        history, start_epoch = checkpoint["history"], checkpoint["epoch"]
        best, best_epoch, stale = checkpoint["best"], checkpoint["best_epoch"], checkpoint["stale"]
    if ranks.distributed:  # the ranks start from one model (as DDP does), whatever their history
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, src=0)
    if ranks.rank == 0:
        (run_dir / "config.json").write_text(json.dumps(cfg, indent=2))

    batch_size = int(training["batch_size"])
    batches = [(part_index, start) for part_index, part in enumerate(parts)
               for start in range(0, len(part.train), batch_size)]
    inv_scale2 = 1.0 / float(model.energy_scale) ** 2
    density_weight = float(training["density_weight"]) if "density_std" in data_scale else 0.0
    inv_density2 = 1.0 / data_scale.get("density_std", 1.0) ** 2
    has_val = any(len(p.val) for p in parts)
    stopped_early = checkpoint is not None and checkpoint.get("stopped_early", False)
    epochs = int(training["epochs"])
    first_full_weight = int(training["energy_weight_start"]) + max(int(training["energy_weight_ramp"]) - 1, 0)
    bar = None
    if progress and start_epoch < epochs and not stopped_early:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, initial=start_epoch, desc="train", unit="epoch", dynamic_ncols=True)
    for epoch in range(start_epoch, epochs):
        if stopped_early:
            break
        energy_weight = energy_weight_at(epoch, training)
        # Shuffles come from a generator keyed by (seed, epoch): a resumed run needs no RNG state.
        shuffle = torch.Generator().manual_seed(seed * 100003 + epoch)
        shuffled = [part.train[torch.randperm(len(part.train), generator=shuffle).numpy()] for part in parts]
        loss_sum = 0.0
        # drawn from the epoch's generator after the shuffles: a resumed epoch draws the same images
        sample_images = shuffle if training["point_group"] == "sample" else None
        model.train()
        for batch_index in torch.randperm(len(batches), generator=shuffle).tolist():
            part_index, start = batches[batch_index]
            batch = shuffled[part_index][start:start + batch_size]
            mine = ranks.share(batch)  # the whole batch on one process
            optimizer.zero_grad(set_to_none=True)
            if len(mine):
                loss = _batch_loss(model, parts[part_index], mine, len(batch), energy_weight, inv_scale2,
                                   density_weight, inv_density2, sample_images)
                loss.backward()
                loss_sum += float(loss.detach())
            ranks.sum_gradients(model.parameters())
            optimizer.step()
        (loss_sum,) = ranks.sum([loss_sum])
        model.eval()
        train_metrics = evaluate(model, parts, "train_metric", batch_size, ranks)
        val_metrics = evaluate(model, parts, "val", batch_size, ranks) if has_val else train_metrics
        row = {"epoch": epoch + 1, "learning_rate": optimizer.param_groups[0]["lr"], "energy_weight": energy_weight,
               "loss": loss_sum / len(batches), **{f"train_{k}": v for k, v in train_metrics.items()},
               **{f"val_{k}": v for k, v in val_metrics.items()}}
        if not math.isfinite(row["loss"]):
            raise ValueError(f"training diverged at epoch {epoch + 1}: the loss is not finite; lower "
                             f"training.learning_rate (now {training['learning_rate']:g})")
        history.append(row)
        monitor = val_metrics["torque_rmse"]
        if float(training["energy_weight"]) > 0 and epoch == first_full_weight:
            # Models from before the energy term reached full weight are not kept as best, and
            # early stopping counts afresh: their energies were not trained yet.
            best, stale = math.inf, 0
        if scheduler is not None:
            scheduler.step(monitor) if training["lr_schedule"] == "plateau" else scheduler.step()
        if monitor < best * (1.0 - float(training["early_stop_min_delta"])):
            best, best_epoch, stale = monitor, epoch + 1, 0
            if ranks.rank == 0:
                record = model_record(model, data_records, cfg)
                record["metrics"] = {"epoch": epoch + 1, "train": train_metrics, "val": val_metrics,
                                     "data": data_scale}
                save_model(model_path, record)
        else:
            stale += 1
        stopped_early = (int(training["early_stop_patience"]) > 0 and stale >= int(training["early_stop_patience"])
                         and (float(training["energy_weight"]) == 0 or epoch >= first_full_weight))
        if ranks.rank == 0:
            _write_csv(log_path, history)
            with atomic_write(ckpt_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict() if scheduler is not None else None,
                            "epoch": epoch + 1, "history": history, "best": best, "best_epoch": best_epoch,
                            "stale": stale, "stopped_early": stopped_early, "config": cfg}, tmp)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val_torque=f"{val_metrics['torque_rmse']:.3g}", best=f"{best:.3g}",
                            lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        if stopped_early:
            if bar is not None:
                bar.write(f"early stop at epoch {epoch + 1}: no better validation torque RMSE for {stale} epochs")
            break
    if bar is not None:
        bar.close()
    best_rec = None
    if ranks.rank == 0:
        _write_csv(log_path, history)
        best_rec = torch.load(model_path, map_location="cpu", weights_only=True)
    best_rec = ranks.broadcast(best_rec)
    has_test = any(len(p.test) for p in parts)
    if has_test or (cfg["output"]["plots"] and ranks.rank == 0):
        if ranks.rank == 0:
            best_model = load_model(model_path, lattices[0]).to(device)
        else:
            best_model = copy.deepcopy(model)
            best_model.load_state_dict(best_rec["state_dict"])
        best_model.eval()
    if has_test:
        # Trajectories never trained on and never used to pick the model: the held-out error.
        best_rec["metrics"]["test"] = evaluate(best_model, parts, "test", batch_size, ranks)
        best_rec["metrics"]["test"]["frames"] = int(sum(len(p.test) for p in parts))
        best_rec["metrics"]["test"]["torque_rms"] = torque_rms(parts, "test")
    if ranks.rank == 0:
        (run_dir / "metrics.json").write_text(json.dumps(best_rec["metrics"], indent=2))
        if cfg["output"]["plots"]:
            write_plots(best_model, parts, "val" if has_val else "train", batch_size, run_dir / "plots")
    ranks.barrier()  # every rank returns once the run's files are written
    return TrainingResult(run_dir, model_path, best_rec["metrics"]["epoch"],
                          {k: best_rec["metrics"][k] for k in ("train", "val", "test") if k in best_rec["metrics"]},
                          history, stopped_early, ranks.rank)


def write_plots(model, parts: list[_Part], split: str, batch_size: int, out_dir: Path) -> None:
    """Parity plots (torque, field components; energy per site) and the histogram of torque
    errors on `split`, as PNG plus the data in an .npz."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    t_true, t_pred, h_true, h_pred, e_true, e_pred = [], [], [], [], [], []
    for part in parts:
        idx = getattr(part, split)
        for start in range(0, len(idx), batch_size):
            sel = torch.as_tensor(idx[start:start + batch_size])
            s = part.spins[sel]
            ep, hp, _ = predict(model, s, part.neighbors, mu=None if part.mu is None else part.mu[sel])
            n = s.shape[1]
            h_true.append(part.fields[sel].reshape(-1, 3))
            h_pred.append(hp.detach().reshape(-1, 3))
            t_true.append(torch.linalg.cross(s, part.fields[sel], dim=-1).reshape(-1, 3))
            t_pred.append(torch.linalg.cross(s, hp.detach(), dim=-1).reshape(-1, 3))
            e_true.append(part.energy[sel] / n)
            e_pred.append(ep.detach() / n)
    arr = {k: torch.cat(v).double().cpu().numpy() for k, v in
           dict(torque_true=t_true, torque_pred=t_pred, field_true=h_true, field_pred=h_pred,
                energy_per_site_true=e_true, energy_per_site_pred=e_pred).items()}
    np.savez(out_dir / f"parity_{split}.npz", **arr)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (name, true, pred) in zip(axes, [("torque components", arr["torque_true"], arr["torque_pred"]),
                                             ("field components", arr["field_true"], arr["field_pred"]),
                                             ("energy per site", arr["energy_per_site_true"],
                                              arr["energy_per_site_pred"])]):
        true, pred = true.ravel(), pred.ravel()
        ax.plot(true, pred, ".", ms=2, alpha=0.4)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        rmse = float(np.sqrt(np.mean((pred - true) ** 2)))
        ax.set(xlabel=f"exact {name}", ylabel=f"model {name}", title=f"{name} ({split}), RMSE {rmse:.3g}")
    fig.tight_layout()
    fig.savefig(out_dir / f"parity_{split}.png", dpi=120)
    plt.close(fig)
    err = np.linalg.norm(arr["torque_pred"] - arr["torque_true"], axis=1)
    scale = np.linalg.norm(arr["torque_true"], axis=1)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.hist(err, bins=60, alpha=0.8, label="|T_model - T_exact|")
    ax.axvline(np.sqrt(np.mean(scale ** 2)), color="k", ls="--", lw=0.8, label="RMS |T_exact|")
    ax.set(xlabel="torque error per site", ylabel="sites", title=f"torque errors ({split})")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"torque_error_hist_{split}.png", dpi=120)
    plt.close(fig)
