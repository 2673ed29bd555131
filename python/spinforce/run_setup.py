"""What every run is set up from: the config sections the commands share, and the provider registry.

A run config names a lattice, a model, a method (the field provider) and LLG dynamics. Each
command (generate, simulate, learn, study, demo, locality, train) declares its own sections once,
in the schema form of config.py; the sections they share are declared here. Every command builds
its field provider with `build_provider`, through `PROVIDERS`: the [method] name picks the entry,
and it is also the provider's own ``name`` (the C++ core's FieldProvider::name()).

A new provider is one entry in PROVIDERS: the keys of its [model] and of its [method] settings
and how to build it. Every command that takes that kind of provider then accepts it by name.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ._validate import spin_lengths
from .config import OMIT, Key, check_table, device, did_you_mean, integer, number, number_pair, one_of, shape, \
    string, vector3
from .dynamics import INTEGRATORS
from .lattice import LATTICE_KINDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_config", "apply_overrides", "add_set_argument", "config_source", "LATTICE", "SD_MODEL", "HEISENBERG_MODEL", "KPM_SETTINGS", "DYNAMICS",
           "INITIAL_STATES", "Method", "PROVIDERS", "ELECTRON_METHODS", "check_method", "check_settings", "check_sd_model",
           "check_initial", "initial_spins", "Built", "build_provider"]


# --- reading a config ------------------------------------------------------------------------------
def _parse_override(text: str):
    if "=" not in text:
        raise ValueError(f"--set needs SECTION.KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word such as sib or random
    return key.strip().split("."), parsed


def read_config(path, overrides=()) -> dict:
    """Read a TOML config and apply ``SECTION.KEY=VALUE`` overrides (not yet checked)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"config {path} is a folder, not a TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        cfg = tomllib.loads(path.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a TOML text file") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    apply_overrides(cfg, overrides)
    return cfg


def apply_overrides(cfg: dict, overrides=()) -> None:
    """Set ``SECTION.KEY=VALUE`` overrides in a config dict, in place."""
    for text in overrides:
        keys, value = _parse_override(text)
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {text}: {k!r} is not a table of keys")
        node[keys[-1]] = value


