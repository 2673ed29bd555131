"""Force fields at fixed electron count: site grand potentials omega_i(features, mu), densities
n_i = -d omega_i/d mu, mu solved for sum_i n_i = N_e, fields by the envelope theorem."""
import copy
import math

import numpy as np
import pytest

import spinforce  # noqa: F401  (before torch)
import torch

from spinforce.data import DatasetWriter, read_dataset
from spinforce.electrons import ExactDiagonalization, SDModel, model_at_mu, mu_for_filling
from spinforce.ml.committee import CommitteeModel, export_committee, load_exported
from spinforce.ml.model import build_model, compute_fields, export_torchscript, load_model, set_ensemble
from spinforce.ml.provider import MLForceField
from spinforce.ml.sample_ed import perturbed_configuration, relabel_at_mus, write_ed_samples
from spinforce.ml.training import predict, train

J, KT = 6.0, 0.3
MUS = [-5.4, -4.8, -4.2, -3.6, -3.0]


def _random_spins(n, seed):
    s = np.random.default_rng(seed).normal(size=(n, 3))
    return s / np.linalg.norm(s, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small mu-input model trained on ED labels at several mu (4x4, kT = 0.3), its data and
    two committee members."""
    root = tmp_path_factory.mktemp("fixed_n")
    lattice = spinforce.Lattice("square", (4, 4))
    data = root / "mus.h5"
    write_ed_samples(data, lattice, J=J, kT=KT, frames=24, seed=3, mus=MUS, progress=False)
    runs = []
    for seed in (0, 1):
        cfg = {"data": {"paths": [str(data)], "validation_fraction": 0.2},
               "descriptor": {"kind": "bond_shells", "cutoff": 1.5},
               "model": {"hidden": [12, 12], "mu_input": True},
               "training": {"seed": seed, "epochs": 8, "batch_size": 10, "learning_rate": 5e-3,
                            "energy_weight_start": 0, "energy_weight_ramp": 0, "threads": 1},
               "output": {"dir": str(root / f"run{seed}"), "plots": False}}
        runs.append(train(cfg, progress=False).model_path)
    return {"lattice": lattice, "data": data, "runs": runs, "root": root}


def _fixed_n(trained, filling=0.45, lattice=None):
    return set_ensemble(load_model(trained["runs"][0], lattice or trained["lattice"]), fixed_filling=filling)


# --- labels ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kT", [0.0, 0.2])
def test_ed_labels_at_several_mu_equal_ed_at_each_fixed_mu(kT):
    lattice = spinforce.Lattice("square", (4, 4))
    model = SDModel(lattice, J=J, filling=0.4, kT=kT)
    s = _random_spins(16, 1)
    for r in ExactDiagonalization(model).compute_at_mus(s, MUS):
        ref = ExactDiagonalization(model_at_mu(model, r.mu)).compute(s)
        assert r.energy == pytest.approx(ref.energy, abs=1e-11)
        np.testing.assert_allclose(r.fields, ref.fields, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.density, ref.density, rtol=0, atol=1e-12)


def test_ed_density_is_electrons_per_site_and_minus_dOmega_dmu():
    lattice = spinforce.Lattice("square", (4, 4))
    model = SDModel(lattice, J=J, filling=0.4, kT=0.2)
    ed, s = ExactDiagonalization(model), _random_spins(16, 2)
    # at fixed filling the densities add up to N_e = filling * 2N, each in [0, 2]
    r = ed.compute(s)
    assert r.density.sum() == pytest.approx(0.4 * 32, rel=1e-12)
    assert 0 < r.density.min() and r.density.max() < 2
    # at fixed mu their sum is -dOmega/dmu (central differences, error ~h^2 Omega''')
    h = 1e-4
    lo, mid, hi = ed.compute_at_mus(s, [r.mu - h, r.mu, r.mu + h])
    assert -(hi.energy - lo.energy) / (2 * h) == pytest.approx(mid.density.sum(), rel=1e-7)


def test_dataset_stores_mu_and_densities_and_old_files_read_without(tmp_path):
    lattice = spinforce.Lattice("square", (4, 4))
    path = tmp_path / "d.h5"
    write_ed_samples(path, lattice, J=J, kT=KT, frames=3, seed=1, mus=MUS[:2], progress=False)
    ds = read_dataset(path)
    assert ds.num_frames == 6 and ds.density.shape == (6, 16)
    np.testing.assert_array_equal(ds.mu, MUS[:2] * 3)
    np.testing.assert_array_equal(ds.trajectory, [0, 0, 1, 1, 2, 2])  # one state, one trajectory
    np.testing.assert_allclose(ds.density.sum(1)[0], ExactDiagonalization(
        SDModel(lattice, J=J, mu=MUS[0], kT=KT)).compute(ds.spins[0]).density.sum(), rtol=1e-12)
    # a file without them (written by a fixed-filling run) reads as None; its model's mu fills frame_mu
    plain = tmp_path / "p.h5"
    write_ed_samples(plain, lattice, J=J, kT=KT, frames=2, seed=1, filling=0.4, progress=False)
    old = read_dataset(plain)
    assert old.density is None and old.mu is None and old.frame_mu() is None
    # resuming a multi-mu file equals writing it at once
    write_ed_samples(tmp_path / "r.h5", lattice, J=J, kT=KT, frames=2, seed=1, mus=MUS[:2], progress=False)
    write_ed_samples(tmp_path / "r.h5", lattice, J=J, kT=KT, frames=3, seed=1, mus=MUS[:2], progress=False,
                     resume=True)
    np.testing.assert_array_equal(read_dataset(tmp_path / "r.h5").density, ds.density)
    # relabelling the states of a dataset gives the same labels
    relabel_at_mus(plain, tmp_path / "re.h5", MUS[:2], progress=False)
    re = read_dataset(tmp_path / "re.h5")
    ref = ExactDiagonalization(SDModel(lattice, J=J, mu=MUS[1], kT=KT)).compute(old.spins[1])
    np.testing.assert_allclose(re.fields[3], ref.fields, rtol=0, atol=1e-12)
    from spinforce.ml.sample_ed import main as sample_main
    assert sample_main([str(tmp_path / "re2.h5"), "--relabel", str(plain), "--mu", str(MUS[0]), str(MUS[1])]) == 0
    np.testing.assert_array_equal(read_dataset(tmp_path / "re2.h5").fields, re.fields)
    with DatasetWriter(tmp_path / "w.h5", lattice_kind="square", lattice_shape=(4, 4), num_sites=16, method="ed",
                       model={}, density=True) as w:
        with pytest.raises(ValueError, match="mu and densities"):
            w.append(ds.spins[0], ds.fields[0], 0.0)


# --- the model ---------------------------------------------------------------------------------
def test_model_densities_are_minus_dOmega_dmu(trained):
    model = load_model(trained["runs"][0], trained["lattice"])
    s = torch.tensor(_random_spins(16, 4)).unsqueeze(0)
    nb = trained["lattice"].neighbor_table(model.neighbor_offsets)
    mu = torch.tensor([-4.1], dtype=torch.float64)
    _, _, density = predict(model, s, nb, mu=mu)
    h = 1e-5
    omega = [model.site_energies(s[0], nb, mu + d).detach() for d in (-h, h)]
    fd = -(omega[1] - omega[0]) / (2 * h)
    # central differences: truncation ~h^2 omega''' ~1e-10, rounding ~1e-16 |omega| / h ~1e-10
    np.testing.assert_allclose(density[0].detach(), fd, rtol=0, atol=1e-8)
    assert density.abs().max() > 0.1  # the model has learnt a density at all
    # the forward-mode derivatives the solve uses equal these, and d/dmu of them
    features = model.descriptor.site_features(s[0], nb)
    _, d1, d2 = model.grand_potential_derivatives(features, mu[0])
    np.testing.assert_allclose(-d1.detach(), density[0].detach(), rtol=0, atol=1e-12)
    dens = [-model.grand_potential_derivatives(features, mu[0] + d)[1].detach() for d in (-h, h)]
    np.testing.assert_allclose(-d2.detach(), (dens[1] - dens[0]) / (2 * h), rtol=0, atol=1e-7)


@pytest.mark.parametrize("activation", ["silu", "tanh"])
def test_mu_derivatives_carried_forward_equal_autograd_also_in_torchscript(activation):
    from spinforce.ml.model import quiet_torchscript
    torch.manual_seed(1)
    lattice = spinforce.Lattice("square", (4, 4))
    model = build_model(lattice, "bond_shells", {"cutoff": 1.5}, [8, 8], activation, "float64", mu_input=True)
    model.set_mu_normalisation([-5.3, -4.1, -3.3], 0.9)
    model.requires_grad_(False)
    nb = lattice.neighbor_table(model.neighbor_offsets)
    features = model.descriptor.site_features(torch.tensor(_random_spins(16, 3)), nb)
    mu = torch.full((16,), -4.3, dtype=torch.float64, requires_grad=True)
    omega = model.energies_from_features(features, mu)
    (first,) = torch.autograd.grad(omega.sum(), mu, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), mu)
    with quiet_torchscript():
        scripted = torch.jit.script(model)
    for m in (model, scripted):
        value, d1, d2 = m.grand_potential_derivatives(features, torch.tensor(-4.3, dtype=torch.float64))
        np.testing.assert_allclose(value, omega.detach(), rtol=0, atol=1e-13)
        np.testing.assert_allclose(d1, first.detach(), rtol=0, atol=1e-13)
        np.testing.assert_allclose(d2, second, rtol=0, atol=1e-13)


@pytest.mark.parametrize("filling", [0.43, 0.45, 0.47])
def test_solved_mu_holds_the_electron_count(trained, filling):
    model = _fixed_n(trained, filling)
    lattice = trained["lattice"]
    nb = lattice.neighbor_table(model.neighbor_offsets)
    target = filling * 2 * lattice.num_sites
    for seed in range(4):
        s = torch.tensor(_random_spins(16, 10 + seed) if seed % 2 else
                         perturbed_configuration(lattice, np.random.default_rng(seed)))
        features = model.descriptor.site_features(s, nb)
        mu = model.solve_mu(features)
        assert model.mu_min - 1 < float(mu) < model.mu_max + 1
        count = -float(model.grand_potential_derivatives(features, mu)[1].detach().sum())
        assert abs(count - target) <= 1e-10 * target
        assert compute_fields(model, lattice, s.numpy()).mu == pytest.approx(float(mu), abs=1e-14)


def test_solve_makes_the_first_layer_products_once_and_equals_the_shipped_file(tmp_path, single_thread):
    """The solve for mu makes the first layer's products with the features once per stage (the
    sample, then all sites), not once per Newton step (feature_rows). The shipped cutoff-4.5
    committee, exported before, and the same members exported by this code give the same mu,
    fields and uncertainty on a 30x30 ED-LLG frame (measured: bit for bit; allowed: float32
    rounding, which a BLAS may change with its blocking)."""
    from pathlib import Path
    path = Path(spinforce.__file__).parent / "models" / "de_square_fixed_n_rc45.ts"
    s = np.load(Path(__file__).parent / "data" / "de_square_fixed_n_ed_llg_30x30.npz")["spins"][2]
    model = load_exported(path)
    lattice = spinforce.Lattice("square", (30, 30))
    features = model.descriptor.site_features(torch.as_tensor(s, dtype=torch.float32),
                                              lattice.neighbor_table(model.neighbor_offsets))
    made = []
    products = model.feature_rows
    model.feature_rows = lambda f, images: made.append(images) or products(f, images)
    model.solve_mu(features)
    assert made == [1, model.images] and model.sample_steps > 1 and model.newton_steps > 1
    del model.feature_rows
    again = export_torchscript(model, tmp_path / "again.ts")
    shipped, now = MLForceField(path, lattice), MLForceField(again, lattice)
    a, b = shipped.compute(s), now.compute(s)
    scale = np.abs(a.fields).max()
    np.testing.assert_allclose(b.fields, a.fields, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(b.uncertainty, a.uncertainty, rtol=0, atol=1e-6 * scale)
    assert b.energy == pytest.approx(a.energy, rel=1e-6)
    assert now.chemical_potential(s) == pytest.approx(shipped.chemical_potential(s), abs=1e-5)


def test_two_full_steps_meet_the_count_for_the_rc45_committee(tmp_path, single_thread):
    """With point-group images the solve's sample is image 0 of every site, which starts the full
    Newton steps near the root of a well-trained committee: the shipped cutoff-4.5 committee
    exported again with 2 full steps (`spinforce export FILE --newton-steps 2`, 1.3-1.6x faster
    than its 4) meets N_e within 1e-6 (measured 1.4e-7, float32's floor) on the 3 frames of a
    held-out 30x30 ED-LLG quench, with fields equal to those of 6 full steps to 5e-5 of the
    largest field (measured 1e-5). (A barely trained model's image 0 lies further from the
    average, so the default stays 4.)"""
    from pathlib import Path
    path = Path(spinforce.__file__).parent / "models" / "de_square_fixed_n_rc45.ts"
    model = load_exported(path)
    assert model.images == 8
    set_ensemble(model, fixed_filling=model.fixed_filling, newton_steps=2)
    two_steps = export_torchscript(model, tmp_path / "two.ts")
    set_ensemble(model, fixed_filling=model.fixed_filling, newton_steps=6)
    six = export_torchscript(model, tmp_path / "six.ts")
    lattice = spinforce.Lattice("square", (30, 30))
    two, ref = MLForceField(two_steps, lattice), MLForceField(six, lattice)
    neighbors = lattice.neighbor_table(model.neighbor_offsets)
    target = model.fixed_filling * 2 * lattice.num_sites
    for s in np.load(Path(__file__).parent / "data" / "de_square_fixed_n_ed_llg_30x30.npz")["spins"]:
        with torch.no_grad():
            _, count = two._module().chemical_potential(torch.as_tensor(s, dtype=torch.float32), neighbors)
        assert abs(float(count) - target) <= 1e-6 * target
        a, b = two.compute(s), ref.compute(s)
        np.testing.assert_allclose(a.fields, b.fields, rtol=0, atol=5e-5 * np.abs(b.fields).max())


def test_one_image_per_member_keeps_the_rc45_committee_accurate_and_its_count_met(tmp_path, single_thread):
    """The shipped cutoff-4.5 committee exported with one point-group image per member and 3
    Newton steps (`spinforce export FILE --point-group one --newton-steps 3`, docs/ml.md) is off
    from the exact fields of the 3 frames of a held-out 30x30 ED-LLG quench by at most 1.1x the
    torque error of the average over the images (measured: 0.1-0.2 points apart, at 8-12 %), meets
    N_e within 1e-6 of it (measured: float32's floor), and its fields differ from the average's by
    more than float32 rounding (1e-3 of the RMS torque; measured 1.4 %): it runs one image."""
    from pathlib import Path
    from spinforce.cli import main
    path = Path(spinforce.__file__).parent / "models" / "de_square_fixed_n_rc45.ts"
    one = tmp_path / "one.ts"
    assert main(["export", str(path), "--torchscript", str(one), "--point-group", "one", "--newton-steps", "3"]) == 0
    lattice = spinforce.Lattice("square", (30, 30))
    average, fast = MLForceField(path, lattice), MLForceField(one, lattice)
    module = fast._module()
    assert module.images == 1 and [m.point_group_image for m in module.members.children()] == [0, 1, 2]
    neighbors = lattice.neighbor_table(module.neighbor_offsets)
    target = module.fixed_filling * 2 * lattice.num_sites
    data = np.load(Path(__file__).parent / "data" / "de_square_fixed_n_ed_llg_30x30.npz")

    def torque_error(fields, exact, s):
        return np.sqrt((np.cross(s, fields - exact) ** 2).sum() / (np.cross(s, exact) ** 2).sum())

    for s, exact in zip(data["spins"], data["fields"]):
        with torch.no_grad():
            _, count = module.chemical_potential(torch.as_tensor(s, dtype=torch.float32), neighbors)
        assert abs(float(count) - target) <= 1e-6 * target
        a, b = average.compute(s), fast.compute(s)
        assert torque_error(b.fields, exact, s) <= 1.1 * torque_error(a.fields, exact, s)
        assert torque_error(b.fields, a.fields, s) > 1e-3


def test_sample_steps_start_the_solve_near_its_root_and_old_files_keep_their_solve():
    """The solve's cheap start (Newton on every 4th site, each counted as a site) lands near the
    root on the shipped committee's 30x30 held-out fixed-N frames, and the default solve (sample
    steps, then 4 full steps) meets the count as 12 full steps from the mean training mu do. A
    file exported before the sample steps existed is rebuilt with the solve it has."""
    from pathlib import Path
    from spinforce.ml.committee import model_from_exported
    from spinforce.ml.model import DEFAULT_NEWTON_STEPS, DEFAULT_SAMPLE_STEPS
    path = Path(spinforce.__file__).parent / "models" / "de_square_fixed_n.ts"
    data = np.load(Path(__file__).parent / "data" / "de_square_fixed_n_heldout.npz")
    model = load_exported(path)
    assert (model.sample_steps, model.newton_steps) == (DEFAULT_SAMPLE_STEPS, DEFAULT_NEWTON_STEPS)
    lattice = spinforce.Lattice("square", (30, 30))
    neighbors = lattice.neighbor_table(model.neighbor_offsets)
    target = model.fixed_filling * 2 * lattice.num_sites
    with torch.no_grad():
        for s in data["spins"]:
            features = model.descriptor.site_features(torch.as_tensor(s), neighbors)
            model.sample_steps, model.newton_steps = 0, 12
            root = float(model.solve_mu(features))
            model.sample_steps, model.newton_steps = DEFAULT_SAMPLE_STEPS, 0
            start = float(model.solve_mu(features))
            # measured: within 0.014 of the root (bench/newton_steps.py); the mean training mu is 0.2-0.6 away
            assert abs(start - root) < 0.05 < abs(model.mu_mean - root)
            model.newton_steps = DEFAULT_NEWTON_STEPS
            mu = model.solve_mu(features)
            assert float(mu) == pytest.approx(root, abs=1e-12)
            assert abs(float(model.electron_count(features, mu)[0]) - target) <= 1e-12 * target

    class FileBeforeSampleSteps:  # the attributes of a TorchScript file written before them
        def __init__(self, script):
            self._script = script

        def __getattr__(self, name):
            if name == "sample_steps":
                raise AttributeError(name)
            return getattr(self._script, name)

    with spinforce.ml.model.quiet_torchscript():
        script = torch.jit.load(str(path))
    old = model_from_exported(FileBeforeSampleSteps(script), path)
    assert (old.sample_steps, old.newton_steps) == (0, DEFAULT_NEWTON_STEPS)


def _tangent_directions(s, rng, k):
    for _ in range(k):
        v = rng.normal(size=s.shape)
        yield v - (v * s).sum(1, keepdims=True) * s


def _move(s, v, eps):
    t = s + eps * v
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def _check_envelope(energy_and_fields, s, rng):
    """-H . v equals dF/d eps of F(normalise(S + eps v)) (central differences) for tangent v."""
    _, fields = energy_and_fields(s)
    eps = 1e-5
    for v in _tangent_directions(s, rng, 3):
        fd = (energy_and_fields(_move(s, v, eps))[0] - energy_and_fields(_move(s, v, -eps))[0]) / (2 * eps)
        analytic = -(fields * v).sum()
        # truncation ~eps^2 F''' and rounding ~1e-16 |F| / eps: ~1e-9 here; the term the envelope
        # theorem removes, (dF/dmu) dmu/deps with dF/dmu = N_e - N(mu*), is zero only at the solved mu
        assert fd == pytest.approx(analytic, rel=1e-6, abs=1e-7)


def test_fixed_n_fields_are_the_gradient_of_the_free_energy(trained):
    model = _fixed_n(trained, 0.45)
    lattice = trained["lattice"]

    def energy_and_fields(s):
        r = compute_fields(model, lattice, s)
        return r.energy, r.fields
    rng = np.random.default_rng(7)
    for seed in (1, 2):
        s = perturbed_configuration(lattice, np.random.default_rng(seed))
        _check_envelope(energy_and_fields, s, rng)
    # F is Omega(S, mu*) + mu* N_e and the fields are those at fixed mu*, the solved mu
    s = _random_spins(16, 3)
    r = compute_fields(model, lattice, s)
    assert model.mu_min <= r.mu <= model.mu_max
    rm = compute_fields(set_ensemble(load_model(trained["runs"][0], lattice), fixed_mu=r.mu), lattice, s)
    assert r.energy == pytest.approx(rm.energy + r.mu * 0.45 * 32, rel=1e-12)
    np.testing.assert_allclose(r.fields, rm.fields, rtol=0, atol=1e-12)


def test_fixed_n_committee_fields_are_the_gradient_of_the_free_energy(trained):
    members = [load_model(p, trained["lattice"]) for p in trained["runs"]]
    committee = set_ensemble(CommitteeModel(members), fixed_filling=0.45)
    lattice = trained["lattice"]

    def energy_and_fields(s):
        r = compute_fields(committee, lattice, s)
        return r.energy, r.fields
    _check_envelope(energy_and_fields, perturbed_configuration(lattice, np.random.default_rng(5)),
                    np.random.default_rng(8))


def test_exported_fixed_n_file_runs_in_cpp_as_in_python(trained, tmp_path):
    lattice = spinforce.Lattice("square", (6, 6))  # another size than trained on
    model = _fixed_n(trained, 0.45, lattice)
    path = export_torchscript(model, tmp_path / "fn.ts")
    provider = MLForceField(path, lattice)
    committee_path = export_committee(trained["runs"], tmp_path / "fnc.ts", fixed_filling=0.45)
    committee = load_exported(committee_path)
    committee_provider = MLForceField(committee_path, lattice)
    for seed in range(3):
        s = _random_spins(36, 20 + seed)
        for py_model, cpp in ((model, provider), (committee, committee_provider)):
            a, b = cpp.compute(s), compute_fields(py_model, lattice, s)
            assert a.energy == pytest.approx(b.energy, rel=1e-10, abs=1e-10)
            np.testing.assert_allclose(a.fields, b.fields, rtol=0, atol=1e-10 * np.abs(b.fields).max())
            # the site energies add up to F
            assert cpp.site_energies(s).sum() == pytest.approx(a.energy, rel=1e-12)
    # the solved mu, from the file
    assert provider.chemical_potential(s) == pytest.approx(compute_fields(model, lattice, s).mu, abs=1e-12)
    # the file remembers its ensemble
    again = load_exported(path)
    assert again.fixed_filling == 0.45 and math.isnan(again.fixed_mu) and again.mu_input


# --- the physics: fixed N against one fixed mu --------------------------------------------------
@pytest.mark.slow
def test_fixed_n_model_follows_ed_at_fixed_filling_better_than_fixed_mu(tmp_path):
    """Train on ED labels at several mu (6x6, J = 6, T_el = 0), then compare torques with ED at
    fixed filling on held-out states of every kind (ordered, noisy, random): their canonical mu
    spreads over ~2t, which a model at one mu cannot follow."""
    torch.manual_seed(0)
    lattice = spinforce.Lattice("square", (6, 6))
    data = tmp_path / "mus.h5"
    write_ed_samples(data, lattice, J=J, kT=0.0, frames=60, seed=1, mus=list(np.linspace(-5.6, -2.6, 6)),
                     progress=False)
    cfg = {"data": {"paths": [str(data)], "validation_fraction": 0.15},
           "descriptor": {"kind": "bond_shells", "cutoff": 2.0},
           "model": {"hidden": [24, 24], "mu_input": True},
           "training": {"epochs": 12, "batch_size": 8, "learning_rate": 4e-3, "lr_patience": 3,
                        "energy_weight_start": 0, "energy_weight_ramp": 0, "threads": 1},
           "output": {"dir": str(tmp_path / "run"), "plots": False}}
    run = train(cfg, progress=False)
    filling = 34 / 72
    rng = np.random.default_rng(999)
    states = np.stack([perturbed_configuration(lattice, rng) for _ in range(20)])
    ed_model = SDModel(lattice, J=J, filling=filling, kT=0.0)
    mu0 = mu_for_filling(ed_model, states).mu  # the one mu that gives the states their filling on average
    fixed_n = set_ensemble(load_model(run.model_path, lattice), fixed_filling=filling)
    fixed_mu = set_ensemble(load_model(run.model_path, lattice), fixed_mu=mu0)
    ed = ExactDiagonalization(ed_model)
    err_n = err_mu = norm = 0.0
    for s in states:
        torque = np.cross(s, ed.compute(s).fields)
        err_n += ((np.cross(s, compute_fields(fixed_n, lattice, s).fields) - torque) ** 2).sum()
        err_mu += ((np.cross(s, compute_fields(fixed_mu, lattice, s).fields) - torque) ** 2).sum()
        norm += (torque ** 2).sum()
    rel_n, rel_mu = math.sqrt(err_n / norm), math.sqrt(err_mu / norm)
    print(f"relative torque RMSE against ED at fixed filling: fixed N {rel_n:.3f}, fixed mu = {mu0:.3f} {rel_mu:.3f}")
    assert rel_n < 0.8 * rel_mu


# --- bad input ---------------------------------------------------------------------------------
def test_bad_input(trained, tmp_path):
    lattice = trained["lattice"]
    model = load_model(trained["runs"][0], lattice)
    for bad in (0.0, 1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"fixed_filling.*\(0, 1\)"):
            set_ensemble(copy.deepcopy(model), fixed_filling=bad)
    with pytest.raises(ValueError, match="exactly one of fixed_filling"):
        set_ensemble(copy.deepcopy(model), fixed_filling=0.4, fixed_mu=-4.0)
    with pytest.raises(ValueError, match="inside the range of mu"):
        set_ensemble(copy.deepcopy(model), fixed_mu=-9.0)
    with pytest.raises(ValueError, match="newton_steps"):
        set_ensemble(copy.deepcopy(model), fixed_filling=0.4, newton_steps=0)
    # a mu-input model is exported for one ensemble; without one it is refused
    with pytest.raises(ValueError, match="--fixed-filling"):
        export_torchscript(model, tmp_path / "x.ts")
    with pytest.raises(ValueError, match="set its ensemble"):
        compute_fields(model, lattice, _random_spins(16, 0))
    assert not (tmp_path / "x.ts").exists()
    from spinforce.ml.pt2 import export_pt2
    with pytest.raises(ValueError, match="TorchScript only"):
        export_pt2(set_ensemble(copy.deepcopy(model), fixed_filling=0.4), tmp_path / "x.pt2")
    # a model without mu input takes no ensemble
    plain_data = tmp_path / "plain.h5"
    write_ed_samples(plain_data, lattice, J=J, kT=KT, frames=4, seed=1, filling=0.4, progress=False)
    base = {"data": {"paths": [str(plain_data)], "validation_fraction": 0.0},
            "descriptor": {"kind": "bond_shells", "cutoff": 1.5}, "model": {"hidden": [4]},
            "training": {"epochs": 1}, "output": {"dir": str(tmp_path / "r"), "plots": False}}
    plain = load_model(train(base, progress=False).model_path, lattice)
    with pytest.raises(ValueError, match="mu_input"):
        set_ensemble(plain, fixed_filling=0.4)
    with pytest.raises(ValueError, match="smooth activation.*'silu' or 'tanh'"):
        build_model(lattice, "bond_shells", {"cutoff": 1.5}, [4], "relu", "float64", mu_input=True)
    # training a mu-input model: densities needed for the density term, mu needed at all
    mu_cfg = copy.deepcopy(base)
    mu_cfg["model"]["mu_input"] = True
    with pytest.raises(ValueError, match="stores no mu"):
        train(mu_cfg, progress=False, overwrite=True)
    at_mu = tmp_path / "at_mu.h5"
    with DatasetWriter(at_mu, lattice_kind="square", lattice_shape=(4, 4), num_sites=16, method="ed",
                       model={"mu": -4.0}) as w:
        w.append(_random_spins(16, 0), np.zeros((16, 3)), 0.0)
    mu_cfg["data"]["paths"] = [str(at_mu)]
    with pytest.raises(ValueError, match="density_weight = 1 needs per-site densities.*at_mu.h5"):
        train(mu_cfg, progress=False, overwrite=True)
    mu_cfg["training"]["density_weight"] = 0.0
    with pytest.raises(ValueError, match="two or more chemical potentials"):
        train(mu_cfg, progress=False, overwrite=True)


def test_export_command(trained, tmp_path, capsys):
    from spinforce.cli import main
    out = tmp_path / "fn.ts"
    assert main(["export", str(trained["runs"][0]), "--torchscript", str(out), "--fixed-filling", "0.45"]) == 0
    assert "fixed filling 0.45" in capsys.readouterr().out
    assert MLForceField(out, trained["lattice"]).compute(_random_spins(16, 1)).fields.shape == (16, 3)
    def error(argv):
        assert main(argv) == 2
        return capsys.readouterr().err
    assert "fixed_filling (--fixed-filling) is the filling N_e / 2N and must be in (0, 1), got 1.5" in error(
        ["export", str(trained["runs"][0]), "--torchscript", str(tmp_path / "b.ts"), "--fixed-filling", "1.5"])
    assert "--fixed-filling" in error(["export", str(trained["runs"][0]), "--torchscript", str(tmp_path / "c.ts")])
    # an exported file moves to another ensemble as its model.pt file would; what is not given stays
    lo, hi = load_exported(out).mu_min, load_exported(out).mu_max
    mu = 0.5 * (lo + hi)
    again, direct = tmp_path / "again.ts", tmp_path / "direct.ts"
    assert main(["export", str(out), "--torchscript", str(again), "--mu", str(mu)]) == 0
    assert f"fixed mu {mu:g}" in capsys.readouterr().out
    assert main(["export", str(trained["runs"][0]), "--torchscript", str(direct), "--mu", str(mu)]) == 0
    spins = _random_spins(16, 2)
    np.testing.assert_array_equal(MLForceField(again, trained["lattice"]).compute(spins).fields,
                                  MLForceField(direct, trained["lattice"]).compute(spins).fields)
    steps = tmp_path / "steps.ts"
    assert main(["export", str(out), "--torchscript", str(steps), "--newton-steps", "7"]) == 0
    assert (load_exported(steps).fixed_filling, load_exported(steps).newton_steps,
            load_exported(steps).sample_steps) == (0.45, 7, load_exported(out).sample_steps)
    assert f"must be inside the range of mu the model was trained on, [{lo:g}, {hi:g}], got {hi + 1!r}" in error(
        ["export", str(out), "--torchscript", str(tmp_path / "d.ts"), "--mu", str(hi + 1)])
    assert "give --fixed-filling too" in error(
        ["export", str(again), "--torchscript", str(tmp_path / "d.ts"), "--newton-steps", "3"])
    # the solve's steps: on the sample of sites, then on all
    assert "sample_steps must be an integer in [0, 100], got -1" in error(
        ["export", str(trained["runs"][0]), "--torchscript", str(tmp_path / "e.ts"), "--fixed-filling", "0.45",
         "--sample-steps", "-1"])
    assert "give --fixed-filling too" in error(
        ["export", str(trained["runs"][0]), "--torchscript", str(tmp_path / "f.ts"), "--sample-steps", "0"])
    assert not any((tmp_path / name).exists() for name in ("b.ts", "c.ts", "d.ts", "e.ts", "f.ts"))
    full = tmp_path / "full.ts"
    assert main(["export", str(trained["runs"][0]), "--torchscript", str(full), "--fixed-filling", "0.45",
                 "--sample-steps", "0", "--newton-steps", "8"]) == 0
    assert (load_exported(full).sample_steps, load_exported(full).newton_steps) == (0, 8)


def test_fixed_n_file_is_not_split_into_slabs(trained, tmp_path):
    from spinforce.distributed import Ranks
    from spinforce.simulate import split_provider
    path = export_torchscript(_fixed_n(trained, 0.45), tmp_path / "fn.ts")
    cfg = {"method": {"name": "ml", "path": str(path)}, "lattice": {"kind": "square", "shape": [8, 8]}}
    with pytest.raises(ValueError, match="fixed electron count.*cannot be split into slabs"):
        split_provider(cfg, Ranks(0, 2), "cpu")


def test_simulate_at_fixed_n_records_the_solved_mu(trained, tmp_path):
    from spinforce.simulate import simulate
    path = export_torchscript(_fixed_n(trained, 0.45), tmp_path / "fn.ts")
    cfg = {"output": str(tmp_path / "run.h5"), "lattice": {"kind": "square", "shape": [6, 6]},
           "method": {"name": "ml", "path": str(path)},
           "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": 0.001, "steps": 20, "save_every": 10, "initial": "random",
                        "seed": 1}}
    simulate(cfg, progress=False)
    ds = read_dataset(tmp_path / "run.h5")
    provider = MLForceField(path, spinforce.Lattice("square", (6, 6)))
    assert ds.num_frames == 3 and np.isfinite(ds.scalars["mu"]).all()
    for k in range(ds.num_frames):
        assert ds.scalars["mu"][k] == pytest.approx(provider.chemical_potential(ds.spins[k]), abs=1e-12)
        # and the fields written are those of the file at that state
        np.testing.assert_allclose(ds.fields[k], provider.compute(ds.spins[k]).fields, rtol=0, atol=1e-12)


def test_solved_mu_outside_the_trained_range_warns_once(trained, tmp_path):
    """A filling the model's training states never had makes the solve leave the trained mu
    range (at the edge of its bracket the count is not even reached), and too few Newton steps
    leave the count unmet: the provider warns once; a converged solve inside the range is silent."""
    import warnings
    from spinforce.ml.provider import ChemicalPotentialWarning
    lat = trained["lattice"]
    s = _random_spins(lat.num_sites, 4)
    inside = MLForceField(export_torchscript(_fixed_n(trained, 0.45), tmp_path / "in.ts"), lat)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChemicalPotentialWarning)
        mu = inside.chemical_potential(s)
    model = _fixed_n(trained, 0.45)
    assert model.mu_min <= mu <= model.mu_max
    outside = MLForceField(export_torchscript(_fixed_n(trained, 0.95), tmp_path / "out.ts"), lat)
    with pytest.warns(ChemicalPotentialWarning, match=r"filling 0.95 is .*outside the range the model was trained on"):
        mu = outside.chemical_potential(s)
    assert mu > model.mu_max
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChemicalPotentialWarning)  # once
        outside.chemical_potential(s)
    # one Newton step from the mean training mu does not meet the count: that warns too
    one_step = set_ensemble(load_model(trained["runs"][0], lat), fixed_filling=0.45, newton_steps=1, sample_steps=0)
    short = MLForceField(export_torchscript(one_step, tmp_path / "short.ts"), lat)
    with pytest.warns(ChemicalPotentialWarning, match="1 Newton steps leave the electron count off by"):
        short.chemical_potential(s)


def test_llg_without_damping_conserves_the_free_energy_at_fixed_n(trained, tmp_path):
    """At alpha = 0, T = 0 the LLG flow conserves the potential of its fields: F(S) at fixed N_e,
    while mu moves. The drift of the midpoint integrator falls as dt^2."""
    from spinforce.dynamics import LLG
    lattice = spinforce.Lattice("square", (6, 6))
    path = export_torchscript(_fixed_n(trained, 0.45, lattice), tmp_path / "fn.ts")
    provider = MLForceField(path, lattice)
    s0 = perturbed_configuration(lattice, np.random.default_rng(3))
    drifts, mus = [], []
    for dt in (0.04, 0.02):
        llg, s = LLG(provider, dt=dt, alpha=0.0, kT=0.0, integrator="sib"), s0
        energies = [provider.compute(s0).energy]
        for _ in range(4):
            s = llg.run(s, int(round(1.0 / dt)))
            energies.append(provider.compute(s).energy)
            mus.append(provider.chemical_potential(s))
        drifts.append(np.abs(np.array(energies) - energies[0]).max())
    assert max(mus) - min(mus) > 1e-3  # mu does move
    assert drifts[1] < 1e-5 * abs(energies[0])
    assert 3.0 < drifts[0] / drifts[1] < 5.0, drifts


def test_study_at_fixed_n_reports_the_solved_mu(trained, tmp_path):
    """A study with a fixed-N committee: mu(t) of the ensemble is the mean of the runs' solved mu,
    and its check runs ED-LLG at the same filling."""
    from spinforce.ml.committee import export_committee
    from spinforce.study import load_config, report_text, run_study
    path = export_committee(trained["runs"], tmp_path / "fn.ts", fixed_filling=0.45)
    cfg = load_config("de_square", ["dynamics.steps=20", "dynamics.save_every=5", "dynamics.checkpoint_every=0",
                                    "analysis.snapshots=1", "check.shape=[4,4]", "check.runs=2", "check.steps=10",
                                    f"check.model={{J = {J}, kT = {KT}, filling = 0.45}}"],
                      size=6, runs=2, model=path)
    res = run_study(cfg, tmp_path / "s", progress=False)
    runs = [read_dataset(tmp_path / "s" / "runs" / f"run{k}.h5") for k in range(2)]
    mu = np.stack([r.scalars["mu"] for r in runs])
    np.testing.assert_allclose(res["series"]["mu"], mu.mean(0), rtol=1e-12)
    np.testing.assert_allclose(res["series"]["mu_err"], mu.std(0, ddof=1) / np.sqrt(2), rtol=1e-12)
    assert np.ptp(mu) > 0  # mu moves with the spins
    exact = read_dataset(tmp_path / "s" / "check" / "exact" / "run0.h5")
    assert exact.model["filling"] == 0.45
    assert "Fixed electron count" in report_text(res) and "chemical_potential.png" in res["figures"]
    assert (tmp_path / "s" / "chemical_potential.png").stat().st_size > 1000


def test_shipped_fixed_n_study_runs_the_shipped_fixed_n_committee():
    """`spinforce study de_square_fixed_n`: the de_square quench (same dynamics, analysis and starts)
    with the shipped committee that conserves the electrons."""
    from pathlib import Path

    from spinforce.ml.committee import load_exported
    from spinforce.study import load_config
    fixed, free = load_config("de_square_fixed_n"), load_config("de_square")
    assert Path(fixed["model"]).name == "de_square_fixed_n.ts"
    assert float(load_exported(fixed["model"]).fixed_filling) == 0.4925
    assert fixed["check"] is None  # off by default (ED-LLG on the 30x30 training lattice takes hours)
    for key in ("dt", "alpha", "kT", "save_every"):
        assert fixed["dynamics"][key] == free["dynamics"][key]
    assert fixed["ensemble"]["seed"] == free["ensemble"]["seed"] and fixed["analysis"] == free["analysis"]
