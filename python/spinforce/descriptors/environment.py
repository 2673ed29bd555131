"""Local spin environments: neighbourhood, bond and chirality variables, their orbits under
the point group and the decomposition of each orbit into irreducible representations.

Everything here is computed once per Descriptor, in numpy, from the lattice's point group.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .groups import PointGroup, projector_range

__all__ = ["Environment", "Orbit", "build_environment", "default_triangle_cutoff"]

_TOL = 1e-9


@dataclass
class Orbit:
    """One orbit of variables under the point group and its irreducible content.

    family: "bond" (S_p.S_q, even under time reversal) or "chirality" (odd).
    variables: indices into the variable vector (bonds first, then triangles).
    copies: list of (irrep name, (d, n_vars) orthonormal rows e_k): coefficients f_k = e_k . v
            transform by D^irrep.
    """

    family: str
    variables: list
    copies: list

    @property
    def size(self) -> int:
        return len(self.variables)

    def multiplicities(self) -> dict:
        out: dict = {}
        for name, _ in self.copies:
            out[name] = out.get(name, 0) + 1
        return out


@dataclass
class Environment:
    offsets: np.ndarray       # (m, dim) neighbour offsets; patch row 1 + a is offset a, row 0 the site
    positions: np.ndarray     # (M, dim) Cartesian positions of the patch rows
    pairs: np.ndarray         # (nb, 2) patch rows of the bond variables
    triangles: np.ndarray     # (nt, 3) patch rows of the triangles, oriented
    block_columns: np.ndarray  # columns of the neighbour table that form the coarse-graining block
    orbits: list

    @property
    def num_variables(self) -> int:
        return len(self.pairs) + len(self.triangles)


def default_triangle_cutoff(lattice) -> float:
    """Smallest length L such that the lattice has a non-degenerate triangle with all edges <= L
    (1 on the triangular lattice, sqrt(2) on square and cubic), in lattice constants."""
    for k in range(1, 6):
        L = lattice.shell_distance(k)
        pos = _cartesian(lattice, lattice.offsets_within(L + _TOL).numpy())
        pos = np.vstack([np.zeros(pos.shape[1]), pos])
        if _triangles(pos, L):
            return float(L)
    raise ValueError("no elementary triangle found")  # pragma: no cover - all three lattices have one


def _cartesian(lattice, offsets: np.ndarray) -> np.ndarray:
    return offsets.astype(float) @ lattice.primitive_vectors.numpy()


def _area2(pos, p, q, r) -> float:
    u, w = pos[q] - pos[p], pos[r] - pos[p]
    if len(u) == 2:
        return float(u[0] * w[1] - u[1] * w[0])
    return float(np.linalg.norm(np.cross(u, w)))


def _triangles(pos: np.ndarray, cutoff: float) -> list:
    """Non-degenerate triangles with all edges <= cutoff; counter-clockwise in 2D, sorted in 3D."""
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    out = []
    for p, q, r in itertools.combinations(range(len(pos)), 3):
        if max(dist[p, q], dist[q, r], dist[p, r]) > cutoff + _TOL:
            continue
        area = _area2(pos, p, q, r)
        if abs(area) < 1e-6:
            continue
        out.append((p, q, r) if area > 0 or pos.shape[1] == 3 else (p, r, q))
    return out


def _parity(source: tuple, target: tuple) -> int:
    """Sign of the permutation that reorders `source` into `target` (same elements)."""
    perm = [source.index(t) for t in target]
    inversions = sum(1 for i in range(3) for j in range(i + 1, 3) if perm[i] > perm[j])
    return -1 if inversions % 2 else 1


def variable_action(group: PointGroup, patch_perm: np.ndarray, pairs: np.ndarray, triangles: np.ndarray):
    """Signed permutation of the variables: image[g, v] and sign[g, v] with
    R(g) v-basis vector e_v = sign * e_image (a configuration rotated by g has v'_image = sign v_v)."""
    nb, nt = len(pairs), len(triangles)
    pair_index = {tuple(sorted(p)): k for k, p in enumerate(map(tuple, pairs))}
    tri_index = {tuple(sorted(t)): k for k, t in enumerate(map(tuple, triangles))}
    image = np.zeros((group.order, nb + nt), dtype=np.int64)
    sign = np.ones((group.order, nb + nt))
    for g, perm in enumerate(patch_perm):
        for k, (p, q) in enumerate(pairs):
            image[g, k] = pair_index[tuple(sorted((perm[p], perm[q])))]
        for k, tri in enumerate(triangles):
            moved = tuple(int(perm[a]) for a in tri)
            j = tri_index[tuple(sorted(moved))]
            image[g, nb + k] = nb + j
            sign[g, nb + k] = _parity(moved, tuple(int(a) for a in triangles[j]))
    return image, sign


def _orbits(image: np.ndarray) -> list:
    seen, out = set(), []
    for v in range(image.shape[1]):
        if v in seen:
            continue
        orbit = sorted(set(image[:, v].tolist()))
        seen.update(orbit)
        out.append(orbit)
    return out


def decompose(group: PointGroup, R: np.ndarray) -> list:
    """IR decomposition of a representation R (|G|, n, n): list of (irrep, (d, n) rows)."""
    n = R.shape[1]
    copies = []
    for name, D in group.irreps.items():
        d = D.shape[1]
        P = [(d / group.order) * np.einsum("g,gij->ij", D[:, k, 0], R) for k in range(d)]  # P_k1
        for v in projector_range((P[0] + P[0].T) / 2):
            copies.append((name, np.stack([Pk @ v for Pk in P])))
    rows = np.vstack([c for _, c in copies]) if copies else np.zeros((0, n))
    if rows.shape[0] != n or not np.allclose(rows @ rows.T, np.eye(n), atol=1e-10):
        raise RuntimeError("IR decomposition is incomplete or not orthonormal")  # guards the group tables
    return copies


def build_environment(lattice, group: PointGroup, cutoff: float, bond_cutoff: float, triangle_cutoff: float,
                      block_radius: float) -> Environment:
    offsets = lattice.offsets_within(cutoff).numpy()
    block = lattice.offsets_within(block_radius).numpy()
    # Coarse-graining block offsets are a subset of the neighbourhood (block_radius <= cutoff).
    lookup = {tuple(o): a for a, o in enumerate(offsets)}
    block_columns = np.array([lookup[tuple(o)] for o in block], dtype=np.int64)
    pos = np.vstack([np.zeros((1, lattice.dim)), _cartesian(lattice, offsets)])
    M = len(pos)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    pairs = [(p, q) for p, q in itertools.combinations(range(M), 2)
             if p == 0 or dist[p, q] <= bond_cutoff + _TOL]
    triangles = _triangles(pos, triangle_cutoff)
    pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    triangles = np.array(triangles, dtype=np.int64).reshape(-1, 3)
    perm = lattice.permutations(offsets)
    patch_perm = np.hstack([np.zeros((group.order, 1), dtype=np.int64), 1 + perm])
    image, sign = variable_action(group, patch_perm, pairs, triangles)
    orbits = []
    for members in _orbits(image):
        local = {v: k for k, v in enumerate(members)}
        n = len(members)
        R = np.zeros((group.order, n, n))
        for g in range(group.order):
            for v in members:
                R[g, local[image[g, v]], local[v]] = sign[g, v]
        family = "bond" if members[0] < len(pairs) else "chirality"
        orbits.append(Orbit(family, members, decompose(group, R)))
    return Environment(offsets, pos, pairs, triangles, block_columns, orbits)
