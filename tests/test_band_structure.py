"""The s-d Hamiltonian against its analytic band structure.

For ferromagnetic spins the electrons are Bloch waves with spin along S: the levels are
eps(k) -+ J with eps(k) = -sum_n t_n sum_{delta in shell n} cos(k . delta). The shells' vectors
and the primitive vectors are written out here, independently of the lattice code, so a wrong
shell, amplitude or sign in the Hamiltonian of ED or KPM shows up.
"""
import itertools

import numpy as np
import pytest

import spinforce as sf

S3 = np.sqrt(3.0)
PRIMITIVE = {"square": np.eye(2), "triangular": np.array([[1.0, 0.0], [0.5, S3 / 2]]), "cubic": np.eye(3)}


def _star(length, first_angle_deg, count=6):
    angles = np.deg2rad(first_angle_deg + 360.0 / count * np.arange(count))
    return length * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _cubic_shell(pattern):
    """All sign changes and permutations of a 3-vector pattern such as (1, 1, 0)."""
    vectors = {tuple(s * p for s, p in zip(signs, perm))
               for perm in itertools.permutations(pattern) for signs in itertools.product((1, -1), repeat=3)}
    return np.array(sorted(vectors), dtype=float)


# Cartesian neighbour vectors of shells 1, 2, 3 (lattice constant 1).
SHELLS = {
    "square": [np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], float),
               np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float),
               np.array([[2, 0], [-2, 0], [0, 2], [0, -2]], float)],
    "triangular": [_star(1.0, 0), _star(S3, 30), _star(2.0, 0)],
    "cubic": [_cubic_shell((1, 0, 0)), _cubic_shell((1, 1, 0)), _cubic_shell((1, 1, 1))],
}


def band(kind, shape, hoppings):
    """eps(k) on the periodic k grid of the lattice: k = sum_d m_d b_d / L_d."""
    B = 2 * np.pi * np.linalg.inv(PRIMITIVE[kind]).T  # rows b_d with a_c . b_d = 2 pi delta_cd
    m = np.stack(np.meshgrid(*[np.arange(L) for L in shape], indexing="ij"), axis=-1).reshape(-1, len(shape))
    k = (m / np.asarray(shape)) @ B
    return -sum(t * np.cos(k @ shell.T).sum(axis=1) for t, shell in zip(hoppings, SHELLS[kind]))


def omega(levels, mu, kT):
    return float(-kT * np.sum(np.logaddexp(0.0, -(levels - mu) / kT)))


def fermi(levels, mu, kT):
    return 0.5 * (1 - np.tanh((levels - mu) / (2 * kT)))


CASES = [("square", (6, 5), (0.7, -0.25, 0.15), 1.3),
         ("triangular", (6, 5), (-0.8, 0.3, -0.2), 2.1),
         pytest.param("cubic", (4, 3, 5), (1.4, 0.35, -0.2), 0.9, marks=pytest.mark.slow)]
DIRECTION = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


def test_reference_shells_have_the_textbook_sizes_and_lengths():
    expected = {"square": [(4, 1), (4, np.sqrt(2)), (4, 2)], "triangular": [(6, 1), (6, S3), (6, 2)],
                "cubic": [(6, 1), (12, np.sqrt(2)), (8, S3)]}
    for kind, shells in SHELLS.items():
        for shell, (count, length) in zip(shells, expected[kind]):
            assert len(shell) == count and np.allclose(np.linalg.norm(shell, axis=1), length, rtol=0, atol=1e-15)
            # each shell vector is a lattice vector: integer coordinates in the primitive basis
            coords = shell @ np.linalg.inv(PRIMITIVE[kind])
            assert np.allclose(coords, np.round(coords), atol=1e-12)


@pytest.mark.parametrize("kind, shape, hoppings, J", CASES)
def test_ed_spectrum_of_a_ferromagnet_is_the_band_structure(kind, shape, hoppings, J):
    lat = sf.Lattice(kind, shape)
    t, t2, t3 = hoppings
    mu, kT = -0.4, 0.08
    eps = band(kind, shape, hoppings)
    levels = np.sort(np.concatenate([eps - J, eps + J]))  # spin parallel / antiparallel to S
    ed = sf.ExactDiagonalization(sf.SDModel(lat, t=t, t2=t2, t3=t3, J=J, mu=mu, kT=kT))
    res = ed.compute(lat.ferromagnetic(DIRECTION))
    np.testing.assert_allclose(np.sort(res.eigenvalues), levels, rtol=0, atol=1e-10)
    assert res.energy == pytest.approx(omega(levels, mu, kT), rel=0, abs=1e-9)
    # the field is parallel to S, J (n_parallel - n_antiparallel) per site
    size = J * (fermi(eps - J, mu, kT).sum() - fermi(eps + J, mu, kT).sum()) / lat.num_sites
    np.testing.assert_allclose(res.fields, np.tile(size * DIRECTION, (lat.num_sites, 1)), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind, shape, hoppings, J", CASES)
def test_kpm_of_a_ferromagnet_matches_the_band_structure(kind, shape, hoppings, J):
    lat = sf.Lattice(kind, shape)
    t, t2, t3 = hoppings
    mu, kT = -0.4, 0.15
    eps = band(kind, shape, hoppings)
    levels = np.concatenate([eps - J, eps + J])
    model = sf.SDModel(lat, t=t, t2=t2, t3=t3, J=J, mu=mu, kT=kT)
    kpm = sf.KPM(model, moments=800)  # exact traces
    # default bounds: the exact spectrum of the ferromagnet, widened by 1%
    lower, upper = kpm.bounds
    centre, half = 0.5 * (lower + upper), 0.5 * (upper - lower) / 1.01
    assert centre - half == pytest.approx(levels.min(), abs=1e-12)
    assert centre + half == pytest.approx(levels.max(), abs=1e-12)
    n = lat.num_sites
    exact = omega(levels, mu, kT) / n
    res = kpm.compute(lat.ferromagnetic(DIRECTION))
    size = J * (fermi(eps - J, mu, kT).sum() - fermi(eps + J, mu, kT).sum()) / n
    np.testing.assert_allclose(res.fields, np.tile(size * DIRECTION, (n, 1)), rtol=0, atol=1e-3)
    # The Chebyshev truncation error falls as 1/M^2 towards the analytic value (measured
    # 4e-5..1.3e-4 per site at M = 800 for these bands): doubling M divides it by about 4.
    error = abs(res.energy / n - exact)
    finer = abs(sf.KPM(model, moments=1600).compute(lat.ferromagnetic(DIRECTION)).energy / n - exact)
    assert error < 2e-4 and finer < error / 3
