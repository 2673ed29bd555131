"""Stochastic Landau-Lifshitz-Gilbert dynamics and the classical Heisenberg provider.

Conventions (docs/dynamics.md): dS/dt = -gamma S x (H + xi) + alpha S x dS/dt with
H = -dE/dS, thermal field xi Gaussian with <xi_a(t) xi_b(t')> = 2 alpha kT/gamma delta_ab
delta(t - t'), drawn once per step from Philox keyed by (seed, step, site).
"""
from __future__ import annotations

import numpy as np
import torch

from . import _core
from ._validate import real
from .lattice import Lattice
from .providers import FieldResult, ProviderMixin, as_spin_tensor, uncertainty_scalars

__all__ = ["Heisenberg", "LLG", "spin_temperature"]

INTEGRATORS = tuple(_core._integrators())  # the registry of the core, the default first


def _vector3(value, name: str) -> tuple:
    v = np.asarray(value)
    if v.shape != (3,) or v.dtype.kind not in "iuf" or not np.isfinite(v).all():
        raise ValueError(f"{name} must be a finite 3-vector of real numbers, got {value!r}")
    return tuple(float(x) for x in v)


class Heisenberg(ProviderMixin, _core.Heisenberg):
    """Classical spins with exchange, Zeeman field and uniaxial anisotropy.

    E = J1 sum_<ij> S_i.S_j + J2 sum_<<ij>> S_i.S_j - field . sum_i S_i - anisotropy sum_i (S_i.axis)^2

    Each nearest (<ij>) and next-nearest (<<ij>>) neighbour bond counted once. J > 0 is
    antiferromagnetic, J < 0 ferromagnetic; anisotropy > 0 is an easy axis. The fields are
    H_i = -dE/dS_i = -J1 sum_nn S_j - J2 sum_nnn S_j + field + 2 anisotropy (S_i.axis) axis.
    Runs on the device of the spins (a fused OpenMP loop on the CPU, tensor ops elsewhere).
    """

    def __init__(self, lattice: Lattice, *, J1: float, J2: float = 0.0, field=(0.0, 0.0, 0.0),
                 anisotropy: float = 0.0, axis=(0.0, 0.0, 1.0)):
        if not isinstance(lattice, _core.Lattice):
            raise ValueError(f"lattice must be a spinforce.Lattice, got {type(lattice).__name__}")
        super().__init__(lattice, J1=real(J1, "J1"), J2=real(J2, "J2"), field=_vector3(field, "field"),
                         anisotropy=real(anisotropy, "anisotropy"), axis=_vector3(axis, "axis"))

    def site_energies(self, spins):
        """(N,) site energies e_i summing to the energy, each bond shared by its two ends:
        e_i = -(1/2) S_i.(sum_j J_ij S_j) - field.S_i - anisotropy (S_i.axis)^2 = -(S_i.H_i + field.S_i)/2.
        numpy in, numpy out; a tensor in, a tensor out."""
        tensor, was_numpy = as_spin_tensor(spins)
        fields = self.compute(tensor).fields
        s = tensor.to(fields.dtype)
        e = -0.5 * ((s * fields).sum(1) + s @ torch.tensor(self.field, dtype=s.dtype, device=s.device))
        return e.cpu().numpy() if was_numpy else e

    def parameters(self) -> dict:
        """Model parameters as a plain dict (for provenance records)."""
        return {"J1": self.J1, "J2": self.J2, "field": list(self.field), "anisotropy": self.anisotropy,
                "axis": list(self.axis)}

    def __repr__(self) -> str:
        return (f"Heisenberg({self.lattice!r}, J1={self.J1}, J2={self.J2}, field={tuple(self.field)}, "
                f"anisotropy={self.anisotropy}, axis={tuple(self.axis)})")


