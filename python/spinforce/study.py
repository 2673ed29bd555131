"""Ensemble coarsening studies with ML-LLG: `spinforce study NAME --out DIR`.

    spinforce study tetra_triangular --out DIR [--size L] [--runs R] [--model PATH] [--set KEY=VALUE ...]
                                     [--overwrite | --resume] [--no-progress]
    spinforce study --list

NAME is a study shipped with spinforce (spinforce/study_configs/NAME.toml) or a TOML file of
the same form. Stages, each with a progress bar:

    runs      R thermal quenches from random spins with the ML force field (spinforce.simulate),
              noise seed and random start seed + k for run k, each in DIR/runs/runK.h5
    check     optional ([check]): ED-LLG and ML-LLG ensembles of the same size on a small lattice
    analysis  ensemble-averaged structure factor and correlation of the order field at every
              frame -> L(t); fits with standard errors; domain walls (chirality) or clusters of
              the bond field (bond); DIR/results.json, DIR/report.md and PNGs

Runs are resumable: finished runs are skipped, unfinished ones continue from their checkpoint
(the thermal noise depends only on (seed, step, site), so a resumed study equals an
uninterrupted one). docs/studies.md describes the config and every number of the report.
"""
from __future__ import annotations

import hashlib
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .config import (OMIT, Key, boolean, check_sections, check_table, device, integer, list_of, number, number_pair,
                     one_of, shape, shipped_config_lines, shipped_configs, string, table)
from .lattice import require_capability
from .outputs import atomic_write, prepare_outputs, under, with_partial
from .run_setup import ELECTRON_METHODS, LATTICE, SD_MODEL, add_set_argument, check_settings, read_config

__all__ = ["HELP", "studies", "load_config", "run_study", "analyze_study", "output_patterns", "add_arguments", "run"]

HELP = "ensemble of ML-LLG quenches -> L(t), growth exponents, domain morphology, report (resumable)"
STATE_FILE = "study_state.json"
ORDERS = ("chirality", "bond")
REFERENCE_EXPONENTS = {"chirality": {"Allen-Cahn": 0.5, "linear": 1.0}, "bond": {"LSW": 1.0 / 3.0}}


# --- configs ------------------------------------------------------------------------------------
def studies() -> dict:
    """Studies shipped with spinforce: name -> config path."""
    return shipped_configs("study_configs")


def _window(value, name):
    if value == "auto":
        return value
    return number_pair()(value, name)


def _schema() -> dict:
    from .simulate import DYNAMICS
    dynamics = {k: v for k, v in DYNAMICS.items() if k not in ("seed", "initial")}  # set per run
    return {
        "title": Key(string()), "order": Key(one_of(*ORDERS)), "model": Key(string("an exported force field (TorchScript or .pt2)"), OMIT),
        "device": Key(device(), "cpu"), "threads": Key(integer(0), 0),
        "dtype": Key(one_of("float32", "float64"), "float64"),
        "lattice": LATTICE, "dynamics": dynamics,
        "ensemble": {"runs": Key(integer(1), 4), "seed": Key(integer(0, 2**62), 1)},
        "analysis": {"fit_window": Key(_window, "auto"), "early_window": Key(number_pair(), OMIT),
                     "window_shifts": Key(list_of(number(0, lo_open=True), "factors > 0"), [0.5, 0.71, 1.0, 1.41, 2.0]),
                     "threshold": Key(number(-1, 1, hi_open=True), 0.5),
                     "snapshots": Key(integer(1), 4), "every": Key(integer(1), 1), "figures": Key(boolean(), True)},
        "check": {"enabled": Key(boolean(), True), "shape": Key(shape()), "runs": Key(integer(2), 4),
                  "steps": Key(integer(1), OMIT),
                  "method": Key(one_of(*ELECTRON_METHODS), ELECTRON_METHODS[0]), "method_settings": Key(table(), {}),
                  "model": Key(lambda v, n: check_table(n, v, SD_MODEL))},
    }


