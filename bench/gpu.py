"""The GPU column of every benchmark in one run; each figure is a ratio measured in this run.

    python bench/gpu.py [--quick] [--device cuda]

kpm          bench/kpm.py's GPU part: time per force ∝ N^p, Chebyshev step / device copy bandwidth
llg          SIB + Heisenberg: spin-steps/s at 10^4..10^7 spins, speed-up over one CPU thread
descriptors  forward + backward per site, custom op vs pure-torch reference (square, triangular,
             cubic, float32 and float64), and the local-variable op's bytes/s over a device copy's
ed           ED force evaluation / bare eigensolver (cuSOLVER) on 30x30 square
ml           bench/ml.py --device cuda: ML force / bare network at 10^4..10^6 sites, ML vs ED
simulate     ML-LLG (group descriptor): time per step / two force evaluations, spin-steps/s
Writes bench/results/gpu-<name>.json. --device cpu runs the same code small (a smoke test).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import spinforce as sf
from _common import RESULTS, interleaved_medians, median_time, write_json

HERE = Path(__file__).resolve().parent


def synchronizer(device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def copy_seconds(num_bytes, device, repeats):
    """Median time of a plain device copy moving num_bytes (read + write): the bandwidth yardstick."""
    src = torch.empty(max(1, num_bytes // 16), dtype=torch.float64, device=device)
    dst = torch.empty_like(src)
    return median_time(lambda: dst.copy_(src), repeats, warmup=2, sync=synchronizer(device))


def bench_kpm(device, quick):
    import kpm as kpm_bench  # bench/kpm.py
    return kpm_bench.run(device.type, quick)


def bench_llg(device, quick):
    sync = synchronizer(device)
    rows = []
    sides = [100, 316] if quick else [100, 316, 1000, 3162]
    if device.type == "cpu":
        sides = [32, 64]
    for L in sides:
        lat = sf.Lattice("square", (L, L))
        llg = sf.LLG(sf.Heisenberg(lat, J1=-1.0, anisotropy=0.1), dt=0.02, alpha=0.1, kT=0.2, seed=1)
        spins = torch.from_numpy(lat.random_spins(0)).to(device)
        steps = max(10, int(2e7 // lat.num_sites)) if device.type == "cuda" else 10
        t = median_time(lambda: llg.run(spins, steps, start_step=0), 3, warmup=1, sync=sync)
        rows.append({"sites": lat.num_sites, "steps": steps, "seconds": t, "spin_steps_per_s": lat.num_sites * steps / t})
        print(f"  llg N = {lat.num_sites:9d}: {rows[-1]['spin_steps_per_s'] / 1e6:8.1f} M spin-steps/s")
    # One CPU thread on the same work at 10^5 spins (or the largest size here).
    lat = sf.Lattice("square", (sides[min(1, len(sides) - 1)],) * 2)
    llg = sf.LLG(sf.Heisenberg(lat, J1=-1.0, anisotropy=0.1), dt=0.02, alpha=0.1, kT=0.2, seed=1)
    spins = lat.random_spins(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_cpu = median_time(lambda: llg.run(spins, 10, start_step=0), 3, warmup=1)
    torch.set_num_threads(threads)
    cpu_rate = lat.num_sites * 10 / t_cpu
    same = next(r for r in rows if r["sites"] == lat.num_sites)
    print(f"  llg at N = {lat.num_sites}: {same['spin_steps_per_s'] / cpu_rate:.1f}x one CPU thread")
    return {"sizes": rows, "cpu_one_thread_spin_steps_per_s": cpu_rate,
            "speedup_over_one_cpu_thread": same["spin_steps_per_s"] / cpu_rate}


def bench_descriptors(device, quick):
    from spinforce.descriptors import local_spin_variables as reference_variables
    sync = synchronizer(device)
    repeats = 5 if quick else 9
    out = {}
    shapes = {"square": (256, 256), "triangular": (256, 256), "cubic": (40, 40, 40)}
    if device.type == "cpu":
        shapes = {"square": (16, 16), "triangular": (16, 16), "cubic": (6, 6, 6)}
    for kind, shape in shapes.items():
        lat = sf.Lattice(kind, shape)
        for dtype in (torch.float32, torch.float64):
            op = sf.Descriptor(lat).to(dtype).to(device)
            ref = sf.Descriptor(lat, implementation="reference").to(dtype).to(device)
            spins = torch.as_tensor(lat.random_spins(0), dtype=dtype, device=device)
            weights = torch.randn(op.num_features, dtype=dtype, device=device)

            def force(desc):
                def call():
                    s = spins.detach().requires_grad_(True)
                    torch.autograd.grad((desc(s) * weights).sum(), s)
                    sync()
                return call

            patch = torch.cat([spins[:, None], spins[op.neighbors]], dim=1).contiguous()

            def variables():
                torch.ops.spinforce.local_spin_variables(patch, op.pairs, op.triangles)
                sync()

            def variables_reference():
                reference_variables(patch, op.pairs, op.triangles)
                sync()

            m = interleaved_medians({"op": force(op), "reference": force(ref), "variables_op": variables,
                                     "variables_reference": variables_reference}, repeats=repeats, warmup=2)
            # The op reads the patch and writes the variables: its bytes over a copy of as many bytes.
            moved = patch.numel() * patch.element_size() + lat.num_sites * (op.pairs.size(0) + op.triangles.size(0)) * patch.element_size()
            t_copy = copy_seconds(moved, device, repeats)
            name = f"{kind}-{str(dtype).replace('torch.', '')}"
            out[name] = {"sites": lat.num_sites, **{f"{k}_s": v for k, v in m.items()},
                         "ratio_reference_over_op": m["reference"] / m["op"],
                         "variables_op_over_copy_time": m["variables_op"] / t_copy}
            print(f"  descriptors {name:20s}: op {m['op'] * 1e3:8.2f} ms, reference/op {m['reference'] / m['op']:5.2f}, "
                  f"variables op / copy of its bytes {m['variables_op'] / t_copy:5.2f}")
    return out


def bench_ed(device, quick):
    L = 12 if device.type == "cpu" else 30
    lat = sf.Lattice("square", (L, L))
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=6.0, filling=0.485))
    spins = torch.from_numpy(lat.random_spins(0)).to(device)
    h = ed.hamiltonian(spins).to(device)
    sync = synchronizer(device)
    m = interleaved_medians({"ed": lambda: (ed.compute(spins), sync()),
                             "eigh": lambda: (torch.linalg.eigh(h), sync())}, repeats=3 if quick else 5, warmup=1)
    print(f"  ed {L}x{L}: force {m['ed']:.3f} s, eigh {m['eigh']:.3f} s, ratio {m['ed'] / m['eigh']:.2f}")
    return {"lattice": f"square {L}x{L}", "ed_s": m["ed"], "eigh_s": m["eigh"], "ratio_ed_over_eigh": m["ed"] / m["eigh"]}


def bench_ml(device, quick):
    out = RESULTS / ("gpu-ml.json" if device.type == "cuda" else "gpu-smoke-ml.json")
    sizes = ["16", "32"] if device.type == "cpu" else (["100", "316"] if quick else ["100", "316", "1000"])
    cmd = [sys.executable, str(HERE / "ml.py"), "--device", device.type, "--sizes", *sizes, "--out", str(out),
           "--repeats", "3" if quick or device.type == "cpu" else "5"]
    if device.type == "cpu":
        cmd += ["--hidden", "16", "--ed-size", "8"]
    subprocess.run(cmd, check=True)
    return None  # bench/ml.py writes its own JSON


def bench_simulate(device, quick):
    from spinforce.ml.model import build_model, export_torchscript
    sync = synchronizer(device)
    rows = []
    sides = [16, 32] if device.type == "cpu" else ([100, 316] if quick else [100, 316, 1000])
    with tempfile.TemporaryDirectory() as tmp:
        ts = export_torchscript(build_model(sf.Lattice("square", 8), "group", {}, [64, 64], "silu", "float32"),
                                Path(tmp) / "m.ts")
        for L in sides:
            lat = sf.Lattice("square", (L, L))
            provider = sf.MLForceField(ts, lat, device=str(device))
            llg = sf.LLG(provider, dt=0.05, alpha=0.1, kT=0.05, seed=1)
            spins = torch.from_numpy(lat.random_spins(0)).to(device)
            steps = 5
            m = interleaved_medians({"step": lambda: (llg.run(spins, steps, start_step=0), sync()),
                                     "force": lambda: (provider.compute(spins), sync())},
                                    repeats=3, warmup=2)
            step = m["step"] / steps
            rows.append({"sites": lat.num_sites, "step_s": step, "force_s": m["force"],
                         "step_over_two_forces": step / (2 * m["force"]), "spin_steps_per_s": lat.num_sites / step})
            print(f"  ML-LLG N = {lat.num_sites:8d}: step / two forces {rows[-1]['step_over_two_forces']:.3f}, "
                  f"{rows[-1]['spin_steps_per_s'] / 1e6:.2f} M spin-steps/s")
    return {"model": "group descriptor, hidden [64, 64], float32", "sizes": rows}


BENCHES = {"kpm": bench_kpm, "llg": bench_llg, "descriptors": bench_descriptors, "ed": bench_ed, "ml": bench_ml,
           "simulate": bench_simulate}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not (torch.cuda.is_available() and sf._core.cuda_kernels):
        sys.exit("bench/gpu.py: needs a CUDA device and a spinforce built with its CUDA kernels (see `spinforce info`)")
    failed = []
    for name in a.only:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        try:
            result = BENCHES[name](device, a.quick)
        except Exception as err:  # one failing benchmark must not hide the others' figures
            print(f"  {name} FAILED: {type(err).__name__}: {err}")
            failed.append(name)
            continue
        if result is not None:
            write_json(f"gpu-{name}" if device.type == "cuda" else f"gpu-smoke-{name}",
                       {"device": str(device), "quick": a.quick, "seconds": time.perf_counter() - t0, **result})
    if failed:
        sys.exit(f"bench/gpu.py: failed: {', '.join(failed)}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
