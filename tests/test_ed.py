"""Exact diagonalisation of the s-d model against independent references."""
import numpy as np
import pytest
import torch
from scipy.optimize import brentq

import spinforce as sf

PAULI = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]])


# ----------------------------------------------------------------------------- references
def dense_hamiltonian(lattice, spins, J, hoppings):
    """H built independently: -t_k on every bond of shell k, -J S.sigma on site."""
    N = lattice.num_sites
    H = np.zeros((2 * N, 2 * N), complex)
    for k, t in hoppings.items():
        for i, row in enumerate(lattice.neighbors(k)):
            for j in row:
                H[2 * i:2 * i + 2, 2 * j:2 * j + 2] += -t * np.eye(2)
    for i, s in enumerate(spins):
        H[2 * i:2 * i + 2, 2 * i:2 * i + 2] += -J * np.einsum("a,abc->bc", s, PAULI)
    return H


def omega(levels, mu, kT):
    x = (levels - mu) / kT
    return float(-kT * np.sum(np.logaddexp(0.0, -x)))


def fermi(levels, mu, kT):
    return 0.5 * (1 - np.tanh((levels - mu) / (2 * kT)))


def mu_for_count(levels, n_e, kT):
    return brentq(lambda mu: fermi(levels, mu, kT).sum() - n_e, levels[0] - 50, levels[-1] + 50, xtol=1e-14)


def band_energies(lattice, t=1.0):
    """epsilon_k = -t sum over nearest-neighbour offsets of cos(k.delta), on the periodic k grid."""
    offs = lattice.shell_offsets(1).numpy()
    grids = np.meshgrid(*[2 * np.pi * np.arange(L) / L for L in lattice.shape], indexing="ij")
    phases = sum(np.multiply.outer(offs[:, d], grids[d]) for d in range(lattice.dim))
    return (-t * np.cos(phases).sum(axis=0)).ravel()


