"""The ordered-bond descriptor and the point-group-averaged network built on it."""
import numpy as np
import pytest
import torch

import spinforce
from spinforce.descriptors.bond_shells import HALF_ANGLE_FLOOR
from spinforce.descriptors.ordered_bonds import OrderedBondDescriptor
from spinforce.ml.model import build_model, compute_fields, export_torchscript, set_ensemble


def cpp_matches_python(path, model, lattice, spins, *, smallest: float):
    """The exported file `path` run by the C++ provider on `lattice` gives the fields of the Python
    `model` (1e-10), and those are not all tiny (> `smallest`); returns the Python FieldResult."""
    ref = compute_fields(model, lattice, spins)
    got = spinforce.MLForceField(path, lattice).compute(spins)
    np.testing.assert_allclose(got.fields, ref.fields, rtol=0, atol=1e-10)
    assert np.abs(ref.fields).max() > smallest
    return ref, got


def point_group_images(lat, spins):
    """(site map, spins) for every point-group operation g: the configuration moved by g."""
    coords = lat.coordinates
    index = {tuple(c): i for i, c in enumerate(coords)}
    shape = np.array(lat.shape)
    for g in lat.point_group_matrices.numpy():
        image = np.array([index[tuple((g @ c) % shape)] for c in coords])  # site r -> site g r
        moved = np.empty_like(spins)
        moved[image] = spins
        yield image, moved


def _random_model(lat, settings, mu_input=False, seed=0):
    torch.manual_seed(seed)
    model = build_model(lat, "ordered_bonds", settings, [16, 16], "tanh", "float64", mu_input=mu_input)
    with torch.no_grad():  # weights large enough that the network is far from linear
        for p in model.mlp.parameters():
            p.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("kind,L,cutoff", [("square", 8, 2.0), ("triangular", 8, 2.0), ("cubic", 6, 1.5)])
def test_each_image_holds_every_bond_in_place(kind, L, cutoff):
    """Row g of a site is the list of bonds S_a . S_b (the site to each neighbour, then the
    neighbour pairs no farther apart than bond_cutoff) read through point-group operation g,
    done by loops; the images of a site are |G| distinct orders of the same bonds."""
    lat = spinforce.Lattice(kind, L)
    d = OrderedBondDescriptor(lat, cutoff=cutoff, half_angle=True)
    offsets = d.neighbor_offsets.numpy()
    nb = lat.neighbor_table(d.neighbor_offsets).numpy()
    s = lat.random_spins(2)
    f = d.features(torch.from_numpy(s), torch.from_numpy(nb)).numpy()
    G = len(lat.point_group_matrices)
    assert d.images == G and f.shape == (lat.num_sites * G, d.num_features)
    pos = np.vstack([np.zeros((1, offsets.shape[1])), offsets]) @ lat.primitive_vectors.numpy()
    m = len(offsets)
    pairs = [(0, b) for b in range(1, m + 1)]
    bond_cutoff = lat.shell_distance(2)
    pairs += [(a, b) for a in range(1, m + 1) for b in range(a + 1, m + 1)
              if np.linalg.norm(pos[a] - pos[b]) <= bond_cutoff + 1e-9]
    assert d.num_bonds == len(pairs) and d.num_features == 2 * len(pairs)
    perms = lat.permutations(offsets)
    for i in (0, 11):
        patch = np.vstack([s[i], s[nb[i]]])
        for g, perm in enumerate(perms):
            moved = np.r_[0, 1 + perm]
            want = np.array([patch[moved[a]] @ patch[moved[b]] for a, b in pairs])
            row = f[i * G + g]
            np.testing.assert_allclose(row[:len(pairs)], want, atol=1e-13)
            np.testing.assert_allclose(row[len(pairs):], np.sqrt((1 + want) / 2 + HALF_ANGLE_FLOOR ** 2), atol=1e-13)
        rows = f[i * G:(i + 1) * G, :len(pairs)]
        np.testing.assert_allclose(np.sort(rows, axis=1), np.sort(rows[:1], axis=1).repeat(G, 0), atol=1e-13)
        assert len({tuple(np.round(r, 12)) for r in rows}) == G  # random spins: no two images alike


@pytest.mark.parametrize("kind,L,chirality", [("square", 8, False), ("square", 8, True), ("triangular", 8, False),
                                              ("triangular", 8, True), ("cubic", 6, False)])
