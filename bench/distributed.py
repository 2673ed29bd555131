"""Domain-decomposed ML-LLG on 1 and 2 processes: strong and weak scaling, halo traffic.

    python bench/distributed.py [--shape 48 48] [--steps 4] [--repeats 3] [--device cpu|cuda]

The ML provider (a fresh model like bench/simulate.py's: default descriptor, cutoff 2, hidden
[32, 32], float32) on a triangular lattice of `shape` (N sites) and of twice its last side (2N).
Each configuration is one SIB LLG run of `steps` steps (C++ loop, halo exchange with
torch.distributed gloo/NCCL point-to-point before every field evaluation), median over repeats;
the time of a step is the slowest rank's. One process runs the undivided lattice (what
`spinforce simulate` does without torchrun); two processes split it into two slabs (spawned
here, one torch thread each; the single process gets one thread too, so that two processes
have twice the cores). In one run:
  strong scaling  t(1 process, N) / t(2 processes, N)   (ideal 2)
  weak scaling    t(1 process, N) / t(2 processes, 2N)  (ideal 1)
  halo bytes per step and rank, the time spent in exchanges, and the padded-slab overhead
  (a slab is evaluated with 2 x 2r halo rows: (rows + 4r) / rows).
On a GPU (--device cuda, a machine with 2 GPUs) the ranks use NCCL. JSON to
bench/results/distributed.json (distributed_cuda.json).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import spinforce  # noqa: F401  before torch
import torch
import torch.multiprocessing as mp

from _common import write_json


def timed_run(cfg, ranks, device, steps, repeats):
    """(median seconds per step of the slowest rank, exchange seconds per step, halo bytes per
    step sent by this rank, rows of the padded slab over rows of the slab)."""
    from spinforce.dynamics import LLG
    from spinforce.simulate import build_provider, split_provider
    d = cfg["dynamics"]
    if ranks.distributed:
        slabs, provider, _ = split_provider(cfg, ranks, device)
        exchange, spent = slabs.exchange, [0.0]

        def timed_exchange(s):  # the provider calls slabs.exchange through this attribute
            t0 = time.perf_counter()
            out = exchange(s)
            spent[0] += time.perf_counter() - t0
            return out
        provider = spinforce._core._HaloProvider(provider.provider, slabs.num_sites, slabs.first, timed_exchange)
        lattice = spinforce.Lattice(cfg["lattice"]["kind"], cfg["lattice"]["shape"])
        spins = slabs.scatter(torch.from_numpy(lattice.random_spins(0)) if ranks.rank == 0 else None, device)
        overhead = (slabs.rows + 2 * slabs.halo) / slabs.rows
    else:
        slabs, spent, overhead = None, [0.0], 1.0
        lattice, provider = build_provider(cfg)
        spins = torch.from_numpy(lattice.random_spins(0)).to(device)
    llg = LLG(provider, dt=d["dt"], alpha=d["alpha"], kT=d["kT"], seed=0,
              site_offset=slabs.site_offset if slabs else 0)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    llg.run(spins, 2, start_step=0)  # warm-up: the TorchScript executor specialises
    times, spent[0] = [], 0.0
    sent0 = slabs.halo_bytes if slabs else 0
    for _ in range(repeats):
        ranks.barrier()
        t0 = time.perf_counter()
        llg.run(spins, steps, start_step=0)
        sync()
        times.append(slowest(ranks, time.perf_counter() - t0))
    sent = ((slabs.halo_bytes - sent0) if slabs else 0) / (steps * repeats)
    return statistics.median(times) / steps, spent[0] / (steps * repeats), sent, overhead


def slowest(ranks, seconds: float) -> float:
    """The largest of the ranks' times (the step ends when the last rank is done)."""
    if not ranks.distributed:
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=ranks.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t)


