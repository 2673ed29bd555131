"""KPM field provider against exact diagonalisation, finite differences and itself."""
import numpy as np
import pytest
import torch

import spinforce as sf


def triangular_model(**kw):
    lat = sf.Lattice("triangular", (4, 4))
    params = dict(J=2.0, kT=0.05)
    params.update(kw or {"mu": 0.5})
    return lat, sf.SDModel(lat, **params)


def rotated(spins, site, axis, angle):
    """Rotate one spin about `axis` by `angle` (Rodrigues), keeping unit length."""
    s = spins.copy()
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    v = s[site]
    s[site] = v * np.cos(angle) + np.cross(k, v) * np.sin(angle) + k * (k @ v) * (1 - np.cos(angle))
    return s


def test_spectral_bounds_are_exact_and_contain_the_spectrum():
    lat, model = triangular_model()
    kpm = sf.KPM(model, moments=10)
    lower, upper = kpm.bounds
    center, half = 0.5 * (lower + upper), 0.5 * (upper - lower) / 1.01  # undo the 1% margin
    ed = sf.ExactDiagonalization(model)
    # Ferromagnetic spins reach both ends: band [-6, 3] shifted by -|J| and +|J|.
    levels = np.linalg.eigvalsh(ed.hamiltonian(lat.ferromagnetic()).numpy())
    assert center - half == pytest.approx(levels[0], abs=1e-12)
    assert center + half == pytest.approx(levels[-1], abs=1e-12)
    levels = np.linalg.eigvalsh(ed.hamiltonian(lat.random_spins(0)).numpy())
    assert lower < levels[0] and levels[-1] < upper


def test_exact_traces_converge_to_ed_at_fixed_mu():
    # 4x4 triangular, J=2, kT=0.05, mu=0.5, exact traces (every site its own probe).
    lat, model = triangular_model()
    spins = lat.random_spins(1)
    ed = sf.ExactDiagonalization(model).compute(spins)
    N = lat.num_sites
    energy_err, field_err = [], []
    for M in (100, 200, 400, 800):
        r = sf.KPM(model, moments=M).compute(spins)
        assert r.mu == 0.5
        energy_err.append(abs(r.energy - ed.energy) / N)
        field_err.append(np.abs(r.fields - ed.fields).max())
        if M == 400:
            assert energy_err[-1] < 3e-5  # measured 2.3e-5
            assert field_err[-1] < 3e-3   # measured 2.0e-3
            assert np.abs(r.density - ed.density).max() < 2e-3
    assert all(b < a / 2 for a, b in zip(energy_err, energy_err[1:])), energy_err
    assert all(b < a / 2 for a, b in zip(field_err, field_err[1:])), field_err
    assert field_err[-1] < 1e-3  # M=800: measured 4.7e-4


def test_exact_traces_converge_to_ed_at_fixed_filling():
    lat, model = triangular_model(filling=0.3)
    spins = lat.random_spins(1)
    ed = sf.ExactDiagonalization(model).compute(spins)
    N = lat.num_sites
    r400 = sf.KPM(model, moments=400).compute(spins)
    r800 = sf.KPM(model, moments=800).compute(spins)
    # F = Omega + mu N_e; mu is solved from the moments at each call.
    assert abs(r800.energy - ed.energy) / N < 2e-4          # measured 8e-5
    assert abs(r800.mu - ed.mu) < 2e-3                      # measured 6e-4
    assert np.abs(r800.fields - ed.fields).max() < 2e-3     # measured 9e-4
    assert np.abs(r800.fields - ed.fields).max() < np.abs(r400.fields - ed.fields).max() / 2
    assert r800.density.sum() == pytest.approx(0.3 * 2 * N, abs=2e-3)


@pytest.mark.parametrize("kind, shape, params", [
    ("cubic", (4, 4, 4), dict(t2=0.3, t3=-0.1, J=1.5, mu=-1.0, kT=0.1)),
    ("triangular", (6, 6), dict(t2=-0.2, t3=0.15, J=3.0, filling=0.25, kT=0.1)),
])
def test_further_neighbour_hopping_converges_to_ed(kind, shape, params):
    lat = sf.Lattice(kind, shape)
    model = sf.SDModel(lat, **params)
    spins = lat.random_spins(2)
    ed = sf.ExactDiagonalization(model).compute(spins)
    errors = []
    for M in (200, 400):
        r = sf.KPM(model, moments=M).compute(spins)
        errors.append(np.abs(r.fields - ed.fields).max())
        energy_error = abs(r.energy - ed.energy) / lat.num_sites
    assert errors[1] < errors[0] / 2.5
    assert errors[1] < 6e-3       # measured 2.2e-3 (cubic), 4.5e-3 (triangular)
    assert energy_error < 5e-4    # measured 2.2e-4, 3.5e-4


