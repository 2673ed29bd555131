"""Point groups of the lattices (D4, C6v, Oh) with explicit real orthogonal irreducible
representations, built from polynomial basis functions of each irreducible representation.

For a basis function phi, (g . phi)(r) = phi(g^-1 r) = sum_l D_lk(g) phi_l(r); the matrices are
fitted on random points, then made exactly orthogonal by symmetrising with the invariant
metric sum_g D(g)^T D(g). Tests check the homomorphism property and the character tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PointGroup", "point_group", "invariant_tensors", "projector_range"]

_S3 = np.sqrt(3.0)


def _pg_d4(r):
    x, y = r[:, 0], r[:, 1]
    return {
        "A1": [np.ones_like(x)],
        "A2": [x * y * (x**2 - y**2)],
        "B1": [x**2 - y**2],
        "B2": [x * y],
        "E": [x, y],
    }


def _pg_c6v(r):
    x, y = r[:, 0], r[:, 1]
    z = x + 1j * y
    return {
        "A1": [np.ones_like(x)],
        "A2": [(z**6).imag],
        "B1": [(z**3).real],  # even under the mirror y -> -y
        "B2": [(z**3).imag],
        "E1": [x, y],
        "E2": [x**2 - y**2, 2 * x * y],
    }


def _pg_oh(r):
    x, y, z = r[:, 0], r[:, 1], r[:, 2]
    a2g = (x**2 - y**2) * (y**2 - z**2) * (z**2 - x**2)
    eg = [2 * z**2 - x**2 - y**2, _S3 * (x**2 - y**2)]
    xyz = x * y * z
    return {
        "A1g": [np.ones_like(x)],
        "A2g": [a2g],
        "Eg": eg,
        "T1g": [y * z * (y**2 - z**2), z * x * (z**2 - x**2), x * y * (x**2 - y**2)],
        "T2g": [y * z, z * x, x * y],
        "A1u": [xyz * a2g],
        "A2u": [xyz],
        "Eu": [xyz * e for e in eg],
        "T1u": [x, y, z],
        "T2u": [x * (y**2 - z**2), y * (z**2 - x**2), z * (x**2 - y**2)],
    }


_BASES = {"D4": _pg_d4, "C6v": _pg_c6v, "Oh": _pg_oh}


@dataclass
class PointGroup:
    """A point group with its irreducible representations.

    name: "D4", "C6v" or "Oh".  matrices: (|G|, dim, dim) integer matrices on lattice offsets
    (identity first, the lattice's order).  cartesian: the same as orthogonal Cartesian matrices.
    det: +1 proper, -1 orientation-reversing.  table[g, h]: index of g h.  inverse[g].
    irreps: name -> (|G|, d, d) real orthogonal matrices D(g).  characters: name -> (|G|,) traces.
    """

    name: str
    matrices: np.ndarray
    cartesian: np.ndarray
    det: np.ndarray
    table: np.ndarray
    inverse: np.ndarray
    irreps: dict = field(default_factory=dict)

    @property
    def order(self) -> int:
        return len(self.matrices)

    @property
    def characters(self) -> dict:
        return {name: np.trace(D, axis1=1, axis2=2) for name, D in self.irreps.items()}

    @property
    def identity_irrep(self) -> str:
        return next(iter(self.irreps))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "order": self.order,
            "irreps": {n: {"dim": int(D.shape[1]), "characters": np.round(self.characters[n], 12).tolist(),
                           "matrices": np.round(D, 15).tolist()}
                       for n, D in self.irreps.items()},
            "operations": self.matrices.tolist(),
            "det": self.det.tolist(),
        }


def _fit_irrep(basis, cartesian: np.ndarray, rng) -> np.ndarray:
    dim = cartesian.shape[1]
    points = rng.normal(size=(64, dim))
    values = np.stack(basis(points), axis=1)  # (P, d)
    mats = []
    for g in cartesian:
        # phi(g^-1 r) for every point; g is orthogonal, so g^-1 = g^T and r -> g^T r is r @ g.
        moved = np.stack(basis(points @ g), axis=1)
        D, *_ = np.linalg.lstsq(values, moved, rcond=None)
        mats.append(D)
    D = np.array(mats)
    # Orthogonalise with the invariant metric H = sum_g D^T D:  D' = H^1/2 D H^-1/2.
    H = np.einsum("gji,gjk->ik", D, D)
    w, V = np.linalg.eigh(H)
    S = V @ np.diag(np.sqrt(w)) @ V.T
    Sinv = V @ np.diag(1 / np.sqrt(w)) @ V.T
    D = S @ D @ Sinv
    return np.where(np.abs(D) < 1e-13, 0.0, D)


def point_group(lattice) -> PointGroup:
    """The on-site point group of `lattice` with its irreducible representations."""
    name = lattice.point_group_name
    ints = lattice.point_group_matrices.numpy().astype(np.int64)
    cart = np.asarray(lattice.point_group_cartesian, dtype=float)
    cart = np.where(np.abs(cart - np.round(cart)) < 1e-12, np.round(cart), cart)
    order = len(ints)
    index = {m.tobytes(): k for k, m in enumerate(ints)}
    table = np.array([[index[(ints[g] @ ints[h]).tobytes()] for h in range(order)] for g in range(order)])
    inverse = np.array([int(np.where(table[g] == 0)[0][0]) for g in range(order)])
    group = PointGroup(name, ints, cart, np.round(np.linalg.det(cart)).astype(int), table, inverse)
    basis = _BASES[name]
    rng = np.random.default_rng(12345)
    for irrep in basis(np.zeros((1, cart.shape[1]))):
        group.irreps[irrep] = _fit_irrep(lambda r, n=irrep: basis(r)[n], cart, rng)
    return group


def projector_range(P: np.ndarray) -> np.ndarray:
    """Orthonormal basis (rows) of the range of an orthogonal projector P, chosen canonically:
    Gram-Schmidt on P's columns in order, so that the basis (and with it every feature's
    definition) does not depend on the eigensolver or the platform."""
    rank = int(round(np.trace(P)))
    basis = []
    for column in P.T:
        x = column - sum((b @ column) * b for b in basis)
        norm = np.linalg.norm(x)
        if norm > 1e-6:
            basis.append(x / norm)
            if len(basis) == rank:
                break
    if len(basis) != rank:  # pragma: no cover - P is a projector by construction
        raise RuntimeError("projector of non-integer trace")
    return np.array(basis).reshape(rank, P.shape[0])


def invariant_tensors(group: PointGroup, a: str, b: str, c: str) -> list[np.ndarray]:
    """Orthonormal invariant tensors C (da, db, dc): sum C_ijk x_i y_j z_k is invariant for
    x, y, z transforming by the irreps a, b, c (the Clebsch-Gordan coupling to the identity)."""
    Da, Db, Dc = group.irreps[a], group.irreps[b], group.irreps[c]
    P = np.einsum("gil,gjm,gkn->ijklmn", Da, Db, Dc) / group.order
    shape = (Da.shape[1], Db.shape[1], Dc.shape[1])
    n = int(np.prod(shape))
    return [np.where(np.abs(v) < 1e-13, 0.0, v).reshape(shape) for v in projector_range(P.reshape(n, n))]
