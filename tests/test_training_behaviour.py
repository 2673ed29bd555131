"""Training behaviour against rules replayed here from the logged numbers: learning-rate
schedules, early stopping, the best-model reset when the energy weight is complete, datasets of
different lattice sizes, and the seeded, disjoint validation split (found from the outside)."""
import itertools
import math

import numpy as np
import pytest
import torch

import spinforce as sf
from spinforce.data import DatasetWriter
from spinforce.ml.model import load_model, read_model_record
from spinforce.ml.training import train

pytestmark = pytest.mark.usefixtures("single_thread")


def write_data(path, shape, frames, seed, energy_noise=0.0):
    lat = sf.Lattice("square", shape)
    heis = sf.Heisenberg(lat, J1=1.0)
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, lattice_kind="square", lattice_shape=lat.shape, num_sites=lat.num_sites,
                       method="heisenberg", model=heis.parameters(), seed=seed) as w:
        for k in range(frames):
            s = rng.normal(size=(lat.num_sites, 3)) + (k % 3) * np.array([0.0, 0.0, 1.0])
            s /= np.linalg.norm(s, axis=1, keepdims=True)
            r = heis.compute(s)
            w.append(s, r.fields, r.energy + energy_noise * lat.num_sites * rng.normal())
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return {"small": write_data(d / "small.h5", (4, 4), 8, seed=1),
            "large": write_data(d / "large.h5", (6, 6), 8, seed=2),
            "noisy": write_data(d / "noisy.h5", (4, 4), 8, seed=3, energy_noise=3.0)}


def config(paths, out, **training):
    t = {"seed": 1, "epochs": 6, "batch_size": 2, "learning_rate": 1e-2, "threads": 1, "energy_weight": 0.0,
         "energy_weight_start": 0, "energy_weight_ramp": 0, "early_stop_patience": 0}
    t.update(training)
    return {"data": {"paths": [str(p) for p in paths], "validation_fraction": 0.25},
            "descriptor": {"kind": "bond_shells", "cutoff": 1.5, "powers": [1, 2]},
            "model": {"hidden": [8], "activation": "silu", "dtype": "float64"},
            "training": t, "output": {"dir": str(out), "plots": False}}


# --- learning-rate schedules ----------------------------------------------------------------------
def test_constant_and_exponential_schedules(data, tmp_path):
    const = train(config([data["small"]], tmp_path / "c", lr_schedule="constant"), progress=False)
    assert [row["learning_rate"] for row in const.history] == [1e-2] * 6
    expo = train(config([data["small"]], tmp_path / "e", lr_schedule="exponential", lr_gamma=0.7), progress=False)
    # the logged rate is the one the epoch trained with: lr * gamma^(epoch - 1)
    np.testing.assert_allclose([row["learning_rate"] for row in expo.history], 1e-2 * 0.7 ** np.arange(6),
                               rtol=1e-12)


def test_plateau_schedule_follows_the_validation_torque(data, tmp_path):
    factor, patience, min_lr = 0.5, 1, 2e-3
    res = train(config([data["small"]], tmp_path / "p", epochs=12, learning_rate=0.3, lr_schedule="plateau",
                       lr_factor=factor, lr_patience=patience, min_lr=min_lr), progress=False)
    # Replay: a reduction by `factor` after more than `patience` epochs without a relative
    # improvement of 1e-4 of the validation torque RMSE, never below min_lr.
    lr, best, bad, expected = 0.3, math.inf, 0, []
    for row in res.history:
        expected.append(lr)
        value = row["val_torque_rmse"]
        if value < best * (1 - 1e-4):
            best, bad = value, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = max(lr * factor, min_lr), 0
    logged = [row["learning_rate"] for row in res.history]
    np.testing.assert_allclose(logged, expected, rtol=1e-12)
    assert logged[-1] < 0.3  # the schedule did act in this run


# --- early stopping and the best model -----------------------------------------------------------
def test_early_stop_after_patience_epochs_without_improvement(data, tmp_path):
    patience, min_delta = 2, 0.3
    res = train(config([data["small"]], tmp_path / "s", epochs=30, early_stop_patience=patience,
                       early_stop_min_delta=min_delta), progress=False)
    best, stale, stop, best_epoch = math.inf, 0, None, None
    for row in res.history:
        if row["val_torque_rmse"] < best * (1 - min_delta):
            best, stale, best_epoch = row["val_torque_rmse"], 0, row["epoch"]
        else:
            stale += 1
        if stale >= patience:
            stop = row["epoch"]
            break
    assert stop is not None and stop < 30
    assert res.stopped_early and len(res.history) == stop
    assert res.best_epoch == best_epoch == read_model_record(res.model_path)["metrics"]["epoch"]


