"""The field-provider interface shared by every engine (ED, KPM, classical spins, ML)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["FieldResult", "as_spin_tensor", "ProviderMixin", "UNCERTAINTY_SCALARS", "uncertainty_scalars"]

# Per-frame summaries of a committee's per-site uncertainty, as run files record them.
UNCERTAINTY_SCALARS = ("uncertainty_mean", "uncertainty_max")


@dataclass
class FieldResult:
    """What a provider returns for one spin configuration.

    energy: the potential whose negative gradient is `fields` (Omega at fixed mu,
    F = Omega + mu N_e at fixed filling, the classical energy for spin models).
    fields: (N, 3), H_i = -dE/dS_i.  density: (N,) electrons per site (electron models).
    mu: chemical potential used.  eigenvalues: single-particle levels (ED only).
    uncertainty: (N,) spread of the members' torques S_i x H_i for an ML committee (None for
    single models and exact providers; see spinforce.ml.committee).
    Arrays are numpy when the spins were numpy, torch tensors when they were torch.
    """

    energy: float
    fields: Any
    density: Any = None
    mu: float = float("nan")
    eigenvalues: Any = None
    uncertainty: Any = None


def uncertainty_scalars(uncertainty) -> dict:
    """{"uncertainty_mean": ..., "uncertainty_max": ...} over the sites of one frame."""
    u = uncertainty.detach().cpu().numpy() if isinstance(uncertainty, torch.Tensor) else np.asarray(uncertainty)
    return {"uncertainty_mean": float(u.mean()), "uncertainty_max": float(u.max())}


def as_spin_tensor(spins) -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy). Shape and unit-length checks happen in the C++ core."""
    if isinstance(spins, torch.Tensor):
        if spins.layout != torch.strided:
            raise ValueError(f"spins must be a dense (N, 3) tensor, got a {spins.layout} tensor; use .to_dense()")
        if spins.is_inference():  # tensors made under torch.inference_mode(): the core needs ordinary ones
            with torch.inference_mode(False):
                spins = spins.clone()
        return spins, False
    try:
        array = np.asarray(spins)
    except (TypeError, ValueError):
        array = None
    # Complex parts, booleans and strings would be dropped or coerced silently by a float cast.
    if array is None or array.dtype.kind not in "iuf":
        what = type(spins).__name__ if array is None else f"{type(spins).__name__} of dtype {array.dtype}"
        raise ValueError(f"spins must be a real numeric (N, 3) array, got {what}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)), True


def _out(tensor, numpy: bool):
    if tensor is None or (isinstance(tensor, torch.Tensor) and not tensor.numel() and tensor.dim() == 0):
        return None
    if not isinstance(tensor, torch.Tensor):
        return tensor
    return tensor.detach().cpu().numpy() if numpy else tensor


class ProviderMixin:
    """Adds ``compute(spins)`` with numpy/torch in and out to a core provider class."""

    def compute(self, spins) -> FieldResult:
        tensor, was_numpy = as_spin_tensor(spins)
        raw = self._compute(tensor)
        return FieldResult(
            energy=float(raw.energy),
            fields=_out(raw.fields, was_numpy),
            density=_out(raw.density, was_numpy),
            mu=float(raw.mu),
            eigenvalues=_out(raw.eigenvalues, was_numpy),
            uncertainty=_out(raw.uncertainty, was_numpy),
        )

    def __call__(self, spins) -> FieldResult:
        return self.compute(spins)