def load_config(name_or_path, overrides=(), *, size: int | None = None, runs: int | None = None,
                model=None) -> dict:
    """A checked study config from a shipped name or a TOML path, with --set overrides, --size,
    --runs and --model applied."""
    shipped = studies()
    path = shipped.get(str(name_or_path))
    if path is None:
        path = Path(name_or_path)
        if path.suffix != ".toml":
            raise ValueError(f"unknown study {name_or_path!r}; shipped: {', '.join(sorted(shipped))} "
                             "(or give a .toml config)")
    raw = read_config(path, overrides)
    raw.setdefault("lattice", {})
    raw.setdefault("ensemble", {})
    if size is not None:
        raw["lattice"]["shape"] = [integer(2)(size, "--size")] * 2
    if runs is not None:
        raw["ensemble"]["runs"] = integer(1)(runs, "--runs")
    if model is not None:
        raw["model"] = str(model)
    schema = _schema()
    check_sections(f"the study config {path.name}", raw, schema)
    tables = {k: v for k, v in schema.items() if isinstance(v, dict)}
    cfg = check_table("", {k: v for k, v in raw.items() if k not in tables},
                      {k: v for k, v in schema.items() if k not in tables}, where=f"the study config {path.name}")
    for k, keys in tables.items():  # [check] is optional: absent, no check is run
        cfg[k] = check_table(k, raw.get(k, {}), keys) if k in raw or k != "check" else None
    if cfg["check"] is not None and not cfg["check"]["enabled"]:
        cfg["check"] = None  # switched off, e.g. --set check.enabled=false
    if cfg["check"] is not None:  # KPM's settings (moments, ...); ED has none
        c = cfg["check"]
        c["method_settings"] = check_settings("check.method_settings", c["method"], c["method_settings"])
    kind = cfg["lattice"]["kind"]
    if cfg["order"] == "chirality":  # domain walls between the up and down triangles' chiralities
        require_capability(kind, "triangles", "order = 'chirality' (lattice.kind)")
    require_capability(kind, "planar", "a study (lattice.kind)")  # snapshots, cell fields, cluster lengths
    cfg["name"] = path.stem
    cfg["model"] = str(Path(cfg["model"]).resolve()) if "model" in cfg else _shipped_model(cfg["name"])
    if not Path(cfg["model"]).is_file():
        raise FileNotFoundError(f"model file {cfg['model']} does not exist")
    return cfg


def _shipped_model(name: str) -> str:
    path = Path(str(resources.files("spinforce") / "models" / f"{name}.ts"))
    if not path.is_file():
        raise ValueError(f"no shipped model for the study {name!r} ({path} does not exist): pass --model PATH "
                         f"or make one with `spinforce learn --example {name}`")
    return str(path)


# --- runs -----------------------------------------------------------------------------------------
def output_patterns() -> tuple:
    """Everything `spinforce study` writes into its folder (outputs.py)."""
    from .simulate import output_patterns as simulated
    runs = simulated("run*.h5")
    return (with_partial(STATE_FILE, "results.json") + ("report.md", "*.png")
            + under("runs", runs) + under("check/exact", runs) + under("check/ml", runs))


def _run_config(cfg: dict, output: Path, k: int, *, kind=None, shape_=None, steps=None, method=None) -> dict:
    """The `spinforce simulate` config of run k (ML by default; method = (name, model table, settings) for
    ED/KPM)."""
    d = {key: v for key, v in cfg["dynamics"].items()}
    d.update(seed=cfg["ensemble"]["seed"] + k, initial="random")
    if steps is not None:
        d["steps"] = steps
    name, model, settings = method or ("ml", {}, {"path": cfg["model"], "dtype": cfg["dtype"]})
    m = {"name": name, "device": cfg["device"], **settings}
    return {"output": str(output), "lattice": {"kind": kind or cfg["lattice"]["kind"],
                                               "shape": list(shape_ or cfg["lattice"]["shape"])},
            "method": m, "model": dict(model), "dynamics": d}


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(cfg: dict) -> dict:
    """What must not change for existing runs to belong to this study (steps and runs may grow)."""
    d = {k: v for k, v in cfg["dynamics"].items() if k != "steps"}
    return {"lattice": cfg["lattice"], "dynamics": d, "seed": cfg["ensemble"]["seed"], "model": cfg["model"],
            "dtype": cfg["dtype"], "model_sha256": _sha256(cfg["model"]), "check": cfg["check"]}


