"""Committees of force fields: K models trained alike from different seeds, run as one.

The committee predicts the mean energy and mean fields of its members, and at every site the
spread of the members' torques,

    u_i = sqrt( sum_k |S_i x (H_i^k - <H_i>)|^2 / (K - 1) ),

the sample standard deviation of the torque vector over the K members. Where the members were
trained on similar states they agree and u_i is small; on states unlike the training data they
extrapolate differently, so u_i flags the sites (and frames) whose fields are not to be trusted
(Imbalzano et al., J. Chem. Phys. 154, 074102 (2021); Smith et al., J. Chem. Phys. 148, 241733
(2018) for committee-driven active learning).

    train_committee(config, out_dir, members)      out_dir/member{k}/model.pt, k = 0..K-1
    export_committee(model_paths, out_path)        one TorchScript file for spinforce.MLForceField
    uncertainty_calibration(committee, dataset)    does u rank the real errors? (dict + PNG)

A committee file has the format of a single exported model (``spinforce-torchscript``) plus
``committee_size`` and ``uncertainty_threshold`` (NaN: none); its forward returns
(energy, fields, uncertainty) where a single model returns (energy, fields).
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from ..outputs import atomic_write
from ..providers import uncertainty_scalars
from .model import (DEFAULT_NEWTON_STEPS, DEFAULT_SAMPLE_STEPS, DTYPES, TORCHSCRIPT_FORMAT, TORCHSCRIPT_FORMAT_VERSION,
                    ChemicalPotentialSolve, SiteEnergyModel, export_torchscript, load_model, set_ensemble)

__all__ = ["CommitteeModel", "train_committee", "committee_member_paths", "load_committee", "export_committee",
           "load_exported", "model_from_exported",
           "uncertainty_calibration", "spearman", "UncertaintyWarning", "COMMITTEE_FILE", "OUTPUTS"]

COMMITTEE_FILE = "committee.json"  # written by train_committee into its output directory


def _outputs() -> tuple:
    """What train_committee writes into its folder (outputs.py): the member runs and the index."""
    from ..outputs import under, with_partial
    from .training import OUTPUTS as TRAINING
    return under("member*", TRAINING) + with_partial(COMMITTEE_FILE)


OUTPUTS = _outputs()


class UncertaintyWarning(UserWarning):
    """A committee's uncertainty passed the threshold its file carries: it is extrapolating."""


