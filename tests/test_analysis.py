"""Analysis functions against analytic and hand-made cases."""
import json

import numpy as np
import pytest
import torch

import spinforce as sf
from spinforce import analysis as A
from spinforce.data import DatasetWriter

Z, X, Y = np.eye(3)[2], np.eye(3)[0], np.eye(3)[1]


# --- chirality -----------------------------------------------------------------------------
@pytest.mark.parametrize("sign", [1, -1])
def test_tetrahedral_state_has_uniform_chirality(sign):
    lat = sf.Lattice("triangular", (8, 6))
    spins = lat.tetrahedral(sign)
    expected = sign * 4.0 / (3.0 * np.sqrt(3.0))
    chi = A.scalar_chirality(spins, lat)
    assert chi.shape == (2 * lat.num_sites,)  # up and down triangles
    np.testing.assert_allclose(chi, expected, atol=1e-12)
    np.testing.assert_allclose(A.site_chirality(spins, lat), expected, atol=1e-12)
    np.testing.assert_allclose(A.plaquette_chirality(spins, lat), expected, atol=1e-12)
    assert A.TETRAHEDRAL_CHIRALITY == pytest.approx(4.0 / (3.0 * np.sqrt(3.0)), rel=1e-15)


def test_triangles_are_counterclockwise_elementary_triangles():
    for kind in ("triangular", "square"):
        lat = sf.Lattice(kind, (6, 6))
        tri = A.triangles(lat)
        pos = lat.positions
        # Interior anchor (away from the periodic wrap): oriented area > 0, edges of length 1 or sqrt(2).
        interior = np.all(lat.coordinates[tri].max(axis=1) - lat.coordinates[tri].min(axis=1) <= 1, axis=1)
        p = pos[tri[interior]]
        u, v = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        area = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
        assert (area > 0).all()
        counts = np.bincount(tri.ravel(), minlength=lat.num_sites)
        assert set(counts) == {6 if kind == "triangular" else 12}


def test_square_plaquette_chirality_hand_computed():
    lat = sf.Lattice("square", (4, 4))
    spins = lat.ferromagnetic()
    s3 = (X + Y) / np.sqrt(2.0)
    # plaquette anchored at site 0: corners (0,0), (1,0), (1,1), (0,1) = sites 0, 1, 5, 4
    spins[[0, 1, 5, 4]] = [X, Y, Z, s3]
    # corner triangles (c, c+1, c-1): x.(y x s3) = 0, y.(z x x) = 1, z.(s3 x y) = 1/sqrt2, s3.(x x z) = -1/sqrt2
    assert A.plaquette_chirality(spins, lat)[0] == pytest.approx(0.25, abs=1e-14)
    np.testing.assert_allclose(A.scalar_chirality(spins, lat)[:4], [0.0, 1.0, 2**-0.5, -(2**-0.5)], atol=1e-14)
    # time reversal flips the sign, a global rotation leaves it unchanged
    assert A.plaquette_chirality(-spins, lat)[0] == pytest.approx(-0.25, abs=1e-14)
    R = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    R *= np.sign(np.linalg.det(R))
    np.testing.assert_allclose(A.scalar_chirality(spins @ R.T, lat), A.scalar_chirality(spins, lat), atol=1e-13)


# --- bond average, clusters at straight domain walls -----------------------------------------
def test_straight_wall_between_ferromagnetic_domains_square():
    lat = sf.Lattice("square", (12, 6))
    x = lat.coordinates[:, 0]
    spins = np.where((x < 6)[:, None], Z, -Z)
    b = A.bond_average(spins, lat)
    # each site next to one of the two walls (x = 5|6 and the periodic one x = 11|0) has 3 of 4 bonds parallel
    expected = np.where(np.isin(x, [0, 5, 6, 11]), 0.5, 1.0)
    np.testing.assert_allclose(b, expected, atol=1e-14)
    labels, sizes = A.ferromagnetic_clusters(spins, lat, threshold=0.9)
    np.testing.assert_array_equal(sizes, [36, 36])
    assert len(np.unique(labels[x < 6])) == 1 and len(np.unique(labels[x >= 6])) == 1
    assert labels[0] != labels[6]


