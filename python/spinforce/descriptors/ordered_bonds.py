"""Ordered-bond descriptor: every bond of a neighbourhood, in place, for a group-averaged network (docs/ml.md)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .bond_shells import HALF_ANGLE_FLOOR, _half_angle
from ..lattice import require_capability
from .environment import _triangles, default_triangle_cutoff

__all__ = ["OrderedBondDescriptor"]


class OrderedBondDescriptor(nn.Module):
    """The bonds S_a . S_b of a site's neighbourhood, each in its own place, once per operation
    of the lattice point group.

    The neighbourhood is the site (a = 0) and its neighbours within `cutoff`. The bonds are
    those of the site to every neighbour and those between two neighbours no farther apart than
    `bond_cutoff` (by default the second-neighbour distance: the nearest-neighbour bonds and
    the diagonals of the plaquettes, which fix the amplitudes of the electron hoppings and the
    magnitude of the spin solid angles they enclose). With ``half_angle=True`` every bond also
    enters as the double-exchange hopping amplitude cos(theta/2) = sqrt((1 + S_a.S_b)/2 + d^2).

    With ``chirality=True`` (two-dimensional lattices) it adds, for every elementary triangle t of
    the neighbourhood (the nearest-neighbour triangles of the triangular lattice, the four
    half-plaquettes of every square plaquette: `default_triangle_cutoff`), chi_0 chi_t, with
    chi_t = S_a . (S_b x S_c) over its corners counterclockwise and chi_0 the sum of chi over the
    triangles at the site: the bonds give a triangle's solid angle only up to its sign, these give
    the relative signs (which chiral domain, the Berry flux an electron picks up), and are
    unchanged by time reversal and every spin rotation, proper or not, as the energy is.

    Unlike the sums of `bond_shells`, nothing is summed away: which bond is which stays known.
    The features are invariant under global spin rotations and time reversal but not under the
    point group; instead there are ``images = |G|`` rows per site, row g holding the bonds
    relabelled by operation g, and the force field averages its network over them:
    eps_i = (1/|G|) sum_g MLP(f_i^g), invariant by construction (the images of a site are
    permuted by any point-group operation of the lattice). features() returns (N * |G|, F), the
    images of site i in rows i*|G| .. i*|G| + |G| - 1.
    """

    version: int = 1
    kind = "ordered_bonds"

    def __init__(self, lattice, cutoff: float = 2.0, bond_cutoff: float | None = None, half_angle: bool = False,
                 chirality: bool = False):
        super().__init__()
        cutoff = float(cutoff)
        if not cutoff > 0:
            raise ValueError(f"descriptor cutoff must be > 0 (a distance in lattice constants), got {cutoff}")
        offsets = lattice.offsets_within(cutoff).to(torch.long)
        if not len(offsets):
            raise ValueError(f"descriptor cutoff {cutoff} is shorter than the nearest-neighbour distance "
                             f"{lattice.shell_distance(1)} of the {lattice.kind} lattice")
        nearest = float(lattice.shell_distance(1))
        default_bond = float(lattice.shell_distance(2))
        bond_cutoff = default_bond if bond_cutoff is None else float(bond_cutoff)
        if not nearest - 1e-9 <= bond_cutoff <= 2.0 * cutoff + 1e-9:
            raise ValueError(f"descriptor bond_cutoff must lie between the nearest-neighbour distance {nearest:g} "
                             f"and twice the cutoff, {2.0 * cutoff:g}, got {bond_cutoff:g}")
        self.cutoff = cutoff
        self.bond_cutoff: float = bond_cutoff
        self.default_bond_cutoff: float = default_bond
        self.half_angle: bool = bool(half_angle)
        self.half_angle_floor: float = HALF_ANGLE_FLOOR
        self.lattice_kind: str = lattice.kind
        self.register_buffer("neighbor_offsets", offsets)
        # Positions 0 (the site) and 1..m (its neighbours); the pairs (a, b), a < b, of the bonds.
        m = offsets.shape[0]
        pos = np.vstack([np.zeros((1, offsets.shape[1])), offsets.numpy()]) @ lattice.primitive_vectors.numpy()
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        pairs = [(0, b) for b in range(1, m + 1)]
        pairs += [(a, b) for a in range(1, m + 1) for b in range(a + 1, m + 1) if dist[a, b] <= bond_cutoff + 1e-9]
        index = {p: k for k, p in enumerate(pairs)}
        # Point-group images: operation g moves neighbour a to perms[g, a]; image g of the bond
        # list is the bond list read through it.
        perms = np.asarray(lattice.permutations(offsets.numpy()))
        images = np.empty((len(perms), len(pairs)), dtype=np.int64)
        for g, perm in enumerate(perms):
            moved = np.r_[0, 1 + perm]
            for k, (a, b) in enumerate(pairs):
                images[g, k] = index[tuple(sorted((int(moved[a]), int(moved[b]))))]
        self.register_buffer("pair_a", torch.tensor([a for a, _ in pairs], dtype=torch.long))
        self.register_buffer("pair_b", torch.tensor([b for _, b in pairs], dtype=torch.long))
        # Bond (a, b) of a site is the bond of the site at position a to its neighbour at offset
        # o_b - o_a: column pair_columns[p] of the table of every site's bonds to its neighbours
        # (_bonds). Every such offset is a neighbour's when bond_cutoff <= cutoff (the default).
        column = {tuple(o): k for k, o in enumerate(offsets.tolist())}
        cells = np.vstack([np.zeros((1, offsets.shape[1]), dtype=np.int64), offsets.numpy()])
        steps = [tuple((cells[b] - cells[a]).tolist()) for a, b in pairs]
        self.bond_table: bool = all(step in column for step in steps)
        self.register_buffer("pair_columns", torch.tensor([column.get(step, 0) for step in steps], dtype=torch.long),
                             persistent=False)
        self.register_buffer("image_pairs", torch.from_numpy(images).reshape(-1))
        self.images: int = int(len(perms))
        self.num_bonds: int = len(pairs)
        # Chirality products: the bonds fix each triangle's solid angle only up to its sign, and the
        # relative signs (chiral domains, the Berry flux the electrons feel) are lost without them.
        self.chirality: bool = bool(chirality)
        # the elementary triangles, corners counterclockwise (an orientation exists only in the
        # plane; any cutoff the checks above allow holds some at the site)
        if self.chirality:
            require_capability(lattice.kind, "planar", "descriptor chirality (oriented triangles)")
        triangles = np.array(_triangles(pos, default_triangle_cutoff(lattice)) if self.chirality else [],
                             dtype=np.int64).reshape(-1, 3)
        tri_index = {tuple(sorted(t)): k for k, t in enumerate(triangles.tolist())}
        tri_images = np.empty((len(perms), len(triangles)), dtype=np.int64)
        for g, perm in enumerate(perms):
            moved = np.r_[0, 1 + perm]
            for k, t in enumerate(triangles.tolist()):
                tri_images[g, k] = tri_index[tuple(sorted(int(moved[v]) for v in t))]
        self.register_buffer("triangles", torch.from_numpy(triangles.astype(np.int64)))
        self.register_buffer("centre_triangles", torch.tensor([k for k, t in enumerate(triangles.tolist()) if 0 in t],
                                                              dtype=torch.long))
        self.register_buffer("image_triangles", torch.from_numpy(tri_images).reshape(-1))
        self.num_triangles: int = len(triangles)
        self.num_features: int = len(pairs) * (1 + int(self.half_angle)) + self.num_triangles
        # Column k of image g's row is column image_columns[g, k] of the site's features (bonds,
        # half-angle amplitudes, products, each in their own order): a network layer can take all
        # images of a site from its one row of features (spinforce.ml.model). Image 0 is the identity.
        columns = [images + len(pairs) * j for j in range(1 + int(self.half_angle))] + [tri_images + self.num_features
                                                                                         - self.num_triangles]
        columns = np.concatenate(columns, axis=1)
        if not (columns[0] == np.arange(self.num_features)).all():
            raise RuntimeError(f"the first point-group operation of the {lattice.kind} lattice is not the identity")
        self.register_buffer("image_columns", torch.from_numpy(columns), persistent=False)

    def settings(self) -> dict:
        settings: dict = {"cutoff": self.cutoff}
        if self.bond_cutoff != self.default_bond_cutoff:
            settings["bond_cutoff"] = self.bond_cutoff
        if self.half_angle:
            settings["half_angle"] = True
        if self.chirality:
            settings["chirality"] = True
        return settings

    @classmethod
    def from_settings(cls, lattice, settings: dict) -> "OrderedBondDescriptor":
        return cls(lattice, **settings)

    def features(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        site = self.site_features(spins, neighbors)
        return site.index_select(1, self.image_columns.reshape(-1)).reshape(site.shape[0] * self.images, -1)

    def image_features(self, spins: torch.Tensor, neighbors: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(N, F): one image per site, image[i] (0 <= image[i] < images) for site i, the row that
        features() puts at i*images + image[i]. Training draws the images at random (the point
        group as data augmentation) and so runs the network on 1/images of the rows."""
        return self.site_features(spins, neighbors).gather(1, self.image_columns.index_select(0, image))

    def site_features(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """(N, F): one row per site, the row of image 0 (the identity): the bonds in the order of
        the pairs, their half-angle amplitudes (half_angle), the chirality products (chirality)."""
        bonds = self._bonds(spins, neighbors)
        out = bonds
        if self.half_angle:
            out = torch.cat([out, _half_angle(bonds, self.half_angle_floor)], dim=1)
        if self.chirality:
            out = torch.cat([out, self._chirality_products(self._patch(spins, neighbors))], dim=1)
        return out

    def _bonds(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """(N, P): the bonds of every site in the order of the pairs. With bond_table, read from
        the (N, m) bonds of every site to its neighbours: three products per bond of the lattice,
        and a backward pass that adds N x P numbers instead of N x P spins (3x faster than
        gathering both spins of every pair, on 96x96 at cutoff 4.5; the bonds are the same)."""
        n = spins.shape[0]
        if self.bond_table:
            table = (spins.unsqueeze(1) * spins.index_select(0, neighbors.reshape(-1)).reshape(n, -1, 3)).sum(-1)
            at = self._positions(neighbors).index_select(0, self.pair_a) * table.shape[1] + self.pair_columns.unsqueeze(1)
            return table.reshape(-1).index_select(0, at.reshape(-1)).reshape(-1, n).t()
        patch = self._patch(spins, neighbors)
        return (patch.index_select(0, self.pair_a) * patch.index_select(0, self.pair_b)).sum(-1).t()

    def _positions(self, neighbors: torch.Tensor) -> torch.Tensor:
        """(m+1, N): the site at position a of site i's neighbourhood at [a, i] (a = 0: i)."""
        n = neighbors.shape[0]
        return torch.cat([torch.arange(n, dtype=neighbors.dtype, device=neighbors.device).unsqueeze(0),
                          neighbors.t()], dim=0)

    def _patch(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        """(m+1, N, 3): the spin at position a of site i's neighbourhood at [a, i]. Position-major,
        so that gathering positions, and adding their gradients back, moves contiguous blocks."""
        positions = self._positions(neighbors)
        return spins.index_select(0, positions.reshape(-1)).reshape(positions.shape[0], spins.shape[0], 3)

    def _chirality_products(self, patch: torch.Tensor) -> torch.Tensor:
        """(N, T): chi_0 chi_t for the triangles of the neighbourhood, in their order (patch: _patch)."""
        a = patch.index_select(0, self.triangles[:, 0])
        b = patch.index_select(0, self.triangles[:, 1])
        c = patch.index_select(0, self.triangles[:, 2])
        chi = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)                       # (T, N), counterclockwise
        return (chi * chi.index_select(0, self.centre_triangles).sum(0, keepdim=True)).t()

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        return self.features(spins, neighbors)

