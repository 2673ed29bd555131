"""Analysis against configurations whose observables are known in closed form: ferromagnetic
stripes and slabs (square and cubic), spirals; and the options of `spinforce analyze`."""
import csv
import json

import numpy as np
import pytest

import spinforce as sf
from spinforce import analysis as A
from spinforce.analysis import plots
from spinforce.cli import main
from spinforce.data import DatasetWriter

Z = np.array([0.0, 0.0, 1.0])


def stripes(lattice, width, direction=Z):
    """Domains of width `width` along x, alternately +direction and -direction."""
    x = lattice.coordinates[:, 0]
    return np.where(((x // width) % 2 == 0)[:, None], direction, -direction)


def stripe_correlation(lattice, width, r_max):
    """C(r) of `stripes` by hand: C(d) depends on dx only, a triangle wave of period 2 width,
    averaged over the displacements of each minimum-image length."""
    A_ = lattice.primitive_vectors.numpy()
    shape = np.array(lattice.shape)
    grids = np.meshgrid(*[np.arange(L) for L in shape], indexing="ij")
    d = np.stack([g.ravel() for g in grids], axis=1)
    images = np.stack(np.meshgrid(*[[-1, 0, 1]] * lattice.dim, indexing="ij"), -1).reshape(-1, lattice.dim)
    r = np.min([np.linalg.norm((d + k * shape) @ A_, axis=1) for k in images], axis=0)
    phase = d[:, 0] % (2 * width)
    c = 1 - 2 * np.minimum(phase, 2 * width - phase) / width
    keep = r <= r_max + 1e-9
    radii = np.unique(np.round(r[keep], 6))
    return radii, np.array([c[keep][np.round(r[keep], 6) == v].mean() for v in radii])


def write_run(path, lat, frames, times):
    with DatasetWriter(path, lattice_kind=lat.kind, lattice_shape=lat.shape, num_sites=lat.num_sites,
                       method="test", model={}) as w:
        for k, (s, t) in enumerate(zip(frames, times)):
            w.append(s, np.zeros_like(s), -float(k), time=t, step=100 * k)


# --- single configurations -----------------------------------------------------------------------
@pytest.mark.parametrize("kind, shape", [("square", (16, 6)), ("cubic", (12, 4, 3))])
def test_stripe_domains_bond_average_and_clusters(kind, shape):
    lat = sf.Lattice(kind, shape)
    z = 2 * lat.dim
    for width in (2, 3, 6):
        if shape[0] % (2 * width):
            continue
        s = stripes(lat, width)
        x = lat.coordinates[:, 0]
        at_wall = (x % width == 0) | (x % width == width - 1)
        # a site beside a wall has one antiparallel bond of z
        np.testing.assert_allclose(A.bond_average(s, lat), np.where(at_wall, (z - 2) / z, 1.0), rtol=0, atol=1e-15)
        assert A.bond_average(s, lat).mean() == pytest.approx(1 - 4 / (z * width), abs=1e-14)
        labels, sizes = A.ferromagnetic_clusters(s, lat, threshold=0.9)
        area = lat.num_sites // shape[0]
        np.testing.assert_array_equal(sizes, [width * area] * (shape[0] // width))
        for k in range(shape[0] // width):  # one label per stripe
            assert len(np.unique(labels[x // width == k])) == 1


def test_cubic_spiral_structure_factor_and_bonds():
    lat = sf.Lattice("cubic", (8, 4, 6))
    q = 2 * np.pi * np.array([3 / 8, 1 / 4, 1 / 6])
    s = lat.spiral(q, axis_normal=(1.0, 1.0, 0.0))
    sq = A.structure_factor(s, lat)
    n = lat.num_sites
    assert sq.shape == (6, 4, 8)  # axes (z, y, x)
    assert sq[1, 1, 3] == pytest.approx(n / 2, rel=1e-12) and sq[-1, -1, -3] == pytest.approx(n / 2, rel=1e-12)
    assert sq.sum() == pytest.approx(n, rel=1e-12)
    # S_i.S_j = cos(q.delta) for the bond along delta
    deltas = lat.shell_offsets(1).numpy() @ lat.primitive_vectors.numpy()
    expected = np.tile(np.cos(deltas @ q), (n, 1))
    np.testing.assert_allclose(A.bond_products(s, lat), expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(A.bond_average(s, lat), expected.mean(axis=1), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="triangular"):
        A.plaquette_chirality(s, lat)


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_bond_products_of_spirals_and_stacks(kind):
    lat = sf.Lattice(kind, (8, 6))
    B = A.reciprocal_vectors(lat)
    frames = np.stack([lat.spiral(q) for q in (B[0] / 8, 3 * B[0] / 8 + B[1] / 6)])
    deltas = lat.shell_offsets(1).numpy() @ lat.primitive_vectors.numpy()
    got = A.bond_products(frames, lat)
    assert got.shape == (2, lat.num_sites, 2 * lat.dim + (2 if kind == "triangular" else 0))
    for k, q in enumerate((B[0] / 8, 3 * B[0] / 8 + B[1] / 6)):
        np.testing.assert_allclose(got[k], np.tile(np.cos(deltas @ q), (lat.num_sites, 1)), rtol=0, atol=1e-13)


def test_magnetization_by_hand():
    lat = sf.Lattice("square", (4, 2))
    s = np.tile(Z, (8, 1))
    s[:2] = [1.0, 0.0, 0.0]
    s[2] = [0.0, -1.0, 0.0]
    np.testing.assert_allclose(A.magnetization(s, lat), [2 / 8, -1 / 8, 5 / 8], rtol=0, atol=1e-15)
    stack = np.stack([s, -s, lat.neel()])
    np.testing.assert_allclose(A.magnetization(stack, lat), [[2 / 8, -1 / 8, 5 / 8], [-2 / 8, 1 / 8, -5 / 8],
                                                             [0, 0, 0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(A.magnetization(s), A.magnetization(s, lat), rtol=0, atol=0)  # lattice optional
    with pytest.raises(ValueError, match="shape"):
        A.magnetization(s[:5], lat)


# --- whole runs --------------------------------------------------------------------------------
# stripe width w = 2 sqrt(t): clusters of w L_y sites, L_cluster = (w L_y)^(1/2) ~ t^(1/4)
TIMES = [1.0, 4.0, 16.0, 64.0, 256.0]
WIDTHS = [2, 4, 8, 16, 32]


@pytest.fixture
def stripe_runs(tmp_path):
    lat = sf.Lattice("square", (64, 4))
    write_run(tmp_path / "a.h5", lat, [stripes(lat, w) for w in WIDTHS], TIMES)
    write_run(tmp_path / "b.h5", lat, [stripes(lat, w) for w in (2, 2, 2, 2, 4)], TIMES)
    return lat, tmp_path


@pytest.mark.slow
def test_analyze_run_of_growing_stripes_matches_closed_forms(stripe_runs):
    lat, d = stripe_runs
    res = A.analyze_run(d / "a.h5", d / "out", fit_window=(1, 256), progress=False)
    ts = res.timeseries
    w = np.array(WIDTHS, float)
    np.testing.assert_allclose(ts["time"], TIMES)
    np.testing.assert_array_equal(ts["step"], [0, 100, 200, 300, 400])
    np.testing.assert_allclose(ts["energy"], [0, -1, -2, -3, -4])
    np.testing.assert_allclose(ts["bond_mean"], 1 - 1 / w, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ts["clusters"], 64 / w)
    np.testing.assert_allclose(ts["cluster_mean_size"], 4 * w)
    np.testing.assert_allclose(ts["cluster_largest"], 4 * w)
    np.testing.assert_allclose(ts["L_cluster"], np.sqrt(4 * w), rtol=1e-14)
    np.testing.assert_allclose([ts["m_abs"], ts["chirality_abs_mean"]], 0, atol=1e-15)
    assert np.isnan(ts["L_chirality_sf"]).all()  # collinear spins: no chirality, no chirality length
    fit = res.fits["L_cluster"]
    assert fit.exponent == pytest.approx(0.25, abs=1e-12) and fit.prefactor == pytest.approx(np.sqrt(8), rel=1e-12)
    r, c = stripe_correlation(lat, 32, 2.0)
    np.testing.assert_allclose(res.correlation[1], c, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.correlation[0], r, rtol=0, atol=1e-6)
    # the CSV holds the same numbers
    rows = list(csv.DictReader(open(d / "out" / "timeseries.csv")))
    np.testing.assert_allclose([float(row["bond_mean"]) for row in rows], 1 - 1 / w, rtol=0, atol=1e-14)
    sizes = list(csv.DictReader(open(d / "out" / "cluster_sizes.csv")))
    assert [(int(row["frame"]), int(row["size"]), int(row["count"])) for row in sizes] == [
        (k, 4 * wk, 64 // wk) for k, wk in enumerate(WIDTHS)]


@pytest.mark.slow
def test_analyze_command_options(stripe_runs, monkeypatch, capsys):
    lat, d = stripe_runs
    shown = []
    original = plots.display_triangulation

    def spy(lattice, max_side=128):
        shown.append(max_side)
        return original(lattice, max_side)

    monkeypatch.setattr(plots, "display_triangulation", spy)
    out = d / "cli"
    assert main(["analyze", str(d / "a.h5"), "--out", str(out), "--fit-window", "3", "100",
                 "--compare", str(d / "b.h5"), "--labels", "ML", "ED", "--snapshot-side", "5", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fit_window"] == [3.0, 100.0] and summary["frames_analysed"] == 5
    fit = summary["growth_exponents"]["L_cluster"]
    assert fit["num_points"] == 3 and fit["exponent"] == pytest.approx(0.25, abs=1e-12)  # t = 4, 16, 64
    assert "0.2500" in capsys.readouterr().out
    assert shown == [5, 5]  # both snapshots cropped to 5 x 5 sites
    with open(out / "correlation_compare.csv") as f:
        table = list(csv.reader(f))
    assert table[0] == ["r", "C_ML", "C_ED"]
    values = np.array(table[1:], float)
    r, c_this = stripe_correlation(lat, 32, 2.0)
    _, c_other = stripe_correlation(lat, 4, 2.0)
    np.testing.assert_allclose(values[:, 0], r, atol=1e-6)
    np.testing.assert_allclose(values[:, 1], c_this, rtol=0, atol=1e-12)
    np.testing.assert_allclose(values[:, 2], c_other, rtol=0, atol=1e-12)
    assert summary["compare"]["max_abs_difference_C"] == pytest.approx(np.abs(c_this - c_other).max(), abs=1e-12)
    # every 2nd frame, the last included; the default window then spans all of them (too few in the last decade)
    assert main(["analyze", str(d / "a.h5"), "--out", str(d / "every"), "--every", "2", "--quiet"]) == 0
    rows = list(csv.DictReader(open(d / "every" / "timeseries.csv")))
    assert [int(row["frame"]) for row in rows] == [0, 2, 4]
    summary = json.loads((d / "every" / "summary.json").read_text())
    assert summary["fit_window"] == [1.0, 256.0] and summary["growth_exponents"]["L_cluster"]["num_points"] == 3
    assert shown == [5, 5, 128, 128]


@pytest.mark.slow
def test_analyze_run_on_the_cubic_lattice(tmp_path):
    lat = sf.Lattice("cubic", (16, 3, 3))
    widths = [2, 4, 8]
    write_run(tmp_path / "c.h5", lat, [stripes(lat, w) for w in widths], [1.0, 8.0, 64.0])
    res = A.analyze_run(tmp_path / "c.h5", tmp_path / "out", fit_window=(1, 64), progress=False)
    ts = res.timeseries
    w = np.array(widths, float)
    np.testing.assert_allclose(ts["bond_mean"], 1 - 2 / (3 * w), rtol=0, atol=1e-14)
    np.testing.assert_allclose(ts["cluster_mean_size"], 9 * w)
    np.testing.assert_allclose(ts["L_cluster"], (9 * w) ** (1 / 3), rtol=1e-14)
    assert res.fits["L_cluster"].exponent == pytest.approx(1 / 9, abs=1e-12)  # w ~ t^(1/3)
    assert np.isnan(ts["chirality_mean"]).all() and np.isnan(ts["L_chirality_sf"]).all()
    r, c = stripe_correlation(lat, 8, 1.5)
    np.testing.assert_allclose(res.correlation[1], c, rtol=0, atol=1e-12)
    assert (tmp_path / "out" / "length_scales.png").stat().st_size > 0
    assert not (tmp_path / "out" / "chirality_snapshot.png").exists()  # no planar snapshot in 3-D
