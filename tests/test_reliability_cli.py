"""Files, the command line and configs: no user file is lost, every user error is one line.

Each test names the item of the reliability review it guards (overwrite, demo, validation
before writing, OVF frames, last state, samples in analysis, error messages, coercions).
"""
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

import spinforce
from spinforce.cli import main
from spinforce.data import DatasetWriter, read_dataset

SQUARE = spinforce.Lattice("square", 4)


def user_error(capsys, *argv, contains=()):
    """Run the command line; it must fail with exit status 2 and one line naming the problem."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"spinforce {argv[0]}: error: "), err
    assert "Traceback" not in err
    for fragment in contains:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder):
    """{relative path: bytes} of every file under folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def heisenberg_dataset(path, frames=8, seed=0, lattice=SQUARE, nan_frame=None):
    rng = np.random.default_rng(seed)
    model = spinforce.Heisenberg(lattice, J1=1.0)
    with DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="heisenberg", model={"J1": 1.0}, seed=seed) as w:
        for k in range(frames):
            s = rng.normal(size=(lattice.num_sites, 3))
            s /= np.linalg.norm(s, axis=1, keepdims=True)
            r = model.compute(s)
            w.append(s, r.fields, r.energy)
    if nan_frame is not None:  # the writer refuses non-finite frames: a file from elsewhere may hold them
        with h5py.File(path, "a") as f:
            f["spins"][nan_frame, 1, 0] = np.nan
    return path


