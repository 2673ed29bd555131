"""Behler-Parrinello force field: site energies from an MLP on normalised descriptors.

E = sum_i eps_i,  eps_i = shift + scale * MLP((f_i - mean) / std),  H_i = -dE/dS_i (autograd).
The same module is trained in Python and exported as TorchScript for the C++ provider.

Model file (torch.save of a dict), format "spinforce-ml-model" version 1:
  format, format_version, spinforce_version, lattice_kind,
  descriptor {kind, version, settings}, architecture {hidden, activation, dtype},
  state_dict (MLP weights and the normalisation buffers), normalisation (mean, std, shift, scale,
  also inside state_dict), training_data [{path, method, model, lattice_shape, frames}], config.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from ..descriptors.registry import make_descriptor
from ..outputs import atomic_write

__all__ = ["SiteEnergyModel", "build_model", "save_model", "load_model", "export_torchscript", "compute_fields",
           "quiet_torchscript", "MODEL_FORMAT", "MODEL_FORMAT_VERSION", "TORCHSCRIPT_FORMAT",
           "TORCHSCRIPT_FORMAT_VERSION", "ACTIVATIONS", "DTYPES"]

MODEL_FORMAT = "spinforce-ml-model"
MODEL_FORMAT_VERSION = 1
TORCHSCRIPT_FORMAT = "spinforce-torchscript"
TORCHSCRIPT_FORMAT_VERSION = 1
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@contextlib.contextmanager
def quiet_torchscript():
    """TorchScript is deprecated in torch >= 2.10 but is what the C++ driver loads: keep it
    working and keep its deprecation warning out of users' output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*TorchScript.*deprecated")
        yield


class SiteEnergyModel(nn.Module):
    """Descriptor -> normalisation -> MLP site energies -> total energy and fields.

    forward(spins (N,3), neighbors (N,m)) -> (energy (0-dim), fields (N,3)) in the model dtype,
    with ``neighbors = lattice.neighbor_table(model.neighbor_offsets)``. Works for any N.
    """

    def __init__(self, descriptor: nn.Module, descriptor_kind: str, hidden, activation: str = "silu",
                 dtype: str = "float64"):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive layer widths, got {hidden}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.descriptor = descriptor
        # Metadata travels inside the TorchScript file; the C++ provider checks it.
        self.format: str = TORCHSCRIPT_FORMAT
        self.format_version: int = TORCHSCRIPT_FORMAT_VERSION
        self.lattice_kind: str = descriptor.lattice_kind
        self.descriptor_kind: str = descriptor_kind
        self.descriptor_version: int = int(descriptor.version)
        self.hidden = hidden
        self.activation = activation
        self.dtype_name = dtype
        F = int(descriptor.num_features)
        layers: list[nn.Module] = []
        width = F
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("neighbor_offsets", descriptor.neighbor_offsets.clone())
        self.register_buffer("feature_mean", torch.zeros(F))
        self.register_buffer("feature_std", torch.ones(F))
        self.register_buffer("energy_shift", torch.zeros(()))
        self.register_buffer("energy_scale", torch.ones(()))
        self.to(DTYPES[dtype])

    def set_normalisation(self, mean, std, shift, scale) -> None:
        """Feature mean/std (std floored), per-site energy shift and output scale."""
        dt = self.feature_mean.dtype
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=dt))
        self.feature_std.copy_(torch.clamp(torch.as_tensor(std, dtype=dt), min=1e-6))
        self.energy_shift.fill_(float(shift))
        self.energy_scale.fill_(float(scale))

    def site_energies(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """(N,) site energies eps_i; spins in the model dtype."""
        return self.energies_from_features(self.descriptor.features(spins, neighbors))

    def energies_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) site energies from raw descriptor features (N, F): a committee computes the
        features once and runs every member's network on them."""
        x = (features - self.feature_mean) / self.feature_std
        return self.energy_shift + self.energy_scale * self.mlp(x).squeeze(-1)

    def site_energies_and_fields(self, spins: torch.Tensor, neighbors: torch.Tensor):
        """(site energies (N,), fields (N,3)): the fields are -d(sum of site energies)/dS."""
        s = spins.detach().to(self.feature_mean.dtype).requires_grad_(True)
        site_energies = self.site_energies(s, neighbors)
        grads = torch.autograd.grad([site_energies.sum()], [s])
        grad = grads[0]
        assert grad is not None
        return site_energies.detach(), -grad

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor):
        site_energies, fields = self.site_energies_and_fields(spins, neighbors)
        return site_energies.sum(), fields


def build_model(lattice, descriptor_kind: str, descriptor_settings: dict, hidden, activation: str,
                dtype: str) -> SiteEnergyModel:
    descriptor = make_descriptor(descriptor_kind, lattice, descriptor_settings)
    return SiteEnergyModel(descriptor, descriptor_kind, hidden, activation, dtype)