def test_averaged_network_is_invariant_and_its_fields_are_the_energy_gradient(kind, L, chirality):
    """A network with random weights on the ordered bonds, averaged over the images: the energy
    is unchanged by global spin rotations, time reversal and every point-group operation of the
    lattice (site energies follow their sites), and the fields are minus the finite-difference
    gradient of the energy."""
    lat = spinforce.Lattice(kind, L)
    model = _random_model(lat, {"cutoff": 2.0 if kind != "cubic" else 1.5, "half_angle": True,
                                **({"chirality": True} if chirality else {})})
    nb = lat.neighbor_table(model.neighbor_offsets)
    s = lat.random_spins(3)
    eps, h = model.site_energies_and_fields(torch.from_numpy(s), nb)
    eps = eps.numpy()
    assert eps.std() > 1e-2  # a network far from constant
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    mirror = np.diag([1.0, 1.0, -1.0])  # an improper spin rotation: every chirality changes sign
    for other in (s @ q.T, -s, s @ mirror):
        np.testing.assert_allclose(model.site_energies(torch.from_numpy(other), nb).detach().numpy(), eps, atol=1e-12)
    for image, moved in point_group_images(lat, s):
        np.testing.assert_allclose(model.site_energies(torch.from_numpy(moved), nb).detach().numpy()[image], eps,
                                   atol=1e-12)
    # one image alone is not invariant: the average is what makes the model so
    f = model.descriptor.features(torch.from_numpy(s), nb)
    x = (f - model.feature_mean) / model.feature_std
    one = model.mlp(x).reshape(lat.num_sites, -1)[:, 0].detach().numpy()
    _, moved = next(iter(list(point_group_images(lat, s))[1:]))
    x2 = (model.descriptor.features(torch.from_numpy(moved), nb) - model.feature_mean) / model.feature_std
    assert not np.allclose(np.sort(model.mlp(x2).reshape(lat.num_sites, -1)[:, 0].detach().numpy()), np.sort(one))
    energy = lambda sp: float(model(torch.from_numpy(sp), nb)[0])
    step = 1e-6
    for site in (0, 5):
        for c in range(3):
            up, down = s.copy(), s.copy()
            up[site, c] += step
            down[site, c] -= step
            assert -(energy(up) - energy(down)) / (2 * step) == pytest.approx(float(h[site, c]), abs=1e-7)


@pytest.mark.parametrize("kind,cutoff,sides_want,at_site", [("triangular", 1.8, (1.0, 1.0, 1.0), 6),
                                                        ("square", 2.3, (1.0, 1.0, 2 ** 0.5), 12)])
def test_chirality_features_are_the_products_of_triangle_chiralities(kind, cutoff, sides_want, at_site):
    """With chirality, the last features of a site are chi_0 chi_t for the elementary triangles t
    of its neighbourhood (chi = S_a . (S_b x S_c), corners counterclockwise; chi_0 the sum over the
    triangles at the site): on the triangular lattice the nearest-neighbour triangles, six at a
    site; on the square lattice the half-plaquettes (sides 1, 1, sqrt 2), twelve at a site (three
    in each of its four plaquettes). Done by loops over the lattice positions."""
    lat = spinforce.Lattice(kind, 8)
    d = OrderedBondDescriptor(lat, cutoff=cutoff, chirality=True)
    plain = OrderedBondDescriptor(lat, cutoff=cutoff)
    nb = lat.neighbor_table(d.neighbor_offsets).numpy()
    s = lat.random_spins(6)
    f = d.features(torch.from_numpy(s), torch.from_numpy(nb)).numpy()
    assert d.num_features == plain.num_bonds + d.num_triangles
    np.testing.assert_array_equal(f[:, :plain.num_bonds], plain.features(torch.from_numpy(s), torch.from_numpy(nb)).numpy())
    A = lat.primitive_vectors.numpy()
    pos = np.vstack([np.zeros(2), d.neighbor_offsets.numpy() @ A])
    G = d.images
    for i in (0, 13):
        patch = np.vstack([s[i], s[nb[i]]])
        tris = []  # every elementary triangle, counterclockwise
        for a in range(len(pos)):
            for b in range(len(pos)):
                for c in range(len(pos)):
                    sides = [np.linalg.norm(pos[x] - pos[y]) for x, y in ((a, b), (b, c), (c, a))]
                    u, v = pos[b] - pos[a], pos[c] - pos[a]
                    if a < b and a < c and np.allclose(sorted(sides), sides_want) and u[0] * v[1] - u[1] * v[0] > 0:
                        tris.append((a, b, c))
        assert len(tris) == d.num_triangles and sum(0 in t for t in tris) == at_site
        chi = {t: patch[t[0]] @ np.cross(patch[t[1]], patch[t[2]]) for t in tris}
        chi0 = sum(v for t, v in chi.items() if 0 in t)
        want = sorted(chi0 * v for v in chi.values())
        for g in range(G):  # every image holds the same products, in its own order
            np.testing.assert_allclose(np.sort(f[i * G + g, plain.num_bonds:]), want, atol=1e-13)


