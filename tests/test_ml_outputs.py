"""Configs and outputs of ensembles, locality, committees and `spinforce learn`: every key is
checked by the config schema, and --overwrite removes only what the command writes."""
import numpy as np
import pytest

import spinforce
from spinforce.cli import main
from spinforce.data import DatasetWriter, read_dataset
from spinforce.outputs import prepare_outputs

from test_learn import TINY
from test_reliability_cli import generate_toml, snapshot, user_error

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_dataset(path, frames=3):
    lattice = spinforce.Lattice("square", 4)
    with DatasetWriter(path, lattice_kind="square", lattice_shape=(4, 4), num_sites=16, method="heisenberg",
                       model={}) as w:
        for k in range(frames):
            s = lattice.random_spins(k)
            w.append(s, -s, -1.0, time=float(k), step=k)
    return path


# --- config keys of the new sections are schema keys: one-line errors naming key and value ---------
@pytest.mark.parametrize("section, line, fragments", [
    ("ensemble", "seeds = [1, -2]", ("ensemble.seeds[1]", "-2")),
    ("ensemble", "seed = [1, 2]", ("unknown key 'seed'", "did you mean 'seeds'?")),
    ("ensemble", 'initial = ["random", "nel"]', ("ensemble.initial[1]", "did you mean 'neel'?")),
    ("ensemble", "kT = 0.1", ("ensemble.kT", "list")),
    ("labels", 'mu = "aut"', ("labels.mu", "did you mean 'auto'?")),
    ("labels", "mu = 0.5\nmu_from_time = -1.0", ("labels.mu_from_time", "-1.0")),
    ("label", "mu = 1.0", ("'label'", "did you mean 'labels'?")),
])
def test_generate_ensemble_config_errors(tmp_path, capsys, section, line, fragments):
    cfg = generate_toml(tmp_path / "cfg.toml")
    cfg.write_text(cfg.read_text() + f"[{section}]\n{line}\n")
    user_error(capsys, "generate", cfg, "--no-progress", contains=fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml"]


def test_labels_auto_needs_a_filling(tmp_path, capsys):
    cfg = generate_toml(tmp_path / "cfg.toml")
    cfg.write_text(cfg.read_text().replace("filling = 0.25", "mu = 0.0") + '[labels]\nmu = "auto"\n')
    user_error(capsys, "generate", cfg, "--no-progress", contains=("labels.mu", "model.filling"))


@pytest.mark.parametrize("data, fragments", [
    ({"split": "trajectroy"}, ("data.split", "did you mean 'trajectory'?")),
    ({"window": 2.5}, ("data.window", "2.5")),
    ({"test_fraction": 0.9}, ("data.test_fraction", "< 1 - data.validation_fraction")),
    ({"test_path": ["t.h5"]}, ("unknown key 'test_path'", "did you mean 'test_paths'?")),
])
def test_training_split_config_errors(tmp_path, data, fragments):
    from spinforce.ml.training import load_config
    with pytest.raises(ValueError) as err:
        load_config({"data": {"paths": ["a.h5"], **data}, "output": {"dir": "run"}}, tmp_path)
    assert all(f in str(err.value) for f in fragments), str(err.value)
    cfg = load_config({"data": {"paths": "a.h5", "test_paths": "t.h5"}, "output": {"dir": "run"}}, tmp_path)
    assert cfg["data"]["test_paths"] == [str(tmp_path / "t.h5")] and cfg["data"]["split"] == "trajectory"


@pytest.mark.parametrize("section, key, value, fragments", [
    ("train", "training", {"epoch": 3}, ("train.training", "did you mean 'epochs'?")),
    ("train", "network", {"hidden": [8.5]}, ("train.network.hidden",)),
    ("train", "descriptor", {"kind": "bond_shells", "cutof": 1.5}, ("train.descriptor", "did you mean 'cutoff'?")),
    ("train", "descriptor", {"cutoff": 1.5}, ("train.descriptor", "'kind'")),
    ("data", "method_settings", {"moments": 100}, ("data.method_settings", "'moments'")),
    ("data", "seeds", [1, "2"], ("data.seeds[1]",)),
    ("explore", "kT", [0.1, -0.1], ("explore.kT[1]",)),
    ("locality", "cutoffs", [1.0, -1.0], ("locality.cutoffs[1]",)),
    ("model", "filing", 0.4, ("unknown key 'filing'", "did you mean 'filling'?")),
])
def test_learn_config_errors(section, key, value, fragments):
    from spinforce.learn import check_config
    raw = {k: dict(v) for k, v in TINY.items()}
    raw[section][key] = value
    with pytest.raises(ValueError) as err:
        check_config(raw)
    assert all(f in str(err.value) for f in fragments), str(err.value)


def test_learn_config_keeps_training_defaults_to_the_training():
    from spinforce.learn import _training_config, check_config
    cfg = check_config(TINY)
    assert cfg["train"]["network"] == {"hidden": [8]}
    assert cfg["model"]["mu"] == "auto" and cfg["locality"]["cutoffs"] == [1.0]
    # loop.threads reaches the training unless train.training sets threads itself
    assert _training_config(cfg, ["a.h5"], "t.h5", "run")["training"]["threads"] == 1


@pytest.mark.parametrize("line, fragments", [
    ("analysis.ensembles=['mu', 'mu']", ("analysis.ensembles", "at most once")),
    ("analysis.replacments=2", ("did you mean 'replacements'?",)),
    ("model.J='3'", ("model.J", "without quotes")),
])
def test_locality_config_errors(tmp_path, line, fragments):
    from spinforce.locality import load_config
    (tmp_path / "loc.toml").write_text('data = "x.h5"\noutput = "loc"\n[model]\nJ = 3.0\nfilling = 0.4\n')
    with pytest.raises(ValueError) as err:
        load_config(tmp_path / "loc.toml", [line])
    assert all(f in str(err.value) for f in fragments), str(err.value)


# --- outputs: only the command's own files are replaced --------------------------------------------
def test_locality_refuses_a_folder_with_other_files(tmp_path, capsys):
    tiny_dataset(tmp_path / "states.h5")
    (tmp_path / "loc").mkdir()
    (tmp_path / "loc" / "paper.tex").write_text("draft")
    (tmp_path / "loc.toml").write_text('data = "states.h5"\noutput = "loc"\n[model]\nJ = 3.0\nmu = 0.0\n'
                                       '[analysis]\ncutoffs = [1.0]\nsites = 1\nreplacements = 1\n'
                                       'ensembles = "mu"\n')
    before = snapshot(tmp_path)
    for flags in ((), ("--overwrite",)):
        user_error(capsys, "locality", tmp_path / "loc.toml", "--no-progress", *flags, contains=("paper.tex",))
        assert snapshot(tmp_path) == before


def learn_files(out):
    """Files of an earlier `spinforce learn` run in every place it writes (HDF5 files that spinforce wrote)."""
    for rel in ("data/initial.h5", "data/initial.runs/run0.h5", "data/test.runs/run1.h5", "data/round0.h5",
                "rounds/round0/explore/run1.h5", "rounds/round0/explore/run1.checkpoint.h5"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        tiny_dataset(out / rel, frames=1)
    for rel in ("learn_state.json", "report.md", "rounds.csv", "locality/locality.json", "rounds/round0/model.ts",
                "rounds/round0/committee/committee.json", "rounds/round0/committee/member1/model.pt",
                "rounds/round0/committee/member1/plots/parity_val.png"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("x")


def test_learn_overwrite_removes_only_its_own_files(tmp_path):
    from spinforce.learn import check_config, learn, output_patterns
    out = tmp_path / "run"
    learn_files(out)
    (out / "rounds" / "round0" / "committee" / "member1" / "notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(FileExistsError, match="member1/notes.txt"):
        learn(check_config(TINY), out, overwrite=True, progress=False)
    assert snapshot(out) == before
    (out / "rounds" / "round0" / "committee" / "member1" / "notes.txt").unlink()
    # a file with a name of its own that spinforce did not write is not the command's either
    (out / "data" / "round1.h5").write_text("not hdf5")
    with pytest.raises(FileExistsError, match="round1.h5"):
        learn(check_config(TINY), out, overwrite=True, progress=False)
    (out / "data" / "round1.h5").unlink()
    removed = prepare_outputs(out, output_patterns(), command="spinforce learn", overwrite=True)
    assert len(removed) == 14 and list(out.iterdir()) == []


def test_committee_folder_holds_only_members(tmp_path):
    from spinforce.ml.committee import train_committee
    tiny_dataset(tmp_path / "a.h5")
    cfg = {"data": {"paths": [str(tmp_path / "a.h5")]}, "descriptor": {"kind": "bond_shells", "cutoff": 1.0},
           "model": {"hidden": [4]}, "training": {"epochs": 1}, "output": {"dir": "unused", "plots": False}}
    out = tmp_path / "committee"
    (out / "member0").mkdir(parents=True)
    (out / "member0" / "mine.txt").write_text("mine")
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(FileExistsError, match="member0/mine.txt"):
            train_committee(cfg, out, 2, progress=False, **flags)
    assert sorted(p.name for p in out.rglob("*")) == ["member0", "mine.txt"]


def test_ensemble_runs_folder_and_overwrite(tmp_path, capsys):
    cfg = generate_toml(tmp_path / "cfg.toml", output="merged.h5")
    cfg.write_text(cfg.read_text() + "[ensemble]\nseeds = [1, 2]\n")
    assert main(["generate", str(cfg), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "merged.runs").iterdir()) == ["run0.h5", "run1.h5"]
    merged = read_dataset(tmp_path / "merged.h5")
    assert merged.num_frames == 6 and sorted(set(merged.trajectory)) == [0, 1]
    # a bad start of one run: refused before any file is touched, also with --overwrite
    cfg.write_text(cfg.read_text().replace("seeds = [1, 2]", 'seeds = [1, 2]\ninitial = ["random", "neel"]'))
    before = snapshot(tmp_path)
    user_error(capsys, "generate", cfg, "--overwrite", "--no-progress", contains=("neel",))
    assert snapshot(tmp_path) == before
    # a file of the user's in the runs folder: nothing is replaced
    (tmp_path / "merged.runs" / "notes.txt").write_text("mine")
    cfg.write_text(cfg.read_text().replace('\ninitial = ["random", "neel"]', ""))
    before = snapshot(tmp_path)
    user_error(capsys, "generate", cfg, "--overwrite", "--no-progress", contains=("notes.txt",))
    assert snapshot(tmp_path) == before
    (tmp_path / "merged.runs" / "notes.txt").unlink()
    # --overwrite with a smaller ensemble: the runs of the larger one go, the others are rewritten
    cfg.write_text(cfg.read_text().replace("seeds = [1, 2]", "seeds = [3]"))
    assert main(["generate", str(cfg), "--overwrite", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "merged.runs").iterdir()) == ["run0.h5"]
    assert read_dataset(tmp_path / "merged.runs" / "run0.h5").provenance["config"]["dynamics"]["seed"] == 3
    assert read_dataset(tmp_path / "merged.h5").num_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml", "merged.h5", "merged.runs"]


def test_learn_state_is_staged_under_a_name_overwrite_knows(tmp_path, staged_files):
    from spinforce.learn import STATE_FILE, _State, output_patterns
    staged = staged_files
    _State(tmp_path / STATE_FILE, "fingerprint").finish("data", {"frames": 3}, 1.0)
    assert [p.name for p in staged] == [STATE_FILE + ".partial"]
    staged[0].write_text("left by a crash")
    removed = prepare_outputs(tmp_path, output_patterns(), command="spinforce learn", overwrite=True)
    assert sorted(p.name for p in removed) == sorted([STATE_FILE, STATE_FILE + ".partial"])
