"""Bond-shell descriptor: invariant bond sums around a site, a simple baseline (docs/ml.md)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["BondShellDescriptor", "HALF_ANGLE_FLOOR"]

HALF_ANGLE_FLOOR = 0.05  # d of the half-angle overlaps: |dc/d(S.S)| <= 1/(4d) at antiparallel spins


class BondShellDescriptor(nn.Module):
    """Bond sums around a site, grouped by symmetry.

    Feature (k, p) of site i is sum_{j in shell k} (S_i . S_j)^p for neighbour shells
    k = 1..K within `cutoff` and powers p in `powers`. With ``pair_orbits=True`` it also has, for
    every orbit o of pairs {j, l} of neighbours of i under the point group, sum_{{j,l} in o} S_j . S_l
    (the bonds among the neighbours; with ``pair_cutoff`` only the neighbours within that
    distance). With ``three_body=True`` it adds, for the same orbits, the three-body sums
    sum_{{j,l} in o} (S_i . S_j)(S_i . S_l) and the bond loops
    sum_{{j,l} in o} (S_i . S_j)(S_j . S_l)(S_l . S_i): which bonds of the site meet which, and the
    lowest closed loops of hopping through the site (whose sign, through the Berry phase of
    the loop, the electrons feel). With ``half_angle=True`` every shell and orbit sum is taken once
    more of the half-angle overlaps c = sqrt((1 + S_j . S_l)/2 + d^2), d = HALF_ANGLE_FLOOR: the
    hopping amplitude |<chi_j|chi_l>| = cos(theta/2) of an electron whose spin follows the local
    moments (double exchange), which no finite set of bond powers gives on a shell of many bonds;
    d keeps the derivative finite at antiparallel spins. All features are invariant under global spin rotations, the
    lattice point group and time reversal. With p = 1 they are exact for Heisenberg models (the
    site energy of E = J1 sum_<ij> S_i.S_j is J1/2 times feature (1, 1)); p = 2 adds biquadratic
    terms. Every rotation- and time-reversal-invariant function of the spins is a function of
    the bonds S_j . S_l, but these sums lose which bond is which inside a shell or orbit, so this
    is a baseline, not a complete description of an itinerant magnet.
    """

    version: int = 1
    kind = "bond_shells"
    images: int = 1  # rows of features per site (registry.py)

    def __init__(self, lattice, cutoff: float = 1.0, powers=(1,), pair_orbits: bool = False, three_body: bool = False,
                 half_angle: bool = False, pair_cutoff: float | None = None):
        super().__init__()
        cutoff = float(cutoff)
        if not cutoff > 0:
            raise ValueError(f"descriptor cutoff must be > 0 (a distance in lattice constants), got {cutoff}")
        powers = [int(p) for p in powers]
        if not powers or any(p < 1 or p > 4 for p in powers) or len(set(powers)) != len(powers):
            raise ValueError(f"descriptor powers must be distinct integers in 1..4, got {powers}")
        # The neighbourhood, sorted by distance then angle: the shells in order (ValueError, before any
        # enumeration, when the cutoff is too large for the lattice).
        offsets = lattice.offsets_within(cutoff).to(torch.long)
        if not len(offsets):
            raise ValueError(f"descriptor cutoff {cutoff} is shorter than the nearest-neighbour distance "
                             f"{lattice.shell_distance(1)} of the {lattice.kind} lattice")
        lengths = np.linalg.norm(offsets.numpy() @ lattice.primitive_vectors.numpy(), axis=1)
        shell_of = np.cumsum(np.r_[0, np.diff(lengths) > 1e-9]).tolist()
        num_shells = shell_of[-1] + 1
        # The pair orbits (and three-body sums) may stop at a shorter pair_cutoff: the nearest
        # neighbours, a prefix of the sorted neighbourhood. Their number grows as m^2, the shell
        # sums only as m, so a long cutoff stays affordable for the shells alone.
        if pair_cutoff is not None and float(pair_cutoff) != cutoff:  # equal to cutoff: the default
            pair_cutoff = float(pair_cutoff)
            if not (pair_orbits or three_body):
                raise ValueError("descriptor pair_cutoff limits the pair orbits: it needs pair_orbits = true "
                                 "or three_body = true")
            if not lattice.shell_distance(1) - 1e-9 <= pair_cutoff <= cutoff:
                raise ValueError(f"descriptor pair_cutoff must lie between the nearest-neighbour distance "
                                 f"{lattice.shell_distance(1):g} and cutoff = {cutoff:g}, got {pair_cutoff:g}")
        self.pair_cutoff: float = cutoff if pair_cutoff is None else float(pair_cutoff)
        self.num_pair_sites: int = int((lengths <= self.pair_cutoff + 1e-9).sum())
        self.cutoff = cutoff
        self.powers: list[int] = powers
        self.pair_orbits: bool = bool(pair_orbits)
        self.three_body: bool = bool(three_body)
        self.half_angle: bool = bool(half_angle)
        self.half_angle_floor: float = HALF_ANGLE_FLOOR  # an attribute: TorchScript reads no module globals
        self.lattice_kind: str = lattice.kind
        self.register_buffer("neighbor_offsets", offsets)
        # (m'*m', O) 0/1 matrix of the pair orbits (m' sites within pair_cutoff), kept in model files.
        # The features take each orbit's sum by a gather of its pairs from the flattened m' x m' bonds
        # (orbit_pairs[o], orbit_mask[o] = 0 pads the smaller orbits) instead of a product with this
        # matrix: the same sums, 1.1-1.2x faster at cutoff 3, 1.5-2x at 4.5 (bench/bond_shells.py).
        orbit_sum = (_pair_orbit_matrix(lattice, offsets[:self.num_pair_sites]) if pair_orbits or three_body
                     else torch.zeros(0, 0, dtype=torch.float64))
        self.register_buffer("orbit_sum", orbit_sum)
        orbit_pairs, orbit_mask = _orbit_gather(orbit_sum)
        self.register_buffer("orbit_pairs", orbit_pairs, persistent=False)
        self.register_buffer("orbit_mask", orbit_mask, persistent=False)
        per_orbit = int(self.pair_orbits) * (1 + int(self.half_angle)) + 2 * int(self.three_body)
        per_shell = len(powers) + int(self.half_angle)
        self.num_features: int = num_shells * per_shell + per_orbit * int(self.orbit_sum.shape[1])
        # one image, the identity (registry.py)
        self.register_buffer("image_columns", torch.arange(self.num_features).view(1, -1), persistent=False)
        # (m, K) 0/1 matrix summing the bonds of each shell.
        assign = torch.zeros(len(shell_of), num_shells, dtype=torch.float64)
        assign[torch.arange(len(shell_of)), torch.tensor(shell_of)] = 1.0
        self.register_buffer("shell_sum", assign)

    def settings(self) -> dict:
        settings = {"cutoff": self.cutoff, "powers": list(self.powers), "pair_orbits": self.pair_orbits}
        # Options only when set: files without them stay readable by releases before the options.
        if self.three_body:
            settings["three_body"] = True
        if self.half_angle:
            settings["half_angle"] = True
        if self.pair_cutoff != self.cutoff:
            settings["pair_cutoff"] = self.pair_cutoff
        return settings

    @classmethod
    def from_settings(cls, lattice, settings: dict) -> "BondShellDescriptor":
        return cls(lattice, **settings)

    def features(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        around = spins[neighbors]                                             # (N, m, 3)
        bonds = (spins.unsqueeze(1) * around).sum(-1)                         # (N, m)
        shell_sum = self.shell_sum.to(bonds.dtype)
        # Powers by repeated products: smooth to every order, also at zero bonds.
        per_power = []
        for p in self.powers:
            term = bonds
            for _ in range(p - 1):
                term = term * bonds
            per_power.append(term @ shell_sum)                               # (N, K)
        if self.half_angle:
            per_power.append(_half_angle(bonds, self.half_angle_floor) @ shell_sum)
        n = spins.shape[0]
        out = torch.stack(per_power, dim=-1).reshape(n, -1)
        parts = [out]
        if self.pair_orbits or self.three_body:
            near = around[:, :self.num_pair_sites]
            gram = torch.bmm(near, near.transpose(1, 2))                      # (N, m', m') S_j . S_l
            if self.pair_orbits:
                parts.append(self.orbit_sums(gram))
                if self.half_angle:
                    parts.append(self.orbit_sums(_half_angle(gram, self.half_angle_floor)))
            if self.three_body:
                near_bonds = bonds[:, :self.num_pair_sites]
                center = near_bonds.unsqueeze(2) * near_bonds.unsqueeze(1)     # (N, m', m') (S_i.S_j)(S_i.S_l)
                parts.append(self.orbit_sums(center))
                parts.append(self.orbit_sums(center * gram))
        return torch.cat(parts, dim=1) if len(parts) > 1 else out

    def site_features(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """features(): one image, so one row per site (registry.py)."""
        return self.features(spins, neighbors)

    def orbit_sums(self, pair_values: torch.Tensor) -> torch.Tensor:
        """(N, m', m') values on the pairs of neighbours -> (N, O) their sums over each pair orbit
        (equal to pair_values.reshape(N, -1) @ orbit_sum)."""
        n = pair_values.shape[0]
        picked = pair_values.reshape(n, -1).index_select(1, self.orbit_pairs.reshape(-1))
        return (picked.reshape(n, self.orbit_pairs.shape[0], -1) * self.orbit_mask.to(pair_values.dtype)).sum(-1)

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        return self.features(spins, neighbors)


def _half_angle(bonds: torch.Tensor, floor: float) -> torch.Tensor:
    """sqrt((1 + S_j.S_l)/2 + d^2): the double-exchange hopping amplitude cos(theta/2), kept smooth."""
    return torch.sqrt(0.5 * (1.0 + bonds) + floor * floor)


def _orbit_gather(orbit_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 0/1 orbit matrix (m*m, O) as (O, k) indices of each orbit's pairs into the flattened
    m*m pair values, padded to the largest orbit k, and the (O, k) 0/1 mask of real entries."""
    members = [torch.nonzero(orbit_sum[:, o]).flatten() for o in range(orbit_sum.shape[1])]
    k = max((len(rows) for rows in members), default=0)
    pairs = torch.zeros(len(members), k, dtype=torch.long)
    mask = torch.zeros(len(members), k, dtype=torch.float64)
    for o, rows in enumerate(members):
        pairs[o, :len(rows)], mask[o, :len(rows)] = rows, 1.0
    return pairs, mask


def _pair_orbit_matrix(lattice, offsets: torch.Tensor) -> torch.Tensor:
    """(m*m, O): entry [a*m + b, o] = 1 when a < b and the pair {a, b} lies in orbit o of the
    point group acting on pairs of neighbourhood sites."""
    perms = lattice.permutations(offsets.numpy())  # (|G|, m)
    m = offsets.shape[0]
    orbit_of: dict = {}
    rows, cols = [], []
    for a in range(m):
        for b in range(a + 1, m):
            key = min(tuple(sorted((int(g[a]), int(g[b])))) for g in perms)
            rows.append(a * m + b)
            cols.append(orbit_of.setdefault(key, len(orbit_of)))
    matrix = torch.zeros(m * m, len(orbit_of), dtype=torch.float64)
    matrix[torch.tensor(rows), torch.tensor(cols)] = 1.0
    return matrix
