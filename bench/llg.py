"""LLG integrator throughput: spin-steps per second with the Heisenberg provider.

Compares, on the same square lattice (nearest-neighbour exchange, Langevin bath, SIB
integrator, same number of steps):
  * spinforce.LLG + spinforce.Heisenberg (the C++ loop)
  * Spirit (PyPI package `spirit`, its SIB solver), if it is installed
  * a plain-numpy implementation of the same SIB step (always; the floor any user could write)
Median of --repeats interleaved runs each; prints the ratios and writes bench/results/llg.json and .png.

    python bench/llg.py [--sizes 10000 100000 1000000] [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                    help="numbers of spins (rounded to a square L x L)")
parser.add_argument("--threads", type=int, default=1, help="OpenMP threads for every engine")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--spin-steps", type=float, default=4e6, help="work per timed run (spins x steps)")
args = parser.parse_args()
os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch / Spirit load their OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

import spinforce as sf  # noqa: E402
from _common import RESULTS, interleaved_medians, write_json  # noqa: E402

torch.set_num_threads(args.threads)
DT, ALPHA, KT, J = 0.01, 0.1, 0.5, 1.0


def spinforce_runner(L, steps):
    lat = sf.Lattice("square", (L, L))
    llg = sf.LLG(sf.Heisenberg(lat, J1=J), dt=DT, alpha=ALPHA, kT=KT, integrator="sib", seed=1)
    spins = torch.from_numpy(lat.random_spins(0))
    return lambda: llg.run(spins, steps)


def numpy_runner(L, steps):
    """The same SIB step (Mentink et al. 2010) in numpy: fields by np.roll, Cayley map, midpoint."""
    rng = np.random.default_rng(0)
    S0 = rng.normal(size=(L, L, 3))
    S0 /= np.linalg.norm(S0, axis=2, keepdims=True)
    sigma = np.sqrt(2 * ALPHA * KT / DT)
    pref = 1.0 / (1 + ALPHA ** 2)

    def fields(S):
        return -J * (np.roll(S, 1, 0) + np.roll(S, -1, 0) + np.roll(S, 1, 1) + np.roll(S, -1, 1))

    def cayley(a, S):
        aa = np.sum(a * a, axis=2, keepdims=True)
        return ((1 - aa) * S + 2 * np.cross(a, S) + 2 * np.sum(a * S, axis=2, keepdims=True) * a) / (1 + aa)

    def A(S, H):
        return pref * (H + ALPHA * np.cross(S, H))

    def run():
        S = S0.copy()
        for _ in range(steps):
            xi = sigma * rng.normal(size=S.shape)
            pred = cayley(0.5 * DT * A(S, fields(S) + xi), S)
            mid = S + pred
            mid /= np.linalg.norm(mid, axis=2, keepdims=True)
            S = cayley(0.5 * DT * A(mid, fields(mid) + xi), S)
        return S

    return run


def spirit_runner(L, steps, workdir):
    try:
        from spirit import configuration, simulation, state
    except ImportError:
        return None
    cfg = Path(workdir) / f"spirit_{L}.cfg"
    # Spirit's units differ (meV, ps, K); throughput does not depend on them.
    cfg.write_text("\n".join([
        "bravais_lattice sc", f"n_basis_cells {L} {L} 1", "boundary_conditions 1 1 0",
        "hamiltonian heisenberg_neighbours", "external_field_magnitude 0.0", "anisotropy_magnitude 0.0",
        "n_shells_exchange 1", "jij 1.0", "n_shells_dmi 0", "ddi_method none", "mu_s 1.0",
        "llg_temperature 10.0", f"llg_damping {ALPHA}", "llg_dt 1.0E-3", "llg_output_any 0",
        "log_to_console 0", "log_to_file 0", "log_output_file_tag none", ""]))
    st = state.State(str(cfg), quiet=True)
    p = st.__enter__()
    configuration.random(p)

    def run():
        simulation.start(p, simulation.METHOD_LLG, simulation.SOLVER_SIB, n_iterations=steps)

    run.close = lambda: st.__exit__(None, None, None)
    return run


results = {"cpu_count": os.cpu_count(), "threads": args.threads, "repeats": args.repeats, "integrator": "sib",
           "model": f"square lattice, nearest-neighbour Heisenberg J={J}, alpha={ALPHA}, kT={KT} (Langevin)",
           "spinforce": sf.__version__, "sizes": []}
try:
    import spirit.version
    results["spirit"] = spirit.version.version
except ImportError:
    results["spirit"] = None

with tempfile.TemporaryDirectory() as workdir:
    for n in args.sizes:
        L = int(round(np.sqrt(n)))
        N = L * L
        steps = max(5, int(args.spin_steps / N))
        row = {"num_spins": N, "steps": steps}
        engines = {"spinforce": spinforce_runner(L, steps), "numpy": numpy_runner(L, steps),
                   "spirit": spirit_runner(L, steps, workdir)}
        engines = {name: fn for name, fn in engines.items() if fn is not None}
        # Interleaved repeats: load from elsewhere on the machine hits every engine alike.
        medians = interleaved_medians(engines, args.repeats)
        for name, fn in engines.items():
            row[name] = {"seconds_median": medians[name], "spin_steps_per_second": N * steps / medians[name]}
            if hasattr(fn, "close"):
                fn.close()
        base = row["spinforce"]["spin_steps_per_second"]
        line = f"N={N:>8d} steps={steps:>4d}  spinforce {base / 1e6:7.2f} M spin-steps/s"
        for peer in ("spirit", "numpy"):
            if peer in row:
                row[f"ratio_vs_{peer}"] = base / row[peer]["spin_steps_per_second"]
                line += f" | {peer} {row[peer]['spin_steps_per_second'] / 1e6:7.2f} (spinforce/{peer} = " \
                        f"{row[f'ratio_vs_{peer}']:.2f}x)"
        print(line, flush=True)
        results["sizes"].append(row)

out = write_json("llg", results)

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(5, 3.5))
for name in ("spinforce", "spirit", "numpy"):
    pts = [(r["num_spins"], r[name]["spin_steps_per_second"]) for r in results["sizes"] if name in r]
    if pts:
        ax.loglog(*zip(*pts), "o-", label=name)
ax.set_xlabel("spins")
ax.set_ylabel("spin-steps per second")
ax.set_title(f"SIB LLG, Heisenberg, {args.threads} thread(s)")
ax.legend()
fig.tight_layout()
fig.savefig(RESULTS / "llg.png", dpi=120)
print(f"wrote {RESULTS / 'llg.png'}")
