"""spinforce.Descriptor: symmetry-invariant features of every site's spin environment."""
import math
from typing import List

import numpy as np
import torch

from .. import _core
from .environment import build_environment, default_triangle_cutoff
from .groups import invariant_tensors, point_group
from .reference import local_spin_variables as reference_variables

__all__ = ["Descriptor"]

_VERSION = 1
_KINDS = ("a1", "power", "phase", "bispectrum")
# The tensors of descriptor_invariants' plan argument in the op's order, declared once in
# cpp/descriptors/invariants_ops.hpp; the Descriptor holds them as buffers of these names.
PLAN_TENSORS: tuple = tuple(_core.invariant_plan_tensors)


def _long(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1), dtype=torch.long)


class Descriptor(torch.nn.Module):
    """Features (N, F) of every site's neighbourhood, invariant under global spin rotations,
    the lattice point group about the site, and time reversal S -> -S.

    lattice: a spinforce.Lattice.  cutoff: neighbourhood radius in lattice constants.
    bond_cutoff: bond variables S_j.S_k are taken between the site and every neighbour, and
    between neighbours closer than this.  triangle_cutoff: scalar chiralities of triangles in the
    neighbourhood with all edges <= this (default: the elementary triangles, 1 on triangular,
    sqrt(2) on square/cubic).  block_radius: the reference IR vectors come from the variables
    averaged over the block of sites within this radius.  floor: smooth floor of the reference
    norms, sqrt(|f_ref|^2 + floor^2).  implementation: "op" (torch.ops.spinforce, C++/CUDA) or
    "reference" (pure torch, same numbers).

    Features, in order (see `describe()`): the identity-IR coefficients of the bond variables;
    the power spectrum |f^G_r|^2 of every other copy; the phases f^G_r . f^G_ref / |f^G_ref|_floor
    against the coarse-grained reference of the same family; bispectrum components
    C(f^G_r, f^G_ref, f^G'_ref,bond) for multi-dimensional G.
    """

    version: int = _VERSION
    kind = "group"
    images: int = 1  # rows of features per site (registry.py)

    def __init__(self, lattice, cutoff: float = 2.0, bond_cutoff: float = 1.0, triangle_cutoff: float | None = None,
                 block_radius: float = 1.0, floor: float = 0.1, implementation: str = "op"):
        super().__init__()
        for name, value in (("cutoff", cutoff), ("bond_cutoff", bond_cutoff), ("block_radius", block_radius),
                            ("floor", floor)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        nn = lattice.shell_distance(1)
        if cutoff < nn:
            raise ValueError(f"cutoff must be >= the nearest-neighbour distance {nn:g}, got {cutoff!r}")
        if bond_cutoff > cutoff or block_radius > cutoff:
            raise ValueError(f"bond_cutoff and block_radius must lie in (0, cutoff = {cutoff:g}], "
                             f"got {bond_cutoff!r} and {block_radius!r}")
        if block_radius < nn:
            raise ValueError(f"block_radius must be >= the nearest-neighbour distance {nn:g}, got {block_radius!r}")
        if triangle_cutoff is None:
            triangle_cutoff = default_triangle_cutoff(lattice)
        elif not isinstance(triangle_cutoff, (int, float)) or not 0 < triangle_cutoff <= 2 * cutoff:
            raise ValueError(f"triangle_cutoff must lie in (0, 2*cutoff], got {triangle_cutoff!r}")
        if implementation not in ("op", "reference"):
            raise ValueError(f"implementation must be 'op' or 'reference', got {implementation!r}")
        self.lattice_kind: str = lattice.kind
        # The settings as attributes of their own names (settings() reads them): they stay in an
        # exported file, whose descriptor spinforce.ml.committee.model_from_exported rebuilds from them.
        self.cutoff: float = float(cutoff)
        self.bond_cutoff: float = float(bond_cutoff)
        self.triangle_cutoff: float = float(triangle_cutoff)
        self.block_radius: float = float(block_radius)
        self.floor: float = float(floor)
        self.implementation: str = implementation
        self.version = _VERSION
        self.use_op: bool = implementation == "op"
        self.floor_sq: float = float(floor) ** 2
        self.group = point_group(lattice)
        self.environment = env = build_environment(lattice, self.group, cutoff, bond_cutoff, triangle_cutoff,
                                                   block_radius)
        self._build_plan()
        self.register_buffer("neighbor_offsets", torch.as_tensor(env.offsets, dtype=torch.long))
        self.register_buffer("pairs", torch.as_tensor(env.pairs, dtype=torch.long))
        self.register_buffer("triangles", torch.as_tensor(env.triangles, dtype=torch.long))
        self.register_buffer("block_columns", torch.as_tensor(env.block_columns, dtype=torch.long))
        # The neighbour table of the lattice given here; features() accepts any other lattice's.
        self.register_buffer("neighbors", lattice.neighbor_table(self.neighbor_offsets), persistent=False)
        self.num_sites: int = lattice.num_sites

    # --- construction -------------------------------------------------------------------------
    def _build_plan(self) -> None:
        """Coefficient matrix and index lists of every invariant (all stored as buffers).

        Coefficients c = W v are ordered with the bond identity-IR copies first, then every other
        copy (family, orbit, irrep, r) as d consecutive entries; W's last rows give the
        reference vectors rho^(F,G) = sum_r f^(F,G)_r of every (family, irrep), evaluated on
        block-averaged variables. Their smooth norms |rho|_floor = sqrt(|rho|^2 + floor^2)
        normalise phases and bispectrum components. The bispectrum component
        sum_ijk C_ijk f_i rho^(F,G)_j rho^(bond,G')_k is evaluated as f . kappa with the coupled
        reference kappa_i = sum_jk C_ijk rho_j rho'_k / (|rho|_floor |rho'|_floor).
        """
        env, group = self.environment, self.group
        nv = env.num_variables
        identity = group.identity_irrep
        copies = []  # (family, orbit index, irrep, (d, nv) rows)
        for o, orbit in enumerate(env.orbits):
            for irrep, rows in orbit.copies:
                full = np.zeros((rows.shape[0], nv))
                full[:, orbit.variables] = rows
                copies.append((orbit.family, o, irrep, full))
        first = [c for c in copies if c[0] == "bond" and c[2] == identity]
        rest = [c for c in copies if not (c[0] == "bond" and c[2] == identity)]
        ref_rows, ref_at = [], {}  # (family, irrep) -> (first reference entry, norm index)
        for family in ("bond", "chirality"):
            for irrep in group.irreps:
                members = [c[3] for c in copies if c[0] == family and c[2] == irrep]
                if members:
                    ref_at[(family, irrep)] = (len(ref_rows), len(ref_at))
                    ref_rows.extend(sum(members))
        norm_of = [n for (family, irrep), (_, n) in ref_at.items() for _ in range(group.irreps[irrep].shape[1])]

        names = {k: [] for k in _KINDS}
        names["a1"] = [f"a1[{c[1]}]" for c in first]
        entry_of, phase_r, phase_norm = [], [], []
        kappa_at, kappa = {}, {"r1": [], "r2": [], "n1": [], "n2": [], "coef": [], "of": []}
        bis_c, bis_k, bis_of = [], [], []
        entry = num_kappa = 0
        for family, o, irrep, rows in rest:
            d = rows.shape[0]
            label = f"{family}[{o}].{irrep}"
            r1, n1 = ref_at[(family, irrep)]
            entry_of += [len(names["power"])] * d
            phase_r += list(range(r1, r1 + d))
            phase_norm.append(n1)
            names["power"].append(f"|{label}|^2")
            names["phase"].append(f"{label}.ref")
            for other in group.irreps if d >= 2 else ():
                if other == identity or ("bond", other) not in ref_at:
                    continue
                r2, n2 = ref_at[("bond", other)]
                for t, C in enumerate(invariant_tensors(group, irrep, irrep, other)):
                    key = (family, irrep, other, t)
                    if key not in kappa_at:
                        kappa_at[key] = start = num_kappa
                        num_kappa += d
                        for (i, j, k), value in np.ndenumerate(C):
                            if abs(value) > 1e-12:
                                kappa["r1"].append(r1 + j)
                                kappa["r2"].append(r2 + k)
                                kappa["n1"].append(n1)
                                kappa["n2"].append(n2)
                                kappa["coef"].append(value)
                                kappa["of"].append(start + i)
                    bis_c += list(range(entry, entry + d))
                    bis_k += [kappa_at[key] + i for i in range(d)]
                    bis_of += [len(names["bispectrum"])] * d
                    names["bispectrum"].append(f"C{t}({label}, ref.{irrep}, ref.bond.{other})")
            entry += d
        self.feature_names = [n for k in _KINDS for n in names[k]]
        self.feature_counts = {k: len(names[k]) for k in _KINDS}
        self.num_features: int = len(self.feature_names)
        # one image, the identity (registry.py)
        self.register_buffer("image_columns", torch.arange(self.num_features).view(1, -1), persistent=False)
        self.num_a1: int = len(first)
        self.num_power: int = self.feature_counts["power"]
        self.num_bispectrum: int = self.feature_counts["bispectrum"]
        self.num_coefficients: int = nv
        self.num_kappa: int = num_kappa
        self.num_norms: int = len(ref_at)
        self._copies = copies
        self.register_buffer("W", torch.as_tensor(np.vstack([c[3] for c in first + rest] + [np.array(ref_rows)])))
        self.register_buffer("kappa_coef", torch.as_tensor(kappa.pop("coef"), dtype=torch.float64))
        buffers = dict(norm_of=norm_of, entry_of=entry_of, phase_r=phase_r, phase_norm=phase_norm, bis_c=bis_c,
                       bis_k=bis_k, bis_of=bis_of, **{f"kappa_{k}": v for k, v in kappa.items()})
        for name, value in buffers.items():
            self.register_buffer(name, _long(value))
        built = set(buffers) | {"kappa_coef"}
        if built != set(PLAN_TENSORS):
            raise RuntimeError(f"the compiled core's descriptor_invariants takes the plan tensors {PLAN_TENSORS}, "
                               f"but Descriptor builds {tuple(sorted(built))}: rebuild spinforce._core from this "
                               "source tree")
        self.plan_tensor_names: List[str] = list(PLAN_TENSORS)

    # --- evaluation ---------------------------------------------------------------------------
    def forward(self, spins: torch.Tensor) -> torch.Tensor:
        """(N, 3) spins of the lattice given at construction -> (N, F) features."""
        return self.features(spins, self.neighbors)

    @torch.jit.export
    def features(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """(N, 3) spins and the (N, m) table lattice.neighbor_table(self.neighbor_offsets) of any
        lattice of the same kind -> (N, F) features."""
        if spins.dim() != 2 or spins.size(1) != 3:
            raise ValueError("spins must have shape (N, 3), got " + str(list(spins.shape)))
        if not spins.is_floating_point():
            raise ValueError("spins must be a floating-point tensor")
        m = self.neighbor_offsets.size(0)
        if neighbors.dim() != 2 or neighbors.size(1) != m or neighbors.size(0) != spins.size(0):
            raise ValueError("neighbors must have shape (N, " + str(m) + ") = (" + str(spins.size(0)) + ", " + str(m)
                             + "), the table lattice.neighbor_table(descriptor.neighbor_offsets); got "
                             + str(list(neighbors.shape)))
        if neighbors.dtype != torch.long:
            raise ValueError("neighbors must be an int64 tensor")
        n = spins.size(0)
        # index_select rather than advanced indexing: its backward (index_add) is much cheaper.
        around = spins.index_select(0, neighbors.reshape(-1)).view(n, m, 3)
        patch = torch.cat([spins.unsqueeze(1), around], dim=1)
        if self.use_op:
            v = torch.ops.spinforce.local_spin_variables(patch, self.pairs, self.triangles)
        else:
            v = reference_variables(patch, self.pairs, self.triangles)
        return self.invariants(v, neighbors)

    @torch.jit.export
    def site_features(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """features(): one image, so one row per site (registry.py)."""
        return self.features(spins, neighbors)

    @torch.jit.export
    def features_batch(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) configurations of one lattice and its (N, m) table -> (B, N, F): the batch is
        evaluated as one block-diagonal lattice of B*N sites."""
        if spins.dim() != 3 or spins.size(2) != 3:
            raise ValueError("spins must have shape (B, N, 3), got " + str(list(spins.shape)))
        b, n = spins.size(0), spins.size(1)
        shift = (torch.arange(b, device=neighbors.device) * n).view(b, 1, 1)
        table = (neighbors.unsqueeze(0) + shift).reshape(b * n, neighbors.size(-1))
        return self.features(spins.reshape(b * n, 3), table).view(b, n, -1)

    def invariants(self, v: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """Local variables (N, nv) of every site -> (N, F) invariants."""
        n, dtype = v.size(0), v.dtype
        cr = v @ self.W.to(dtype).t()
        c = cr[:, : self.num_coefficients]
        # Reference vectors of the block average = block average of the per-site reference vectors.
        r = cr[:, self.num_coefficients:]
        nb = self.block_columns.size(0)
        block = r.index_select(0, neighbors.index_select(1, self.block_columns).reshape(-1)).view(n, nb, r.size(1))
        rho = (r + block.sum(1)) / float(nb + 1)
        a1 = c[:, : self.num_a1]
        rest = c[:, self.num_a1:]
        if self.use_op:
            sizes = [self.num_norms, self.num_power, self.num_kappa, self.num_bispectrum]
            rest_invariants = torch.ops.spinforce.descriptor_invariants(rest.contiguous(), rho, self.plan_tensors(),
                                                                        sizes, self.floor_sq)
            return torch.cat([a1, rest_invariants], dim=1)
        norm = torch.sqrt(self._zeros(n, self.num_norms, v).index_add(1, self.norm_of, rho * rho) + self.floor_sq)
        power = self._zeros(n, self.num_power, v).index_add(1, self.entry_of, rest * rest)
        phase = self._zeros(n, self.num_power, v).index_add(
            1, self.entry_of, rest * rho.index_select(1, self.phase_r)) / norm.index_select(1, self.phase_norm)
        terms = (rho.index_select(1, self.kappa_r1) * rho.index_select(1, self.kappa_r2) * self.kappa_coef.to(dtype)
                 / (norm.index_select(1, self.kappa_n1) * norm.index_select(1, self.kappa_n2)))
        kappa = self._zeros(n, self.num_kappa, v).index_add(1, self.kappa_of, terms)
        bispectrum = self._zeros(n, self.num_bispectrum, v).index_add(
            1, self.bis_of, rest.index_select(1, self.bis_c) * kappa.index_select(1, self.bis_k))
        return torch.cat([a1, power, phase, bispectrum], dim=1)

    def plan_tensors(self) -> List[torch.Tensor]:
        """The plan argument of descriptor_invariants: the buffers named in PLAN_TENSORS, in that
        order; index tables as int64, coefficients as float64 (even after module.float())."""
        named = {name: tensor for name, tensor in self.named_buffers()}
        plan: List[torch.Tensor] = []
        for name in self.plan_tensor_names:
            tensor = named[name]
            plan.append(tensor.to(torch.float64) if tensor.is_floating_point() else tensor)
        return plan

    def _zeros(self, n: int, k: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, k, dtype=like.dtype, device=like.device)

    # --- inspection and persistence -------------------------------------------------------------
    @torch.jit.unused
    def settings(self) -> dict:
        """JSON-able settings; Descriptor.from_settings(lattice, settings) rebuilds this descriptor."""
        return dict(cutoff=self.cutoff, bond_cutoff=self.bond_cutoff, triangle_cutoff=self.triangle_cutoff,
                    block_radius=self.block_radius, floor=self.floor, implementation=self.implementation,
                    lattice_kind=self.lattice_kind, version=_VERSION)

    @classmethod
    def from_settings(cls, lattice, settings: dict) -> "Descriptor":
        settings = dict(settings)
        version = settings.pop("version", _VERSION)
        if version != _VERSION:
            raise ValueError(f"settings version must be {_VERSION}, got {version!r}")
        if settings.get("lattice_kind", lattice.kind) != lattice.kind:
            raise ValueError(f"settings are for a {settings['lattice_kind']!r} lattice, got {lattice.kind!r}")
        settings.pop("lattice_kind", None)
        return cls(lattice, **settings)

    @torch.jit.unused
    def describe(self) -> dict:
        """Feature counts per kind, point-group tables and orbit structure (JSON-able)."""
        env = self.environment
        return {
            "lattice_kind": self.lattice_kind,
            "version": self.version,
            "settings": self.settings(),
            "num_features": self.num_features,
            "feature_counts": dict(self.feature_counts),
            "feature_names": list(self.feature_names),
            "point_group": self.group.describe(),
            "num_neighbors": int(len(env.offsets)),
            "num_variables": {"bond": int(len(env.pairs)), "chirality": int(len(env.triangles))},
            "orbits": [{"family": o.family, "size": o.size,
                        "representative": env.pairs[o.variables[0]].tolist() if o.family == "bond"
                        else env.triangles[o.variables[0] - len(env.pairs)].tolist(),
                        "irreps": o.multiplicities()} for o in env.orbits],
        }

    def extra_repr(self) -> str:
        return (f"{self.lattice_kind}, cutoff={self.cutoff:g}, num_features={self.num_features}, "
                f"implementation={self.implementation!r}")