TRAIN_SEED = 0


def test_fixed_filling_solve_counts_every_site_once(tmp_path):
    """An ordered-bond model with mu as an input, trained on ED labels at several mu (4x4,
    kT = 0.3): at the filling it gives a state at its mean training mu, the fixed-filling solve
    returns that mu and the count sum_i n_i = -sum_i d omega_i / d mu of the sites (each site once,
    not once per image) is the wanted electron count; n_i agrees with a finite difference in mu."""
    from spinforce.ml.sample_ed import write_ed_samples
    from spinforce.ml.training import train
    from spinforce.ml.model import load_model
    lat = spinforce.Lattice("square", (4, 4))
    write_ed_samples(tmp_path / "mus.h5", lat, J=6.0, kT=0.3, frames=24, seed=3, mus=[-5.4, -4.8, -4.2, -3.6, -3.0],
                     progress=False)
    cfg = {"data": {"paths": [str(tmp_path / "mus.h5")], "validation_fraction": 0.2},
           "descriptor": {"kind": "ordered_bonds", "cutoff": 1.5},
           "model": {"hidden": [12, 12], "mu_input": True},
           "training": {"seed": TRAIN_SEED, "epochs": 8, "batch_size": 10, "learning_rate": 5e-3,
                        "energy_weight_start": 0, "energy_weight_ramp": 0, "threads": 1},
           "output": {"dir": str(tmp_path / "run"), "plots": False}}
    model = load_model(train(cfg, progress=False).model_path, lat)
    nb = lat.neighbor_table(model.neighbor_offsets)
    start = torch.tensor(model.mu_mean, dtype=torch.float64)  # where the solve starts
    for seed in range(3):
        f = model.descriptor.site_features(torch.from_numpy(lat.random_spins(10 + seed)), nb)
        _, first, _ = model.grand_potential_derivatives(f, start)
        assert first.shape == (lat.num_sites,)
        target = float(-first.sum().detach())
        set_ensemble(model, fixed_filling=target / (2 * lat.num_sites))
        mu = model.solve_mu(f)
        assert float(mu) == pytest.approx(model.mu_mean, abs=1e-9)
        _, first, _ = model.grand_potential_derivatives(f, mu)
        assert abs(float(-first.sum().detach()) - target) <= 1e-10 * target
        step = 1e-5
        fd = (model.energies_from_features(f, mu + step) - model.energies_from_features(f, mu - step)) / (2 * step)
        np.testing.assert_allclose(fd.detach().numpy(), first.detach().numpy(), atol=1e-7)
        # the exported file solves the same way (its own chemical_potential and site energies)
        provider = spinforce.MLForceField(export_torchscript(model, tmp_path / f"fixed_n{seed}.ts"), lat)
        spins = lat.random_spins(10 + seed)
        assert provider.chemical_potential(spins) == pytest.approx(model.mu_mean, abs=1e-9)
        omega, _, solved = model.evaluate(torch.from_numpy(spins), nb)
        # at a fixed count each site also carries mu N_e / N: they sum to F = Omega + mu N_e
        np.testing.assert_allclose(provider.site_energies(spins), (omega + solved * 2 * model.fixed_filling).numpy(),
                                   rtol=0, atol=1e-10)