def add_set_argument(parser, example: str, metavar: str = "SECTION.KEY=VALUE") -> None:
    """The --set option of a command that reads a config (values go through apply_overrides)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar=metavar,
                        help=f"override a config value, e.g. --set {example} (repeatable)")


def config_source(config, example, shipped: dict) -> Path:
    """The config a command reads: the file `config` or the shipped config named `example`
    (config.shipped_configs), exactly one of them."""
    if (config is None) == (example is None):
        raise ValueError("give exactly one of a CONFIG file and --example NAME")
    if config is not None:
        return Path(config)
    if example not in shipped:
        raise ValueError(f"unknown example {example!r}; shipped examples: {', '.join(sorted(shipped))}")
    return shipped[example]


# --- the shared sections ---------------------------------------------------------------------------
LATTICE = {"kind": Key(one_of(*LATTICE_KINDS)), "shape": Key(shape())}
# [model] of the s-d electron solvers: exactly one of mu and filling (check_sd_model)
SD_MODEL = {"t": Key(number(), 1.0), "J": Key(number()), "mu": Key(number(), OMIT),
            "filling": Key(number(0, 1, lo_open=True, hi_open=True), OMIT), "kT": Key(number(0), 0.0),
            "t2": Key(number(), 0.0), "t3": Key(number(), 0.0)}
HEISENBERG_MODEL = {"J1": Key(number()), "J2": Key(number(), 0.0), "field": Key(vector3(), [0.0, 0.0, 0.0]),
                    "anisotropy": Key(number(), 0.0), "axis": Key(vector3(), [0.0, 0.0, 1.0])}
# [method] of kpm: the settings of spinforce.KPM (absent keys take KPM's defaults)
KPM_SETTINGS = {"moments": Key(integer(2), OMIT), "probing_distance": Key(number(0, lo_open=True), OMIT),
                "seed": Key(integer(0), OMIT), "dtype": Key(one_of("complex128", "complex64"), OMIT),
                "bounds": Key(number_pair(), OMIT)}
INITIAL_STATES = ("random", "ferromagnetic", "neel", "tetrahedral")
DYNAMICS = {"dt": Key(number(0, lo_open=True)), "alpha": Key(number(0)), "kT": Key(number(0), 0.0),
            "gamma": Key(number(0, lo_open=True), 1.0), "integrator": Key(one_of(*INTEGRATORS), INTEGRATORS[0]),
            "steps": Key(integer(0)), "save_every": Key(integer(1)),
            "initial": Key(string("random, ferromagnetic, neel, tetrahedral or a .npy file"), "random"),
            "seed": Key(integer(0, 2**63 - 1), 0)}


def check_sd_model(model: dict) -> None:
    """A checked s-d [model] must fix the electrons one way: mu (grand canonical) or filling."""
    if (model.get("mu") is None) == (model.get("filling") is None):
        raise ValueError("[model] needs exactly one of mu and filling (mu: fixed chemical potential; "
                         "filling: fixed electron count)")


# --- the provider registry -------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """One field provider as a config names it.

    model: the keys of [model]; settings: the keys of [method] besides name and device.
    build(lattice, model table, settings, device) -> (the s-d model or None, provider).
    electrons: an s-d electron solver (exact fields of the s-d [model]: it can label training data).
    """
    model: dict
    settings: dict
    build: Callable[..., tuple[Any, Any]]
    electrons: bool


# The builders look the classes up on the package when called, so that a test can stand in for one.
def _build_ed(lattice, model: dict, settings: dict, device: str):
    import spinforce
    sd = spinforce.SDModel(lattice, **model)
    return sd, spinforce.ExactDiagonalization(sd)


def _build_kpm(lattice, model: dict, settings: dict, device: str):
    import spinforce
    sd = spinforce.SDModel(lattice, **model)
    return sd, spinforce.KPM(sd, **settings)


def _build_heisenberg(lattice, model: dict, settings: dict, device: str):
    import spinforce
    return None, spinforce.Heisenberg(lattice, **model)


def _build_ml(lattice, model: dict, settings: dict, device: str):
    import spinforce
    return None, spinforce.MLForceField(settings["path"], lattice, device=device, dtype=settings.get("dtype"))


PROVIDERS = {
    "ed": Method(SD_MODEL, {}, _build_ed, electrons=True),
    "kpm": Method(SD_MODEL, KPM_SETTINGS, _build_kpm, electrons=True),
    "heisenberg": Method(HEISENBERG_MODEL, {}, _build_heisenberg, electrons=False),
    "ml": Method({}, {"path": Key(string("an exported force field (TorchScript or .pt2)")),
                      "dtype": Key(one_of("float32", "float64"), OMIT)},  # the network's precision; absent: the model's
                 _build_ml, electrons=False),
}
# The methods that give exact s-d fields: data generation and labelling take these.
ELECTRON_METHODS = tuple(name for name, m in PROVIDERS.items() if m.electrons)


def check_method(raw: dict, names=tuple(PROVIDERS)) -> dict:
    """[method] of the config `raw`, one of `names` (default the first): its name picks which
    further keys (the method's settings) it may hold."""
    method = raw.get("method", {})
    if not isinstance(method, dict):
        raise ValueError(f"[method] must be a table of keys, got {method!r}")
    name = one_of(*names)(method.get("name", names[0]), "method.name")
    keys = {"name": Key(one_of(*names), name), "device": Key(device(), "cpu"), **PROVIDERS[name].settings}
    return check_table("method", method, keys)


def check_settings(section: str, method: str, settings: dict) -> dict:
    """A checked table of `method`'s settings given apart from [method] (learn, study)."""
    return check_table(section, settings, PROVIDERS[method].settings)


class Built(NamedTuple):
    """What `build_provider` makes of a checked config."""
    lattice: Any
    model: Any        # the SDModel of an electron method, else None
    provider: Any
    settings: dict    # [method] without name and device, as run files record them


def build_provider(cfg: dict, shape=None, device=None) -> Built:
    """The lattice and field provider of a checked config ([lattice], [model], [method]); shape
    and device, when given, replace lattice.shape and method.device (a slab's padded lattice, a
    rank's GPU)."""
    import spinforce
    lattice = spinforce.Lattice(cfg["lattice"]["kind"], cfg["lattice"]["shape"] if shape is None else shape)
    method = cfg["method"]
    settings = {k: v for k, v in method.items() if k not in ("name", "device")}
    model, provider = PROVIDERS[method["name"]].build(lattice, cfg.get("model", {}), settings,
                                                       str(device) if device is not None else method.get("device", "cpu"))
    return Built(lattice, model, provider, settings)


# --- the start of a run ----------------------------------------------------------------------------
def check_initial(value: str, base) -> str:
    """dynamics.initial: a named state, or a .npy file (made absolute against `base`)."""
    if value in INITIAL_STATES:
        return value
    p = Path(value) if base is None or Path(value).is_absolute() else Path(base) / value
    if p.suffix != ".npy":
        raise ValueError(f"dynamics.initial must be one of {', '.join(INITIAL_STATES)} or a .npy file of spins, "
                         f"got {value!r}{did_you_mean(value, INITIAL_STATES)}")
    return str(p.resolve())


def initial_spins(cfg: dict, lattice) -> np.ndarray:
    """The start of the run named by dynamics.initial; any problem is a ValueError naming it."""
    init, seed = cfg["dynamics"]["initial"], cfg["dynamics"]["seed"]
    if init == "random":
        return lattice.random_spins(seed)
    if init in INITIAL_STATES:
        try:
            return getattr(lattice, init)()
        except ValueError as err:
            raise ValueError(f"dynamics.initial = {init!r} does not exist on this lattice: {err}") from None
    try:
        spins = np.load(init, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"dynamics.initial: spin file {init} does not exist") from None
    except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
        raise ValueError(f"dynamics.initial: {init} is not a .npy array of spins ({err})") from None
    if not isinstance(spins, np.ndarray):  # np.load opens an .npz archive whatever the file is called
        spins.close()
        raise ValueError(f"dynamics.initial: {init} is an .npz archive, not a .npy array of spins")
    if spins.shape != (lattice.num_sites, 3) or spins.dtype.kind not in "fiu":
        raise ValueError(f"dynamics.initial {init} holds a {spins.dtype} array of shape {spins.shape}, the lattice "
                         f"needs real spins of shape ({lattice.num_sites}, 3)")
    if not np.all(np.isfinite(spins)):
        raise ValueError(f"dynamics.initial {init} holds {np.count_nonzero(~np.isfinite(spins).all(axis=1))} spins "
                         f"that are not finite (NaN or inf)")
    off, span = spin_lengths(spins)
    if off.any():
        raise ValueError(f"dynamics.initial {init} holds spins that are not unit vectors: |S| ranges over {span}")
    return np.asarray(spins, dtype=np.float64)
