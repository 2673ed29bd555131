"""Behler-Parrinello force field: training, exactness of the fields, export, C++ provider."""
import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import spinforce
import spinforce.cli
from spinforce.data import DatasetWriter
from spinforce.ml.model import (build_model, export_torchscript, load_model, quiet_torchscript, read_model_record,
                                save_model)
from spinforce.ml.training import load_config, train
from test_ordered_bonds import cpp_matches_python, point_group_images

J1 = 1.0


def heisenberg(lattice, spins):
    """Exact energy and fields of E = J1 sum_<ij> S_i.S_j (nearest neighbours)."""
    nb = lattice.neighbors(1)
    h = -J1 * spins[nb].sum(axis=1)
    return -0.5 * float((spins * h).sum()), h


def write_heisenberg_dataset(path, lattice, frames, seed):
    """Random and perturbed-ferromagnetic snapshots with their exact Heisenberg fields."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="heisenberg", model={"J1": J1}, seed=seed) as w:
        for k in range(frames):
            s = rng.normal(size=(lattice.num_sites, 3)) + (k % 3) * np.array([0.0, 0.0, 1.0])
            s /= np.linalg.norm(s, axis=1, keepdims=True)
            e, h = heisenberg(lattice, s)
            w.append(s, h, e)


@pytest.fixture(scope="module")
def heis_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("heis")
    lat = spinforce.Lattice("square", 6)
    write_heisenberg_dataset(d / "heis.h5", lat, 48, seed=3)
    return d / "heis.h5", lat


def config(data_path, out_dir, **training):
    t = {"seed": 1, "epochs": 40, "batch_size": 4, "learning_rate": 3e-3, "threads": 1, "energy_weight": 0.1,
         "energy_weight_start": 5, "energy_weight_ramp": 5, "early_stop_patience": 0, "lr_patience": 5}
    t.update(training)
    return {"data": {"paths": [str(data_path)], "validation_fraction": 0.25},
            "descriptor": {"kind": "bond_shells", "cutoff": 1.5, "powers": [1, 2]},
            "model": {"hidden": [16, 16], "activation": "silu", "dtype": "float64"},
            "training": t, "output": {"dir": str(out_dir), "plots": True}}


@pytest.fixture(scope="module")
def trained(heis_data, tmp_path_factory):
    path, _ = heis_data
    out = tmp_path_factory.mktemp("run")
    cfg = out / "train.toml"
    cfg.write_text(f"""
[data]
paths = ["{path}"]
validation_fraction = 0.25
[descriptor]
kind = "bond_shells"
cutoff = 1.5
powers = [1, 2]
[model]
hidden = [16, 16]
activation = "silu"
[training]
seed = 1
epochs = 40
batch_size = 4
learning_rate = 3e-2
threads = 1
energy_weight_start = 5
energy_weight_ramp = 5
[output]
dir = "run"
""")
    assert spinforce.cli.main(["train", str(cfg), "--no-progress"]) == 0
    return out / "run"


def test_heisenberg_model_learns_torques_far_below_field_scale(trained, heis_data):
    rec = read_model_record(trained / "model.pt")
    scale = rec["metrics"]["data"]["torque_rms"]
    val = rec["metrics"]["val"]
    # Torques of random Heisenberg configurations are O(1); the model must get them to 2%.
    assert scale > 0.5
    assert val["torque_rmse"] < 0.02 * scale, (val, scale)
    assert val["energy_mae_per_site"] < 0.02 * scale
    rows = list(csv.DictReader(open(trained / "log.csv")))
    assert len(rows) == 40 and float(rows[-1]["val_torque_rmse"]) < float(rows[0]["val_torque_rmse"]) / 10
    for png in ("parity_val.png", "torque_error_hist_val.png"):
        image = imread(trained / "plots" / png)
        assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.01, png  # drawn, not blank
    assert rec["lattice_kind"] == "square" and rec["descriptor"]["kind"] == "bond_shells"
    assert rec["training_data"][0]["model"] == {"J1": J1} and rec["spinforce_version"] == spinforce.__version__


def test_heisenberg_model_reproduces_exact_fields_on_unseen_configurations(trained):
    """The exported accuracy is checked against the exact Heisenberg fields of states the model
    never saw, on a lattice of another size: not against the training code's own metrics."""
    lat = spinforce.Lattice("square", (8, 7))
    model = load_model(trained / "model.pt", lat)
    nb = lat.neighbor_table(model.neighbor_offsets)
    rng = np.random.default_rng(2024)
    torque_sq, exact_sq, energy_err = 0.0, 0.0, []
    for k in range(6):
        s = rng.normal(size=(lat.num_sites, 3)) + (k % 3) * np.array([0.0, 0.0, 1.0])
        s /= np.linalg.norm(s, axis=1, keepdims=True)
        e_exact, h_exact = heisenberg(lat, s)
        e, h = model(torch.from_numpy(s), nb)
        torque_sq += float((np.cross(s, h.detach().numpy() - h_exact) ** 2).sum())
        exact_sq += float((np.cross(s, h_exact) ** 2).sum())
        energy_err.append(abs(float(e) - e_exact) / lat.num_sites)
    torque_rms = np.sqrt(exact_sq / (6 * lat.num_sites))
    assert torque_rms > 0.5
    assert np.sqrt(torque_sq / (6 * lat.num_sites)) < 0.02 * torque_rms
    assert max(energy_err) < 0.02 * torque_rms


