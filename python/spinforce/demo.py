"""The whole spinforce pipeline on shipped defaults, with no input from the user.

    spinforce demo [--out DIR] [--overwrite] [--small 8] [--large 48] [--epochs 80] ...

1. ED-LLG quenches of the triangular s-d model at filling 1/4 (J = 2, whose ground state is
   the chiral tetrahedral order) on a small lattice: training snapshots.
2. A compact Behler-Parrinello model trained on them, exported to TorchScript.
3. Validation: ML-LLG against ED-LLG from the same random start and noise seed (not in the
   training data) on the small lattice: spin correlation C(r), chirality, energy.
4. A thermal quench with ML-LLG on a lattice tens of times larger.
5. Analysis of the quench (chirality, bond field, domain growth, clusters) and report.md with
   the plots and the measured figures.

About ten minutes on 2 CPU cores with the defaults. Every stage writes into the output folder
(data/, model/, validation/, quench/, report.md), which must be new, empty or hold an earlier
demo; nothing there changes without --overwrite, which removes only the demo's own files.
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import Key, check_table, int_list, integer, multiple_of, number
from .outputs import prepare_outputs, under, with_partial

__all__ = ["DEFAULTS", "SETTINGS", "run_demo", "output_patterns", "HELP", "add_arguments", "run"]

HELP = "the whole pipeline on shipped defaults: ED data, training, ML-LLG quench, analysis, report (~10 min)"

def _even_side(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 4 or value % 2:
        raise ValueError(f"{name} must be an even integer >= 4, got {value!r}")
    return value


# The demo's settings (config.py schema); DEFAULTS are the shipped values.
SETTINGS = {
    "small": Key(_even_side, 8),      # side of the ED lattice (even: tetrahedral order has a 2x2 cell)
    "large": Key(_even_side, 48),     # side of the ML-LLG lattice (36 times the sites of 8x8)
    "J": Key(number(), 2.0), "filling": Key(number(0, 1, lo_open=True, hi_open=True), 0.25),
    "kT_electrons": Key(number(0), 0.05),
    # strong damping: chiral order forms by t ~ 60 on 8x8 (ED-LLG)
    "dt": Key(number(0, lo_open=True), 0.05), "alpha": Key(number(0), 0.3), "kT": Key(number(0), 0.002),
    "ed_runs": Key(integer(1), 3), "ed_steps": Key(integer(1), 1500), "save_every": Key(integer(1), 30),
    "random_samples": Key(integer(0), 8), "perturbed_samples": Key(integer(0), 16),
    "hidden": Key(int_list(1), [32, 32]), "epochs": Key(integer(1), 80),
    "validation_steps": Key(integer(1), 900),
    "ml_steps": Key(integer(1), 4000), "ml_every": Key(integer(1), 100),
    "seed": Key(integer(0), 1),
}
DEFAULTS = {name: key.default for name, key in SETTINGS.items()}


def output_patterns() -> tuple:
    """Everything the demo writes into its folder (outputs.py), stage by stage."""
    from .analysis.run import OUTPUTS as ANALYSIS
    from .generate import output_patterns as generated
    from .ml.training import OUTPUTS as TRAINING
    from .simulate import output_patterns as simulated
    return (("report.md", "figures.json") + under("data", generated("ed_quench_*.h5"))
            + under("model", TRAINING + with_partial("model.ts"))
            + under("validation", generated("ed.h5") + simulated("ml.h5")) + under("validation/analysis", ANALYSIS)
            + under("quench", simulated("ml_quench.h5")) + under("quench/analysis", ANALYSIS))


@contextmanager
def _torch_threads(n: int):
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _ed_config(p: dict, output: Path, seed: int, steps: int, samples: bool) -> dict:
    from .generate import check_config
    return check_config({
        "output": str(output),
        "lattice": {"kind": "triangular", "shape": [p["small"], p["small"]]},
        "model": {"J": p["J"], "filling": p["filling"], "kT": p["kT_electrons"]},
        "method": {"name": "ed"},
        "dynamics": {"dt": p["dt"], "alpha": p["alpha"], "kT": p["kT"], "steps": steps,
                     "save_every": p["save_every"], "seed": seed, "initial": "random"},
        "samples": {"random": p["random_samples"] if samples else 0,
                    "perturbed": p["perturbed_samples"] if samples else 0},
    })


def _ml_config(p: dict, model: Path, output: Path, side: int, seed: int, steps: int, every: int) -> dict:
    return {"output": str(output), "lattice": {"kind": "triangular", "shape": [side, side]},
            "method": {"name": "ml", "path": str(model)}, "model": {},
            "dynamics": {"dt": p["dt"], "alpha": p["alpha"], "kT": p["kT"], "steps": steps, "save_every": every,
                         "seed": seed, "initial": "random", "checkpoint_every": 10 * every}}


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def run_demo(out="spinforce_demo", *, overwrite: bool = False, progress: bool = True, quiet: bool = False,
             **settings) -> dict:
    """Run the pipeline into `out`; settings override DEFAULTS. Returns the measured figures."""
    from .analysis import analyze_run
    from .analysis.run import count_frames
    from .data import read_dataset
    from .generate import generate
    from .ml.model import export_torchscript, load_model
    from .ml.training import train
    from .simulate import simulate

    p = check_table("", settings, SETTINGS, where="the demo settings")
    for key in ("ed_steps", "validation_steps"):
        multiple_of(p, key, "save_every")
    out = Path(out)
    report = out / "report.md"
    # Nothing in `out` changes without overwrite; with it, only the demo's own files go. Every
    # stage then writes into a clean folder and replaces nothing.
    prepare_outputs(out, output_patterns(), command="spinforce demo", overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    # said once the settings and the folder are checked: a refused run does not announce itself
    _say("spinforce demo: the whole pipeline on shipped defaults. This takes about ten minutes on 2 CPU cores.", quiet)
    figures = {"settings": p}
    began = time.perf_counter()

    # 1. training data: ED-LLG quenches (one thread: 2N x 2N eigensolves this small do not parallelise)
    _say(f"[1/5] ED-LLG quenches on the {p['small']}x{p['small']} triangular s-d model "
         f"(J = {p['J']}, filling {p['filling']})", quiet)
    t0 = time.perf_counter()
    paths = []
    with _torch_threads(1):
        for k in range(p["ed_runs"]):
            cfg = _ed_config(p, out / "data" / f"ed_quench_{k}.h5", p["seed"] + k, p["ed_steps"], samples=True)
            generate(cfg, resume=False, progress=progress)
            paths.append(cfg["output"])
    frames = sum(count_frames(path) for path in paths)
    figures["ed"] = {"runs": len(paths), "snapshots": frames, "seconds": time.perf_counter() - t0}

    # 2. a compact model, exported for the C++ provider
    _say(f"[2/5] training a {p['hidden']} Behler-Parrinello model for {p['epochs']} epochs on {frames} snapshots",
         quiet)
    t0 = time.perf_counter()
    result = train({"data": {"paths": paths}, "model": {"hidden": p["hidden"]},
                    "training": {"epochs": p["epochs"], "seed": p["seed"]},
                    "output": {"dir": str(out / "model")}}, progress=progress)
    model_ts = export_torchscript(load_model(result.model_path), out / "model" / "model.ts")
    torque_rms = _torque_rms(paths)
    figures["training"] = {"seconds": time.perf_counter() - t0, "best_epoch": result.best_epoch,
                           "validation": result.best["val"], "train": result.best["train"],
                           "data_torque_rms": torque_rms,
                           "relative_torque_error": result.best["val"]["torque_rmse"] / torque_rms}

    # 3. ML-LLG against ED-LLG from one start and noise seed that training never saw
    _say("[3/5] validation: ML-LLG against ED-LLG on the small lattice", quiet)
    t0 = time.perf_counter()
    vseed = p["seed"] + 1000
    with _torch_threads(1):
        generate(_ed_config(p, out / "validation" / "ed.h5", vseed, p["validation_steps"], samples=False),
                 resume=False, progress=progress)
    simulate(_ml_config(p, model_ts, out / "validation" / "ml.h5", p["small"], vseed, p["validation_steps"],
                        p["save_every"]), progress=progress)
    val = analyze_run(out / "validation" / "ml.h5", out / "validation" / "analysis", compare=out / "validation" / "ed.h5",
                      compare_labels=("ML-LLG", "ED-LLG"), progress=False)
    ed_val = analyze_run(out / "validation" / "ed.h5", None, progress=False)
    ml_e, ed_e = read_dataset(out / "validation" / "ml.h5").energy, read_dataset(out / "validation" / "ed.h5").energy
    n_small = p["small"] ** 2
    figures["validation"] = {
        "seconds": time.perf_counter() - t0,
        "max_abs_difference_C": val.summary["compare"]["max_abs_difference_C"],
        "final_abs_chirality": {"ml": float(val.timeseries["chirality_abs_mean"][-1]),
                                "ed": float(ed_val.timeseries["chirality_abs_mean"][-1])},
        "final_bond_mean": {"ml": float(val.timeseries["bond_mean"][-1]),
                            "ed": float(ed_val.timeseries["bond_mean"][-1])},
        "final_energy_per_site": {"ml": float(ml_e[-1] / n_small), "ed": float(ed_e[-1] / n_small)},
    }

    # 4. the large quench
    side = p["large"]
    _say(f"[4/5] ML-LLG quench on {side}x{side} = {side * side} spins "
         f"({side * side / n_small:.0f} times the ED lattice), {p['ml_steps']} steps", quiet)
    sim = simulate(_ml_config(p, model_ts, out / "quench" / "ml_quench.h5", side, p["seed"] + 2000, p["ml_steps"],
                              p["ml_every"]), progress=progress)
    figures["quench"] = {"sites": side * side, "steps": p["ml_steps"], "seconds": sim.wall_seconds,
                         "spin_steps_per_second": sim.spin_steps_per_second}

    # 5. analysis and report
    _say("[5/5] analysis and report", quiet)
    t_end = p["ml_steps"] * p["dt"]
    # growth exponents over the second half of the run, after chiral domains have formed
    ana = analyze_run(out / "quench" / "ml_quench.h5", out / "quench" / "analysis", fit_window=(t_end / 2, t_end),
                      progress=False)
    ts = ana.timeseries
    figures["analysis"] = {
        "fit_window": list(ana.fit_window),
        "growth_exponents": {k: {"n": f.exponent, "stderr": f.stderr, "points": f.num_points}
                             for k, f in ana.fits.items()},
        "final": {k: float(ts[k][-1]) for k in ("time", "chirality_abs_mean", "bond_mean", "L_chirality_sf",
                                                 "L_chirality_corr", "L_spin_sf", "clusters")},
    }
    figures["total_seconds"] = time.perf_counter() - began
    (out / "figures.json").write_text(json.dumps(figures, indent=2, default=float))
    report.write_text(_report(figures, out))
    _say(f"done in {figures['total_seconds']:.0f} s: {report}", quiet)
    return figures


def _torque_rms(paths) -> float:
    from .data import read_dataset
    total, count = 0.0, 0
    for path in paths:
        d = read_dataset(path)
        total += float((np.cross(d.spins, d.fields) ** 2).sum())
        count += d.spins.shape[0] * d.spins.shape[1]
    return float(np.sqrt(total / count))


def _image(out: Path, rel: str, caption: str) -> str:
    return f"![{caption}]({rel})\n" if (out / rel).exists() else ""


def _report(f: dict, out: Path) -> str:
    p, tr, va, qu, an = f["settings"], f["training"], f["validation"], f["quench"], f["analysis"]
    lines = [
        "# spinforce demo report",
        "",
        f"Triangular-lattice s-d model, J = {p['J']} t, filling {p['filling']}, electron temperature "
        f"{p['kT_electrons']} t; LLG with dt = {p['dt']}, alpha = {p['alpha']}, spin temperature kT = {p['kT']} t, "
        f"quenched from random spins. Total time {f['total_seconds']:.0f} s.",
        "",
        "## 1. Training data (ED-LLG)",
        "",
        f"ED-LLG runs: {f['ed']['runs']}, each {p['ed_steps']} steps on {p['small']}x{p['small']} sites, "
        f"plus random and perturbed samples: {f['ed']['snapshots']} snapshots in {f['ed']['seconds']:.0f} s.",
        "",
        "## 2. Model",
        "",
        f"Hidden layers {p['hidden']}, best epoch {tr['best_epoch']} of {p['epochs']} ({tr['seconds']:.0f} s).",
        "",
        "| set | torque RMSE | field RMSE | energy MAE / site |",
        "| --- | --- | --- | --- |",
    ]
    for split in ("train", "validation"):
        m = tr[split]
        lines.append(f"| {split} | {m['torque_rmse']:.4g} | {m['field_rmse']:.4g} | {m['energy_mae_per_site']:.4g} |")
    lines += [
        "",
        f"RMS torque of the data: {tr['data_torque_rms']:.4g}; validation torque error relative to it: "
        f"{tr['relative_torque_error']:.3f}.",
        "",
        _image(out, "model/plots/parity_val.png", "predicted vs exact fields (validation set)"),
        "## 3. ML-LLG against ED-LLG (same start, same noise, not in the training data)",
        "",
        f"{p['validation_steps']} steps on {p['small']}x{p['small']} sites.",
        "",
        "| at the last frame | ML-LLG | ED-LLG |",
        "| --- | --- | --- |",
        f"| mean abs chirality | {va['final_abs_chirality']['ml']:.4f} | {va['final_abs_chirality']['ed']:.4f} |",
        f"| mean bond S_i.S_j | {va['final_bond_mean']['ml']:.4f} | {va['final_bond_mean']['ed']:.4f} |",
        f"| energy per site (model / exact) | {va['final_energy_per_site']['ml']:.4f} | "
        f"{va['final_energy_per_site']['ed']:.4f} |",
        "",
        f"Largest difference of the spin correlation C(r): {va['max_abs_difference_C']:.4f}. "
        "(The two trajectories are chaotic; compare statistics, not spins.)",
        "",
        _image(out, "validation/analysis/correlation.png", "C(r), ML-LLG vs ED-LLG"),
        "## 4. Large ML-LLG quench",
        "",
        f"{qu['sites']} spins ({qu['sites'] / p['small'] ** 2:.0f} times the ED lattice), {qu['steps']} steps "
        f"in {qu['seconds']:.0f} s: {qu['spin_steps_per_second']:.3g} spin-steps per second.",
        "",
        "## 5. Coarsening",
        "",
        f"Fit window t = {an['fit_window'][0]:.3g} .. {an['fit_window'][1]:.3g}; L ~ t^n:",
        "",
        "| length | n | standard error | points |",
        "| --- | --- | --- | --- |",
    ]
    for name, g in an["growth_exponents"].items():
        lines.append(f"| {name} | {g['n']:.3f} | {g['stderr']:.3f} | {g['points']} |")
    fin = an["final"]
    lines += [
        "",
        f"At t = {fin['time']:.3g}: mean abs chirality {fin['chirality_abs_mean']:.4f} (tetrahedral order: "
        f"{4 / (3 * np.sqrt(3)):.4f}), mean bond {fin['bond_mean']:.4f} (tetrahedral: -0.3333), chiral domain "
        f"size L_chirality_sf = {fin['L_chirality_sf']:.3g}, L_chirality_corr = {fin['L_chirality_corr']:.3g}.",
        "",
        _image(out, "quench/analysis/chirality_snapshot.png", "chirality"),
        _image(out, "quench/analysis/bond_snapshot.png", "bond average"),
        _image(out, "quench/analysis/length_scales.png", "domain growth"),
        _image(out, "quench/analysis/clusters.png", "clusters"),
        "The numbers above come from short runs on small lattices chosen to finish in minutes; they show the "
        "pipeline working, not converged physics. All figures: figures.json.",
        "",
    ]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("spinforce_demo"), help="output folder (default spinforce_demo)")
    p.add_argument("--overwrite", action="store_true", help="run again into a folder that holds a demo")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    for key, value in DEFAULTS.items():
        if isinstance(value, list):
            p.add_argument(f"--{key.replace('_', '-')}", type=int, nargs="+", default=None, metavar="N",
                           help=f"default {value}")
        else:
            p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None, help=f"default {value}")


def run(args) -> int:
    settings = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    run_demo(args.out, overwrite=args.overwrite, progress=not args.quiet, quiet=args.quiet, **settings)
    return 0
