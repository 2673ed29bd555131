"""The locality floor: how much of the exact torque any model with cutoff rc cannot know.

    spinforce locality CONFIG.toml [--set analysis.sites=2 ...] [--overwrite] [--no-progress]

A local model (Behler-Parrinello) predicts the torque at site i from the spins within its
cutoff rc. Keep those spins of a state, replace every spin beyond rc by the spins of another
state (from the same set), and recompute the exact torque at i: its spread over such
replacements is what the spins beyond rc decide, an error no model with that cutoff can avoid.
The floor is sqrt(< |T_i - <T_i>|^2 >) over states, sites and replacements, relative to the RMS
exact torque of the states. It is measured at fixed chemical potential (grand canonical, what
a local model represents) and at fixed filling (canonical, where mu is a global variable).
docs/ml.md, "Locality", explains what the numbers mean.

Config (TOML; relative paths are relative to the config file):

    data = "quench.h5"          # a spinforce dataset: the states and the lattice
    output = "locality"         # folder for locality.json and locality.png

    [model]                     # the s-d model of the exact torques (lattice from the data)
    t = 1.0
    J = 6.0
    kT = 0.0                    # electron temperature
    filling = 0.4925            # fixed-filling ensemble; and the fixed mu is found for it ...
    mu = -4.69                  # ... unless mu is given (then filling, if left out, is the
                                # states' mean filling at mu)

    [analysis]
    cutoffs = [2.0, 3.0, 4.5]   # lattice constants
    states = 8                  # states used, evenly spaced among the dataset's frames (0: all)
    from_time = 100.0           # optional: only trajectory frames at time >= from_time (late quench)
    sites = 4                   # centre sites per state (random)
    replacements = 4            # outside-replacements per centre site (donor states at random)
    ensembles = ["mu", "filling"]
    seed = 0

Cost: states x sites x replacements x cutoffs x ensembles exact diagonalisations (about 2 s
each at 30x30 on one core).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import Key, check_sections, check_table, integer, list_of, number, one_of, string
from .run_setup import PROVIDERS, SD_MODEL, add_set_argument, read_config

HELP = "irreducible torque error of any model with cutoff rc, at fixed mu and fixed filling (JSON, PNG)"

__all__ = ["HELP", "load_config", "locality_floor", "site_distances", "replace_outside", "run_locality",
           "OUTPUTS", "add_arguments", "run"]

ENSEMBLES = ("mu", "filling")
_LABELS = {"mu": "fixed mu (grand canonical)", "filling": "fixed filling (canonical)"}
# What the command writes into its output folder (outputs.py).
OUTPUTS = ("locality.json", "locality.png")


def _ensembles(value, name):
    """analysis.ensembles: some of ENSEMBLES, once each (a single name may stand alone)."""
    names = list_of(one_of(*ENSEMBLES), "ensembles")([value] if isinstance(value, str) else value, name)
    if len(set(names)) != len(names):
        raise ValueError(f"{name} must list each of {', '.join(map(repr, ENSEMBLES))} at most once, got {value!r}")
    return names


# The config schema (config.py); [model] is the s-d model of a run (run_setup.py), mu and filling both allowed.
ANALYSIS = {"cutoffs": Key(list_of(number(0), "cutoffs (numbers >= 0)"), [2.0, 3.0]), "states": Key(integer(0), 8),
            "sites": Key(integer(1), 4), "replacements": Key(integer(1), 4),
            "ensembles": Key(_ensembles, list(ENSEMBLES)), "seed": Key(integer(0), 0),
            "from_time": Key(number(), None)}
SECTIONS = ("data", "output", "model", "analysis")


def check_analysis(given: dict) -> dict:
    """The [analysis] settings with defaults filled in and checked."""
    return check_table("analysis", given, ANALYSIS)


def load_config(path, overrides=()) -> dict:
    """Read and check a locality config (see the module docstring)."""
    path = Path(path)
    raw = read_config(path, overrides)
    check_sections(f"the locality config {path}", raw, SECTIONS)
    for key in ("data", "output"):
        if key not in raw:
            raise ValueError(f"{key} must be given as a path")
    paths = {key: string("a path")(raw[key], key) for key in ("data", "output")}
    model = {"mu": None, "filling": None, **check_table("model", raw.get("model", {}), SD_MODEL)}
    analysis = check_analysis(raw.get("analysis", {}))
    if model["filling"] is None and model["mu"] is None:
        raise ValueError("[model] needs filling or mu (the other one is then found from the states)")
    base = path.parent
    return {"data": str((base / paths["data"]).resolve()), "output": str((base / paths["output"]).resolve()),
            "model": model, "analysis": analysis}


# --- geometry ----------------------------------------------------------------------------------------
def site_distances(lattice, site: int) -> np.ndarray:
    """(N,) shortest periodic distance from `site` to every site, in lattice constants."""
    from .analysis.structure import _minimum_image_distance
    shape = np.asarray(lattice.shape)
    coords = lattice.coordinates
    d = (coords - coords[site]) % shape
    flat = np.zeros(len(coords), dtype=np.int64)
    for axis in reversed(range(lattice.dim)):  # site index x + Lx*y (+ Lx*Ly*z)
        flat = flat * shape[axis] + d[:, axis]
    return _minimum_image_distance(lattice).ravel()[flat]


def replace_outside(spins: np.ndarray, donor: np.ndarray, distances: np.ndarray, cutoff: float) -> np.ndarray:
    """`spins` with every site farther than `cutoff` taken from `donor`."""
    out = spins.copy()
    outside = distances > cutoff + 1e-9
    out[outside] = donor[outside]
    return out


# --- the measurement ----------------------------------------------------------------------------------
def _torques(spins, fields) -> np.ndarray:
    return np.cross(spins, fields)


def locality_floor(lattice, states, cutoffs, *, J: float, t: float = 1.0, kT: float = 0.0, t2: float = 0.0,
                   t3: float = 0.0, mu: float | None = None, filling: float | None = None, sites: int = 4,
                   replacements: int = 4, ensembles=("mu", "filling"), seed: int = 0,
                   progress: bool = True) -> dict:
    """The locality floor of the s-d model on `states` (M, N, 3), M >= 2, for each cutoff.

    The fixed-mu ensemble uses `mu`, or the mu that gives the states `filling` on average
    (spinforce.mu_for_filling); the fixed-filling ensemble uses `filling`. Returns a dict with,
    per ensemble, `floor` (relative to the RMS exact torque, one per cutoff), `spread` (absolute),
    `stderr` (of the relative floor, from the scatter over centre sites) and `torque_rms`; plus
    `mu`, the fixed-mu report, and `samples`: the (state, site, donors) drawn, so the numbers can
    be recomputed.
    """
    from tqdm.auto import tqdm

    from .analysis import mean_stderr
    from .electrons import SDModel, filling_at_mu, mu_for_filling

    states = np.asarray(states, dtype=np.float64)
    n = lattice.num_sites
    if states.ndim != 3 or states.shape[1:] != (n, 3) or states.shape[0] < 2:
        raise ValueError(f"states must have shape (M, {n}, 3) with M >= 2 (donors come from other states), "
                         f"got {states.shape}")
    a = check_analysis({"cutoffs": list(cutoffs), "sites": sites, "replacements": replacements,
                        "ensembles": list(ensembles), "seed": seed})
    if a["sites"] > n:
        raise ValueError(f"sites must be <= the number of lattice sites ({n}), got {sites}")
    hop = {"t": t, "t2": t2, "t3": t3, "J": J, "kT": kT}
    fixed = None
    if "mu" in a["ensembles"] and mu is None:
        if filling is None:
            raise ValueError("give mu, or filling to find the fixed mu from the states")
        fixed = mu_for_filling(SDModel(lattice, filling=filling, **hop), states, progress=progress)
        mu = fixed.mu
    if "filling" in a["ensembles"] and filling is None:
        if mu is None:
            raise ValueError("the fixed-filling ensemble needs filling (or mu: then the states' mean filling at mu)")
        filling = float(np.mean(filling_at_mu(SDModel(lattice, mu=mu, **hop), states, mu)))
    count = {"mu": mu, "filling": filling}  # the ensembles fix the [model] key of their name
    providers = {e: PROVIDERS["ed"].build(lattice, {**hop, e: count[e]}, {}, "cpu")[1] for e in a["ensembles"]}

    rng = np.random.default_rng(a["seed"])
    M = states.shape[0]
    samples = []
    for s in range(M):
        for i in rng.choice(n, size=a["sites"], replace=False):
            others = np.delete(np.arange(M), s)
            donors = rng.choice(others, size=a["replacements"], replace=len(others) < a["replacements"])
            samples.append({"state": int(s), "site": int(i), "donors": [int(d) for d in donors]})
    n_eval = len(a["ensembles"]) * (M + len(samples) * a["replacements"] * len(a["cutoffs"]))
    bar = tqdm(total=n_eval, desc="locality", unit="ED", dynamic_ncols=True, disable=not progress)
    torque_sq, original = {}, {}
    for e, provider in providers.items():
        torque_sq[e] = 0.0
        original[e] = []
        for s in range(M):
            T = _torques(states[s], provider.compute(states[s]).fields)
            torque_sq[e] += float((T ** 2).sum())
            original[e].append(T)
            bar.update(1)
    # var[e][c, k]: sample variance (summed over components) of the torque at sample k's site.
    var = {e: np.zeros((len(a["cutoffs"]), len(samples))) for e in providers}
    for k, smp in enumerate(samples):
        s, i = smp["state"], smp["site"]
        dist = site_distances(lattice, i)
        for c, rc in enumerate(a["cutoffs"]):
            replaced = [replace_outside(states[s], states[d], dist, rc) for d in smp["donors"]]
            for e, provider in providers.items():
                values = [original[e][s][i]]
                for spins in replaced:
                    values.append(np.cross(spins[i], provider.compute(spins).fields[i]))
                    bar.update(1)
                var[e][c, k] = float(np.var(np.asarray(values), axis=0, ddof=1).sum())
    bar.close()
    result = {"cutoffs": a["cutoffs"], "ensembles": {}, "num_states": M, "sites": a["sites"],
              "replacements": a["replacements"], "seed": a["seed"], "mu": mu, "filling": filling,
              "model": hop, "lattice": {"kind": lattice.kind, "shape": list(lattice.shape)},
              "fixed_mu": fixed.to_dict() if fixed is not None else None, "samples": samples}
    for e in providers:
        rms = float(np.sqrt(torque_sq[e] / (M * n)))
        mean_var = var[e].mean(axis=1)
        spread = np.sqrt(mean_var)
        # Standard error of sqrt(mean v) from the scatter of v over centre sites (delta method).
        se_var = mean_stderr(var[e], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.where(spread > 0, se_var / (2 * spread), 0.0) / rms
        result["ensembles"][e] = {"label": _LABELS[e], "torque_rms": rms, "spread": spread.tolist(),
                                  "floor": (spread / rms).tolist(), "stderr": se.tolist()}
    return result


def plot_locality(result: dict, path) -> Path:
    """Relative floor against the cutoff, one line per ensemble, as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rc = np.asarray(result["cutoffs"])
    for e, r in result["ensembles"].items():
        ax.errorbar(rc, 100 * np.asarray(r["floor"]), yerr=100 * np.asarray(r["stderr"]), marker="o", capsize=3,
                    label=r["label"])
    lat = result["lattice"]
    ax.set(xlabel="cutoff rc (lattice constants)", ylabel="irreducible torque error (% of RMS torque)",
           title=f"locality floor, {lat['kind']} {'x'.join(map(str, lat['shape']))}, J = {result['model']['J']:g}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pick_frames(num_frames: int, count: int) -> np.ndarray:
    """`count` frame indices evenly spaced over the frames (all when count is 0 or too large)."""
    if count == 0 or count >= num_frames:
        return np.arange(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, count)).astype(int))