def train_toml(path, data, out_dir, **extra):
    lines = [f'[data]\npaths = ["{data}"]\nvalidation_fraction = 0.25',
             '[descriptor]\nkind = "bond_shells"\ncutoff = 1.0',
             '[model]\nhidden = [4]',
             '[training]\nepochs = 2\nbatch_size = 4\nthreads = 1\nenergy_weight_start = 0\nenergy_weight_ramp = 0'
             + "".join(f"\n{k} = {v}" for k, v in extra.items()),
             f'[output]\ndir = "{out_dir}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def generate_toml(path, output="run.h5", **dynamics):
    output = path.parent / output  # generate reads output relative to the working folder
    d = {"dt": 0.05, "alpha": 0.3, "steps": 2, "save_every": 1, "initial": '"random"', **dynamics}
    path.write_text(f'output = "{output}"\n[lattice]\nkind = "triangular"\nshape = [4, 4]\n'
                    '[model]\nJ = 2.0\nfilling = 0.25\nkT = 0.05\n[method]\nname = "ed"\n[dynamics]\n'
                    + "".join(f"{k} = {v}\n" for k, v in d.items()))
    return path


def simulate_toml(path, output="run.h5", ovf=False, **dynamics):
    d = {"dt": 0.05, "alpha": 0.2, "kT": 0.02, "steps": 20, "save_every": 10, **dynamics}
    path.write_text(f'output = "{output}"\novf = {str(ovf).lower()}\n[lattice]\nkind = "square"\nshape = [6, 6]\n'
                    '[method]\nname = "heisenberg"\n[model]\nJ1 = -1.0\n[dynamics]\n'
                    + "".join(f"{k} = {v}\n" for k, v in d.items()))
    return path


# --- 1. --overwrite removes only what a run writes -------------------------------------------------
def test_train_overwrite_in_a_project_folder_deletes_nothing(tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    heisenberg_dataset(project / "data.h5")
    train_toml(project / "train.toml", "data.h5", ".")  # the run folder is the project folder
    (project / "notes.txt").write_text("my notes")
    before = snapshot(project)
    user_error(capsys, "train", project / "train.toml", "--overwrite", "--no-progress",
               contains=("did not write", "data.h5", "nothing was changed"))
    assert snapshot(project) == before
    user_error(capsys, "train", project / "train.toml", "--no-progress", contains=("did not write",))
    assert snapshot(project) == before


@pytest.mark.slow  # two trainings
def test_train_overwrite_replaces_only_the_run_files(tmp_path, capsys):
    heisenberg_dataset(tmp_path / "data.h5")
    train_toml(tmp_path / "train.toml", "data.h5", "run")
    assert main(["train", str(tmp_path / "train.toml"), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert (run / "plots" / "parity_val.png").exists() and (run / "model.pt").exists()
    user_error(capsys, "train", tmp_path / "train.toml", "--no-progress", contains=("--overwrite",))
    (run / "plots" / "mine.txt").write_text("a file of the user's")
    before = snapshot(tmp_path)
    user_error(capsys, "train", tmp_path / "train.toml", "--overwrite", "--no-progress",
               contains=("plots/mine.txt",))
    assert snapshot(tmp_path) == before
    (run / "plots" / "mine.txt").unlink()
    # without plots the new run writes no plots/: the old run's plots go, nothing else does
    train_toml(tmp_path / "train.toml", "data.h5", "run")
    text = (tmp_path / "train.toml").read_text().replace("[output]\n", "[output]\nplots = false\n")
    (tmp_path / "train.toml").write_text(text)
    capsys.readouterr()
    assert main(["train", str(tmp_path / "train.toml"), "--overwrite", "--no-progress"]) == 0
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "log.csv", "metrics.json",
                                                      "model.pt"]
    assert (tmp_path / "data.h5").exists() and (tmp_path / "train.toml").exists()


@pytest.mark.slow  # two analyses with plots
def test_analyze_overwrite_removes_stale_results_and_keeps_foreign_files(tmp_path, capsys):
    traj = tmp_path / "traj.h5"
    _trajectory_with_samples(traj, frames=3, samples=0)
    out = tmp_path / "res"
    assert main(["analyze", str(traj), "--out", str(out), "--compare", str(traj), "--quiet"]) == 0
    assert (out / "correlation_compare.csv").exists()
    line = user_error(capsys, "analyze", traj, "--out", out, "--quiet", contains=("--overwrite",))
    assert "overwrite=True" not in line  # the command line speaks of its options, not of Python arguments
    assert main(["analyze", str(traj), "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert not (out / "correlation_compare.csv").exists()  # the old run's file went with --overwrite
    (out / "paper.tex").write_text("draft")
    before = snapshot(out)
    user_error(capsys, "analyze", traj, "--out", out, "--overwrite", "--quiet", contains=("paper.tex",))
    assert snapshot(out) == before


def test_prepare_outputs_is_the_one_rule(tmp_path):
    from spinforce.demo import output_patterns
    from spinforce.outputs import prepare_outputs
    demo = tmp_path / "demo"
    files = ["report.md", "figures.json", "data/ed_quench_0.h5", "model/model.pt", "model/model.ts",
             "model/plots/parity_val.png", "validation/ml.checkpoint.h5", "validation/analysis/summary.json",
             "quench/ml_quench_ovf/frame_000000100.ovf", "quench/analysis/clusters.png"]
    for name in files:
        (demo / name).parent.mkdir(parents=True, exist_ok=True)
        (demo / name).write_text("x")
    with pytest.raises(FileExistsError, match="use --overwrite"):
        prepare_outputs(demo, output_patterns(), command="spinforce demo")
    (demo / "model" / "README").write_text("mine")
    with pytest.raises(FileExistsError, match="model/README"):
        prepare_outputs(demo, output_patterns(), command="spinforce demo", overwrite=True)
    assert all((demo / name).exists() for name in files)
    (demo / "model" / "README").unlink()
    removed = prepare_outputs(demo, output_patterns(), command="spinforce demo", overwrite=True)
    assert len(removed) == len(files) and list(demo.iterdir()) == []


# --- 2. demo without --overwrite changes no file -----------------------------------------------------
def test_demo_without_overwrite_changes_no_existing_file(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "model").mkdir(parents=True)
    (out / "quench").mkdir()
    (out / "model" / "model.pt").write_bytes(b"an earlier model")
    (out / "quench" / "ml_quench.h5").write_bytes(b"an earlier quench")
    before = snapshot(out)
    tiny = ("--small", 6, "--large", 8, "--ed-runs", 1, "--ed-steps", 10, "--save-every", 5, "--random-samples", 1,
            "--perturbed-samples", 1, "--epochs", 1, "--validation-steps", 5, "--ml-steps", 5, "--ml-every", 5)
    user_error(capsys, "demo", "--out", out, "--quiet", *tiny, contains=("--overwrite",))
    assert snapshot(out) == before
    (out / "model" / "unrelated.txt").write_text("not the demo's")
    before = snapshot(out)
    user_error(capsys, "demo", "--out", out, "--quiet", "--overwrite", *tiny, contains=("model/unrelated.txt",))
    assert snapshot(out) == before


# --- 3. the whole config is checked before any output is touched --------------------------------------
def test_generate_overwrite_with_a_bad_setting_keeps_the_old_file(tmp_path, capsys):
    cfg = generate_toml(tmp_path / "cfg.toml", output="keep.h5")
    assert main(["generate", str(cfg), "--no-progress"]) == 0
    keep = (tmp_path / "keep.h5").read_bytes()
    capsys.readouterr()
    for bad in ('"neel"', '"tetrahedral2"', '"missing.npy"'):  # no Neel state on the triangular lattice
        generate_toml(cfg, output="keep.h5", initial=bad)
        code = main(["generate", str(cfg), "--overwrite", "--no-progress"])
        assert (tmp_path / "keep.h5").read_bytes() == keep
        assert code == 2 and "dynamics.initial" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml", "keep.h5"]


def test_failed_first_run_leaves_no_file_that_blocks_the_rerun(tmp_path, capsys):
    cfg = generate_toml(tmp_path / "cfg.toml", initial='"neel"')
    user_error(capsys, "generate", cfg, "--no-progress", contains=("neel",))
    assert not (tmp_path / "run.h5").exists() and not (tmp_path / "run.h5.partial").exists()
    generate_toml(cfg)
    assert main(["generate", str(cfg), "--no-progress"]) == 0
    assert read_dataset(tmp_path / "run.h5").num_frames == 3


def test_simulate_checks_the_model_file_before_touching_the_run(tmp_path, capsys):
    cfg = simulate_toml(tmp_path / "sim.toml")
    assert main(["simulate", str(cfg), "--quiet"]) == 0
    before = snapshot(tmp_path)
    (tmp_path / "sim.toml").write_text(cfg.read_text().replace('name = "heisenberg"', 'name = "ml"\npath = "no.ts"')
                                       .replace("J1 = -1.0\n", ""))
    before["sim.toml"] = (tmp_path / "sim.toml").read_bytes()
    user_error(capsys, "simulate", cfg, "--overwrite", "--quiet", contains=("no.ts",))
    assert snapshot(tmp_path) == before


# --- 4. simulate --overwrite removes the old OVF frames ----------------------------------------------
def test_simulate_overwrite_removes_old_ovf_frames(tmp_path, capsys):
    cfg = simulate_toml(tmp_path / "sim.toml", ovf=True)
    assert main(["simulate", str(cfg), "--quiet"]) == 0
    ovf = tmp_path / "run_ovf"
    assert sorted(p.name for p in ovf.iterdir()) == [f"frame_{k:09d}.ovf" for k in (0, 10, 20)]
    simulate_toml(cfg, ovf=True, steps=10, save_every=5)
    assert main(["simulate", str(cfg), "--overwrite", "--quiet"]) == 0
    assert sorted(p.name for p in ovf.iterdir()) == [f"frame_{k:09d}.ovf" for k in (0, 5, 10)]
    (ovf / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    user_error(capsys, "simulate", cfg, "--overwrite", "--quiet", contains=("notes.txt",))
    assert snapshot(tmp_path) == before


# --- 5. the run file always ends with the last state ------------------------------------------------
def test_run_file_holds_the_last_state_when_steps_is_not_a_multiple_of_save_every(tmp_path):
    from spinforce.simulate import simulate
    cfg = simulate_toml(tmp_path / "sim.toml", steps=25, save_every=10, checkpoint_every=0)
    result = simulate(cfg, progress=False)
    data = read_dataset(tmp_path / "run.h5")
    np.testing.assert_array_equal(data.step, [0, 10, 20, 25])
    np.testing.assert_array_equal(data.spins[-1], result.spins)
    assert data.time[-1] == pytest.approx(25 * 0.05, rel=1e-14)
    ref = spinforce.Heisenberg(spinforce.Lattice("square", 6), J1=-1.0).compute(result.spins)
    np.testing.assert_allclose(data.fields[-1], ref.fields, rtol=0, atol=1e-12)
    with h5py.File(tmp_path / "run.checkpoint.h5") as f:
        assert int(f.attrs["step"]) == 25
        np.testing.assert_array_equal(f["spins"][()], result.spins)


# --- 7. analyze uses trajectory frames only ---------------------------------------------------------
def _trajectory_with_samples(path, frames, samples, lattice=spinforce.Lattice("square", 8)):
    rng = np.random.default_rng(1)
    model = spinforce.Heisenberg(lattice, J1=-1.0)
    llg = spinforce.LLG(model, dt=0.1, alpha=0.5, kT=0.0, seed=1)
    with DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="heisenberg", model={"J1": -1.0}) as w:
        s = lattice.random_spins(2)
        for k in range(frames):
            r = model.compute(s)
            w.append(s, r.fields, r.energy, time=10.0 * k, step=100 * k)
            s = llg.run(s, 100, start_step=100 * k)
        for _ in range(samples):
            x = rng.normal(size=s.shape)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            r = model.compute(x)
            w.append(x, r.fields, r.energy)  # an independent sample: step -1, time NaN
    return path


def test_analyze_skips_independent_samples(tmp_path, capsys):
    import csv
    import json
    path = _trajectory_with_samples(tmp_path / "gen.h5", frames=4, samples=3)
    assert main(["analyze", str(path), "--quiet", "--out", str(tmp_path / "res")]) == 0
    printed = capsys.readouterr().out
    assert "analysed 4 trajectory frames" in printed and "skipped 3 independent samples" in printed
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["frames_analysed"] == 4 and summary["samples_skipped"] == 3
    rows = list(csv.DictReader(open(tmp_path / "res" / "timeseries.csv")))
    assert [float(r["time"]) for r in rows] == [0.0, 10.0, 20.0, 30.0]
    assert [int(r["step"]) for r in rows] == [0, 100, 200, 300]
    # the last frame analysed is the last trajectory frame, not a random sample
    s = read_dataset(path).spins[3]
    nb = SQUARE_8.neighbors(1)
    assert float(rows[-1]["bond_mean"]) == pytest.approx(float(np.einsum("ia,ija->", s, s[nb]) / nb.size), rel=1e-12)
    only = tmp_path / "only.h5"
    heisenberg_dataset(only)
    user_error(capsys, "analyze", only, "--quiet", contains=("no trajectory frames", "8 independent samples"))


SQUARE_8 = spinforce.Lattice("square", 8)


# --- 10. every user error is one line with exit status 2 ------------------------------------------
def test_unreadable_files_are_one_line_errors(tmp_path, capsys):
    good = heisenberg_dataset(tmp_path / "good.h5")
    raw = good.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "text.h5").write_text("not hdf5\n")
    for name in ("truncated.h5", "empty.h5", "text.h5"):
        # a truncated file is not taken for one another process holds open ("sblock" is no lock)
        user_error(capsys, "analyze", tmp_path / name, "--quiet", contains=(name, "not a complete HDF5 file"))
        train_toml(tmp_path / "train.toml", name, "run")
        user_error(capsys, "train", tmp_path / "train.toml", "--no-progress", contains=(name,))
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "empty.h5").read_bytes() == b""
    cfg = generate_toml(tmp_path / "gen.toml")
    for flag in ((), ("--overwrite",)):  # -o naming a file that is not spinforce's: never touched
        user_error(capsys, "generate", cfg, "-o", tmp_path / "text.h5", *flag, "--no-progress",
                   contains=("text.h5",))
        assert (tmp_path / "text.h5").read_text() == "not hdf5\n"
    user_error(capsys, "generate", cfg, "-o", tmp_path, "--no-progress", contains=("folder",))


@pytest.mark.parametrize("section, line, fragments", [
    ("model", 'J = "two"', ("model.J", "'two'", "without quotes")),
    ("dynamics", 'dt = "0.05"', ("dynamics.dt", "'0.05'", "without quotes")),
    ("dynamics", "alpha = true", ("dynamics.alpha", "True")),
    ("dynamics", "steps = 2.0", ("dynamics.steps", "integer")),
    ("lattice", "shape = [6.5, 6]", ("lattice.shape", "[6.5, 6]")),
    ("method", 'device = "tpu"', ("method.device", "'tpu'")),
    ("dynamics", "dtt = 0.1", ("unknown key 'dtt'", "did you mean 'dt'?")),
    ("method", 'name = "kpm"\nmomnets = 100', ("unknown key 'momnets'", "did you mean 'moments'?")),
    ("dynamic", "dt = 0.1", ("'dynamic'", "did you mean 'dynamics'?")),
    ("dynamics", 'integrator = "hun"', ("dynamics.integrator", "did you mean 'heun'?")),
])
def test_generate_config_errors_name_key_and_value(tmp_path, capsys, section, line, fragments):
    cfg = generate_toml(tmp_path / "cfg.toml")
    text = cfg.read_text()
    key = line.split(" =")[0].split("\n")[-1]
    if f"[{section}]\n" in text:
        lines = [x for x in text.splitlines() if not x.startswith(f"{key} =")]
        text = "\n".join(lines).replace(f"[{section}]", f"[{section}]\n{line}") + "\n"
    else:
        text += f"[{section}]\n{line}\n"
    cfg.write_text(text)
    user_error(capsys, "generate", cfg, "--no-progress", contains=fragments)
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.parametrize("line, fragments", [
    ("J1 = true", ("model.J1",)),
    ("field = [0, 0]", ("model.field",)),
    ("anisotropie = 0.1", ("did you mean 'anisotropy'?",)),
])
def test_simulate_config_errors_name_key_and_value(tmp_path, capsys, line, fragments):
    cfg = simulate_toml(tmp_path / "sim.toml")
    cfg.write_text(cfg.read_text().replace("J1 = -1.0", "J1 = -1.0\n" + line if "J1" not in line else line))
    user_error(capsys, "simulate", cfg, "--quiet", contains=fragments)
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.parametrize("extra, fragments", [
    ({"epoch": 3}, ("unknown key 'epoch'", "did you mean 'epochs'?")),
    ({"epochs": 2.5}, ("training.epochs", "2.5")),
    ({"device": '"tpu"'}, ("training.device", "'tpu'")),
    ({"learning_rate": '"1e-3"'}, ("training.learning_rate", "without quotes")),
])
def test_train_config_errors_name_key_and_value(tmp_path, capsys, extra, fragments):
    heisenberg_dataset(tmp_path / "data.h5")
    cfg = train_toml(tmp_path / "train.toml", "data.h5", "run", **extra)
    if "epochs" in extra:
        cfg.write_text(cfg.read_text().replace("epochs = 2\n", "", 1))
    user_error(capsys, "train", cfg, "--no-progress", contains=fragments)
    assert not (tmp_path / "run").exists()


def test_second_resume_on_a_file_in_use_is_a_one_line_error(tmp_path, capsys):
    cfg = simulate_toml(tmp_path / "sim.toml")
    assert main(["simulate", str(cfg), "--quiet"]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\n"
                               f"f = h5py.File({str(tmp_path / 'run.h5')!r}, 'a')\nprint('open', flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        user_error(capsys, "simulate", cfg, "--resume", "--steps", "30", "--quiet",
                   contains=("run.h5", "another process"))
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow  # trains and exports a small model
def test_export_overwrite_and_provider_inputs(tmp_path, capsys):
    heisenberg_dataset(tmp_path / "data.h5")
    assert main(["train", str(train_toml(tmp_path / "train.toml", "data.h5", "run")), "--no-progress"]) == 0
    assert main(["export", str(tmp_path / "run" / "model.pt"), "--torchscript", str(tmp_path / "m.ts")]) == 0
    (tmp_path / "notes.ts").write_text("not a model")
    user_error(capsys, "export", tmp_path / "run" / "model.pt", "--torchscript", tmp_path / "notes.ts", "--overwrite",
               contains=("notes.ts", "nothing was changed"))
    assert (tmp_path / "notes.ts").read_text() == "not a model"
    assert main(["export", str(tmp_path / "run" / "model.pt"), "--torchscript", str(tmp_path / "m.ts"),
                 "--overwrite"]) == 0
    s = torch.from_numpy(SQUARE.random_spins(0))
    for provider in (spinforce.Heisenberg(SQUARE, J1=1.0), spinforce.MLForceField(tmp_path / "m.ts", SQUARE)):
        with pytest.raises(ValueError, match="dense"):
            provider.compute(s.to_sparse())
        reference = provider.compute(s)
        with torch.inference_mode():
            made_there = s.clone()
            inside = provider.compute(s)
        for result in (provider.compute(made_there), inside):
            assert result.energy == pytest.approx(reference.energy, rel=1e-14)
            assert torch.allclose(result.fields, reference.fields, rtol=0, atol=1e-14)


# --- 11. messages that say what is wrong --------------------------------------------------------------
def test_training_on_non_finite_data_fails_up_front(tmp_path, capsys):
    heisenberg_dataset(tmp_path / "data.h5", nan_frame=5)
    cfg = train_toml(tmp_path / "train.toml", "data.h5", "run")
    user_error(capsys, "train", cfg, "--no-progress", contains=("data.h5", "spins", "frame 5"))
    assert not (tmp_path / "run").exists()



def test_training_on_spins_that_are_not_unit_vectors_fails_up_front(tmp_path, capsys):
    heisenberg_dataset(tmp_path / "data.h5")
    with h5py.File(tmp_path / "data.h5", "a") as f:  # a file from elsewhere: spins of length 2 in frame 3
        f["spins"][3] *= 2.0
    cfg = train_toml(tmp_path / "train.toml", "data.h5", "run")
    user_error(capsys, "train", cfg, "--no-progress", contains=("data.h5", "not unit vectors", "frame 3"))
    assert not (tmp_path / "run").exists()

SD = {"lattice": "square", "shape": [4, 4], "t": 1.0, "t2": 0.0, "t3": 0.0, "J": 2.0, "mu": -1.0, "filling": None,
      "kT": 0.05}


@pytest.mark.parametrize("second, fragments", [
    (("heisenberg", {"J1": 1.0}), ("label different models", "s-d by method 'ed'", "heisenberg by method 'heisenberg'")),
    (("ed", {**SD, "J": 1.0}), ("label different s-d models", "J = 2.0 in", "but 1.0 in")),
    (("kpm", {**SD, "t": 0.5}), ("t = 1.0 in", "but 0.5 in")),
    (("ed", {**SD, "kT": 0.01}), ("kT = 0.05 in", "but 0.01 in")),
    (("ml", {}), ("output of an ML simulation", "not exact labels")),
])
def test_training_refuses_datasets_of_other_models_and_of_ml_runs(tmp_path, capsys, second, fragments):
    import json

    def labelled(name, method, model, seed=0):
        path = heisenberg_dataset(tmp_path / name, seed=seed)
        with h5py.File(path, "a") as f:
            f.attrs["method"], f.attrs["model"] = method, json.dumps(model)
        return name

    def train_on(*names):
        cfg = train_toml(tmp_path / "train.toml", names[0], "run")
        cfg.write_text(cfg.read_text().replace(f'paths = ["{names[0]}"]', f"paths = {json.dumps(names)}"))
        return cfg

    a, b = labelled("a.h5", "ed", SD), labelled("b.h5", *second, seed=1)
    user_error(capsys, "train", train_on(a, b), "--no-progress", contains=("b.h5", *fragments))
    assert not (tmp_path / "run").exists()
    # the s-d model at one mu (by ed and kpm) and at a filling: one force field without mu input
    c = labelled("c.h5", "kpm", {**SD, "mu": -1.0}, seed=2)
    d = labelled("d.h5", "ed", {**SD, "mu": None, "filling": 0.3}, seed=3)
    assert main(["train", str(train_on(a, c, d)), "--no-progress"]) == 0, capsys.readouterr().err
    # at another mu, or labelled at several: two systems for a model that has no mu input
    other = labelled("other.h5", "kpm", {**SD, "mu": 0.5}, seed=2)
    several = labelled("several.h5", "ed", {**SD, "mu": None, "mus": [-1.0, 0.0]}, seed=4)
    for names, fragments in (((a, d, other), ("a.h5 and ", "other.h5 are labelled", "mu = -1 and 0.5", "model.mu_input = true")),
                             ((d, several), ("several.h5", "several chemical potentials (mu = -1, 0)",
                                             "model.mu_input = true"))):
        user_error(capsys, "train", train_on(*names), "--no-progress", contains=fragments)


def test_resume_messages_name_the_differences_in_plain_values(tmp_path):
    kwargs = dict(lattice_kind="square", lattice_shape=(4, 4), num_sites=16, method="heisenberg")
    with DatasetWriter(tmp_path / "a.h5", model={"J1": 1.0, "J2": 0.5, "field": [0, 0, 1]}, seed=9, **kwargs) as w:
        w.append(SQUARE.ferromagnetic(), np.zeros((16, 3)), 0.0, step=0)
    with pytest.raises(ValueError) as err:
        DatasetWriter(tmp_path / "a.h5", model={"J1": 1.0, "J2": 0.5, "field": [0, 0, 1]}, seed=10, resume=True,
                      **kwargs)
    assert "seed is 9" in str(err.value) and "np." not in str(err.value)
    with pytest.raises(ValueError) as err:
        DatasetWriter(tmp_path / "a.h5", model={"J1": 2.0, "J2": 0.5, "field": [0, 0, 1]}, seed=9, resume=True,
                      **kwargs)
    assert "J1: 1.0 -> 2.0" in str(err.value) and "J2" not in str(err.value) and "field" not in str(err.value)
    with pytest.raises(FileExistsError) as err:
        DatasetWriter(tmp_path / "a.h5", model={}, **kwargs)
    assert "overwrite=True" not in str(err.value) and "--overwrite" in str(err.value)


def test_generate_reports_what_it_did(tmp_path, capsys):
    cfg = generate_toml(tmp_path / "cfg.toml")
    assert main(["generate", str(cfg), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().endswith("run.h5: 3 frames")
    assert main(["generate", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "resumed" not in out
    generate_toml(cfg, alpha=0.5)
    user_error(capsys, "generate", cfg, "--no-progress", contains=("dynamics.alpha: 0.3 -> 0.5",))
    line = user_error(capsys, "train", tmp_path / "missing.toml")
    assert "overwrite=" not in line


def test_allocation_failures_are_one_line_errors(tmp_path, capsys, monkeypatch):
    import spinforce.simulate

    def huge(cfg):  # a real allocator failure: 4.5 PB is more than any machine has
        return torch.empty(2**49, dtype=torch.uint8)

    monkeypatch.setattr(spinforce.simulate, "build_provider", huge)
    user_error(capsys, "simulate", simulate_toml(tmp_path / "sim.toml"), "--quiet",
               contains=("out of memory", "562,950 GB more"))
    assert not (tmp_path / "run.h5").exists()
