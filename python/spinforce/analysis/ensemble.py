"""Length scales of an ensemble of runs at one time, with jackknife errors over the runs.

For a scalar (or vector) field phi of R runs at the same time,

    L_sf    = structure_factor_length of the run-averaged S(q) about the given peaks, restricted
              to the peak (q_max="peak", coarsening.py): the inverse peak width
    L_corr  = correlation_length (1/e crossing) of the run-averaged, normalised radial C(r)

and the same two lengths of the R leave-one-out ensembles (every run left out once). The
jackknife standard error of any statistic theta computed from them is

    se = sqrt((R - 1)/R * sum_j (theta_j - mean theta)^2),

an error over the ensemble of noise realisations (unlike the residual error of a fit).

Two ensembles of quench runs compared observable by observable (does a force field's dynamics
reproduce the exact dynamics?): for every saved time the ensemble mean and its standard error (over runs) of
  bond        the nearest-neighbour bond average <S_i . S_j>_nn
  chirality   the mean |scalar chirality| of the elementary triangles (triangular lattices)
and, at the last common time, the spin correlation C(r) = <S_i . S_j>_{|r_i - r_j| = r}.
Agreement: |mean_model - mean_ref| <= 2 sqrt(SE_ref^2 + SE_model^2), the standard error of the
difference of two ensemble means. Even identical dynamics miss that at about 5 % of the times, so
the fraction of times within is reported next to "all within".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import read_dataset
from .coarsening import correlation_length, fit_power_law, structure_factor_length
from .fields import bond_average, check_spins, scalar_chirality
from .run import check_distinct_runs, frame_times, mean_radial_correlation
from .structure import radial_correlation, structure_factor

__all__ = ["ensemble_lengths", "jackknife_stderr", "jackknife_fit", "ensemble_observables", "compare_ensembles",
           "plot_ensemble_comparison"]


def _lengths(sq, corr, lattice, peaks, level) -> tuple[float, float]:
    try:
        L_sf = structure_factor_length(sq, lattice, peaks=peaks, q_max="peak")
    except ValueError:  # a vanishing field (no order yet, or none of this kind): no length
        L_sf = float("nan")
    L_corr = correlation_length(corr[0], corr[1] / corr[1][0], level) if corr[1][0] > 0 else float("nan")
    return L_sf, L_corr


def ensemble_lengths(fields, lattice, *, peaks=None, level: float = float(np.exp(-1.0))) -> dict:
    """L_sf and L_corr (module doc) of a stack of fields (R, N) or (R, N, c) of R runs at one time,
    with their leave-one-out values (arrays of R; empty for one run). peaks default: q = 0."""
    fields = np.asarray(fields, dtype=float)
    if fields.ndim < 2 or fields.shape[1] != lattice.num_sites:
        raise ValueError(f"fields must have shape (R, {lattice.num_sites}) or (R, {lattice.num_sites}, c), "
                         f"got {fields.shape}")
    peaks = np.zeros((1, lattice.dim)) if peaks is None else peaks
    sqs = np.stack([structure_factor(f, lattice) for f in fields])
    curves = [radial_correlation(f, lattice, normalize=False) for f in fields]
    r = curves[0][0]
    cs = np.stack([c for _, c in curves])
    runs = len(fields)
    L_sf, L_corr = _lengths(sqs.mean(0), (r, cs.mean(0)), lattice, peaks, level)
    loo = [_lengths((sqs.sum(0) - sqs[j]) / (runs - 1), (r, (cs.sum(0) - cs[j]) / (runs - 1)), lattice, peaks, level)
           for j in range(runs)] if runs > 1 else []
    return {"L_sf": L_sf, "L_corr": L_corr, "L_sf_loo": np.array([a for a, _ in loo]),
            "L_corr_loo": np.array([b for _, b in loo])}


def mean_stderr(values, axis: int = 0) -> np.ndarray:
    """Standard error of the mean over independent samples along `axis`: std (ddof 1) / sqrt(n),
    NaN where fewer than 2 samples."""
    v = np.asarray(values, dtype=float)
    n = v.shape[axis]
    if n < 2:
        return np.full(np.delete(v.shape, axis), np.nan)
    return v.std(axis=axis, ddof=1) / np.sqrt(n)


def jackknife_stderr(values) -> float:
    """Jackknife standard error from the leave-one-out values of a statistic (NaN with fewer than 2)."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.isfinite(v).all():
        return float("nan")
    return float(np.sqrt((v.size - 1) / v.size * ((v - v.mean()) ** 2).sum()))


