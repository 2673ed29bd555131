"""Does a committee's uncertainty rank its real errors on frames it was not trained on?

    python bench/committee.py [--out runs/committee] [--size 10] [--members 4] [--epochs 40] [--kT-el 0]

Square s-d model (t = 1, J = 6, electron temperature kT_el, 0 by default) at a fixed chemical
potential mu = -4.69 on a small lattice, labelled by exact diagonalisation:
1. ED-LLG quenches from random spins (spin temperature kT): `--train` trajectories with seeds
   1, 2, ... for training; two more (seeds 101, 102) held out, one hotter quench (seed 201,
   kT_hot), 20 independent random states (seed 301), and 30 noisy ferromagnets (noise amplitude
   0.03 to 2, seed 401) as states unlike the training data.
2. A committee of `--members` bond-shell models trained from one config (seeds 0..K-1).
3. spinforce.ml.committee.uncertainty_calibration on each held-out set and on all of them:
   Spearman correlation of per-site uncertainty and per-site torque error, calibration PNGs.
Everything goes to OUT (resumable: finished data and members are reused); the numbers also to
bench/results/committee.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from spinforce.data import DatasetWriter, read_dataset
from spinforce.generate import check_config, generate
from spinforce.ml.committee import export_committee, train_committee, uncertainty_calibration
from spinforce.outputs import atomic_write
from _common import RESULTS


def quench(out: Path, size: int, seed: int, kT: float, steps: int, save_every: int, kT_el: float,
           random_states: int = 0) -> Path:
    cfg = check_config({
        "output": str(out), "lattice": {"kind": "square", "shape": [size, size]},
        "model": {"t": 1.0, "J": 6.0, "mu": -4.69, "kT": kT_el}, "method": {"name": "ed"},
        "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": kT, "steps": steps, "save_every": save_every,
                     "initial": "random", "seed": seed},
        "samples": {"random": random_states}})
    generate(cfg, progress=True)
    return out


def noisy_ferromagnets(out: Path, size: int, kT_el: float, frames: int = 30, seed: int = 401) -> Path:
    """Ferromagnets with Gaussian noise of amplitude 0.03 ... 2 on the spins, labelled by ED."""
    import spinforce
    if out.exists():
        return out
    lattice = spinforce.Lattice("square", (size, size))
    ed = spinforce.ExactDiagonalization(spinforce.SDModel(lattice, t=1.0, J=6.0, mu=-4.69, kT=kT_el))
    rng = np.random.default_rng(seed)
    # the file takes its name only when every frame is in (a finished file is reused above)
    with atomic_write(out) as tmp, DatasetWriter(
            tmp, lattice_kind="square", lattice_shape=lattice.shape, num_sites=lattice.num_sites, method="ed",
            model={"t": 1.0, "J": 6.0, "mu": -4.69, "kT": kT_el}, seed=seed, overwrite=True) as w:
        for amplitude in np.geomspace(0.03, 2.0, frames):
            s = np.array([0.0, 0.0, 1.0]) + amplitude * rng.normal(size=(lattice.num_sites, 3))
            s /= np.linalg.norm(s, axis=1, keepdims=True)
            r = ed.compute(s)
            w.append(s, r.fields, r.energy)
    return out


def merge(paths: list[Path], out: Path) -> Path:
    """One dataset of the frames of several runs of one lattice (held-out sets for calibration)."""
    if out.exists():
        out.unlink()
    first = read_dataset(paths[0])
    with DatasetWriter(out, lattice_kind=first.lattice_kind, lattice_shape=first.lattice_shape,
                       num_sites=first.num_sites, method=first.method, model=first.model,
                       provenance={"merged": [str(p) for p in paths]}) as w:
        for p in paths:
            ds = read_dataset(p)
            for i in range(ds.num_frames):
                w.append(ds.spins[i], ds.fields[i], ds.energy[i], ds.time[i], ds.step[i])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/committee"))
    p.add_argument("--size", type=int, default=10)
    p.add_argument("--train", type=int, default=3, help="training trajectories")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--kT", type=float, default=0.05, help="spin temperature of the quenches")
    p.add_argument("--kT-hot", type=float, default=0.3, help="spin temperature of the out-of-distribution quench")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    p.add_argument("--cutoff", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kT-el", type=float, default=0.0, help="electron temperature")
    p.add_argument("--results", default="committee.json", help="file name in bench/results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    train_paths = [quench(data / f"train_{s}.h5", args.size, s, args.kT, args.steps, args.save_every, args.kT_el)
                   for s in range(1, args.train + 1)]
    held = [quench(data / f"heldout_{s}.h5", args.size, s, args.kT, args.steps, args.save_every, args.kT_el)
            for s in (101, 102)]
    hot = quench(data / "hot_201.h5", args.size, 201, args.kT_hot, args.steps, args.save_every, args.kT_el)
    random_states = quench(data / "random_301.h5", args.size, 301, args.kT, 0, args.save_every, args.kT_el, 20)
    ferromagnets = noisy_ferromagnets(data / "noisy_ferromagnets_401.h5", args.size, args.kT_el)
    t_data = time.perf_counter() - began

    config = {"data": {"paths": [str(p) for p in train_paths], "validation_fraction": 0.2},
              "descriptor": {"kind": "bond_shells", "cutoff": args.cutoff, "powers": [1, 2], "pair_orbits": True},
              "model": {"hidden": args.hidden, "activation": "silu", "dtype": "float64"},
              "training": {"seed": 0, "epochs": args.epochs, "batch_size": 8, "learning_rate": 3e-3,
                           "lr_patience": 5, "energy_weight": 0.1, "energy_weight_start": 10,
                           "energy_weight_ramp": 5, "early_stop_patience": 10, "threads": args.threads},
              "output": {"dir": str(out / "unused"), "plots": False}}
    began = time.perf_counter()
    members = train_committee(config, out / "committee", args.members, resume=(out / "committee").exists())
    t_train = time.perf_counter() - began
    ts = export_committee(members, out / "committee.ts", overwrite=True)

    sets = {"held-out quenches": merge(held, data / "heldout.h5"), "hotter quench": hot,
            "random states": random_states, "noisy ferromagnets": ferromagnets,
            "all held-out": merge(held + [hot, random_states], data / "all_heldout.h5")}
    results = {}
    for name, path in sets.items():
        tag = name.replace(" ", "_").replace("-", "")
        res = uncertainty_calibration(ts, path, out=out / f"calibration_{tag}.png", progress=True)
        results[name] = {k: v for k, v in res.items() if k not in ("dataset", "png")}
        if name in ("all held-out", "noisy ferromagnets"):
            RESULTS.mkdir(exist_ok=True)
            shutil.copy(res["png"], RESULTS / f"{Path(args.results).stem}_{tag}.png")
        print(f"{name:20s} frames {res['frames']:4d}  Spearman site {res['spearman_site']:.3f}  "
              f"(|torque| {res['spearman_site_torque']:.3f})  frame {res['spearman_frame']:.3f}  "
              f"rel. torque RMSE {res['relative_torque_rmse']:.3f}  "
              f"RMSE/RMS-uncertainty {res['torque_rmse'] / res['uncertainty_rms']:.2f}")
    train_fit = uncertainty_calibration(ts, merge(train_paths, data / "train_all.h5"))
    print(f"{'training frames':20s} frames {train_fit['frames']:4d}  Spearman site {train_fit['spearman_site']:.3f}  "
          f"rel. torque RMSE {train_fit['relative_torque_rmse']:.3f}")
    record = {"settings": vars(args) | {"out": str(out)}, "seconds": {"data": t_data, "training": t_train},
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "training_frames": {k: v for k, v in train_fit.items() if k not in ("dataset", "bins")},
              "heldout": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.results).write_text(json.dumps(record, indent=2, default=str))
    (out / "committee_results.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {RESULTS / args.results} and the calibration plots in {out}")


if __name__ == "__main__":
    main()
