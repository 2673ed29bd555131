"""Trajectory ids in datasets and held-out splits by whole trajectories."""
import h5py
import numpy as np
import pytest
import torch

from spinforce.data import DatasetWriter, default_trajectories, read_dataset
from spinforce.ml import training
from spinforce.ml.training import frame_groups, split_groups


def write(path, steps, trajectories=None, n=4):
    rng = np.random.default_rng(len(steps))
    with DatasetWriter(path, lattice_kind="square", lattice_shape=(2, 2), num_sites=n, method="heisenberg",
                       model={}) as w:
        for k, step in enumerate(steps):
            s = rng.normal(size=(n, 3))
            s /= np.linalg.norm(s, axis=1, keepdims=True)
            w.append(s, -s, -1.0, time=float(step), step=step,
                     trajectory=None if trajectories is None else trajectories[k])


def test_writer_ids_and_old_files(tmp_path):
    steps = [0, 10, 20, -1, -1]
    write(tmp_path / "a.h5", steps)
    assert list(read_dataset(tmp_path / "a.h5").trajectory) == [0, 0, 0, 1, 2]
    # A file from before the trajectory column reads with the documented default ...
    with h5py.File(tmp_path / "a.h5", "a") as f:
        del f["trajectory"]
    assert list(read_dataset(tmp_path / "a.h5").trajectory) == [0, 0, 0, 1, 2]
    assert list(default_trajectories(np.array([-1, 0, 5, -1]))) == [1, 0, 0, 2]
    # ... and a resumed old file gets the column, then continues it.
    with DatasetWriter(tmp_path / "a.h5", lattice_kind="square", lattice_shape=(2, 2), num_sites=4,
                       method="heisenberg", model={}, resume=True) as w:
        w.append(np.eye(3)[[0, 1, 2, 0]], np.zeros((4, 3)), 0.0, step=-1)
        w.append(np.eye(3)[[0, 1, 2, 0]], np.zeros((4, 3)), 0.0, step=0, trajectory=7)
    assert list(read_dataset(tmp_path / "a.h5").trajectory) == [0, 0, 0, 1, 2, 3, 7]


def random_files(rng, count):
    """Per file, trajectory ids of its frames: a few runs of random length and some samples."""
    files = []
    for _ in range(count):
        runs = [np.full(rng.integers(3, 30), t) for t in range(rng.integers(1, 5))]
        samples = 100 + np.arange(rng.integers(0, 6))
        files.append(rng.permutation(np.concatenate(runs + [samples])))
    return files


@pytest.mark.parametrize("window", [0, 4])
def test_split_never_divides_a_trajectory(window):
    rng = np.random.default_rng(0)
    for trial in range(20):
        files = random_files(rng, 3)
        groups = [frame_groups(ids, "trajectory", window) for ids in files]
        splits = split_groups(groups, (0.2, 0.15), seed=trial)
        total = sum(len(ids) for ids in files)
        sizes = np.zeros(3)
        for ids, g, parts in zip(files, groups, splits):
            assert sorted(np.concatenate(parts)) == list(range(len(ids)))   # every frame exactly once
            where = np.empty(len(ids), dtype=int)
            for h, idx in enumerate(parts):
                where[idx] = h
                sizes[h] += len(idx)
            for t in np.unique(ids):
                if window == 0:  # no trajectory in two splits
                    assert len(set(where[ids == t])) == 1
            for grp in np.unique(g):  # no group (trajectory or time window) in two splits
                assert len(set(where[g == grp])) == 1
                if window:
                    members = np.flatnonzero(g == grp)
                    assert len(members) <= window and len(set(ids[members])) == 1
        assert sizes.sum() == total and sizes[0] > 0


def test_frame_split_is_the_old_random_split():
    # Every frame its own group: exactly the former seeded choice of round(f * M) frames.
    M, seed = 40, 3
    splits = split_groups([frame_groups(np.zeros(M, int), "frame")], (0.25, 0.0), seed)
    order = np.random.default_rng([seed, 0]).permutation(M)
    assert list(splits[0][1]) == sorted(order[:10])


