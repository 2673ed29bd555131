"""Structure factors and real-space correlations on the periodic lattice (FFT).

Reciprocal grid: a lattice with sides (L1, L2[, L3]) and primitive vectors a_k has the
allowed wavevectors q = sum_k (n_k / L_k) b_k, n_k = 0 .. L_k - 1, with b_k . a_l = 2 pi delta_kl.
For a field phi_i (scalar or vector) the structure factor is

    S(q) = (1/N) |sum_i phi_i exp(-i q . r_i)|^2      (summed over vector components),

so that the mean of S over the grid equals the mean of |phi_i|^2 (1 for unit spins).
Arrays on the grid have axes (n_d, ..., n_2, n_1): site i = x + L1*y (+ L1*L2*z) reshaped in C
order puts x on the last axis.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

__all__ = ["reciprocal_vectors", "q_grid", "structure_factor", "correlation_function",
           "radial_correlation", "peak_wavevectors", "distance_to_peaks"]


def _field_grid(field, lattice, name: str) -> np.ndarray:
    """(components, *grid) array of a scalar (N,) or vector (N, c) field."""
    a = np.asarray(field)
    n = lattice.num_sites
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, c) for {lattice!r}, got {np.shape(field)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a.T.reshape((a.shape[1],) + tuple(lattice.shape[::-1]))


def reciprocal_vectors(lattice) -> np.ndarray:
    """(dim, dim), row k is b_k with b_k . a_l = 2 pi delta_kl."""
    A = lattice.primitive_vectors.numpy()
    return 2.0 * np.pi * np.linalg.inv(A).T


def q_grid(lattice) -> np.ndarray:
    """Cartesian wavevectors of the FFT grid, shape (*grid, dim) with grid = shape reversed."""
    B = reciprocal_vectors(lattice)
    axes = [np.arange(L) / L for L in lattice.shape[::-1]]
    frac = np.stack(np.meshgrid(*axes, indexing="ij")[::-1], axis=-1)  # (..., dim) as (f1, f2, ...)
    return frac @ B


def structure_factor(field, lattice) -> np.ndarray:
    """S(q) on the reciprocal grid (axes as `q_grid`) of a scalar (N,) or vector (N, c) field."""
    grid = _field_grid(field, lattice, "field")
    axes = tuple(range(1, grid.ndim))
    f = np.fft.fftn(grid, axes=axes)
    return (np.abs(f) ** 2).sum(axis=0) / lattice.num_sites


def correlation_function(field, lattice) -> np.ndarray:
    """C(d) = (1/N) sum_i phi_i . phi_{i+d} for every lattice displacement d, on the site grid.

    Wiener-Khinchin: C is the inverse FFT of S(q). Axes as the reshaped site grid.
    """
    return np.fft.ifftn(structure_factor(field, lattice)).real


def _minimum_image_distance(lattice) -> np.ndarray:
    """Cartesian length of the shortest periodic image of every displacement on the grid."""
    A = lattice.primitive_vectors.numpy()
    shape = np.asarray(lattice.shape)
    axes = [np.arange(L) for L in lattice.shape[::-1]]
    d = np.stack(np.meshgrid(*axes, indexing="ij")[::-1], axis=-1)  # integer displacements (..., dim)
    best = np.full(d.shape[:-1], np.inf)
    for shift in itertools.product((-1, 0, 1), repeat=lattice.dim):
        r = (d + np.asarray(shift) * shape) @ A
        best = np.minimum(best, np.linalg.norm(r, axis=-1))
    return best


@functools.lru_cache(maxsize=8)
def _distance_shells(kind, shape, r_max):
    """(r, keep, inverse, counts): distinct distances <= r_max and which displacements have each."""
    from ..lattice import Lattice
    dist = _minimum_image_distance(Lattice(kind, shape))
    keep = dist <= r_max + 1e-9
    r, inverse = np.unique(np.round(dist[keep], 6), return_inverse=True)
    return r, keep, inverse, np.bincount(inverse)


def radial_correlation(field, lattice, normalize: bool = True, r_max: float | None = None):
    """Correlation vs distance: (r, C(r)) averaged over displacements of equal length.

    r runs over the distinct neighbour-shell distances up to r_max (default half the shortest
    side, where periodic images do not yet interfere). With normalize, C(0) = 1.
    """
    C = correlation_function(field, lattice)
    if r_max is None:
        r_max = 0.5 * min(lattice.shape)
    if not r_max > 0:
        raise ValueError(f"r_max must be > 0, got {r_max!r}")
    r, keep, inverse, counts = _distance_shells(lattice.kind, tuple(lattice.shape), float(r_max))
    c = np.bincount(inverse, weights=C[keep]) / counts
    if normalize:
        if c[0] <= 0:
            raise ValueError("the field vanishes identically; its correlation cannot be normalised")
        c = c / c[0]
    return r.copy(), c


def peak_wavevectors(sq: np.ndarray, lattice, tolerance: float = 1e-6) -> np.ndarray:
    """Cartesian wavevectors (P, dim) of the maximum of S(q) and its images under the point group."""
    q = q_grid(lattice)
    q0 = q.reshape(-1, lattice.dim)[int(np.argmax(sq))]
    star = lattice.point_group_cartesian @ q0
    unique = []
    for v in star:
        if not any(np.linalg.norm(v - u) < tolerance for u in unique):
            unique.append(v)
    return np.array(unique)


def distance_to_peaks(lattice, peaks) -> np.ndarray:
    """|q - Q| to the nearest peak Q (over reciprocal-lattice images) for every grid point.

    Cached per (lattice, peaks): a trajectory's frames usually share their peaks. Read only.
    """
    peaks = np.atleast_2d(np.asarray(peaks, dtype=float))
    if peaks.ndim != 2 or peaks.shape[1] != lattice.dim or not np.isfinite(peaks).all():
        raise ValueError(f"peaks must be finite wavevectors of shape (P, {lattice.dim}), got {np.shape(peaks)}")
    key = tuple(np.round(peaks, 9).ravel())
    return _distance_to_peaks(lattice.kind, tuple(lattice.shape), key)


@functools.lru_cache(maxsize=8)
def _distance_to_peaks(kind, shape, peak_key) -> np.ndarray:
    from ..lattice import Lattice
    lattice = Lattice(kind, shape)
    peaks = np.asarray(peak_key).reshape(-1, lattice.dim)
    B = reciprocal_vectors(lattice)
    frac_q = q_grid(lattice) @ np.linalg.inv(B)
    best = np.full(frac_q.shape[:-1], np.inf)
    for Q in peaks @ np.linalg.inv(B):
        d = frac_q - Q
        d -= np.round(d)  # fold into [-1/2, 1/2]; the shortest image is then within one cell
        for shift in itertools.product((-1, 0, 1), repeat=lattice.dim):
            best = np.minimum(best, np.linalg.norm((d + np.asarray(shift)) @ B, axis=-1))
    best.flags.writeable = False
    return best
