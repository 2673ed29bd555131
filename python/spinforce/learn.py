"""Active learning of a force field on the states its own dynamics visits: `spinforce learn`.

    spinforce learn CONFIG.toml [--out DIR] [--set SECTION.KEY=VALUE ...] [--overwrite]
    spinforce learn --example de_square --out DIR        (configs shipped with spinforce)
    spinforce learn --list-examples
    torchrun --nproc_per_node=P -m spinforce learn CONFIG.toml    (P processes train the committees)

Stages (each resumable; DIR/learn_state.json records the finished ones, so running the same
command again continues where it stopped; with a larger loop.rounds it adds rounds to a finished
run and redoes the check and the report):

    data       ED-LLG (or KPM-LLG) quenches: several noise seeds, spin temperatures and starts,
               merged with sampled states, labelled at a fixed mu that gives the wanted filling
               (found from the late frames, spinforce.mu_for_filling, unless model.mu is given)
    test       held-out quench trajectories, labelled at the same mu, never trained on
    locality   the locality floor on the test states (spinforce.locality), optional
    round k:   train   a committee of force fields on all data so far
               evaluate  torque error and committee uncertainty on the held-out trajectories
               explore   ML-LLG quenches with the committee, recording its uncertainty per frame
                         (and those of each explore.extra entry: other lattices or lengths)
               label     the frames of largest uncertainty, labelled exactly (ED or KPM) at the
                         fixed mu, added as a new dataset (one trajectory id per ML run; one
                         dataset per explore.extra entry, with its own number of frames)
    check      the real test: an ensemble of ML-LLG quenches with the last committee, run with the
               settings of the held-out quenches (other noise seeds), against the exact ensemble:
               bond average and |chirality| per saved time, C(r) at the last time, within two
               standard errors of the difference of the ensemble means (spinforce.analysis.ensemble)
    report     DIR/model.ts (the last committee), DIR/rounds.csv and rounds.png (held-out error
               and uncertainty per round), DIR/report.md

docs/ml.md ("Active learning") describes the config; the shipped examples are in
spinforce/learn_configs/.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .config import (OMIT, Key, check_sections, check_table, integer, list_of, multiple_of, number, number_or, one_of,
                     shape, shipped_config_lines, shipped_configs, table)
from .outputs import atomic_write, with_partial
from .run_setup import (ELECTRON_METHODS, INITIAL_STATES, SD_MODEL, add_set_argument, build_provider,
                        check_settings, config_source, read_config)

HELP = "active learning: committee -> ML-LLG quenches -> label the most uncertain frames -> retrain (resumable)"

__all__ = ["HELP", "examples", "load_config", "learn", "held_out_errors", "add_arguments", "run"]

STATE_FILE = "learn_state.json"
_HOPPINGS = ("t", "J", "kT", "t2", "t3")  # the s-d model's keys besides mu and filling


def output_patterns() -> tuple:
    """Everything `spinforce learn` writes into its folder (outputs.py), stage by stage."""
    from .generate import output_patterns as generated
    from .locality import OUTPUTS as LOCALITY
    from .ml.committee import OUTPUTS as COMMITTEE
    from .outputs import under
    from .simulate import output_patterns as simulated
    data = (generated("initial.h5", ensemble=True) + generated("states.h5", ensemble=True)
            + generated("test.h5", ensemble=True) + generated("round*.h5"))
    rounds = (with_partial("model.ts") + under("committee", COMMITTEE)
              + under("explore", simulated("run*.h5") + simulated("extra*_run*.h5")))
    return (with_partial(STATE_FILE) + ("model.ts", "rounds.csv", "rounds.png", "report.md") + under("data", data) + under("locality", LOCALITY) + under("rounds/round*", rounds)
            + under("check", _check_outputs()))


def _check_outputs() -> tuple:
    """What the check stage writes into DIR/check."""
    from .simulate import output_patterns as simulated
    return simulated("run*.h5") + ("ensembles.json", "ensembles.png")


# --- configs ----------------------------------------------------------------------------------
def examples() -> dict:
    """Active-learning configs shipped with spinforce: name -> path."""
    return shipped_configs("learn_configs")


def _schema() -> dict:
    """The config schema (config.py): every key of every section with its check and default."""
    from .lattice import LATTICE_KINDS
    methods = Key(one_of(*ELECTRON_METHODS), ELECTRON_METHODS[0])
    quench = {"shape": Key(shape()), "method": methods, "method_settings": Key(table(), {}),
              "dt": Key(number(0, lo_open=True), 0.05), "alpha": Key(number(0), 0.1), "steps": Key(integer(1)),
              "save_every": Key(integer(1)), "kT": Key(list_of(number(0), "spin temperatures (numbers >= 0)"), [0.001]),
              "initial": Key(list_of(one_of(*INITIAL_STATES), "initial states"), ["random"])}
    seeds = list_of(integer(0, 2**63 - 1), "noise seeds (integers >= 0)")
    return {
        # the s-d model of a run, on a lattice kind (shapes are per stage), at a given filling
        "model": {"kind": Key(one_of(*LATTICE_KINDS)), **{k: SD_MODEL[k] for k in _HOPPINGS},
                  "filling": Key(SD_MODEL["filling"].check), "mu": Key(number_or("auto"), "auto"),
                  "mus": Key(list_of(number(), "chemical potentials (numbers)", empty=True), [])},
        "data": {**quench, "seeds": Key(seeds, [1]), "random": Key(integer(0), 0), "perturbed": Key(integer(0), 0),
                 "perturbation": Key(number(0, lo_open=True), 0.2), "mu_from_time": Key(number(0), 0.0)},
        "test": {**quench, "seeds": Key(seeds, [101])},
        "train": {"members": Key(integer(2), 3), "validation_fraction": Key(number(0, 1, hi_open=True), 0.2),
                  "descriptor": Key(table()), "network": Key(table(), {}), "training": Key(table(), {})},
        "explore": {"shape": Key(shape()), "runs": Key(integer(1), 2), "dt": Key(number(0, lo_open=True), 0.05),
                    "alpha": Key(number(0), 0.1), "kT": quench["kT"], "steps": Key(integer(1)),
                    "save_every": Key(integer(1)), "initial": quench["initial"], "seed": Key(integer(0), 1000),
                    "extra": Key(list_of(table(), "tables of explore settings", empty=True), [])},
        "label": {"frames": Key(integer(1), 8), "windows": Key(integer(1), 1), "method": methods,
                  "method_settings": Key(table(), {})},
        "loop": {"rounds": Key(integer(1), 2), "threads": Key(integer(0), 1)},
        "check": {"runs": Key(integer(0), 0), "seed": Key(integer(0), 5000), "sigmas": Key(number(0, lo_open=True), 2.0)},
        "locality": {"cutoffs": Key(list_of(number(0), "cutoffs (numbers >= 0)", empty=True), []),
                     "states": Key(integer(0), 4), "sites": Key(integer(1), 2), "replacements": Key(integer(1), 2),
                     "seed": Key(integer(0), 0)},
    }


def check_config(raw: dict) -> dict:
    """A learn config with defaults filled in and checked (ValueError names the bad key)."""
    from .ml.training import SCHEMA as TRAINING, check_descriptor
    schema = _schema()
    check_sections("the learn config", raw, schema)
    cfg = {name: check_table(name, raw.get(name, {}), keys) for name, keys in schema.items()}
    for section in ("data", "test", "explore"):
        multiple_of(cfg[section], "steps", "save_every", section)
    cfg["explore"]["extra"] = [_check_extra(e, k) for k, e in enumerate(cfg["explore"]["extra"])]
    for section in ("data", "test", "label"):
        s = cfg[section]
        s["method_settings"] = check_settings(f"{section}.method_settings", s["method"], s["method_settings"])
    if cfg["model"]["mus"]:
        _check_fixed_n(cfg)
    t = cfg["train"]
    t["descriptor"] = check_descriptor(t["descriptor"], "train.descriptor", default_kind=False)
    # train.network and train.training hold keys of the training config's [model] and [training];
    # absent keys are left to the training's defaults.
    for key, section in (("network", "model"), ("training", "training")):
        t[key] = check_table(f"train.{key}", t[key], {k: Key(v.check, OMIT) for k, v in TRAINING[section].items()})
    return cfg


# An explore.extra entry: more ML-LLG quenches on another lattice (or of another length) in every
# round, with the rest of [explore]; `frames` of them, the most uncertain, are labelled on that
# lattice (e.g. 24x24 quenches to t = 50 next to 12x12 ones to t = 300: quench states of a lattice
# larger than exact quenches can afford).
def _check_extra(entry: dict, k: int) -> dict:
    # the checks of [explore]'s keys; one run by default, and the seed and frame count always given
    explore = _schema()["explore"]
    keys = {**{key: Key(explore[key].check) for key in ("shape", "steps", "save_every", "seed")},
            "runs": Key(explore["runs"].check, 1), "frames": Key(integer(1))}
    name = f"explore.extra[{k}]"
    e = check_table(name, entry, keys, where=name)
    multiple_of(e, "steps", "save_every", name)
    return e


def explore_sets(cfg: dict) -> list:
    """The explore quenches of a round: [explore] (labelled: label.frames of them) and each
    explore.extra entry with the rest of [explore]. Each set has its file names: runs
    explore/{prefix}run{k}.h5, labels data/round{r}{suffix}.h5."""
    e = {k: v for k, v in cfg["explore"].items() if k != "extra"}
    sets = [{**e, "frames": cfg["label"]["frames"], "prefix": "", "suffix": ""}]
    return sets + [{**e, **x, "prefix": f"extra{k}_", "suffix": f"_extra{k}"}
                   for k, x in enumerate(cfg["explore"]["extra"])]


def fixed_n(cfg: dict) -> bool:
    """True when the config learns a model with mu as input, run at a fixed electron count."""
    return bool(cfg["model"]["mus"])


def _check_fixed_n(cfg: dict) -> None:
    """model.mus: labels at several mu by ED, a mu-input committee run at model.filling."""
    from .ml.sample_ed import check_mus
    m = cfg["model"]
    m["mus"] = check_mus(m["mus"])
    if m["mu"] != "auto":
        raise ValueError(f"model.mu = {m['mu']:g} and model.mus: with labels at several mu (model.mus) the model runs "
                         "at the fixed electron count of model.filling; leave model.mu out")
    for section in ("data", "label"):
        if cfg[section]["method"] != "ed":
            raise ValueError(f"{section}.method = {cfg[section]['method']!r}: labels at several mu (model.mus) are "
                             "computed by ED only (one diagonalisation serves every mu); use \"ed\"")
    if cfg["train"]["network"].get("mu_input") is False:
        raise ValueError("train.network.mu_input = false and model.mus: labels at several mu train a model with mu "
                         "as input")


def load_config(path, overrides=()) -> dict:
    return check_config(read_config(path, overrides))


# --- stages -------------------------------------------------------------------------------------
def _generate_config(cfg: dict, section: str, output: Path, mu) -> dict:
    """A `spinforce generate` config with [ensemble] and [labels] for data or test quenches."""
    from .generate import check_config as check_generate
    s, m = cfg[section], cfg["model"]
    model = _hoppings(m)
    # With mu given, the exact dynamics runs at that fixed mu, as the ML dynamics will, and its
    # fields are the labels. With mu = "auto" it runs at the wanted filling and its frames are
    # relabelled at the mu that gives the late frames that filling. With mu None (a fixed-N
    # config) it runs at the wanted filling and its fields are the labels.
    if mu is None or mu == "auto":
        model["filling"] = m["filling"]
    else:
        model["mu"] = float(mu)
    first = {"initial": s["initial"][0], "kT": s["kT"][0], "seed": s["seeds"][0]}
    raw = {"output": str(output), "lattice": {"kind": m["kind"], "shape": list(s["shape"])}, "model": model,
           "method": {"name": s["method"], **s["method_settings"]},
           "dynamics": {"dt": s["dt"], "alpha": s["alpha"], "steps": s["steps"], "save_every": s["save_every"],
                        **first},
           "samples": {"random": s.get("random", 0), "perturbed": s.get("perturbed", 0),
                       "perturbation": s.get("perturbation", 0.2)},
           "ensemble": {"seeds": s["seeds"], "kT": s["kT"], "initial": s["initial"]}}
    if mu == "auto":
        raw["labels"] = {"mu": mu, "mu_from_time": s.get("mu_from_time", 0.0)}
    return check_generate(raw)


def _hoppings(m: dict) -> dict:
    """The s-d model of [model] without its electron count (mu or filling)."""
    return {k: m[k] for k in _HOPPINGS}


def _exact_provider(cfg: dict, shape, method: str, settings: dict, mu: float):
    m = cfg["model"]
    built = build_provider({"lattice": {"kind": m["kind"], "shape": list(shape)},
                            "model": {**_hoppings(m), "mu": float(mu)}, "method": {"name": method, **settings}})
    return built.model, built.provider


def _training_config(cfg: dict, paths: list, test_path: Path, out: Path) -> dict:
    t = cfg["train"]
    training = {"threads": cfg["loop"]["threads"], **t["training"]}
    data = {"paths": [str(p) for p in paths], "validation_fraction": t["validation_fraction"]}
    model = dict(t["network"] or {})
    if fixed_n(cfg):
        # The held-out states are labelled at the fixed filling, not at a mu: the exported
        # committee (solving for mu) is measured on them in the evaluate stage.
        model["mu_input"] = True
    else:
        data["test_paths"] = [str(test_path)]
    return {"data": data, "descriptor": dict(t["descriptor"]), "model": model, "training": training,
            "output": {"dir": str(out), "plots": False}}


def held_out_errors(model_path, dataset_path, *, phases: int = 3) -> dict:
    """Torque error of an exported model (single or committee) on a dataset, relative to the
    RMS exact torque: overall and per time phase (early / middle / late thirds of the trajectory
    times), with the committee's mean per-site uncertainty."""
    from .data import read_dataset
    from .ml.provider import MLForceField
    ds = read_dataset(dataset_path)
    lattice = ds.lattice()
    ml = MLForceField(model_path, lattice)
    err_sq, ref_sq, unc = np.zeros(ds.num_frames), np.zeros(ds.num_frames), np.full(ds.num_frames, np.nan)
    for k in range(ds.num_frames):
        r = ml.compute(ds.spins[k])
        t_ml, t_ex = np.cross(ds.spins[k], r.fields), np.cross(ds.spins[k], ds.fields[k])
        err_sq[k], ref_sq[k] = ((t_ml - t_ex) ** 2).sum(), (t_ex ** 2).sum()
        if r.uncertainty is not None:
            unc[k] = float(np.mean(r.uncertainty))
    n = ds.num_sites

    def summary(sel) -> dict:
        if not sel.any():
            return {"frames": 0}
        return {"frames": int(sel.sum()), "relative_torque_error": float(np.sqrt(err_sq[sel].sum() / ref_sq[sel].sum())),
                "torque_rmse": float(np.sqrt(err_sq[sel].sum() / (sel.sum() * n))),
                "torque_rms": float(np.sqrt(ref_sq[sel].sum() / (sel.sum() * n))),
                "mean_uncertainty": float(np.nanmean(unc[sel])) if np.isfinite(unc[sel]).any() else None}

    out = {"all": summary(np.ones(ds.num_frames, bool))}
    traj = ds.step >= 0
    if traj.any():
        t_max = float(ds.time[traj].max())
        edges = np.linspace(0.0, t_max, phases + 1)
        names = ["early", "middle", "late"] if phases == 3 else [f"phase{k}" for k in range(phases)]
        for k, name in enumerate(names):
            sel = traj & (ds.time >= edges[k]) & ((ds.time < edges[k + 1]) if k < phases - 1 else True)
            out[name] = {**summary(sel), "time": [float(edges[k]), float(edges[k + 1])]}
    return out