def test_fields_are_minus_finite_difference_gradient_of_model_energy(trained):
    lat = spinforce.Lattice("square", (7, 6))   # not the training size: any N of the kind
    model = load_model(trained / "model.pt", lat)
    nb = lat.neighbor_table(model.neighbor_offsets)
    s = torch.from_numpy(lat.random_spins(5))
    _, h = model(s, nb)
    rng = np.random.default_rng(0)
    step = 1e-5
    for _ in range(4):
        d = torch.from_numpy(rng.normal(size=s.shape))
        ep, _ = model(s + step * d, nb)
        em, _ = model(s - step * d, nb)
        fd = -(ep - em) / (2 * step)
        assert float(fd) == pytest.approx(float((h * d).sum()), rel=1e-7, abs=1e-9)


def test_exported_torchscript_in_cpp_matches_python_float64(trained, tmp_path):
    out = tmp_path / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the TorchScript deprecation warning must not reach users
        assert spinforce.cli.main(["export", str(trained / "model.pt"), "--torchscript", str(out)]) == 0
    assert spinforce.cli.main(["export", str(trained / "model.pt"), "--torchscript", str(out)]) == 2  # no overwrite
    for shape in [(6, 6), (10, 8)]:
        lat = spinforce.Lattice("square", shape)
        model = load_model(trained / "model.pt", lat)
        provider = spinforce.MLForceField(out, lat)
        s = lat.random_spins(11)
        e_py, h_py = model(torch.from_numpy(s), lat.neighbor_table(model.neighbor_offsets))
        with torch.no_grad():  # the provider differentiates even under no_grad
            r = provider.compute(s)
        assert isinstance(r.fields, np.ndarray) and r.fields.shape == (lat.num_sites, 3)
        np.testing.assert_allclose(r.fields, h_py.numpy(), rtol=0, atol=1e-10)
        assert r.energy == pytest.approx(float(e_py), rel=1e-12)
        assert provider.name == "ml" and provider.num_sites == lat.num_sites
        # a torch tensor in gives a torch tensor out
        rt = provider.compute(torch.from_numpy(s))
        assert torch.allclose(rt.fields, h_py, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="spins"):
        provider.compute(np.ones((lat.num_sites, 3)))


def test_float32_model_exports_and_runs(heis_data, tmp_path):
    _, lat = heis_data
    model = build_model(lat, "bond_shells", {"cutoff": 1.0}, [8], "tanh", "float32")
    out = export_torchscript(model, tmp_path / "m32.ts")
    s = lat.random_spins(2)
    r = spinforce.MLForceField(out, lat).compute(s)
    e, h = model(torch.from_numpy(s), lat.neighbor_table(model.neighbor_offsets))
    assert h.dtype == torch.float32 and r.fields.dtype == np.float64
    np.testing.assert_allclose(r.fields, h.double().numpy(), atol=1e-6)