def perturbed(spins, eps, seed):
    rng = np.random.default_rng(seed)
    s = spins + eps * rng.normal(size=spins.shape)
    return s / np.linalg.norm(s, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("fixed", ["mu", "filling"])
def test_dense_reference_agrees(fixed):
    lat = sf.Lattice("triangular", (5, 4))
    spins = lat.random_spins(5)
    J, kT = 2.5, 0.07
    kwargs = {"mu": -0.8} if fixed == "mu" else {"filling": 0.3}
    res = sf.ExactDiagonalization(sf.SDModel(lat, J=J, kT=kT, t2=0.3, **kwargs)).compute(spins)

    levels, U = np.linalg.eigh(dense_hamiltonian(lat, spins, J, {1: 1.0, 2: 0.3}))
    mu = kwargs.get("mu") or mu_for_count(levels, 0.3 * 2 * lat.num_sites, kT)
    f = fermi(levels, mu, kT)
    rho = np.einsum("m,am,bm->ab", f, U.conj(), U)  # rho_ab = <c+_a c_b>
    blocks = np.array([rho[2 * i:2 * i + 2, 2 * i:2 * i + 2] for i in range(lat.num_sites)])
    fields = J * np.einsum("iab,cab->ic", blocks, PAULI).real  # J sum_ab sigma_ab <c+_a c_b>
    energy = omega(levels, mu, kT) + (mu * 0.3 * 2 * lat.num_sites if fixed == "filling" else 0.0)

    np.testing.assert_allclose(res.eigenvalues, levels, atol=1e-10)
    np.testing.assert_allclose(res.fields, fields, atol=1e-10)
    np.testing.assert_allclose(res.density, np.einsum("iaa->i", blocks).real, atol=1e-10)
    assert res.mu == pytest.approx(mu, abs=1e-10)
    assert res.energy == pytest.approx(energy, abs=1e-10)


def _fd_energy(lattice, spins, J, energy_of_levels, h=1e-5):
    """-dE/dS_ia by central differences of E(H + h dH/dS_ia); dH/dS_ia = -J sigma_a on site i."""
    H0 = dense_hamiltonian(lattice, spins, J, {1: 1.0})
    grad = np.zeros_like(spins)
    for i in range(lattice.num_sites):
        for a in range(3):
            dH = np.zeros_like(H0)
            dH[2 * i:2 * i + 2, 2 * i:2 * i + 2] = -J * PAULI[a]
            ep = energy_of_levels(np.linalg.eigvalsh(H0 + h * dH))
            em = energy_of_levels(np.linalg.eigvalsh(H0 - h * dH))
            grad[i, a] = (ep - em) / (2 * h)
    return -grad


@pytest.mark.parametrize("fixed", ["mu", "filling"])
def test_fields_are_minus_energy_gradient_at_finite_temperature(fixed):
    lat = sf.Lattice("square", (4, 3))
    spins = lat.random_spins(11)
    J, kT = 3.0, 0.1
    if fixed == "mu":
        model = sf.SDModel(lat, J=J, kT=kT, mu=0.4)
        energy = lambda lv: omega(lv, 0.4, kT)  # noqa: E731
    else:
        n_e = 0.4 * 2 * lat.num_sites
        model = sf.SDModel(lat, J=J, kT=kT, filling=0.4)

        def energy(lv):
            mu = mu_for_count(lv, n_e, kT)
            return omega(lv, mu, kT) + mu * n_e
    res = sf.ExactDiagonalization(model).compute(spins)
    np.testing.assert_allclose(res.fields, _fd_energy(lat, spins, J, energy), atol=1e-6)


def test_fields_are_minus_energy_gradient_at_zero_temperature_in_a_gap():
    lat = sf.Lattice("square", 4)
    spins = perturbed(lat.neel(), 0.2, 2)  # Neel at half filling: gap ~2J survives the tilt
    J = 4.0
    model = sf.SDModel(lat, J=J, filling=0.5)
    res = sf.ExactDiagonalization(model).compute(spins)
    n_e = lat.num_sites
    assert res.eigenvalues[n_e] - res.eigenvalues[n_e - 1] > 1.0
    fd = _fd_energy(lat, spins, J, lambda lv: float(np.sort(lv)[:n_e].sum()))
    np.testing.assert_allclose(res.fields, fd, atol=1e-6)


def test_global_rotation_rotates_fields_and_keeps_energy():
    lat = sf.Lattice("triangular", 4)
    spins = lat.random_spins(7)
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=1.5, kT=0.05, filling=0.25))
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    R = q * np.sign(np.linalg.det(q))  # proper rotation
    a, b = ed.compute(spins), ed.compute(spins @ R.T)
    assert b.energy == pytest.approx(a.energy, abs=1e-10)
    np.testing.assert_allclose(b.fields, a.fields @ R.T, atol=1e-10)
    np.testing.assert_allclose(b.density, a.density, atol=1e-10)


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_ferromagnet_energy_is_the_band_sum(kind):
    lat = sf.Lattice(kind, 6)
    J, kT, mu = 2.0, 0.1, -0.5
    eps = band_energies(lat)
    levels = np.concatenate([eps - J, eps + J])  # spin parallel / antiparallel to S
    res = sf.ExactDiagonalization(sf.SDModel(lat, J=J, kT=kT, mu=mu)).compute(lat.ferromagnetic((0, 1, 1)))
    assert res.energy == pytest.approx(omega(levels, mu, kT), abs=1e-10)
    # the field of a ferromagnet is parallel to S, of size J (n_par - n_anti)
    n_par, n_anti = fermi(eps - J, mu, kT).sum(), fermi(eps + J, mu, kT).sum()
    expected = J * (n_par - n_anti) / lat.num_sites * np.array([0, 1, 1]) / np.sqrt(2)
    np.testing.assert_allclose(res.fields, np.tile(expected, (lat.num_sites, 1)), atol=1e-10)


@pytest.mark.parametrize("J", [1.0, 2.0, 4.0])
def test_tetrahedral_state_wins_at_quarter_filling(J):
    lat = sf.Lattice("triangular", 12)
    y = lat.coordinates[:, 1]
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=J, filling=0.25))
    tetra = ed.compute(lat.tetrahedral()).energy
    others = {
        "ferromagnetic": lat.ferromagnetic(),
        "120-degree": lat.spiral((4 * np.pi / 3, 0.0)),
        "collinear stripe": np.where((y % 2 == 0)[:, None], 1.0, -1.0) * np.array([0.0, 0.0, 1.0]),
    }
    for name, spins in others.items():
        other = ed.compute(spins).energy
        assert tetra < other - 1e-3 * lat.num_sites, f"tetrahedral not below {name} at J={J}"