def test_straight_wall_triangular_lattice_uses_coordination_six():
    lat = sf.Lattice("triangular", (10, 4))
    x = lat.coordinates[:, 0]
    spins = np.where((x < 5)[:, None], Z, -Z)
    # a site next to the wall along a2 has 2 of its 6 bonds across it: b = (4 - 2) / 6
    expected = np.where(np.isin(x, [0, 4, 5, 9]), 1.0 / 3.0, 1.0)
    np.testing.assert_allclose(A.bond_average(spins, lat), expected, atol=1e-14)


def test_wall_between_ferromagnet_and_neel_domain():
    lat = sf.Lattice("square", (12, 6))
    x, y = lat.coordinates.T
    neel = lat.neel(Z)
    spins = np.where((x < 6)[:, None], Z, neel)
    b = A.bond_average(spins, lat)
    parallel = neel[:, 2] > 0  # Neel sites pointing like the ferromagnet
    np.testing.assert_allclose(b[(x > 0) & (x < 5)], 1.0)
    np.testing.assert_allclose(b[(x > 6) & (x < 11)], -1.0)
    for col, partner in ((5, 6), (0, 11)):  # ferromagnetic edge columns, their Neel neighbour column
        across = parallel[(x == partner)]
        np.testing.assert_allclose(b[x == col], np.where(across, 1.0, 0.5))
        np.testing.assert_allclose(b[x == partner], np.where(across, -0.5, -1.0))
    labels, sizes = A.ferromagnetic_clusters(spins, lat, threshold=0.9)
    # the ferromagnetic half plus the Neel edge sites that point along it; Neel sites are single
    np.testing.assert_array_equal(sizes, [6 * 6 + 3 + 3])
    assert (labels[x < 6] == 0).all()
    assert (labels[(x >= 6) & ~np.isin(x, [6, 11])] == -1).all()


def test_cluster_finder_on_hand_made_pattern():
    pattern = ["AA.BB.",
               "A...B.",
               "..C...",
               ".CCC..",
               "..C..D",
               "E....."]
    direction = {"A": Z, "B": -Z, "C": X, "D": -X, "E": Z}
    lat = sf.Lattice("square", (6, 6))
    spins = np.empty((36, 3))
    for yy, row in enumerate(pattern):
        for xx, ch in enumerate(row):
            # '.' sites form a checkerboard of +-y: no two neighbouring dots are parallel
            spins[xx + 6 * yy] = direction.get(ch, Y if (xx + yy) % 2 == 0 else -Y)
    labels, sizes = A.ferromagnetic_clusters(spins, lat, threshold=0.5)
    # C (5 sites); A with E joined through the periodic boundary in y (4); B (3); D is single
    np.testing.assert_array_equal(sizes, [5, 4, 3])
    grid = labels.reshape(6, 6)
    assert {grid[2, 2], grid[3, 1], grid[3, 2], grid[3, 3], grid[4, 2]} == {0}
    assert {grid[0, 0], grid[0, 1], grid[1, 0], grid[5, 0]} == {1}
    assert {grid[0, 3], grid[0, 4], grid[1, 4]} == {2}
    assert grid[4, 5] == -1 and (labels == -1).sum() == 36 - 12
    stats = A.cluster_statistics(sizes, dim=2)
    assert stats["count"] == 3 and stats["mean_size"] == pytest.approx(4.0)
    assert stats["weighted_mean_size"] == pytest.approx(50 / 12) and stats["largest"] == 5
    assert stats["length"] == pytest.approx(2.0)


