"""The s-d model and its exact-diagonalisation field provider."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

from . import _core
from ._validate import real
from .lattice import Lattice
from .providers import ProviderMixin, as_spin_tensor

__all__ = ["SDModel", "ExactDiagonalization", "FixedMu", "mu_for_filling", "model_at_mu", "filling_at_mu"]


class SDModel(_core.SDModel):
    """s-d (Kondo-lattice) model H = -sum t_ij c+_is c_js - J sum_i S_i.(c+_i sigma c_i).

    Give exactly one of `mu` (grand canonical) and `filling` = N_e / 2N in (0, 1)
    (canonical: mu is solved for at every evaluation). kT is the electron temperature;
    t2, t3 are optional second- and third-neighbour hoppings. Energies in units of t.
    """

    def __init__(self, lattice: Lattice, *, t: float = 1.0, J: float, mu: float | None = None,
                 filling: float | None = None, kT: float = 0.0, t2: float = 0.0, t3: float = 0.0):
        if not isinstance(lattice, _core.Lattice):
            raise ValueError(f"lattice must be a spinforce.Lattice, got {type(lattice).__name__}")
        mu = None if mu is None else real(mu, "mu")
        filling = None if filling is None else real(filling, "filling")
        super().__init__(lattice, t=real(t, "t"), J=real(J, "J"), mu=mu, filling=filling, kT=real(kT, "kT"),
                         t2=real(t2, "t2"), t3=real(t3, "t3"))

    def parameters(self) -> dict:
        """Model parameters as a plain dict (for provenance records)."""
        lat = self.lattice
        return {"lattice": lat.kind, "shape": list(lat.shape), "t": self.t, "t2": self.t2, "t3": self.t3,
                "J": self.J, "mu": self.mu, "filling": self.filling, "kT": self.kT}

    def __repr__(self) -> str:
        fixed = f"mu={self.mu}" if self.mu is not None else f"filling={self.filling}"
        return f"SDModel({self.lattice!r}, t={self.t}, J={self.J}, {fixed}, kT={self.kT})"


class ExactDiagonalization(ProviderMixin, _core.ExactDiagonalization):
    """Exact electron forces from a dense Hermitian eigensolver (LAPACK via ATen).

    ``compute(spins)`` returns energy, fields = J <c+_i sigma c_i>, density, mu, eigenvalues.
    Work runs on the device of the spins (CPU, or CUDA with cuSOLVER).
    At kT = 0 and fixed filling, a degenerate Fermi level shares its electrons equally among
    its levels (deterministic, basis independent); mu is then that level.
    """

    def __init__(self, model: SDModel):
        if not isinstance(model, _core.SDModel):
            raise ValueError(f"model must be a spinforce.SDModel, got {type(model).__name__}")
        super().__init__(model)
        self.model = model

    def hamiltonian(self, spins) -> torch.Tensor:
        """Dense (2N, 2N) complex Hamiltonian, orbital index 2*i + s."""
        return self._hamiltonian(as_spin_tensor(spins)[0])

    def compute_at_mus(self, spins, mus) -> list:
        """FieldResults of one spin state at each fixed chemical potential in `mus`, from one
        diagonalisation: energy Omega(mu), fields, density (electrons per site), mu and the
        levels -- what ``compute`` gives for the model at fixed mu (electrons.model_at_mu), whatever
        the model's own mu or filling. Labels for models with mu input (spinforce.ml.sample_ed)."""
        mus = np.atleast_1d(np.asarray(mus, dtype=np.float64))
        if mus.ndim != 1 or mus.size == 0 or not np.isfinite(mus).all():
            raise ValueError(f"mus must be a non-empty list of finite chemical potentials, got {mus!r}")
        tensor, was_numpy = as_spin_tensor(spins)
        levels, vectors = torch.linalg.eigh(self.hamiltonian(tensor))
        n, kT, J = self.num_sites, float(self.model.kT), float(self.model.J)
        mu = torch.as_tensor(mus, dtype=torch.float64, device=levels.device).unsqueeze(1)  # (K, 1)
        x = levels.unsqueeze(0) - mu                                                       # (K, 2N)
        if kT == 0.0:  # as the core's fermi_dirac.cpp: a level at mu is half filled
            f = torch.where(x < 0, 1.0, torch.where(x > 0, 0.0, 0.5)).to(torch.float64)
            omega = torch.clamp(x, max=0.0).sum(1)
        else:
            f = torch.sigmoid(-x / kT)
            y = -x / kT  # -kT softplus(y), overflow-free as in the core
            omega = -kT * (torch.clamp(y, min=0.0) + torch.log1p(torch.exp(-y.abs()))).sum(1)
        u = vectors.mT.reshape(2 * n, n, 2)                     # rows: eigenvectors
        up, dn = u[..., 0], u[..., 1]
        fc = f.to(vectors.dtype)
        r = fc @ (up * dn.conj())                               # (K, N): sum_m f_m u_m(i up) conj(u_m(i dn))
        n_up, n_dn = f @ (up.abs() ** 2), f @ (dn.abs() ** 2)
        fields = torch.stack([2 * J * r.real, -2 * J * r.imag, J * (n_up - n_dn)], dim=-1)
        density = n_up + n_dn

        def out(t):
            t = t.detach().to(tensor.device)
            return t.cpu().numpy() if was_numpy else t
        from .providers import FieldResult
        return [FieldResult(energy=float(omega[k]), fields=out(fields[k]), density=out(density[k]), mu=float(mus[k]),
                            eigenvalues=out(levels)) for k in range(len(mus))]


