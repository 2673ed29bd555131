"""The chemical potential for a wanted filling of a set of states (grand-canonical labelling)."""
import numpy as np
import pytest

import spinforce as sf
from spinforce.electrons import solve_mu

pytestmark = pytest.mark.usefixtures("single_thread")


def states(lattice, count, seed=0):
    return np.stack([lattice.random_spins(seed + k) for k in range(count)])


def electrons_at(model, spins_set):
    """Total electron count of the states from the ED provider at fixed mu (its own occupations)."""
    ed = sf.ExactDiagonalization(model)
    return sum(float(ed.compute(s).density.sum()) for s in spins_set)


def test_finite_temperature_count_and_canonical_mu():
    lat = sf.Lattice("square", (4, 4))
    model = sf.SDModel(lat, J=3.0, filling=0.3, kT=0.1)
    S = states(lat, 3)
    fixed = sf.mu_for_filling(model, S)
    n_total = electrons_at(sf.model_at_mu(model, fixed.mu), S)
    assert n_total / (3 * 2 * lat.num_sites) == pytest.approx(0.3, abs=1e-10)
    assert np.mean(fixed.filling_per_state) == pytest.approx(0.3, abs=1e-10)
    # Each state's canonical mu is the one the ED provider solves at fixed filling.
    ed_canonical = sf.ExactDiagonalization(model)
    for s, mu in zip(S, fixed.canonical_mu):
        assert mu == pytest.approx(ed_canonical.compute(s).mu, abs=1e-9)


def test_single_state_fields_at_fixed_mu_equal_fixed_filling():
    # dOmega/dmu = -N: at the mu of a state's own filling both ensembles give the same forces.
    lat = sf.Lattice("triangular", (4, 4))
    model = sf.SDModel(lat, J=2.0, filling=0.25, kT=0.05)
    s = lat.random_spins(3)
    fixed = sf.mu_for_filling(model, s)
    a = sf.ExactDiagonalization(sf.model_at_mu(model, fixed.mu)).compute(s).fields
    b = sf.ExactDiagonalization(model).compute(s).fields
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_zero_temperature_gap_midpoint():
    lat = sf.Lattice("square", (4, 4))
    model = sf.SDModel(lat, J=6.0, filling=0.4375, kT=0.0)  # 14 of 32 levels per state
    S = states(lat, 2, seed=10)
    fixed = sf.mu_for_filling(model, S)
    ed = sf.ExactDiagonalization(model)
    pooled = np.sort(np.concatenate([np.linalg.eigvalsh(ed.hamiltonian(s).numpy()) for s in S]))
    target = 2 * 14
    assert fixed.mu == pytest.approx(0.5 * (pooled[target - 1] + pooled[target]), abs=1e-10)
    assert electrons_at(sf.model_at_mu(model, fixed.mu), S) == pytest.approx(target, abs=1e-10)
    for s, mu in zip(S, fixed.canonical_mu):
        assert mu == pytest.approx(ed.compute(s).mu, abs=1e-10)


def test_solve_mu_partly_filled_shell_and_weights():
    levels = np.array([-1.0, 0.0, 0.0, 2.0])
    assert solve_mu(levels, 2.0, 0.0) == 0.0      # one of two degenerate levels filled: mu on the shell
    assert solve_mu(levels, 3.0, 0.0) == 1.0      # shell full: midpoint of the gap above it
    assert solve_mu(np.array([0.0, 1.0]), 1.5, 0.0, weights=[1.0, 2.0]) == 1.0
    with pytest.raises(ValueError, match="electron count"):
        solve_mu(levels, 4.0, 0.1)


def test_kpm_density_of_states_gives_nearly_the_same_mu():
    lat = sf.Lattice("triangular", (4, 4))
    model = sf.SDModel(lat, J=2.0, filling=0.25, kT=0.1)
    S = states(lat, 2, seed=4)
    exact = sf.mu_for_filling(model, S).mu
    kpm = sf.KPM(model, moments=400, probing_distance=None)
    assert sf.mu_for_filling(model, S, provider=kpm).mu == pytest.approx(exact, abs=0.02)


def test_bad_input():
    lat = sf.Lattice("square", (4, 4))
    model = sf.SDModel(lat, J=2.0, mu=0.0)
    with pytest.raises(ValueError, match="filling"):
        sf.mu_for_filling(model, lat.random_spins(0))
    with pytest.raises(ValueError, match="filling"):
        sf.mu_for_filling(model, lat.random_spins(0), filling=1.2)
    with pytest.raises(ValueError, match="states"):
        sf.mu_for_filling(model, np.zeros((2, 5, 3)), filling=0.3)


def test_filling_at_mu_inverts_mu_for_filling():
    from spinforce.electrons import filling_at_mu
    lat = sf.Lattice("square", (4, 4))
    model = sf.SDModel(lat, J=3.0, filling=0.3, kT=0.1)
    S = states(lat, 3, seed=20)
    fixed = sf.mu_for_filling(model, S)
    per_state = filling_at_mu(model, S, fixed.mu)
    np.testing.assert_allclose(per_state, fixed.filling_per_state, atol=1e-12)
    assert per_state.mean() == pytest.approx(0.3, abs=1e-10)


def test_solve_mu_weighted_unsorted_levels_against_root_finder():
    # One solver serves ED (unit weights), KPM (quadrature weights of its spectral measure, nodes
    # in descending order) and pooled states: any order, any non-negative weights.
    from scipy.optimize import brentq

    rng = np.random.default_rng(4)
    e, w = rng.normal(size=300), rng.uniform(0.1, 2.0, size=300)
    target, kT = 0.37 * w.sum(), 0.07

    def excess(mu):
        return float(np.dot(w, 0.5 * (1.0 - np.tanh((e - mu) / (2.0 * kT))))) - target

    reference = brentq(excess, -10.0, 10.0, xtol=1e-15, rtol=1e-15)
    assert solve_mu(e, target, kT, weights=w) == pytest.approx(reference, abs=1e-12)
    order = rng.permutation(e.size)
    assert solve_mu(e[order], target, kT, weights=w[order]) == pytest.approx(reference, abs=1e-12)
    # kT = 0: the staircase rule holds whatever the order of the levels.
    levels, weights = np.array([2.0, 0.0, -1.0, 0.0]), np.array([1.0, 0.5, 1.5, 0.5])
    assert solve_mu(levels, 2.5, 0.0, weights=weights) == 1.0   # -1 and the 0-shell full: gap midpoint
    assert solve_mu(levels, 2.0, 0.0, weights=weights) == 0.0   # 0-shell half full: mu on it
    assert solve_mu(levels, 1.0, 0.0, weights=weights) == -1.0