def run_study(cfg: dict, out, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
              command: str | None = None) -> dict:
    """Run (or continue) the study of a checked config in folder `out`; returns results.json's content."""
    import torch

    from .data import replaceable_output
    if overwrite and resume:
        raise ValueError("give at most one of --resume and --overwrite")
    out = Path(out).resolve()
    prepare_outputs(out, output_patterns(), command="spinforce study", overwrite=overwrite, keep=resume,
                    resumable=True, owned=replaceable_output)
    state_path = out / STATE_FILE
    fingerprint = _fingerprint(cfg)
    state = json.loads(state_path.read_text()) if state_path.exists() else {"fingerprint": fingerprint, "commands": []}
    if state["fingerprint"] != fingerprint:
        raise ValueError(f"{out} holds a study of different settings (lattice, dynamics, seed, model or check); "
                         "use --overwrite to replace it or another --out")
    state["commands"].append(command or "spinforce.study.run_study")
    out.mkdir(parents=True, exist_ok=True)
    _save_state(state_path, state)
    threads = torch.get_num_threads()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    seconds = {}
    try:
        started = time.perf_counter()
        configs = [_run_config(cfg, out / "runs" / f"run{k}.h5", k) for k in range(cfg["ensemble"]["runs"])]
        from .simulate import simulate_runs
        paths = simulate_runs(configs, cores=cfg["threads"], progress=progress, desc="ML-LLG runs")
        seconds["runs"] = time.perf_counter() - started
        check = None
        if cfg["check"] is not None:
            started = time.perf_counter()
            check = _run_check(cfg, out, progress, dict(zip(map(_same_run, configs), paths)))
            seconds["check"] = time.perf_counter() - started
        started = time.perf_counter()
        results = analyze_study(cfg, paths, out, progress=progress, check=check)
        seconds["analysis"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    results["commands"] = state["commands"]
    results["seconds_this_call"] = seconds
    _write_json(out / "results.json", results)
    (out / "report.md").write_text(report_text(results))
    return results


def _save_state(path: Path, state: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(state, indent=2))


def _same_run(run_config: dict) -> tuple:
    """Two run configs with equal keys are the same run, whatever their output paths."""
    from .simulate import run_fingerprint
    return run_fingerprint(run_config), run_config["dynamics"]["steps"]


def _run_check(cfg: dict, out: Path, progress: bool, done: dict) -> dict:
    """The check's exact and ML ensembles; `done` maps the study's own runs (_same_run) to their
    files: an ML check run that is one of them (check.shape the study's lattice) is not run twice."""
    c = cfg["check"]
    steps = c.get("steps", cfg["dynamics"]["steps"])
    exact = (c["method"], c["model"], c["method_settings"])
    ed = [_run_config(cfg, out / "check" / "exact" / f"run{k}.h5", k, shape_=c["shape"], steps=steps, method=exact)
          for k in range(c["runs"])]
    if c["method"] == "ed":
        for rc in ed:
            rc["method"]["device"] = "cpu"  # ED on the small check lattice
    ml = [_run_config(cfg, out / "check" / "ml" / f"run{k}.h5", k, shape_=c["shape"], steps=steps)
          for k in range(c["runs"])]
    todo = [rc for rc in ml if _same_run(rc) not in done]
    from .simulate import simulate_runs
    simulate_runs(todo, cores=cfg["threads"], progress=progress, desc="check: ML-LLG runs")
    return {"exact": simulate_runs(ed, cores=cfg["threads"], progress=progress,
                                   desc=f"check: {c['method'].upper()}-LLG runs"),
            "ml": [done.get(_same_run(rc), Path(rc["output"])) for rc in ml]}


# --- analysis ------------------------------------------------------------------------------------
def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_plain(data), indent=2))


def _common_frames(paths: list) -> tuple[list, np.ndarray]:
    """(frame indices per run, times) of the trajectory frames every run has reached."""
    from .analysis.run import frame_times
    from .data import open_h5
    lists, times = [], []
    for p in paths:
        with open_h5(p) as f:
            n = int(f["energy"].shape[0])
            step, time_ = f["step"][:n], f["time"][:n]
        keep = np.flatnonzero(step >= 0)
        lists.append(keep)
        times.append(frame_times(time_[keep], step[keep]))
    total = min(len(f) for f in lists)
    if total == 0:
        raise ValueError(f"the runs {', '.join(map(str, paths))} hold no frames to analyse")
    times = np.stack([t[:total] for t in times])
    differ = np.flatnonzero(~np.all(np.isclose(times, times[0], rtol=1e-9, atol=0), axis=0))
    if differ.size:
        raise ValueError(f"the runs have different times at frame {differ[0]}: {times[:, differ[0]].tolist()}")
    return [f[:total] for f in lists], times[0]


def _spins(paths, lists, k) -> np.ndarray:
    from .data import read_dataset
    return np.stack([read_dataset(p, frames=[int(f[k])]).spins[0] for p, f in zip(paths, lists)])


