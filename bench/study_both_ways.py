"""The de_square quench at fixed mu and at a fixed electron count, side by side.

    python bench/study_both_ways.py FIXED_MU_STUDY FIXED_N_STUDY [--name de_square_both_ways]

Both arguments are folders of `spinforce study` (e.g. `spinforce study de_square --size 64
--set dynamics.steps=1000 --out FIXED_MU_STUDY` and `spinforce study de_square_fixed_n --out
FIXED_N_STUDY`: same lattice, dynamics and noise seeds, the fixed-mu and the fixed-N committee).
Writes bench/results/NAME.json (both ensembles' bond average per saved time with standard errors,
C(r) at the last time, L_cluster, L_sf, the fitted exponents of both reports and, at fixed N, mu)
and docs/results/studies/NAME.png (the curves overlaid with error bands). Not a timing: the
physics of the two ensembles differs, and this shows by how much.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import spinforce  # noqa: F401  before torch, as the command line

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from spinforce.analysis.ensemble import compare_ensembles
from _common import write_json

DOCS = Path(__file__).resolve().parent.parent / "docs" / "results" / "studies"


def _runs(folder: Path) -> list:
    runs = [p for p in (folder / "runs").glob("run[0-9]*.h5") if p.stem[3:].isdigit()]  # not the checkpoints
    runs.sort(key=lambda p: int(p.stem[3:]))
    if len(runs) < 2:
        raise SystemExit(f"{folder}: a study folder with at least 2 runs in runs/ is needed")
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fixed_mu", type=Path)
    p.add_argument("fixed_n", type=Path)
    p.add_argument("--name", default="de_square_both_ways")
    a = p.parse_args()
    results = {k: json.loads((folder / "results.json").read_text()) for k, folder in
               (("fixed mu", a.fixed_mu), ("fixed N", a.fixed_n))}
    both = compare_ensembles(_runs(a.fixed_mu), _runs(a.fixed_n), labels=("fixed mu", "fixed N"))
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for k, (label, obs) in enumerate((("fixed mu", both["reference"]), ("fixed N", both["model"]))):
        b = obs["observables"]["bond"]
        t = np.asarray(obs["time"])
        axes[0].plot(t, b["mean"], color=f"C{k}", label=label)
        axes[0].fill_between(t, np.subtract(b["mean"], b["stderr"]), np.add(b["mean"], b["stderr"]), color=f"C{k}",
                             alpha=0.3, lw=0)
        c = obs["correlation"]
        axes[1].errorbar(c["r"], c["mean"], yerr=c["stderr"], fmt="o-", ms=3, color=f"C{k}", label=f"{label}, t = {c['time']:g}")
        s = results[label]["series"]
        ts = np.asarray(s["time"])
        for name, style in (("L_cluster", "-"), ("L_sf", "--")):
            y, e = np.asarray(s[name], float), np.asarray(s[name + "_err"], float)
            axes[2].plot(ts, y, style, color=f"C{k}", label=f"{label}: {name}")
            axes[2].fill_between(ts, y - e, y + e, color=f"C{k}", alpha=0.2, lw=0)
        if "mu" in s:
            mu, e = np.asarray(s["mu"], float), np.asarray(s["mu_err"], float)
            axes[3].plot(ts, mu, color=f"C{k}", label=f"{label}: solved mu")
            axes[3].fill_between(ts, mu - e, mu + e, color=f"C{k}", alpha=0.3, lw=0)
    axes[3].axhline(-4.69, color="C0", ls=":", label="fixed mu = -4.69")
    axes[0].set(xlabel="t", ylabel="<S_i . S_j> nearest neighbours", title="bond average (mean ± SE of runs)")
    axes[1].set(xlabel="r", ylabel="C(r)", title="spin correlation at the last time", xlim=(0, 10))
    axes[2].set(xlabel="t", ylabel="L", xscale="log", yscale="log", title="lengths of the bond field")
    axes[3].set(xlabel="t", ylabel="mu", title="chemical potential")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    DOCS.mkdir(parents=True, exist_ok=True)
    fig.savefig(DOCS / f"{a.name}.png", dpi=110)

    def fits(res):
        return {w: {n: {k: f.get(k) for k in ("exponent", "stderr", "jackknife_stderr", "t_min", "t_max")}
                    for n, f in group.items()} for w, group in res["fits"].items()}
    out = {label: {"study": res["study"], "model": res["model"], "lattice": res["lattice"],
                   "runs": len(res["runs"]), "fits": fits(res),
                   "series": {k: res["series"][k] for k in ("time", "bond_mean", "L_cluster", "L_cluster_err", "L_sf",
                                                             "L_sf_err", "clusters", "cluster_mean_size", "mu", "mu_err")
                              if k in res["series"]}}
           for label, res in results.items()}
    out["bond_average"] = {"fixed mu": both["reference"]["observables"]["bond"],
                           "fixed N": both["model"]["observables"]["bond"], "time": both["reference"]["time"]}
    out["correlation"] = {"fixed mu": both["reference"]["correlation"], "fixed N": both["model"]["correlation"]}
    write_json(a.name, out)
    for label in ("fixed mu", "fixed N"):
        s = out[label]["series"]
        print(f"{label}: bond average {s['bond_mean'][0]:.3f} -> {s['bond_mean'][-1]:.3f}, L_cluster "
              f"{s['L_cluster'][-1]:.2f}, L_sf {s['L_sf'][-1]:.2f} at t = {s['time'][-1]:g}"
              + (f", mu {s['mu'][0]:.3f} -> {s['mu'][-1]:.3f}" if "mu" in s else ""))
    print(f"wrote {DOCS / (a.name + '.png')}")


if __name__ == "__main__":
    main()
