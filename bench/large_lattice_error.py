"""A shipped committee's torque error on lattices larger than it was trained on.

    python bench/large_lattice_error.py --model de_square [--size 30] [--runs 2] [--times 1 5 20 50]
    python bench/large_lattice_error.py --model tetra_triangular --size 24
    python bench/large_lattice_error.py --model tetra_triangular --size 24 --path DIR/model.ts --name tetra_triangular_24

The committees of `spinforce/models/` were trained and tested on 12x12 exact states. The
states that matter are those of big-lattice quenches. An ED-LLG quench of 30x30 sites costs
hours here (one ED evaluation ~10 s, two per step), so this measures the model on the states
its own dynamics visits instead: `--runs` ML-LLG thermal quenches from random spins (the
dynamics of the model's study config, `spinforce/study_configs/NAME.toml`, on `--size`),
the frames at `--times` labelled by exact diagonalisation at the model's fixed mu (ED at
30x30: 1800 x 1800 complex matrices). Reported per time: the relative torque error
RMS |S x (H_ML - H_ED)| / RMS |S x H_ED| (pooled over runs and sites), the committee's mean
uncertainty, and the ED filling at the fixed mu (de_square: 1.5 % holes = filling 0.4925 is
what mu = -4.69 should give once FM puddles have formed). These frames were never trained on,
but they are ML trajectories: where the model is wrong the exact dynamics would go elsewhere,
so this is an optimistic stand-in for ED-LLG frames (docs/ml.md).
`--path` measures another committee file with the exact model and dynamics of `--model` (e.g. one
of `spinforce learn --example tetra_triangular_24`, labelled on 24x24); `--name` names its JSON.
`--compare PATH...` also measures other committee files on the same frames (the trajectories stay
those of the measured one), so that two committees are compared on identical states.
`--first-seed` changes the noise seeds (1000 + k by default) for frames of other trajectories.
`--fixed-n` measures a committee exported at a fixed electron count (`spinforce export
--fixed-filling`, or `spinforce learn --example de_square_fixed_n`): its quenches conserve the
electrons, and the frames are labelled by ED at the file's filling instead of the fixed mu; per time
the ED chemical potential and the committee's solved one are reported instead of the filling.
`--exact-dynamics` runs the quenches with ED-LLG instead (hours at 24x24 and up: one ED per
force) and measures the committee on the frames of the exact dynamics. `--kT-el` and `--mu` label
at another electron temperature and fixed mu than the model's (for committees trained at those).
`--runs-dir DIR` keeps the quench runs in DIR (run{k}.h5, checkpointed every 100 steps): an
interrupted bench resumes them there, and a finished run is reused as it is. `--trajectories
FILE...` measures on the frames of runs made before (`spinforce simulate` outputs of any method,
e.g. a `--runs-dir` of `--exact-dynamics`) instead of running quenches; `--size` and `--runs` then
come from the files. `bench/data/tetra_triangular_kT03_ed_llg_24x24_seed1000.h5` holds 7 frames (t = 1, 5,
10, 20, 30, 40, 50) of a 24x24 ED-LLG quench at T_el = 0.3, mu = -2.57 (the dynamics of the study, seed
1000; 47 min on one thread), the held-out frames of the triangular models at that electron temperature:
    python bench/large_lattice_error.py --model tetra_triangular --kT-el 0.3 --mu -2.57 --path DIR/model.ts \
        --trajectories data/tetra_triangular_kT03_ed_llg_24x24_seed1000.h5 --times 1 5 10 20 30 40 50
`--save PATH` keeps the ED-labelled frames as a spinforce dataset (one trajectory id per run), a
held-out test set for `spinforce train` (`data.test_paths`) or for later committees.
JSON to bench/results/large_lattice_error_NAME.json (NAME: --name, else --model).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import spinforce  # before torch: it chooses how idle OpenMP threads wait

import numpy as np
from tqdm.auto import tqdm

from spinforce.data import DatasetWriter, read_dataset
from spinforce.providers import uncertainty_scalars
from spinforce.simulate import simulate
from spinforce.study import load_config as load_study_config
from _common import write_json
from ml import relative_torque_error

PACKAGE = Path(spinforce.__file__).parent
# The exact model each shipped committee's labels were made with (its report): fixed mu.
EXACT = {"de_square": {"kind": "square", "t": 1.0, "J": 6.0, "kT": 0.0, "mu": -4.69},
         "tetra_triangular": {"kind": "triangular", "t": 1.0, "J": 2.0, "kT": 0.05, "mu": -2.4642}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(EXACT), default="de_square")
    p.add_argument("--size", type=int, default=30)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--times", type=float, nargs="+", default=[1.0, 5.0, 20.0, 50.0])
    p.add_argument("--path", type=Path, help="committee file (default: the shipped one of --model)")
    p.add_argument("--name", help="name of the JSON (default: --model)")
    p.add_argument("--compare", type=Path, nargs="+", default=[], help="committee files also measured on the same frames")
    p.add_argument("--first-seed", type=int, default=1000, help="noise seed of the first run (then +1 per run)")
    p.add_argument("--fixed-n", action="store_true",
                   help="the committee runs at a fixed filling: label by ED at that filling, report mu")
    p.add_argument("--save", type=Path, help="write the ED-labelled frames to this dataset file (must not exist)")
    p.add_argument("--exact-dynamics", action="store_true",
                   help="run the quenches with ED-LLG instead of the committee (the committee is measured on their frames)")
    p.add_argument("--runs-dir", type=Path, help="keep (and resume) the quench runs in this folder instead of a temporary one")
    p.add_argument("--trajectories", type=Path, nargs="+", default=[],
                   help="measure on the frames of these run files instead of running quenches")
    p.add_argument("--kT-el", type=float, help="electron temperature of the ED labels (default: that of --model)")
    p.add_argument("--mu", type=float, help="fixed mu of the ED labels (default: that of --model)")
    a = p.parse_args()
    if a.kT_el is not None and not (np.isfinite(a.kT_el) and a.kT_el >= 0):
        p.error(f"--kT-el must be a finite electron temperature >= 0, got {a.kT_el}")
    if a.mu is not None and (a.fixed_n or not np.isfinite(a.mu)):
        p.error("--mu: a finite chemical potential, and not with --fixed-n (whose labels are at the file's filling)")
    model_path = a.path if a.path is not None else PACKAGE / "models" / f"{a.model}.ts"
    if not model_path.is_file():
        p.error(f"--path: no committee file {model_path}")
    for c in a.compare:
        if not c.is_file():
            p.error(f"--compare: no committee file {c}")
    if a.trajectories and (a.runs_dir is not None or a.exact_dynamics):
        p.error("--trajectories: the frames are given, so not with --runs-dir or --exact-dynamics")
    for path in a.trajectories:
        if not path.is_file():
            p.error(f"--trajectories: no run file {path}")
    if a.save is not None and a.save.exists():
        p.error(f"--save: {a.save} exists; give a new file")
    ex = dict(EXACT[a.model])
    ex.update({k: v for k, v in (("kT", a.kT_el), ("mu", a.mu)) if v is not None})
    if a.fixed_n:
        from spinforce.ml.committee import load_exported
        filling = float(load_exported(model_path).fixed_filling)
        if not np.isfinite(filling):
            p.error(f"--fixed-n: {model_path} was not exported at a fixed filling (spinforce export --fixed-filling)")
        ex.pop("mu")
        ex["filling"] = filling
    study = load_study_config(a.model)["dynamics"]  # checked, as `spinforce study` reads it
    dt = study["dt"]
    steps = [int(round(t / dt)) for t in a.times]
    given = [read_dataset(path) for path in a.trajectories]
    if given:
        a.runs, a.size = len(given), given[0].lattice_shape[0]
        for path, ds in zip(a.trajectories, given):
            if ds.lattice_kind != ex["kind"] or tuple(ds.lattice_shape) != (a.size, a.size):
                p.error(f"--trajectories: {path} is a {ds.lattice_kind} {tuple(ds.lattice_shape)} run, "
                        f"not {ex['kind']} {a.size}x{a.size}")
    lattice = spinforce.Lattice(ex["kind"], (a.size, a.size))
    others = [spinforce.MLForceField(c, lattice) for c in a.compare]
    # the committee is evaluated on the frames unless they are its own (ML-LLG runs made here)
    evaluate = a.exact_dynamics or bool(given)
    method = given[0].method if given else "ed" if a.exact_dynamics else "ml"
    dynamics = (given[0].provenance.get("config", {}).get("dynamics", {}) if given else
                {"dt": dt, "alpha": study["alpha"], "kT": study["kT"]})
    measured = spinforce.MLForceField(model_path, lattice) if evaluate else None
    ed = spinforce.ExactDiagonalization(spinforce.SDModel(lattice, **{k: v for k, v in ex.items() if k != "kind"}))
    rows = {t: {"states": [], "ml": [], "ed": [], "uncertainty": [], "filling": [], "others": [], "energy": [],
                "run": [], "step": [], "time": [], "mu_ed": [], "mu_ml": []} for t in a.times}
    ed_seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.runs):
            if given:
                ds = given[k]
            else:
                runs_dir = Path(tmp) if a.runs_dir is None else a.runs_dir
                path = runs_dir / f"run{k}.h5"
                cfg = {"output": str(path), "lattice": {"kind": ex["kind"], "shape": [a.size, a.size]},
                       "method": {"name": "ed"} if a.exact_dynamics else {"name": "ml", "path": str(model_path)},
                       **({"model": {k: v for k, v in ex.items() if k != "kind"}} if a.exact_dynamics else {}),
                       "dynamics": {"dt": dt, "alpha": study["alpha"], "kT": study["kT"], "steps": max(steps),
                                    "save_every": 1, "checkpoint_every": 100, "initial": "random",
                                    "seed": a.first_seed + k}}
                runs_dir.mkdir(parents=True, exist_ok=True)
                simulate(cfg, progress=False, resume=True)
                ds = read_dataset(path)
            for t in a.times:
                on_time = np.flatnonzero(np.abs(ds.time - t) < dt / 2)
                if not on_time.size:
                    p.error(f"--times: run {k} has no frame at t = {t:g} (its frames: t = {ds.time[0]:g} .. "
                            f"{ds.time[-1]:g})")
                i = int(on_time[0])
                s = ds.spins[i]
                t0 = time.perf_counter()
                r = ed.compute(s)
                ed_seconds.append(time.perf_counter() - t0)
                ml = measured.compute(s) if evaluate else None
                row = rows[t]
                row["states"].append(s)
                row["ml"].append(ml.fields if evaluate else ds.fields[i])
                row["ed"].append(r.fields)
                row["filling"].append(float(np.mean(r.density)) / 2)
                row["others"].append([m.compute(s).fields for m in others])
                row["energy"].append(float(r.energy))
                if a.fixed_n:
                    row["mu_ed"].append(float(r.mu))
                    row["mu_ml"].append(float(measured.chemical_potential(s) if evaluate else ds.scalars["mu"][i]))
                row["run"].append(k)
                # the frame's own step and time: given runs may have been saved with another dt
                row["step"].append(int(ds.step[i]))
                row["time"].append(float(ds.time[i]))
                if evaluate and ml.uncertainty is not None:
                    row["uncertainty"].append(uncertainty_scalars(ml.uncertainty)["uncertainty_mean"])
                elif "uncertainty_mean" in ds.scalars:
                    row["uncertainty"].append(float(ds.scalars["uncertainty_mean"][i]))
                tqdm.write(f"run {k} t = {t:g}: error {relative_torque_error([s], [row['ml'][-1]], [r.fields]):.3f}")
    if a.save is not None:
        with DatasetWriter(a.save, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                           method="ed", model=ed.model.parameters(), method_settings={"labels": "fixed filling", "filling": ex["filling"]} if a.fixed_n
                           else {"labels": "fixed mu", "mu": ex["mu"]},
                           provenance={"command": "bench/large_lattice_error.py", "committee": str(model_path),
                                       "seeds": [ds.seed for ds in given] or [a.first_seed + k for k in range(a.runs)],
                                       "times": a.times}) as w:
            for t in a.times:
                row = rows[t]
                for s, h, e, k, step, when in zip(row["states"], row["ed"], row["energy"], row["run"], row["step"],
                                                  row["time"]):
                    w.append(s, h, e, time=when, step=step, trajectory=k)
        print(f"labelled frames written to {a.save}")
    results = []
    for t in a.times:
        row = rows[t]
        results.append({"time": t, "frames": len(row["states"]),
                        "relative_torque_error": relative_torque_error(row["states"], row["ml"], row["ed"]),
                        "per_run": [relative_torque_error([s], [h], [e]) for s, h, e in
                                    zip(row["states"], row["ml"], row["ed"])],
                        "mean_uncertainty": float(np.mean(row["uncertainty"])) if row["uncertainty"] else None,
                        **({"mu_ed": row["mu_ed"], "mu_ml": row["mu_ml"]} if a.fixed_n
                           else {"filling_at_fixed_mu": float(np.mean(row["filling"]))}),
                        "compare": {str(c): relative_torque_error(row["states"], [o[j] for o in row["others"]], row["ed"])
                                    for j, c in enumerate(a.compare)}})
    labels = f"ED at filling {ex['filling']:g}" if a.fixed_n else f"ED at mu = {ex['mu']}"
    print(f"{a.model} on {a.size}x{a.size}, {a.runs} {method.upper()}-LLG quenches, labels: {labels}")
    print(f"{'t':>6} {'error':>8} {'per run':>20} {'mean u':>8} " + ("mu ED / ML" if a.fixed_n else "filling"))
    for r in results:
        per = " ".join(f"{e:.3f}" for e in r["per_run"])
        u = "-" if r["mean_uncertainty"] is None else f"{r['mean_uncertainty']:.3f}"
        last = (" ".join(f"{e:.3f}/{m:.3f}" for e, m in zip(r["mu_ed"], r["mu_ml"])) if a.fixed_n
                else f"{r['filling_at_fixed_mu']:8.4f}")
        print(f"{r['time']:6g} {r['relative_torque_error']:8.3f} {per:>20} {u:>8} {last}")
    for c in a.compare:
        print(f"{c} on the same frames: " + ", ".join(f"t = {r['time']:g}: {r['compare'][str(c)]:.3f}" for r in results))
    write_json(f"large_lattice_error_{a.name or a.model}",
                     {"model": a.model, "path": str(model_path) if a.path is not None else None, "size": a.size, "runs": a.runs, "exact": ex,
                      "dynamics": {**{k: dynamics.get(k) for k in ("dt", "alpha", "kT")}, "method": method},
                      "trajectories": [str(path) for path in a.trajectories] or None,
                      "ed_seconds_median": float(np.median(ed_seconds)), "results": results})


if __name__ == "__main__":
    main()
