"""KPM benchmark: cost scaling with lattice size and the Chebyshev step against memory bandwidth.

1. Time per force evaluation (compute(spins): forward moments + reverse-mode fields) against
   the number of sites at fixed moments and probing distance; the fitted exponent of
   t ~ N^p should be close to 1 (linear scaling).
2. Achieved bytes/s of one Chebyshev step y = 2 H~ x - z on the block of probe vectors,
   against a plain copy of a buffer of the same size measured in the same run, printed as a
   ratio (bandwidth-bound kernel: 1 would mean the step streams its data as fast as a copy).
   Bytes counted for the step: read x and z, write y, the on-site blocks and the neighbour
   table; for the copy: read and write the buffer.

Medians of several repeats. Writes bench/results/kpm.json and bench/results/kpm.png; the same
figures on CUDA when a GPU and the CUDA kernels exist.

    python bench/kpm.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform

import numpy as np
import torch

import spinforce as sf
from _common import median_time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def scaling(sides, moments, distance, device, repeats):
    rows = []
    for L in sides:
        lat = sf.Lattice("square", (L, L))
        model = sf.SDModel(lat, J=2.0, filling=0.3, kT=0.1)
        kpm = sf.KPM(model, moments=moments, probing_distance=distance, seed=1)
        spins = torch.from_numpy(lat.random_spins(0)).to(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        t = median_time(lambda: kpm.compute(spins), repeats, sync=sync)
        per_unit = t / (lat.num_sites * kpm.num_probes * moments)
        rows.append({"side": L, "sites": lat.num_sites, "probes": kpm.num_probes, "seconds": t,
                     "seconds_per_site_probe_moment": per_unit})
        print(f"  {device} N = {lat.num_sites:7d}  R = {kpm.num_probes:3d}  M = {moments}: {t * 1e3:9.2f} ms per force "
              f"evaluation, {per_unit * 1e9:.2f} ns per site, probe and moment")
    N = np.array([r["sites"] for r in rows], float)
    T = np.array([r["seconds"] for r in rows])
    exponent = float(np.polyfit(np.log(N), np.log(T), 1)[0])
    print(f"  fitted exponent t ~ N^p: p = {exponent:.3f}")
    return {"moments": moments, "probing_distance": distance, "points": rows, "exponent": exponent}


def bandwidth(side, distance, dtype, device, repeats, steps):
    lat = sf.Lattice("square", (side, side))
    model = sf.SDModel(lat, J=2.0, mu=0.0, kT=0.1)
    kpm = sf.KPM(model, moments=10, probing_distance=distance, dtype=dtype)
    spins = torch.from_numpy(lat.random_spins(0)).to(device)
    N, R = lat.num_sites, kpm.num_probes
    item = 16 if dtype == "complex128" else 8
    vector_bytes = N * 2 * R * item
    neighbours = len(lat.shell_offsets(1))  # nearest-neighbour hopping only
    step_bytes = 3 * vector_bytes + N * 4 * item + N * neighbours * 8
    torch_dtype = torch.complex128 if dtype == "complex128" else torch.complex64
    src = torch.randn(N * 2 * R, dtype=torch_dtype, device=device)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def copies():
        for _ in range(steps):
            dst.copy_(src)

    # Interleaved so that both see the same load on a shared machine.
    step_times, copy_times = [], []
    for _ in range(repeats):
        # Per step, without the set-up of a call: (steps + 1 steps) - (1 step).
        many = median_time(lambda: kpm._chebyshev_steps(spins, steps + 1), 1)
        one = median_time(lambda: kpm._chebyshev_steps(spins, 1), 1)
        step_times.append((many - one) / steps)
        copy_times.append(median_time(copies, 1, sync=sync) / steps)
    step, copy = float(np.median(step_times)), float(np.median(copy_times))
    step_bw, copy_bw = step_bytes / step, 2 * vector_bytes / copy
    ratio = step_bw / copy_bw
    print(f"  {device} {dtype}: N = {N}, R = {R}, vectors {vector_bytes / 2**20:.1f} MiB: step {step * 1e3:.3f} ms "
          f"= {step_bw / 1e9:.2f} GB/s, copy {copy * 1e3:.3f} ms = {copy_bw / 1e9:.2f} GB/s, ratio {ratio:.3f}")
    return {"dtype": dtype, "sites": N, "probes": R, "vector_bytes": vector_bytes, "step_bytes": step_bytes,
            "step_seconds": step, "copy_seconds": copy, "step_bytes_per_s": step_bw,
            "copy_bytes_per_s": copy_bw, "ratio": ratio}


def run(device, quick):
    repeats = 3 if quick else 5
    if device == "cuda":
        sides = (64, 128, 256, 512)
        bw_side = {"complex128": 512, "complex64": 768}
    else:
        # Powers of two give the same colouring (R = 18) at every size.
        sides = (16, 32, 64) if quick else (32, 64, 128, 256)
        # Vectors of 60-75 MiB, twice the 32 MiB L3 of the reference machine, for both precisions.
        bw_side = {"complex128": 192 if quick else 384, "complex64": 256 if quick else 512}
    print(f"[{device}] time per force evaluation vs number of sites")
    scale = scaling(sides, moments=50, distance=2.0, device=device, repeats=3)
    print(f"[{device}] Chebyshev step vs plain copy of the same size")
    bw = [bandwidth(bw_side[dtype], 2.0, dtype, device, repeats, steps=20) for dtype in ("complex128", "complex64")]
    return {"scaling": scale, "bandwidth": bw}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for device, res in results["devices"].items():
        pts = res["scaling"]["points"]
        N = [p["sites"] for p in pts]
        ax.loglog(N, [p["seconds"] for p in pts], "o-", label=f"{device} (p = {res['scaling']['exponent']:.2f})")
    ax.set_xlabel("sites N")
    ax.set_ylabel("seconds per force evaluation")
    ax.set_title("KPM, M = 50, probing distance 2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    results = {"threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "spinforce": sf.__version__, "devices": {}}
    results["devices"]["cpu"] = run("cpu", args.quick)
    if torch.cuda.is_available() and sf._core.cuda_kernels:
        results["devices"]["cuda"] = run("cuda", args.quick)
        results["gpu"] = torch.cuda.get_device_name()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kpm.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / "kpm.png")
    for device, res in results["devices"].items():
        ratios = ", ".join(f"{b['dtype']} {b['ratio']:.2f}" for b in res["bandwidth"])
        print(f"{device}: exponent {res['scaling']['exponent']:.3f}; step/copy bandwidth ratio {ratios}")
    print(f"wrote {RESULTS / 'kpm.json'} and {RESULTS / 'kpm.png'}")


if __name__ == "__main__":
    main()
