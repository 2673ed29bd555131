"""The run-setup layer: one provider registry keyed by the config method names, used by every command."""
import numpy as np
import pytest

import spinforce as sf
from spinforce.ml.model import build_model, export_torchscript
from spinforce.run_setup import ELECTRON_METHODS, PROVIDERS, build_provider, check_method


def _method_configs(tmp_path) -> dict:
    """A small run config for every method of the registry."""
    lattice = {"kind": "square", "shape": [6, 6]}
    sd = {"J": 2.0, "mu": 0.0, "kT": 0.1}
    ts = export_torchscript(build_model(sf.Lattice("square", 6), "bond_shells", {"cutoff": 1.0}, [4], "tanh",
                                        "float64"), tmp_path / "m.ts")
    return {"ed": {"lattice": lattice, "model": sd, "method": {"name": "ed"}},
            "kpm": {"lattice": lattice, "model": sd, "method": {"name": "kpm", "moments": 40}},
            "heisenberg": {"lattice": lattice, "model": {"J1": -1.0}, "method": {"name": "heisenberg"}},
            "ml": {"lattice": lattice, "model": {}, "method": {"name": "ml", "path": str(ts)}}}


def test_every_provider_is_named_by_its_config_method(tmp_path):
    configs = _method_configs(tmp_path)
    assert set(configs) == set(PROVIDERS)
    spins = sf.Lattice("square", 6).random_spins(1)
    for name, cfg in configs.items():
        built = build_provider(cfg)
        assert built.provider.name == name
        assert (built.model is not None) == PROVIDERS[name].electrons
        assert np.isfinite(built.provider.compute(spins).energy)
    assert ELECTRON_METHODS == ("ed", "kpm")


def test_commands_take_the_methods_of_the_registry(tmp_path):
    from spinforce import generate, simulate
    run = {"output": str(tmp_path / "run.h5"),
           "dynamics": {"dt": 0.05, "alpha": 0.1, "steps": 10, "save_every": 5}}
    for name, cfg in _method_configs(tmp_path).items():
        checked = simulate.load_config({**run, **cfg})
        assert checked["method"]["name"] == name
        lattice, provider = simulate.build_provider(checked)
        assert provider.name == name and lattice.num_sites == 36
        if name in ELECTRON_METHODS:
            assert generate.check_config({**run, **cfg})["method"]["name"] == name
        else:  # training data comes from the exact electron solvers only
            with pytest.raises(ValueError, match="method.name must be one of 'ed', 'kpm'"):
                generate.check_config({**run, **cfg, "model": {"J": 2.0, "mu": 0.0}})


def test_method_errors_name_the_key_and_suggest():
    with pytest.raises(ValueError, match="method.name must be one of .*'heisenberg'.*did you mean 'kpm'"):
        check_method({"method": {"name": "kmp"}})
    with pytest.raises(ValueError, match=r"unknown key 'moment' in \[method\]; did you mean 'moments'"):
        check_method({"method": {"name": "kpm", "moment": 10}})
    with pytest.raises(ValueError, match="method.moments must be an integer >= 2, got 1"):
        check_method({"method": {"name": "kpm", "moments": 1}})


def test_config_source_is_a_file_or_a_shipped_example(tmp_path):
    from spinforce.generate import examples
    from spinforce.run_setup import config_source
    shipped = examples()
    assert config_source(None, "ed_quench_square", shipped) == shipped["ed_quench_square"]
    assert config_source(str(tmp_path / "a.toml"), None, shipped) == tmp_path / "a.toml"
    with pytest.raises(ValueError, match="exactly one of a CONFIG file and --example"):
        config_source(str(tmp_path / "a.toml"), "ed_quench_square", shipped)
    with pytest.raises(ValueError, match="unknown example 'ed_quench'; shipped examples: ed_quench_square, "):
        config_source(None, "ed_quench", shipped)


def test_unreadable_initial_spin_files_are_value_errors(tmp_path):
    from spinforce.run_setup import initial_spins
    lattice = sf.Lattice("square", 4)
    (tmp_path / "empty.npy").write_bytes(b"")
    np.savez(tmp_path / "archive.npz", spins=lattice.neel())
    (tmp_path / "archive.npy").write_bytes((tmp_path / "archive.npz").read_bytes())
    spins = lattice.neel()
    spins[3] = np.nan
    np.save(tmp_path / "nan.npy", spins)
    long = lattice.neel()
    long[5] *= 1.5
    np.save(tmp_path / "long.npy", long)
    for name, words in (("empty.npy", "is not a .npy array of spins"), ("archive.npy", "is an .npz archive"),
                        ("nan.npy", "holds 1 spins that are not finite"),
                        ("long.npy", r"not unit vectors: \|S\| ranges over \[1, 1.5\]")):
        cfg = {"dynamics": {"initial": str(tmp_path / name), "seed": 0}}
        with pytest.raises(ValueError, match=words):
            initial_spins(cfg, lattice)
