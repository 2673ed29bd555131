"""``spinforce.MLForceField``: a TorchScript force field run from C++ as a field provider."""
from __future__ import annotations

import os

from .. import _core
from ..providers import ProviderMixin

__all__ = ["MLForceField"]


class MLForceField(ProviderMixin, _core.MLForceField):
    """The ML field provider: ``MLForceField("model.ts", lattice, device="cpu")``.

    path: a TorchScript file written by ``spinforce export MODEL --torchscript OUT``.
    lattice: a ``spinforce.Lattice`` of the kind the model was trained on, any size.
    device: "cpu" or "cuda[:k]", where the network runs; results come back on the device of the
    spins given to ``compute``. The network runs in C++ (torch::jit), so an integrator holding this
    provider does no Python work per step. ``compute(spins)`` returns energy and fields
    (density, mu and eigenvalues are not defined for a spin-only model). For a committee file
    (``spinforce export`` of several models) they are the members' means, ``uncertainty`` holds
    the per-site spread of their torques, and ``committee_size`` and ``uncertainty_threshold``
    (None when the file has none) describe it; for a single model ``uncertainty`` is None.
    """

    def __init__(self, path, lattice, *, device: str = "cpu"):
        if not isinstance(lattice, _core.Lattice):
            raise ValueError(f"lattice must be a spinforce.Lattice, got {type(lattice).__name__}")
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"TorchScript file {path} does not exist")
        super().__init__(path, lattice, device=str(device))  # the core checks the file's manifest
        self.path = path
        self.lattice = lattice

    def __repr__(self) -> str:
        return f"MLForceField({self.path!r}, {self.lattice!r}, device={self.device!r})"