@pytest.mark.parametrize("fixed, moments", [({"mu": 0.5}, 120), ({"filling": 0.3}, 121), ({"mu": 0.5}, 3)])
def test_fields_are_minus_gradient_of_kpm_energy(fixed, moments):
    # Exact traces make the KPM energy a deterministic smooth function of the spins; its fields
    # must be the exact negative gradient of that energy (not of the ED energy). Even and odd
    # numbers of moments end the doubled recursion differently.
    lat, model = triangular_model(**fixed)
    kpm = sf.KPM(model, moments=moments)
    spins = lat.random_spins(4)
    fields = kpm.compute(spins).fields
    eps = 1e-4
    for site in (0, 7):
        for axis in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
            plus = kpm.compute(rotated(spins, site, axis, eps)).energy
            minus = kpm.compute(rotated(spins, site, axis, -eps)).energy
            # dE = -H . dS with dS = eps axis x S
            expected = -fields[site] @ np.cross(axis, spins[site])
            assert (plus - minus) / (2 * eps) == pytest.approx(expected, abs=2e-7)


def test_probing_error_falls_with_distance():
    # 16x16 square lattice, hot electrons (kT = 0.2): the probing error decays with the distance
    # beyond which sites share a probe vector.
    lat = sf.Lattice("square", (16, 16))
    model = sf.SDModel(lat, J=2.0, mu=0.0, kT=0.2)
    spins = lat.random_spins(3)
    ed = sf.ExactDiagonalization(model).compute(spins)
    errors, probes = [], []
    for d in (2, 4, 6):
        kpm = sf.KPM(model, moments=200, probing_distance=d, seed=5)
        r = kpm.compute(spins)
        errors.append(np.abs(r.fields - ed.fields).max())
        probes.append(kpm.num_probes)
    # measured max errors 0.15, 0.028, 0.010 with 18, 58, 130 probe vectors (of 512 orbitals)
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 2, errors
    assert errors[2] < 2e-2
    assert probes == sorted(probes) and probes[-1] < 2 * lat.num_sites


def test_probe_phases_follow_the_seed():
    lat = sf.Lattice("square", (8, 8))
    model = sf.SDModel(lat, J=2.0, mu=0.0, kT=0.2)
    spins = lat.random_spins(2)
    a, b, c = (sf.KPM(model, moments=60, probing_distance=2, seed=seed).compute(spins) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a.fields, b.fields)
    assert np.abs(a.fields - c.fields).max() > 1e-3


def test_colouring_separates_sites_beyond_the_probing_distance():
    for kind, shape, d in (("square", (12, 12), 2.5), ("triangular", (9, 9), 2.0)):
        lat = sf.Lattice(kind, shape)
        model = sf.SDModel(lat, J=1.0, mu=0.0, kT=0.1)
        colours = sf.KPM(model, moments=10, probing_distance=d).colours.numpy()
        coords = lat.coordinates
        L = np.asarray(shape)
        A = lat.primitive_vectors.numpy()
        for c in np.unique(colours):
            members = coords[colours == c]
            delta = members[:, None, :] - members[None, :, :]
            # minimum image over the periodic copies in each direction
            best = np.full(delta.shape[:2], np.inf)
            for shift in np.ndindex(*(3,) * len(shape)):
                r = (delta + (np.asarray(shift) - 1) * L) @ A
                best = np.minimum(best, np.linalg.norm(r, axis=-1))
            np.fill_diagonal(best, np.inf)
            assert best.min() > d


def test_probing_distance_beyond_the_lattice_gives_exact_traces():
    lat, model = triangular_model()
    spins = lat.random_spins(2)
    exact = sf.KPM(model, moments=100).compute(spins)
    wide = sf.KPM(model, moments=100, probing_distance=10.0, seed=3)
    assert wide.num_probes == 2 * lat.num_sites
    r = wide.compute(spins)
    np.testing.assert_allclose(r.fields, exact.fields, atol=1e-12)
    assert r.energy == pytest.approx(exact.energy, abs=1e-11)


