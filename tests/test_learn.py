"""`spinforce learn`: the active-learning loop, resumed after an interruption at every stage."""
import csv
from pathlib import Path

import numpy as np
import pytest

import spinforce as sf
from spinforce import cli
from spinforce.data import read_dataset
from spinforce.learn import check_config, examples, learn, load_config, stages

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {
    "model": {"kind": "square", "J": 3.0, "kT": 0.1, "filling": 0.4, "mu": "auto"},
    "data": {"shape": [4, 4], "steps": 20, "save_every": 10, "seeds": [1], "initial": ["random"], "perturbed": 2},
    "test": {"shape": [4, 4], "steps": 20, "save_every": 10, "seeds": [101, 102]},
    "train": {"members": 2, "descriptor": {"kind": "bond_shells", "cutoff": 1.5}, "network": {"hidden": [8]},
              "training": {"epochs": 3, "batch_size": 4, "energy_weight_start": 1, "energy_weight_ramp": 1,
                           "early_stop_patience": 0}},
    "explore": {"shape": [4, 4], "runs": 2, "steps": 20, "save_every": 5},
    "label": {"frames": 3},
    "loop": {"rounds": 2, "threads": 1},
    "locality": {"cutoffs": [1.0], "states": 2, "sites": 1, "replacements": 1},
    "check": {"runs": 2},
}


class Stop(Exception):
    pass


def stop_at(target, when):
    def hook(stage, moment):
        if (stage, moment) == (target, when):
            raise Stop(stage)
    return hook


def outputs(out):
    """What a finished run leaves: its datasets, the committee's predictions, the round table."""
    lat = sf.Lattice("square", (4, 4))
    r = sf.MLForceField(out / "model.ts", lat).compute(lat.random_spins(7))
    data = {p.name: read_dataset(p) for p in sorted((out / "data").glob("*.h5"))}
    rows = list(csv.DictReader(open(out / "rounds.csv")))
    return data, r, rows


# TINY with one more explore quench on a 6x6 lattice in every round (explore.extra), 2 of its frames labelled,
# and the labelled frames shared between the thirds of each quench (label.windows)
WITH_EXTRA = {**TINY, "explore": {**TINY["explore"],
                                  "extra": [{"shape": [6, 6], "steps": 10, "save_every": 5, "seed": 77, "frames": 2}]},
              "label": {**TINY["label"], "windows": 3}}


