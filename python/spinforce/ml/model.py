"""Behler-Parrinello force field: site energies from an MLP on normalised descriptors.

E = sum_i eps_i,  eps_i = shift + scale * MLP((f_i - mean) / std),  H_i = -dE/dS_i (autograd).
The same module is trained in Python and exported as TorchScript for the C++ provider.

With ``mu_input`` the site energy is a site grand potential that also takes the chemical
potential, omega_i = shift - density_mean (mu - mu_mean) + scale * MLP([(f_i - mean) / std,
(mu - mu_mean) / mu_std]) (the linear term, with the mean training density, is most of the mu
dependence: the network learns what is left); the local electron density is n_i = -d omega_i / d mu. Such a model runs in one of two ensembles, set
before export: ``fixed_mu`` (E = Omega(S, mu), H = -dOmega/dS) or ``fixed_filling`` f, where
forward solves sum_i n_i(mu) = N_e = f * 2N for mu (a fixed number of safeguarded Newton steps,
`ChemicalPotentialSolve`) and returns F = Omega(S, mu*) + mu* N_e and H = -dOmega/dS at mu*
(by the envelope theorem the gradient of F at fixed N_e).

Model file (torch.save of a dict), format "spinforce-ml-model" version 1:
  format, format_version, spinforce_version, lattice_kind,
  descriptor {kind, version, settings}, architecture {hidden, activation, dtype},
  state_dict (MLP weights and the normalisation buffers), normalisation (mean, std, shift, scale,
  also inside state_dict; mu_mean, mu_std, mu_min, mu_max, density_mean for mu_input models; architecture
  then has mu_input: true), training_data [{path, method, model, lattice_shape, frames}], config.
"""
from __future__ import annotations

import contextlib
import copy
import math
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..descriptors.registry import make_descriptor
from ..outputs import atomic_write

__all__ = ["SiteEnergyModel", "ChemicalPotentialSolve", "set_ensemble", "DEFAULT_NEWTON_STEPS", "DEFAULT_SAMPLE_STEPS", "build_model", "save_model", "load_model", "export_torchscript", "compute_fields",
           "quiet_torchscript", "MODEL_FORMAT", "MODEL_FORMAT_VERSION", "TORCHSCRIPT_FORMAT",
           "TORCHSCRIPT_FORMAT_VERSION", "ACTIVATIONS", "DTYPES"]

MODEL_FORMAT = "spinforce-ml-model"
MODEL_FORMAT_VERSION = 1
TORCHSCRIPT_FORMAT = "spinforce-torchscript"
TORCHSCRIPT_FORMAT_VERSION = 1
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# The fixed-filling solve for mu (ChemicalPotentialSolve.solve_mu): DEFAULT_SAMPLE_STEPS Newton steps on a
# sample of the feature rows (every SAMPLE_STRIDE-th site, or image 0 of every site for a descriptor
# with point-group images), then DEFAULT_NEWTON_STEPS on all of them. bench/newton_steps.py, the
# shipped de_square_fixed_n committee on 8x8 .. 64x64 random and Neel-like states: the sample's root
# lies within 0.07 of the full one, and 4 full steps from it reach |sum_i n_i - N_e| / N_e < 1e-13 in
# float64 (float32: its 1e-7 floor in 2-3), as 8 full steps from the mean training mu did, at about
# half the cost.
DEFAULT_SAMPLE_STEPS = 6
DEFAULT_NEWTON_STEPS = 4
SAMPLE_STRIDE = 4


@contextlib.contextmanager
def quiet_torchscript():
    """TorchScript is deprecated in torch >= 2.10 but is what the C++ driver loads: keep it
    working and keep its deprecation warning out of users' output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*TorchScript.*deprecated")
        yield


def _activation_derivatives(activation: str, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sigma'(z), sigma''(z)) of the activation named `activation` (ACTIVATIONS)."""
    if activation == "silu":
        s = torch.sigmoid(z)
        return s * (1.0 + z * (1.0 - s)), s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    if activation == "tanh":
        t = torch.tanh(z)
        return 1.0 - t * t, -2.0 * t * (1.0 - t * t)
    return (z > 0).to(z.dtype), torch.zeros_like(z)  # relu


