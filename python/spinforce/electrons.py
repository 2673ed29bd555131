"""The s-d model and its exact-diagonalisation field provider."""
from __future__ import annotations

import torch

from . import _core
from ._validate import real
from .lattice import Lattice
from .providers import ProviderMixin, as_spin_tensor

__all__ = ["SDModel", "ExactDiagonalization"]


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
