"""`spinforce train` and `spinforce learn` on several processes (torch.distributed, gloo): 2 ranks
follow the loss curve of 1 rank in float64, checkpoints and learn's state resume with another
number of ranks, rank 0 alone writes, and bad launches are clear errors."""
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spinforce  # before torch (also in the spawned ranks)
import torch
import torch.multiprocessing as mp

from spinforce.data import read_dataset
from spinforce.learn import check_config, learn
from spinforce.ml import training
from spinforce.ml.training import train
from config_files import write_toml
from test_learn import Stop, stop_at
from test_training_behaviour import write_data

pytestmark = pytest.mark.usefixtures("single_thread")
TOL = 1e-10  # 1 vs 2 ranks: the same sums, added in another order
EPOCHS = 6


@pytest.fixture(scope="module", autouse=True)
def default_dtype_of_a_fresh_process():
    # The initial weights follow torch's default dtype (another test module sets float64); the
    # launched ranks start with float32, so the run on one process here must too.
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 10 frames, split by frame: 2 validation, 1 test, 7 training = mini-batches of 3, 3 and 1;
    # in the batch of 1, rank 0 of 2 has no snapshot and adds nothing.
    return write_data(tmp_path_factory.mktemp("data") / "d.h5", (4, 4), 10, seed=4)


def config(path, out, epochs=EPOCHS):
    # the energy term joins at epoch 3: a parameter only it trains (the energy shift) has no
    # gradient before, on one rank as on two
    return {"data": {"paths": [str(path)], "validation_fraction": 0.2, "test_fraction": 0.1, "split": "frame"},
            "descriptor": {"kind": "bond_shells", "cutoff": 1.5, "powers": [1, 2]},
            "model": {"hidden": [8], "activation": "silu", "dtype": "float64"},
            "training": {"seed": 3, "epochs": epochs, "batch_size": 3, "learning_rate": 1e-2, "threads": 1,
                         "energy_weight": 1.0, "energy_weight_start": 2, "energy_weight_ramp": 2,
                         "early_stop_patience": 0, "lr_schedule": "plateau", "lr_patience": 1},
            "output": {"dir": str(out), "plots": False}}


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The uninterrupted run on one process."""
    return train(config(dataset, tmp_path_factory.mktemp("one") / "run"), progress=False)


def assert_same_curve(history, reference_history, epochs=EPOCHS):
    assert len(history) == len(reference_history) == epochs
    for got, want in zip(history, reference_history):
        for key, value in want.items():
            assert float(got[key]) == pytest.approx(float(value), rel=TOL, abs=TOL), (key, got["epoch"])


def assert_same_model(path, reference_path):
    got = torch.load(path, weights_only=True)["state_dict"]
    want = torch.load(reference_path, weights_only=True)["state_dict"]
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=TOL, atol=TOL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(command: str, cfg: dict, config_path: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 -m spinforce COMMAND CONFIG`, cfg written as TOML to config_path
    (top-level keys, then one table per dict). The ranks import the spinforce this test imports
    (installed, or the source tree in development)."""
    write_toml(cfg, config_path)
    here = str(Path(spinforce.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
               OMP_NUM_THREADS="1")
    with subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}", "-m", "spinforce", command, str(config_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            launcher.terminate()  # torchrun stops its ranks on SIGTERM (on SIGKILL they would stay)
            launcher.communicate(timeout=60)
            raise
    return subprocess.CompletedProcess(launcher.args, launcher.returncode, stdout, stderr)