def jackknife_fit(t, L_loo, t_min: float, t_max: float) -> float:
    """Jackknife standard error of the growth exponent: L_loo (T, R) holds the leave-one-out L(t)."""
    L_loo = np.asarray(L_loo, dtype=float)
    if L_loo.ndim != 2 or L_loo.shape[1] < 2:
        return float("nan")
    try:
        exponents = [fit_power_law(t, L_loo[:, j], t_min, t_max).exponent for j in range(L_loo.shape[1])]
    except ValueError:
        return float("nan")
    return jackknife_stderr(exponents)

def _trajectory(path):
    ds = read_dataset(path)
    keep = ds.step >= 0
    lattice = ds.lattice()
    return lattice, frame_times(ds.time[keep], ds.step[keep]), check_spins(ds.spins[keep], lattice,
                                                                           name=f"the trajectory of {path}", unit=True)


def ensemble_observables(paths) -> dict:
    """Per-time mean and standard error over the runs in `paths` (trajectory files of one lattice,
    saved at the same times; the common leading frames are used) and C(r) at the last common time."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"an ensemble needs at least 2 runs to have a standard error, got {len(paths)}")
    check_distinct_runs(paths)
    runs = [_trajectory(p) for p in paths]
    lattice = runs[0][0]
    if any(r[0].kind != lattice.kind or tuple(r[0].shape) != tuple(lattice.shape) for r in runs):
        raise ValueError("the runs of an ensemble must share one lattice")
    frames = min(len(r[1]) for r in runs)
    times = runs[0][1][:frames]
    for p, r in zip(paths, runs):
        if not np.allclose(r[1][:frames], times):
            raise ValueError(f"{p} is saved at other times than {paths[0]}")
    series = {"bond": np.array([bond_average(r[2][:frames], lattice).mean(axis=-1) for r in runs])}
    if lattice.kind_info["triangles"]:  # the order of the tetrahedral state
        series["chirality"] = np.array([np.abs(scalar_chirality(r[2][:frames], lattice)).mean(axis=-1) for r in runs])
    n = len(runs)
    out = {"runs": n, "lattice": {"kind": lattice.kind, "shape": list(lattice.shape)}, "time": times.tolist(),
           "observables": {k: {"mean": v.mean(axis=0).tolist(), "stderr": mean_stderr(v).tolist()}
                           for k, v in series.items()}}
    last = np.array([r[2][frames - 1] for r in runs])                        # (R, N, 3)
    per_run = [mean_radial_correlation(s[None], lattice) for s in last]
    r, curves = per_run[0][0], np.array([c for _, c in per_run])
    out["correlation"] = {"time": float(times[-1]), "r": r.tolist(), "mean": curves.mean(axis=0).tolist(),
                          "stderr": mean_stderr(curves).tolist()}
    return out


def _agreement(model: dict, ref: dict, sigmas: float) -> dict:
    """Deviation of the model mean from the reference mean, in standard errors of that difference
    (sqrt(SE_ref^2 + SE_model^2): two finite ensembles of the same dynamics differ by that much), and
    in standard errors of the reference alone."""
    m, s = np.asarray(model["mean"]), np.asarray(ref["mean"])
    se_ref, se_mod = np.asarray(ref["stderr"]), np.asarray(model["stderr"])
    se = np.sqrt(se_ref ** 2 + se_mod ** 2)
    dev = np.abs(m - s)
    # Values equal by construction (C(0) = 1 for unit spins) have no spread: they differ only by
    # rounding, which must count as agreement and not as 1e-16 / 1e-300 standard errors.
    rounding = 1e-12 * np.maximum(1.0, np.abs(s))
    within = dev <= sigmas * se + rounding

    def in_units(err):
        return float(np.max(np.where(dev <= rounding, 0.0, dev / np.maximum(err, 1e-300))))
    return {"within": within.tolist(), "fraction_within": float(within.mean()), "all_within": bool(within.all()),
            "max_deviation": float(dev.max()), "max_deviation_in_stderr": in_units(se),
            "max_deviation_in_reference_stderr": in_units(se_ref)}


def compare_ensembles(reference_paths, model_paths, *, sigmas: float = 2.0, out=None, labels=("exact", "ML")) -> dict:
    """Observables of a model ensemble against a reference ensemble, saved at the same times.

    Returns both ensembles' observables and, per observable (and for C(r) at the last time), whether
    the model mean lies within `sigmas` standard errors of the reference mean at every time (and
    distance). With `out` (a path without suffix) writes out.png overlaying both with error bands.
    """
    ref, mod = ensemble_observables(reference_paths), ensemble_observables(model_paths)
    if ref["lattice"] != mod["lattice"]:
        raise ValueError(f"the ensembles run on different lattices: {ref['lattice']} and {mod['lattice']}")
    frames = min(len(ref["time"]), len(mod["time"]))
    if not np.allclose(ref["time"][:frames], mod["time"][:frames]):
        raise ValueError("the two ensembles are saved at different times")
    for e in (ref, mod):
        e["time"] = e["time"][:frames]
        for o in e["observables"].values():
            o["mean"], o["stderr"] = o["mean"][:frames], o["stderr"][:frames]
    result = {"sigmas": sigmas, "labels": list(labels), "reference": ref, "model": mod,
              "agreement": {k: _agreement(mod["observables"][k], ref["observables"][k], sigmas)
                            for k in ref["observables"]}}
    if not np.isclose(ref["correlation"]["time"], mod["correlation"]["time"]):
        # Runs of different length: compare C(r) at the reference's last time only when it is common.
        result["agreement"]["correlation"] = None
    else:
        result["agreement"]["correlation"] = _agreement(mod["correlation"], ref["correlation"], sigmas)
    if out is not None:
        result["png"] = str(plot_ensemble_comparison(result, Path(out).with_suffix(".png")))
    return result


def plot_ensemble_comparison(result: dict, path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ref, mod = result["reference"], result["model"]
    names = list(ref["observables"])
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.6 * (len(names) + 1), 3.8))
    titles = {"bond": "nearest-neighbour bond average", "chirality": "mean |scalar chirality|"}
    for ax, name in zip(axes, names):
        for e, label, color in ((ref, result["labels"][0], "k"), (mod, result["labels"][1], "tab:red")):
            t, o = np.asarray(e["time"]), e["observables"][name]
            m, se = np.asarray(o["mean"]), np.asarray(o["stderr"])
            ax.plot(t, m, color=color, label=f"{label} ({e['runs']} runs)")
            ax.fill_between(t, m - result["sigmas"] * se, m + result["sigmas"] * se, color=color, alpha=0.2, lw=0)
        ax.set(xlabel="time (hbar/t)", title=titles.get(name, name))
        ax.legend(fontsize=8)
    ax = axes[-1]
    for e, label, color in ((ref, result["labels"][0], "k"), (mod, result["labels"][1], "tab:red")):
        c = e["correlation"]
        r, m, se = np.asarray(c["r"]), np.asarray(c["mean"]), np.asarray(c["stderr"])
        ax.errorbar(r, m, yerr=result["sigmas"] * se, color=color, marker="o", ms=3, capsize=2, lw=1, label=label)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(xlabel="r (lattice constants)", ylabel="C(r)", title=f"spin correlation at t = {ref['correlation']['time']:g}")
    ax.legend(fontsize=8)
    fig.suptitle(f"bands: ±{result['sigmas']:g} standard errors over runs", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