def test_training_holds_out_whole_trajectories(tmp_path):
    write(tmp_path / "a.h5", list(range(0, 60, 10)) * 3 + [-1] * 4, [0] * 6 + [1] * 6 + [2] * 6 + [None] * 4)
    write(tmp_path / "b.h5", list(range(0, 50, 10)) * 2, [0] * 5 + [1] * 5)
    write(tmp_path / "c.h5", [-1, -1, -1])
    cfg = training.load_config({"data": {"paths": ["a.h5", "b.h5"], "test_paths": ["c.h5"],
                                         "validation_fraction": 0.2, "test_fraction": 0.2},
                                "output": {"dir": "run"}}, tmp_path)
    parts, _, records = training._load_parts(cfg, torch.float64, 1, torch.device("cpu"))
    assert [r["role"] for r in records] == ["train", "train", "test"]
    assert list(parts[2].test) == [0, 1, 2] and len(parts[2].train) == 0
    for part, path in zip(parts[:2], ("a.h5", "b.h5")):
        ids = read_dataset(tmp_path / path).trajectory
        for split in ("train", "val", "test"):
            others = [s for s in ("train", "val", "test") if s != split]
            mine = set(ids[getattr(part, split)])
            assert not mine & set(ids[np.concatenate([getattr(part, o) for o in others])])
    assert sum(len(p.val) for p in parts[:2]) > 0 and sum(len(p.test) for p in parts[:2]) > 0


# --- ensembles of LLG runs, merged and labelled at a fixed mu -------------------------------------------
def ensemble_settings(output) -> dict:
    """An [ensemble] of 4 short ED runs on 4x4 (2 seeds x 2 starts), labelled at a fixed mu."""
    return {
        "output": str(output),
        "lattice": {"kind": "square", "shape": [4, 4]},
        "model": {"J": 3.0, "filling": 0.4, "kT": 0.05},
        "method": {"name": "ed"},
        "dynamics": {"dt": 0.05, "alpha": 0.2, "kT": 0.01, "steps": 20, "save_every": 10, "seed": 1},
        "samples": {"random": 1},
        "ensemble": {"seeds": [1, 2], "initial": ["random", "ferromagnetic"]},
        "labels": {"mu": "auto", "mu_from_time": 0.5},
    }


def ensemble_config(tmp_path):
    import spinforce.generate as gen
    return gen.check_config(ensemble_settings(tmp_path / "merged.h5"))


def test_ensemble_merged_and_labelled_at_fixed_mu(tmp_path):
    import spinforce as sf
    import spinforce.generate as gen
    cfg = ensemble_config(tmp_path)
    summary = gen.generate_ensemble(cfg, progress=False)
    d = read_dataset(tmp_path / "merged.h5")
    runs = [read_dataset(tmp_path / "merged.runs" / f"run{k}.h5") for k in range(4)]
    assert summary["runs"] == 4 and d.num_frames == sum(r.num_frames for r in runs) == 4 * (3 + 1)
    # one id per run, one per independent sample, none shared between runs
    assert len(np.unique(d.trajectory)) == 4 * 2
    assert [r.provenance["config"]["dynamics"]["seed"] for r in runs] == [1, 2, 1, 2]
    assert np.array_equal(runs[2].spins[0], sf.Lattice("square", 4).ferromagnetic())
    # labels: exact ED fields at the stored mu, which gives the late frames the wanted filling
    mu = d.method_settings["mu"]
    assert d.model["mu"] == mu and d.model["filling"] is None
    lat = d.lattice()
    ed_mu = sf.ExactDiagonalization(sf.SDModel(lat, J=3.0, kT=0.05, mu=mu))
    for k in (0, 5, d.num_frames - 1):
        np.testing.assert_allclose(d.fields[k], ed_mu.compute(d.spins[k]).fields, atol=1e-10)
    late = d.spins[(d.step >= 0) & (d.time >= 0.5)]
    assert len(late) == 4 * 2
    n = np.mean([ed_mu.compute(s).density.sum() for s in late]) / (2 * lat.num_sites)
    assert n == pytest.approx(0.4, abs=1e-9)
    # the trajectory frames are those of the fixed-filling dynamics
    np.testing.assert_array_equal(d.spins[:4], runs[0].spins)


def test_ensemble_merge_resumes(tmp_path):
    import spinforce.generate as gen
    cfg = ensemble_config(tmp_path)
    gen.generate_ensemble(cfg, progress=False)
    full = read_dataset(tmp_path / "merged.h5")
    with h5py.File(tmp_path / "merged.h5", "a") as f:  # as if stopped after 6 merged frames
        for name in ("spins", "fields", "energy", "time", "step", "trajectory"):
            f[name].resize(6, axis=0)
    summary = gen.generate_ensemble(cfg, progress=False)
    assert summary["frames_before"] == 6
    again = read_dataset(tmp_path / "merged.h5")
    for name in ("spins", "fields", "energy", "step", "trajectory"):
        np.testing.assert_array_equal(getattr(again, name), getattr(full, name))