def _order_field(spins, lattice, order: str) -> np.ndarray:
    """(R, N) order field: the plaquette chirality, or the bond field b_i minus its run mean."""
    from .analysis import bond_average, plaquette_chirality
    if order == "chirality":
        return plaquette_chirality(spins, lattice)
    b = bond_average(spins, lattice)
    return b - b.mean(axis=1, keepdims=True)


def _picks(times: np.ndarray, count: int) -> list:
    """Indices of `count` frames spread evenly in log t over t > 0 (the last always among them)."""
    positive = np.flatnonzero(times > 0)
    if positive.size == 0:
        return [len(times) - 1]
    targets = np.geomspace(times[positive[0]], times[-1], min(count, positive.size))
    return sorted({int(positive[np.argmin(np.abs(np.log(times[positive] / t)))]) for t in targets})


def _frame_scalar(paths, lists, name: str):
    """(runs, frames) of a per-frame scalar every run records (e.g. the solved mu of a fixed-N
    model), or None when a run lacks it."""
    from .data import open_h5
    values = []
    for p, f in zip(paths, lists):
        with open_h5(p) as h:
            if f"scalars/{name}" not in h:
                return None
            values.append(np.asarray(h[f"scalars/{name}"][:])[f])
    return np.stack(values)


def ensemble_series(paths, lattice, order: str, threshold: float, every: int = 1, progress: bool = True,
                    desc: str = "analyse") -> dict:
    """Per analysed frame: time, L_sf, L_corr (ensemble) with jackknife errors, and per order:
    wall-direction fractions (chirality) or bond-field clusters (bond). Also the pooled cluster
    sizes per frame (bond) under "cluster_sizes"."""
    from tqdm.auto import tqdm

    from .analysis import (bond_average, cluster_statistics, ensemble_lengths, jackknife_stderr, mean_stderr,
                           scalar_chirality, site_clusters, wall_direction_fractions)
    lists, times = _common_frames(paths)
    idx = list(range(0, len(times), every))
    if idx[-1] != len(times) - 1:
        idx.append(len(times) - 1)
    rows, sizes_per_frame = [], []
    for k in tqdm(idx, desc=desc, unit="frame", disable=not progress, dynamic_ncols=True):
        s = _spins(paths, lists, k)
        lengths = ensemble_lengths(_order_field(s, lattice, order), lattice)
        row = {"time": times[k], "L_sf": lengths["L_sf"], "L_sf_err": jackknife_stderr(lengths["L_sf_loo"]),
               "L_corr": lengths["L_corr"], "L_corr_err": jackknife_stderr(lengths["L_corr_loo"]),
               "L_sf_loo": lengths["L_sf_loo"], "L_corr_loo": lengths["L_corr_loo"]}
        if order == "chirality":
            chi = scalar_chirality(s, lattice)
            counts = np.sum([wall_direction_fractions(c, lattice)[1] for c in chi], axis=0)
            row.update(chirality_abs_mean=float(np.abs(chi).mean()), wall_bonds=counts.sum() / len(s),
                       wall_fractions=counts / counts.sum() if counts.sum() else np.full(3, np.nan))
        else:
            b = bond_average(s, lattice)
            per_run = [site_clusters(x > threshold, lattice)[1] for x in b]
            pooled = np.concatenate(per_run)
            stats = cluster_statistics(pooled, lattice.dim)
            loo = [cluster_statistics(np.concatenate(per_run[:j] + per_run[j + 1:]), lattice.dim)["length"]
                   for j in range(len(per_run))] if len(per_run) > 1 else []
            row.update(bond_mean=float(b.mean()), clusters=stats["count"] / len(s),
                       cluster_mean_size=stats["mean_size"], cluster_weighted_size=stats["weighted_mean_size"],
                       L_cluster=stats["length"] if stats["count"] else np.nan,
                       L_cluster_err=jackknife_stderr(loo), L_cluster_loo=np.array(loo))
            sizes_per_frame.append(pooled)
        rows.append(row)
    series = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    series["frames"] = np.array(idx)
    mu = _frame_scalar(paths, lists, "mu")  # a fixed-N model solves for mu at every step
    if mu is not None:
        mu = mu[:, idx]
        series["mu"] = mu.mean(axis=0)
        series["mu_err"] = mean_stderr(mu)
    if order == "bond":
        series["cluster_sizes"] = sizes_per_frame
    return series