def test_resume_continues_the_same_loss_curve(heis_data, tmp_path):
    path, _ = heis_data
    full = train(config(path, tmp_path / "full", epochs=6, energy_weight_start=2, energy_weight_ramp=2),
                 progress=False)
    part_cfg = config(path, tmp_path / "split", epochs=3, energy_weight_start=2, energy_weight_ramp=2)
    train(part_cfg, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        train(part_cfg, progress=False)
    resumed = train(config(path, tmp_path / "split", epochs=6, energy_weight_start=2, energy_weight_ramp=2),
                    resume=True, progress=False)
    assert len(resumed.history) == 6
    for a, b in zip(full.history, resumed.history):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (key, a, b)
    with pytest.raises(ValueError, match=r"\[model\]"):
        bad = config(path, tmp_path / "split", epochs=7)
        bad["model"]["hidden"] = [8]
        train(bad, resume=True, progress=False)


def test_training_metrics_on_a_subset_of_frames_leave_the_training_unchanged(heis_data, tmp_path):
    """train_metrics_frames = k logs the training metrics of k fixed training frames: the losses,
    the validation metrics and the model are those of a run that measures all of them, the training
    metrics differ (fewer frames) and equal an evaluation of the model on those k frames."""
    from spinforce.ml.training import _load_parts, _metric_frames, evaluate, load_config
    path, _ = heis_data
    every = train(config(path, tmp_path / "all", epochs=3), progress=False)
    some = train(config(path, tmp_path / "some", epochs=3, train_metrics_frames=5), progress=False)
    for a, b in zip(every.history, some.history):
        for key in ("loss", "val_torque_rmse", "val_energy_mae_per_site"):
            assert b[key] == pytest.approx(a[key], rel=1e-12), key
        assert b["train_torque_rmse"] != pytest.approx(a["train_torque_rmse"], rel=1e-6)
    with pytest.raises(ValueError, match="point_group = 'sample' draws one of a site's point-group images; the "
                                         "bond_shells descriptor"):
        train(config(path, tmp_path / "sampled", epochs=1, point_group="sample"), progress=False)
    assert not (tmp_path / "sampled").exists()
    cfg = load_config(config(path, tmp_path / "some", epochs=3, train_metrics_frames=5))
    parts, lattices, _ = _load_parts(cfg, torch.float64, cfg["training"]["seed"], torch.device("cpu"))
    _metric_frames(parts, 5, cfg["training"]["seed"])
    assert sum(len(p.train_metric) for p in parts) == 5 and set(parts[0].train_metric) <= set(parts[0].train)
    model = load_model(some.model_path)
    parts[0].neighbors = lattices[0].neighbor_table(model.neighbor_offsets)
    row = some.history[some.best_epoch - 1]
    assert evaluate(model, parts, "train_metric", 4)["torque_rmse"] == pytest.approx(row["train_torque_rmse"],
                                                                                      rel=1e-10)


def test_wrong_lattice_kind_or_descriptor_version_is_a_value_error(trained, tmp_path):
    tri = spinforce.Lattice("triangular", 6)
    with pytest.raises(ValueError, match="square"):
        load_model(trained / "model.pt", tri)
    ts = export_torchscript(load_model(trained / "model.pt"), tmp_path / "m.ts")
    with pytest.raises(ValueError, match="'square' lattice"):
        spinforce.MLForceField(ts, tri)
    with pytest.raises(ValueError, match="device"):
        spinforce.MLForceField(ts, spinforce.Lattice("square", 6), device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            spinforce.MLForceField(ts, spinforce.Lattice("square", 6), device="cuda")
    with pytest.raises(ValueError, match="too small"):
        spinforce.MLForceField(ts, spinforce.Lattice("square", 2))
    rec = read_model_record(trained / "model.pt")
    rec["descriptor"]["version"] = 99
    save_model(tmp_path / "old.pt", rec)
    with pytest.raises(ValueError, match="version 99"):
        load_model(tmp_path / "old.pt")
    with quiet_torchscript():
        scripted = torch.jit.load(str(ts))
        scripted.descriptor_version = 99
        scripted.save(str(tmp_path / "v99.ts"))
    with pytest.raises(ValueError, match="descriptor version 99"):
        spinforce.MLForceField(tmp_path / "v99.ts", spinforce.Lattice("square", 6))
    with pytest.raises(ValueError, match="export"):
        spinforce.MLForceField(trained / "model.pt", spinforce.Lattice("square", 6))  # not TorchScript
    with pytest.raises(ValueError, match="not a spinforce model file"):
        load_model(ts)


def test_config_validation_and_published_architecture(tmp_path):
    from importlib.resources import files
    configs = files("spinforce.ml") / "configs"
    sd = load_config(configs / "sd_square.toml")
    assert sd["descriptor"] == {"kind": "bond_shells", "cutoff": 3.0, "powers": [1, 2], "pair_orbits": True}
    cfg = load_config(configs / "published_architecture.toml")
    lat = spinforce.Lattice("square", 8)
    model = build_model(lat, "bond_shells", {"cutoff": 2.0}, cfg["model"]["hidden"], cfg["model"]["activation"],
                        cfg["model"]["dtype"])
    widths = [m.out_features for m in model.mlp if isinstance(m, torch.nn.Linear)]
    assert widths[0] == 1024 and widths[-2] == 64 and len(widths) == 9 and widths[-1] == 1
    assert all(isinstance(m, torch.nn.ReLU) for m in model.mlp[1::2])
    base = config("x.h5", tmp_path / "o")
    for section, key, value, match in [("model", "activation", "gelu", "activation"),
                                       ("training", "batch_size", 0, "batch_size"),
                                       ("training", "lr_schedule", "cosine", "lr_schedule"),
                                       ("data", "validation_fraction", 1.0, "validation_fraction"),
                                       ("training", "device", "tpu", "device"),
                                       ("descriptor", "kind", "acsf", "descriptor kind")]:
        bad = {k: dict(v) for k, v in base.items()}
        bad[section][key] = value
        with pytest.raises(ValueError, match=match):
            if section == "descriptor":
                build_model(lat, value, {}, [4], "silu", "float64")
            elif section == "model":
                build_model(lat, "bond_shells", {}, [4], value, "float64")
            else:
                load_config(bad)


@pytest.mark.gpu
def test_provider_on_gpu_matches_cpu(trained, tmp_path):
    lat = spinforce.Lattice("square", 8)
    ts = export_torchscript(load_model(trained / "model.pt", lat), tmp_path / "m.ts")
    s = torch.from_numpy(lat.random_spins(4))
    cpu = spinforce.MLForceField(ts, lat).compute(s)
    gpu = spinforce.MLForceField(ts, lat, device="cuda").compute(s.cuda())
    assert gpu.fields.device.type == "cuda"
    torch.testing.assert_close(gpu.fields.cpu(), cpu.fields, rtol=0, atol=1e-10)


@pytest.mark.parametrize("options", [{}, {"three_body": True, "half_angle": True}, {"pair_cutoff": 1.5}])
@pytest.mark.parametrize("kind,L", [("square", 8), ("triangular", 8), ("cubic", 6)])
def test_bond_shell_descriptor_invariances(kind, L, options):
    """Global spin rotations, time reversal and lattice point-group operations leave the
    features unchanged (point group: features follow the sites they belong to)."""
    from spinforce.descriptors import BondShellDescriptor
    lat = spinforce.Lattice(kind, L)
    d = BondShellDescriptor(lat, cutoff=2.0, powers=[1, 2], pair_orbits=True, **options)
    nb = lat.neighbor_table(d.neighbor_offsets)
    s = lat.random_spins(0)
    f = d.features(torch.from_numpy(s), nb).numpy()
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    np.testing.assert_allclose(d.features(torch.from_numpy(s @ q.T), nb).numpy(), f, atol=1e-12)
    np.testing.assert_allclose(d.features(torch.from_numpy(-s), nb).numpy(), f, atol=1e-12)
    for image, s_g in point_group_images(lat, s):
        f_g = d.features(torch.from_numpy(s_g), nb).numpy()
        np.testing.assert_allclose(f_g[image], f, atol=1e-12)
    # Heisenberg: J1/2 times the nearest-neighbour bond sum is the exact site energy.
    e, _ = heisenberg(lat, s)
    assert 0.5 * J1 * f[:, 0].sum() == pytest.approx(e, rel=1e-12)


@pytest.mark.parametrize("kind,cutoff", [("square", 4.5), ("triangular", 3.0), ("cubic", 2.0)])
def test_bond_shell_orbit_sums_equal_the_orbit_matrix(kind, cutoff):
    """The pair-orbit features, gathered orbit by orbit, equal the product of all m^2 bonds
    S_j . S_l among the neighbours with the 0/1 orbit matrix of the model file, and so do their
    gradients (the fields)."""
    from spinforce.descriptors import BondShellDescriptor
    lat = spinforce.Lattice(kind, 10 if kind != "cubic" else 6)
    d = BondShellDescriptor(lat, cutoff=cutoff, powers=[1], pair_orbits=True)
    nb = lat.neighbor_table(d.neighbor_offsets)
    spins = torch.from_numpy(lat.random_spins(4)).requires_grad_(True)
    n, orbits = lat.num_sites, d.orbit_sum.shape[1]
    around = spins[nb]
    dense = torch.bmm(around, around.transpose(1, 2)).reshape(n, -1) @ d.orbit_sum
    gathered = d.features(spins, nb)[:, -orbits:]
    np.testing.assert_allclose(gathered.detach().numpy(), dense.detach().numpy(), rtol=1e-13, atol=1e-13)
    w = torch.from_numpy(np.random.default_rng(3).normal(size=(n, orbits)))
    g1, = torch.autograd.grad((gathered * w).sum(), spins, retain_graph=True)
    g2, = torch.autograd.grad((dense * w).sum(), spins)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-12, atol=1e-12)


def test_bond_shell_pair_cutoff_keeps_the_long_shells_and_the_short_orbits():
    """With pair_cutoff the shell sums reach the cutoff and the pair orbits stop at pair_cutoff:
    the features are those of the two plain descriptors side by side; it survives a model file."""
    from spinforce.descriptors import BondShellDescriptor
    lat = spinforce.Lattice("square", 10)
    s = torch.from_numpy(lat.random_spins(5))
    mixed = BondShellDescriptor(lat, cutoff=3.0, powers=[1, 2], pair_orbits=True, pair_cutoff=1.5)
    long = BondShellDescriptor(lat, cutoff=3.0, powers=[1, 2])
    short = BondShellDescriptor(lat, cutoff=1.5, powers=[1, 2], pair_orbits=True)
    f = mixed.features(s, lat.neighbor_table(mixed.neighbor_offsets))
    f_long = long.features(s, lat.neighbor_table(long.neighbor_offsets))
    f_short = short.features(s, lat.neighbor_table(short.neighbor_offsets))
    orbits = short.orbit_sum.shape[1]
    assert mixed.num_features == f.shape[1] == long.num_features + orbits
    np.testing.assert_allclose(f[:, :-orbits], f_long, rtol=1e-13)
    np.testing.assert_allclose(f[:, -orbits:], f_short[:, -orbits:], rtol=1e-13)
    assert BondShellDescriptor.from_settings(lat, mixed.settings()).num_features == mixed.num_features
    for bad, match in (({"pair_cutoff": 3.5}, "pair_cutoff must lie between"), ({"pair_cutoff": 0.5}, "between"),
                       ({"pair_cutoff": 1.5, "pair_orbits": False}, "needs pair_orbits")):
        with pytest.raises(ValueError, match=match):
            BondShellDescriptor(lat, **{"cutoff": 3.0, "pair_orbits": True, **bad})


def test_bond_shell_three_body_features_are_the_orbit_sums():
    """The three-body features of one site equal the sums, over the neighbour pairs {j, l} of
    each pair orbit, of (S_i.S_j)(S_i.S_l) and (S_i.S_j)(S_j.S_l)(S_l.S_i), done by loops."""
    from spinforce.descriptors import BondShellDescriptor
    lat = spinforce.Lattice("triangular", 8)
    d = BondShellDescriptor(lat, cutoff=1.8, powers=[1], pair_orbits=True, three_body=True)
    plain = BondShellDescriptor(lat, cutoff=1.8, powers=[1], pair_orbits=True)
    nb = lat.neighbor_table(d.neighbor_offsets)
    s = lat.random_spins(3)
    f = d.features(torch.from_numpy(s), nb).numpy()
    n_orbits = d.orbit_sum.shape[1]
    assert f.shape[1] == plain.num_features + 2 * n_orbits == d.num_features
    np.testing.assert_allclose(f[:, :plain.num_features], plain.features(torch.from_numpy(s), nb).numpy(), atol=0)
    m = nb.shape[1]
    orbit = d.orbit_sum.numpy().reshape(m, m, n_orbits).argmax(-1)
    for i in (0, 37):
        center, loops = np.zeros(n_orbits), np.zeros(n_orbits)
        for j in range(m):
            for l in range(j + 1, m):
                a, b = s[nb[i, j]], s[nb[i, l]]
                center[orbit[j, l]] += (s[i] @ a) * (s[i] @ b)
                loops[orbit[j, l]] += (s[i] @ a) * (a @ b) * (b @ s[i])
        np.testing.assert_allclose(f[i, plain.num_features:], np.r_[center, loops], atol=1e-12)


@pytest.mark.parametrize("pair_cutoff", [{}, {"pair_cutoff": 1.5}])
def test_bond_shell_options_export_and_run_in_cpp(tmp_path, pair_cutoff):
    """A model with the three-body and half-angle features (and pair orbits of the nearer
    neighbours only) exports to TorchScript and the C++ provider gives the Python fields (1e-10)
    on another lattice size."""
    from spinforce.ml.model import build_model, compute_fields, export_torchscript
    lat = spinforce.Lattice("square", 6)
    torch.manual_seed(0)
    model = build_model(lat, "bond_shells", {"cutoff": 2.0, "powers": [1, 2], "pair_orbits": True,
                                             "three_body": True, "half_angle": True, **pair_cutoff},
                        [16, 16], "tanh", "float64")
    path = export_torchscript(model, tmp_path / "m.ts")
    big = spinforce.Lattice("square", (8, 7))
    s = big.random_spins(2)
    ref, _ = cpp_matches_python(path, model, big, s, smallest=1e-3)
    # rebuilt from the TorchScript file (as `spinforce export FILE.ts --pt2` does), options included
    from spinforce.ml.committee import load_exported
    rebuilt = load_exported(path)
    assert rebuilt.descriptor.settings() == model.descriptor.settings()
    np.testing.assert_array_equal(compute_fields(rebuilt, big, s).fields, ref.fields)


def test_bond_shell_half_angle_features_are_the_overlap_sums():
    """The half-angle features are the shell sums of sqrt((1 + S_i.S_j)/2 + d^2) after the bond
    powers, and the pair-orbit sums of sqrt((1 + S_j.S_l)/2 + d^2) after the orbit bond sums."""
    from spinforce.descriptors import BondShellDescriptor
    from spinforce.descriptors.bond_shells import HALF_ANGLE_FLOOR as d2
    lat = spinforce.Lattice("square", 8)
    d = BondShellDescriptor(lat, cutoff=1.5, powers=[1], pair_orbits=True, half_angle=True)
    nb = lat.neighbor_table(d.neighbor_offsets)
    s = lat.random_spins(5)
    f = d.features(torch.from_numpy(s), nb).numpy()
    m, n_orbits = nb.shape[1], d.orbit_sum.shape[1]
    assert m == 8 and f.shape[1] == d.num_features == 2 * 2 + 2 * n_orbits  # shells: 1 and sqrt 2
    orbit = d.orbit_sum.numpy().reshape(m, m, n_orbits).argmax(-1)
    overlap = lambda a, b: np.sqrt((1 + a @ b) / 2 + d2 ** 2)
    for i in (0, 21):
        shells = [sum(overlap(s[i], s[nb[i, j]]) for j in range(k, k + 4)) for k in (0, 4)]
        np.testing.assert_allclose(f[i, [1, 3]], shells, atol=1e-12)
        pairs = np.zeros(n_orbits)
        for j in range(m):
            for l in range(j + 1, m):
                pairs[orbit[j, l]] += overlap(s[nb[i, j]], s[nb[i, l]])
        np.testing.assert_allclose(f[i, 4 + n_orbits:], pairs, atol=1e-12)


@pytest.mark.gpu
def test_training_on_gpu_matches_cpu(heis_data, tmp_path):
    path, _ = heis_data
    runs = [train(config(path, tmp_path / dev, epochs=2, device=dev), progress=False) for dev in ("cpu", "cuda")]
    for a, b in zip(*(r.history for r in runs)):
        assert b["val_torque_rmse"] == pytest.approx(a["val_torque_rmse"], rel=1e-6)


SHIPPED_TRAINING_CONFIGS = sorted(p.stem for p in (Path(spinforce.__file__).parent / "ml" / "configs").glob("*.toml"))


@pytest.mark.parametrize("name", SHIPPED_TRAINING_CONFIGS)
def test_shipped_training_configs_pass_the_schema(name):
    """Every training config shipped in spinforce/ml/configs passes the checks `spinforce train` runs."""
    from spinforce.ml.training import load_config
    path = Path(spinforce.__file__).parent / "ml" / "configs" / f"{name}.toml"
    cfg = load_config(path)
    assert cfg["data"]["paths"] and cfg["output"]["dir"]
    assert len(SHIPPED_TRAINING_CONFIGS) >= 4
    if name.startswith("de_square_fixed_n"):
        assert cfg["model"]["mu_input"] is True and cfg["training"]["density_weight"] > 0
