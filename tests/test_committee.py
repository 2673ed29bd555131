"""Committees of force fields: mean and uncertainty, the C++ provider, training, simulate, calibration."""
import json
import warnings

import numpy as np
import pytest
import torch

import spinforce
import spinforce.cli
from spinforce.data import read_dataset
from spinforce.ml.committee import (CommitteeModel, UncertaintyWarning, export_committee, load_committee, spearman,
                                    train_committee, uncertainty_calibration)
from spinforce.ml.model import build_model, compute_fields, export_torchscript, load_model
from spinforce.ml.training import train
from spinforce.simulate import simulate
from test_ml import config, write_heisenberg_dataset

DESCRIPTOR = {"cutoff": 1.5, "powers": [1, 2], "pair_orbits": True}
pytestmark = pytest.mark.usefixtures("single_thread")  # small systems: extra threads only contend


def random_member(lattice, seed, dtype="float64"):
    """An untrained member: random weights, unit normalisation (fields of order 1)."""
    torch.manual_seed(seed)
    return build_model(lattice, "bond_shells", DESCRIPTOR, [16, 16], "tanh", dtype)


def perturbed(model, scale, seed):
    """A copy of `model` with Gaussian noise of relative size `scale` on its weights."""
    import copy
    gen = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.mlp.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return out


def members_one_by_one(members, lattice, spins):
    """Energies (K,), fields (K,N,3) and the sample std of the torques, member by member."""
    results = [compute_fields(m, lattice, spins) for m in members]
    e = np.array([r.energy for r in results])
    h = np.stack([r.fields for r in results])
    dev = np.cross(spins[None], h - h.mean(0))
    return e, h, np.sqrt((dev ** 2).sum(-1).sum(0) / (len(members) - 1))


def test_identical_members_have_zero_uncertainty_and_perturbed_members_do_not():
    lat = spinforce.Lattice("square", (7, 6))
    base = random_member(lat, 0)
    s = lat.random_spins(1)
    single = compute_fields(base, lat, s)
    assert single.uncertainty is None
    torque_scale = np.sqrt((np.cross(s, single.fields) ** 2).sum(-1).mean())
    same = compute_fields(CommitteeModel([base, base, base]), lat, s)
    assert same.uncertainty.shape == (lat.num_sites,)
    assert same.uncertainty.max() < 1e-12 * torque_scale
    np.testing.assert_allclose(same.fields, single.fields, rtol=0, atol=1e-13 * torque_scale)
    assert same.energy == pytest.approx(single.energy, rel=1e-13)

    members = [base] + [perturbed(base, 0.1, k) for k in range(1, 4)]
    committee = compute_fields(CommitteeModel(members), lat, s)
    e, h, u = members_one_by_one(members, lat, s)
    # The committee mean is the mean of its members run one by one; the uncertainty their spread.
    assert committee.energy == pytest.approx(e.mean(), rel=1e-13)
    np.testing.assert_allclose(committee.fields, h.mean(0), rtol=0, atol=1e-13 * torque_scale)
    np.testing.assert_allclose(committee.uncertainty, u, rtol=1e-10, atol=1e-14)
    assert committee.uncertainty.min() > 1e-4 * torque_scale and committee.uncertainty.mean() > 1e-2 * torque_scale
    # spins that are not unit-free of shape (N, 3) are refused
    with pytest.raises(ValueError, match="shape"):
        compute_fields(CommitteeModel(members), lat, s[:-1])


def test_committee_members_must_match():
    lat = spinforce.Lattice("square", 6)
    a = random_member(lat, 0)
    with pytest.raises(ValueError, match="at least 2"):
        CommitteeModel([a])
    other = build_model(lat, "bond_shells", {**DESCRIPTOR, "cutoff": 1.0}, [16, 16], "tanh", "float64")
    with pytest.raises(ValueError, match="descriptor settings"):
        CommitteeModel([a, other])
    with pytest.raises(ValueError, match="dtype"):
        CommitteeModel([a, random_member(lat, 1, "float32")])
    with pytest.raises(ValueError, match="uncertainty_threshold"):
        CommitteeModel([a, a], uncertainty_threshold=-1.0)


