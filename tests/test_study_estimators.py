"""Estimators of the coarsening studies on synthetic configurations of known domain size."""
import numpy as np
import pytest

import spinforce as sf
from spinforce import analysis as A

SQRT3_2 = np.sqrt(3.0) / 2.0


def _square_wave(u, period):
    return np.where((np.asarray(u) % period) < period / 2, 1.0, -1.0)


# --- L from the structure factor: straight stripes -------------------------------------------
@pytest.mark.parametrize("period", [8, 16, 32])
def test_structure_factor_length_of_stripes_is_their_period_square(period):
    lat = sf.Lattice("square", (64, 64))
    x, y = lat.coordinates.T
    runs = np.stack([_square_wave(x + shift, period) for shift in (0, 3)])  # two runs, different phases
    L = A.ensemble_lengths(runs, lat)
    assert L["L_sf"] == pytest.approx(period, rel=0.05)
    # stripes along the other axis: the same length
    assert A.ensemble_lengths(_square_wave(y, period)[None], lat)["L_sf"] == pytest.approx(period, rel=0.05)


@pytest.mark.parametrize("coordinate", [0, 1])
def test_structure_factor_length_of_stripes_triangular(coordinate):
    """Stripes of period p in one lattice coordinate are p sqrt(3)/2 apart in real space."""
    lat = sf.Lattice("triangular", (48, 48))
    u = lat.coordinates[:, coordinate]
    L = A.ensemble_lengths(_square_wave(u, 12)[None], lat)["L_sf"]
    assert L == pytest.approx(12 * SQRT3_2, rel=0.05)


def test_whole_grid_first_moment_is_not_the_period():
    """Why the peak is used: the Porod tail of sharp walls pulls the whole-grid moment well below the period."""
    lat = sf.Lattice("square", (64, 64))
    sq = A.structure_factor(_square_wave(lat.coordinates[:, 0], 32), lat)
    whole = A.structure_factor_length(sq, lat, peaks=[[0.0, 0.0]])
    peak = A.structure_factor_length(sq, lat, peaks=[[0.0, 0.0]], q_max="peak")
    assert peak == pytest.approx(32, rel=1e-9)
    assert whole < 0.8 * 32


# --- disks of known radius: correlation length and clusters -----------------------------------
def _disk_overlap_crossing(level=np.exp(-1.0)):
    """u = r / 2R where the overlap of two disks of radius R, divided by the disk area, equals level."""
    from scipy.optimize import brentq
    return brentq(lambda u: 2 / np.pi * (np.arccos(u) - u * np.sqrt(1 - u * u)) - level, 0.0, 1.0)


def _disks(lat, R, centres):
    pos = lat.positions
    inside = np.zeros(lat.num_sites, bool)
    for c in centres:
        inside |= np.linalg.norm(pos - np.asarray(c, float), axis=1) <= R
    return inside


@pytest.mark.parametrize("R", [6.0, 10.0])
def test_correlation_length_of_disks(R):
    """C(r)/C(0) of disk indicators is the overlap area of two disks at distance r over the disk area."""
    lat = sf.Lattice("square", (96, 96))
    runs = np.stack([_disks(lat, R, [(20 + s, 20), (68 + s, 20), (20, 68 + s), (68, 68)]).astype(float)
                     for s in (0, 5)])
    L = A.ensemble_lengths(runs, lat)["L_corr"]
    assert L == pytest.approx(2 * R * _disk_overlap_crossing(), rel=0.05)


@pytest.mark.parametrize("R", [6.0, 10.0])
def test_cluster_length_of_disks(R):
    lat = sf.Lattice("square", (96, 96))
    inside = _disks(lat, R, [(20, 20), (68, 20), (20, 68), (68, 68)])
    labels, sizes = A.site_clusters(inside, lat)
    assert len(sizes) == 4 and np.all(labels[~inside] == -1)
    stats = A.cluster_statistics(sizes)
    assert stats["length"] == pytest.approx(np.sqrt(np.pi) * R, rel=0.05)  # L_cl = sqrt(<s>) = sqrt(pi) R


def test_site_clusters_do_not_join_through_other_sites():
    """Two squares one empty column apart are two clusters; a bridge makes them one."""
    lat = sf.Lattice("square", (16, 16))
    x, y = lat.coordinates.T
    mask = (y >= 2) & (y < 6) & (((x >= 2) & (x < 6)) | ((x >= 7) & (x < 11)))
    labels, sizes = A.site_clusters(mask, lat)
    assert sizes.tolist() == [16, 16] and set(labels[~mask]) == {-1}
    bridge = mask | ((x == 6) & (y == 3))
    assert A.site_clusters(bridge, lat)[1].tolist() == [33]


def test_bond_field_clusters_of_ferromagnetic_disks_in_a_neel_background():
    """b_i > 0.25 marks the ferromagnetic disks (the wall costs only corner sites): <s> = pi R^2 within 5 %."""
    R = 10.0
    lat = sf.Lattice("square", (96, 96))
    spins = lat.neel()
    inside = _disks(lat, R, [(24, 24), (72, 30), (30, 70)])
    spins[inside] = [0.0, 0.0, 1.0]
    b = A.bond_average(spins, lat)
    _, sizes = A.site_clusters(b > 0.25, lat)
    assert len(sizes) == 3
    assert A.cluster_statistics(sizes)["mean_size"] == pytest.approx(np.pi * R * R, rel=0.05)


