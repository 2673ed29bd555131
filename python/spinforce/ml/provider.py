"""``spinforce.MLForceField``: an exported force field (TorchScript or .pt2) run from C++ as a field provider."""
from __future__ import annotations

import math
import os
import warnings

from .. import _core
from ..providers import ProviderMixin

__all__ = ["MLForceField", "exported_neighbor_offsets", "ChemicalPotentialWarning"]


class ChemicalPotentialWarning(UserWarning):
    """A force field at a fixed electron count solved for a chemical potential outside the range
    it was trained on: the spins are unlike its training states (it is extrapolating)."""


def exported_neighbor_offsets(path):
    """(m, dim) int64 offsets of the neighbourhood of an exported force field (TorchScript or
    .pt2), read without a lattice: what a domain decomposition needs to size its halo."""
    import json

    import torch
    from .model import read_exported
    from .pt2 import read_pt2_manifest
    manifest = read_pt2_manifest(path)
    if manifest is not None:
        return torch.tensor(json.loads(manifest["neighbor_offsets"]), dtype=torch.int64)
    script = read_exported(path)
    if script is None:
        raise ValueError(f"{path} is not a force field written by `spinforce export` (TorchScript or .pt2)")
    return script.neighbor_offsets


class MLForceField(ProviderMixin, _core.MLForceField):
    """The ML field provider: ``MLForceField("model.ts", lattice, device="cpu")``.

    path: a TorchScript file written by ``spinforce export MODEL --torchscript OUT``, or a compiled
    package written by ``spinforce export MODEL --pt2 OUT`` (``format`` says which; a package runs
    only in the dtype and on the device type it was compiled for).
    lattice: a ``spinforce.Lattice`` of the kind the model was trained on, any size.
    device: "cpu" or "cuda[:k]", where the network runs; results come back on the device of the
    spins given to ``compute``. The network runs in C++ (torch::jit), so an integrator holding this
    provider does no Python work per step. ``compute(spins)`` returns energy and fields
    (density, mu and eigenvalues are not defined for a spin-only model; a model with mu input
    exported at a fixed filling solves for mu at every evaluation: ``chemical_potential(spins)``
    gives it). dtype: None (the
    model's own precision), "float32" or "float64": the precision the network runs in; float32
    is ~2.5x faster on CPU and changes the fields by ~1e-7 relative (far below any model's
    error); the fields are returned in float64 either way. For a committee file
    (``spinforce export`` of several models) they are the members' means, ``uncertainty`` holds
    the per-site spread of their torques, and ``committee_size`` and ``uncertainty_threshold``
    (None when the file has none) describe it; for a single model ``uncertainty`` is None.
    """

    def __init__(self, path, lattice, *, device: str = "cpu", dtype: str | None = None):
        if not isinstance(lattice, _core.Lattice):
            raise ValueError(f"lattice must be a spinforce.Lattice, got {type(lattice).__name__}")
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"force field file {path} does not exist")
        super().__init__(path, lattice, device=str(device), dtype=dtype)  # the core checks the file's manifest
        self.path = path
        self.lattice = lattice

    def _module(self):
        """The TorchScript module, loaded into Python on first use (site energies)."""
        if getattr(self, "_script", None) is None:
            import torch
            from .model import quiet_torchscript
            with quiet_torchscript():
                self._script = torch.jit.load(self.path, map_location=self.device)
        return self._script


    def site_energies(self, spins):
        """(N,) site energies eps_i whose sum is the energy (a committee: the members' mean).
        numpy in, numpy out; a tensor in, a tensor out (float64, on the device of the spins)."""
        import torch
        from ..providers import as_spin_tensor
        tensor, was_numpy = as_spin_tensor(spins)
        if tensor.shape != (self.num_sites, 3):
            raise ValueError(f"spins must have shape ({self.num_sites}, 3), got {tuple(tensor.shape)}")
        if self.format == "pt2":  # the package returns them with every evaluation
            e = self._site_energies(tensor)
            return e.numpy() if was_numpy else e
        m = self._module()
        dtype = next(iter(m.parameters())).dtype
        s = tensor.to(self.device, dtype)
        if getattr(m, "mu_input", False):
            # at the ensemble's mu (solved for at fixed filling, where each site also carries
            # mu N_e / N, so that they sum to F = Omega + mu N_e)
            with torch.jit.optimized_execution(False):
                out = m.evaluate(s, self.neighbors)
            e, mu = out[0], out[-1]
            if not math.isnan(m.fixed_filling):
                e = e + mu * 2.0 * m.fixed_filling
            e = e.detach().to(tensor.device, torch.float64)
            return e.numpy() if was_numpy else e
        # as in the C++ provider: the plain executor, without the optimising one's warm-up
        # (profiling runs, fuser compilation) on the first calls
        with torch.no_grad(), torch.jit.optimized_execution(False):
            if self.committee_size > 1:
                features = _site_rows(m, s, self.neighbors)
                e = torch.stack([member.energies_from_features(features) for member in m.members.children()]).mean(0)
            else:
                e = m.site_energies(s, self.neighbors)
        e = e.to(tensor.device, torch.float64)
        return e.numpy() if was_numpy else e

    @property
    def fixed_filling(self) -> float:
        """The filling N_e / 2N a model with mu input was exported for (NaN: none, e.g. a model
        at a fixed mu)."""
        if self.format != "torchscript":
            return float("nan")
        return float(getattr(self._module(), "fixed_filling", float("nan")))

    def chemical_potential(self, spins) -> float:
        """The chemical potential the file runs at for these spins: the one solved for at a
        fixed filling (what ``compute`` uses, not returned by it), the fixed one at a fixed mu;
        NaN for a model without mu input. A solved mu outside the range of mu the model was trained
        on, or an electron count the solve did not meet, warns once (ChemicalPotentialWarning)."""
        import torch
        from ..providers import as_spin_tensor
        m = self._module() if self.format == "torchscript" else None
        if m is None or not getattr(m, "mu_input", False):
            return float("nan")
        tensor, _ = as_spin_tensor(spins)
        if tensor.shape != (self.num_sites, 3):
            raise ValueError(f"spins must have shape ({self.num_sites}, 3), got {tuple(tensor.shape)}")
        dtype = next(iter(m.parameters())).dtype
        s = tensor.to(self.device, dtype)
        with torch.no_grad(), torch.jit.optimized_execution(False):
            if hasattr(m, "chemical_potential"):
                solved, counted = m.chemical_potential(s, self.neighbors)
            else:  # a file exported before chemical_potential: its networks read every image's row
                features = m.descriptor.features(s, self.neighbors)
                solved = m.ensemble_mu(features)
                counted = m.electron_count(features, solved)[0]
            mu, count = float(solved), float(counted)
            if math.isnan(m.fixed_filling) or getattr(self, "_mu_warned", False):
                return mu
        # the precision the solve reaches in the network's dtype
        self._check_solved_mu(m, mu, count, tolerance=1e-9 if dtype == torch.float64 else 1e-5)
        return mu

    def _check_solved_mu(self, m, mu: float, count: float, tolerance: float) -> None:
        """Warn once when the solve for mu at a fixed filling left the trained range of mu, or
        left the electron count off by more than `tolerance` of N_e."""
        target = m.fixed_filling * 2.0 * self.num_sites
        missed = abs(count - target) / target
        if m.mu_min <= mu <= m.mu_max and missed <= tolerance:
            return
        self._mu_warned = True
        if m.mu_min <= mu <= m.mu_max:
            why = (f"its {m.newton_steps} Newton steps leave the electron count off by {missed:.1e} of N_e (export "
                   "with more: `spinforce export ... --fixed-filling F --newton-steps K`)")
        else:
            # the solve stays inside the trained range widened by half its width on either side
            why = (f"outside the range the model was trained on, [{m.mu_min:.4g}, {m.mu_max:.4g}], with the "
                   f"electron count off by {missed:.1e} of N_e: these spins are unlike its training states and its "
                   "fields are not to be trusted (run `spinforce learn` to add such states)")
        warnings.warn(f"the chemical potential solved for filling {m.fixed_filling:g} is {mu:.4g}, {why}; this "
                      "warning is shown once", ChemicalPotentialWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"MLForceField({self.path!r}, {self.lattice!r}, device={self.device!r}, dtype={self.dtype!r})"


def _site_rows(module, spins, neighbors):
    """The descriptor rows an exported module's networks read (energies_from_features): one per
    site (site_features); a file exported before site_features read every image's row (features)."""
    if hasattr(module.descriptor, "site_features"):
        return module.descriptor.site_features(spins, neighbors)
    return module.descriptor.features(spins, neighbors)