def test_committee_file_in_cpp_equals_python_committee(tmp_path):
    lat = spinforce.Lattice("square", 6)
    base = random_member(lat, 2)
    members = [base] + [perturbed(base, 0.2, k) for k in range(1, 4)]
    committee = CommitteeModel(members, uncertainty_threshold=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no TorchScript deprecation warning reaches users
        path = export_torchscript(committee, tmp_path / "committee.ts")
    for shape in [(6, 6), (9, 7)]:
        big = spinforce.Lattice("square", shape)
        provider = spinforce.MLForceField(path, big)
        assert provider.committee_size == 4 and provider.uncertainty_threshold == pytest.approx(0.25)
        s = big.random_spins(5)
        ref = compute_fields(committee, big, s)
        with torch.no_grad():
            r = provider.compute(s)
        assert isinstance(r.uncertainty, np.ndarray) and r.uncertainty.shape == (big.num_sites,)
        assert r.energy == pytest.approx(ref.energy, rel=1e-12, abs=1e-10)
        np.testing.assert_allclose(r.fields, ref.fields, rtol=0, atol=1e-10)
        np.testing.assert_allclose(r.uncertainty, ref.uncertainty, rtol=0, atol=1e-10)
        _, h, u = members_one_by_one(members, big, s)
        np.testing.assert_allclose(r.fields, h.mean(0), rtol=0, atol=1e-10)
        np.testing.assert_allclose(r.uncertainty, u, rtol=0, atol=1e-10)
        rt = provider.compute(torch.from_numpy(s))  # torch in, torch out
        assert torch.is_tensor(rt.uncertainty) and rt.uncertainty.dtype == torch.float64
    # a single model's file has no uncertainty and no threshold
    single = spinforce.MLForceField(export_torchscript(base, tmp_path / "single.ts"), lat)
    assert single.committee_size == 1 and single.uncertainty_threshold is None
    assert single.compute(lat.random_spins(0)).uncertainty is None
    no_threshold = spinforce.MLForceField(export_torchscript(CommitteeModel(members), tmp_path / "c2.ts"), lat)
    assert no_threshold.uncertainty_threshold is None


@pytest.fixture(scope="module")
def heis_small(tmp_path_factory):
    d = tmp_path_factory.mktemp("committee_data")
    lat = spinforce.Lattice("square", 6)
    write_heisenberg_dataset(d / "heis.h5", lat, 16, seed=5)
    return d / "heis.h5"


def tiny_config(data_path, epochs):
    cfg = config(data_path, "unused", epochs=epochs, energy_weight_start=1, energy_weight_ramp=1, batch_size=8)
    cfg["model"]["hidden"] = [8]
    cfg["output"]["plots"] = False
    return cfg


def test_train_committee_resumes_and_exports(heis_small, tmp_path):
    out = tmp_path / "committee"
    paths = train_committee(tiny_config(heis_small, 3), out, 2, progress=False)
    assert paths == [out / "member0" / "model.pt", out / "member1" / "model.pt"]
    index = json.loads((out / "committee.json").read_text())
    assert index["members"] == ["member0/model.pt", "member1/model.pt"] and index["seeds"] == [1, 2]
    a, b = (load_model(p) for p in paths)
    assert not torch.equal(a.mlp[0].weight, b.mlp[0].weight)  # different seeds, different members
    with pytest.raises(FileExistsError, match="resume"):
        train_committee(tiny_config(heis_small, 3), out, 2, progress=False)
    with pytest.raises(ValueError, match="members"):
        train_committee(tiny_config(heis_small, 3), out, 1, progress=False)

    # Interrupt member 1 after its first epoch; member 0 is finished.
    uninterrupted = json.loads((out / "member1" / "metrics.json").read_text())
    history = [r["val_torque_rmse"] for r in torch.load(out / "member1" / "checkpoint.pt", weights_only=False)["history"]]
    half = tiny_config(heis_small, 1)
    half["training"]["seed"] = 2
    half["output"]["dir"] = str(out / "member1")
    train(half, overwrite=True, progress=False)
    def files(d):
        return {f: f.stat().st_mtime_ns for f in sorted(d.rglob("*"))}
    kept = files(out / "member0")
    train_committee(tiny_config(heis_small, 3), out, 2, resume=True, progress=False)
    assert files(out / "member0") == kept  # the finished member is left alone
    resumed = torch.load(out / "member1" / "checkpoint.pt", weights_only=False)["history"]
    assert [r["val_torque_rmse"] for r in resumed] == pytest.approx(history, rel=1e-12)
    metrics = json.loads((out / "member1" / "metrics.json").read_text())
    assert metrics["epoch"] == uninterrupted["epoch"]
    assert metrics["val"] == pytest.approx(uninterrupted["val"], rel=1e-12)

    # Export through the command line: a committee directory, or several model files.
    ts = tmp_path / "c.ts"
    assert spinforce.cli.main(["export", str(out), "--torchscript", str(ts), "--uncertainty-threshold", "0.3"]) == 0
    provider = spinforce.MLForceField(ts, spinforce.Lattice("square", 6))
    assert provider.committee_size == 2 and provider.uncertainty_threshold == pytest.approx(0.3)
    assert spinforce.cli.main(["export", str(paths[0]), str(paths[1]), "--torchscript", str(ts)]) == 2  # exists
    assert spinforce.cli.main(["export", str(paths[0]), str(paths[1]), "--torchscript", str(ts), "--overwrite"]) == 0
    assert spinforce.MLForceField(ts, spinforce.Lattice("square", 6)).uncertainty_threshold is None
    assert spinforce.cli.main(["export", str(paths[0]), "--torchscript", str(tmp_path / "one.ts"),
                               "--uncertainty-threshold", "0.3"]) == 2  # a threshold needs a committee
    s = spinforce.Lattice("square", 6).random_spins(3)
    ref = compute_fields(load_committee(out), spinforce.Lattice("square", 6), s)
    np.testing.assert_allclose(provider.compute(s).uncertainty, ref.uncertainty, rtol=0, atol=1e-10)


def test_train_command_with_members_trains_the_committee_of_its_config(heis_small, tmp_path, capsys):
    """`spinforce train CONFIG --members 2`: the committee train_committee makes of the config, in the
    config's run folder, ready for `spinforce export RUN_DIR`."""
    from config_files import write_toml
    from test_reliability_cli import user_error
    cfg = tiny_config(heis_small, 2)
    cfg["output"]["dir"] = "run"  # relative to the config file
    toml = write_toml(cfg, tmp_path / "train.toml")
    user_error(capsys, "train", toml, "--members", "1", contains=("--members", ">= 2"))
    assert not (tmp_path / "run").exists()
    assert spinforce.cli.main(["train", str(toml), "--members", "2", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["members"] == [str(tmp_path / "run" / f"member{k}" / "model.pt") for k in range(2)]
    assert all(v > 0 for v in summary["val_torque_rmse"])
    assert json.loads((tmp_path / "run" / "committee.json").read_text())["seeds"] == [1, 2]
    reference = train_committee(tiny_config(heis_small, 2), tmp_path / "reference", 2, progress=False)
    for path, ref in zip(summary["members"], reference):
        one, two = load_model(path).state_dict(), load_model(ref).state_dict()
        assert all(torch.equal(one[name], two[name]) for name in one)
    assert spinforce.cli.main(["export", str(tmp_path / "run"), "--torchscript", str(tmp_path / "c.ts")]) == 0
    assert spinforce.MLForceField(tmp_path / "c.ts", spinforce.Lattice("square", 6)).committee_size == 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_seed_gives_the_same_initial_model_whatever_torchs_default_dtype(dtype):
    """A worker process starts with torch's default dtype (float32), a caller may have set another."""
    lattice = spinforce.Lattice("square", 6)
    weights = {}
    default = torch.get_default_dtype()
    try:
        for name, d in (("float32", torch.float32), ("float64", torch.float64)):
            torch.set_default_dtype(d)
            torch.manual_seed(0)
            weights[name] = build_model(lattice, "bond_shells", {"cutoff": 1.5}, [8], "silu", dtype).state_dict()
    finally:
        torch.set_default_dtype(default)
    for key, value in weights["float32"].items():
        assert value.dtype == weights["float64"][key].dtype
        assert torch.equal(value, weights["float64"][key]), key


def test_members_trained_side_by_side_equal_members_trained_one_after_another(heis_small, tmp_path):
    """training.threads = 2: one worker process per member and core, one thread each; = 1: here,
    one member after another on one thread. The same members, bit for bit."""
    models = {}
    for cores in (1, 2):
        cfg = tiny_config(heis_small, 2)
        cfg["training"]["threads"] = cores
        paths = train_committee(cfg, tmp_path / f"cores{cores}", 3, progress=False)
        models[cores] = [load_model(p).state_dict() for p in paths]
    for one, two in zip(models[1], models[2]):
        assert one.keys() == two.keys()
        for name in one:
            assert torch.equal(one[name], two[name]), name


def _ml_run_config(tmp_path, model_path, name):
    return {"output": str(tmp_path / f"{name}.h5"), "lattice": {"kind": "square", "shape": [6, 6]},
            "method": {"name": "ml", "path": str(model_path)}, "model": {},
            "dynamics": {"dt": 0.02, "alpha": 0.1, "kT": 0.05, "seed": 3, "steps": 12, "save_every": 4}}


def test_simulate_records_uncertainty_and_warns_once(tmp_path, capsys):
    lat = spinforce.Lattice("square", 6)
    base = random_member(lat, 4)
    members = [base] + [perturbed(base, 0.2, k) for k in range(1, 3)]
    quiet = export_torchscript(CommitteeModel(members, uncertainty_threshold=1e6), tmp_path / "quiet.ts")
    loud = export_torchscript(CommitteeModel(members, uncertainty_threshold=1e-6), tmp_path / "loud.ts")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = simulate(_ml_run_config(tmp_path, quiet, "quiet"), progress=False)
    assert not [w for w in caught if issubclass(w.category, UncertaintyWarning)]
    data = read_dataset(result.path)
    assert sorted(data.scalars) == ["uncertainty_max", "uncertainty_mean"] and data.num_frames == 4
    provider = spinforce.MLForceField(quiet, lat)
    for i in range(data.num_frames):  # the recorded numbers are those of the stored spins
        u = provider.compute(data.spins[i]).uncertainty
        assert data.scalars["uncertainty_mean"][i] == pytest.approx(u.mean(), rel=1e-12)
        assert data.scalars["uncertainty_max"][i] == pytest.approx(u.max(), rel=1e-12)
    assert result.max_uncertainty == pytest.approx(data.scalars["uncertainty_max"].max(), rel=1e-12)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate(_ml_run_config(tmp_path, loud, "loud"), progress=False)
    assert len([w for w in caught if issubclass(w.category, UncertaintyWarning)]) == 1

    # the command line prints it as one line, and a resumed run keeps recording
    cfg_path = tmp_path / "loud2.toml"
    cfg_path.write_text(f'output = "loud2.h5"\n[lattice]\nkind = "square"\nshape = [6, 6]\n'
                        f'[method]\nname = "ml"\npath = "{loud}"\n[model]\n'
                        '[dynamics]\ndt = 0.02\nalpha = 0.1\nkT = 0.05\nsteps = 8\nsave_every = 4\n')
    capsys.readouterr()
    assert spinforce.cli.main(["simulate", str(cfg_path), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("spinforce simulate: warning: at step") == 1 and "UncertaintyWarning" not in err
    assert spinforce.cli.main(["simulate", str(cfg_path), "--quiet", "--resume", "--steps", "16"]) == 0
    data = read_dataset(tmp_path / "loud2.h5")
    assert data.num_frames == 5 and data.scalars["uncertainty_max"].shape == (5,)
    assert np.all(data.scalars["uncertainty_max"] >= data.scalars["uncertainty_mean"])


def test_spearman_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    b = a + rng.normal(size=200)
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b)[0], rel=1e-12)
    ties_a, ties_b = np.round(a), np.round(b * 2)
    assert spearman(ties_a, ties_b) == pytest.approx(scipy_stats.spearmanr(ties_a, ties_b)[0], rel=1e-12)
    assert spearman(a, -a) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="equal length"):
        spearman(a, b[:-1])


def graded_disorder(lattice, seed):
    """Spins along z with Gaussian noise whose amplitude grows from 0.01 to 1 along x: nearly
    ordered sites (small torques, small errors) next to disordered ones."""
    rng = np.random.default_rng(seed)
    amplitude = 0.01 * 100.0 ** (lattice.coordinates[:, 0] / lattice.shape[0])
    s = np.array([0.0, 0.0, 1.0]) + amplitude[:, None] * rng.normal(size=(lattice.num_sites, 3))
    return s / np.linalg.norm(s, axis=1, keepdims=True)


def test_uncertainty_ranks_the_error_against_a_new_draw(tmp_path):
    """Members and the 'truth' of each frame are independent draws from one distribution of
    models: the error of the committee mean against a new draw then scales with the members'
    torque spread, site by site, and its RMS is about sqrt(1 + 1/K) times the spread."""
    from spinforce.data import DatasetWriter
    lat = spinforce.Lattice("square", 6)
    base = random_member(lat, 6)
    members = [perturbed(base, 0.3, k) for k in range(8)]
    with DatasetWriter(tmp_path / "truth.h5", lattice_kind="square", lattice_shape=lat.shape,
                       num_sites=lat.num_sites, method="test", model={}) as w:
        for k in range(12):
            s = graded_disorder(lat, k)
            r = compute_fields(perturbed(base, 0.3, 100 + k), lat, s)
            w.append(s, r.fields, r.energy)
    committee = CommitteeModel(members)
    ts = export_torchscript(committee, tmp_path / "c.ts")
    res = uncertainty_calibration(ts, tmp_path / "truth.h5", out=tmp_path / "calibration.png", bins=6)
    assert res["sites"] == 12 * 36 and sum(b["sites"] for b in res["bins"]) == 12 * 36
    # measured 0.59, 0.59, 0.68 for three base models; RMSE / RMS spread 1.22, 1.18, 1.16
    assert res["spearman_site"] > 0.45, res
    u = np.array([b["uncertainty_mean"] for b in res["bins"]])
    rmse = np.array([b["torque_rmse"] for b in res["bins"]])
    assert np.all(np.diff(u) > 0) and rmse[-1] > 3 * rmse[0], res["bins"]
    assert 0.8 < res["torque_rmse"] / res["uncertainty_rms"] < 1.6, res
    assert (tmp_path / "calibration.png").stat().st_size > 1000
    assert json.loads((tmp_path / "calibration.json").read_text())["spearman_site"] == res["spearman_site"]
    # the Python committee gives the same numbers as the file run from C++
    py = uncertainty_calibration(committee, tmp_path / "truth.h5", bins=6)
    assert py["spearman_site"] == pytest.approx(res["spearman_site"], abs=1e-9)
    assert py["torque_rmse"] == pytest.approx(res["torque_rmse"], rel=1e-10)
    assert py["spearman_site_torque"] == pytest.approx(res["spearman_site_torque"], abs=1e-9)
    with pytest.raises(ValueError, match="committee"):
        uncertainty_calibration(export_torchscript(base, tmp_path / "single.ts"), tmp_path / "truth.h5")
    with pytest.raises(ValueError, match="bins"):
        uncertainty_calibration(ts, tmp_path / "truth.h5", bins=0)


@pytest.mark.gpu
def test_committee_provider_on_gpu_matches_cpu(tmp_path):
    lat = spinforce.Lattice("square", 8)
    base = random_member(lat, 7)
    ts = export_torchscript(CommitteeModel([base, perturbed(base, 0.2, 1), perturbed(base, 0.2, 2)]), tmp_path / "c.ts")
    s = torch.from_numpy(lat.random_spins(4))
    cpu = spinforce.MLForceField(ts, lat).compute(s)
    gpu = spinforce.MLForceField(ts, lat, device="cuda").compute(s.cuda())
    assert gpu.uncertainty.device.type == "cuda"
    torch.testing.assert_close(gpu.fields.cpu(), cpu.fields, rtol=0, atol=1e-10)
    torch.testing.assert_close(gpu.uncertainty.cpu(), cpu.uncertainty, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind, settings", [
    ("group", {"cutoff": 2.5, "bond_cutoff": 1.5, "block_radius": 1.5, "floor": 0.2}),
    ("bond_shells", {"cutoff": 2.5, "powers": [1, 2], "pair_orbits": True, "half_angle": True, "pair_cutoff": 1.5}),
    ("ordered_bonds", {"cutoff": 2.5, "bond_cutoff": 1.5, "half_angle": True}),
])
def test_exported_file_rebuilds_with_its_descriptor_settings(tmp_path, kind, settings):
    """load_exported (what `spinforce export FILE.ts --pt2` runs) rebuilds every descriptor kind
    with the settings it was exported with, not the defaults: every constructor setting is kept
    in the file (registry.setting_names)."""
    from spinforce.descriptors.registry import setting_names
    from spinforce.ml.committee import load_exported
    lat = spinforce.Lattice("square", 8)
    torch.manual_seed(3)
    members = [build_model(lat, kind, settings, [8, 8], "tanh", "float64") for _ in range(2)]
    for path, model in ((tmp_path / "one.ts", members[0]), (tmp_path / "two.ts", CommitteeModel(members))):
        export_torchscript(model, path)
        rebuilt = load_exported(path)
        assert rebuilt.descriptor.settings() == model.descriptor.settings()
        assert all(hasattr(rebuilt.descriptor, name) for name in setting_names(kind))
        s = lat.random_spins(4)
        np.testing.assert_allclose(compute_fields(rebuilt, lat, s).fields, compute_fields(model, lat, s).fields,
                                   rtol=0, atol=1e-12)