@pytest.mark.slow  # starts 2 processes that import torch
def test_torchrun_two_ranks_follow_the_one_rank_loss_curve(dataset, reference, tmp_path):
    run = torchrun("train", config(dataset, tmp_path / "run"), tmp_path / "train.toml")
    assert run.returncode == 0, run.stderr[-3000:]
    with open(tmp_path / "run" / "log.csv") as f:
        history = list(csv.DictReader(f))
    assert_same_curve(history, reference.history)
    print("max |loss(2 ranks) - loss(1 rank)| =",
          max(abs(float(a["loss"]) - b["loss"]) for a, b in zip(history, reference.history)))
    assert_same_model(tmp_path / "run" / "model.pt", reference.model_path)
    test_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    want = json.loads((reference.run_dir / "metrics.json").read_text())["test"]
    assert test_metrics["frames"] == want["frames"] == 1
    for key in ("torque_rmse", "field_rmse", "energy_mae_per_site"):
        assert test_metrics[key] == pytest.approx(want[key], rel=TOL)
    # rank 0 alone prints the summary and shows the progress bar
    assert run.stdout.count('"best_epoch"') == 1
    assert run.stderr.count(f" 0/{EPOCHS} [") == 1, run.stderr[-3000:]


def _spawned(rank, world, store, jobs, out):
    """One rank of a run on `world` processes in a process group the caller started."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        results = {}
        for name, cfg, resume in jobs:
            try:
                result = train(cfg, resume=resume, progress=False)
                results[name] = {"rank": result.rank, "history": result.history}
            except FileExistsError as err:
                results[name] = {"error": str(err)}
        # every rank's final model: the ranks must hold one model
        results["params"] = {k: v.clone() for k, v in torch.load(Path(cfg["output"]["dir"]) / "checkpoint.pt",
                                                                  weights_only=False)["model"].items()}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # starts 2 processes that import torch
def test_checkpoints_resume_with_another_number_of_ranks(dataset, reference, tmp_path):
    # interrupted after 3 epochs on 2 ranks, resumed on 1 ...
    two_then_one = config(dataset, tmp_path / "two_then_one", epochs=3)
    # ... and after 3 epochs on 1 rank, resumed on 2
    one_then_two = config(dataset, tmp_path / "one_then_two", epochs=3)
    train(one_then_two, progress=False)
    jobs = [("existing", one_then_two, False),  # a finished run in the folder, neither resume nor overwrite
            ("first", two_then_one, False),
            ("resumed", config(dataset, tmp_path / "one_then_two"), True)]
    mp.spawn(_spawned, args=(2, tmp_path / "store", jobs, tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r, got in enumerate(ranks):
        # a rank-0 check that fails stops every rank, with the same error
        assert "resume" in got["existing"]["error"], got["existing"]
        assert got["resumed"]["rank"] == r
        assert_same_curve(got["resumed"]["history"], reference.history)
    for key, value in ranks[0]["params"].items():
        assert torch.equal(ranks[1]["params"][key], value), key  # bitwise: the ranks step alike
    resumed = train(config(dataset, tmp_path / "two_then_one"), resume=True, progress=False)
    assert_same_curve(resumed.history, reference.history)
    assert_same_model(resumed.model_path, reference.model_path)


def test_bad_launch_environment_is_a_clear_error(dataset, tmp_path, monkeypatch):
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK, MASTER_ADDR, MASTER_PORT are not set: launch with torchrun"):
        train(config(dataset, tmp_path / "a"), progress=False)
    with pytest.raises(ValueError, match=r"are not set: launch with torchrun \(torchrun --nproc_per_node=2 -m "
                                         r"spinforce learn CONFIG\)"):
        learn(check_config(LEARN), tmp_path / "l", progress=False)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be a number"):
        train(config(dataset, tmp_path / "b"), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "l").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: the run of one process
    assert train(config(dataset, tmp_path / "c", epochs=1), progress=False).rank == 0


# --- spinforce learn ------------------------------------------------------------------------------
# Two rounds: ED-LLG data and held-out quenches (rank 0), a committee of 2 trained on both ranks
# (12 frames, 7 to train on: mini-batches of 5 and 2, shared out 2+3 and 1+1), evaluate, one
# ML-LLG run with it and 2 frames labelled by ED (rank 0), a committee trained on all 14, report.
LEARN = {
    "model": {"kind": "square", "J": 3.0, "kT": 0.1, "filling": 0.4, "mu": "auto"},
    "data": {"shape": [4, 4], "steps": 40, "save_every": 10, "seeds": [1, 2], "perturbed": 1},
    "test": {"shape": [4, 4], "steps": 20, "save_every": 10, "seeds": [101]},
    "train": {"members": 2, "validation_fraction": 0.25, "descriptor": {"kind": "bond_shells", "cutoff": 1.5},
              "network": {"hidden": [8]},
              "training": {"epochs": 3, "batch_size": 5, "learning_rate": 1e-2, "energy_weight_start": 1,
                           "energy_weight_ramp": 1, "early_stop_patience": 0}},
    "explore": {"shape": [4, 4], "runs": 1, "steps": 10, "save_every": 5},
    "label": {"frames": 2},
    "loop": {"rounds": 2, "threads": 1},
}
MEMBERS = [Path(f"rounds/round{r}/committee/member{k}") for r in range(2) for k in range(2)]
STAGES = ["data", "test", "round0/train", "round0/evaluate", "round0/explore", "round0/label", "round1/train",
          "round1/evaluate", "report"]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """The uninterrupted learn run on one process."""
    out = tmp_path_factory.mktemp("learn") / "one"
    learn(check_config(LEARN), out, progress=False)
    return out


def done(out: Path) -> list:
    """The finished stages of the learn run in `out`."""
    return json.loads((out / "learn_state.json").read_text())["done"]


def read_csv(path) -> list:
    with open(path) as f:
        return list(csv.DictReader(f))


def assert_same_learning(out: Path, reference: Path):
    """The run in `out` made the exact datasets of the reference bit for bit (rank 0 made them),
    and to TOL its committees (loss curves, weights, predictions), the frames it labelled (picked
    by an ML-LLG run with the first committee) and the rounds table."""
    assert done(out) == STAGES
    for name in ("initial.h5", "test.h5"):
        got, want = read_dataset(out / "data" / name), read_dataset(reference / "data" / name)
        for key in ("spins", "fields", "energy"):
            np.testing.assert_array_equal(getattr(got, key), getattr(want, key), err_msg=f"{name} {key}")
    got, want = read_dataset(out / "data" / "round0.h5"), read_dataset(reference / "data" / "round0.h5")
    np.testing.assert_array_equal(got.step, want.step)  # the same frames picked
    np.testing.assert_array_equal(got.trajectory, want.trajectory)
    for key in ("spins", "fields", "energy"):
        np.testing.assert_allclose(getattr(got, key), getattr(want, key), rtol=TOL, atol=TOL, err_msg=key)
    for member in MEMBERS:
        assert_same_curve(read_csv(out / member / "log.csv"), read_csv(reference / member / "log.csv"),
                          epochs=LEARN["train"]["training"]["epochs"])
        assert_same_model(out / member / "model.pt", reference / member / "model.pt")
    lattice = spinforce.Lattice("square", (4, 4))
    spins = lattice.random_spins(7)
    got, want = (spinforce.MLForceField(p / "model.ts", lattice).compute(spins) for p in (out, reference))
    np.testing.assert_allclose(got.fields, want.fields, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(got.uncertainty, want.uncertainty, rtol=TOL, atol=TOL)
    assert got.energy == pytest.approx(want.energy, rel=TOL)
    rows, reference_rows = read_csv(out / "rounds.csv"), read_csv(reference / "rounds.csv")
    assert len(rows) == len(reference_rows) == 2
    for row, reference_row in zip(rows, reference_rows):
        assert row.keys() == reference_row.keys()
        for key, value in reference_row.items():
            assert float(row[key]) == pytest.approx(float(value), rel=TOL, abs=TOL), key
    for r in range(2):
        index = json.loads((out / f"rounds/round{r}/committee/committee.json").read_text())
        assert index["members"] == ["member0/model.pt", "member1/model.pt"] and index["seeds"] == [0, 1]


@pytest.mark.slow  # starts 2 processes that import torch
def test_torchrun_learn_on_two_ranks_equals_one(learned, tmp_path):
    run = torchrun("learn", LEARN, tmp_path / "learn.toml")  # writes into tmp_path / "learn"
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_learning(tmp_path / "learn", learned)
    # rank 0 alone reports and shows progress
    assert run.stdout.count("round 0: 12 training frames") == run.stdout.count("round 1: 14 training frames") == 1
    assert run.stderr.count("[learn] stage round0/train") == 1, run.stderr[-3000:]


class stopped_in_member:
    """Within it, training stops (Stop) at the start of epoch `epoch` of the committee member
    trained with seed `seed`, on every rank alike: an interruption after that member's
    checkpoint of `epoch` epochs."""

    def __init__(self, seed: int, epoch: int):
        self.at = (seed, epoch)

    def __enter__(self):
        self.weight_at = training.energy_weight_at

        def weight_at(epoch, t):  # called by every rank at the start of every epoch
            if (t["seed"], epoch) == self.at:
                raise Stop(f"member with seed {t['seed']}, epoch {epoch}")
            return self.weight_at(epoch, t)
        training.energy_weight_at = weight_at

    def __exit__(self, *exc):
        training.energy_weight_at = self.weight_at


def _spawned_learn(rank, world, store, jobs, out_dir):
    """One rank of learn runs on `world` processes, each job (folder, where it stops: None, "member"
    (stopped_in_member(seed=1, epoch=2)) or a stage (before it is recorded, by learn's
    _interrupt hook)); writes how many snapshots this rank trained on to
    out_dir/snapshots{rank}.json."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    snapshots, batch_loss = [0], training._batch_loss

    def counted(model, part, sel, *rest):
        snapshots[0] += len(sel)
        return batch_loss(model, part, sel, *rest)
    training._batch_loss = counted
    try:
        for out, stop in jobs:
            if stop is None:
                learn(check_config(LEARN), out, progress=False)
            elif stop == "member":
                with stopped_in_member(seed=1, epoch=2), pytest.raises(Stop):
                    learn(check_config(LEARN), out, progress=False)
            else:
                with pytest.raises(Stop):
                    learn(check_config(LEARN), out, progress=False, _interrupt=stop_at(stop, "before"))
        (Path(out_dir) / f"snapshots{rank}.json").write_text(json.dumps(snapshots[0]))
    finally:
        training._batch_loss = batch_loss
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # starts 2 processes that import torch
def test_learn_resumes_with_another_number_of_ranks(learned, tmp_path):
    # Interrupted in the middle of the committee's second member on 1 rank, resumed on 2 ...
    with stopped_in_member(seed=1, epoch=2), pytest.raises(Stop):
        learn(check_config(LEARN), tmp_path / "one_then_two", progress=False)
    assert done(tmp_path / "one_then_two") == ["data", "test"]  # interrupted in round0/train
    # ... and on 2 ranks, interrupted there too, then after rank 0's ML-LLG run of round 0
    # (before it was recorded), and resumed on 1.
    jobs = [(tmp_path / "one_then_two", None), (tmp_path / "two_then_one", "member"),
            (tmp_path / "two_then_one", "round0/explore")]
    mp.spawn(_spawned_learn, args=(2, tmp_path / "store", jobs, tmp_path), nprocs=2, join=True)
    assert done(tmp_path / "two_then_one") == STAGES[:4]
    assert (tmp_path / "two_then_one" / "rounds/round0/explore/run0.h5").exists()
    # Data parallel, every epoch's mini-batches shared out: in round 0 (batches of 5 and 2) ranks 0
    # and 1 trained on 3 and 4 snapshots per epoch, in round 1 on 4 and 5 (member 0: 5, 2, 2) and
    # 4 and 6 (member 1: 5, 5). On 2 ranks ran: in one_then_two 1 epoch of round 0 and 3 of each
    # member of round 1, in two_then_one all 6 of round 0.
    assert [json.loads((tmp_path / f"snapshots{r}.json").read_text()) for r in range(2)] == [
        3 * 7 + 4 * 3 + 4 * 3, 4 * 7 + 5 * 3 + 6 * 3]
    learn(check_config(LEARN), tmp_path / "two_then_one", progress=False)
    for out in ("one_then_two", "two_then_one"):
        assert_same_learning(tmp_path / out, learned)
