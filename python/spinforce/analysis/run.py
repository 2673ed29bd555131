"""Whole-trajectory analysis: every observable over the frames of a run file, CSV/JSON + PNGs.

Python API of ``spinforce analyze``:

    result = analyze_run("run.h5", out="run_analysis", threshold=0.9, fit_window=(10, 1000))
    result.timeseries["L_chirality_sf"], result.fits["L_chirality_sf"].exponent

Length measures (columns of timeseries.csv, all in lattice constants; see coarsening.py):
    L_spin_sf          inverse first moment of the spin S(q) about its peak star
    L_chirality_sf     same for the plaquette chirality (2D lattices), about q = 0
    L_chirality_corr   1/e crossing of the chirality correlation C(r)/C(0) (2D lattices)
    L_bond_corr        1/e crossing of the correlation of b_i - <b> (bond-average fluctuations)
    L_cluster          <s>^(1/d), <s> the mean ferromagnetic-cluster size
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._validate import integer
from ..data import open_h5, read_dataset
from ..outputs import prepare_outputs
from . import plots
from .coarsening import (cluster_statistics, correlation_length, ferromagnetic_clusters,
                         fit_power_law, structure_factor_length)
from .fields import bond_average, check_spins, magnetization, plaquette_chirality, scalar_chirality
from .structure import radial_correlation, structure_factor

__all__ = ["FrameAnalyzer", "RunAnalysis", "analyze_run", "count_frames", "frame_times", "default_fit_window",
           "mean_radial_correlation"]

LENGTHS = ("L_spin_sf", "L_chirality_sf", "L_chirality_corr", "L_bond_corr", "L_cluster")
OUTPUT_FILES = ("timeseries.csv", "summary.json", "correlation.csv", "cluster_sizes.csv")
# Everything analyze_run writes into its folder (outputs.py): --overwrite removes these and nothing else.
OUTPUTS = OUTPUT_FILES + ("correlation_compare.csv", "length_scales.png", "clusters.png", "chirality_snapshot.png",
                          "bond_snapshot.png", "correlation.png",
                          "ensembles.json", "ensembles.png")  # the last two: `spinforce analyze --reference`


class FrameAnalyzer:
    """Observables of one frame (N, 3), or of an ensemble of runs at the same time (R, N, 3).

    For an ensemble, S(q) and C(r) are averaged over the runs before lengths are taken (the
    ensemble-averaged structure factor), scalars are run averages, clusters are pooled.
    """

    def __init__(self, lattice, threshold: float = 0.9):
        if not -1.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [-1, 1), got {threshold!r}")
        self.lattice = lattice
        self.threshold = float(threshold)
        self.planar = lattice.kind_info["planar"]

    def __call__(self, spins) -> tuple[dict, np.ndarray]:
        """(row of scalar observables, pooled cluster sizes)."""
        lat = self.lattice
        s = check_spins(spins, lat)
        if s.ndim == 2:
            s = s[None]
        row = {}
        m = magnetization(s)
        row.update(m_x=m[:, 0].mean(), m_y=m[:, 1].mean(), m_z=m[:, 2].mean(),
                   m_abs=float(np.linalg.norm(m, axis=1).mean()))
        b = bond_average(s, lat)
        row["bond_mean"] = float(b.mean())
        row["L_spin_sf"] = structure_factor_length(_mean_structure_factor(s, lat), lat)
        if self.planar:
            chi = plaquette_chirality(s, lat)
            row["chirality_mean"] = float(chi.mean())
            row["chirality_abs_mean"] = float(np.abs(chi).mean())
            # collinear spins have no chirality at all: no length (like _corr_length), not an error
            row["L_chirality_sf"] = (structure_factor_length(_mean_structure_factor(chi, lat), lat,
                                                             peaks=np.zeros((1, lat.dim)))
                                     if np.any(chi) else float("nan"))
            row["L_chirality_corr"] = _corr_length(chi, lat)
        else:
            row.update(chirality_mean=np.nan, chirality_abs_mean=np.nan, L_chirality_sf=np.nan,
                       L_chirality_corr=np.nan)
        row["L_bond_corr"] = _corr_length(b - b.mean(axis=1, keepdims=True), lat)
        sizes = np.concatenate([ferromagnetic_clusters(x, lat, self.threshold)[1] for x in s])
        stats = cluster_statistics(sizes, lat.dim)
        row.update(clusters=stats["count"] / len(s), cluster_mean_size=stats["mean_size"],
                   cluster_weighted_size=stats["weighted_mean_size"], cluster_largest=stats["largest"],
                   L_cluster=stats["length"] if stats["count"] else np.nan)
        return row, sizes


def _mean_structure_factor(fields, lattice) -> np.ndarray:
    return np.mean([structure_factor(f, lattice) for f in fields], axis=0)


def mean_radial_correlation(fields, lattice, normalize: bool = False):
    """(r, C(r)) averaged over a stack of fields (R, N) or (R, N, c): runs or frames."""
    curves = [radial_correlation(f, lattice, normalize=False) for f in fields]
    c = np.mean([c for _, c in curves], axis=0)
    if normalize:
        if c[0] <= 0:
            raise ValueError("the field vanishes identically; its correlation cannot be normalised")
        c = c / c[0]
    return curves[0][0], c


def _corr_length(fields, lattice) -> float:
    """1/e length of the run-averaged correlation of a stack (R, N); NaN for vanishing fields."""
    if not np.any(fields):
        return float("nan")
    r, c = mean_radial_correlation(fields, lattice, normalize=True)
    return correlation_length(r, c)


def frame_times(time, step) -> np.ndarray:
    """Simulation time of each frame; the step number where times are missing (NaN)."""
    time = np.asarray(time, dtype=float)
    step = np.asarray(step, dtype=float)
    return np.where(np.isfinite(time), time, np.where(step >= 0, step, np.arange(time.size)))


def default_fit_window(t) -> tuple[float, float]:
    """The last decade of times, t_end/10 .. t_end, if it holds >= 3 frames; else all t > 0."""
    t = np.asarray(t, dtype=float)
    positive = t[t > 0]
    if positive.size == 0:
        return (0.0, 0.0)
    end = positive.max()
    if (positive >= end / 10).sum() >= 3:
        return (end / 10, end)
    return (positive.min(), end)


@dataclass
class RunAnalysis:
    """What analyze_run computed. timeseries: column -> array over frames."""

    path: str
    timeseries: dict
    fits: dict = field(default_factory=dict)
    fit_window: tuple = (0.0, 0.0)
    correlation: tuple = ()
    files: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def count_frames(path) -> int:
    """Number of complete frames in a run or dataset file."""
    with open_h5(path) as f:
        return int(f["energy"].shape[0])


def trajectory_frames(path) -> tuple[np.ndarray, int]:
    """(indices of the trajectory frames, number of independent samples) of a run or dataset
    file: samples (step -1, written by `spinforce generate` after its trajectory) have no time."""
    with open_h5(path) as f:
        n = int(f["energy"].shape[0])
        step = f["step"][:n]
    return np.flatnonzero(step >= 0), int(np.sum(step < 0))


def check_distinct_runs(paths) -> None:
    """ValueError naming a file that appears twice (same resolved path) among the runs of one ensemble:
    counted twice, it would weigh double in the means and shrink their standard errors."""
    seen = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            raise ValueError(f"{p} is given twice in one ensemble (also as {seen[key]}); its runs must be "
                             "different files: a run counted twice weighs double and makes the standard errors too small")
        seen[key] = p


def _frame(path, k):
    return read_dataset(path, frames=slice(k, k + 1))


def analyze_run(path, out=None, *, threshold: float = 0.9, fit_window=None, every: int = 1,
                compare=None, compare_labels=("this run", "other run"), snapshot_side: int = 128,
                overwrite: bool = False, progress: bool = True) -> RunAnalysis:
    """Analyse every `every`-th frame of the run file `path`; write results into `out` if given.

    path: one run file, or a list of runs of one ensemble (same lattice, same frame times, e.g.
    different noise seeds): structure factors and correlations are then ensemble averages
    (FrameAnalyzer), snapshots show the first run.
    fit_window: (t_min, t_max) for the growth exponents (default: `default_fit_window`).
    compare: a run file on the same lattice; its last-frame spin correlation is plotted
    against this one's (for instance ML-LLG against ED-LLG).
    """
    paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    if not paths:
        raise ValueError("path must name at least one run file")
    check_distinct_runs(paths)
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    if integer(snapshot_side, "snapshot_side") < 2:  # checked before any result is replaced
        raise ValueError(f"snapshot_side must be >= 2 sites, got {snapshot_side!r}")
    if fit_window is not None:  # checked here and against the times below: a failed fit only drops that measure
        lo, hi = (float(x) for x in fit_window)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi and hi > 0):
            raise ValueError(f"fit window TMIN TMAX must be finite times with TMIN < TMAX and TMAX > 0, "
                             f"got {lo:g} {hi:g}")
    meta = read_dataset(paths[0], frames=slice(0, 0))
    lattice = meta.lattice()
    # trajectory frames only: independent samples are not a time series
    frame_lists, skipped = zip(*(trajectory_frames(p) for p in paths))
    for p, frames_p, n_skipped in zip(paths, frame_lists, skipped):
        if len(frames_p) == 0:
            raise ValueError(f"{p} holds no trajectory frames to analyse"
                             + (f" (only {n_skipped} independent samples)" if n_skipped else ""))
    for other in paths[1:]:
        m = read_dataset(other, frames=slice(0, 0))
        m.lattice()  # a file with an invalid lattice is named for that, not for differing from the first
        if (m.lattice_kind, tuple(m.lattice_shape)) != (lattice.kind, tuple(lattice.shape)):
            raise ValueError(f"ensemble runs must share one lattice: {other} is on {m.lattice_kind} "
                             f"{m.lattice_shape}, {paths[0]} on {lattice.kind} {lattice.shape}")
    total = min(len(f) for f in frame_lists)  # analyse the frames all runs have reached
    indices = list(range(0, total, int(every)))
    if indices[-1] != total - 1:
        indices.append(total - 1)
    if fit_window is not None:  # a window outside the run is refused before the analysis
        with open_h5(paths[0]) as f:
            sel = frame_lists[0][indices]
            t = frame_times(f["time"][:][sel], f["step"][:][sel])
        if not np.any((t > 0) & (t >= lo) & (t <= hi)):
            raise ValueError(f"fit window t = {lo:g} .. {hi:g} holds none of the analysed frame times of "
                             f"{paths[0]} (t = {t.min():g} .. {t.max():g}, {len(t)} frames); choose TMIN TMAX "
                             "inside that range")
    other = None
    if compare is not None:  # every file is checked before anything is written
        compare_frames, _ = trajectory_frames(compare)
        if len(compare_frames) == 0:
            raise ValueError(f"compare run {compare} holds no trajectory frames")
        k = int(compare_frames[-1])
        other = read_dataset(compare, frames=slice(k, k + 1))
        other.lattice()
        if (other.lattice_kind, tuple(other.lattice_shape)) != (lattice.kind, tuple(lattice.shape)):
            raise ValueError(f"compare run {compare} is on {other.lattice_kind} {other.lattice_shape}, "
                             f"this run on {lattice.kind} {lattice.shape}; compare runs on the same lattice")
        check_spins(other.spins[0], lattice, name=f"frame {k} of {compare}", unit=True)
    if out is not None:
        out = Path(out)
        # refuse early; old results are removed only once the new ones are computed
        prepare_outputs(out, OUTPUTS, command="spinforce analyze", keep=overwrite)
    analyzer = FrameAnalyzer(lattice, threshold)
    rows, all_sizes = [], []
    label = paths[0].name if len(paths) == 1 else f"{len(paths)} runs"
    for k in tqdm(indices, desc=f"analyse {label}", unit="frame", disable=not progress):
        frames = [_frame(p, int(f[k])) for p, f in zip(paths, frame_lists)]
        for p, f, frame in zip(paths, frame_lists, frames):  # a bad frame is named by its file
            check_spins(frame.spins[0], lattice, name=f"frame {int(f[k])} of {p}", unit=True)
        times = [float(frame_times(f.time, f.step)[0]) for f in frames]
        if not np.allclose(times, times[0], rtol=1e-9, atol=0):
            raise ValueError(f"ensemble runs have different times at frame {k}: {times}")
        row, sizes = analyzer(np.stack([f.spins[0] for f in frames]))
        rows.append({"frame": int(frame_lists[0][k]), "step": int(frames[0].step[0]), "time": times[0],
                     "energy": float(np.mean([f.energy[0] for f in frames])), **row})
        all_sizes.append(sizes)
    series = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    times = series["time"]
    window = tuple(fit_window) if fit_window is not None else default_fit_window(times)
    fits = {}
    for name in LENGTHS:
        try:
            fits[name] = fit_power_law(times, series[name], *window)
        except ValueError:
            continue  # too few usable points for this measure (e.g. no clusters yet)
    last = [_frame(p, int(f[total - 1])).spins[0] for p, f in zip(paths, frame_lists)]
    correlation = mean_radial_correlation(last, lattice)
    result = RunAnalysis(path=str(paths[0]), timeseries=series, fits=fits, fit_window=window, correlation=correlation)
    result.summary = {
        "runs": [str(p) for p in paths], "lattice": {"kind": lattice.kind, "shape": list(lattice.shape)},
        "method": meta.method, "model": meta.model, "frames_analysed": len(rows),
        "samples_skipped": int(skipped[0]), "cluster_threshold": threshold,
        "fit_window": list(window), "growth_exponents": {k: v.to_dict() for k, v in fits.items()},
        "final": {key: _plain(series[key][-1]) for key in series},
    }
    if out is not None:
        prepare_outputs(out, OUTPUTS, command="spinforce analyze", overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)
        result.files = _write_outputs(out, result, lattice, last[0], all_sizes, threshold,
                                      other, compare_labels, snapshot_side)
    return result


def _plain(x):
    x = np.asarray(x).item()
    return None if isinstance(x, float) and not np.isfinite(x) else x


def _write_outputs(out: Path, result: RunAnalysis, lattice, spins, all_sizes, threshold, other,
                   compare_labels, snapshot_side) -> list:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    series = result.timeseries
    columns = list(series)
    with open(out / "timeseries.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for k in range(len(series["time"])):
            w.writerow([series[c][k] for c in columns])
    r, c = result.correlation
    with open(out / "correlation.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["r", "C_spin"])
        w.writerows(zip(r, c))
    with open(out / "cluster_sizes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "time", "size", "count"])
        for frame, t, sizes in zip(series["frame"], series["time"], all_sizes):
            values, counts = np.unique(sizes, return_counts=True)
            w.writerows((int(frame), float(t), int(v), int(n)) for v, n in zip(values, counts))
    files += [out / "timeseries.csv", out / "correlation.csv", out / "cluster_sizes.csv"]

    t = series["time"]
    lengths = {name: series[name] for name in LENGTHS if np.isfinite(series[name]).any()}
    files.append(plots.plot_length_scales(t, lengths, result.fits, out / "length_scales.png"))
    stats = [{"count": series["clusters"][k], "mean_size": series["cluster_mean_size"][k],
              "weighted_mean_size": series["cluster_weighted_size"][k]} for k in range(len(t))]
    picks = sorted(set(np.linspace(0, len(t) - 1, min(4, len(t))).astype(int)))
    files.append(plots.plot_cluster_statistics(t, stats, [(t[k], all_sizes[k]) for k in picks],
                                               out / "clusters.png", threshold))
    if lattice.kind_info["planar"]:
        lo, hi = plots.chirality_limits()
        files.append(plots.plot_snapshot(lattice, out / "chirality_snapshot.png",
                                         cell_values=_cell_chirality(spins, lattice), vmin=lo, vmax=hi,
                                         title=f"scalar chirality, t = {t[-1]:g}", label="χ",
                                         max_side=snapshot_side))
        files.append(plots.plot_snapshot(lattice, out / "bond_snapshot.png", site_values=bond_average(spins, lattice),
                                         vmin=-1, vmax=1, cmap="coolwarm", title=f"bond average b_i, t = {t[-1]:g}",
                                         label="b_i", max_side=snapshot_side))
    curves = {compare_labels[0]: (r, c)}
    if other is not None:
        curves[compare_labels[1]] = radial_correlation(other.spins[0], lattice, normalize=False)
        result.summary["compare"] = {"run": other.path, "time": _plain(frame_times(other.time, other.step)[0]),
                                     "max_abs_difference_C": float(np.max(np.abs(curves[compare_labels[1]][1] - c)))}
        with open(out / "correlation_compare.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["r", f"C_{compare_labels[0]}", f"C_{compare_labels[1]}"])
            w.writerows(zip(r, c, curves[compare_labels[1]][1]))
        files.append(out / "correlation_compare.csv")
    files.append(plots.plot_correlation_comparison(curves, out / "correlation.png",
                                                   title=f"spin-spin correlation, t = {t[-1]:g}"))
    with open(out / "summary.json", "w") as f:
        json.dump(result.summary, f, indent=2, default=_plain)
    files.append(out / "summary.json")
    return [str(p) for p in files]


def _cell_chirality(spins, lattice) -> np.ndarray:
    """(N, 2) up/down triangle chirality (triangular) or the plaquette chirality twice (square)."""
    if lattice.kind_info["triangles"]:
        chi = scalar_chirality(spins, lattice)
        return chi.reshape(2, -1).T
    return np.repeat(plaquette_chirality(spins, lattice)[:, None], 2, axis=1)