def _fit(t, L, L_loo, window, shifts) -> dict | None:
    from .analysis import fit_power_law, jackknife_fit, window_sensitivity
    try:
        fit = fit_power_law(t, L, *window)
    except ValueError as err:
        return {"error": str(err), "window": list(window)}
    return {**fit.to_dict(), "window": list(window), "jackknife_stderr": jackknife_fit(t, L_loo, *window),
            "window_sensitivity": window_sensitivity(t, L, *window, factors=shifts)}


def _size_histogram(sizes) -> dict:
    values, counts = np.unique(np.asarray(sizes, dtype=int), return_counts=True)
    return {"size": values, "count": counts}


def analyze_study(cfg: dict, paths, out=None, *, progress: bool = True, check=None) -> dict:
    """The study's numbers from its run files (and the check runs); PNGs into `out` when given."""
    from .analysis.run import default_fit_window
    from .lattice import Lattice
    a, order = cfg["analysis"], cfg["order"]
    lattice = Lattice(cfg["lattice"]["kind"], cfg["lattice"]["shape"])
    series = ensemble_series(paths, lattice, order, a["threshold"], a["every"], progress, "analyse runs")
    t = series["time"]
    window = default_fit_window(t) if a["fit_window"] == "auto" else tuple(a["fit_window"])
    lengths = ["L_sf", "L_corr"] + (["L_cluster"] if order == "bond" else [])
    fits = {"late": {name: _fit(t, series[name], series[name + "_loo"], window, a["window_shifts"])
                     for name in lengths}}
    if "early_window" in a:
        fits["early"] = {name: _fit(t, series[name], series[name + "_loo"], tuple(a["early_window"]),
                                    a["window_shifts"]) for name in lengths}
    results = {"study": cfg["name"], "title": cfg["title"], "order": order, "config": cfg,
               "model": {"path": cfg["model"], "sha256": _sha256(cfg["model"])},
               "runs": [str(p) for p in paths], "lattice": {"kind": lattice.kind, "shape": list(lattice.shape)},
               "references": REFERENCE_EXPONENTS[order], "fits": fits,
               "series": {k: v for k, v in series.items() if k != "cluster_sizes" and not k.endswith("_loo")}}
    from ._version import __version__
    results["spinforce_version"] = __version__
    picks = _picks(t, a["snapshots"])
    results["snapshot_times"] = [float(t[k]) for k in picks]
    if order == "bond":
        results["cluster_size_distributions"] = [{"time": float(t[k]), **_size_histogram(series["cluster_sizes"][k])}
                                                 for k in picks]
    if check is not None:
        results["check"] = _check_results(cfg, check, progress)
    if out is not None and a["figures"]:
        results["figures"] = _figures(cfg, results, series, fits, lattice, paths, picks, Path(out))
    return results


def _check_results(cfg: dict, check: dict, progress: bool) -> dict:
    """ML vs exact on the check lattice: L(t) (chirality) or the spin C(r) at the last time (bond),
    ensemble means with standard errors over the runs."""
    from .analysis.ensemble import ensemble_observables
    from .lattice import Lattice
    c = cfg["check"]
    lattice = Lattice(cfg["lattice"]["kind"], c["shape"])
    out = {"shape": list(c["shape"]), "runs": c["runs"], "method": c["method"], "model": c["model"]}
    for label, paths in (("exact", check["exact"]), ("ml", check["ml"])):
        if cfg["order"] == "chirality":
            s = ensemble_series(paths, lattice, "chirality", cfg["analysis"]["threshold"], 1, progress,
                                f"analyse check {label}")
            out[label] = {k: s[k] for k in ("time", "L_sf", "L_sf_err", "L_corr", "L_corr_err", "chirality_abs_mean")}
        else:
            corr = ensemble_observables(paths)["correlation"]
            out[label] = {"time": corr["time"], "r": np.asarray(corr["r"]), "C": np.asarray(corr["mean"]),
                          "C_err": np.asarray(corr["stderr"])}
    if cfg["order"] == "chirality":
        n = min(len(out["exact"]["time"]), len(out["ml"]["time"]))
        for name in ("L_sf", "L_corr"):
            d = np.asarray(out["ml"][name][:n]) - np.asarray(out["exact"][name][:n])
            err = np.hypot(out["ml"][name + "_err"][:n], out["exact"][name + "_err"][:n])
            out[f"{name}_max_abs_difference"] = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else np.nan
            out[f"{name}_max_difference_in_errors"] = (float(np.nanmax(np.abs(d) / err))
                                                       if np.isfinite(d / err).any() else np.nan)
    else:
        d = out["ml"]["C"] - out["exact"]["C"]
        err = np.hypot(out["ml"]["C_err"], out["exact"]["C_err"])
        out["C_max_abs_difference"] = float(np.max(np.abs(d)))
        out["C_max_difference_in_errors"] = float(np.max(np.abs(d)[1:] / err[1:])) if len(d) > 1 else np.nan
    return out


