"""Periodic Bravais lattices and standard spin configurations on them."""
from __future__ import annotations

import numpy as np
import torch

from . import _core
from ._validate import integer

__all__ = ["Lattice", "LATTICE_KINDS", "require_capability"]

# The table of lattice kinds of the core (cpp/lattice/lattice.hpp): name -> {"dim",
# "point_group", "orthogonal", "triangles" (elementary nearest-neighbour triangles, two per cell;
# else square plaquettes), "bipartite", "planar" (snapshots, cell chiralities)}.
LATTICE_KINDS = _core._lattice_kinds()


def require_capability(kind: str, capability: str, what: str) -> None:
    """ValueError naming the kinds that would do when the lattice kind `kind` lacks `capability`
    (a boolean of LATTICE_KINDS): what needs a capability reads it here, never the kind's name."""
    if not LATTICE_KINDS[kind][capability]:
        having = ", ".join(k for k, info in LATTICE_KINDS.items() if info[capability])
        raise ValueError(f"{what} is defined on lattice kinds with {capability!r} ({having}), not on {kind!r}")

# Unit vectors to the corners of a regular tetrahedron, one per sublattice of the 2x2 cell.
_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3.0)


class Lattice(_core.Lattice):
    """A periodic lattice: ``Lattice("triangular", (12, 12))``.

    kind: a name in LATTICE_KINDS: "square", "triangular" (a1 = (1, 0), a2 = (1/2, sqrt(3)/2)) or "cubic".
    shape: (Lx, Ly) or (Lx, Ly, Lz), or one integer for a cube/square of that side.
    Site index i = x + Lx*y (+ Lx*Ly*z).
    """

    def __init__(self, kind: str, shape):
        if kind not in LATTICE_KINDS:
            raise ValueError(f"lattice kind must be one of {sorted(LATTICE_KINDS)}, got {kind!r}")
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (int(shape),) * LATTICE_KINDS[kind]["dim"]
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
            raise ValueError(f"shape must be an integer or a tuple of integers, got {shape!r}")
        shape = tuple(integer(L, f"every entry of shape {tuple(shape)!r}") for L in shape)
        super().__init__(kind, list(shape))

    def __repr__(self) -> str:
        return f"Lattice({self.kind!r}, {self.shape})"

    def __reduce__(self):
        return (Lattice, (self.kind, self.shape))

    # --- geometry -------------------------------------------------------------------------
    @property
    def coordinates(self) -> np.ndarray:
        """Integer coordinates (N, dim) of every site, in site-index order."""
        axes = [np.arange(L) for L in self.shape]
        grids = np.meshgrid(*axes, indexing="ij")
        # x runs fastest in the site index, so flatten in Fortran order.
        return np.stack([g.ravel(order="F") for g in grids], axis=1)

    @property
    def positions(self) -> np.ndarray:
        """Cartesian positions (N, dim) in units of the lattice constant."""
        return self.coordinates @ self.primitive_vectors.numpy()

    def neighbors(self, k: int = 1) -> np.ndarray:
        """(N, m) site indices of the k-th neighbour shell of every site."""
        return self.neighbor_table(self.shell_offsets(k)).numpy()

    def permutations(self, offsets) -> np.ndarray:
        """(|G|, m): row g maps offset a to the index of g applied to it."""
        return np.asarray(self._permutations(torch.as_tensor(np.asarray(offsets), dtype=torch.long)))

    @property
    def point_group_cartesian(self) -> np.ndarray:
        """Point-group operations as real matrices acting on Cartesian vectors."""
        A = self.primitive_vectors.numpy().T  # columns are primitive vectors
        G = self.point_group_matrices.numpy().astype(float)
        return A @ G @ np.linalg.inv(A)

    # --- spin configurations --------------------------------------------------------------
    def random_spins(self, seed: int | None = None) -> np.ndarray:
        """Uniformly random unit spins (N, 3)."""
        rng = np.random.default_rng(seed)
        s = rng.normal(size=(self.num_sites, 3))
        return s / np.linalg.norm(s, axis=1, keepdims=True)

    def ferromagnetic(self, direction=(0.0, 0.0, 1.0)) -> np.ndarray:
        """All spins along `direction` (normalised)."""
        d = np.asarray(direction, dtype=float)
        if d.shape != (3,) or not np.isfinite(d).all() or np.linalg.norm(d) == 0:
            raise ValueError(f"direction must be a non-zero 3-vector, got {direction!r}")
        return np.tile(d / np.linalg.norm(d), (self.num_sites, 1))

    def neel(self, direction=(0.0, 0.0, 1.0)) -> np.ndarray:
        """Checkerboard antiferromagnet on the square or cubic lattice (even sides)."""
        require_capability(self.kind, "bipartite", "neel")
        if any(L % 2 for L in self.shape):
            raise ValueError(f"neel needs even lattice sides, got shape {self.shape}")
        sign = np.where(self.coordinates.sum(axis=1) % 2 == 0, 1.0, -1.0)
        return self.ferromagnetic(direction) * sign[:, None]

    def tetrahedral(self, chirality: int = 1) -> np.ndarray:
        """Four-sublattice tetrahedral (triple-Q) state of a lattice of triangles (even sides).

        Each spin points to a corner of a regular tetrahedron; every elementary triangle has
        scalar chirality chirality * 4/(3*sqrt(3)). chirality = -1 gives the time-reversed state.
        """
        # every up triangle (x, x+a1, x+a2) and down triangle holds three of the four sublattices
        require_capability(self.kind, "triangles", "tetrahedral")
        if any(L % 2 for L in self.shape):
            raise ValueError(f"tetrahedral needs even lattice sides, got shape {self.shape}")
        if chirality not in (1, -1):
            raise ValueError(f"chirality must be +1 or -1, got {chirality!r}")
        x, y = self.coordinates.T
        sub = (x % 2) + 2 * (y % 2)
        spins = _TETRAHEDRON[sub]
        # Check the handedness on the up-triangle (0, a1, a2) and flip globally if needed.
        chi = np.dot(_TETRAHEDRON[0], np.cross(_TETRAHEDRON[1], _TETRAHEDRON[2]))
        return spins if np.sign(chi) == chirality else -spins

    def spiral(self, q, axis_normal=(0.0, 0.0, 1.0)) -> np.ndarray:
        """Coplanar spiral S_i = cos(q.r_i) e1 + sin(q.r_i) e2 in the plane normal to `axis_normal`."""
        q = np.asarray(q, dtype=float)
        if q.shape != (self.dim,):
            raise ValueError(f"q must have {self.dim} components, got shape {q.shape}")
        n = np.asarray(axis_normal, dtype=float)
        n = n / np.linalg.norm(n)
        e1 = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(n, e1)
        phase = self.positions @ q
        return np.cos(phase)[:, None] * e1 + np.sin(phase)[:, None] * e2