def test_connected_components_match_scipy():
    csgraph = pytest.importorskip("scipy.sparse.csgraph")
    from scipy.sparse import coo_matrix
    rng = np.random.default_rng(3)
    n = 3000
    u, v = rng.integers(0, n, 2500), rng.integers(0, n, 2500)
    roots = A.connected_components(n, u, v)
    ncomp, ref = csgraph.connected_components(coo_matrix((np.ones(u.size), (u, v)), shape=(n, n)), directed=False)
    assert len(np.unique(roots)) == ncomp
    # same partition: the map root -> scipy label is one-to-one
    pairs = np.unique(np.stack([roots, ref]), axis=1)
    assert pairs.shape[1] == ncomp
    assert (roots <= np.arange(n)).all()  # a component is named by its smallest site


# --- structure factor and correlations -----------------------------------------------------
def test_spiral_structure_factor_peaks_at_its_wavevector():
    lat = sf.Lattice("triangular", (12, 12))
    B = A.reciprocal_vectors(lat)
    q = (2 * B[0] + 3 * B[1]) / 12  # a wavevector of the periodic lattice
    sq = A.structure_factor(lat.spiral(q), lat)
    n = lat.num_sites
    # coplanar spiral: weight N/2 at +q and at -q, nothing elsewhere
    assert sq[3, 2] == pytest.approx(n / 2, rel=1e-12)
    assert sq[-3, -2] == pytest.approx(n / 2, rel=1e-12)
    assert sq.sum() == pytest.approx(n, rel=1e-12)
    grid = A.q_grid(lat)
    np.testing.assert_allclose(grid[3, 2], q, atol=1e-12)
    peaks = A.peak_wavevectors(sq, lat)
    assert min(np.linalg.norm(peaks - q, axis=1)) < 1e-9 or min(np.linalg.norm(peaks + q, axis=1)) < 1e-9


def test_structure_factor_and_correlation_against_direct_sums():
    lat = sf.Lattice("triangular", (6, 4))
    spins = lat.random_spins(seed=5)
    pos = lat.positions
    sq = A.structure_factor(spins, lat)
    grid = A.q_grid(lat)
    for idx in [(0, 0), (1, 2), (3, 5), (2, 1)]:
        f = (spins * np.exp(-1j * pos @ grid[idx])[:, None]).sum(axis=0)
        assert sq[idx] == pytest.approx((np.abs(f) ** 2).sum() / lat.num_sites, rel=1e-10)
    C = A.correlation_function(spins, lat)
    for d in [(1, 0), (2, 3), (5, 1)]:
        partner = lat.neighbor_table(torch.tensor([d]))[:, 0].numpy()
        direct = np.einsum("ia,ia->", spins, spins[partner]) / lat.num_sites
        assert C[d[1], d[0]] == pytest.approx(direct, abs=1e-12)


def test_radial_correlation_of_ordered_states():
    sq_lat = sf.Lattice("square", (8, 8))
    r, c = A.radial_correlation(sq_lat.neel(), sq_lat)
    np.testing.assert_allclose(r[:4], [0, 1, np.sqrt(2), 2], atol=1e-6)
    np.testing.assert_allclose(c[:4], [1, -1, 1, 1], atol=1e-12)
    tri = sf.Lattice("triangular", (8, 8))
    r, c = A.radial_correlation(tri.tetrahedral(), tri, normalize=False)
    # tetrahedral state: first (r = 1) and second (r = sqrt3) neighbours sit on different sublattices: S.S = -1/3
    np.testing.assert_allclose(r[:3], [0, 1, np.sqrt(3)], atol=1e-6)
    np.testing.assert_allclose(c[:3], [1, -1 / 3, -1 / 3], atol=1e-12)


