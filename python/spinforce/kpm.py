"""Kernel polynomial method (KPM): linear-scaling electron forces for the s-d model."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from . import _core
from ._validate import real
from .providers import ProviderMixin, as_spin_tensor

__all__ = ["KPM"]

_DTYPES = {"complex128": "complex128", "complex64": "complex64",
           torch.complex128: "complex128", torch.complex64: "complex64",
           np.complex128: "complex128", np.complex64: "complex64"}


def _dtype_name(dtype) -> str:
    try:
        return _DTYPES[dtype]
    except (KeyError, TypeError):
        raise ValueError(f"dtype must be 'complex128' or 'complex64', got {dtype!r}") from None


class KPM(ProviderMixin, _core.KPM):
    """Electron forces by the kernel polynomial method with gradient-based probing.

    The grand potential is expanded in ``moments`` Chebyshev polynomials of the rescaled
    Hamiltonian (Jackson kernel); fields come from reverse-mode differentiation of the
    expansion, so one evaluation costs about 1.5 M sparse products on R probe vectors and O(N R)
    memory. Probe vectors come from a colouring of the lattice in which sites of one colour
    lie farther apart than ``probing_distance`` (lattice constants), with random phases drawn
    from ``seed``; ``probing_distance=None`` probes every site separately (exact traces,
    R = 2N, O(N^2) cost: for checks on small lattices). ``dtype`` is "complex128" or
    "complex64". ``bounds=(lower, upper)`` overrides the spectral bounds (default: the exact
    bounds of the model, [band minimum - |J|, band maximum + |J|], widened by 1%); bounds
    given here must contain the spectrum for every spin configuration (narrower: ValueError).

    ``compute(spins)`` returns energy (Omega at fixed mu, F = Omega + mu N_e at fixed
    filling), fields (N, 3), density (N,) and mu; work runs on the device of the spins.
    """

    def __init__(self, model, *, moments: int = 500, probing_distance: float | None = None, seed: int = 0,
                 dtype="complex128", bounds=None):
        if not isinstance(model, _core.SDModel):
            raise ValueError(f"model must be a spinforce.SDModel, got {type(model).__name__}")
        if isinstance(moments, bool) or not isinstance(moments, numbers.Integral):
            raise ValueError(f"moments must be an integer >= 2, got {moments!r}")
        if probing_distance is not None:
            if isinstance(probing_distance, bool) or not isinstance(probing_distance, numbers.Real):
                raise ValueError("probing_distance must be a number > 0 or None (exact traces), "
                                 f"got {probing_distance!r}")
            probing_distance = float(probing_distance)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        if bounds is not None:
            if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
                raise ValueError(f"bounds must be a pair (lower, upper) or None, got {bounds!r}")
            bounds = (real(bounds[0], "bounds[0] (lower)"), real(bounds[1], "bounds[1] (upper)"))
        super().__init__(model, moments=int(moments), probing_distance=probing_distance, seed=int(seed),
                         dtype=_dtype_name(dtype), bounds=bounds)
        self.model = model

    def settings(self) -> dict:
        """Accuracy settings as a plain dict (for provenance records)."""
        return {"method": "KPM", "moments": self.moments, "probing_distance": self.probing_distance,
                "seed": self.seed, "dtype": self.dtype, "bounds": list(self.bounds),
                "num_probes": self.num_probes}

    def chebyshev_moments(self, spins) -> np.ndarray:
        """Moments mu_m ~ Tr T_m(H~), m = 0..M-1, of the rescaled Hamiltonian (float64)."""
        return self._moments(as_spin_tensor(spins)[0]).numpy()

    def density_of_states(self, spins, energies=None, num_points: int = 2001):
        """(energies, rho): KPM density of states with the Jackson kernel, in states per unit
        energy for the whole lattice (it integrates to 2N). Default energies: ``num_points``
        points spanning the spectral bounds (end points excluded)."""
        if energies is None:
            if isinstance(num_points, bool) or not isinstance(num_points, numbers.Integral) or num_points < 2:
                raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
            lower, upper = self.bounds
            energies = lower + (upper - lower) * (np.arange(num_points) + 0.5) / num_points
        energies = np.asarray(energies, dtype=np.float64)
        lower, upper = self.bounds
        rho = _core._kpm_density_of_states(torch.from_numpy(self.chebyshev_moments(spins)), 0.5 * (lower + upper),
                                           0.5 * (upper - lower), torch.from_numpy(np.ascontiguousarray(energies)))
        return energies, rho.numpy()

    def __repr__(self) -> str:
        return (f"KPM(moments={self.moments}, probing_distance={self.probing_distance}, "
                f"num_probes={self.num_probes}, dtype={self.dtype!r})")
