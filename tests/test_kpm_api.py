"""KPM at zero electron temperature and the KPM API, against exact diagonalisation and
formulas written out here."""
import numpy as np
import pytest

import spinforce as sf
from spinforce import cli
from spinforce.data import read_dataset


def jackson(M):
    m = np.arange(M)
    q = np.pi / (M + 1)
    return ((M + 1 - m) * np.cos(q * m) + np.sin(q * m) / np.tan(q)) / (M + 1)


def chebyshev_traces(levels, lower, upper, M):
    """Tr T_m((H - a)/b) from the eigenvalues of H: sum_l cos(m arccos(x_l))."""
    x = (levels - 0.5 * (lower + upper)) / (0.5 * (upper - lower))
    return np.array([np.cos(m * np.arccos(x)).sum() for m in range(M)])


def gapped_state():
    """A tetrahedral state with noise on 4x4 triangular: a gap at quarter filling (J = 3)."""
    lat = sf.Lattice("triangular", (4, 4))
    s = lat.tetrahedral() + 0.25 * np.random.default_rng(1).normal(size=(lat.num_sites, 3))
    return lat, s / np.linalg.norm(s, axis=1, keepdims=True)


# --- electron temperature 0 ----------------------------------------------------------------------
@pytest.mark.parametrize("fixed", ["filling", "mu"])
def test_zero_temperature_kpm_converges_to_ed(fixed):
    lat, spins = gapped_state()
    levels = np.sort(sf.ExactDiagonalization(sf.SDModel(lat, J=3.0, kT=0.0, filling=0.25)).compute(spins).eigenvalues)
    n_e = 8  # quarter filling of 32 spin orbitals
    gap = (levels[n_e - 1], levels[n_e])
    assert gap[1] - gap[0] > 1.0
    model = sf.SDModel(lat, J=3.0, kT=0.0, **({"filling": 0.25} if fixed == "filling" else {"mu": 0.5 * sum(gap)}))
    ed = sf.ExactDiagonalization(model).compute(spins)
    # step occupations: the energy is the sum of the lowest n_e levels (F at fixed N, Omega at fixed mu)
    expected = levels[:n_e].sum() - (0.0 if fixed == "filling" else model.mu * n_e)
    assert ed.energy == pytest.approx(expected, abs=1e-10)
    errors = []
    for moments in (400, 800):
        r = sf.KPM(model, moments=moments).compute(spins)  # exact traces
        assert gap[0] < r.mu < gap[1]  # at fixed filling mu is solved on the step function: inside the gap
        errors.append((abs(r.energy - ed.energy), np.abs(r.fields - ed.fields).max()))
    # measured 1.8e-4 and 1e-5 at M = 800; the kink of the T = 0 occupation gives 1/M^2 convergence
    assert errors[1][0] < 5e-4 and errors[1][1] < 3e-5
    assert errors[1][0] < errors[0][0] / 3 and errors[1][1] < errors[0][1] / 3


def test_zero_temperature_kpm_with_a_level_just_below_mu():
    """Metallic case: mu 0.04 above a level. A Fermi function of any kT >~ 0.01 instead of the
    step would move the energy by ~1e-3; the T = 0 expansion converges to ED instead."""
    lat = sf.Lattice("triangular", (4, 4))
    spins = lat.random_spins(3)
    levels = np.sort(sf.ExactDiagonalization(sf.SDModel(lat, J=2.0, mu=0.0)).compute(spins).eigenvalues)
    model = sf.SDModel(lat, J=2.0, kT=0.0, mu=levels[12] + 0.04)
    assert levels[13] - levels[12] > 0.4
    ed = sf.ExactDiagonalization(model).compute(spins)
    assert ed.energy == pytest.approx(np.sum(levels[:13] - model.mu), abs=1e-10)
    r = sf.KPM(model, moments=3200).compute(spins)  # exact traces; measured 3.7e-6 and 4e-5
    assert r.energy == pytest.approx(ed.energy, abs=5e-5)
    np.testing.assert_allclose(r.fields, ed.fields, rtol=0, atol=3e-4)


# --- API ------------------------------------------------------------------------------------------
def test_chebyshev_moments_are_traces_of_chebyshev_polynomials():
    lat = sf.Lattice("square", (4, 4))
    model = sf.SDModel(lat, J=2.0, mu=0.3, kT=0.1, t2=0.2)
    spins = lat.random_spins(1)
    levels = np.linalg.eigvalsh(sf.ExactDiagonalization(model).hamiltonian(spins).numpy())
    for bounds in (None, (-9.0, 7.5)):
        kpm = sf.KPM(model, moments=60, bounds=bounds)
        lower, upper = kpm.bounds
        if bounds is not None:
            assert (lower, upper) == bounds  # user bounds are used as given
        moments = kpm.chebyshev_moments(spins)
        assert moments.shape == (60,) and moments.dtype == np.float64
        np.testing.assert_allclose(moments, chebyshev_traces(levels, lower, upper, 60), rtol=0, atol=1e-10)