def test_training_on_one_drawn_image_per_site_fits_as_the_average_and_resumes(tmp_path):
    """point_group = "sample" (one random point-group image per site and step): on ED labels of
    a 6x6 s-d model it reaches a validation torque error within 1.25x of training on the average
    of all images (same data, seed and epochs) and well below the RMS torque; the images drawn
    follow the seed and epoch, so a run resumed half-way equals an uninterrupted one."""
    from spinforce.ml.sample_ed import write_ed_samples
    from spinforce.ml.training import train
    lat = spinforce.Lattice("square", (6, 6))
    write_ed_samples(tmp_path / "ed.h5", lat, J=6.0, kT=0.3, filling=0.45, frames=40, seed=5, progress=False)

    def cfg(out, point_group, epochs):
        return {"data": {"paths": [str(tmp_path / "ed.h5")], "validation_fraction": 0.25},
                "descriptor": {"kind": "ordered_bonds", "cutoff": 2.0},
                "model": {"hidden": [24, 24], "dtype": "float32"},
                "training": {"seed": TRAIN_SEED, "epochs": epochs, "batch_size": 2, "learning_rate": 3e-3,
                             "lr_schedule": "constant", "energy_weight_start": 0, "energy_weight_ramp": 0,
                             "early_stop_patience": 0, "threads": 1, "point_group": point_group},
                "output": {"dir": str(tmp_path / out), "plots": False}}

    average = train(cfg("average", "average", 12), progress=False).history
    sample = train(cfg("sample", "sample", 12), progress=False).history
    train(cfg("resumed", "sample", 6), progress=False)
    resumed = train(cfg("resumed", "sample", 12), resume=True, progress=False).history
    for a, b in zip(sample, resumed):
        assert b["val_torque_rmse"] == pytest.approx(a["val_torque_rmse"], rel=1e-6)
    first = sample[0]["val_torque_rmse"]
    best_sample = min(row["val_torque_rmse"] for row in sample)
    best_average = min(row["val_torque_rmse"] for row in average)
    assert best_sample < 0.6 * first
    assert best_sample <= 1.25 * best_average


@pytest.mark.parametrize("mu_input", [False, True])
def test_exported_model_runs_in_cpp_and_rebuilds(tmp_path, mu_input):
    """The TorchScript file of an ordered-bond model (and of a committee of two) gives the
    Python fields in the C++ provider to 1e-10 on another lattice size, and its site energies
    (MLForceField.site_energies: the file's networks on the site rows), and `load_exported`
    rebuilds it with its settings."""
    from spinforce.ml.committee import CommitteeModel, load_exported
    lat = spinforce.Lattice("triangular", 6)
    settings = {"cutoff": 1.8, "bond_cutoff": 1.0, "half_angle": True, "chirality": True}
    members = [_random_model(lat, settings, mu_input, seed=k) for k in range(2)]
    for member in members:
        member.mu_mean, member.mu_std, member.mu_min, member.mu_max, member.density_mean = 0.5, 0.2, 0.0, 1.0, 0.5
        if mu_input:
            set_ensemble(member, fixed_mu=0.4)
    committee = CommitteeModel(members)
    if mu_input:
        set_ensemble(committee, fixed_mu=0.4)
    big = spinforce.Lattice("triangular", (8, 7))
    s = big.random_spins(2)
    for model, name in ((members[0], "one.ts"), (committee, "two.ts")):
        path = export_torchscript(model, tmp_path / name)
        ref, got = cpp_matches_python(path, model, big, s, smallest=1e-2)
        site_energies = model.evaluate(torch.from_numpy(s), big.neighbor_table(model.neighbor_offsets))[0]
        np.testing.assert_allclose(spinforce.MLForceField(path, big).site_energies(s), site_energies.numpy(), rtol=0,
                                   atol=1e-10)
        rebuilt = load_exported(path)
        if mu_input:
            set_ensemble(rebuilt, fixed_mu=0.4)
        np.testing.assert_allclose(compute_fields(rebuilt, big, s).fields, ref.fields, rtol=0, atol=1e-12)
    assert load_exported(tmp_path / "one.ts").descriptor.settings() == members[0].descriptor.settings() == settings
    if not mu_input:
        assert got.uncertainty is not None and got.uncertainty.max() > 0


def test_bad_settings_are_refused_with_the_allowed_range():
    lat = spinforce.Lattice("square", 8)
    for bad, match in (({"cutoff": 0.5}, "shorter than the nearest-neighbour"), ({"cutoff": -1}, "cutoff must be > 0"),
                       ({"cutoff": 2.0, "bond_cutoff": 0.5}, "bond_cutoff must lie between"),
                       ({"cutoff": 2.0, "bond_cutoff": 4.5}, "bond_cutoff must lie between"),
                       ({"cutoff": 2.0, "chirality": True}, "descriptor chirality .*planar.* not on 'cubic'")):
        with pytest.raises(ValueError, match=match):
            OrderedBondDescriptor(spinforce.Lattice("cubic", 4) if "chirality" in bad else lat, **bad)
    from spinforce.ml.training import load_config
    with pytest.raises(ValueError, match="pair_orbits"):
        load_config({"data": {"paths": ["x.h5"]}, "descriptor": {"kind": "ordered_bonds", "pair_orbits": True},
                     "output": {"dir": "run"}})