def _activation_backward(activation: str, grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """grad * sigma'(z), by the one fused kernel torch's own backward pass uses."""
    grad = grad.expand_as(z)
    if activation == "silu":
        return torch.ops.aten.silu_backward(grad, z)
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, torch.tanh(z))
    return torch.ops.aten.threshold_backward(grad, z, 0.0)  # relu


class ChemicalPotentialSolve:
    """The ensemble of a model whose site energies take the chemical potential (``mu_input``):
    the mu it runs at, fixed (``fixed_mu``) or solved for the electron count (``fixed_filling``).
    Used by SiteEnergyModel and the committee, which give `feature_rows(features, images)`: the
    first layer's products with the features, which do not depend on mu (one tensor per network),
    and `derivatives_from_rows(rows, mu, images)`: from them the site grand potentials and their
    first two mu-derivatives. The Newton steps of the solve reuse the products."""

    def ensemble_mu(self, features: torch.Tensor) -> Optional[torch.Tensor]:
        """The chemical potential of this evaluation (0-dim, no gradient), None for a model
        without mu input."""
        if not self.mu_input:
            return None
        if not math.isnan(self.fixed_filling):
            return self.solve_mu(features)
        if not math.isnan(self.fixed_mu):
            return torch.full((), self.fixed_mu, dtype=features.dtype, device=features.device)
        raise RuntimeError("this model takes the chemical potential as an input: set its ensemble first "
                           "(spinforce export MODEL --fixed-filling F or --mu MU; set_ensemble in Python)")

    @torch.jit.export  # read by MLForceField.chemical_potential (forward does not call it)
    def electron_count(self, features: torch.Tensor, mu: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N_e(mu), dN_e/dmu) with N_e = sum_i n_i = -dOmega/dmu, both 0-dim; `features` the
        descriptor's site_features."""
        return self.count_from_rows(self.feature_rows(features.detach(), self.images), mu, self.images)

    def count_from_rows(self, rows: List[torch.Tensor], mu: torch.Tensor, images: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """electron_count from the first layer's feature products of site rows (feature_rows), each
        run as `images` images (1: image 0 alone, or the model's point_group_image)."""
        _, first, second = self.derivatives_from_rows(rows, mu.detach(), images)
        return -first.sum().detach(), -second.sum().detach()

    def solve_mu(self, features: torch.Tensor) -> torch.Tensor:
        """mu with sum_i n_i(mu) = fixed_filling * 2N (`features` the descriptor's site_features).
        A cheap start first: `sample_steps` Newton steps from the mean training mu on a sample of
        the sites (image 0 of every site for a model that averages point-group images, else every
        SAMPLE_STRIDE-th site: a slice of fixed stride, no data-dependent shape); then
        `newton_steps` on all sites and images. The first layer's products with the features, most
        of a step's cost, are made once for all steps (feature_rows)."""
        features = features.detach()
        mu = torch.full((), self.mu_mean, dtype=features.dtype, device=features.device)
        if self.sample_steps > 0:
            sample = features[::self.sample_stride]
            mu = self.newton(self.feature_rows(sample, 1), sample.shape[0], 1, mu, self.sample_steps)
        return self.newton(self.feature_rows(features, self.images), features.shape[0], self.images, mu,
                           self.newton_steps)

    @torch.jit.export  # read by MLForceField.chemical_potential (forward does not call it)
    def chemical_potential(self, spins: torch.Tensor, neighbors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mu of the ensemble, N_e(mu)) for these spins, both 0-dim (a model with mu input)."""
        features = self.descriptor.site_features(spins, neighbors)
        mu = self.ensemble_mu(features)
        assert mu is not None
        return mu, self.electron_count(features, mu)[0]

    def newton(self, rows: List[torch.Tensor], num_sites: int, images: int, mu: torch.Tensor,
               steps: int) -> torch.Tensor:
        """`steps` Newton steps from mu towards the mu with fixed_filling * 2 electrons per site of
        `num_sites` site rows (their feature_rows, each run as `images` images), kept inside a bracket
        that every step narrows (a step that would leave it, or a non-increasing count, bisects
        instead). The bracket starts as the training range of mu widened by half its width on
        either side: mu never leaves it."""
        target = self.fixed_filling * 2.0 * float(num_sites)
        half = 0.5 * (self.mu_max - self.mu_min)
        lo = torch.full((), self.mu_min - half, dtype=mu.dtype, device=mu.device)
        hi = torch.full((), self.mu_max + half, dtype=mu.dtype, device=mu.device)
        for _ in range(steps):
            count, slope = self.count_from_rows(rows, mu, images)
            excess = count - target
            lo = torch.where(excess < 0, mu, lo)
            hi = torch.where(excess > 0, mu, hi)
            newton = mu - excess / slope
            # inclusive: a converged step lands on the end of the bracket it just moved
            inside = (slope > 0) & (newton >= lo) & (newton <= hi)
            mu = torch.where(inside, newton, 0.5 * (lo + hi))
        return mu

    def ensemble_energy(self, grand_potential: torch.Tensor, mu: Optional[torch.Tensor], num_sites: int):
        """The potential of the fields: Omega at fixed mu, F = Omega + mu N_e at fixed filling."""
        if mu is None or math.isnan(self.fixed_filling):
            return grand_potential
        return grand_potential + mu * (self.fixed_filling * 2.0 * float(num_sites))


def set_ensemble(model: nn.Module, *, fixed_filling: float | None = None, fixed_mu: float | None = None,
                 newton_steps: int = DEFAULT_NEWTON_STEPS, sample_steps: int = DEFAULT_SAMPLE_STEPS) -> nn.Module:
    """Set the ensemble a model with mu input runs in (in place; returns it): fixed electron
    count at filling N_e / 2N = fixed_filling in (0, 1), or fixed chemical potential fixed_mu
    (inside the mu range the model was trained on). Exactly one of them for a mu-input model,
    neither for a model without mu input. At a fixed filling mu is solved with sample_steps
    Newton steps on a sample of the sites, then newton_steps on all (ChemicalPotentialSolve)."""
    mu_input = bool(getattr(model, "mu_input", False))
    if not mu_input:
        if fixed_filling is not None or fixed_mu is not None:
            raise ValueError("fixed_filling / fixed_mu need a model trained with the chemical potential as input "
                             "(model.mu_input = true in the training config); this model is at the fixed mu of "
                             "its training data")
        return model
    if (fixed_filling is None) == (fixed_mu is None):
        raise ValueError("a model with the chemical potential as input runs at a fixed electron count or at a fixed "
                         "mu: give exactly one of fixed_filling (--fixed-filling F, F = N_e / 2N in (0, 1)) and "
                         f"fixed_mu (--mu MU, in the trained range [{model.mu_min:g}, {model.mu_max:g}])")
    for name, value, least in (("newton_steps", newton_steps, 1), ("sample_steps", sample_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= 100:
            raise ValueError(f"{name} must be an integer in [{least}, 100], got {value!r}")
    if fixed_filling is not None:
        f = float(fixed_filling)
        if not (math.isfinite(f) and 0.0 < f < 1.0):
            raise ValueError(f"fixed_filling (--fixed-filling) is the filling N_e / 2N and must be in (0, 1), "
                             f"got {fixed_filling!r}")
        model.fixed_filling, model.fixed_mu = f, math.nan
    else:
        mu = float(fixed_mu)
        if not (math.isfinite(mu) and model.mu_min <= mu <= model.mu_max):
            raise ValueError(f"fixed_mu (--mu) must be inside the range of mu the model was trained on, "
                             f"[{model.mu_min:g}, {model.mu_max:g}], got {fixed_mu!r}")
        model.fixed_mu, model.fixed_filling = mu, math.nan
    model.newton_steps = int(newton_steps)
    model.sample_steps = int(sample_steps)
    return model


POINT_GROUP_MODES = ("average", "one")


def set_point_group(model: nn.Module, mode: str) -> nn.Module:
    """How a model (or committee) on a descriptor with point-group images runs them, in place;
    returns it. "average" (as trained): each site energy is the network's mean over the |G|
    images of its neighbourhood, exactly symmetric under the lattice's point group. "one": each
    network reads one image, member k of a committee image k mod |G| (so the committee's mean
    still spans K images): 1/|G| of the network's cost, for members trained on one image per site
    (training.point_group = "sample"), whose single images are as accurate as their mean; the
    fields are then symmetric only up to the members' differences between images (docs/ml.md,
    "One point-group image per member")."""
    if mode not in POINT_GROUP_MODES:
        raise ValueError(f"point group (--point-group) must be one of {list(POINT_GROUP_MODES)}, got {mode!r}")
    members = list(model.members) if hasattr(model, "members") else [model]
    images = int(members[0].descriptor.images)
    if mode == "one" and images == 1:
        raise ValueError(f"--point-group one: the {members[0].descriptor_kind} descriptor has no point-group images "
                         "(its features are invariant already); nothing to choose")
    for k, member in enumerate(members):
        member.point_group_image = k % images if mode == "one" else -1
    for net in members + ([model] if hasattr(model, "members") else []):
        net.images = 1 if mode == "one" else images
        net.sample_stride = max(1, SAMPLE_STRIDE // net.images)
    return model


def point_group_mode(model: nn.Module) -> str:
    """The set_point_group mode a model or committee (or an exported file of one) runs in."""
    first = next(iter(model.members.children())) if hasattr(model, "members") else model
    return "one" if int(getattr(first, "point_group_image", -1)) >= 0 else "average"


class SiteEnergyModel(ChemicalPotentialSolve, nn.Module):
    """Descriptor -> normalisation -> MLP site energies -> total energy and fields.

    forward(spins (N,3), neighbors (N,m)) -> (energy (0-dim), fields (N,3)) in the model dtype,
    with ``neighbors = lattice.neighbor_table(model.neighbor_offsets)``. Works for any N.
    With mu_input the site energies are site grand potentials at a chemical potential: the
    one of the ensemble (set_ensemble) in forward, any given one in site_energies.
    """

    def __init__(self, descriptor: nn.Module, descriptor_kind: str, hidden, activation: str = "silu",
                 dtype: str = "float64", mu_input: bool = False):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive layer widths, got {hidden}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if mu_input and activation == "relu":
            # densities -d omega/d mu would be piecewise constant in mu: no Newton solve, no smooth fit
            raise ValueError("a model with mu input needs a smooth activation: activation must be 'silu' or 'tanh' "
                             "with mu_input, got 'relu'")
        self.descriptor = descriptor
        # Metadata travels inside the TorchScript file; the C++ provider checks it.
        self.format: str = TORCHSCRIPT_FORMAT
        self.format_version: int = TORCHSCRIPT_FORMAT_VERSION
        self.lattice_kind: str = descriptor.lattice_kind
        self.descriptor_kind: str = descriptor_kind
        self.descriptor_version: int = int(descriptor.version)
        self.images: int = int(descriptor.images)  # feature rows per site, averaged over (image_mean)
        self.sample_stride: int = max(1, SAMPLE_STRIDE // self.images)  # the solve's site sample (solve_mu)
        # -1: the site energy is the mean over the descriptor's point-group images (exactly
        # symmetric); g >= 0: image g alone, images = 1 (set_point_group; an export option)
        self.point_group_image: int = -1
        self.hidden = hidden
        self.activation = activation
        self.dtype_name = dtype
        # With mu_input the network reads the chemical potential as one more feature.
        self.mu_input: bool = bool(mu_input)
        self.mu_mean: float = 0.0
        self.mu_std: float = 1.0
        self.mu_min: float = 0.0  # the range of mu in the training data
        self.mu_max: float = 0.0
        self.density_mean: float = 0.0  # electrons per site of the training data
        self.fixed_mu: float = math.nan       # the ensemble (set_ensemble); NaN: not this one
        self.fixed_filling: float = math.nan
        self.newton_steps: int = DEFAULT_NEWTON_STEPS
        self.sample_steps: int = DEFAULT_SAMPLE_STEPS
        F = int(descriptor.num_features)
        layers: list[nn.Module] = []
        width = F + int(self.mu_input)
        # initial weights drawn in float32 whatever torch's default dtype (then cast to dtype): a
        # seed gives the same model in any process (committee members train in worker processes)
        for h in hidden:
            layers += [nn.Linear(width, h, dtype=torch.float32), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, 1, dtype=torch.float32))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("neighbor_offsets", descriptor.neighbor_offsets.clone())
        # (F, images): the column of image g's row that holds column j of the site row (the inverse
        # of image_columns[g]); not saved, rebuilt from the descriptor
        self.register_buffer("image_sources", torch.argsort(descriptor.image_columns, dim=1).t().contiguous(),
                             persistent=False)
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

    def set_mu_normalisation(self, mu_values, density_mean: float) -> None:
        """Normalisation and range of the chemical potential from the training frames' mu, and
        their mean density (electrons per site)."""
        mu = torch.as_tensor(mu_values, dtype=torch.float64)
        self.mu_mean, self.mu_min, self.mu_max = float(mu.mean()), float(mu.min()), float(mu.max())
        self.mu_std = max(float(mu.std(unbiased=False)), 1e-6)
        self.density_mean = float(density_mean)

    @torch.jit.export  # read by MLForceField.site_energies (forward does not call it)
    def site_energies(self, spins: torch.Tensor, neighbors: torch.Tensor,
                      mu: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N,) site energies eps_i (site grand potentials omega_i at mu, 0-dim or (N,), for a
        model with mu input); spins in the model dtype."""
        return self.energies_from_features(self.descriptor.site_features(spins, neighbors), mu)

    def energies_from_features(self, features: torch.Tensor, mu: Optional[torch.Tensor] = None,
                               images: Optional[int] = None) -> torch.Tensor:
        """(N,) site energies from raw descriptor rows (N, F), one per site: a committee computes them
        once and runs every member's network on them. `images`: the images each row is run as, by
        default the descriptor's, the rows its site_features; 1: each row is one image's row as it
        stands (training's image sampling; image_features)."""
        return self._site_energies(self._network(self._first_layer(features, mu, images)), mu, images)

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        """The layers of the MLP after the first Linear, on its outputs (_first_layer)."""
        for index, layer in enumerate(self.mlp):
            if index > 0:
                x = layer(x)
        return x

    def _site_energies(self, out: torch.Tensor, mu: Optional[torch.Tensor], images: Optional[int] = None) -> torch.Tensor:
        """(N,) site energies from the network's outputs (N * images, 1) on every image row."""
        base = self.energy_shift
        if self.mu_input:
            assert mu is not None  # _first_layer raised otherwise
            base = base - self.density_mean * (mu.to(out.dtype) - self.mu_mean)
        return base + self.energy_scale * self.image_mean(out.squeeze(-1), images)

    def image_mean(self, rows: torch.Tensor, images: Optional[int] = None) -> torch.Tensor:
        """(N * images,) network outputs -> (N,) their mean over each site's images (the
        point-group average of a descriptor with images > 1; the identity for one image).
        `images`: rows to a site, by default the descriptor's (1 for the solve's site sample)."""
        n = self.images if images is None else images
        if n == 1:
            return rows
        return rows.reshape(-1, n).mean(1)

    def _first_layer(self, features: torch.Tensor, mu: Optional[torch.Tensor] = None,
                     images: Optional[int] = None, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N * images, H): the first Linear layer on the normalised features of every image of the
        N rows, and, with mu input, on (mu - mu_mean) / mu_std (mu 0-dim or (N,)), the input after
        the features. Image g of a row is its columns image_columns[g]: instead of gathering them
        (N * images rows of F), the layer's weights are, and one product (N, F) x (F, images * H)
        gives all images (about half the cost of a force evaluation). The feature mean and std
        are the same for the columns that images exchange (training takes them over all images).
        `weight`: _image_weight(images), if the caller has it already."""
        n = self.images if images is None else images
        out = self._feature_products(features, n, weight)
        if self.mu_input:
            if mu is None:
                raise RuntimeError("this model takes the chemical potential mu as an input; none was given")
            out = self._add_mu(out, mu, n)
        return out.reshape(features.shape[0] * n, -1)

    def _feature_products(self, features: torch.Tensor, images: int, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, images * H): the first layer on the normalised features of every image, with its
        bias, without the mu input (_first_layer)."""
        x = (features - self.feature_mean) / self.feature_std
        if weight is None:
            weight = self._image_weight(images)
        return torch.addmm(self.mlp[0].bias.repeat(images), x, weight)

    def _add_mu(self, products: torch.Tensor, mu: torch.Tensor, images: int) -> torch.Tensor:
        """_feature_products (N, images * H) plus the first layer on (mu - mu_mean) / mu_std."""
        m = (mu.to(products.dtype) - self.mu_mean) / self.mu_std
        return products + m.unsqueeze(-1) * self.mlp[0].weight[:, self.feature_mean.shape[0]].repeat(images)

    def _image_weight(self, images: int) -> torch.Tensor:
        """(F, images * H): the first layer's feature weights, transposed, block g those of image g
        with its rows where image g reads them (image_columns; for one image the weights, or with
        point_group_image = g those of image g)."""
        num_features = self.feature_mean.shape[0]
        weight = self.mlp[0].weight[:, :num_features].t()
        if images == 1:
            if self.point_group_image > 0:  # a site row read as image g: block g of the weights below
                return weight.index_select(0, self.image_sources[:, self.point_group_image])
            return weight
        # image g reads column columns[g, k] where its row has column k: row k of the weights
        # goes to column columns[g, k] of the site row, so row j of block g is row image_sources[j, g]
        return weight.index_select(0, self.image_sources.reshape(-1)).reshape(num_features, -1)

    def energies_and_gradient(self, features: torch.Tensor, mu: Optional[torch.Tensor] = None):
        """(site energies (N,), d(sum_i eps_i)/d features (N, F)) from the site rows (site_features)
        at a 0-dim mu (mu input): energies_from_features and the gradient by a backward pass
        written out, layer by layer (no autograd graph of the network: about a third less time
        than autograd takes for a force evaluation, in TorchScript). Inference only: training
        differentiates the fields again and keeps autograd."""
        features = features.detach()  # the gradient is the one computed here
        weight = self._image_weight(self.images)
        x = self._first_layer(features, mu, weight=weight)
        before: List[torch.Tensor] = []   # the input of every activation
        weights: List[torch.Tensor] = []  # the weights of every Linear after the first
        for index, layer in enumerate(self.mlp):
            if index == 0:  # done above
                pass
            elif hasattr(layer, "weight"):  # Linear (hasattr, not isinstance: TorchScript resolves it)
                weights.append(layer.weight)
                x = layer(x)
            else:
                before.append(x)
                x = layer(x)
        # d eps_i / d (last hidden layer) of every image row: the last weights times scale / images
        grad = weights[-1] * (self.energy_scale / self.images)
        for k in range(len(before) - 1, -1, -1):
            grad = _activation_backward(self.activation, grad, before[k])
            if k > 0:
                grad = grad.matmul(weights[k - 1])
        grad = grad.reshape(features.shape[0], -1).matmul(weight.t()) / self.feature_std
        return self._site_energies(x, mu), grad

    @torch.jit.export  # the densities and their slope, also from a TorchScript file (the solve uses the parts)
    def grand_potential_derivatives(self, features: torch.Tensor, mu: torch.Tensor, images: Optional[int] = None):
        """(omega_i, d omega_i/d mu, d2 omega_i/d mu2), each (N,), at a 0-dim mu (`images` rows
        to a site, by default the descriptor's: image_mean): the network
        carries the first two mu-derivatives of every layer's output forward with its values
        (no autograd; about 3 forward passes, several times cheaper than differentiating twice)."""
        n = self.images if images is None else images
        return self.derivatives_from_rows(self.feature_rows(features, n), mu, n)

    def feature_rows(self, features: torch.Tensor, images: int) -> List[torch.Tensor]:
        """[the first layer's products with the features of every image (N, images * H)]: the part
        of grand_potential_derivatives that does not depend on mu (ChemicalPotentialSolve)."""
        return [self._feature_products(features, images)]

    def derivatives_from_rows(self, rows: List[torch.Tensor], mu: torch.Tensor, images: int):
        """grand_potential_derivatives from feature_rows."""
        x = self._add_mu(rows[0], mu, images).reshape(rows[0].shape[0] * images, -1)
        # d/dmu of the first layer's output: only its input (mu - mu_mean) / mu_std moves (a
        # division by the float, not by a tensor of it: TorchScript would round that to float32)
        d1 = self.mlp[0].weight[:, -1:].t() / self.mu_std
        d2 = torch.zeros_like(d1)
        for index, layer in enumerate(self.mlp):
            if index == 0:  # done above
                pass
            elif hasattr(layer, "weight"):  # Linear (hasattr, not isinstance: TorchScript resolves it)
                x = layer(x)
                d1 = torch.nn.functional.linear(d1, layer.weight)
                d2 = torch.nn.functional.linear(d2, layer.weight)
            else:
                slope, curvature = _activation_derivatives(self.activation, x)
                d2 = curvature * d1 * d1 + slope * d2
                d1 = slope * d1
                x = layer(x)
        scale = self.energy_scale
        return (self.energy_shift - self.density_mean * (mu.to(x.dtype) - self.mu_mean) + scale * self.image_mean(x.squeeze(-1), images),
                scale * self.image_mean(d1.expand_as(x).squeeze(-1), images) - self.density_mean,
                scale * self.image_mean(d2.expand_as(x).squeeze(-1), images))

    def evaluate(self, spins: torch.Tensor, neighbors: torch.Tensor):
        """(site energies (N,), fields (N,3), mu): the fields are -d(sum of site energies)/dS; for
        a model with mu input the site energies are the site grand potentials at the ensemble's
        mu, which comes third (0-dim; None without mu input)."""
        s = spins.detach().to(self.feature_mean.dtype).requires_grad_(True)
        features = self.descriptor.site_features(s, neighbors)
        mu = self.ensemble_mu(features)
        site_energies, feature_grad = self.energies_and_gradient(features, mu)
        outputs: List[Optional[torch.Tensor]] = [feature_grad]
        grads = torch.autograd.grad([features], [s], outputs)
        grad = grads[0]
        assert grad is not None
        return site_energies.detach(), -grad, mu

    def site_energies_and_fields(self, spins: torch.Tensor, neighbors: torch.Tensor):
        """(site energies (N,), fields (N,3)): the fields are -d(sum of site energies)/dS."""
        site_energies, fields, _ = self.evaluate(spins, neighbors)
        return site_energies, fields

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor):
        site_energies, fields, mu = self.evaluate(spins, neighbors)
        return self.ensemble_energy(site_energies.sum(), mu, spins.shape[0]), fields


