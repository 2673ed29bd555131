"""ML-LLG throughput vs lattice size: spin-steps per second, linear scaling, integrator overhead.

    python bench/simulate.py [--device cpu|cuda] [--sizes 32 64 128 256 512] [--steps 3] [--repeats 3]

For each L x L triangular lattice, in one run:
1. one SIB LLG step with the ML provider (``LLG.run``, C++ loop), median over repeats;
2. one bare ML force evaluation (``MLForceField.compute``) on the same spins.
SIB evaluates the fields twice per step, so ratio = step / (2 x evaluation) is the cost of the
integrator and noise on top of the force field (target <= 1.2). The time per step is fitted as
t ~ N^a over the sizes (log-log least squares, with its standard error): linear scaling is a = 1.
Weights are random (cost does not depend on their values); --hidden sets the architecture
(default: the compact model of `spinforce demo`). JSON to bench/results/simulate.json.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import spinforce
from _common import interleaved_medians, write_json
from spinforce.analysis import fit_power_law
from spinforce.descriptors.registry import DEFAULT_KIND
from spinforce.ml.model import build_model, export_torchscript


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="lattice sides (default 32 .. 512 on CPU, up to 1024 = 10^6 spins on a GPU)")
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    p.add_argument("--cutoff", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=3, help="LLG steps per timing")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    device = torch.device(a.device)
    sizes = a.sizes or ([64, 128, 256, 512, 1024] if device.type == "cuda" else [32, 64, 128, 256, 512])
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        template = spinforce.Lattice("triangular", sizes[0])
        model = build_model(template, DEFAULT_KIND, {"cutoff": a.cutoff}, a.hidden, "silu", "float32")
        ts_path = export_torchscript(model, Path(tmp) / "bench.ts")
        for L in sizes:
            lat = spinforce.Lattice("triangular", L)
            provider = spinforce.MLForceField(ts_path, lat, device=str(device))
            llg = spinforce.LLG(provider, dt=0.05, alpha=0.1, kT=0.01)
            spins = torch.from_numpy(lat.random_spins(0)).to(device)

            def step():
                llg.run(spins, a.steps, start_step=0)
                sync()

            def evaluate():
                provider.compute(spins)
                sync()

            # warm-up runs let the TorchScript executor specialise before anything is timed
            med = interleaved_medians({"llg": step, "eval": evaluate}, repeats=a.repeats, warmup=3)
            t_step = med["llg"] / a.steps
            ratio = t_step / (2 * med["eval"])
            rows.append({"L": L, "sites": lat.num_sites, "step_s": t_step, "eval_s": med["eval"],
                         "spin_steps_per_s": lat.num_sites / t_step, "ratio_step_over_2evals": ratio})
            print(f"{lat.num_sites:>8} spins: step {t_step * 1e3:9.2f} ms, force evaluation {med['eval'] * 1e3:9.2f} ms, "
                  f"{lat.num_sites / t_step:10.4g} spin-steps/s, step / (2 evaluations) = {ratio:.3f}", flush=True)
    n = np.array([r["sites"] for r in rows], dtype=float)
    t = np.array([r["step_s"] for r in rows])
    fit = fit_power_law(n, t) if len(rows) >= 3 else None
    if fit is not None:
        print(f"time per step ~ N^a, a = {fit.exponent:.3f} +- {fit.stderr:.3f} (linear scaling: a = 1)")
    print(f"median ratio step / (2 evaluations) = {np.median([r['ratio_step_over_2evals'] for r in rows]):.3f} "
          "(target <= 1.2)")
    write_json("simulate" if device.type == "cpu" else f"simulate_{device.type}", {
        "device": str(device), "hidden": a.hidden, "cutoff": a.cutoff, "descriptor": DEFAULT_KIND,
        "steps_per_timing": a.steps, "repeats": a.repeats, "rows": rows,
        "scaling_exponent": None if fit is None else {"a": fit.exponent, "stderr": fit.stderr},
        "median_ratio_step_over_2evals": float(np.median([r["ratio_step_over_2evals"] for r in rows])),
        "target_ratio": 1.2})


if __name__ == "__main__":
    main()
