"""`spinforce study`: ensembles of ML-LLG quenches, resume after interruption, analysis and report."""
import json
from pathlib import Path

import numpy as np
import pytest

import spinforce
import spinforce.cli
from spinforce import analysis as A
from spinforce.data import read_dataset
from spinforce.dynamics import LLG
from spinforce.ml.committee import CommitteeModel
from spinforce.ml.model import export_torchscript
from spinforce.study import load_config, run_study
from test_committee import perturbed, random_member

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny lattices: extra threads only contend


@pytest.fixture(scope="module")
def committees(tmp_path_factory):
    """Untrained committees (random weights, members 10 % apart): fields of order 1 and an uncertainty."""
    d = tmp_path_factory.mktemp("models")
    paths = {}
    for kind in ("triangular", "square"):
        base = random_member(spinforce.Lattice(kind, 6), 4)
        paths[kind] = export_torchscript(CommitteeModel([base] + [perturbed(base, 0.1, k) for k in (1, 2)]),
                                         d / f"{kind}.ts")
    return paths


TINY = ["dynamics.steps=60", "dynamics.save_every=5", "dynamics.checkpoint_every=0", "analysis.snapshots=2"]


def tetra(committees, **kw):
    return load_config("tetra_triangular", TINY + kw.pop("overrides", ["check.shape=[4,4]", "check.runs=2",
                                                                       "check.steps=20"]),
                       size=kw.pop("size", 8), runs=kw.pop("runs", 3), model=committees["triangular"])


def _last_spins(paths):
    return np.stack([read_dataset(p).spins[-1] for p in paths])


def test_chirality_study_numbers_are_those_of_its_run_files(committees, tmp_path):
    cfg = tetra(committees)
    res = run_study(cfg, tmp_path / "s", progress=False)
    runs = [tmp_path / "s" / "runs" / f"run{k}.h5" for k in range(3)]
    lat = spinforce.Lattice("triangular", 8)
    spins = _last_spins(runs)
    assert not np.allclose(spins[0], spins[1])  # runs have their own noise seeds and starts
    data = read_dataset(runs[2])
    assert data.seed == 3 and data.num_frames == 13 and data.step[-1] == 60
    s = res["series"]
    chi = A.plaquette_chirality(spins, lat)
    L = A.ensemble_lengths(chi, lat)
    assert s["L_sf"][-1] == pytest.approx(L["L_sf"], rel=1e-12)
    assert s["L_corr"][-1] == pytest.approx(L["L_corr"], rel=1e-12)
    assert s["L_sf_err"][-1] == pytest.approx(A.jackknife_stderr(L["L_sf_loo"]), rel=1e-12)
    counts = sum(A.wall_direction_fractions(c, lat)[1] for c in A.scalar_chirality(spins, lat))
    np.testing.assert_allclose(s["wall_fractions"][-1], counts / counts.sum(), rtol=1e-12)
    late = res["fits"]["late"]["L_sf"]
    direct = A.fit_power_law(s["time"], s["L_sf"], *late["window"])
    assert late["exponent"] == pytest.approx(direct.exponent, rel=1e-12) and late["window"] == [0.3, 3.0]
    # the check: ED-LLG and ML-LLG ensembles of the same size, seeds and steps
    check = res["check"]
    ed = [tmp_path / "s" / "check" / "exact" / f"run{k}.h5" for k in range(2)]
    assert read_dataset(ed[1]).method == "ed" and read_dataset(ed[1]).seed == 2
    L_ed = A.ensemble_lengths(A.plaquette_chirality(_last_spins(ed), spinforce.Lattice("triangular", 4)),
                              spinforce.Lattice("triangular", 4))
    assert check["exact"]["L_corr"][-1] == pytest.approx(L_ed["L_corr"], rel=1e-12)
    saved = json.loads((tmp_path / "s" / "results.json").read_text())
    assert saved["fits"]["late"]["L_sf"]["exponent"] == pytest.approx(late["exponent"], rel=1e-12)
    assert saved["model"]["sha256"] and saved["commands"] == ["spinforce.study.run_study"]
    for name in saved["figures"]:
        assert (tmp_path / "s" / name).stat().st_size > 1000
    assert {"length_scales.png", "wall_directions.png", "check.png"} <= set(saved["figures"])
    report = (tmp_path / "s" / "report.md").read_text()
    assert f"{late['exponent']:.3f}" in report and "Allen-Cahn" in report


