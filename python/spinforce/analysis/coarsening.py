"""Coarsening measures: domain length scales, growth-exponent fits, ferromagnetic clusters.

Length from the structure factor (inverse first moment)
    L_S = 2 pi / <|q - Q|>,   <|q - Q|> = sum_q |q - Q| S(q) / sum_q S(q),
where |q - Q| is the distance of q to the nearest peak Q (over reciprocal-lattice images and
the point-group star of the peak), summed over the whole reciprocal grid or over |q - Q| <= q_max.
For a sharp peak of width ~ 1/L on a flat background this is proportional to the domain size.

With q_max="peak" only the peak is used: the points (other than Q itself) whose |q - Q| lies
below the first shell, past the largest shell average of S, where the shell average falls
below half that largest one. A Porod tail ~ q^-(d+1) of sharp walls makes the whole-grid first
moment grow logarithmically with the cutoff; inside the peak it does not, and straight stripes
of period lambda give L_S = lambda exactly.

Length from the correlation function
    L_C = the first distance where the normalised radial correlation C(r)/C(0) falls below
    `level` (1/e by default; level=0 gives the first zero), linearly interpolated between
    neighbour shells. NaN when it stays above `level` out to r_max (domains span the system).

Growth exponent: `fit_power_law` over a window; `window_sensitivity` repeats the fit with the
window shifted along log t and reports the spread of the exponents.

Domain walls of the chirality (triangular lattice): every lattice bond is the shared edge of
one up and one down triangle; it is a wall when their chiralities have opposite signs. The
fraction of wall length along each lattice direction a1, a2, a2 - a1 is the fraction of wall
bonds of that direction (a straight wall along a_k is made of bonds along a_k only).

Site clusters: connected components of the sites where a mask is true, joined through
nearest-neighbour bonds (for instance b_i > threshold: ferromagnetic puddles).

Ferromagnetic clusters
    Bonds <ij> (nearest neighbours) with S_i . S_j > threshold are "ferromagnetic"; a cluster
    is a connected component of the graph of these bonds (bond percolation). Sites without a
    ferromagnetic bond are not clusters (min_size = 2). Cluster length L_cl = <s>^(1/d),
    <s> the mean cluster size (sites), d the lattice dimension.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..lattice import require_capability
from .fields import _site_index, check_spins
from .structure import distance_to_peaks, peak_wavevectors

__all__ = ["structure_factor_length", "correlation_length", "PowerLawFit", "fit_power_law", "window_sensitivity",
           "connected_components", "ferromagnetic_clusters", "site_clusters", "cluster_statistics",
           "wall_direction_fractions", "LATTICE_DIRECTIONS"]

# Directions of the triangular lattice's bonds in lattice coordinates: a1, a2, a2 - a1.
LATTICE_DIRECTIONS = ("a1", "a2", "a2-a1")


def structure_factor_length(sq, lattice, peaks=None, q_max: float | str | None = None) -> float:
    """L_S = 2 pi / <|q - Q|>_S (module doc). peaks: (P, dim) wavevectors, default the star of the maximum.
    q_max: None (whole grid), a number (|q - Q| <= q_max) or "peak" (the peak only, module doc)."""
    sq = np.asarray(sq, dtype=float)
    if sq.shape != tuple(lattice.shape[::-1]):
        raise ValueError(f"sq must have the grid shape {tuple(lattice.shape[::-1])}, got {sq.shape}")
    if peaks is None:
        peaks = peak_wavevectors(sq, lattice)
    dq = distance_to_peaks(lattice, peaks)
    if isinstance(q_max, str):
        if q_max != "peak":
            raise ValueError(f"q_max must be a number > 0, None or 'peak', got {q_max!r}")
        keep = (dq > 1e-9) & (dq < _peak_edge(dq, sq))
        dq, sq = dq[keep], sq[keep]
    elif q_max is not None:
        if not q_max > 0:
            raise ValueError(f"q_max must be > 0, got {q_max!r}")
        keep = dq <= q_max
        dq, sq = dq[keep], sq[keep]
    weight = sq.sum()
    if not weight > 0:
        raise ValueError("the structure factor vanishes; no length can be defined")
    moment = (dq * sq).sum() / weight
    return float(2.0 * np.pi / moment) if moment > 0 else float("inf")


def _peak_edge(dq: np.ndarray, sq: np.ndarray, fraction: float = 0.5) -> float:
    """|q - Q| of the first shell past the largest shell average of S where it is below fraction * largest."""
    shell, inverse = np.unique(np.round(dq.ravel(), 9), return_inverse=True)
    mean = np.bincount(inverse, weights=sq.ravel()) / np.bincount(inverse)
    mean[shell <= 1e-9] = -np.inf  # Q itself holds the mean of the field (a finite-size term), not the peak
    top = int(np.argmax(mean))
    if not mean[top] > 0:
        raise ValueError("the structure factor vanishes off its peak; no length can be defined")
    below = np.nonzero(mean[top:] < fraction * mean[top])[0]
    return float(shell[top + below[0]]) if below.size else float("inf")


def correlation_length(r, c, level: float = float(np.exp(-1.0))) -> float:
    """First r where c(r) < level, interpolated linearly (module doc); NaN if never."""
    r = np.asarray(r, dtype=float)
    c = np.asarray(c, dtype=float)
    if r.ndim != 1 or r.shape != c.shape or r.size < 2:
        raise ValueError(f"r and c must be 1-d arrays of equal length >= 2, got {r.shape} and {c.shape}")
    if not -1.0 <= level < 1.0:
        raise ValueError(f"level must be in [-1, 1), got {level!r}")
    below = np.nonzero(c < level)[0]
    if below.size == 0:
        return float("nan")
    k = int(below[0])
    if k == 0:
        return float(r[0])
    return float(r[k - 1] + (c[k - 1] - level) * (r[k] - r[k - 1]) / (c[k - 1] - c[k]))


@dataclass
class PowerLawFit:
    """L = prefactor * t^exponent fitted by least squares on log L vs log t."""

    exponent: float
    stderr: float
    prefactor: float
    t_min: float
    t_max: float
    num_points: int

    def __call__(self, t):
        return self.prefactor * np.asarray(t, dtype=float) ** self.exponent

    def to_dict(self) -> dict:
        return asdict(self)


def fit_power_law(t, L, t_min: float | None = None, t_max: float | None = None) -> PowerLawFit:
    """Growth exponent n of L ~ t^n from points with t_min <= t <= t_max (default: all t > 0).

    Ordinary least squares of y = log L on x = log t. The standard error of the slope is
    sqrt(s^2 / sum (x - mean x)^2), s^2 = sum residual^2 / (m - 2): the scatter of the points
    about the line sets the uncertainty. Needs at least 3 points.
    """
    t = np.asarray(t, dtype=float)
    L = np.asarray(L, dtype=float)
    if t.ndim != 1 or t.shape != L.shape:
        raise ValueError(f"t and L must be 1-d arrays of equal length, got {t.shape} and {L.shape}")
    lo = 0.0 if t_min is None else float(t_min)
    hi = np.inf if t_max is None else float(t_max)
    if not hi > lo:
        raise ValueError(f"the fit window needs t_max > t_min, got t_min={t_min!r}, t_max={t_max!r}")
    keep = (t > 0) & (t >= lo) & (t <= hi) & np.isfinite(L) & np.isfinite(t)
    if (L[keep] <= 0).any():
        raise ValueError("L must be > 0 inside the fit window")
    m = int(keep.sum())
    if m < 3:
        raise ValueError(f"the fit window [{lo}, {hi}] holds {m} usable points; at least 3 are needed")
    x, y = np.log(t[keep]), np.log(L[keep])
    xm, ym = x.mean(), y.mean()
    sxx = ((x - xm) ** 2).sum()
    if sxx == 0:
        raise ValueError("all times in the fit window are equal; the exponent is undefined")
    slope = ((x - xm) * (y - ym)).sum() / sxx
    intercept = ym - slope * xm
    s2 = ((y - intercept - slope * x) ** 2).sum() / (m - 2)
    return PowerLawFit(exponent=float(slope), stderr=float(np.sqrt(s2 / sxx)), prefactor=float(np.exp(intercept)),
                       t_min=float(np.exp(x.min())), t_max=float(np.exp(x.max())), num_points=m)


def window_sensitivity(t, L, t_min: float, t_max: float, factors=(0.5, 0.71, 1.0, 1.41, 2.0)) -> dict:
    """The power-law fit over the window [t_min, t_max] shifted along log t: [t_min f, t_max f] for each
    factor f, clipped to the times there are. Windows with fewer than 3 points, and clipped
    windows that hold the same frames as one before, are left out.

    Returns {"fits": [PowerLawFit as dict with its factor], "spread": max - min exponent,
    "std": standard deviation of the exponents} (NaN without two usable windows).
    """
    if not (np.isfinite(t_min) and np.isfinite(t_max) and 0 < t_min < t_max):
        raise ValueError(f"the fit window needs 0 < t_min < t_max, got t_min={t_min!r}, t_max={t_max!r}")
    fits = []
    for f in factors:
        if not f > 0:
            raise ValueError(f"window shift factors must be > 0, got {f!r}")
        try:
            fit = fit_power_law(t, L, t_min * f, t_max * f)
        except ValueError:
            continue  # the shifted window holds too few points
        if any((g["t_min"], g["t_max"]) == (fit.t_min, fit.t_max) for g in fits):
            continue  # clipped at the ends of the data to a window already fitted
        fits.append({"factor": float(f), **fit.to_dict()})
    n = np.array([f["exponent"] for f in fits])
    return {"fits": fits, "spread": float(n.max() - n.min()) if n.size > 1 else float("nan"),
            "std": float(n.std(ddof=1)) if n.size > 1 else float("nan")}


def connected_components(num_sites: int, u, v) -> np.ndarray:
    """Component label (the smallest site index in it) of every site of the graph with edges (u, v).

    Union-find with hooking and pointer jumping, vectorised over edges: each round hooks every
    root onto the smallest root it is joined to, then compresses all paths. Parents only
    decrease, so no cycles form; the work per round is linear in N + edges.
    """
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    if u.shape != v.shape or u.ndim != 1:
        raise ValueError(f"u and v must be 1-d arrays of equal length, got {u.shape} and {v.shape}")
    if u.size and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= num_sites):
        raise ValueError(f"edge endpoints must lie in [0, {num_sites})")
    parent = np.arange(num_sites, dtype=np.int64)
    while True:
        ru, rv = parent[u], parent[v]
        differ = ru != rv
        if not differ.any():
            return parent
        lo, hi = np.minimum(ru[differ], rv[differ]), np.maximum(ru[differ], rv[differ])
        np.minimum.at(parent, hi, lo)
        while True:  # pointer jumping: afterwards parent[i] is the root of i
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def ferromagnetic_clusters(spins, lattice, threshold: float = 0.9, min_size: int = 2):
    """(labels, sizes): labels (N,) cluster number 0..K-1 of each site (-1: in no cluster),
    sizes (K,) sites per cluster, largest first. Definition in the module doc."""
    if not -1.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [-1, 1), got {threshold!r}")
    if int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be an integer >= 1, got {min_size!r}")
    s = check_spins(spins, lattice)
    if s.ndim != 2:
        raise ValueError(f"spins must be one configuration (N, 3), got shape {s.shape}")
    nbr = lattice.neighbors(1)
    site = np.repeat(np.arange(lattice.num_sites), nbr.shape[1])
    other = nbr.ravel()
    ferro = (np.einsum("ia,ia->i", s[site], s[other]) > threshold) & (site < other)
    root = connected_components(lattice.num_sites, site[ferro], other[ferro])
    return _numbered(root, np.ones(lattice.num_sites, bool), min_size)


def _numbered(root: np.ndarray, member: np.ndarray, min_size: int):
    """(labels, sizes) of components (root per site) of the member sites, largest first, -1 elsewhere."""
    n = root.size
    counts = np.bincount(root[member], minlength=n)
    roots = np.nonzero(counts >= max(int(min_size), 1))[0]
    order = roots[np.argsort(-counts[roots], kind="stable")]
    number = np.full(n, -1, dtype=np.int64)
    number[order] = np.arange(order.size)
    labels = number[root]
    labels[~member] = -1
    return labels, counts[order]


def site_clusters(mask, lattice, min_size: int = 1):
    """(labels, sizes) of the connected regions of sites where `mask` (N,) is true, joined by
    nearest-neighbour bonds; labels -1 outside, sizes largest first (module doc)."""
    mask = np.asarray(mask)
    if mask.shape != (lattice.num_sites,) or mask.dtype != bool:
        raise ValueError(f"mask must be a boolean array of shape ({lattice.num_sites},), got {mask.dtype} {mask.shape}")
    if int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be an integer >= 1, got {min_size!r}")
    nbr = lattice.neighbors(1)
    site = np.repeat(np.arange(lattice.num_sites), nbr.shape[1])
    other = nbr.ravel()
    joined = mask[site] & mask[other] & (site < other)
    root = connected_components(lattice.num_sites, site[joined], other[joined])
    return _numbered(root, mask, min_size)


def wall_direction_fractions(triangle_values, lattice) -> tuple[np.ndarray, np.ndarray]:
    """(fractions, counts), each (3,) over the directions LATTICE_DIRECTIONS: wall bonds, where the up
    and down triangles on either side have values of opposite sign (module doc). Triangle values in
    the order of `fields.triangles` (up triangles first), e.g. `scalar_chirality`. Fractions are NaN
    without walls."""
    require_capability(lattice.kind, "triangles", "wall directions")
    n = lattice.num_sites
    v = np.asarray(triangle_values, dtype=float)
    if v.shape != (2 * n,) or not np.isfinite(v).all():
        raise ValueError(f"triangle_values must be {2 * n} finite values (up triangles, then down), got {v.shape}")
    up, down = np.sign(v[:n]), np.sign(v[n:])
    x = lattice.coordinates
    # the down triangle across each edge of the up triangle at x: a1 edge -> x - a2, a2 edge -> x - a1, a2-a1 edge -> x
    across = [_site_index(lattice, x - np.array([0, 1])), _site_index(lattice, x - np.array([1, 0])), np.arange(n)]
    counts = np.array([np.count_nonzero(up * down[k] < 0) for k in across])
    total = counts.sum()
    return (counts / total if total else np.full(3, np.nan)), counts


def cluster_statistics(sizes, dim: int = 2) -> dict:
    """Number, mean size, size-weighted mean size sum s^2 / sum s, largest size, L_cl = <s>^(1/dim)."""
    sizes = np.asarray(sizes, dtype=float)
    if sizes.size == 0:
        return {"count": 0, "mean_size": 0.0, "weighted_mean_size": 0.0, "largest": 0, "length": 0.0}
    mean = float(sizes.mean())
    return {"count": int(sizes.size), "mean_size": mean,
            "weighted_mean_size": float((sizes ** 2).sum() / sizes.sum()),
            "largest": int(sizes.max()), "length": float(mean ** (1.0 / dim))}