def _figures(cfg, results, series, fits, lattice, paths, picks, out: Path) -> list:
    from .analysis import bond_average, plots
    from .analysis.run import _cell_chirality
    from .data import read_dataset
    t = series["time"]
    files = []
    names = {"L_sf": "L from S(q) peak width", "L_corr": "L from C(r) = 1/e", "L_cluster": "L = <s>^(1/2) clusters"}
    lengths = {names[k]: series[k] for k in fits["late"]}
    errors = {names[k]: series[k + "_err"] for k in fits["late"]}
    fit_lines = {names[k]: [f for f in (fits.get(w, {}).get(k) for w in ("early", "late")) if f and "exponent" in f]
                 for k in fits["late"]}
    files.append(plots.plot_length_scales(t, lengths, fit_lines, out / "length_scales.png", errors=errors,
                                          title=f"{cfg['name']}: L(t) of {len(paths)} runs on "
                                                f"{'x'.join(map(str, lattice.shape))}"))
    lists, _ = _common_frames(paths[:1])
    for k in picks:
        frame = int(series["frames"][k])
        spins = read_dataset(paths[0], frames=[int(lists[0][frame])]).spins[0]
        name = f"snapshot_t{t[k]:g}.png"
        if cfg["order"] == "chirality":
            lo, hi = plots.chirality_limits()
            files.append(plots.plot_snapshot(lattice, out / name, cell_values=_cell_chirality(spins, lattice),
                                             vmin=lo, vmax=hi, title=f"scalar chirality, run 0, t = {t[k]:g}",
                                             label="χ"))
        else:
            files.append(plots.plot_snapshot(lattice, out / name, site_values=bond_average(spins, lattice), vmin=-1,
                                             vmax=1, cmap="coolwarm", title=f"bond field b_i, run 0, t = {t[k]:g}",
                                             label="b_i"))
    if cfg["order"] == "chirality":
        from .analysis import LATTICE_DIRECTIONS
        files.append(plots.plot_fractions(t, series["wall_fractions"], LATTICE_DIRECTIONS, out / "wall_directions.png",
                                          title="domain-wall length along the lattice directions"))
    else:
        stats = [{"count": series["clusters"][k], "mean_size": series["cluster_mean_size"][k],
                  "weighted_mean_size": series["cluster_weighted_size"][k]} for k in range(len(t))]
        files.append(plots.plot_cluster_statistics(t, stats, [(t[k], series["cluster_sizes"][k]) for k in picks],
                                                   out / "clusters.png", cfg["analysis"]["threshold"],
                                                   what="b_i"))
    if "mu" in series:  # fixed electron count: the chemical potential the model solves for
        files.append(plots.plot_bands({"mu (mean of the runs)": (t, series["mu"], series["mu_err"])},
                                      out / "chemical_potential.png", xlabel="t", ylabel="mu",
                                      title="chemical potential at the fixed electron count"))
    check = results.get("check")
    if check is not None:
        files.append(_check_figure(cfg, check, out / "check.png"))
    return [str(Path(f).name) for f in files]


def _check_figure(cfg, check, path):
    from .analysis import plots
    label = {"exact": f"{check['method'].upper()}-LLG", "ml": "ML-LLG"}
    if cfg["order"] == "chirality":
        curves = {f"{label[w]} {n}": (check[w]["time"], check[w][n], check[w][n + "_err"])
                  for w in ("exact", "ml") for n in ("L_sf", "L_corr")}
        return plots.plot_bands(curves, path, xlabel="time t", ylabel="L (lattice constants)", log=True,
                                title=f"check on {'x'.join(map(str, check['shape']))}: {check['runs']} runs each")
    curves = {label[w]: (check[w]["r"], check[w]["C"], check[w]["C_err"]) for w in ("exact", "ml")}
    return plots.plot_bands(curves, path, xlabel="distance r", ylabel="C(r) = <S_i · S_j>",
                            title=f"spin correlation at t = {check['ml']['time']:g}, "
                                  f"{'x'.join(map(str, check['shape']))}, {check['runs']} runs each")


# --- report -----------------------------------------------------------------------------------------
def _num(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}g}"