def _rank(rank, world, store, cfgs, steps, repeats, device_name, out):
    from spinforce.distributed import join_ranks
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("nccl" if device_name == "cuda" else "gloo",
                                         init_method=f"file://{store}", rank=rank, world_size=world)
    ranks, device, _ = join_ranks(device_name, setting="--device", command="simulate")
    try:
        rows = [timed_run(cfg, ranks, device, steps, repeats) for cfg in cfgs]
        if rank == 0:
            torch.save(rows, out)
    finally:
        torch.distributed.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=2, default=[48, 48], help="the lattice of N sites (Lx Ly)")
    p.add_argument("--steps", type=int, default=4, help="LLG steps per timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    from spinforce.descriptors.registry import DEFAULT_KIND
    from spinforce.distributed import Ranks
    from spinforce.ml.model import build_model, export_torchscript
    torch.set_num_threads(1)
    device = torch.device(a.device)
    Lx, Ly = a.shape
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(spinforce.Lattice("triangular", (Lx, Ly)), DEFAULT_KIND, {"cutoff": 2.0}, [32, 32],
                            "silu", "float32")
        path = export_torchscript(model, Path(tmp) / "bench.ts")

        def cfg(shape):
            return {"output": str(Path(tmp) / "unused.h5"), "lattice": {"kind": "triangular", "shape": list(shape)},
                    "method": {"name": "ml", "path": str(path), "device": a.device},
                    "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": 0.01, "steps": a.steps, "save_every": a.steps}}
        from spinforce.simulate import load_config
        cfgs = [load_config(cfg((Lx, Ly))), load_config(cfg((Lx, 2 * Ly)))]
        one = [timed_run(c, Ranks(device=device), device, a.steps, a.repeats) for c in cfgs]
        mp.spawn(_rank, args=(2, Path(tmp) / "store", cfgs, a.steps, a.repeats, a.device, Path(tmp) / "two.pt"),
                 nprocs=2, join=True)
        two = torch.load(Path(tmp) / "two.pt", weights_only=False)
    rows = []
    for procs, results in ((1, one), (2, two)):
        for c, (t, exchange, sent, overhead) in zip(cfgs, results):
            shape = c["lattice"]["shape"]
            rows.append({"processes": procs, "shape": shape, "sites": shape[0] * shape[1], "step_s": t,
                         "exchange_s_per_step": exchange, "halo_bytes_per_step_per_rank": sent,
                         "padded_over_slab_rows": overhead})
            print(f"{procs} process{'es' if procs > 1 else ''}, {shape[0]} x {shape[1]} = {shape[0] * shape[1]:>6} "
                  f"spins: {t * 1e3:8.2f} ms per step, exchanges {exchange * 1e3:6.2f} ms per step, "
                  f"halo sent {sent / 1024:7.1f} KiB per step and rank, padded / slab rows {overhead:.2f}", flush=True)
    strong = one[0][0] / two[0][0]
    weak = one[0][0] / two[1][0]
    print(f"strong scaling t(1, N) / t(2, N) = {strong:.2f} (ideal 2); weak scaling t(1, N) / t(2, 2N) = {weak:.2f} "
          f"(ideal 1); exchanges take {two[0][1] / two[0][0]:.1%} of a 2-process step at N. Shared machine: noisy.")
    write_json("distributed" if a.device == "cpu" else f"distributed_{a.device}", {
        "device": a.device, "model": {"descriptor": DEFAULT_KIND, "cutoff": 2.0, "hidden": [32, 32], "dtype": "float32"},
        "lattice": "triangular", "integrator": "sib", "steps_per_timing": a.steps, "repeats": a.repeats,
        "torch_threads_per_process": 1, "rows": rows, "strong_scaling": strong, "weak_scaling": weak,
        "exchange_fraction_2_processes": two[0][1] / two[0][0],
        "note": "exchange time includes waiting for the neighbouring rank; on a shared machine the ranks are not "
                "scheduled together, so the scaling ratios are noisy"})


if __name__ == "__main__":
    main()
