"""Length scales of an ensemble of runs at one time, with jackknife errors over the runs.

For a scalar (or vector) field phi of R runs at the same time,

    L_sf    = structure_factor_length of the run-averaged S(q) about the given peaks, restricted
              to the peak (q_max="peak", coarsening.py): the inverse peak width
    L_corr  = correlation_length (1/e crossing) of the run-averaged, normalised radial C(r)

and the same two lengths of the R leave-one-out ensembles (every run left out once). The
jackknife standard error of any statistic theta computed from them is

    se = sqrt((R - 1)/R * sum_j (theta_j - mean theta)^2),

an error over the ensemble of noise realisations (unlike the residual error of a fit).
"""
from __future__ import annotations

import numpy as np

from .coarsening import correlation_length, fit_power_law, structure_factor_length
from .structure import radial_correlation, structure_factor

__all__ = ["ensemble_lengths", "jackknife_stderr", "jackknife_fit"]


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