def test_density_of_states_integrates_to_states_and_filling():
    lat = sf.Lattice("square", (8, 8))
    model = sf.SDModel(lat, J=2.0, filling=0.3, kT=0.1)
    kpm = sf.KPM(model, moments=200, probing_distance=3, seed=1)
    spins = lat.random_spins(6)
    r = kpm.compute(spins)
    energies, rho = kpm.density_of_states(spins, num_points=20001)
    de = energies[1] - energies[0]
    N = lat.num_sites
    assert rho.sum() * de == pytest.approx(2 * N, rel=2e-3)
    fermi = 0.5 * (1 - np.tanh((energies - r.mu) / (2 * model.kT)))
    assert (rho * fermi).sum() * de == pytest.approx(0.3 * 2 * N, rel=2e-3)
    assert np.all(rho > -1e-6 * rho.max())  # the Jackson kernel keeps the DOS non-negative


def test_complex64_agrees_with_complex128():
    lat = sf.Lattice("square", (8, 8))
    model = sf.SDModel(lat, J=2.0, mu=0.0, kT=0.2)
    spins = lat.random_spins(2)
    a = sf.KPM(model, moments=200, probing_distance=2, dtype="complex128").compute(spins)
    b = sf.KPM(model, moments=200, probing_distance=2, dtype=torch.complex64).compute(spins)
    assert abs(a.energy - b.energy) / lat.num_sites < 1e-6   # measured 7e-10
    assert np.abs(a.fields - b.fields).max() < 1e-5          # measured 8e-7
    assert np.abs(a.density - b.density).max() < 1e-5


def test_torch_input_gives_torch_output():
    lat, model = triangular_model()
    spins = torch.from_numpy(lat.random_spins(1))
    r = sf.KPM(model, moments=50).compute(spins)
    assert isinstance(r.fields, torch.Tensor) and r.fields.shape == (16, 3)
    assert r.fields.dtype == torch.float64


@pytest.mark.parametrize("kwargs, match", [
    ({"moments": 1}, "moments"),
    ({"moments": 2.5}, "moments"),
    ({"probing_distance": 0}, "probing_distance"),
    ({"probing_distance": -1.0}, "probing_distance"),
    ({"probing_distance": float("nan")}, "probing_distance"),
    ({"probing_distance": "far"}, "probing_distance"),
    ({"dtype": "float32"}, "dtype"),
    ({"seed": -1}, "seed"),
    ({"bounds": (3.0, -3.0)}, "bounds"),
    ({"bounds": 5.0}, "bounds"),
])
def test_bad_settings_raise_value_error(kwargs, match):
    _, model = triangular_model()
    with pytest.raises(ValueError, match=match):
        sf.KPM(model, **{"moments": 10, **kwargs})


def test_bad_model_and_spins_raise_value_error():
    lat, model = triangular_model()
    with pytest.raises(ValueError, match="model"):
        sf.KPM(lat, moments=10)
    kpm = sf.KPM(model, moments=10)
    with pytest.raises(ValueError, match="shape"):
        kpm.compute(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="unit"):
        kpm.compute(2 * lat.random_spins(0))
    with pytest.raises(ValueError, match="num_points"):
        kpm.density_of_states(lat.random_spins(0), num_points=1)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    lat = sf.Lattice("square", (16, 16))
    model = sf.SDModel(lat, J=2.0, filling=0.3, kT=0.1)
    spins = lat.random_spins(3)
    for dtype, tol in (("complex128", 1e-10), ("complex64", 1e-4)):
        kpm = sf.KPM(model, moments=200, probing_distance=3, dtype=dtype)
        cpu = kpm.compute(torch.from_numpy(spins))
        gpu = kpm.compute(torch.from_numpy(spins).cuda())
        assert gpu.fields.is_cuda
        torch.testing.assert_close(gpu.fields.cpu(), cpu.fields, atol=tol, rtol=0)
        assert gpu.energy == pytest.approx(cpu.energy, abs=tol * lat.num_sites)
        assert gpu.mu == pytest.approx(cpu.mu, abs=tol)