def model_size(model_pt) -> dict:
    """Descriptor features and network parameters of one committee member."""
    from .ml.model import load_model
    model = load_model(model_pt)
    return {"features": int(model.descriptor.num_features),
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def microseconds_per_site(model_path, kind: str, shape, repeats: int = 3) -> float:
    """Median wall time of one committee force evaluation per site (timing: noisy on a shared machine)."""
    from .lattice import Lattice
    from .ml.provider import MLForceField
    lattice = Lattice(kind, list(shape))
    ml = MLForceField(model_path, lattice)
    spins = lattice.random_spins(0)
    ml.compute(spins)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ml.compute(spins)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) / lattice.num_sites * 1e6)


def _simulate_config(cfg: dict, e: dict, model_path: Path, output: Path, k: int, kT=None, initial=None,
                     seed=None) -> dict:
    """ML-LLG run k with the quench settings `e` (an explore set: its own seeds; [test]: those given)."""
    return {"output": str(output), "lattice": {"kind": cfg["model"]["kind"], "shape": list(e["shape"])},
            "method": {"name": "ml", "path": str(model_path)}, "model": {},
            "dynamics": {"dt": e["dt"], "alpha": e["alpha"], "kT": e["kT"][k % len(e["kT"])] if kT is None else kT,
                         "steps": e["steps"], "save_every": e["save_every"],
                         "seed": e["seed"] + k if seed is None else seed,
                         "initial": e["initial"][k % len(e["initial"])] if initial is None else initial}}