class CommitteeModel(ChemicalPotentialSolve, nn.Module):
    """K site-energy models that share one descriptor, run as one TorchScript module.

    forward(spins (N,3), neighbors (N,m)) -> (mean energy (0-dim), mean fields (N,3),
    uncertainty (N,)), in the members' dtype. The descriptor features are computed once; each
    member's network runs on them and is differentiated separately (K backward passes).
    Members with mu input make a committee with mu input: its mu (fixed, or solved for the
    members' mean density at fixed filling) is the one at which every member is evaluated.
    """

    def __init__(self, members: list, uncertainty_threshold: float | None = None):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"a committee needs at least 2 members, got {len(members)}")
        if not all(isinstance(m, SiteEnergyModel) for m in members):
            raise ValueError("committee members must be spinforce site-energy models (load them with load_model)")
        _check_compatible(members)
        if uncertainty_threshold is not None:
            uncertainty_threshold = float(uncertainty_threshold)
            if not (math.isfinite(uncertainty_threshold) and uncertainty_threshold > 0):
                raise ValueError(f"uncertainty_threshold must be a finite number > 0 (a torque), "
                                 f"got {uncertainty_threshold}")
        first = members[0]
        # Metadata read by the C++ provider, as for a single model.
        self.format: str = TORCHSCRIPT_FORMAT
        self.format_version: int = TORCHSCRIPT_FORMAT_VERSION
        self.lattice_kind: str = first.lattice_kind
        self.descriptor_kind: str = first.descriptor_kind
        self.descriptor_version: int = first.descriptor_version
        self.committee_size: int = len(members)
        # NaN: no threshold (TorchScript attributes are typed; a float keeps it simple for C++).
        self.uncertainty_threshold: float = math.nan if uncertainty_threshold is None else uncertainty_threshold
        self.dtype_name = first.dtype_name
        self.mu_input: bool = first.mu_input
        # the members' common range of mu, and the committee's ensemble (model.set_ensemble)
        self.mu_mean: float = sum(m.mu_mean for m in members) / len(members)
        self.mu_min: float = max(m.mu_min for m in members)
        self.mu_max: float = min(m.mu_max for m in members)
        self.fixed_mu: float = math.nan
        self.fixed_filling: float = math.nan
        self.newton_steps: int = DEFAULT_NEWTON_STEPS
        self.sample_steps: int = DEFAULT_SAMPLE_STEPS
        self.descriptor = copy.deepcopy(first.descriptor)
        self.images: int = first.images  # feature rows per site (ChemicalPotentialSolve.solve_mu)
        self.sample_stride: int = first.sample_stride
        self.members = nn.ModuleList([copy.deepcopy(m) for m in members])
        self.register_buffer("neighbor_offsets", first.neighbor_offsets.clone())
        self.register_buffer("dtype_reference", torch.zeros((), dtype=DTYPES[first.dtype_name]))

    @property
    def threshold(self) -> float | None:
        return None if math.isnan(self.uncertainty_threshold) else self.uncertainty_threshold

    @torch.jit.export  # the densities and their slope, also from a TorchScript file (the solve uses the parts)
    def grand_potential_derivatives(self, features: torch.Tensor, mu: torch.Tensor, images: Optional[int] = None):
        """The members' mean (omega_i, d omega_i/d mu, d2 omega_i/d mu2) at mu (ChemicalPotentialSolve)."""
        n = self.images if images is None else images
        return self.derivatives_from_rows(self.feature_rows(features, n), mu, n)

    def feature_rows(self, features: torch.Tensor, images: int) -> List[torch.Tensor]:
        """Every member's first-layer products with the features (SiteEnergyModel.feature_rows)."""
        rows: List[torch.Tensor] = []
        for member in self.members:
            rows.append(member.feature_rows(features, images)[0])
        return rows

    def derivatives_from_rows(self, rows: List[torch.Tensor], mu: torch.Tensor, images: int):
        """grand_potential_derivatives from feature_rows: the members' mean."""
        values: List[torch.Tensor] = []
        first: List[torch.Tensor] = []
        second: List[torch.Tensor] = []
        for k, member in enumerate(self.members):
            v, d1, d2 = member.derivatives_from_rows([rows[k]], mu, images)
            values.append(v)
            first.append(d1)
            second.append(d2)
        return torch.stack(values).mean(0), torch.stack(first).mean(0), torch.stack(second).mean(0)

    def evaluate(self, spins: torch.Tensor, neighbors: torch.Tensor):
        """(mean site energies (N,), mean fields (N,3), uncertainty (N,), mu (0-dim; None
        without mu input))."""
        s = spins.detach().to(self.dtype_reference.dtype).requires_grad_(True)
        features = self.descriptor.site_features(s, neighbors)
        mu = self.ensemble_mu(features)
        site_energies: List[torch.Tensor] = []
        fields: List[torch.Tensor] = []
        for member in self.members:
            e, feature_grad = member.energies_and_gradient(features, mu)
            outputs: List[Optional[torch.Tensor]] = [feature_grad]
            grads = torch.autograd.grad([features], [s], outputs, retain_graph=True)
            grad = grads[0]
            assert grad is not None
            site_energies.append(e.detach())
            fields.append(-grad)
        h = torch.stack(fields)                                   # (K, N, 3)
        return torch.stack(site_energies).mean(0), h.mean(0), torque_spread(s.detach(), h), mu

    def site_energies_and_fields(self, spins: torch.Tensor, neighbors: torch.Tensor):
        """(mean site energies (N,), mean fields (N,3), uncertainty (N,))."""
        site_energies, fields, uncertainty, _ = self.evaluate(spins, neighbors)
        return site_energies, fields, uncertainty

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor):
        site_energies, fields, uncertainty, mu = self.evaluate(spins, neighbors)
        return self.ensemble_energy(site_energies.sum(), mu, spins.shape[0]), fields, uncertainty


