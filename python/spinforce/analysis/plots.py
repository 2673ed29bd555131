"""PNG plots of analysis results (matplotlib, Agg backend; nothing opens a window)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.tri import Triangulation  # noqa: E402

from ..lattice import require_capability  # noqa: E402
from .coarsening import PowerLawFit  # noqa: E402
from .fields import TETRAHEDRAL_CHIRALITY, _site_index  # noqa: E402

__all__ = ["display_triangulation", "plot_snapshot", "plot_length_scales", "plot_cluster_statistics",
           "plot_correlation_comparison", "plot_fractions", "plot_bands"]


def display_triangulation(lattice, max_side: int = 128):
    """Non-overlapping triangles that tile the lattice (no periodic wrap), cropped to the first
    max_side x max_side sites. Returns (Triangulation, anchor, half): triangle k belongs to the
    cell anchored at site anchor[k]; half[k] is 0 for the up triangle (triangular) or the first
    half of the plaquette (square), 1 for the other one."""
    require_capability(lattice.kind, "planar", "a lattice snapshot")
    if int(max_side) < 2:
        raise ValueError(f"max_side must be >= 2, got {max_side!r}")
    nx, ny = (min(int(L), int(max_side)) for L in lattice.shape)
    x, y = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1), indexing="ij")
    x0 = np.stack([x.ravel(), y.ravel()], axis=1)
    e1, e2 = np.array([1, 0]), np.array([0, 1])
    if lattice.kind_info["triangles"]:
        first = np.stack([x0, x0 + e1, x0 + e2], axis=1)
        second = np.stack([x0 + e1, x0 + e1 + e2, x0 + e2], axis=1)
    else:
        first = np.stack([x0, x0 + e1, x0 + e1 + e2], axis=1)
        second = np.stack([x0, x0 + e1 + e2, x0 + e2], axis=1)
    tri = _site_index(lattice, np.concatenate([first, second]))
    anchor = _site_index(lattice, np.concatenate([x0, x0]))
    half = np.repeat([0, 1], len(x0))
    pos = lattice.positions
    return Triangulation(pos[:, 0], pos[:, 1], tri), anchor, half


def plot_snapshot(lattice, path, *, site_values=None, cell_values=None, title: str = "", label: str = "",
                  cmap: str = "RdBu_r", vmin: float | None = None, vmax: float | None = None,
                  max_side: int = 128) -> Path:
    """Colour map of a field on the real lattice geometry.

    site_values (N,): each display triangle gets the mean of its three corners.
    cell_values (N, 2) or (N,): value of the (up, down) triangle or plaquette anchored at a site.
    """
    if (site_values is None) == (cell_values is None):
        raise ValueError("give exactly one of site_values and cell_values")
    triang, anchor, half = display_triangulation(lattice, max_side)
    n = lattice.num_sites
    if site_values is not None:
        v = np.asarray(site_values, dtype=float)
        if v.shape != (n,):
            raise ValueError(f"site_values must have shape ({n},), got {v.shape}")
        colours = v[triang.triangles].mean(axis=1)
    else:
        v = np.asarray(cell_values, dtype=float)
        if v.shape == (n,):
            v = np.stack([v, v], axis=1)
        if v.shape != (n, 2):
            raise ValueError(f"cell_values must have shape ({n},) or ({n}, 2), got {v.shape}")
        colours = v[anchor, half]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    art = ax.tripcolor(triang, facecolors=colours, cmap=cmap, vmin=vmin, vmax=vmax, edgecolors="none")
    ax.set_aspect("equal")
    ax.set_xlabel("x (lattice constants)")
    ax.set_ylabel("y")
    crop = "" if max(lattice.shape) <= max_side else f" (first {max_side}x{max_side} sites)"
    ax.set_title(title + crop)
    fig.colorbar(art, ax=ax, label=label, shrink=0.85)
    return _save(fig, path)


def chirality_limits() -> tuple[float, float]:
    return -TETRAHEDRAL_CHIRALITY, TETRAHEDRAL_CHIRALITY


def plot_length_scales(t, lengths: dict, fits: dict, path, title: str = "Domain growth",
                       errors: dict | None = None) -> Path:
    """L(t) of each measure on log-log axes, with its fitted power law(s) over the fit window(s).

    fits: name -> PowerLawFit, or a list of fits or of their dicts (several windows).
    errors: name -> standard error of L at each time, drawn as a band.
    """
    t = np.asarray(t, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for k, (name, L) in enumerate(lengths.items()):
        L = np.asarray(L, dtype=float)
        ok = (t > 0) & np.isfinite(L) & (L > 0)
        if not ok.any():
            continue
        colour = f"C{k}"
        ax.loglog(t[ok], L[ok], "o", ms=3.5, color=colour, label=name)
        if errors is not None and name in errors:
            err = np.nan_to_num(np.asarray(errors[name], dtype=float)[ok])
            ax.fill_between(t[ok], np.maximum(L[ok] - err, L[ok] * 1e-3), L[ok] + err, color=colour, alpha=0.2, lw=0)
        found = fits.get(name)
        for style, fit in zip(("-", "--", ":"), found if isinstance(found, list) else [found]):
            if fit is None:
                continue
            if isinstance(fit, dict):
                fit = PowerLawFit(**{key: fit[key] for key in PowerLawFit.__dataclass_fields__})
            tt = np.geomspace(fit.t_min, fit.t_max, 50)
            ax.loglog(tt, fit(tt), style, color=colour, lw=1.5,
                      label=f"fit {fit.t_min:.3g}..{fit.t_max:.3g}: n = {fit.exponent:.3f} ± {fit.stderr:.3f}")
    ax.set_xlabel("time t")
    ax.set_ylabel("L (lattice constants)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_cluster_statistics(t, stats: list, size_samples: list, path, threshold: float, what: str = "S_i·S_j") -> Path:
    """Left: mean and size-weighted mean cluster size and cluster count vs time.
    Right: cluster-size distributions (log bins) at a few times, size_samples = [(t, sizes)]."""
    t = np.asarray(t, dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    mean = np.array([s["mean_size"] for s in stats])
    weighted = np.array([s["weighted_mean_size"] for s in stats])
    count = np.array([s["count"] for s in stats])
    ok = t > 0
    ax1.loglog(t[ok], np.where(mean[ok] > 0, mean[ok], np.nan), "o-", ms=3, label="mean size <s>")
    ax1.loglog(t[ok], np.where(weighted[ok] > 0, weighted[ok], np.nan), "s-", ms=3, label="Σs²/Σs")
    ax1.set_xlabel("time t")
    ax1.set_ylabel("cluster size (sites)")
    ax1.grid(True, which="both", alpha=0.3)
    twin = ax1.twinx()
    twin.plot(t[ok], count[ok], "k:", lw=1, label="number of clusters")
    twin.set_ylabel("number of clusters")
    ax1.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    ax1.set_title(f"ferromagnetic clusters ({what} > {threshold:g})")
    for k, (tk, sizes) in enumerate(size_samples):
        sizes = np.asarray(sizes)
        if sizes.size == 0:
            continue
        bins = np.unique(np.geomspace(1, sizes.max() + 1, 20).astype(int))
        if bins.size < 2:
            bins = np.array([sizes.min(), sizes.max() + 1])
        hist, edges = np.histogram(sizes, bins=bins)
        density = hist / np.diff(edges)
        centres = np.sqrt(edges[:-1] * edges[1:])
        good = density > 0
        ax2.loglog(centres[good], density[good], "o-", ms=3, color=f"C{k}", label=f"t = {tk:g}")
    ax2.set_xlabel("cluster size s (sites)")
    ax2.set_ylabel("clusters per unit size")
    ax2.set_title("size distribution")
    ax2.grid(True, which="both", alpha=0.3)
    if size_samples:
        ax2.legend(fontsize=8)
    return _save(fig, path)


def plot_correlation_comparison(curves: dict, path, title: str = "spin-spin correlation") -> Path:
    """C(r) of several runs, curves = {label: (r, C)}."""
    if not curves:
        raise ValueError("curves must hold at least one (r, C) pair")
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    markers = "osd^v<>"
    for k, (label, (r, c)) in enumerate(curves.items()):
        ax.plot(r, c, marker=markers[k % len(markers)], ms=4, lw=1, label=label)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("distance r (lattice constants)")
    ax.set_ylabel("C(r) = <S_i · S_j>, |r_i - r_j| = r")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_fractions(t, fractions, labels, path, title: str = "") -> Path:
    """Fractions (T, K) vs time, one line per label, on a log time axis."""
    t = np.asarray(t, dtype=float)
    fractions = np.asarray(fractions, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ok = t > 0
    for k, label in enumerate(labels):
        ax.semilogx(t[ok], fractions[ok, k], "o-", ms=3, label=label)
    ax.axhline(1.0 / len(labels), color="k", lw=0.6, ls=":", label="isotropic")
    ax.set(xlabel="time t", ylabel="fraction", title=title, ylim=(0, 1))
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_bands(curves: dict, path, *, xlabel: str, ylabel: str, title: str = "", log: bool = False) -> Path:
    """Curves with error bands: curves = {label: (x, y, standard error of y)}."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for k, (label, (x, y, err)) in enumerate(curves.items()):
        x, y, err = (np.asarray(a, dtype=float) for a in (x, y, err))
        ok = np.isfinite(y) & ((x > 0) & (y > 0) if log else True)
        ax.plot(x[ok], y[ok], "o-", ms=3, lw=1, color=f"C{k}", label=label)
        e = np.nan_to_num(err[ok])
        ax.fill_between(x[ok], y[ok] - e, y[ok] + e, color=f"C{k}", alpha=0.25, lw=0)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