@pytest.mark.slow
def test_committee_compiles_to_pt2_and_runs_on_any_lattice_size(tmp_path):
    """The image average keeps the model exportable by torch.export (no data-dependent shapes):
    the .pt2 package of an ordered-bond committee with chirality gives the Python fields on a
    lattice size it was not compiled on."""
    from spinforce.ml.committee import CommitteeModel
    from spinforce.ml.pt2 import export_pt2
    lat = spinforce.Lattice("triangular", 6)
    committee = CommitteeModel([_random_model(lat, {"cutoff": 1.8, "chirality": True}, seed=k) for k in range(2)])
    path = export_pt2(committee, tmp_path / "c.pt2")
    big = spinforce.Lattice("triangular", (10, 9))
    ref, got = cpp_matches_python(path, committee, big, big.random_spins(1), smallest=1e-2)
    np.testing.assert_allclose(got.uncertainty, ref.uncertainty, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind,settings", [("square", {"cutoff": 2.0, "half_angle": True}),
                                           ("square", {"cutoff": 2.0, "chirality": True}),
                                           ("triangular", {"cutoff": 2.0, "chirality": True})])
def test_image_features_are_the_rows_of_the_drawn_images(kind, settings):
    """image_features(spins, neighbors, image) gives site i the row that features() puts at
    i*|G| + image[i] (bonds, half-angles, chirality products); and a one-image-per-site energy,
    averaged over random draws, is the image-averaged energy the saved model uses (what training
    with point_group = "sample" relies on): within 4 standard errors of the mean over 400 draws."""
    from spinforce.ml.training import predict
    lat = spinforce.Lattice(kind, 6)
    model = _random_model(lat, settings, mu_input=True)
    model.mu_std, model.mu_mean = 0.5, -1.0
    d = model.descriptor
    nb = lat.neighbor_table(model.neighbor_offsets)
    s = torch.from_numpy(lat.random_spins(4))
    full = d.features(s, nb)
    image = torch.randperm(lat.num_sites, generator=torch.Generator().manual_seed(0)) % d.images  # every image
    rows = d.image_features(s, nb, image)
    assert rows.shape == (lat.num_sites, d.num_features)
    np.testing.assert_allclose(rows.numpy(), full[torch.arange(lat.num_sites) * d.images + image].numpy(), atol=0)
    spins, mu = s.unsqueeze(0), torch.tensor([-0.8], dtype=torch.float64)
    energy, fields, density = predict(model, spins, nb, mu=mu)
    draws = torch.Generator().manual_seed(1)
    sampled = [predict(model, spins, nb, mu=mu, images=draws) for _ in range(400)]
    for k, exact in enumerate((energy, fields, density)):
        values = torch.stack([draw[k] for draw in sampled]).detach().numpy()
        mean, err = values.mean(0), values.std(0) / np.sqrt(len(values))
        assert values.std(0).max() > 1e-3  # one image alone is not the average
        assert np.all(np.abs(mean - exact.detach().numpy()) <= 4 * err + 1e-12)


