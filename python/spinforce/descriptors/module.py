"""spinforce.Descriptor: symmetry-invariant features of every site's spin environment."""
import math

import numpy as np
import torch

from .environment import build_environment, default_triangle_cutoff
from .groups import invariant_tensors, point_group
from .reference import local_spin_variables as reference_variables

__all__ = ["Descriptor"]

_VERSION = 1
_KINDS = ("a1", "power", "phase", "bispectrum")


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

    version: int

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
        self._settings = dict(cutoff=float(cutoff), bond_cutoff=float(bond_cutoff),
                              triangle_cutoff=float(triangle_cutoff), block_radius=float(block_radius),
                              floor=float(floor), implementation=implementation, lattice_kind=lattice.kind,
                              version=_VERSION)
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
        """Coefficient matrix W, reference matrix, and index lists of every invariant."""
        env, group = self.environment, self.group
        nv = env.num_variables
        identity = group.identity_irrep
        W_rows, copies = [], []  # copies: (family, orbit index, irrep, coefficient indices)
        for o, orbit in enumerate(env.orbits):
            for irrep, rows in orbit.copies:
                full = np.zeros((rows.shape[0], nv))
                full[:, orbit.variables] = rows
                start = sum(len(r) for r in W_rows)
                W_rows.append(full)
                copies.append((orbit.family, o, irrep, list(range(start, start + len(rows)))))
        W = np.vstack(W_rows)
        # Reference vectors: per (family, irrep) the sum of all copies, from coarse-grained variables.
        ref_rows, ref_index, norm_of = [], {}, []
        for family in ("bond", "chirality"):
            for irrep, D in group.irreps.items():
                members = [c for c in copies if c[0] == family and c[2] == irrep]
                if not members:
                    continue
                group_index = len(ref_index)
                ref_index[(family, irrep)] = (len(ref_rows), group_index)
                for k in range(D.shape[1]):
                    ref_rows.append(sum(W[c[3][k]] for c in members))
                norm_of.extend([group_index] * D.shape[1])
        Wref = np.vstack(ref_rows)

        names = {k: [] for k in _KINDS}
        a1 = [c[3][0] for c in copies if c[0] == "bond" and c[2] == identity]
        names["a1"] = [f"a1[{c[1]}]" for c in copies if c[0] == "bond" and c[2] == identity]
        power_of, power_src = [], []
        phase_of, phase_c, phase_r, phase_norm = [], [], [], []
        bis_of, bis_c, bis_r1, bis_r2, bis_coef, bis_n1, bis_n2 = [], [], [], [], [], [], []
        for family, o, irrep, idx in copies:
            label = f"{family}[{o}].{irrep}"
            if not (family == "bond" and irrep == identity):
                power_of += [len(names["power"])] * len(idx)
                power_src += idx
                names["power"].append(f"|{label}|^2")
                r0, n0 = ref_index[(family, irrep)]
                phase_of += [len(names["phase"])] * len(idx)
                phase_c += idx
                phase_r += list(range(r0, r0 + len(idx)))
                phase_norm.append(n0)
                names["phase"].append(f"{label}.ref")
            if len(idx) < 2:
                continue
            for other in group.irreps:
                if other == identity or ("bond", other) not in ref_index:
                    continue
                r2, n2 = ref_index[("bond", other)]
                for t, C in enumerate(invariant_tensors(group, irrep, irrep, other)):
                    r1, n1 = ref_index[(family, irrep)]
                    for (i, j, k), value in np.ndenumerate(C):
                        if abs(value) > 1e-12:
                            bis_of.append(len(names["bispectrum"]))
                            bis_c.append(idx[i])
                            bis_r1.append(r1 + j)
                            bis_r2.append(r2 + k)
                            bis_coef.append(value)
                    bis_n1.append(n1)
                    bis_n2.append(n2)
                    names["bispectrum"].append(f"C{t}({label}, ref.{irrep}, ref.bond.{other})")
        self.feature_names = [n for k in _KINDS for n in names[k]]
        self.feature_counts = {k: len(names[k]) for k in _KINDS}
        self.num_features: int = len(self.feature_names)
        self.num_power: int = self.feature_counts["power"]
        self.num_phase: int = self.feature_counts["phase"]
        self.num_bispectrum: int = self.feature_counts["bispectrum"]
        self._copies = copies
        buffers = dict(W=torch.as_tensor(W), W_ref=torch.as_tensor(Wref), norm_of=_long(norm_of),
                       a1_index=_long(a1), power_of=_long(power_of), power_src=_long(power_src),
                       phase_of=_long(phase_of), phase_c=_long(phase_c), phase_r=_long(phase_r),
                       phase_norm=_long(phase_norm), bis_of=_long(bis_of), bis_c=_long(bis_c),
                       bis_r1=_long(bis_r1), bis_r2=_long(bis_r2), bis_coef=torch.as_tensor(bis_coef, dtype=torch.float64),
                       bis_n1=_long(bis_n1), bis_n2=_long(bis_n2))
        self.num_norms: int = len(ref_index)
        for name, value in buffers.items():
            self.register_buffer(name, value)

    # --- evaluation ---------------------------------------------------------------------------
    def forward(self, spins: torch.Tensor) -> torch.Tensor:
        """(N, 3) spins of the lattice given at construction -> (N, F) features."""
        return self.features(spins, self.neighbors)

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
        patch = torch.cat([spins.unsqueeze(1), spins[neighbors]], dim=1)
        if self.use_op:
            v = torch.ops.spinforce.local_spin_variables(patch, self.pairs, self.triangles)
        else:
            v = reference_variables(patch, self.pairs, self.triangles)
        return self.invariants(v, neighbors)

    def invariants(self, v: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """Local variables (N, nv) of every site -> (N, F) invariants."""
        dtype = v.dtype
        block = v[neighbors[:, self.block_columns]]
        v_bar = (v + block.sum(1)) / float(self.block_columns.size(0) + 1)
        c = v @ self.W.to(dtype).t()
        ref = v_bar @ self.W_ref.to(dtype).t()
        n = v.size(0)
        norm = torch.sqrt(torch.zeros(n, self.num_norms, dtype=dtype, device=v.device)
                          .index_add(1, self.norm_of, ref * ref) + self.floor_sq)
        a1 = c[:, self.a1_index]
        power = torch.zeros(n, self.num_power, dtype=dtype, device=v.device).index_add(
            1, self.power_of, c[:, self.power_src] * c[:, self.power_src])
        phase = torch.zeros(n, self.num_phase, dtype=dtype, device=v.device).index_add(
            1, self.phase_of, c[:, self.phase_c] * ref[:, self.phase_r]) / norm[:, self.phase_norm]
        terms = c[:, self.bis_c] * ref[:, self.bis_r1] * ref[:, self.bis_r2] * self.bis_coef.to(dtype)
        bispectrum = torch.zeros(n, self.num_bispectrum, dtype=dtype, device=v.device).index_add(
            1, self.bis_of, terms) / (norm[:, self.bis_n1] * norm[:, self.bis_n2])
        return torch.cat([a1, power, phase, bispectrum], dim=1)

    # --- inspection and persistence -------------------------------------------------------------
    @torch.jit.unused
    def settings(self) -> dict:
        """JSON-able settings; Descriptor.from_settings(lattice, settings) rebuilds this descriptor."""
        return dict(self._settings)

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
        s = self._settings
        return (f"{self.lattice_kind}, cutoff={s['cutoff']:g}, num_features={self.num_features}, "
                f"implementation={s['implementation']!r}")