def test_neel_spectrum_at_half_filling():
    lat = sf.Lattice("square", 8)
    J = 1.7
    res = sf.ExactDiagonalization(sf.SDModel(lat, J=J, filling=0.5)).compute(lat.neel())
    eps = band_energies(lat)
    expected = np.sort(np.concatenate([np.sqrt(J**2 + eps**2), -np.sqrt(J**2 + eps**2)]))
    np.testing.assert_allclose(res.eigenvalues, expected, atol=1e-10)
    n = lat.num_sites
    assert res.eigenvalues[n] - res.eigenvalues[n - 1] == pytest.approx(2 * J, abs=1e-10)
    assert res.mu == pytest.approx(0.0, abs=1e-10)
    np.testing.assert_allclose(res.density, 1.0, atol=1e-10)


def test_degenerate_fermi_level_is_shared_equally():
    # The ferromagnet on a 4x4 square lattice has degenerate band levels; 0.3*32 = 9.6 electrons
    # fall into a partly filled degenerate shell.
    lat = sf.Lattice("square", 4)
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=5.0, filling=0.3))
    res = ed.compute(lat.ferromagnetic())
    levels = np.sort(np.concatenate([band_energies(lat) - 5.0, band_energies(lat) + 5.0]))
    n_e = 0.3 * 32
    shell = np.isclose(levels, levels[int(np.ceil(n_e)) - 1], atol=1e-9)
    below = levels < levels[shell][0] - 1e-9
    share = (n_e - below.sum()) / shell.sum()
    assert res.energy == pytest.approx(levels[below].sum() + share * levels[shell].sum(), abs=1e-10)
    np.testing.assert_allclose(res.density.sum(), n_e, atol=1e-10)
    np.testing.assert_allclose(res.density, n_e / 16, atol=1e-10)  # uniform: basis independent
    again = ed.compute(lat.ferromagnetic())
    np.testing.assert_array_equal(again.fields, res.fields)


def test_numpy_in_numpy_out_and_torch_in_torch_out():
    lat = sf.Lattice("square", 4)
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=1.0, mu=0.0, kT=0.1))
    s = lat.random_spins(0)
    a, b = ed.compute(s), ed.compute(torch.from_numpy(s))
    assert isinstance(a.fields, np.ndarray) and isinstance(b.fields, torch.Tensor)
    np.testing.assert_array_equal(a.fields, b.fields.numpy())
    H = ed.hamiltonian(s)
    assert H.shape == (32, 32) and torch.allclose(H, H.mH)


@pytest.mark.parametrize("kwargs,match", [
    ({"J": 1.0}, "exactly one of mu"),
    ({"J": 1.0, "mu": 0.0, "filling": 0.5}, "exactly one of mu"),
    ({"J": 1.0, "filling": 0.0}, r"filling must lie in the open interval \(0, 1\)"),
    ({"J": 1.0, "filling": 1.0}, r"filling must lie"),
    ({"J": 1.0, "filling": float("nan")}, r"filling must lie"),
    ({"J": 1.0, "mu": 0.0, "kT": -0.1}, "kT"),
])
def test_bad_model_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sf.SDModel(sf.Lattice("square", 4), **kwargs)


def test_lattice_too_small_for_hopping_shells():
    with pytest.raises(ValueError, match="too small"):
        sf.SDModel(sf.Lattice("square", 4), J=1.0, mu=0.0, t3=0.2)  # third shell (2,0) wraps on L=4


def test_bad_spins():
    lat = sf.Lattice("square", 4)
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=1.0, mu=0.0))
    good = lat.random_spins(0)
    bad_cases = {
        "shape": good[:5],
        "unit": 2 * good,
        "NaN": np.where(np.arange(48).reshape(16, 3) == 4, np.nan, good),
    }
    for match, spins in bad_cases.items():
        with pytest.raises(ValueError, match=match):
            ed.compute(spins)
    with pytest.raises(ValueError, match="numeric"):
        ed.compute("spins")


def test_torch_version_mismatch_says_how_to_rebuild(monkeypatch):
    from spinforce import _build_check, _build_info
    monkeypatch.setattr(_build_info, "TORCH_VERSION", "1.0.0")
    with pytest.raises(ImportError, match="built against torch 1.0.0.*pip install"):
        _build_check.check_torch_version()


@pytest.mark.gpu
def test_gpu_matches_cpu():
    lat = sf.Lattice("triangular", 6)
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=2.0, kT=0.05, filling=0.25))
    s = torch.from_numpy(lat.random_spins(1))
    a, b = ed.compute(s), ed.compute(s.cuda())
    assert b.fields.is_cuda
    assert b.energy == pytest.approx(a.energy, abs=1e-9)
    torch.testing.assert_close(b.fields.cpu(), a.fields, atol=1e-9, rtol=0)