def _gaussian_blob(lat, w, Q=None):
    d = lat.positions - lat.positions[lat.num_sites // 2 + lat.shape[0] // 2]
    phi = np.exp(-(d ** 2).sum(axis=1) / (2 * w ** 2))
    return phi if Q is None else phi * np.cos(d @ Q)


@pytest.mark.parametrize("Q", [None, (np.pi / 2, 0.0)])
def test_structure_factor_length_of_gaussian_peak(Q):
    # phi = exp(-r^2 / 2w^2) has S(q) ~ exp(-q^2 w^2); in 2D <|q|> = sqrt(pi) / (2w), so L_S = 4 sqrt(pi) w
    lat = sf.Lattice("square", (96, 96))
    w = 4.0
    sq = A.structure_factor(_gaussian_blob(lat, w, None if Q is None else np.array(Q)), lat)
    peaks = np.zeros((1, 2)) if Q is None else None  # the modulated blob: peaks found automatically
    assert A.structure_factor_length(sq, lat, peaks=peaks) == pytest.approx(4 * np.sqrt(np.pi) * w, rel=0.01)


def test_structure_factor_length_of_white_noise():
    # a single nonzero site: flat S(q); mean |q| over the square zone [-pi, pi]^2 is
    # 2 pi (sqrt2 + ln(1 + sqrt2)) / 6, the mean distance to the centre of a square
    lat = sf.Lattice("square", (128, 128))
    phi = np.zeros(lat.num_sites)
    phi[7] = 1.0
    sq = A.structure_factor(phi, lat)
    mean_q = 2 * np.pi * (np.sqrt(2) + np.log(1 + np.sqrt(2))) / 6
    assert A.structure_factor_length(sq, lat, peaks=[[0.0, 0.0]]) == pytest.approx(2 * np.pi / mean_q, rel=0.01)


def test_correlation_length_of_gaussian_blob():
    # the autocorrelation of exp(-r^2 / 2w^2) is exp(-r^2 / 4w^2): it falls to 1/e at r = 2w
    lat = sf.Lattice("square", (64, 64))
    r, c = A.radial_correlation(_gaussian_blob(lat, 3.0), lat)
    assert A.correlation_length(r, c) == pytest.approx(6.0, rel=0.02)
    assert np.isnan(A.correlation_length(r, np.ones_like(r)))  # never decays within r_max
    assert A.correlation_length([0, 1, 2], [1.0, 0.5, -0.5], level=0.0) == pytest.approx(1.5)


# --- growth-exponent fit -------------------------------------------------------------------
def test_power_law_fit_recovers_exponent_and_its_uncertainty():
    t = np.geomspace(1, 1000, 30)
    exact = A.fit_power_law(t, 2.0 * t ** 0.37)
    assert exact.exponent == pytest.approx(0.37, abs=1e-12)
    assert exact.prefactor == pytest.approx(2.0, rel=1e-12) and exact.stderr < 1e-12
    sigma = 0.05
    rng = np.random.default_rng(11)
    fits = [A.fit_power_law(t, 2.0 * t ** 0.37 * np.exp(sigma * rng.normal(size=t.size))) for _ in range(400)]
    n = np.array([f.exponent for f in fits])
    se = np.array([f.stderr for f in fits])
    x = np.log(t)
    predicted = sigma / np.sqrt(((x - x.mean()) ** 2).sum())
    assert n.mean() == pytest.approx(0.37, abs=3 * predicted / np.sqrt(len(fits)) + 1e-4)
    # the reported standard error matches both the theory and the actual scatter of the estimates
    assert se.mean() == pytest.approx(predicted, rel=0.05)
    assert n.std() == pytest.approx(predicted, rel=0.12)
    assert np.mean(np.abs(n - 0.37) < 2 * se) > 0.9


def test_power_law_fit_window():
    t = np.geomspace(1, 1000, 31)
    L = np.where(t < 10, t ** 0.5, 10 ** 0.5 * (t / 10) ** 0.25)  # crossover at t = 10
    late = A.fit_power_law(t, L, t_min=10, t_max=1000)
    assert late.exponent == pytest.approx(0.25, abs=1e-12) and late.num_points == 21
    assert late.t_min == pytest.approx(10) and late(1000) == pytest.approx(L[-1])
    assert A.fit_power_law(t, L, t_max=10).exponent == pytest.approx(0.5, abs=1e-12)


# --- bad input -----------------------------------------------------------------------------
def test_bad_inputs_raise_value_error():
    tri = sf.Lattice("triangular", (4, 4))
    good = tri.random_spins(0)
    with pytest.raises(ValueError, match="shape"):
        A.bond_average(good[:-1], tri)
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        A.scalar_chirality(bad, tri)
    with pytest.raises(ValueError, match="spins"):
        A.magnetization("abc", tri)
    with pytest.raises(ValueError, match="triangular"):
        A.scalar_chirality(np.tile(Z, (8, 1)), sf.Lattice("cubic", 2))
    with pytest.raises(ValueError, match="threshold"):
        A.ferromagnetic_clusters(good, tri, threshold=1.5)
    with pytest.raises(ValueError, match="min_size"):
        A.ferromagnetic_clusters(good, tri, min_size=0)
    with pytest.raises(ValueError, match="at least 3"):
        A.fit_power_law([1, 2], [1, 2])
    with pytest.raises(ValueError, match="t_max > t_min"):
        A.fit_power_law([1, 2, 3], [1, 2, 3], t_min=5, t_max=2)
    with pytest.raises(ValueError, match="L must be > 0"):
        A.fit_power_law([1, 2, 3, 4], [1, -2, 3, 4])
    with pytest.raises(ValueError, match="equal length"):
        A.fit_power_law([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="r_max"):
        A.radial_correlation(good, tri, r_max=0)
    with pytest.raises(ValueError, match="level"):
        A.correlation_length([0, 1], [1, 0], level=2)
    with pytest.raises(ValueError, match="field"):
        A.structure_factor(np.ones(5), tri)
    with pytest.raises(ValueError, match="peaks"):
        A.distance_to_peaks(tri, [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="grid shape"):
        A.structure_factor_length(np.ones((3, 3)), tri)
    with pytest.raises(ValueError, match="edge endpoints"):
        A.connected_components(4, [0], [4])


# --- trajectory analysis and the command -----------------------------------------------------
def _write_run(path, lat, frames, times):
    with DatasetWriter(path, lattice_kind=lat.kind, lattice_shape=lat.shape, num_sites=lat.num_sites,
                       method="test", model={}) as w:
        for k, (s, t) in enumerate(zip(frames, times)):
            w.append(s, np.zeros_like(s), 0.0, time=t, step=10 * k)


def _coarsening_frames(lat, times, seed=0):
    """Smoothed random vector fields whose smoothing length grows with t."""
    noise = np.random.default_rng(seed).normal(size=(3,) + tuple(lat.shape[::-1]))
    q2 = (A.q_grid(lat) ** 2).sum(-1)
    frames = []
    for t in times:
        ell = 1.0 + 0.5 * np.sqrt(t)
        f = np.fft.ifftn(np.fft.fftn(noise, axes=(1, 2)) * np.exp(-q2 * ell ** 2 / 2), axes=(1, 2)).real
        s = f.reshape(3, -1).T
        frames.append(s / np.linalg.norm(s, axis=1, keepdims=True))
    return frames


def test_analyze_run_writes_results_consistent_with_the_functions(tmp_path):
    lat = sf.Lattice("triangular", (24, 24))
    times = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    frames = _coarsening_frames(lat, times)
    run = tmp_path / "run.h5"
    _write_run(run, lat, frames, times)
    out = tmp_path / "analysis"
    res = A.analyze_run(run, out, threshold=0.9, fit_window=(1, 16), progress=False)
    last = frames[-1]
    ts = res.timeseries
    np.testing.assert_allclose(ts["time"], times)
    assert ts["bond_mean"][-1] == pytest.approx(A.bond_average(last, lat).mean(), rel=1e-12)
    assert ts["chirality_mean"][-1] == pytest.approx(A.plaquette_chirality(last, lat).mean(), abs=1e-12)
    _, sizes = A.ferromagnetic_clusters(last, lat, 0.9)
    assert ts["clusters"][-1] == len(sizes)
    # the same from the site coordinates, without the library: triangular bonds along a1, a2, a2 - a1
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    grid = last.reshape(24, 24, 3)  # [y, x]
    bonds = [(grid * np.roll(grid, shift, axis=(0, 1))).sum(-1) for shift in ((0, -1), (-1, 0), (-1, 1))]
    assert ts["bond_mean"][-1] == pytest.approx(np.mean(bonds), rel=1e-12)
    up = np.einsum("yxa,yxa->yx", grid, np.cross(np.roll(grid, -1, axis=1), np.roll(grid, -1, axis=0)))
    down = np.einsum("yxa,yxa->yx", np.roll(grid, -1, axis=1),
                     np.cross(np.roll(grid, (-1, -1), axis=(0, 1)), np.roll(grid, -1, axis=0)))
    assert ts["chirality_mean"][-1] == pytest.approx(0.5 * (up + down).mean(), abs=1e-12)
    index = np.arange(lat.num_sites).reshape(24, 24)
    ferro = [(index[b > 0.9], np.roll(index, shift, axis=(0, 1))[b > 0.9])
             for b, shift in zip(bonds, ((0, -1), (-1, 0), (-1, 1)))]
    u, v = np.concatenate([f[0] for f in ferro]), np.concatenate([f[1] for f in ferro])
    _, label = connected_components(coo_matrix((np.ones(u.size), (u, v)), shape=(576, 576)), directed=False)
    counts = np.bincount(label)
    assert ts["clusters"][-1] == np.count_nonzero(counts >= 2)
    assert ts["cluster_mean_size"][-1] == pytest.approx(counts[counts >= 2].mean(), rel=1e-12)
    assert ts["L_spin_sf"][-1] == pytest.approx(A.structure_factor_length(A.structure_factor(last, lat), lat))
    assert ts["L_spin_sf"][-1] > ts["L_spin_sf"][1]  # the domains grow
    fit = res.fits["L_spin_sf"]
    assert fit.num_points == 5 and fit.exponent > 0
    for name in ("timeseries.csv", "summary.json", "correlation.csv", "cluster_sizes.csv", "length_scales.png",
                 "clusters.png", "chirality_snapshot.png", "bond_snapshot.png", "correlation.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["growth_exponents"]["L_spin_sf"]["exponent"] == pytest.approx(fit.exponent)
    with pytest.raises(FileExistsError):
        A.analyze_run(run, out, progress=False)



@pytest.mark.parametrize("window", [(16, 1), (-2, -1), (float("nan"), 4), (1, float("inf"))])
def test_a_fit_window_that_can_hold_no_frame_is_refused_before_the_analysis(tmp_path, window):
    lat = sf.Lattice("square", (6, 6))
    run = tmp_path / "run.h5"
    _write_run(run, lat, _coarsening_frames(lat, [0.0, 1.0, 2.0, 4.0]), [0.0, 1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="fit window TMIN TMAX must be finite times with TMIN < TMAX"):
        A.analyze_run(run, tmp_path / "out", fit_window=window, progress=False)
    assert not (tmp_path / "out").exists()

@pytest.mark.parametrize("window", [(100, 200), (0.5, 0.9), (-1, 0.5)])
def test_a_fit_window_outside_the_saved_times_is_refused_naming_them(tmp_path, capsys, window):
    from spinforce.cli import main
    lat = sf.Lattice("square", (6, 6))
    run = tmp_path / "run.h5"
    _write_run(run, lat, _coarsening_frames(lat, [0.0, 1.0, 2.0, 4.0]), [0.0, 1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match=r"holds none of the analysed frame times of .*run.h5 \(t = 0 \.\. 4, 4 frames"):
        A.analyze_run(run, tmp_path / "out", fit_window=window, progress=False)
    assert not (tmp_path / "out").exists()
    # a window holding too few times for any fit is analysed, and says so
    assert main(["analyze", str(run), "--fit-window", "0.5", "1.5", "--quiet"]) == 0
    assert "no growth exponent fitted" in capsys.readouterr().out


@pytest.mark.parametrize("attribute, value, fragments", [
    ("model", "{bad", ("metadata attribute 'model' is not valid JSON",)),
    ("lattice_kind", "hexagonal", ("lattice kind must be one of ['cubic', 'square', 'triangular']", "'hexagonal'")),
    ("lattice_shape", [5, 5], ("spins have shape (frames, 36, 3)", "square (5, 5) needs (frames, 25, 3)")),
    ("spins", np.nan, ("frame 1 of", "NaN")),
    ("spins", 2.0, ("frame 1 of", "not unit vectors")),
])
def test_a_broken_run_file_is_a_one_line_error_naming_it(tmp_path, capsys, attribute, value, fragments):
    import h5py
    from spinforce.cli import main
    lat = sf.Lattice("square", (6, 6))
    times = [0.0, 1.0, 2.0, 4.0]
    good, bad = tmp_path / "good.h5", tmp_path / "broken.h5"
    for path in (good, bad):
        _write_run(path, lat, _coarsening_frames(lat, times), times)
    with h5py.File(bad, "a") as f:
        if attribute == "spins":
            f["spins"][1, 2, 0] = value
        else:
            f.attrs[attribute] = value
    trajectory_only = attribute == "spins"  # --reference reads whole trajectories: no frame number
    for argv in ([bad], [good, bad], [good, good, "--reference", bad, good]):
        assert main(["analyze", *map(str, argv), "--quiet", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "broken.h5" in err, err
        for fragment in fragments[trajectory_only and "--reference" in argv:]:
            assert fragment in err, err
    assert not (tmp_path / "out").exists()


def test_analyze_command_with_comparison(tmp_path, capsys):
    from spinforce.cli import main
    lat = sf.Lattice("square", (16, 16))
    times = [1.0, 2.0, 4.0, 8.0]
    _write_run(tmp_path / "a.h5", lat, _coarsening_frames(lat, times, seed=1), times)
    _write_run(tmp_path / "b.h5", lat, _coarsening_frames(lat, times, seed=2), times)
    assert main(["analyze", str(tmp_path / "a.h5"), "--compare", str(tmp_path / "b.h5"), "--quiet"]) == 0
    out = tmp_path / "a_analysis"
    assert (out / "correlation.png").exists()
    # the table holds this run's and the other run's C(r) of their last frames
    table = np.genfromtxt(out / "correlation_compare.csv", delimiter=",", names=True)
    assert table.dtype.names == ("r", "C_this_run", "C_other_run")
    for column, seed in (("C_this_run", 1), ("C_other_run", 2)):
        r, c = A.radial_correlation(_coarsening_frames(lat, times, seed=seed)[-1], lat, normalize=False)
        np.testing.assert_allclose(table[column], c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(table["r"], r, rtol=0, atol=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["compare"]["max_abs_difference_C"] == pytest.approx(
        np.abs(table["C_this_run"] - table["C_other_run"]).max(), abs=1e-12)
    assert "L_spin_sf" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "a.h5"), "--labels", "ML", "ED", "--overwrite", "--quiet"]) == 2
    assert "--labels names the ensembles of --compare or --reference" in capsys.readouterr().err
    before = {p.name: p.read_bytes() for p in (tmp_path / "a_analysis").iterdir()}
    assert main(["analyze", str(tmp_path / "a.h5"), "--snapshot-side", "1", "--overwrite", "--quiet"]) == 2
    assert "--snapshot-side must be >= 2 sites, got 1" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "a_analysis").iterdir()} == before  # checked up front
    with pytest.raises(ValueError, match="snapshot_side must be >= 2"):
        A.analyze_run(tmp_path / "a.h5", tmp_path / "a_analysis", snapshot_side=0, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "a_analysis").iterdir()} == before
    assert main(["analyze", str(tmp_path / "a.h5"), "--quiet"]) == 2  # results exist, no --overwrite
    assert main(["analyze", str(tmp_path / "a.h5"), "--threshold", "3", "--overwrite", "--quiet"]) == 2
    assert "threshold must be in [-1, 1)" in capsys.readouterr().err
    other = sf.Lattice("square", (8, 8))
    _write_run(tmp_path / "c.h5", other, [other.random_spins(0)] * 3, [1.0, 2.0, 3.0])
    assert main(["analyze", str(tmp_path / "a.h5"), "--compare", str(tmp_path / "c.h5"), "--overwrite",
                 "--quiet"]) == 2


def test_ensemble_analysis_averages_structure_factors(tmp_path):
    lat = sf.Lattice("square", (16, 16))
    times = [1.0, 2.0, 4.0, 8.0]
    runs = {seed: _coarsening_frames(lat, times, seed=seed) for seed in (1, 2)}
    for seed, frames in runs.items():
        _write_run(tmp_path / f"r{seed}.h5", lat, frames, times)
    ens = A.analyze_run([tmp_path / "r1.h5", tmp_path / "r2.h5"], progress=False)
    last = [runs[1][-1], runs[2][-1]]
    sq = (A.structure_factor(last[0], lat) + A.structure_factor(last[1], lat)) / 2
    assert ens.timeseries["L_spin_sf"][-1] == pytest.approx(A.structure_factor_length(sq, lat), rel=1e-12)
    chi = [A.plaquette_chirality(s, lat) for s in last]
    r, c = A.mean_radial_correlation(chi, lat, normalize=True)
    assert ens.timeseries["L_chirality_corr"][-1] == pytest.approx(A.correlation_length(r, c), rel=1e-12)
    sizes = np.concatenate([A.ferromagnetic_clusters(s, lat)[1] for s in last])
    assert ens.timeseries["clusters"][-1] == pytest.approx(len(sizes) / 2)
    # an ensemble of identical runs is the run itself
    single = A.analyze_run(tmp_path / "r1.h5", progress=False)
    import shutil
    shutil.copy(tmp_path / "r1.h5", tmp_path / "r1_copy.h5")
    twice = A.analyze_run([tmp_path / "r1.h5", tmp_path / "r1_copy.h5"], progress=False)
    for key in ("L_spin_sf", "L_chirality_sf", "L_bond_corr", "bond_mean", "cluster_mean_size"):
        np.testing.assert_allclose(twice.timeseries[key], single.timeseries[key], rtol=1e-12)
    with pytest.raises(ValueError, match="r1.h5 is given twice in one ensemble"):  # the same file, not a copy
        A.analyze_run([tmp_path / "r1.h5", tmp_path / "r2.h5", tmp_path / "r1.h5"], progress=False)
    other = sf.Lattice("square", (8, 8))
    _write_run(tmp_path / "small.h5", other, [other.random_spins(0)] * 4, times)
    with pytest.raises(ValueError, match="share one lattice"):
        A.analyze_run([tmp_path / "r1.h5", tmp_path / "small.h5"], progress=False)
    _write_run(tmp_path / "late.h5", lat, runs[2], [2 * t for t in times])
    with pytest.raises(ValueError, match="different times"):
        A.analyze_run([tmp_path / "r1.h5", tmp_path / "late.h5"], progress=False)


def test_tetrahedral_structure_factor_has_three_m_point_peaks():
    # S_i = sum_a e_a cos(M_a . r_i) / sqrt3 with orthogonal e_a: weight N/3 at each M point
    lat = sf.Lattice("triangular", (8, 8))
    sq = A.structure_factor(lat.tetrahedral(), lat)
    n = lat.num_sites
    B = A.reciprocal_vectors(lat)
    m_points = [B[0] / 2, B[1] / 2, (B[0] + B[1]) / 2]
    grid = A.q_grid(lat).reshape(-1, 2)
    for M in m_points:
        k = int(np.argmin(np.linalg.norm(grid - M, axis=1)))
        assert sq.ravel()[k] == pytest.approx(n / 3, rel=1e-12)
    assert sq.sum() == pytest.approx(n, rel=1e-12)
    # the peak star found from the maximum covers all three M points (up to reciprocal vectors)
    dq = A.distance_to_peaks(lat, A.peak_wavevectors(sq, lat))
    assert np.count_nonzero(dq.ravel() < 1e-9) == 3
    assert A.structure_factor_length(sq, lat) > 1e6  # perfect order: no width (round-off only)
