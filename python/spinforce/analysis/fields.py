"""Local order fields of a spin configuration: scalar chirality, bond average, magnetisation.

Conventions
-----------
Scalar chirality of an ordered triangle (i, j, k) is chi = S_i . (S_j x S_k), with the
vertices counter-clockwise in the plane of the lattice.

* triangular lattice (a1 = (1, 0), a2 = (1/2, sqrt(3)/2)): every site x anchors one up
  triangle (x, x+a1, x+a2) and one down triangle (x+a1, x+a1+a2, x+a2); 2N triangles, up
  triangles first. Each site belongs to 6 triangles.
* square lattice: every site x anchors the plaquette (x, x+a1, x+a1+a2, x+a2); its four corner
  triangles (corner, next corner, previous corner), all counter-clockwise, are triangles
  4p .. 4p+3 of plaquette p. The plaquette chirality is their mean. Each site belongs to
  12 triangles (3 in each of its 4 plaquettes).
* the cubic lattice has no planar orientation and is rejected.

The site chirality is the mean over the triangles that contain the site.
"""
from __future__ import annotations

import numpy as np

from .._validate import spin_lengths
from ..lattice import require_capability

__all__ = ["check_spins", "triangles", "scalar_chirality", "site_chirality", "plaquette_chirality",
           "bond_average", "bond_products", "magnetization"]

TETRAHEDRAL_CHIRALITY = 4.0 / (3.0 * np.sqrt(3.0))


def check_spins(spins, lattice, name: str = "spins", unit: bool = False) -> np.ndarray:
    """Spins as a float64 (N, 3) or (M, N, 3) array matching `lattice`; ValueError otherwise
    (with `unit`, also for spins whose length is off 1 by more than 1e-6: a run file's)."""
    try:
        s = np.asarray(spins, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape (N, 3), got {type(spins).__name__}") from None
    n = lattice.num_sites
    if s.ndim not in (2, 3) or s.shape[-2:] != (n, 3):
        raise ValueError(f"{name} must have shape ({n}, 3) (or (M, {n}, 3)) for {lattice!r}, got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if unit:
        off, span = spin_lengths(s)
        if off.any():
            raise ValueError(f"{name} holds spins that are not unit vectors (|S| ranges over {span})")
    return s


def _site_index(lattice, coords: np.ndarray) -> np.ndarray:
    """Site index of integer coordinates (..., dim), wrapped periodically."""
    shape = np.asarray(lattice.shape)
    c = np.mod(coords, shape)
    index = np.zeros(c.shape[:-1], dtype=np.int64)
    stride = 1
    for axis, L in enumerate(shape):
        index += c[..., axis] * stride
        stride *= int(L)
    return index


def triangles(lattice) -> np.ndarray:
    """(T, 3) site indices of the oriented triangles used for the chirality (see module doc)."""
    require_capability(lattice.kind, "planar", "scalar chirality")
    x = lattice.coordinates
    e1, e2 = np.array([1, 0]), np.array([0, 1])
    if lattice.kind_info["triangles"]:
        up = np.stack([x, x + e1, x + e2], axis=1)
        down = np.stack([x + e1, x + e1 + e2, x + e2], axis=1)
        corners = np.concatenate([up, down], axis=0)
    else:
        ring = np.stack([x, x + e1, x + e1 + e2, x + e2], axis=1)  # (N, 4, 2) counter-clockwise
        corner = np.arange(4)
        # Triangle at corner c: (c, c+1, c-1), counter-clockwise like the plaquette.
        corners = np.stack([ring[:, corner], ring[:, (corner + 1) % 4], ring[:, (corner - 1) % 4]], axis=2)
        corners = corners.reshape(-1, 3, 2)
    return _site_index(lattice, corners)


def scalar_chirality(spins, lattice) -> np.ndarray:
    """Chirality S_i . (S_j x S_k) of every triangle of `triangles(lattice)`: (T,) or (M, T)."""
    s = check_spins(spins, lattice)
    tri = triangles(lattice)
    si, sj, sk = s[..., tri[:, 0], :], s[..., tri[:, 1], :], s[..., tri[:, 2], :]
    return np.einsum("...a,...a->...", si, np.cross(sj, sk))


def _triangle_to_site(lattice, values: np.ndarray) -> np.ndarray:
    tri = triangles(lattice)
    n = lattice.num_sites
    counts = np.bincount(tri.ravel(), minlength=n)
    flat = values.reshape(-1, tri.shape[0])
    out = np.stack([np.bincount(tri.ravel(), weights=np.repeat(v, 3), minlength=n) for v in flat]) / counts
    return out.reshape(values.shape[:-1] + (n,))


def site_chirality(spins, lattice) -> np.ndarray:
    """Mean chirality of the triangles containing each site: (N,) or (M, N)."""
    return _triangle_to_site(lattice, scalar_chirality(spins, lattice))


def plaquette_chirality(spins, lattice) -> np.ndarray:
    """One chirality per elementary plaquette, indexed by its anchor site: (N,) or (M, N).

    Triangular: the mean of the up and down triangle anchored at the site (a rhombus).
    Square: the mean of the four corner triangles of the plaquette.
    """
    chi = scalar_chirality(spins, lattice)
    n = lattice.num_sites
    if lattice.kind_info["triangles"]:
        return 0.5 * (chi[..., :n] + chi[..., n:])
    return chi.reshape(chi.shape[:-1] + (n, 4)).mean(axis=-1)


def bond_products(spins, lattice) -> np.ndarray:
    """S_i . S_j for every nearest-neighbour bond, (N, z) or (M, N, z), row i = bonds of site i."""
    s = check_spins(spins, lattice)
    nbr = lattice.neighbors(1)
    return np.einsum("...ia,...ija->...ij", s, s[..., nbr, :])


def bond_average(spins, lattice) -> np.ndarray:
    """b_i = (1/z) sum_nn S_i . S_j, z the coordination number: (N,) or (M, N).

    +1 in a ferromagnet, -1 in a collinear antiferromagnet on a bipartite lattice.
    """
    return bond_products(spins, lattice).mean(axis=-1)


def magnetization(spins, lattice=None) -> np.ndarray:
    """Mean spin m = (1/N) sum_i S_i: (3,) or (M, 3)."""
    s = check_spins(spins, lattice) if lattice is not None else np.asarray(spins, dtype=np.float64)
    if s.ndim not in (2, 3) or s.shape[-1] != 3:
        raise ValueError(f"spins must have shape (N, 3) or (M, N, 3), got {s.shape}")
    return s.mean(axis=-2)