def build_model(lattice, descriptor_kind: str, descriptor_settings: dict, hidden, activation: str,
                dtype: str, mu_input: bool = False) -> SiteEnergyModel:
    descriptor = make_descriptor(descriptor_kind, lattice, descriptor_settings)
    return SiteEnergyModel(descriptor, descriptor_kind, hidden, activation, dtype, mu_input)


MU_SETTINGS = ("mu_mean", "mu_std", "mu_min", "mu_max", "density_mean")


def mu_settings(model: nn.Module) -> dict:
    """The mu-input settings of a model as plain values (what a model file stores)."""
    return {key: float(getattr(model, key)) for key in MU_SETTINGS} if model.mu_input else {}


def set_mu_settings(model: nn.Module, settings: dict) -> None:
    for key in MU_SETTINGS:
        setattr(model, key, float(settings[key]))


def model_record(model: SiteEnergyModel, training_data: list, config: dict) -> dict:
    """Everything needed to rebuild `model` (see the module docstring)."""
    from .._version import __version__
    d = model.descriptor
    return {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "spinforce_version": __version__,
        "lattice_kind": model.lattice_kind,
        "descriptor": {"kind": model.descriptor_kind, "version": int(d.version), "settings": d.settings()},
        "architecture": {"hidden": list(model.hidden), "activation": model.activation, "dtype": model.dtype_name,
                         "num_features": int(d.num_features), **({"mu_input": True} if model.mu_input else {})},
        "normalisation": {"feature_mean": model.feature_mean.tolist(), "feature_std": model.feature_std.tolist(),
                          "energy_shift": float(model.energy_shift), "energy_scale": float(model.energy_scale),
                          **mu_settings(model)},
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
    model = build_model(lattice, desc["kind"], desc["settings"], arch["hidden"], arch["activation"], arch["dtype"],
                        bool(arch.get("mu_input", False)))
    if int(model.descriptor.version) != int(desc["version"]):
        raise ValueError(f"the model {path} was trained with {desc['kind']} descriptor version {desc['version']}; "
                         f"this spinforce has version {model.descriptor.version}; retrain the model")
    model.load_state_dict(record["state_dict"])
    if model.mu_input:
        set_mu_settings(model, record["normalisation"])
    return model


def compute_fields(model: nn.Module, lattice, spins):
    """A FieldResult of `model` (a SiteEnergyModel or a committee) for spins (N,3) on
    `lattice`, as spinforce.MLForceField gives it for the exported file: float64 energy and
    fields, and the committee's per-site uncertainty (None for a single model). Arrays are
    numpy when the spins were numpy, torch tensors when they were torch."""
    from ..providers import FieldResult, as_spin_tensor
    check_ensemble(model)
    s, was_numpy = as_spin_tensor(spins)
    if s.dim() != 2 or s.shape != (lattice.num_sites, 3):
        raise ValueError(f"spins must have shape ({lattice.num_sites}, 3), got {tuple(s.shape)}")
    neighbors = lattice.neighbor_table(model.neighbor_offsets).to(model.neighbor_offsets.device)
    mu = model.evaluate(s.to(model.neighbor_offsets.device), neighbors)[-1] if model.mu_input else None
    out = model(s.to(model.neighbor_offsets.device), neighbors)

    def back(t):
        t = t.detach().to(s.device, torch.float64)
        return t.cpu().numpy() if was_numpy else t
    return FieldResult(energy=float(out[0]), fields=back(out[1]), uncertainty=back(out[2]) if len(out) > 2 else None,
                       mu=float("nan") if mu is None else float(mu))


def read_exported(path):
    """The TorchScript module of a force field written by `spinforce export`, or None if `path`
    is not one."""
    try:
        with quiet_torchscript():
            script = torch.jit.load(str(path), map_location="cpu")
    except Exception:  # not TorchScript at all
        return None
    return script if getattr(script, "format", None) == TORCHSCRIPT_FORMAT else None


def check_ensemble(model: nn.Module) -> None:
    """A model with mu input is exported for one ensemble (set_ensemble): refuse one without."""
    if model.mu_input and math.isnan(model.fixed_filling) and math.isnan(model.fixed_mu):
        raise ValueError("this model takes the chemical potential as an input: set its ensemble first, a fixed electron "
                         "count (set_ensemble(model, fixed_filling=F); spinforce export --fixed-filling F, F = N_e / 2N "
                         "in (0, 1)) or a fixed chemical potential (fixed_mu=MU; --mu MU, in the trained range "
                         f"[{model.mu_min:g}, {model.mu_max:g}])")


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
    check_ensemble(model)
    out = check_export_target(out, overwrite, lambda p: read_exported(p) is not None, "TorchScript file")
    model = copy.deepcopy(model).cpu().eval()
    # Fields need the gradient with respect to the spins only. Weights that require grad would
    # make TorchScript's autodiff compute their gradients too (about +50 % per call).
    model.requires_grad_(False)
    with quiet_torchscript(), atomic_write(out) as tmp:
        torch.jit.script(model).save(str(tmp))
    return out
