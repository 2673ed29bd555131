"""ML-LLG throughput on a busy machine: next to one busy single-thread process / alone.

    python bench/contention.py [--side 48] [--steps 20] [--repeats 5] [--threads 1 2]

The heaviest per-step path of `spinforce demo`: SIB LLG with the demo's compact ML model
(group descriptor, cutoff 2, hidden [32, 32], float32) on an L x L triangular lattice (default
48 x 48, the demo's quench). For 1 thread and for torch's default thread count, spin-steps per
second are measured alone and next to one busy single-thread process (a Python spin loop),
the two conditions interleaved (alone, busy, alone, busy, ...) so that load from elsewhere hits
both. ratio = throughput next to the busy process / throughput alone. A process with n threads
on c cores next to one busy process has a fair share of min(n, c * n / (n + 1)) cores, so on 2
cores with 2 threads it keeps 2/3 of its speed at best; the goal is ratio >= 0.45.
Weights are random (cost does not depend on their values). JSON to bench/results/contention.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import spinforce  # before torch: it chooses how idle OpenMP threads wait
import torch
from _common import write_json
from spinforce.descriptors.registry import DEFAULT_KIND
from spinforce.ml.model import build_model, export_torchscript

BUSY_LOOP = "while True: pass"


def start_busy():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    time.sleep(0.3)  # let the scheduler give it its core before timing
    return proc


def stop_busy(proc) -> None:
    proc.kill()
    proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=48)
    p.add_argument("--steps", type=int, default=20, help="LLG steps per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts (default: 1 and torch's default)")
    a = p.parse_args()
    default_threads = torch.get_num_threads()
    thread_counts = a.threads or sorted({1, default_threads})
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.1f} on {os.cpu_count()} cores "
          f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lat = spinforce.Lattice("triangular", a.side)
        model = build_model(lat, DEFAULT_KIND, {"cutoff": 2.0}, [32, 32], "silu", "float32")
        ts_path = export_torchscript(model, Path(tmp) / "bench.ts")
        provider = spinforce.MLForceField(ts_path, lat)
        llg = spinforce.LLG(provider, dt=0.05, alpha=0.3, kT=0.002)
        spins = torch.from_numpy(lat.random_spins(0))

        def throughput() -> float:
            t0 = time.perf_counter()
            llg.run(spins, a.steps, start_step=0)
            return lat.num_sites * a.steps / (time.perf_counter() - t0)

        for n in thread_counts:
            torch.set_num_threads(n)
            for _ in range(2):  # warm-up: the TorchScript executor specialises on its first runs
                throughput()
            alone, busy = [], []
            for _ in range(a.repeats):
                alone.append(throughput())
                proc = start_busy()
                try:
                    busy.append(throughput())
                finally:
                    stop_busy(proc)
            row = {"threads": n, "alone_spin_steps_per_s": statistics.median(alone),
                   "busy_spin_steps_per_s": statistics.median(busy)}
            row["ratio_busy_over_alone"] = row["busy_spin_steps_per_s"] / row["alone_spin_steps_per_s"]
            rows.append(row)
            print(f"{n} thread{'s' if n > 1 else ' '}: alone {row['alone_spin_steps_per_s']:10.4g} spin-steps/s, "
                  f"next to one busy process {row['busy_spin_steps_per_s']:10.4g}, "
                  f"ratio {row['ratio_busy_over_alone']:.2f}", flush=True)
        torch.set_num_threads(default_threads)
    default_row = next(r for r in rows if r["threads"] == default_threads) if default_threads in thread_counts else None
    if default_row is not None:
        print(f"default ({default_threads} threads) ratio = {default_row['ratio_busy_over_alone']:.2f} (goal >= 0.45)")
    write_json("contention", {
        "lattice": f"triangular {a.side}x{a.side}", "sites": lat.num_sites, "steps_per_timing": a.steps,
        "repeats": a.repeats, "default_threads": default_threads, "cpu_count": os.cpu_count(),
        "load_average_before": list(load_before), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "rows": rows, "goal_default_ratio": 0.45,
        "default_ratio": None if default_row is None else default_row["ratio_busy_over_alone"]})


if __name__ == "__main__":
    main()