def report_text(results: dict) -> str:
    figures = set(results.get("figures", []))

    def image(name: str, alt: str) -> str:  # only figures that were drawn (analysis.figures)
        return f"![{alt}]({name})" if name in figures else ""
    cfg = results["config"]
    d, e = cfg["dynamics"], cfg["ensemble"]
    lat = results["lattice"]
    lines = [f"# {results['title']}", "",
             f"{e['runs']} ML-LLG thermal quenches from random spins on the {lat['kind']} lattice "
             f"{'x'.join(map(str, lat['shape']))}: dt = {d['dt']:g}, alpha = {d['alpha']:g}, spin temperature "
             f"kT = {d['kT']:g}, {d['steps']} steps (t = {d['steps'] * d['dt']:g}), noise seeds "
             f"{e['seed']} .. {e['seed'] + e['runs'] - 1}. Model {results['model']['path']} "
             f"(sha256 {results['model']['sha256'][:12]}).", "",
             "Lengths in lattice constants: L_sf = 2 pi / <|q|> over the peak of the ensemble-averaged structure "
             f"factor of the {'plaquette chirality' if results['order'] == 'chirality' else 'bond field b_i - <b>'}; "
             "L_corr = where the ensemble-averaged C(r)/C(0) of the same field falls to 1/e"
             + ("; L_cluster = sqrt(<s>), <s> the mean size of the connected regions with b_i > "
                f"{cfg['analysis']['threshold']:g}" if results["order"] == "bond" else "") + ".", "",
             "| fit | length | window | exponent n | fit stderr | jackknife stderr (runs) | window-shift spread | "
             + " | ".join(f"(n - {k}) / stderr" for k in results["references"]) + " |",
             "|---" * (7 + len(results["references"])) + "|"]
    for which, group in results["fits"].items():
        for name, f in group.items():
            if "exponent" not in f:
                lines.append(f"| {which} | {name} | {f['window']} | – ({f['error']}) |" + " |" * (5 + len(
                    results["references"])))
                continue
            se = f["stderr"] if not np.isfinite(f["jackknife_stderr"] or np.nan) else max(f["stderr"],
                                                                                           f["jackknife_stderr"])
            refs = " | ".join(_num((f["exponent"] - v) / se if se > 0 else np.nan, 2)
                              for v in results["references"].values())
            lines.append(f"| {which} | {name} | {_num(f['t_min'])} .. {_num(f['t_max'])} ({f['num_points']} frames) | "
                         f"{f['exponent']:.3f} | {_num(f['stderr'], 2)} | {_num(f['jackknife_stderr'], 2)} | "
                         f"{_num(f['window_sensitivity']['spread'], 2)} | {refs} |")
    refs = ", ".join(f"{k} n = {v:.3g}" for k, v in results["references"].items())
    lines += ["", f"References: {refs}. The last columns use the larger of the two standard errors. The window-shift "
              "spread is max - min of n over the window moved along log t by the factors "
              f"{cfg['analysis']['window_shifts']}.", "", image("length_scales.png", "L(t)"), ""]
    s = results["series"]
    last = -1
    lines += [f"At the last time t = {_num(s['time'][last])}: L_sf = {_num(s['L_sf'][last])} ± "
              f"{_num(s['L_sf_err'][last], 2)}, L_corr = {_num(s['L_corr'][last])} ± {_num(s['L_corr_err'][last], 2)}"
              + (f", L_cluster = {_num(s['L_cluster'][last])} ± {_num(s['L_cluster_err'][last], 2)}"
                 if results["order"] == "bond" else "") + " (jackknife errors over the runs).", ""]
    if "mu" in s:
        k = _picks(np.asarray(s["time"], dtype=float), 6)
        lines += ["Fixed electron count: the model solves sum_i n_i(mu) = N_e at every step. The chemical potential "
                  "(mean over the runs ± standard error): " + ", ".join(
                      f"{_num(s['mu'][j], 4)} ± {_num(s['mu_err'][j], 1)} (t = {_num(s['time'][j])})" for j in k) + ".",
                  "", image("chemical_potential.png", "mu(t)"), ""]
    if results["order"] == "chirality":
        lines += ["Domain walls (bonds between up and down triangles of opposite chirality), fraction of wall length "
                  "along a1, a2, a2 - a1:", "", "| t | walls per run (bonds) | a1 | a2 | a2 - a1 |",
                  "|---|---|---|---|---|"]
        for k in _picks(np.asarray(s["time"], dtype=float), 6):
            f = s["wall_fractions"][k]
            lines.append(f"| {_num(s['time'][k])} | {_num(s['wall_bonds'][k])} | "
                         + " | ".join(_num(x, 3) for x in f) + " |")
        lines += ["", image("wall_directions.png", "wall directions"), ""]
    else:
        lines += ["Cluster sizes (b_i above the threshold, pooled over the runs):", "",
                  "| t | clusters | mean size | largest |", "|---|---|---|---|"]
        for h in results["cluster_size_distributions"]:
            size, count = np.asarray(h["size"]), np.asarray(h["count"])
            lines.append(f"| {_num(h['time'])} | {int(count.sum())} | "
                         f"{_num(float((size * count).sum() / count.sum()) if count.sum() else np.nan)} | "
                         f"{int(size.max()) if size.size else 0} |")
        lines += ["", image("clusters.png", "clusters"), ""]
    shots = " ".join(image(f"snapshot_t{t:g}.png", f"t = {t:g}") for t in results["snapshot_times"])
    lines += ["Snapshots of run 0: " + shots, ""] if shots.strip() else []
    check = results.get("check")
    if check is not None:
        lines += [f"## Check: {check['method'].upper()}-LLG against ML-LLG on "
                  f"{'x'.join(map(str, check['shape']))}, {check['runs']} runs each", ""]
        if results["order"] == "chirality":
            lines += [f"Largest |L_ML - L_exact| over the times: L_sf {_num(check['L_sf_max_abs_difference'])} "
                      f"({_num(check['L_sf_max_difference_in_errors'], 2)} combined standard errors), L_corr "
                      f"{_num(check['L_corr_max_abs_difference'])} "
                      f"({_num(check['L_corr_max_difference_in_errors'], 2)} combined standard errors)."]
        else:
            lines += [f"Spin correlation C(r) at t = {_num(check['ml']['time'])}: largest |C_ML - C_exact| = "
                      f"{_num(check['C_max_abs_difference'])} ({_num(check['C_max_difference_in_errors'], 2)} combined "
                      "standard errors, r > 0)."]
        lines += ["", image("check.png", "check"), ""]
    secs = results.get("seconds_this_call", {})
    lines += ["Commands:", "", "```"] + results.get("commands", []) + ["```", "",
              f"Wall time of this call: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items())
              + f". spinforce {results['spinforce_version']}. Every number is in results.json.", ""]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="a shipped study (see --list) or a study config (TOML)")
    p.add_argument("--list", action="store_true", help="list the shipped studies and exit")
    p.add_argument("--out", help="output folder (default: the study's name)")
    p.add_argument("--size", type=int, help="lattice side L (L x L sites)")
    p.add_argument("--runs", type=int, help="number of runs in the ensemble")
    p.add_argument("--model", help="exported model or committee, TorchScript or .pt2 (default: the shipped model of the study)")
    add_set_argument(p, 'dynamics.steps=4000 or --set device="cuda"', metavar="KEY=VALUE")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true", help="replace what an earlier study wrote into the folder")
    group.add_argument("--resume", action="store_true", help="continue an interrupted study (finished runs are kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    if args.list:
        print("\n".join(shipped_config_lines(studies())))
        return 0
    if args.name is None:
        raise ValueError("give the name of a study (see --list) or a study config file")
    cfg = load_config(args.name, args.overrides, size=args.size, runs=args.runs, model=args.model)
    out = Path(args.out) if args.out else Path(cfg["name"])
    results = run_study(cfg, out, overwrite=args.overwrite, resume=args.resume, progress=not args.no_progress,
                        command=_command(args))
    for name, f in results["fits"]["late"].items():
        if "exponent" in f:
            print(f"{name}: n = {f['exponent']:.3f} ± {f['stderr']:.3f} over t = {f['t_min']:g} .. {f['t_max']:g}")
    print(f"wrote {out / 'report.md'} and {out / 'results.json'}")
    return 0


def _command(args) -> str:
    """The command line of a call made through spinforce.cli.main (tests, scripts)."""
    import shlex
    parts = ["spinforce", "study", args.name]
    for flag in ("out", "size", "runs", "model"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", str(getattr(args, flag))]
    parts += [x for o in args.overrides for x in ("--set", o)]
    parts += [f"--{f}" for f in ("overwrite", "resume", "no-progress") if getattr(args, f.replace("-", "_"))]
    return " ".join(shlex.quote(p) for p in parts)