def torque_spread(spins: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """(N,) the committee's per-site uncertainty: the sample standard deviation over the K members
    of their torques S_i x H_i, from the members' fields (K, N, 3)."""
    spread = torch.linalg.cross(spins.unsqueeze(0).expand_as(fields), fields - fields.mean(0), dim=-1)
    return torch.sqrt((spread * spread).sum(-1).sum(0) / (fields.shape[0] - 1))


def _check_compatible(members: list) -> None:
    """Members must share lattice kind, descriptor (kind, version, settings, buffers) and dtype,
    so that one descriptor evaluation serves them all."""
    first = members[0]
    ref_state = first.descriptor.state_dict()
    for k, m in enumerate(members[1:], start=1):
        what = None
        if m.lattice_kind != first.lattice_kind:
            what = f"lattice kind {m.lattice_kind!r} vs {first.lattice_kind!r}"
        elif (m.descriptor_kind, m.descriptor_version) != (first.descriptor_kind, first.descriptor_version):
            what = (f"descriptor {m.descriptor_kind} v{m.descriptor_version} vs "
                    f"{first.descriptor_kind} v{first.descriptor_version}")
        elif m.descriptor.settings() != first.descriptor.settings():
            what = f"descriptor settings {m.descriptor.settings()} vs {first.descriptor.settings()}"
        elif m.dtype_name != first.dtype_name:
            what = f"dtype {m.dtype_name} vs {first.dtype_name}"
        elif m.mu_input != first.mu_input:
            what = f"mu input {m.mu_input} vs {first.mu_input}"
        else:
            state = m.descriptor.state_dict()
            if state.keys() != ref_state.keys() or any(not torch.equal(state[key], ref_state[key]) for key in state):
                what = "descriptor tables"
        if what is not None:
            raise ValueError(f"committee member {k} differs from member 0 in its {what}; the members of a "
                             "committee must be trained with one descriptor and model config")


# --- files ------------------------------------------------------------------------------------
def committee_member_paths(source) -> list[Path]:
    """The member model files of `source`: a directory written by train_committee (its
    committee.json, else member*/model.pt), or a list of model.pt files (and such directories)."""
    if isinstance(source, (str, Path)):
        source = [source]
    paths: list[Path] = []
    for item in source:
        item = Path(item)
        if item.is_dir():
            index = item / COMMITTEE_FILE
            if index.exists():
                paths += [item / p for p in json.loads(index.read_text())["members"]]
            else:
                found = sorted(item.glob("member*/model.pt"), key=lambda p: _member_index(p.parent.name))
                if not found:
                    raise FileNotFoundError(f"{item} holds no committee: neither {COMMITTEE_FILE} nor member*/model.pt")
                paths += found
        elif item.exists():
            paths.append(item)
        else:
            raise FileNotFoundError(f"model file {item} does not exist")
    return paths


def load_exported(path) -> nn.Module:
    """The Python model (SiteEnergyModel or CommitteeModel) of a TorchScript file written by
    `spinforce export` -- e.g. a shipped committee, whose model.pt files are not shipped -- so
    that it can be exported again in another format (``spinforce export MODEL.ts --pt2 OUT``)."""
    from .model import read_exported
    script = read_exported(path)
    if script is None:
        raise ValueError(f"{path} is not a TorchScript force field written by `spinforce export`")
    return model_from_exported(script, path)


def model_from_exported(script, path) -> nn.Module:
    """load_exported of an exported module already loaded (model.read_exported) from `path`.
    Weights, normalisation and threshold come from the module; the architecture from its
    attributes."""
    from ..descriptors.registry import KINDS, setting_names
    from ..lattice import LATTICE_KINDS, Lattice
    from .model import MU_SETTINGS, build_model, point_group_mode, set_mu_settings, set_point_group
    scripts = list(script.members.children()) if hasattr(script, "committee_size") else [script]
    kind, descriptor_kind = script.lattice_kind, script.descriptor_kind
    if descriptor_kind not in KINDS:
        raise ValueError(f"{path} uses the descriptor kind {descriptor_kind!r}, which this spinforce lacks")
    # Any lattice that holds the neighbourhood: the model itself does not depend on the size.
    side = 2 * int(script.neighbor_offsets.abs().max()) + 2
    lattice = Lattice(kind, (side,) * LATTICE_KINDS[kind]["dim"])
    # A setting the file lacks was added to its descriptor after the file was written: the default.
    settings = {key: getattr(script.descriptor, key) for key in setting_names(descriptor_kind)
                if hasattr(script.descriptor, key)}
    members = []
    for member in scripts:
        mu_input = bool(getattr(member, "mu_input", False))
        model = build_model(lattice, descriptor_kind, settings, list(member.hidden), member.activation,
                            member.dtype_name, mu_input)
        if int(model.descriptor.version) != int(script.descriptor_version):
            raise ValueError(f"{path} was exported with {descriptor_kind} descriptor version "
                             f"{script.descriptor_version}; this spinforce has version {model.descriptor.version}")
        # A TorchScript file keeps every buffer, also those a model file leaves out (rebuilt from
        # the settings): load the model file's part.
        wanted = model.state_dict()
        stored = {k: v for k, v in member.state_dict().items() if k in wanted}
        if any(stored[k].shape != v.shape for k, v in wanted.items() if k in stored):
            # a file from before its descriptor's settings were kept in it (group descriptor)
            raise ValueError(f"{path} does not record the settings of its {descriptor_kind} descriptor (written by an "
                             f"older spinforce): export it again from its model.pt file(s)")
        model.load_state_dict(stored)
        if mu_input:
            set_mu_settings(model, {key: getattr(member, key) for key in MU_SETTINGS})
        members.append(model)
    if len(members) == 1:
        model = members[0]
    else:
        threshold = float(script.uncertainty_threshold)
        model = CommitteeModel(members, None if math.isnan(threshold) else threshold)
    if point_group_mode(script) != "average":  # as the file ran them (member k image k mod |G|)
        set_point_group(model, point_group_mode(script))
    if model.mu_input:  # the ensemble it was exported for
        filling, mu = float(script.fixed_filling), float(script.fixed_mu)
        set_ensemble(model, fixed_filling=None if math.isnan(filling) else filling,
                     fixed_mu=None if math.isnan(mu) else mu, newton_steps=int(script.newton_steps),
                     # a file from before the sample steps solves on all sites only
                     sample_steps=int(getattr(script, "sample_steps", 0)))
    return model


def _member_index(name: str) -> int:
    digits = name[len("member"):]
    return int(digits) if digits.isdigit() else 1 << 30


def load_committee(source, lattice=None, uncertainty_threshold: float | None = None) -> CommitteeModel:
    """A CommitteeModel of the trained members in `source` (see committee_member_paths)."""
    return CommitteeModel([load_model(p, lattice) for p in committee_member_paths(source)], uncertainty_threshold)


def export_committee(model_paths, out_path, *, uncertainty_threshold: float | None = None,
                     overwrite: bool = False, fixed_filling: float | None = None, fixed_mu: float | None = None,
                     newton_steps: int = DEFAULT_NEWTON_STEPS, sample_steps: int = DEFAULT_SAMPLE_STEPS) -> Path:
    """Write the committee of `model_paths` (model.pt files, or a train_committee directory) as
    one TorchScript file for spinforce.MLForceField. uncertainty_threshold (a torque, in the
    energy units of the data) is stored in the file: `spinforce simulate` warns once when a
    saved frame's largest per-site uncertainty passes it. Members with mu input need the
    ensemble: fixed_filling or fixed_mu (model.set_ensemble)."""
    committee = load_committee(model_paths, uncertainty_threshold=uncertainty_threshold)
    set_ensemble(committee, fixed_filling=fixed_filling, fixed_mu=fixed_mu, newton_steps=newton_steps,
                 sample_steps=sample_steps)
    return export_torchscript(committee, out_path, overwrite=overwrite)


# --- training ---------------------------------------------------------------------------------
def train_committee(config, out_dir, members: int, *, resume: bool = False, overwrite: bool = False,
                    progress: bool = True) -> list[Path]:
    """Train `members` models from one training config (path or dict, as
    spinforce.ml.training.train takes); member k goes to out_dir/member{k} with training seed
    seed + k (initial weights, validation split and data order all follow it). Returns the
    member model.pt paths; out_dir/committee.json lists them.

    resume=True keeps finished members, continues a half-trained one from its checkpoint and
    trains the missing ones; overwrite=True replaces the member runs. Either way out_dir may hold
    only what train_committee writes (outputs.py); overwrite removes nothing else.

    On several processes (torchrun, or a process group the caller has initialised) every process
    calls it alike: each member is trained data-parallel as by `spinforce train`, and rank 0
    alone writes files and shows progress.
    """
    from ..distributed import join_ranks
    from .training import load_config

    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 2:
        raise ValueError(f"members must be an integer >= 2 (committee size), got {members!r}")
    if resume and overwrite:
        raise ValueError("give at most one of resume and overwrite")
    cfg = load_config(config)
    ranks, _, started = join_ranks(cfg["training"]["device"], setting="training.device", command="learn")
    try:
        return _train_committee(cfg, Path(out_dir).resolve(), int(members), resume, overwrite,
                                progress and ranks.rank == 0, ranks)
    finally:
        if started:
            torch.distributed.destroy_process_group()


def _train_committee(cfg: dict, out_dir: Path, members: int, resume: bool, overwrite: bool, progress: bool,
                     ranks) -> list[Path]:
    from ..outputs import prepare_outputs
    from .training import OUTPUTS as TRAINING

    base_seed = int(cfg["training"]["seed"])
    dirs = [out_dir / f"member{k}" for k in range(members)]

    def prepare():
        # Each member's run replaces its own files once its data is checked (training.train);
        # here only the folder is checked, and members of a larger earlier committee are removed.
        prepare_outputs(out_dir, OUTPUTS, command="train_committee", keep=resume or overwrite, resumable=True)
        if overwrite:
            for stale in sorted(set(out_dir.glob("member*")) - set(dirs)):
                prepare_outputs(stale, TRAINING, command="train_committee", overwrite=True)
                stale.rmdir()
        out_dir.mkdir(parents=True, exist_ok=True)
    ranks.on_rank0(prepare)
    jobs = []
    for k, run_dir in enumerate(dirs):
        member_cfg = copy.deepcopy(cfg)
        member_cfg["training"]["seed"] = base_seed + k
        member_cfg["output"]["dir"] = str(run_dir)
        # rank 0 looks at the member's files, so that all ranks take one decision
        finished, continue_run = ranks.on_rank0(
            lambda: (resume and _finished(run_dir, member_cfg), resume and (run_dir / "checkpoint.pt").exists()))
        if not finished:
            # resuming a member stopped before its first checkpoint starts it afresh
            jobs.append((member_cfg, continue_run, overwrite or (resume and not continue_run), progress))
    paths = [run_dir / "model.pt" for run_dir in dirs]
    # one member per core on the CPU: a member's training keeps one thread busy but hardly two
    from ..runtime import run_independent, worker_processes
    cores, devices = (1 if ranks.distributed else cfg["training"]["threads"]), [cfg["training"]["device"]]
    if worker_processes(len(jobs), cores, devices) > 1:
        for member_cfg, *_ in jobs:
            member_cfg["training"]["threads"] = 0  # the worker's share of the cores
    run_independent(_train_member, jobs, cores=cores, devices=devices, progress=progress, desc="committee members")
    index = {"members": [str(p.relative_to(out_dir)) for p in paths],
             "seeds": [base_seed + k for k in range(members)], "config": cfg}

    def write_index():
        with atomic_write(out_dir / COMMITTEE_FILE) as tmp:
            tmp.write_text(json.dumps(index, indent=2))
    ranks.on_rank0(write_index)
    return paths


def _train_member(job) -> None:
    """One member's training: (training config, resume, overwrite, progress)."""
    from .training import train
    member_cfg, resume, overwrite, progress = job
    train(member_cfg, resume=resume, overwrite=overwrite, progress=progress)


def _finished(run_dir: Path, cfg: dict) -> bool:
    """Whether run_dir holds a completed training of cfg (all epochs, or stopped early)."""
    ckpt_path = run_dir / "checkpoint.pt"
    if not ((run_dir / "model.pt").exists() and (run_dir / "metrics.json").exists() and ckpt_path.exists()):
        return False
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    for section in ("data", "descriptor", "model"):
        if ckpt["config"][section] != cfg[section]:
            raise ValueError(f"cannot resume {run_dir}: config [{section}] differs from the one it was trained with")
    return bool(ckpt.get("stopped_early")) or int(ckpt["epoch"]) >= int(cfg["training"]["epochs"])


# --- does the uncertainty rank the errors? ------------------------------------------------------
def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    if len(counts) < len(x):  # average over ties
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks


def spearman(a, b) -> float:
    """Spearman rank correlation of two equally long 1-d samples (NaN when one is constant)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"spearman needs two samples of equal length >= 2, got {a.size} and {b.size}")
    ra, rb = _ranks(a) - (a.size + 1) / 2, _ranks(b) - (b.size + 1) / 2
    denominator = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def uncertainty_calibration(committee, dataset, *, out=None, bins: int = 10, device: str = "cpu",
                            progress: bool = False) -> dict:
    """Compare a committee's per-site uncertainty with its real torque errors on `dataset`.

    committee: an exported committee file (run through spinforce.MLForceField, as simulations
    run it), or a CommitteeModel. dataset: a spinforce dataset (path or Dataset) with exact
    fields, best frames never trained on. Returns a dict with the Spearman correlation between
    per-site uncertainty and per-site torque error |S x (H_model - H_exact)| (``spearman_site``),
    the same per frame between the largest site uncertainty and the frame's RMS torque error
    (``spearman_frame``), as a baseline the correlation between the size of the predicted torque
    and the error (``spearman_site_torque``: what the uncertainty must beat to tell more than
    "large torques, large errors"), the torque RMSE and RMS torque, and ``bins``: sites in `bins`
    equal-count bins of uncertainty, each with its mean uncertainty and RMS torque error. With
    `out` (a .png path) it writes the calibration plot there and the numbers next to it (.json).
    """
    from ..data import Dataset, read_dataset
    from ..providers import FieldResult  # noqa: F401  (the type compute() returns)

    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    lattice = ds.lattice()
    compute = _field_function(committee, lattice, device)
    iterator = range(ds.num_frames)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="calibration", unit="frame", dynamic_ncols=True)
    u_sites, err_sites, torque_pred, torque_sq = [], [], [], 0.0
    for i in iterator:
        s, h = ds.spins[i], ds.fields[i]
        result = compute(s)
        if result.uncertainty is None:
            raise ValueError("uncertainty_calibration needs a committee; this model gives no uncertainty")
        err = np.linalg.norm(np.cross(s, np.asarray(result.fields) - h), axis=1)
        torque_pred.append(np.linalg.norm(np.cross(s, np.asarray(result.fields)), axis=1))
        u_sites.append(np.asarray(result.uncertainty, dtype=float))
        err_sites.append(err)
        torque_sq += float((np.cross(s, h) ** 2).sum())
    u, err = np.stack(u_sites), np.stack(err_sites)          # (M, N)
    n_sites = u.size
    rms_torque = math.sqrt(torque_sq / n_sites)
    order = np.argsort(u.ravel(), kind="mergesort")
    groups = np.array_split(order, min(bins, n_sites))
    table = [{"uncertainty_mean": float(u.ravel()[g].mean()), "torque_rmse": float(np.sqrt((err.ravel()[g] ** 2).mean())),
              "sites": int(len(g))} for g in groups if len(g)]
    result = {
        "frames": int(ds.num_frames), "sites": int(n_sites), "dataset": ds.path,
        "spearman_site": spearman(u, err) if n_sites > 1 else float("nan"),
        "spearman_frame": spearman(u.max(1), np.sqrt((err ** 2).mean(1))) if ds.num_frames > 1 else float("nan"),
        "spearman_site_torque": spearman(np.stack(torque_pred), err) if n_sites > 1 else float("nan"),
        "rms_torque": rms_torque, "torque_rmse": float(np.sqrt((err ** 2).mean())),
        "relative_torque_rmse": float(np.sqrt((err ** 2).mean())) / rms_torque if rms_torque > 0 else float("nan"),
        **uncertainty_scalars(u),  # the same per-frame summary simulate records
        "uncertainty_rms": float(np.sqrt((u ** 2).mean())), "bins": table,
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _calibration_plot(result, u.ravel(), err.ravel(), out)
        result["png"] = str(out)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


def _field_function(committee, lattice, device: str):
    """spins (N,3) numpy -> FieldResult, for a committee file or a CommitteeModel."""
    if isinstance(committee, nn.Module):
        from .model import compute_fields
        model = committee.to(device)
        return lambda s: compute_fields(model, lattice, s)
    from .provider import MLForceField
    provider = MLForceField(committee, lattice, device=device)
    return provider.compute


def _calibration_plot(result: dict, u: np.ndarray, err: np.ndarray, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    ax = axes[0]
    x = np.array([b["uncertainty_mean"] for b in result["bins"]])
    y = np.array([b["torque_rmse"] for b in result["bins"]])
    ax.plot(x, y, "o-", label="binned (equal-count bins)")
    hi = float(max(x.max(), y.max())) * 1.05 if len(x) else 1.0
    ax.plot([0, hi], [0, hi], "k--", lw=0.8, label="RMS error = uncertainty")
    ax.set(xlabel="committee uncertainty (torque spread)", ylabel="RMS torque error",
           title=f"calibration: {result['frames']} frames, Spearman (sites) {result['spearman_site']:.2f}")
    ax.legend()
    ax = axes[1]
    ax.loglog(np.maximum(u, 1e-12), np.maximum(err, 1e-12), ".", ms=2, alpha=0.3)
    ax.set(xlabel="committee uncertainty per site", ylabel="torque error per site |S x dH|",
           title=f"sites (relative torque RMSE {result['relative_torque_rmse']:.2f})")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