def test_user_bounds_give_the_same_physics_and_must_contain_the_spectrum():
    lat = sf.Lattice("square", (4, 4))
    model = sf.SDModel(lat, J=2.0, mu=0.3, kT=0.2)
    spins = lat.random_spins(2)
    ed = sf.ExactDiagonalization(model).compute(spins)
    # wider bounds only cost resolution (error ~ (b/M)^2; measured 9.7e-4 and 1.1e-3 here)
    wide = sf.KPM(model, moments=600, bounds=(-8.0, 8.5)).compute(spins)
    assert wide.energy == pytest.approx(ed.energy, abs=2e-3)
    np.testing.assert_allclose(wide.fields, ed.fields, rtol=0, atol=2e-3)
    # the ferromagnet reaches [-4 - 2, 4 + 2]: narrower bounds would give nonsense, so they are refused
    for bad in ((-3.0, 3.0), (-5.9, 7.0), (-7.0, 5.9)):
        with pytest.raises(ValueError, match="bounds"):
            sf.KPM(model, moments=50, bounds=bad)
    sf.KPM(model, moments=50, bounds=(-6.0, 6.0))  # the exact spectrum is allowed


def test_density_of_states_at_given_energies_is_the_jackson_series():
    lat = sf.Lattice("triangular", (4, 4))
    model = sf.SDModel(lat, J=1.5, mu=0.0, kT=0.1)
    spins = lat.random_spins(3)
    M = 80
    kpm = sf.KPM(model, moments=M)
    lower, upper = kpm.bounds
    a, b = 0.5 * (lower + upper), 0.5 * (upper - lower)
    levels = np.linalg.eigvalsh(sf.ExactDiagonalization(model).hamiltonian(spins).numpy())
    mu_m = chebyshev_traces(levels, lower, upper, M) * jackson(M)
    energies = np.array([2.5, -4.0, 0.0, -1.234, -6.9])  # any order, inside the bounds
    x = (energies - a) / b
    series = mu_m[0] + 2 * sum(mu_m[m] * np.cos(m * np.arccos(x)) for m in range(1, M))
    expected = series / (np.pi * b * np.sqrt(1 - x ** 2))
    e, rho = kpm.density_of_states(spins, energies=energies)
    np.testing.assert_array_equal(e, energies)
    np.testing.assert_allclose(rho, expected, rtol=1e-10, atol=1e-12)
    # outside the bounds there are no states
    np.testing.assert_array_equal(kpm.density_of_states(spins, energies=[lower - 0.1, upper + 2.0])[1], 0.0)
    # default grid: num_points midpoints of the bounds
    e, rho = kpm.density_of_states(spins, num_points=7)
    np.testing.assert_allclose(e, lower + (upper - lower) * (np.arange(7) + 0.5) / 7, rtol=0, atol=1e-14)
    np.testing.assert_allclose(rho, kpm.density_of_states(spins, energies=e)[1], rtol=1e-13)


def test_settings_record_the_constructor_arguments():
    lat = sf.Lattice("square", (8, 8))
    model = sf.SDModel(lat, J=2.0, mu=0.0, kT=0.1)
    kpm = sf.KPM(model, moments=123, probing_distance=2.5, seed=7, dtype="complex64", bounds=(-7.0, 7.0))
    s = kpm.settings()
    colours = np.asarray(kpm.colours)
    assert s == {"method": "KPM", "moments": 123, "probing_distance": 2.5, "seed": 7, "dtype": "complex64",
                 "bounds": [-7.0, 7.0], "num_probes": 2 * (int(colours.max()) + 1)}
    # the settings rebuild an equal provider (provenance records are meant for that)
    again = sf.KPM(model, **{k: v for k, v in s.items() if k not in ("method", "num_probes")})
    spins = lat.random_spins(0)
    np.testing.assert_array_equal(again.compute(spins).fields, kpm.compute(spins).fields)
    exact = sf.KPM(model, moments=10).settings()
    assert exact["probing_distance"] is None and exact["num_probes"] == 2 * lat.num_sites


def test_generate_with_the_real_kpm(tmp_path):
    path = tmp_path / "kpm.h5"
    rc = cli.main(["generate", "--example", "kpm_quench_triangular", "-o", str(path), "--no-progress",
                   "--set", "lattice.shape=[6, 6]", "--set", "method.moments=80", "--set", "method.probing_distance=2",
                   "--set", "dynamics.steps=4", "--set", "dynamics.save_every=2",
                   "--set", "samples.random=1", "--set", "samples.perturbed=1"])
    assert rc == 0
    d = read_dataset(path)
    lat = sf.Lattice("triangular", (6, 6))
    kpm = sf.KPM(sf.SDModel(lat, J=2.0, filling=0.25, kT=0.05), moments=80, probing_distance=2, seed=0)
    assert d.method == "kpm" and d.method_settings == {"moments": 80, "probing_distance": 2, "seed": 0}
    assert d.num_frames == 3 + 2
    for k in range(d.num_frames):
        r = kpm.compute(d.spins[k])
        np.testing.assert_allclose(d.fields[k], r.fields, rtol=0, atol=1e-12)
        assert d.energy[k] == pytest.approx(r.energy, abs=1e-10)
    np.testing.assert_array_equal(d.spins[0], lat.random_spins(2))
    llg = sf.LLG(kpm, dt=0.05, alpha=0.1, kT=0.01, seed=2)
    np.testing.assert_allclose(d.spins[2], llg.run(d.spins[0], 4), rtol=0, atol=1e-12)