def _windows_text(label: dict, form: str) -> str:
    """How label.windows shares the frames, put in `form` ("" for one window)."""
    return form.format(f"a share of each of {label['windows']} time windows") if label["windows"] > 1 else ""


def _select_frames(paths: list, count: int, steps: int, windows: int = 1) -> list:
    """(run, frame) of the `count` frames with the largest maximum site uncertainty; ties by order.
    With `windows` > 1 the run time (`steps`) is cut into that many equal windows and each gets an
    equal share (the remainder to the latest), so that late stages, where the committee is surer
    than early in the quench, are labelled too; a window short of frames leaves its share to the
    most uncertain frames of the others."""
    from .data import read_dataset
    candidates = []
    for run, p in enumerate(paths):
        ds = read_dataset(p)
        u = ds.scalars.get("uncertainty_max")
        if u is None:
            raise ValueError(f"{p} records no committee uncertainty; the explore model must be a committee")
        candidates += [(-float(u[j]), run, j, (int(ds.step[j]) - 1) * windows // steps)
                       for j in range(ds.num_frames) if ds.step[j] > 0]
    candidates.sort()
    shares = [count // windows + (w >= windows - count % windows) for w in range(windows)]
    chosen, rest = [], []
    for c in candidates:
        if shares[c[3]] > 0:
            shares[c[3]] -= 1
            chosen.append(c)
        else:
            rest.append(c)
    chosen += rest[:count - len(chosen)]
    return sorted((run, j) for _, run, j, _ in chosen)


# --- the loop -----------------------------------------------------------------------------------
class _State:
    """The finished stages and their results, in DIR/learn_state.json (written atomically). On
    several processes rank 0 reads and writes the file; every rank holds the same state."""

    def __init__(self, path: Path, fingerprint: str, ranks=None):
        from .distributed import Ranks
        self.path, self.fingerprint, self.ranks = path, fingerprint, ranks or Ranks()
        self.more_rounds = False  # set when this call adds rounds to a finished run

        def read():
            if not path.exists():
                return [], {}, {}, False
            data = json.loads(path.read_text())
            done, results = data["done"], data["results"]
            old, new = _without_rounds(data["config"]), _without_rounds(fingerprint)
            if old[0] != new[0] or new[1] < old[1]:
                raise ValueError(f"{path.parent} holds an active-learning run of a different config"
                                 + (f" (loop.rounds = {old[1]}: rounds can be added, not removed)" if old[0] == new[0]
                                    else "") + "; use --overwrite to replace it or another --out")
            if new[1] > old[1]:
                # More rounds continue a run: its rounds stand; the check and the report are redone
                # with the last committee.
                done = [name for name in done if name not in ("check", "report")]
                results = {k: v for k, v in results.items() if k in done}
            seconds = {k: v for k, v in data.get("seconds", {}).items() if k in done}
            return done, results, seconds, new[1] > old[1]
        self.done, self.results, self.seconds, self.more_rounds = self.ranks.on_rank0(read)

    def finish(self, stage: str, result, seconds: float) -> None:
        self.done.append(stage)
        self.results[stage] = result
        # Wall time of the call that finished the stage (a resumed stage counts only its last part).
        self.seconds[stage] = seconds
        self.save()

    def save(self) -> None:
        if self.ranks.rank != 0:
            return
        with atomic_write(self.path) as tmp:
            tmp.write_text(json.dumps({"config": self.fingerprint, "done": self.done, "results": self.results,
                                       "seconds": self.seconds}, indent=2))


# Keys added after run folders existed, with the value that means "as before": at that value they
# are left out of the fingerprint, so that those runs continue.
_LATER_KEYS = {("explore", "extra"): [], ("label", "windows"): 1}


def _fingerprint(cfg: dict) -> str:
    """The config as recorded in learn_state.json, without the _LATER_KEYS at their old meaning."""
    cfg = dict(cfg)
    for (section, key), old in _LATER_KEYS.items():
        if cfg[section][key] == old:
            cfg[section] = {k: v for k, v in cfg[section].items() if k != key}
    return json.dumps(cfg, sort_keys=True)


def _without_rounds(fingerprint: str) -> tuple[dict, int]:
    """A run's config (its JSON fingerprint) without loop.rounds, and loop.rounds."""
    cfg = json.loads(fingerprint)
    return {**cfg, "loop": {k: v for k, v in cfg["loop"].items() if k != "rounds"}}, cfg["loop"]["rounds"]


def stages(cfg: dict) -> list:
    """The stage names of a config, in order."""
    names = ["data", "test"] + (["locality"] if cfg["locality"]["cutoffs"] else [])
    for r in range(cfg["loop"]["rounds"]):
        names += [f"round{r}/train", f"round{r}/evaluate"]
        if r < cfg["loop"]["rounds"] - 1:
            names += [f"round{r}/explore", f"round{r}/label"]
    return names + (["check"] if cfg["check"]["runs"] else []) + ["report"]


# How long the other ranks wait while rank 0 runs a stage alone (ED-LLG data can take hours); a
# process that fails stops the others (torchrun, torch.multiprocessing.spawn) long before that.
WAIT_HOURS = 7 * 24


def learn(cfg: dict, out, *, overwrite: bool = False, progress: bool = True, _interrupt=None) -> dict:
    """Run (or continue) the active-learning loop of a checked config in folder `out`.

    Returns the state results. `_interrupt(stage, when)` is a test hook called before and after
    each stage is recorded.

    Started by torchrun on P processes (or inside a process group the caller has initialised),
    every process calls learn alike: the committees are trained data-parallel on all of them (as
    `spinforce train`), every other stage runs on rank 0 while the others wait; rank 0 alone
    writes files and shows progress. learn_state.json does not depend on P: a run continues on
    any number of processes.
    """
    import torch

    from .distributed import join_ranks
    from .ml.training import SCHEMA as TRAINING
    device = cfg["train"]["training"].get("device", TRAINING["training"]["device"].default)
    ranks, _, started = join_ranks(device, setting="train.training.device", command="learn")
    threads = torch.get_num_threads()
    try:
        if cfg["loop"]["threads"]:
            torch.set_num_threads(cfg["loop"]["threads"])
        # the other ranks wait for rank 0's stages in a group of their own, with a long timeout
        return _learn(cfg, Path(out).resolve(), overwrite, progress and ranks.rank == 0,
                      ranks.patient(WAIT_HOURS), _interrupt)
    finally:
        torch.set_num_threads(threads)
        if started:
            torch.distributed.destroy_process_group()


def _learn(cfg: dict, out: Path, overwrite: bool, progress: bool, ranks, _interrupt) -> dict:
    from .data import replaceable_output
    from .outputs import prepare_outputs
    state_path = out / STATE_FILE

    def prepare():
        # The folder holds only this command's files; without overwrite the run continues them.
        prepare_outputs(out, output_patterns(), command="spinforce learn", overwrite=overwrite, keep=True,
                        owned=replaceable_output)
        out.mkdir(parents=True, exist_ok=True)
    ranks.on_rank0(prepare)
    state = _State(state_path, _fingerprint(cfg), ranks)
    if not ranks.on_rank0(state_path.exists):
        state.save()  # the folder is this run's from now on, also if the first stage is interrupted
    if state.more_rounds:  # the check of the old last committee goes; it is redone with the new one
        ranks.on_rank0(lambda: prepare_outputs(out / "check", _check_outputs(), command="spinforce learn",
                                               overwrite=True, owned=replaceable_output))
        state.save()
    names = stages(cfg)
    for name in names:
        if name in state.done:
            continue
        if progress:
            print(f"[learn] stage {name} ({names.index(name) + 1}/{len(names)})", file=sys.stderr, flush=True)
        started = time.perf_counter()
        if name.endswith("/train"):  # every rank: data-parallel training
            result = _train_stage(name, cfg, out, progress, ranks)
        else:
            result = ranks.on_rank0(lambda: _run_stage(name, cfg, out, state, progress))
        if _interrupt is not None:
            _interrupt(name, "before")
        state.finish(name, result, time.perf_counter() - started)
        if _interrupt is not None:
            _interrupt(name, "after")
    return state.results


def _data_paths(cfg: dict, out: Path, upto_round: int) -> list:
    return [out / "data" / "initial.h5"] + [out / "data" / f"round{r}{e['suffix']}.h5" for r in range(upto_round)
                                            for e in explore_sets(cfg)]


def _round_dir(out: Path, name: str) -> tuple[int, Path]:
    """The round number and folder of a round's stage `name` ("round{r}/...")."""
    r = int(name.split("/")[0][len("round"):])
    return r, out / "rounds" / f"round{r}"


def _train_stage(name: str, cfg: dict, out: Path, progress: bool, ranks) -> dict:
    """A round's committee, trained on all data so far (on every rank) and exported (by rank 0)."""
    from .ml.committee import export_committee, train_committee
    r, round_dir = _round_dir(out, name)
    tcfg = _training_config(cfg, _data_paths(cfg, out, r), out / "data" / "test.h5", round_dir / "committee")
    members = train_committee(tcfg, round_dir / "committee", cfg["train"]["members"], resume=True, progress=progress)

    def export():
        # a fixed-N committee solves sum_i n_i(mu) = filling * 2N for mu in every evaluation
        export_committee(members, round_dir / "model.ts", overwrite=True,
                         fixed_filling=cfg["model"]["filling"] if fixed_n(cfg) else None)
        return {"members": [str(p) for p in members], **model_size(members[0])}
    return ranks.on_rank0(export)


def _run_stage(name: str, cfg: dict, out: Path, state: _State, progress: bool):
    from .generate import generate_ensemble
    data_dir = out / "data"
    if name == "report":
        return _write_report(cfg, out, state.results)
    if name == "check":
        return _check_dynamics(cfg, out, state.results["data"]["mu"], progress)
    if name == "data" and fixed_n(cfg):
        return _fixed_n_data(cfg, data_dir, progress)
    if name == "data":
        gen = _generate_config(cfg, "data", data_dir / "initial.h5", cfg["model"]["mu"])
        summary = generate_ensemble(gen, progress=progress, cores=cfg["loop"]["threads"])
        mu = summary["mu"] if cfg["model"]["mu"] == "auto" else float(cfg["model"]["mu"])
        return {"mu": mu, "frames": summary["frames"], "fixed_mu": summary["fixed_mu"],
                "filling_at_mu": _mean_filling(cfg, data_dir / "initial.h5", mu)}
    mu = state.results["data"]["mu"]
    if name == "test":
        summary = generate_ensemble(_generate_config(cfg, "test", data_dir / "test.h5", mu), progress=progress,
                                    cores=cfg["loop"]["threads"])
        return {"frames": summary["frames"], "filling_at_mu": _mean_filling(cfg, data_dir / "test.h5", mu)}
    if name == "locality":
        from .data import read_dataset
        from .locality import locality_floor, pick_frames, write_results
        ds = read_dataset(data_dir / "test.h5")
        L, m = cfg["locality"], cfg["model"]
        frames = pick_frames(ds.num_frames, L["states"])
        res = locality_floor(ds.lattice(), ds.spins[frames], L["cutoffs"], J=m["J"], t=m["t"], kT=m["kT"], t2=m["t2"],
                             t3=m["t3"], mu=mu, filling=m["filling"], sites=L["sites"], replacements=L["replacements"],
                             seed=L["seed"], progress=progress)
        write_results(res, out / "locality")
        return {e: r["floor"] for e, r in res["ensembles"].items()} | {"cutoffs": res["cutoffs"]}
    r, round_dir = _round_dir(out, name)
    stage = name.split("/")[1]
    model_path = round_dir / "model.ts"
    if stage == "evaluate":
        import torch
        errors = held_out_errors(model_path, data_dir / "test.h5")
        train_frames = sum(_frames(p) for p in _data_paths(cfg, out, r))
        return {"held_out": errors, "training_frames": train_frames,
                "us_per_site": microseconds_per_site(model_path, cfg["model"]["kind"], cfg["explore"]["shape"]),
                "threads": torch.get_num_threads()}
    if stage == "explore":
        from .simulate import simulate_runs
        sets = [[round_dir / "explore" / f"{e['prefix']}run{k}.h5" for k in range(e["runs"])] for e in explore_sets(cfg)]
        simulate_runs([_simulate_config(cfg, e, model_path, p, k) for e, paths in zip(explore_sets(cfg), sets)
                       for k, p in enumerate(paths)], cores=cfg["loop"]["threads"], progress=progress,
                      desc="explore runs")
        sets = [[str(p) for p in paths] for paths in sets]
        return {"runs": sets[0], "extra": sets[1:]}
    if stage == "label":
        explored = state.results[f"round{r}/explore"]
        labelled = [_label(cfg, e, out / "data" / f"round{r}{e['suffix']}.h5", r, runs, mu, progress)
                    for e, runs in zip(explore_sets(cfg), [explored["runs"]] + explored.get("extra", []))]
        return {**labelled[0], "extra": labelled[1:]}
    raise AssertionError(name)


def _fixed_n_data(cfg: dict, data_dir: Path, progress: bool) -> dict:
    """Round 0 of a fixed-N config: the exact quenches and states at the wanted filling
    (data/states.h5), every state then labelled by ED at each mu of model.mus (data/initial.h5)."""
    from .generate import generate_ensemble
    from .ml.sample_ed import relabel_at_mus
    states = data_dir / "states.h5"
    summary = generate_ensemble(_generate_config(cfg, "data", states, None), progress=progress,
                                cores=cfg["loop"]["threads"])
    # relabelled whole (an interrupted relabelling starts again: it is this stage's own file)
    frames = relabel_at_mus(states, data_dir / "initial.h5", cfg["model"]["mus"], overwrite=True, progress=progress)
    return {"mu": None, "mus": cfg["model"]["mus"], "states": summary["frames"], "frames": frames, "fixed_mu": None,
            "filling_at_mu": None}


def _check_dynamics(cfg: dict, out: Path, mu, progress: bool) -> dict:
    """ML-LLG ensemble with the last committee against the exact held-out quenches (same lattice,
    dt, alpha, length, spin temperature and start of run k; noise seeds check.seed + k)."""
    from .analysis.ensemble import compare_ensembles
    from .generate import ensemble_runs
    from .simulate import simulate_runs
    c = cfg["check"]
    exact = ensemble_runs(_generate_config(cfg, "test", out / "data" / "test.h5", mu))
    if len(exact) < 2:
        raise ValueError("check needs at least 2 held-out quenches (test.seeds x test.kT x test.initial)")
    model_path = out / "rounds" / f"round{cfg['loop']['rounds'] - 1}" / "model.ts"
    paths = [out / "check" / f"run{k}.h5" for k in range(c["runs"])]
    runs = [exact[k % len(exact)]["dynamics"] for k in range(c["runs"])]
    simulate_runs([_simulate_config(cfg, cfg["test"], model_path, p, k, kT=run["kT"], initial=run["initial"],
                                    seed=c["seed"] + k) for k, (p, run) in enumerate(zip(paths, runs))],
                  cores=cfg["loop"]["threads"], progress=progress, desc="check runs")
    result = compare_ensembles([r["output"] for r in exact], paths, sigmas=c["sigmas"], out=out / "check" / "ensembles")
    (out / "check" / "ensembles.json").write_text(json.dumps(result, indent=1))
    return {"agreement": result["agreement"], "runs": c["runs"], "exact_runs": len(exact),
            "png": str(out / "check" / "ensembles.png")}


def _mean_filling(cfg: dict, path, mu: float) -> dict | None:
    """Filling at mu of the first, middle and last frame of the first trajectory (ED lattices only)."""
    from .data import read_dataset
    from .electrons import SDModel, filling_at_mu
    if mu is None:  # fixed-N config: the frames are at the wanted filling
        return None
    ds = read_dataset(path)
    frames = np.flatnonzero((ds.trajectory == ds.trajectory[0]) & (ds.step >= 0))
    if cfg["data"]["method"] != "ed" or len(frames) == 0 or ds.num_sites > 1600:
        return None
    pick = frames[[0, len(frames) // 2, -1]]
    model = SDModel(ds.lattice(), **_hoppings(cfg["model"]), mu=float(mu))
    values = filling_at_mu(model, ds.spins[pick], mu)
    return {"time": [float(ds.time[k]) for k in pick], "filling": [float(v) for v in values]}


def _frames(path) -> int:
    from .data import read_dataset
    return read_dataset(path).num_frames


def _label(cfg: dict, e: dict, path: Path, r: int, runs: list, mu, progress: bool) -> dict:
    """Exact fields of the e["frames"] most uncertain frames of the explore set e -> `path`: at the
    fixed mu, or (fixed-N config) at every mu of model.mus from one diagonalisation, with the site
    densities."""
    import torch
    from tqdm.auto import tqdm

    from .data import DatasetWriter, read_dataset
    lab, mus = cfg["label"], cfg["model"]["mus"]
    chosen = _select_frames(runs, e["frames"], e["steps"], lab["windows"])
    sd_model, provider = _exact_provider(cfg, e["shape"], lab["method"], lab["method_settings"],
                                         mus[0] if mus else mu)
    lattice = sd_model.lattice
    datasets = {run: read_dataset(runs[run]) for run in {run for run, _ in chosen}}
    if mus:
        from .ml.sample_ed import multi_mu_model
        model, labels = multi_mu_model(sd_model, mus), {"labels": "several mu"}
    else:
        model, labels = sd_model.parameters(), {"labels": "fixed mu", "mu": float(mu)}
    per_frame = max(len(mus), 1)
    with DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method=lab["method"], model=model,
                       method_settings={**lab["method_settings"], **labels,
                                        "selected": "largest committee uncertainty" + _windows_text(lab, ", {}")},
                       provenance={"command": "spinforce learn", "round": r, "frames": chosen, "runs": runs},
                       resume=True, density=bool(mus)) as w:
        done = w.num_frames // per_frame
        w.truncate(done * per_frame)  # resume after the last frame with all its labels
        desc = f"label round {r}" + (f" ({'x'.join(map(str, e['shape']))})" if e["suffix"] else "")
        for n, (run, j) in enumerate(tqdm(chosen, desc=desc, unit="frame", disable=not progress)):
            if n < done:
                continue
            ds = datasets[run]
            # Frames of one ML run are correlated: they share a trajectory id (held out together).
            where = {"time": float(ds.time[j]), "step": int(ds.step[j]), "trajectory": run}
            if mus:
                for res in provider.compute_at_mus(ds.spins[j], mus):
                    w.append(ds.spins[j], res.fields, res.energy, mu=res.mu, density=res.density, **where)
                continue
            res = provider.compute(torch.as_tensor(ds.spins[j]))
            w.append(ds.spins[j], res.fields.detach().cpu().numpy(), res.energy, **where)
        frames = w.num_frames
    return {"frames": frames, "selected": chosen}


# --- report -----------------------------------------------------------------------------------
def round_table(cfg: dict, results: dict) -> list:
    rows = []
    for r in range(cfg["loop"]["rounds"]):
        ev = results.get(f"round{r}/evaluate")
        if ev is None:
            continue
        h = ev["held_out"]
        row = {"round": r, "training_frames": ev["training_frames"],
               "held_out_error": h["all"]["relative_torque_error"], "held_out_uncertainty": h["all"]["mean_uncertainty"]}
        for phase in ("early", "middle", "late"):
            if phase in h and h[phase]["frames"]:
                row[f"{phase}_error"] = h[phase]["relative_torque_error"]
        rows.append(row)
    return rows


def _write_report(cfg: dict, out: Path, results: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    last = cfg["loop"]["rounds"] - 1
    shutil.copyfile(out / "rounds" / f"round{last}" / "model.ts", out / "model.ts")
    rows = round_table(cfg, results)
    fields = sorted({k for row in rows for k in row}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with open(out / "rounds.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rounds = [row["round"] for row in rows]
    ax.plot(rounds, [100 * row["held_out_error"] for row in rows], "o-", label="held-out torque error")
    torque_rms = results[f"round{last}/evaluate"]["held_out"]["all"]["torque_rms"]
    ax.plot(rounds, [100 * (row["held_out_uncertainty"] or np.nan) / torque_rms for row in rows], "s--",
            label="mean committee uncertainty")
    loc = results.get("locality")
    if loc and "mu" in loc:
        for c, rc in enumerate(loc["cutoffs"]):
            ax.axhline(100 * loc["mu"][c], color="gray", lw=0.8, ls=":")
            ax.text(rounds[-1], 100 * loc["mu"][c], f" floor rc={rc:g}", va="bottom", ha="right", fontsize=8)
    ax.set(xlabel="round", ylabel="% of the RMS exact torque", title="active learning")
    ax.set_xticks(rounds)
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rounds.png", dpi=120)
    plt.close(fig)
    (out / "report.md").write_text(_report_text(cfg, results, rows, out))
    return {"rows": rows}


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.1f} %"


def _labels_line(cfg: dict, data: dict) -> str:
    m = cfg["model"]
    if fixed_n(cfg):
        return (f"Fixed electron count: a model with mu as input, labels by ED at mu = "
                f"{', '.join(f'{v:g}' for v in m['mus'])} (fields, grand potential and site densities of every "
                f"state at each mu); the committee file solves sum_i n_i(mu) = {m['filling']:g} x 2N for mu in "
                "every evaluation. Exact quenches and held-out labels at that filling.")
    return (f"Labels at fixed mu = {data['mu']:.6g}"
            + (": exact quenches at the wanted filling, relabelled at the mu that gives their late frames that "
               "filling." if m["mu"] == "auto" else ": exact quenches and labels at this fixed mu, as the ML dynamics "
               "runs."))


def _report_text(cfg: dict, results: dict, rows: list, out: Path) -> str:
    m, d, t = cfg["model"], cfg["data"], cfg["test"]
    data = results["data"]
    last_eval = results[f"round{cfg['loop']['rounds'] - 1}/evaluate"]
    windows = _windows_text(cfg["label"], " ({})")
    lines = [f"# Active learning: {m['kind']} s-d model, J = {m['J']:g}, filling {m['filling']:g}, "
             f"T_el = {m['kT']:g}", "",
             _labels_line(cfg, data), ""]
    for name, res in (("training", data), ("held-out", results.get("test", {}))):
        f = res.get("filling_at_mu")
        if f:
            lines += [f"Filling at that mu along the first {name} quench: "
                      + ", ".join(f"{v:.4f} (t = {t:g})" for t, v in zip(f["time"], f["filling"]))
                      + f"; wanted {m['filling']:g}.", ""]
    fixed = data.get("fixed_mu")
    if fixed:
        canon = np.asarray(fixed["canonical_mu"])
        per = np.asarray(fixed["filling_per_state"])
        lines += [f"Over those frames the canonical mu ranges {canon.min():.4g} .. {canon.max():.4g}; at the fixed mu "
                  f"their filling ranges {per.min():.4g} .. {per.max():.4g}.", ""]
    lines += [f"- training quenches: {m['kind']} {'x'.join(map(str, d['shape']))}, {d['method'].upper()}-LLG, "
              f"{d['steps']} steps of dt = {d['dt']}, seeds {d['seeds']}, spin temperatures {d['kT']}, starts "
              f"{d['initial']}, each followed by {d['random']} independent random states and {d['perturbed']} perturbed "
              f"frames; {data['frames']} frames"
              + (f" ({data['states']} states, each labelled at {len(m['mus'])} mu)" if fixed_n(cfg) else ""),
              f"- held-out quenches (never trained on): {'x'.join(map(str, t['shape']))}, seeds {t['seeds']}, "
              f"{results['test']['frames']} frames",
              f"- each round: a committee of {cfg['train']['members']}, "
              + "; ".join(f"{s['runs']} ML-LLG quenches on {'x'.join(map(str, s['shape']))} ({s['steps']} steps), "
                          f"the {s['frames']} most uncertain frames{windows} labelled by {cfg['label']['method'].upper()}"
                          for s in explore_sets(cfg)), "",
              f"- committee member: {results['round0/train']['features']} features, "
              f"{results['round0/train']['parameters']} parameters, descriptor {cfg['train']['descriptor']}, network "
              f"{cfg['train']['network']}; committee of {cfg['train']['members']}: "
              f"{last_eval['us_per_site']:.1f} µs per site and force evaluation ("
              + (f"{last_eval['threads']} torch threads, " if "threads" in last_eval else "")
              + "the machine may have been shared)", "",
              "| round | training frames | held-out torque error | early | middle | late | mean uncertainty |",
              "|---|---|---|---|---|---|---|"]
    torque_rms = results[f"round{cfg['loop']['rounds'] - 1}/evaluate"]["held_out"]["all"]["torque_rms"]
    for row in rows:
        u = row["held_out_uncertainty"]
        lines.append(f"| {row['round']} | {row['training_frames']} | {_pct(row['held_out_error'])} | "
                     f"{_pct(row.get('early_error'))} | {_pct(row.get('middle_error'))} | {_pct(row.get('late_error'))} | "
                     f"{_pct(u / torque_rms if u is not None else None)} |")
    lines += ["", "Errors are RMS torque errors relative to the RMS exact torque of the held-out frames "
              f"({torque_rms:.4g}); early / middle / late are thirds of the quench time.", ""]
    loc = results.get("locality")
    if loc:
        lines += ["Locality floor on the held-out states (spread of the exact torque when the spins beyond rc are "
                  "replaced; no model with that cutoff can do better):", "",
                  "| rc | fixed mu | fixed filling |", "|---|---|---|"]
        for c, rc in enumerate(loc["cutoffs"]):
            lines.append(f"| {rc:g} | {_pct(loc.get('mu', [None] * 99)[c])} | {_pct(loc.get('filling', [None] * 99)[c])} |")
        cutoff = cfg["train"]["descriptor"].get("cutoff")
        lines += ["", f"The descriptor cutoff is {cutoff}."]
        if cutoff in loc["cutoffs"] and "mu" in loc and rows:
            floor = loc["mu"][loc["cutoffs"].index(cutoff)]
            final = rows[-1]["held_out_error"]
            lines += [f"Final held-out error / fixed-mu floor at that cutoff: {_pct(final)} / {_pct(floor)} = "
                      f"{final / floor:.1f}x." if floor > 0 else "The floor at that cutoff is zero."]
        lines += [""]
    check = results.get("check")
    if check:
        names = {"bond": "nearest-neighbour bond average (every saved time)",
                 "chirality": "mean absolute scalar chirality (every saved time)", "correlation": "C(r) at the last time"}
        lines += [f"Dynamics check: {check['runs']} ML-LLG quenches with the last committee against the "
                  f"{check['exact_runs']} exact held-out quenches (same settings, other noise seeds). The ML mean "
                  f"should lie within {cfg['check']['sigmas']:g} standard errors of the difference of the two means "
                  "(identical dynamics miss that at about 5 % of the times):", "",
                  "| observable | within | largest deviation (SE of the difference) | (SE of the exact mean) |",
                  "|---|---|---|---|"]
        for key, a in check["agreement"].items():
            if a is not None:
                lines.append(f"| {names.get(key, key)} | {sum(a['within'])}/{len(a['within'])} "
                             f"{'(all)' if a['all_within'] else ''} | {a['max_deviation_in_stderr']:.1f} | "
                             f"{a['max_deviation_in_reference_stderr']:.1f} |")
        lines += ["", "![ML-LLG vs exact ensembles](check/ensembles.png)", ""]
    seconds = json.loads((out / STATE_FILE).read_text()).get("seconds", {}) if (out / STATE_FILE).exists() else {}
    if seconds:
        lines += [f"Wall time of the stages: {sum(seconds.values()) / 60:.1f} min ("
                  + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ").", ""]
    lines += ["![held-out error per round](rounds.png)", "", "`model.ts` is the last committee (spinforce.MLForceField "
              "returns its mean fields and per-site uncertainty)."]
    return "\n".join(lines) + "\n"


# --- command line -------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("config", nargs="?", help="learn config (TOML); see docs/ml.md")
    p.add_argument("--example", metavar="NAME", help="a config shipped with spinforce (see --list-examples)")
    p.add_argument("--list-examples", action="store_true", help="list the shipped configs and exit")
    p.add_argument("--out", help="output folder (default: the config file's stem beside it, or the example's name)")
    add_set_argument(p, "loop.rounds=1")
    p.add_argument("--overwrite", action="store_true", help="replace what an earlier run wrote into the output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    if args.list_examples:
        print("\n".join(shipped_config_lines(examples())))
        return 0
    source = config_source(args.config, args.example, examples())
    cfg = load_config(source, args.overrides)
    out = Path(args.out) if args.out else (Path(args.example) if args.example else source.with_suffix(""))
    results = learn(cfg, out, overwrite=args.overwrite, progress=not args.no_progress)
    from .distributed import launched_rank
    if launched_rank() != 0:  # rank 0 reports for a run on several processes
        return 0
    for row in round_table(cfg, results):
        print(f"round {row['round']}: {row['training_frames']} training frames, held-out torque error "
              f"{_pct(row['held_out_error'])}")
    print(f"wrote {out / 'model.ts'} and {out / 'report.md'}")
    return 0