def test_best_model_restarts_when_the_energy_weight_is_complete(data, tmp_path):
    # Energies with noise: once the energy term weighs in, the torques get worse, so the best
    # torque model overall comes from before; the kept model must come from after.
    start, ramp = 2, 3
    first_full = start + ramp  # 1-based epoch at which lambda first equals energy_weight
    res = train(config([data["noisy"]], tmp_path / "b", epochs=10, learning_rate=3e-2, energy_weight=50.0,
                       energy_weight_start=start, energy_weight_ramp=ramp), progress=False)
    lam = [row["energy_weight"] for row in res.history]
    np.testing.assert_allclose(lam, [0, 0] + [50.0 * k / ramp for k in (1, 2, 3)] + [50.0] * 5, rtol=1e-12)
    val = {row["epoch"]: row["val_torque_rmse"] for row in res.history}
    best, best_epoch = math.inf, None
    for epoch in range(first_full, 11):
        if val[epoch] < best * (1 - 1e-4):
            best, best_epoch = val[epoch], epoch
    assert min(val, key=val.get) < first_full  # otherwise this run would not test the reset
    assert res.best_epoch == best_epoch
    rec = read_model_record(res.model_path)
    assert rec["metrics"]["epoch"] == best_epoch
    assert rec["metrics"]["val"]["torque_rmse"] == pytest.approx(val[best_epoch], rel=1e-12)


# --- data: sizes and the validation split ---------------------------------------------------------
def per_frame_errors(model_path, path):
    """Squared torque error summed over sites, absolute energy error per site, sites: per frame."""
    from spinforce.data import read_dataset
    d = read_dataset(path)
    lat = d.lattice()
    model = load_model(model_path, lat)
    nb = lat.neighbor_table(model.neighbor_offsets)
    out = []
    for s, h, e in zip(d.spins, d.fields, d.energy):
        e_pred, h_pred = model(torch.from_numpy(s), nb)
        out.append(((np.cross(s, h_pred.detach().numpy() - h) ** 2).sum(), abs(float(e_pred) - e) / lat.num_sites,
                    lat.num_sites))
    return out


def find_split(metrics, errors_by_part, n_val):
    """The unique choice of n_val validation frames, (part, frame) pairs pooled over the parts,
    whose pooled torque RMSE is the logged one; checks that the remaining frames give the logged
    training RMSE."""
    frames = [(p, k) for p, errors in enumerate(errors_by_part) for k in range(len(errors))]
    matches = []
    for val in itertools.combinations(frames, n_val):
        sq = sum(errors_by_part[p][k][0] for p, k in val)
        sites = sum(errors_by_part[p][k][2] for p, k in val)
        if math.isclose(math.sqrt(sq / sites), metrics["val"]["torque_rmse"], rel_tol=1e-9):
            matches.append(val)
    assert len(matches) == 1, matches
    rest = [f for f in frames if f not in matches[0]]
    sq = sum(errors_by_part[p][k][0] for p, k in rest)
    sites = sum(errors_by_part[p][k][2] for p, k in rest)
    assert math.sqrt(sq / sites) == pytest.approx(metrics["train"]["torque_rmse"], rel=1e-9)
    energy = np.mean([errors_by_part[p][k][1] for p, k in rest])
    assert energy == pytest.approx(metrics["train"]["energy_mae_per_site"], rel=1e-9)
    return matches[0]


def test_mixed_lattice_sizes_and_a_seeded_disjoint_validation_split(data, tmp_path):
    paths = [data["small"], data["large"]]
    splits = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        res = train(config(paths, tmp_path / name, epochs=2, seed=seed), progress=False)
        rec = read_model_record(res.model_path)
        assert [r["lattice_shape"] for r in rec["training_data"]] == [[4, 4], [6, 6]]
        errors = [per_frame_errors(res.model_path, p) for p in paths]
        # round(0.25 * 16) frames over both datasets, held out by whole trajectories: every frame
        # here is an independent sample, a trajectory of its own
        splits[name] = find_split(rec["metrics"], errors, n_val=4)
    assert splits["a"] == splits["b"]  # the same seed holds out the same frames
    assert splits["a"] != splits["c"]  # another seed, another split