# --- the chemical potential for a wanted filling ----------------------------------------------------
@dataclass
class FixedMu:
    """The chemical potential that gives a set of states a wanted mean filling.

    mu: the chemical potential. filling: the wanted N_e / 2N (mean over the states).
    filling_per_state: N_e(mu) / 2N of each state at that mu (how far the states' electron
    counts spread at fixed mu). canonical_mu: the chemical potential each state would have at
    fixed filling (how far a canonical calculation's mu wanders between the states).
    """

    mu: float
    filling: float
    filling_per_state: np.ndarray
    canonical_mu: np.ndarray

    def to_dict(self) -> dict:
        return {"mu": self.mu, "filling": self.filling,
                "filling_per_state": [float(x) for x in self.filling_per_state],
                "canonical_mu": [float(x) for x in self.canonical_mu]}


def _fermi(levels: np.ndarray, mu: float, kT: float) -> np.ndarray:
    if kT == 0.0:
        return np.where(levels < mu, 1.0, np.where(levels > mu, 0.0, 0.5))
    return 0.5 * (1.0 - np.tanh((levels - mu) / (2.0 * kT)))  # overflow-free Fermi function


def _count(levels, weights, mu, kT) -> float:
    return float(np.dot(weights, _fermi(levels, mu, kT)))


def solve_mu(levels, target: float, kT: float, weights=None) -> float:
    """mu with sum_m w_m f(e_m - mu) = target electrons (f Fermi-Dirac at kT; w = 1 for levels).

    kT > 0: bisection on the monotone count. kT = 0: the count is a staircase; when `target`
    fills a set of levels exactly, mu is the midpoint of the gap above them (every mu in that
    gap gives the same count), otherwise the level that holds the partly filled shell.
    The solver of the core (cpp/electrons/fermi_dirac.hpp), the one ED and KPM use.
    """
    e = torch.as_tensor(np.asarray(levels, dtype=np.float64).ravel())
    w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64).ravel())
    return float(_core._solve_mu(e, float(target), float(kT), w))


def _level_weights(provider, spins) -> tuple[np.ndarray, np.ndarray | None]:
    """Single-particle levels of one state: ED eigenvalues, or a KPM density of states on a grid."""
    if hasattr(provider, "density_of_states"):
        energies, rho = provider.density_of_states(spins, num_points=20001)
    else:
        result = provider.compute(spins)
        if result.eigenvalues is None:
            raise ValueError(f"provider {type(provider).__name__} gives neither eigenvalues nor a density of states")
        return np.asarray(result.eigenvalues, dtype=np.float64), None
    de = energies[1] - energies[0]
    return energies, np.clip(rho, 0.0, None) * de


def model_at_mu(model: SDModel, mu: float) -> SDModel:
    """The same s-d model (lattice, hoppings, J, kT) at fixed chemical potential mu."""
    return SDModel(model.lattice, t=model.t, J=model.J, mu=float(mu), kT=model.kT, t2=model.t2, t3=model.t3)


def filling_at_mu(model: SDModel, states, mu: float) -> np.ndarray:
    """N_e(mu) / 2N of each state (M, N, 3) at chemical potential mu (ED levels)."""
    provider = ExactDiagonalization(model)
    out = []
    for s in np.asarray(states, dtype=np.float64).reshape(-1, model.num_sites, 3):
        e, _ = _level_weights(provider, s)
        out.append(_count(e, np.ones_like(e), float(mu), model.kT) / (2 * model.num_sites))
    return np.asarray(out)


def mu_for_filling(model: SDModel, states, filling: float | None = None, *, provider=None,
                   progress: bool = False) -> FixedMu:
    """The chemical potential at which `states` (M, N, 3) hold the wanted mean filling.

    Levels do not depend on mu, so one diagonalisation per state suffices; mu then solves
    sum_states N_e(mu) = M * filling * 2N exactly (bisection at kT > 0, the gap midpoint of the
    pooled levels at kT = 0: see `solve_mu`). filling defaults to the model's. provider: where
    the levels come from, ExactDiagonalization of the model by default; a spinforce.KPM gives
    the count from its density of states instead (for lattices too large for ED).
    Label datasets with ``model_at_mu(model, result.mu)``: forces of a local model are those
    at fixed mu (docs/ml.md, "Locality").
    """
    if not isinstance(model, _core.SDModel):
        raise ValueError(f"model must be a spinforce.SDModel, got {type(model).__name__}")
    filling = model.filling if filling is None else filling
    if filling is None or isinstance(filling, bool) or not isinstance(filling, numbers.Real) or not 0 < filling < 1:
        raise ValueError(f"filling must be a number in (0, 1) (given, or the model's), got {filling!r}")
    states = np.asarray(states, dtype=np.float64)
    if states.ndim == 2:
        states = states[None]
    n = model.num_sites
    if states.ndim != 3 or states.shape[1:] != (n, 3) or states.shape[0] < 1:
        raise ValueError(f"states must have shape (M, {n}, 3) with M >= 1 for this model, got {states.shape}")
    provider = ExactDiagonalization(model) if provider is None else provider
    from tqdm.auto import tqdm
    levels = [_level_weights(provider, s) for s in tqdm(states, desc="levels", unit="state", disable=not progress)]
    kT = model.kT
    per_state_target = float(filling) * 2 * n
    pooled_e = np.concatenate([e for e, _ in levels])
    pooled_w = np.concatenate([np.ones_like(e) if w is None else w for e, w in levels])
    mu = solve_mu(pooled_e, per_state_target * len(levels), kT, pooled_w)
    per_state = np.array([_count(e, np.ones_like(e) if w is None else w, mu, kT) / (2 * n) for e, w in levels])
    canonical = np.array([solve_mu(e, per_state_target, kT, w) for e, w in levels])
    return FixedMu(mu=float(mu), filling=float(filling), filling_per_state=per_state, canonical_mu=canonical)