# --- domain-wall directions -------------------------------------------------------------------
def _triangle_stripes(lat, direction, period):
    """Up/down triangle values (2N,) of stripes whose walls run along lattice direction 0, 1, 2 (a1, a2, a2-a1)."""
    i, j = lat.coordinates.T
    if direction == 0:    # value set by the row j: walls along a1
        up = down = _square_wave(j, period)
    elif direction == 1:  # by the column i: walls along a2
        up = down = _square_wave(i, period)
    else:                 # by i + j, the down triangle one step further: walls along a2 - a1
        up, down = _square_wave(i + j, period), _square_wave(i + j + 1, period)
    return np.concatenate([up, down])


@pytest.mark.parametrize("direction", [0, 1, 2])
def test_wall_direction_fractions_of_straight_stripes_are_exact(direction):
    lat = sf.Lattice("triangular", (24, 24))
    frac, counts = A.wall_direction_fractions(_triangle_stripes(lat, direction, 8), lat)
    expected = np.eye(3)[direction]
    np.testing.assert_array_equal(frac, expected)
    assert counts.sum() == 2 * 3 * 24  # three walls per period 8 ... 24 / 8 = 3 periods, 2 walls each, 24 bonds long


def test_wall_direction_fractions_of_the_tetrahedral_state_and_of_chirality():
    lat = sf.Lattice("triangular", (12, 12))
    frac, counts = A.wall_direction_fractions(A.scalar_chirality(lat.tetrahedral(), lat), lat)
    assert counts.sum() == 0 and np.isnan(frac).all()  # one domain: no walls
    mixed = np.concatenate([_triangle_stripes(lat, 0, 6)[:lat.num_sites], _triangle_stripes(lat, 1, 6)[lat.num_sites:]])
    frac, _ = A.wall_direction_fractions(mixed, lat)
    assert frac.sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="triangular"):
        A.wall_direction_fractions(np.ones(2 * 16), sf.Lattice("square", 4))


# --- growth exponent: window sensitivity and the ensemble (jackknife) error ---------------------
def test_window_sensitivity_spread():
    t = np.geomspace(1, 1000, 31)
    pure = A.window_sensitivity(t, 3.0 * t ** 0.4, 20, 200)
    assert len(pure["fits"]) == 5 and pure["spread"] < 1e-12
    L = np.where(t < 10, t ** 0.5, 10 ** 0.5 * (t / 10) ** 0.25)  # crossover at t = 10
    scan = A.window_sensitivity(t, L, 20, 200, factors=(0.25, 0.5, 1.0, 2.0))
    exps = [f["exponent"] for f in scan["fits"]]
    assert exps[1:] == pytest.approx([0.25] * 3, abs=1e-12)  # [10, 100] and later: the late law
    assert 0.25 < exps[0] < 0.5  # [5, 50] straddles the crossover
    assert scan["spread"] == pytest.approx(exps[0] - 0.25, abs=1e-12)
    for fit in scan["fits"]:  # both ends of the window move (grid spacing 10^0.1 in t)
        f = fit["factor"]
        lo, hi = 20 * f * (1 - 1e-9), 200 * f * (1 + 1e-9)
        assert lo <= fit["t_min"] < lo * 10 ** 0.1 and hi / 10 ** 0.1 < fit["t_max"] <= hi
    coarse = np.arange(1.0, 11.0)  # [4.5, 10] and [4.95, 11] hold the same frames 5..10: fitted once
    assert [f["factor"] for f in A.window_sensitivity(coarse, coarse ** 0.5, 4.5, 10, (1.0, 1.1))["fits"]] == [1.0]
    with pytest.raises(ValueError, match="t_min < t_max"):
        A.window_sensitivity(t, L, 200, 20)


def test_jackknife_exponent_error_matches_the_scatter_over_ensembles():
    """L(t) of an ensemble of R noisy runs: the exponent of the ensemble mean and its jackknife error
    recover the known law; the error is the actual scatter of the estimate over repeated ensembles."""
    rng = np.random.default_rng(5)
    t = np.geomspace(10, 1000, 12)
    runs, n_true, sigma = 8, 0.45, 0.1
    exps, errs = [], []
    for _ in range(150):
        L_runs = 1.5 * t[:, None] ** n_true * np.exp(sigma * rng.normal(size=(t.size, runs)))
        L_mean = L_runs.mean(1)
        L_loo = (L_runs.sum(1, keepdims=True) - L_runs) / (runs - 1)
        exps.append(A.fit_power_law(t, L_mean, 10, 1000).exponent)
        errs.append(A.jackknife_fit(t, L_loo, 10, 1000))
    exps, errs = np.array(exps), np.array(errs)
    assert exps.mean() == pytest.approx(n_true, abs=3 * exps.std() / np.sqrt(len(exps)))
    assert errs.mean() == pytest.approx(exps.std(), rel=0.25)
    assert np.mean(np.abs(exps - n_true) < 2 * errs) > 0.85