def test_interrupted_study_resumed_equals_uninterrupted(committees, tmp_path, monkeypatch):
    cfg = tetra(committees, overrides=["check.enabled=false", "analysis.figures=false"])
    reference = run_study(cfg, tmp_path / "whole", progress=False)
    calls = []
    original = LLG.run

    def interrupting(self, spins, steps, **kw):
        calls.append((kw["writer"].path.name, kw["start_step"]))
        if kw["writer"].path.name == "run1.h5" and kw["start_step"] >= 20:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second run
        return original(self, spins, steps, **kw)
    monkeypatch.setattr(LLG, "run", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, tmp_path / "cut", progress=False)
    runs = tmp_path / "cut" / "runs"
    assert read_dataset(runs / "run0.h5").step[-1] == 60 and not (runs / "run2.h5").exists()
    stopped = read_dataset(runs / "run1.h5").step[-1]
    assert 0 < stopped < 60
    monkeypatch.setattr(LLG, "run", lambda self, spins, steps, **kw: (calls.append(
        (kw["writer"].path.name, kw["start_step"])), original(self, spins, steps, **kw))[1])
    calls.clear()
    with pytest.raises(FileExistsError, match="--resume"):
        run_study(cfg, tmp_path / "cut", progress=False)
    import spinforce.simulate
    simulated, simulate = [], spinforce.simulate.simulate
    monkeypatch.setattr(spinforce.simulate, "simulate", lambda rc, **kw: (simulated.append(rc["output"]),
                                                                           simulate(rc, **kw))[1])
    resumed = run_study(cfg, tmp_path / "cut", resume=True, progress=False)
    assert [p.split("/")[-1] for p in simulated] == ["run1.h5", "run2.h5"]  # the finished run is skipped
    assert min(start for name, start in calls if name == "run1.h5") >= 20  # the unfinished one continues
    for k in range(3):
        a, b = read_dataset(tmp_path / "whole" / "runs" / f"run{k}.h5"), read_dataset(runs / f"run{k}.h5")
        np.testing.assert_array_equal(a.spins, b.spins)
        np.testing.assert_array_equal(a.time, b.time)
    for key in ("L_sf", "L_corr", "L_sf_err", "wall_fractions"):
        np.testing.assert_array_equal(resumed["series"][key], reference["series"][key])
    assert resumed["fits"] == reference["fits"]
    state = json.loads((tmp_path / "cut" / "study_state.json").read_text())
    assert len(state["commands"]) == 2  # the refused call changed nothing
    other = load_config("tetra_triangular", TINY + ["check.enabled=false", "dynamics.kT=0.01"], size=8, runs=3,
                        model=committees["triangular"])
    with pytest.raises(ValueError, match="different settings"):
        run_study(other, tmp_path / "cut", resume=True, progress=False)


def test_runs_side_by_side_equal_runs_one_after_another(committees, tmp_path):
    """threads = 2: the runs and the check's runs go to two worker processes of one thread each;
    threads = 1: here, one after another. The same trajectories, bit for bit."""
    results = {}
    for cores in (1, 2):
        cfg = tetra(committees, overrides=["check.shape=[4,4]", "check.runs=2", "check.steps=20",
                                           "analysis.figures=false", f"threads={cores}"])
        results[cores] = run_study(cfg, tmp_path / f"cores{cores}", progress=False)
    for part in ("runs", "check/exact", "check/ml"):
        paths = sorted(p for p in (tmp_path / "cores1" / part).glob("run*.h5") if "checkpoint" not in p.name)
        assert len(paths) >= 2
        for one in paths:
            two = tmp_path / "cores2" / part / one.name
            np.testing.assert_array_equal(read_dataset(one).spins, read_dataset(two).spins)
    np.testing.assert_array_equal(results[1]["series"]["L_sf"], results[2]["series"]["L_sf"])