@pytest.mark.slow
def test_resumed_after_every_stage_equals_uninterrupted(tmp_path):
    cfg = check_config(WITH_EXTRA)
    names = stages(cfg)
    assert names == ["data", "test", "locality", "round0/train", "round0/evaluate", "round0/explore",
                     "round0/label", "round1/train", "round1/evaluate", "check", "report"]
    learn(cfg, tmp_path / "whole", progress=False)
    # Interrupted after each stage's work but before it was recorded, then after it was recorded.
    for name in names:
        for when in ("before", "after"):
            with pytest.raises(Stop):
                learn(cfg, tmp_path / "pieces", progress=False, _interrupt=stop_at(name, when))
    learn(cfg, tmp_path / "pieces", progress=False)
    (da, ra, rows_a), (db, rb, rows_b) = outputs(tmp_path / "whole"), outputs(tmp_path / "pieces")
    assert list(da) == ["initial.h5", "round0.h5", "round0_extra0.h5", "test.h5"] == list(db)
    for name in da:
        for key in ("spins", "fields", "energy", "trajectory"):
            np.testing.assert_array_equal(getattr(da[name], key), getattr(db[name], key), err_msg=f"{name} {key}")
    np.testing.assert_array_equal(ra.fields, rb.fields)
    np.testing.assert_array_equal(ra.uncertainty, rb.uncertainty)
    assert rows_a == rows_b and len(rows_a) == 2
    # Labelled frames: exact fields at the fixed mu, one trajectory id per ML run, the most uncertain frames.
    mu = da["initial.h5"].method_settings["mu"]
    r0 = da["round0.h5"]
    assert r0.num_frames == 3 and r0.method_settings["mu"] == mu and set(r0.trajectory) <= {0, 1}
    # label.windows = 3: one frame of each third of the 20 steps (the committee's uncertainty grows
    # along these runs, so ranked over the whole run the 3 frames would come from the last two thirds)
    assert sorted((r0.step - 1) * 3 // 20) == [0, 1, 2]
    ed = sf.ExactDiagonalization(sf.SDModel(sf.Lattice("square", 4), J=3.0, kT=0.1, mu=mu))
    np.testing.assert_allclose(r0.fields[0], ed.compute(r0.spins[0]).fields, atol=1e-10)
    # the extra explore set: its own lattice, run and frame count, labelled by ED there, trained on in round 1
    x0 = da["round0_extra0.h5"]
    assert x0.lattice().shape == (6, 6) and x0.num_frames == 2 and set(x0.trajectory) == {0}
    ed6 = sf.ExactDiagonalization(sf.SDModel(sf.Lattice("square", 6), J=3.0, kT=0.1, mu=mu))
    np.testing.assert_allclose(x0.fields[1], ed6.compute(x0.spins[1]).fields, atol=1e-10)
    assert [int(r["training_frames"]) for r in rows_a] == [da["initial.h5"].num_frames,
                                                            da["initial.h5"].num_frames + 3 + 2]
    run6 = read_dataset(tmp_path / "whole" / "rounds" / "round0" / "explore" / "extra0_run0.h5")
    assert run6.lattice().shape == (6, 6) and list(run6.step) == [0, 5, 10]
    report = (tmp_path / "whole" / "report.md").read_text()
    assert "held-out torque error" in report and "Locality floor" in report and "Dynamics check" in report
    # The check's ML quenches: the last committee, the held-out settings, noise seeds 5000, 5001.
    import json
    for out in ("whole", "pieces"):
        check = json.loads((tmp_path / out / "check" / "ensembles.json").read_text())
        assert check["model"]["runs"] == 2 and check["reference"]["runs"] == 2
        assert check["model"]["time"] == check["reference"]["time"] == [0.0, 0.5, 1.0]
    run0 = [read_dataset(tmp_path / out / "check" / "run0.h5") for out in ("whole", "pieces")]
    np.testing.assert_array_equal(run0[0].spins, run0[1].spins)
    assert (tmp_path / "whole" / "check" / "ensembles.png").stat().st_size > 1000
    assert (tmp_path / "whole" / "rounds.png").stat().st_size > 1000


def test_shipped_examples_are_valid():
    found = examples()
    assert {"de_square", "tetra_triangular"} <= set(found)
    de = load_config(found["de_square"])
    assert de["model"]["J"] == 6.0 and de["model"]["kT"] == 0.0 and de["model"]["mu"] == -4.69
    assert de["model"]["filling"] == pytest.approx((1 - 0.015) / 2)
    # the 30x30 variant: every lattice is the one where mu = -4.69 gives 1.5 % holes, and its ML-LLG
    # explore quenches use other seeds than the held-out quenches of bench/large_lattice_error.py (1000 + k)
    de30 = load_config(found["de_square_30"])
    assert de30["model"]["mu"] == -4.69 and de30["label"]["method"] == "ed"
    assert all(de30[s]["shape"] == [30, 30] for s in ("data", "test", "explore"))
    explore_seeds = range(de30["explore"]["seed"], de30["explore"]["seed"] + de30["explore"]["runs"])
    assert not set(explore_seeds) & set(range(1000, 1010))
    # the fixed-N variant: labels at several mu bracketing the 30x30 quench's mu (-3.6 .. -4.7),
    # explore seeds away from the held-out fixed-N quenches (1000 + k, 3000 + k)
    for name in ("de_square_fixed_n", "de_square_fixed_n_rc45"):
        fn = load_config(found[name])
        assert fn["model"]["filling"] == pytest.approx((1 - 0.015) / 2) and fn["label"]["method"] == "ed"
        assert min(fn["model"]["mus"]) < -4.7 and max(fn["model"]["mus"]) > -3.6
        assert all(fn[s]["shape"] == [30, 30] for s in ("data", "test", "explore"))
        explore_seeds = range(fn["explore"]["seed"], fn["explore"]["seed"] + fn["explore"]["runs"])
        assert not set(explore_seeds) & (set(range(1000, 1010)) | set(range(3000, 3010)))
    # the cutoff-4.5 example trains the members of the shipped rc45 committee (its training config) and
    # labels every frame its quenches save
    from spinforce.ml.training import load_config as load_training
    rc45 = load_training(Path(sf.__file__).parent / "ml" / "configs" / "de_square_fixed_n_rc45.toml")
    assert fn["train"]["descriptor"] == rc45["descriptor"]
    assert fn["train"]["network"]["hidden"] == rc45["model"]["hidden"] and fn["train"]["training"]["point_group"] == "sample"
    assert fn["label"]["frames"] == fn["explore"]["runs"] * fn["explore"]["steps"] // fn["explore"]["save_every"]
    tet = load_config(found["tetra_triangular"])
    assert tet["model"]["kind"] == "triangular" and tet["model"]["filling"] == 0.25
    # the T_el = 0.3 variant: its fixed mu gives the tetrahedral state filling 1/4 (ED, 12x12: -2.5686),
    # and its explore and check seeds are away from its held-out quenches and the bench's (1000 + k)
    hot = load_config(found["tetra_triangular_kT03"])
    m = hot["model"]
    lat = sf.Lattice("triangular", (12, 12))
    fixed = sf.mu_for_filling(sf.SDModel(lat, t=m["t"], J=m["J"], kT=m["kT"], filling=m["filling"]), lat.tetrahedral())
    assert m["kT"] == 0.3 and m["mu"] == pytest.approx(fixed.mu, abs=0.005)
    explore_seeds = range(hot["explore"]["seed"], hot["explore"]["seed"] + hot["explore"]["runs"])
    check_seeds = range(hot["check"]["seed"], hot["check"]["seed"] + hot["check"]["runs"])
    assert not set(explore_seeds) & (set(hot["test"]["seeds"]) | set(range(1000, 1010)) | set(check_seeds))
    assert cli.main(["learn", "--list-examples"]) == 0


@pytest.mark.parametrize("section,key,value,match", [("loop", "rounds", 0, "rounds"), ("model", "mu", "x", "mu"),
                                                     ("data", "steps", 15, "multiple"), ("train", "members", 1, "members"),
                                                     ("label", "method", "dft", "method"),
                                                     ("explore", "extra", [{"shape": [6, 6], "steps": 10, "save_every": 5,
                                                                            "seed": 1}], "needs the key 'frames'"),
                                                     ("explore", "extra", [{"shape": [6, 6], "steps": 10, "save_every": 4,
                                                                            "seed": 1, "frames": 2}], "multiple"),
                                                     ("explore", "extra", [{"shape": [6, 6], "steps": 10, "save_every": 5,
                                                                            "seed": 1, "frames": 2, "dt": 0.1}],
                                                      r"unknown key 'dt' in explore.extra\[0\]"),
                                                     ("explore", "extra", {"shape": [6, 6]}, "list of tables"),
                                                     ("label", "windows", 0, "label.windows")])
def test_bad_config(section, key, value, match):
    raw = {k: dict(v) for k, v in TINY.items()}
    raw[section][key] = value
    with pytest.raises(ValueError, match=match):
        check_config(raw)


def test_label_windows_share_the_frames_between_early_and_late_times(tmp_path):
    """label.windows: the most uncertain frames of each time window, an equal share each (the
    remainder to the latest); a window short of frames leaves its share to the others."""
    from spinforce.data import DatasetWriter
    from spinforce.learn import _select_frames
    lat = sf.Lattice("square", (2, 2))
    paths = []
    for run in range(2):  # uncertainty falls along the run, as when the domains grow
        paths.append(tmp_path / f"run{run}.h5")
        with DatasetWriter(paths[-1], lattice_kind="square", lattice_shape=lat.shape, num_sites=4, method="ml",
                           model={}, scalars=("uncertainty_max", "uncertainty_mean")) as w:
            for step in range(0, 101, 10):  # frames 0..10; step 0 (the start) is never chosen
                u = 1.0 - step / 100 + 0.001 * run
                w.append(lat.random_spins(step), np.zeros((4, 3)), 0.0, time=step / 10, step=step,
                         scalars={"uncertainty_max": u, "uncertainty_mean": u / 2})
    assert _select_frames(paths, 4, 100) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    # windows of steps 1-25, 26-50, 51-75, 76-100: the most uncertain frame (run 1) of each
    assert _select_frames(paths, 4, 100, windows=4) == [(1, 1), (1, 3), (1, 6), (1, 8)]
    # 6 frames in 4 windows: two for each of the two latest (steps 51-75: frames 6, 7; 76-100: 8-10)
    assert _select_frames(paths, 6, 100, windows=4) == [(0, 6), (0, 8), (1, 1), (1, 3), (1, 6), (1, 8)]
    # runs half as long as the windows assume: windows 3 and 4 are empty, and their shares go to
    # the most uncertain of the frames left over
    assert _select_frames(paths, 4, 200, windows=4) == [(0, 1), (1, 1), (1, 2), (1, 6)]


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        learn(check_config(TINY), tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


FIXED_N = {**TINY, "model": {"kind": "square", "J": 3.0, "kT": 0.1, "filling": 0.4, "mus": [-3.0, -2.0, -1.0]},
           "locality": {"cutoffs": []}, "check": {"runs": 0}}


@pytest.mark.slow
def test_fixed_n_learn_labels_at_every_mu_and_resumes_a_half_labelled_frame(tmp_path):
    """model.mus: states labelled by ED at each mu (with densities), a mu-input committee run at the
    filling, and a labelling interrupted between the labels of one frame resumes exactly."""
    from spinforce.ml.committee import load_exported
    cfg = check_config(FIXED_N)
    assert "locality" not in stages(cfg) and "check" not in stages(cfg)
    learn(cfg, tmp_path / "whole", progress=False)
    with pytest.raises(Stop):
        learn(cfg, tmp_path / "pieces", progress=False, _interrupt=stop_at("round0/label", "before"))
    # as if stopped after the first label of the second frame
    import h5py
    with h5py.File(tmp_path / "pieces" / "data" / "round0.h5", "a") as f:
        for name in ("spins", "fields", "energy", "time", "step", "trajectory", "mu", "density"):
            f[name].resize(4, axis=0)
    learn(cfg, tmp_path / "pieces", progress=False)
    (da, ra, rows_a), (db, rb, rows_b) = outputs(tmp_path / "whole"), outputs(tmp_path / "pieces")
    assert list(da) == ["initial.h5", "round0.h5", "states.h5", "test.h5"] == list(db)
    for name in da:
        for key in ("spins", "fields", "energy", "trajectory", "mu", "density"):
            np.testing.assert_array_equal(getattr(da[name], key), getattr(db[name], key), err_msg=f"{name} {key}")
    np.testing.assert_array_equal(ra.fields, rb.fields)
    assert rows_a == rows_b and len(rows_a) == 2
    mus = np.array([-3.0, -2.0, -1.0])
    ed = sf.ExactDiagonalization(sf.SDModel(sf.Lattice("square", 4), J=3.0, kT=0.1, mu=-3.0))
    for name, states in (("initial.h5", da["states.h5"].num_frames), ("round0.h5", 3)):
        ds = da[name]
        assert ds.num_frames == 3 * states
        np.testing.assert_array_equal(ds.mu, np.tile(mus, states))
        for k in (0, ds.num_frames - 1):  # labels of the first and the last state at their mu
            exact = ed.compute_at_mus(ds.spins[k], [ds.mu[k]])[0]
            np.testing.assert_allclose(ds.fields[k], exact.fields, atol=1e-10)
            np.testing.assert_allclose(ds.density[k], exact.density, atol=1e-10)
    # the held-out states are at the filling: the ED fields at fixed N, not at one mu
    test = da["test.h5"]
    fixed = sf.ExactDiagonalization(sf.SDModel(sf.Lattice("square", 4), J=3.0, kT=0.1, filling=0.4))
    np.testing.assert_allclose(test.fields[-1], fixed.compute(test.spins[-1]).fields, atol=1e-10)
    script = load_exported(tmp_path / "whole" / "model.ts")
    assert float(script.fixed_filling) == 0.4 and bool(script.mu_input)
    assert "Fixed electron count" in (tmp_path / "whole" / "report.md").read_text()


@pytest.mark.parametrize("change,match", [({"mus": [-2.0]}, "two distinct"),
                                          ({"mu": -2.0}, "model.mu"),
                                          ({"label.method": "kpm"}, "label.method")])
def test_bad_fixed_n_config(change, match):
    raw = {k: dict(v) for k, v in FIXED_N.items()}
    for key, value in change.items():
        section, _, name = key.rpartition(".")
        raw[section or "model"][name] = value
    with pytest.raises(ValueError, match=match):
        check_config(raw)


@pytest.mark.slow
def test_more_rounds_continue_a_finished_run(tmp_path):
    """loop.rounds raised on a finished run adds rounds: the result equals a run made with that many
    rounds from the start, the check redone with the new last committee; rounds cannot be removed."""
    import json
    base = {**TINY, "locality": {"cutoffs": []}}
    one, two = check_config({**base, "loop": {"rounds": 1, "threads": 1}}), check_config(base)
    learn(one, tmp_path / "grown", progress=False)
    before = json.loads((tmp_path / "grown" / "check" / "ensembles.json").read_text())
    learn(two, tmp_path / "grown", progress=False)
    learn(two, tmp_path / "whole", progress=False)
    (da, ra, rows_a), (db, rb, rows_b) = outputs(tmp_path / "grown"), outputs(tmp_path / "whole")
    assert list(da) == list(db) == ["initial.h5", "round0.h5", "test.h5"]
    for name in da:
        np.testing.assert_array_equal(da[name].fields, db[name].fields, err_msg=name)
    np.testing.assert_array_equal(ra.fields, rb.fields)
    assert rows_a == rows_b and len(rows_a) == 2
    checks = [json.loads((tmp_path / out / "check" / "ensembles.json").read_text()) for out in ("grown", "whole")]
    for c in checks + [before]:
        c.pop("png")
    assert checks[0] == checks[1] != before
    # the stage times in the same order as in a run made whole, the report's own time last
    stages = [list(json.loads((tmp_path / out / "learn_state.json").read_text())["seconds"]) for out in ("grown", "whole")]
    assert stages[0] == stages[1] and stages[0][-1] == "report"
    with pytest.raises(ValueError, match="rounds can be added, not removed"):
        learn(one, tmp_path / "grown", progress=False)