@pytest.mark.parametrize("activation, mu_input", [("silu", False), ("tanh", False), ("relu", False), ("silu", True)])
def test_every_image_from_the_site_row_and_the_written_out_backward_equal_autograd_on_every_image_row(
        activation, mu_input):
    """A force evaluation runs the first layer on each site's one row of features with the
    weights' columns permuted into every image (image_columns) and writes the network's backward
    pass out (energies_and_gradient): site energies and fields equal the plain network on every
    image's row of features() averaged, differentiated by autograd (float64: to rounding), also
    in TorchScript, with half-angle amplitudes and chirality products among the columns."""
    from spinforce.ml.model import quiet_torchscript
    lat = spinforce.Lattice("triangular", (6, 6))
    torch.manual_seed(3)
    model = build_model(lat, "ordered_bonds", {"cutoff": 2.0, "half_angle": True, "chirality": True}, [16, 8],
                        activation, "float64", mu_input=mu_input)
    nb = lat.neighbor_table(model.neighbor_offsets)
    rows = model.descriptor.features(torch.from_numpy(lat.random_spins(0)), nb)
    model.set_normalisation(rows.mean(0), rows.std(0), 0.3, 1.7)  # over every image's row, as training does
    mu = -0.2
    if mu_input:
        model.set_mu_normalisation([-1.0, 0.5], 0.8)
        set_ensemble(model, fixed_mu=mu)
    with torch.no_grad():  # weights large enough that the network is far from linear
        for p in model.mlp.parameters():
            p.normal_(0.0, 0.5)
    model.requires_grad_(False)
    spins = torch.from_numpy(lat.random_spins(1)).requires_grad_(True)
    x = (model.descriptor.features(spins, nb) - model.feature_mean) / model.feature_std
    shifted = (mu - model.mu_mean) / model.mu_std
    if mu_input:
        x = torch.cat([x, torch.full((x.shape[0], 1), shifted, dtype=x.dtype)], dim=1)
    eps = model.energy_shift + model.energy_scale * model.mlp(x).view(lat.num_sites, -1).mean(1)
    if mu_input:
        eps = eps - model.density_mean * (mu - model.mu_mean)
    (grad,) = torch.autograd.grad(eps.sum(), spins)
    assert grad.abs().max() > 0.1
    with quiet_torchscript():
        scripted = torch.jit.script(model)
    for m in (model, scripted):
        energies, fields, _ = m.evaluate(spins.detach(), nb)
        np.testing.assert_allclose(energies.numpy(), eps.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(fields.numpy(), -grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mu_input", [False, True])
def test_one_point_group_image_per_member_reads_image_k_and_exports(tmp_path, mu_input):
    """set_point_group(model, "one") (spinforce export --point-group one): a network reads one
    image of each site, member k of a committee image k. Its site energies are the network on row
    k of every site's images (descriptor.features); the mean of one network run on each image in
    turn is the averaged model (energies and fields, 1e-12); a single image is not invariant
    under the point group; the exported committee gives the Python fields in the C++ provider
    (1e-10), keeps the mode when exported again and returns to the exact average with
    --point-group average."""
    import copy
    from spinforce.cli import main
    from spinforce.ml.committee import CommitteeModel, load_exported
    from spinforce.ml.model import point_group_mode, set_point_group
    lat = spinforce.Lattice("square", 8)
    members = [_random_model(lat, {"cutoff": 2.0, "half_angle": True}, mu_input, seed=k) for k in range(3)]
    for member in members:
        member.mu_mean, member.mu_std, member.mu_min, member.mu_max, member.density_mean = 0.5, 0.2, 0.0, 1.0, 0.5
        if mu_input:
            set_ensemble(member, fixed_mu=0.4)
    G = members[0].descriptor.images
    nb = lat.neighbor_table(members[0].neighbor_offsets)
    s = lat.random_spins(4)
    spins = torch.from_numpy(s)
    mu = torch.tensor(0.4, dtype=torch.float64) if mu_input else None
    averaged = members[0]
    eps_all, h_all = averaged.site_energies_and_fields(spins, nb)
    rows = averaged.descriptor.features(spins, nb)  # every image of every site, image-major per site
    per_image = averaged._site_energies(averaged._network(averaged._first_layer(rows, mu, images=1)), mu, images=1)
    eps_sum, h_sum = torch.zeros_like(eps_all), torch.zeros_like(h_all)
    for g in range(G):
        one = copy.deepcopy(averaged)
        set_point_group(one, "one")
        one.point_group_image = g
        eps, h = one.site_energies_and_fields(spins, nb)
        np.testing.assert_allclose(eps.detach().numpy(), per_image.reshape(-1, G)[:, g].detach().numpy(), atol=1e-12)
        eps_sum, h_sum = eps_sum + eps.detach(), h_sum + h.detach()
    np.testing.assert_allclose((eps_sum / G).numpy(), eps_all.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose((h_sum / G).numpy(), h_all.detach().numpy(), rtol=0, atol=1e-12)
    one = set_point_group(copy.deepcopy(averaged), "one")
    eps = one.site_energies(spins, nb, mu).detach().numpy()
    image, moved = list(point_group_images(lat, s))[1]
    assert np.abs(one.site_energies(torch.from_numpy(moved), nb, mu).detach().numpy()[image] - eps).max() > 1e-3

    committee = CommitteeModel(members)
    if mu_input:
        set_ensemble(committee, fixed_mu=0.4)
    path = export_torchscript(committee, tmp_path / "average.ts")
    average_fields = compute_fields(committee, lat, s).fields
    set_point_group(committee, "one")
    assert [m.point_group_image for m in committee.members] == [0, 1, 2] and committee.images == 1
    mean = np.mean([compute_fields(_with_image(m, k), lat, s).fields for k, m in enumerate(members)], axis=0)
    one_path = export_torchscript(committee, tmp_path / "one.ts")
    ref, _ = cpp_matches_python(one_path, committee, lat, s, smallest=1e-2)
    np.testing.assert_allclose(ref.fields, mean, rtol=0, atol=1e-12)
    assert np.abs(ref.fields - average_fields).max() > 1e-3
    assert point_group_mode(load_exported(one_path)) == "one"
    assert main(["export", str(one_path), "--torchscript", str(tmp_path / "again.ts")]) == 0
    assert main(["export", str(one_path), "--torchscript", str(tmp_path / "back.ts"), "--point-group", "average"]) == 0
    big = spinforce.Lattice("square", (10, 9))
    s2 = big.random_spins(5)
    for name, want in (("again.ts", one_path), ("back.ts", path)):
        np.testing.assert_allclose(spinforce.MLForceField(tmp_path / name, big).compute(s2).fields,
                                   spinforce.MLForceField(want, big).compute(s2).fields, rtol=0, atol=1e-12)


def _with_image(model, image):
    """A copy of `model` that reads point-group image `image` of every site."""
    import copy
    from spinforce.ml.model import set_point_group
    one = set_point_group(copy.deepcopy(model), "one")
    one.point_group_image = image
    return one


def test_point_group_one_is_refused_for_a_descriptor_without_images():
    from spinforce.ml.model import set_point_group
    lat = spinforce.Lattice("square", 8)
    model = build_model(lat, "bond_shells", {"cutoff": 2.0}, [8], "tanh", "float64")
    with pytest.raises(ValueError, match="--point-group one: the bond_shells descriptor has no point-group images"):
        set_point_group(model, "one")
    with pytest.raises(ValueError, match=r"must be one of \['average', 'one'\], got 'two'"):
        set_point_group(model, "two")


@pytest.mark.parametrize("kind,cutoff,bond_cutoff,table", [("square", 3.0, None, True), ("triangular", 2.0, None, True),
                                                           ("square", 1.5, 2.0, False)])
def test_bonds_read_from_the_neighbour_table_equal_the_pairs_of_spins(kind, cutoff, bond_cutoff, table):
    """The bonds come from the (N, m) table of every site's bonds to its neighbours when every
    pair's offset is a neighbour's (bond_cutoff <= cutoff), else from both spins of every pair:
    the same features and gradients either way (float64), and the pairs of a bond_cutoff beyond
    the cutoff, whose offsets no neighbour has, are the loops' S_a . S_b."""
    lat = spinforce.Lattice(kind, 8)
    d = OrderedBondDescriptor(lat, cutoff=cutoff, bond_cutoff=bond_cutoff, half_angle=True)
    assert d.bond_table is table
    nb = lat.neighbor_table(d.neighbor_offsets)
    s = torch.from_numpy(lat.random_spins(7)).requires_grad_(True)
    weights = torch.from_numpy(np.random.default_rng(2).normal(size=(lat.num_sites, d.num_features)))
    results = []
    for use_table in ([True, False] if table else [False]):
        d.bond_table = use_table
        f = d.site_features(s, nb)
        results.append((f.detach().numpy(), torch.autograd.grad((f * weights).sum(), s)[0].numpy()))
    for f, g in results[1:]:
        np.testing.assert_allclose(f, results[0][0], rtol=0, atol=1e-14)
        np.testing.assert_allclose(g, results[0][1], rtol=0, atol=1e-12)
    spins, nbs = s.detach().numpy(), nb.numpy()
    for i in (0, 9):
        patch = np.vstack([spins[i], spins[nbs[i]]])
        want = [patch[a] @ patch[b] for a, b in zip(d.pair_a.tolist(), d.pair_b.tolist())]
        np.testing.assert_allclose(results[0][0][i, :d.num_bonds], want, atol=1e-14)