class LLG(_core.LLG):
    """Stochastic LLG integrator driven by any field provider.

    ``LLG(provider, dt=0.02, alpha=0.1, kT=0.0, gamma=1.0, integrator="sib", seed=0, site_offset=0)``.
    integrator: "sib" (Mentink's semi-implicit midpoint scheme, default), "heun"
    (Depondt-Heun with exact rotations), both keeping |S| = 1 to round-off with two field
    evaluations per step, or "rk4" (classical Runge-Kutta projected on the sphere, fourth order
    without noise, four evaluations per step); ``INTEGRATORS`` lists them. kT is the spin temperature (k_B = 1), in the energy units of the
    provider; time is in units of hbar/t for the electron models.

    The integrator keeps a step counter ``step``: the thermal noise of step n is a function of
    (seed, n, site) only, so ``run`` continues where the previous call stopped, and a run
    restarted from saved spins with ``start_step=n`` repeats the original bit for bit.
    site_offset: the global index of the provider's site 0 when it holds one slab of a lattice
    split over processes (spinforce.distributed): site i draws the noise of site site_offset + i.
    """

    def __init__(self, provider, *, dt: float, alpha: float, kT: float = 0.0, gamma: float = 1.0,
                 integrator: str = "sib", seed: int = 0, site_offset: int = 0):
        if not isinstance(provider, _core.FieldProvider):
            raise ValueError(f"provider must be a spinforce field provider (ExactDiagonalization, KPM, "
                             f"Heisenberg, ...), got {type(provider).__name__}")
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        if isinstance(site_offset, bool) or not isinstance(site_offset, (int, np.integer)) or not 0 <= site_offset < 2**62:
            raise ValueError(f"site_offset must be an integer in [0, 2**62), got {site_offset!r}")
        super().__init__(provider, dt=real(dt, "dt"), alpha=real(alpha, "alpha"), kT=real(kT, "kT"),
                         gamma=real(gamma, "gamma"), integrator=integrator, seed=int(seed), site_offset=int(site_offset))
        self.step = 0
        # the chemical potential a force field at fixed electron count solves for (MLForceField)
        self._chemical_potential = getattr(provider, "chemical_potential", None)

    @property
    def time(self) -> float:
        return self.step * self.dt

    def run(self, spins, steps: int, *, every: int = 0, writer=None, callback=None, start_step: int | None = None,
            progress: bool | str = False):
        """Advance `spins` by `steps` steps and return the final spins (numpy in, numpy out).

        every: when > 0, a frame is emitted after each step n with n % every == 0; the frame
            goes to ``writer.append(spins, fields, energy, time, step)`` (a
            spinforce.data.DatasetWriter) and/or ``callback(step, spins, result)``. With an ML
            committee, result.uncertainty holds the per-site uncertainty, and a writer made with
            ``scalars=providers.UNCERTAINTY_SCALARS`` records its mean and maximum per frame; a
            writer with the scalar "mu" records the chemical potential of an ML force field at
            fixed electron count (MLForceField.chemical_potential) per frame.
        start_step: the step counter of `spins` (default: where this integrator stopped, 0
            for a new one); it keys the thermal noise, so restarts are bit-identical.
        progress: True (or a description string) shows a tqdm progress bar of this run; a
            tqdm bar passed here is advanced to the absolute step count instead.
        The loop runs in C++; Python is entered only for frames and a progress refresh a few
        times per second. Ctrl-C stops the run between steps.
        """
        for name, value in (("steps", steps), ("every", every)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if start_step is None:
            start_step = self.step
        if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)) or start_step < 0:
            raise ValueError(f"start_step must be an integer >= 0, got {start_step!r}")
        if (writer is not None or callback is not None) and every == 0:
            raise ValueError("every must be > 0 when a writer or callback is given (frames every `every` steps)")
        tensor, was_numpy = as_spin_tensor(spins)
        dt = self.dt

        def frame(step, s, result):
            s_np = s.cpu().numpy()
            fields = result.fields.detach().cpu().numpy()
            uncertainty = result.uncertainty  # (N,) for an ML committee, else None
            if writer is not None:
                scalars = None
                if getattr(writer, "scalars", ()):
                    scalars = uncertainty_scalars(uncertainty) if uncertainty is not None else {}
                    if "mu" in writer.scalars:
                        scalars["mu"] = self._chemical_potential(s)
                writer.append(s_np, fields, result.energy, time=step * dt, step=step, scalars=scalars)
            if callback is not None:
                if uncertainty is not None and was_numpy:
                    uncertainty = uncertainty.detach().cpu().numpy()
                callback(step, s_np if was_numpy else s,
                         FieldResult(energy=float(result.energy), fields=fields if was_numpy else result.fields,
                                     uncertainty=uncertainty))

        bar, own_bar, offset = None, False, 0
        if hasattr(progress, "refresh"):  # a caller's tqdm bar counting absolute steps
            bar = progress
        elif progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=int(steps), unit="step", desc=progress if isinstance(progress, str) else "LLG",
                       dynamic_ncols=True)
            own_bar, offset = True, int(start_step)

        def on_progress(step):
            bar.n = step - offset
            bar.refresh()

        try:
            out = self._run(tensor, int(steps), int(every), int(start_step),
                            frame if (writer is not None or callback is not None) else None,
                            on_progress if bar is not None else None)
        finally:
            if own_bar:
                bar.close()
        self.step = int(start_step) + int(steps)
        return out.cpu().numpy() if was_numpy else out


def spin_temperature(spins, fields) -> float:
    """Spin temperature T = sum_i |S_i x H_i|^2 / (2 sum_i S_i . H_i) (Nurdin & Schotte, PRE 61, 3579 (2000)).

    For spins in equilibrium with E(S) at temperature T (k_B = 1), this equals T on average;
    H_i = -dE/dS_i. Accepts numpy arrays or torch tensors of shape (N, 3).
    """
    S = np.asarray(spins.detach().cpu() if isinstance(spins, torch.Tensor) else spins, dtype=float)
    H = np.asarray(fields.detach().cpu() if isinstance(fields, torch.Tensor) else fields, dtype=float)
    if S.shape != H.shape or S.ndim != 2 or S.shape[1] != 3:
        raise ValueError(f"spins and fields must both have shape (N, 3), got {S.shape} and {H.shape}")
    denominator = 2.0 * np.einsum("ia,ia->", S, H)
    if not denominator > 0:
        raise ValueError("spin temperature is undefined: sum S.H <= 0 (fields anti-aligned with the spins)")
    return float(np.sum(np.cross(S, H) ** 2) / denominator)