def model_record(model: SiteEnergyModel, training_data: list, config: dict) -> dict:
    """Everything needed to rebuild `model` (see the module docstring)."""
    from .._version import __version__
    d = model.descriptor
    return {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "spinforce_version": __version__,
        "lattice_kind": model.lattice_kind,
        "descriptor": {"kind": model.descriptor_kind, "version": int(d.version), "settings": d.settings()},
        "architecture": {"hidden": list(model.hidden), "activation": model.activation, "dtype": model.dtype_name,
                         "num_features": int(d.num_features)},
        "normalisation": {"feature_mean": model.feature_mean.tolist(), "feature_std": model.feature_std.tolist(),
                          "energy_shift": float(model.energy_shift), "energy_scale": float(model.energy_scale)},
        "training_data": training_data,
        "config": config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def save_model(path, record: dict) -> None:
    with atomic_write(path) as tmp:
        torch.save(record, tmp)


def read_model_record(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript archive")
            record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch.save file; torch's own message is about pickling, not about this
        raise ValueError(f"{path} is not a spinforce model file (the model.pt written by `spinforce train`)") from None
    if isinstance(record, torch.jit.ScriptModule):
        raise ValueError(f"{path} is an exported TorchScript file, not a spinforce model file; give the model.pt "
                         "written by `spinforce train`")
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a spinforce model file (format {MODEL_FORMAT!r})")
    if int(record.get("format_version", -1)) != MODEL_FORMAT_VERSION:
        raise ValueError(f"{path} has model format_version {record.get('format_version')}; "
                         f"this spinforce reads version {MODEL_FORMAT_VERSION}")
    return record


def load_model(path, lattice=None) -> SiteEnergyModel:
    """Rebuild a trained model. `lattice` (any size, same kind as the model) defaults to the
    lattice of the first training dataset. A lattice of another kind, or a descriptor whose
    version differs from the one the model was trained with, raises ValueError."""
    record = read_model_record(path)
    kind = record["lattice_kind"]
    if lattice is None:
        from ..lattice import Lattice
        lattice = Lattice(kind, tuple(record["training_data"][0]["lattice_shape"]))
    if lattice.kind != kind:
        raise ValueError(f"the model {path} was trained on the {kind!r} lattice; it cannot run on a "
                         f"{lattice.kind!r} lattice")
    desc, arch = record["descriptor"], record["architecture"]
    model = build_model(lattice, desc["kind"], desc["settings"], arch["hidden"], arch["activation"], arch["dtype"])
    if int(model.descriptor.version) != int(desc["version"]):
        raise ValueError(f"the model {path} was trained with {desc['kind']} descriptor version {desc['version']}; "
                         f"this spinforce has version {model.descriptor.version}; retrain the model")
    model.load_state_dict(record["state_dict"])
    return model


def compute_fields(model: nn.Module, lattice, spins):
    """A FieldResult of `model` (a SiteEnergyModel or a committee) for spins (N,3) on
    `lattice`, as spinforce.MLForceField gives it for the exported file: float64 energy and
    fields, and the committee's per-site uncertainty (None for a single model). Arrays are
    numpy when the spins were numpy, torch tensors when they were torch."""
    from ..providers import FieldResult, as_spin_tensor
    s, was_numpy = as_spin_tensor(spins)
    if s.dim() != 2 or s.shape != (lattice.num_sites, 3):
        raise ValueError(f"spins must have shape ({lattice.num_sites}, 3), got {tuple(s.shape)}")
    neighbors = lattice.neighbor_table(model.neighbor_offsets.cpu()).to(model.neighbor_offsets.device)
    out = model(s.to(model.neighbor_offsets.device), neighbors)

    def back(t):
        t = t.detach().to(s.device, torch.float64)
        return t.cpu().numpy() if was_numpy else t
    return FieldResult(energy=float(out[0]), fields=back(out[1]), uncertainty=back(out[2]) if len(out) > 2 else None)


def read_exported(path):
    """The TorchScript module of a force field written by `spinforce export`, or None if `path`
    is not one."""
    try:
        with quiet_torchscript():
            script = torch.jit.load(str(path), map_location="cpu")
    except Exception:  # not TorchScript at all
        return None
    return script if getattr(script, "format", None) == TORCHSCRIPT_FORMAT else None


def check_export_target(out, overwrite: bool, is_ours, what: str) -> Path:
    """The checks before an export writes `out`: not a folder, not replaced without overwrite,
    and with overwrite only replaced if `is_ours(out)` (a file spinforce exported as `what`)."""
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give the path of the {what} to write")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; use --overwrite to replace it")
    if out.exists() and not is_ours(out):
        raise FileExistsError(f"{out} exists and is not a {what} spinforce exported; --overwrite replaces "
                              "only that: choose another output path (nothing was changed)")
    return out


def export_torchscript(model: nn.Module, out, overwrite: bool = False) -> Path:
    """Write `model` (a SiteEnergyModel or a committee.CommitteeModel) as TorchScript:
    forward(spins (N,3), neighbors (N,m)) -> (energy, fields[, uncertainty])."""
    out = check_export_target(out, overwrite, lambda p: read_exported(p) is not None, "TorchScript file")
    model = copy.deepcopy(model).cpu().eval()
    # Fields need the gradient with respect to the spins only. Weights that require grad would
    # make TorchScript's autodiff compute their gradients too (about +50 % per call).
    model.requires_grad_(False)
    with quiet_torchscript(), atomic_write(out) as tmp:
        torch.jit.script(model).save(str(tmp))
    return out