def test_bond_study_clusters_and_check(committees, tmp_path):
    cfg = load_config("de_square", TINY + ["analysis.early_window=[0.25, 1.0]", "analysis.threshold=0.0",
                                           "analysis.figures=false",
                                           "check.shape=[4,4]", "check.runs=2", "check.steps=10"],
                      size=8, runs=2, model=committees["square"])
    res = run_study(cfg, tmp_path / "s", progress=False)
    lat = spinforce.Lattice("square", 8)
    runs = [tmp_path / "s" / "runs" / f"run{k}.h5" for k in range(2)]
    for h in res["cluster_size_distributions"]:
        k = int(round(h["time"] / 0.25))  # a frame every 5 steps of dt 0.05
        b = A.bond_average(np.stack([read_dataset(p).spins[k] for p in runs]), lat)
        sizes = np.concatenate([A.site_clusters(x > 0.0, lat)[1] for x in b])
        values, counts = np.unique(sizes, return_counts=True)
        np.testing.assert_array_equal(h["size"], values)
        np.testing.assert_array_equal(h["count"], counts)
    s = res["series"]
    assert s["L_cluster"][-1] == pytest.approx(np.sqrt(np.mean(sizes)), rel=1e-12)
    assert set(res["fits"]) == {"early", "late"} and res["fits"]["early"]["L_cluster"]["window"] == [0.25, 1.0]
    early = A.fit_power_law(s["time"], s["L_cluster"], 0.25, 1.0)
    assert res["fits"]["early"]["L_cluster"]["exponent"] == pytest.approx(early.exponent, rel=1e-12)
    assert res["references"]["LSW"] == pytest.approx(1 / 3)
    check = res["check"]
    ed = [tmp_path / "s" / "check" / "exact" / f"run{k}.h5" for k in range(2)]
    small = spinforce.Lattice("square", 4)
    curves = np.stack([A.radial_correlation(x, small, normalize=False)[1] for x in _last_spins(ed)])
    np.testing.assert_allclose(check["exact"]["C"], curves.mean(0), rtol=1e-12)
    np.testing.assert_allclose(check["exact"]["C_err"], curves.std(0, ddof=1) / np.sqrt(2), rtol=1e-12)
    assert "figures" not in res and not list((tmp_path / "s").glob("*.png"))


def test_check_on_the_study_lattice_reuses_the_study_runs_as_its_ml_runs(committees, tmp_path):
    """check.shape = the study's lattice (and the same steps): the ML half of the check is the study's
    own first runs (same seeds and starts), read from runs/, not run a second time."""
    cfg = load_config("de_square", TINY + ["analysis.figures=false", "check.shape=[4,4]", "check.runs=2",
                                           "check.steps=60"], size=4, runs=3, model=committees["square"])
    res = run_study(cfg, tmp_path / "s", progress=False)
    assert not (tmp_path / "s" / "check" / "ml").exists()
    runs = [tmp_path / "s" / "runs" / f"run{k}.h5" for k in range(2)]
    small = spinforce.Lattice("square", 4)
    curves = np.stack([A.radial_correlation(x, small, normalize=False)[1] for x in _last_spins(runs)])
    np.testing.assert_allclose(res["check"]["ml"]["C"], curves.mean(0), rtol=1e-12)
    # other steps: another run, so the check runs its own
    cfg = load_config("de_square", TINY + ["analysis.figures=false", "check.shape=[4,4]", "check.runs=2",
                                           "check.steps=30"], size=4, runs=3, model=committees["square"])
    run_study(cfg, tmp_path / "t", progress=False)
    assert len(list((tmp_path / "t" / "check" / "ml").glob("run?.h5"))) == 2