def run_locality(cfg: dict, *, overwrite: bool = False, progress: bool = True) -> dict:
    """Run a checked config: writes OUTPUT/locality.json and OUTPUT/locality.png."""
    from .data import read_dataset
    from .outputs import prepare_outputs
    out = Path(cfg["output"])
    ds = read_dataset(cfg["data"])
    a = cfg["analysis"]
    eligible = np.arange(ds.num_frames)
    if a["from_time"] is not None:
        eligible = np.flatnonzero((ds.step >= 0) & (ds.time >= a["from_time"]))
    frames = eligible[pick_frames(len(eligible), a["states"])]
    if len(frames) < 2:
        raise ValueError(f"{cfg['data']} must hold at least 2 frames (at time >= analysis.from_time), "
                         f"has {len(eligible)}")
    # the data is checked before the output folder is touched, the folder before the computation
    prepare_outputs(out, OUTPUTS, command="spinforce locality", overwrite=overwrite)
    m = cfg["model"]
    result = locality_floor(ds.lattice(), ds.spins[frames], a["cutoffs"], J=m["J"], t=m["t"], kT=m["kT"],
                            t2=m["t2"], t3=m["t3"], mu=m["mu"], filling=m["filling"], sites=a["sites"],
                            replacements=a["replacements"], ensembles=a["ensembles"], seed=a["seed"],
                            progress=progress)
    result["data"] = cfg["data"]
    result["frames"] = frames.tolist()
    write_results(result, out)
    return result


def write_results(result: dict, out) -> None:
    """OUTPUT/locality.json and OUTPUT/locality.png (the files of OUTPUTS)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "locality.json").write_text(json.dumps(result, indent=2))
    plot_locality(result, out / "locality.png")


def format_table(result: dict) -> str:
    """Markdown table of the floor (percent of the RMS torque) per cutoff and ensemble."""
    ens = list(result["ensembles"])
    lines = ["| rc | " + " | ".join(result["ensembles"][e]["label"] for e in ens) + " |",
             "|---|" + "---|" * len(ens)]
    for c, rc in enumerate(result["cutoffs"]):
        cells = [f"{100 * result['ensembles'][e]['floor'][c]:.1f} % ± {100 * result['ensembles'][e]['stderr'][c]:.1f}"
                 for e in ens]
        lines.append(f"| {rc:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("config", help="locality config (TOML); see `spinforce locality --help` and docs/ml.md")
    add_set_argument(p, "analysis.sites=2")
    p.add_argument("--overwrite", action="store_true", help="replace the results in the output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    result = run_locality(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    if result["mu"] is not None:
        print(f"fixed mu = {result['mu']:.6g}")
    print(format_table(result))
    print(f"results in {cfg['output']}/ (locality.json, locality.png)")
    return 0