def test_study_command_line_errors_and_outputs(committees, tmp_path, capsys):
    cfg_path = tmp_path / "my_study.toml"
    from spinforce.study import studies
    cfg_path.write_text(studies()["tetra_triangular"].read_text())
    # no model given and none shipped under this name: one line that says what to do
    assert spinforce.cli.main(["study", str(cfg_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model" in err and "spinforce learn --example my_study" in err
    assert not (tmp_path / "o").exists()
    for bad, message in ((["--size", "1"], "--size"), (["--set", "check.runs=1"], "check.runs"),
                         (["--set", "lattice.kind=\"square\""], "order = 'chirality'"),
                         (["--set", "analysis.fit_window=[5, 1]"], "analysis.fit_window"),
                         (["--set", "check.method_settings={moments=64}"], "unknown key 'moments'")):
        assert spinforce.cli.main(["study", "tetra_triangular", "--model", str(committees["triangular"]),
                                   "--out", str(tmp_path / "o")] + bad) == 2
        assert message in capsys.readouterr().err
    out = tmp_path / "o"
    args = ["study", "tetra_triangular", "--out", str(out), "--size", "6", "--runs", "2", "--no-progress",
            "--model", str(committees["triangular"]), "--set", "dynamics.steps=20", "--set", "dynamics.save_every=5",
            "--set", "check.enabled=false", "--set", "analysis.figures=false"]
    assert spinforce.cli.main(args) == 0
    assert "wrote" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["commands"][0].startswith("spinforce study tetra_triangular --out")
    assert spinforce.cli.main(args) == 2 and "--overwrite" in capsys.readouterr().err
    (out / "runs" / "notes.txt").write_text("mine")
    assert spinforce.cli.main(args + ["--overwrite"]) == 2  # a file the study did not write: nothing touched
    assert "did not write" in capsys.readouterr().err and (out / "results.json").exists()
    (out / "runs" / "notes.txt").unlink()
    assert spinforce.cli.main(args + ["--overwrite"]) == 0
    assert spinforce.cli.main(["study", "--list"]) == 0
    assert {"tetra_triangular", "de_square"} <= set(capsys.readouterr().out.split())


def test_files_a_study_stages_are_its_own_for_resume_and_overwrite(committees, tmp_path, staged_files):
    # what a crash while writing leaves (each file atomic_write stages) must not block --resume,
    # and --overwrite must remove it
    from spinforce.data import replaceable_output
    from spinforce.outputs import prepare_outputs
    from spinforce.study import output_patterns
    staged = staged_files
    out = tmp_path / "s"
    run_study(tetra(committees, size=6, runs=2, overrides=["check.enabled=false", "analysis.figures=false",
                                                           "dynamics.checkpoint_every=20"]), out, progress=False)
    names = {p.relative_to(out).as_posix() for p in staged}
    assert {"study_state.json.partial", "results.json.partial", "runs/run1.h5.partial",
            "runs/run1.checkpoint.h5.partial"} <= names
    for path in set(staged):
        path.write_text("left by a crash")
    prepare_outputs(out, output_patterns(), command="spinforce study", keep=True, owned=replaceable_output)
    removed = prepare_outputs(out, output_patterns(), command="spinforce study", overwrite=True,
                              owned=replaceable_output)
    assert set(staged) <= set(removed) and not any(p.exists() for p in staged)


def test_every_shipped_study_finds_its_shipped_model_and_checks_against_its_labels():
    """A study config named like a learn example runs that example's shipped committee, and its ED
    check uses the s-d model the committee was labelled with (the example's [model])."""
    from spinforce.learn import examples, load_config as load_learn
    from spinforce.study import studies
    for name in studies():
        cfg = load_config(name)
        assert Path(cfg["model"]).name == f"{name}.ts" and Path(cfg["model"]).is_file()
        if name not in examples() or cfg["check"] is None or "mu" not in cfg["check"]["model"]:
            continue
        m = load_learn(examples()[name])["model"]
        assert {k: cfg["check"]["model"][k] for k in ("t", "J", "kT", "mu")} == {k: m[k] for k in ("t", "J", "kT", "mu")}
    kT03 = load_config("tetra_triangular_kT03")
    assert kT03["check"]["model"]["kT"] == 0.3 and kT03["order"] == "chirality"
