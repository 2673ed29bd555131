"""Ensemble comparison of quench runs (spinforce.analysis.ensemble), checked against direct sums."""
import json

import numpy as np
import pytest

from spinforce import Lattice
from spinforce.analysis.ensemble import compare_ensembles, ensemble_observables
from spinforce.data import DatasetWriter


def _write_run(path, lattice, frames):
    """A run file of the given spin frames saved at t = 0, 1, 2, ... (fields and energies unused)."""
    with DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="test", model={}) as w:
        for k, s in enumerate(frames):
            w.append(s, np.zeros_like(s), 0.0, time=float(k), step=k, trajectory=0)
    return path


def _noisy_ferromagnets(lattice, noise, frames, seed):
    """Frames of a ferromagnet along z with Gaussian noise of width noise[k] at frame k."""
    rng = np.random.default_rng(seed)
    out = []
    for w in noise[:frames]:
        s = np.array([0.0, 0.0, 1.0]) + w * rng.normal(size=(lattice.num_sites, 3))
        out.append(s / np.linalg.norm(s, axis=1, keepdims=True))
    return out


def _direct_bond_average(lattice, s):
    """Mean of S_i . S_j over nearest-neighbour bonds, the bonds found from integer coordinates
    (square lattice: periodic displacements (+-1, 0), (0, +-1))."""
    xy = np.asarray(lattice.coordinates)[:, :2].astype(int)
    L = np.asarray(lattice.shape)
    site = {tuple(c): i for i, c in enumerate(xy)}
    total, count = 0.0, 0
    for i, c in enumerate(xy):
        for d in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            j = site[tuple((c + d) % L)]
            total += s[i] @ s[j]
            count += 1
    return total / count


@pytest.fixture
def runs(tmp_path):
    lattice = Lattice("square", (6, 6))
    noise = np.linspace(1.5, 0.2, 5)
    ref = [_write_run(tmp_path / f"ref{k}.h5", lattice, _noisy_ferromagnets(lattice, noise, 5, k)) for k in range(6)]
    same = [_write_run(tmp_path / f"same{k}.h5", lattice, _noisy_ferromagnets(lattice, noise, 5, 100 + k))
            for k in range(6)]
    colder = [_write_run(tmp_path / f"cold{k}.h5", lattice, _noisy_ferromagnets(lattice, 0.5 * noise, 5, 200 + k))
              for k in range(6)]
    return lattice, ref, same, colder


def test_observables_equal_direct_sums(runs):
    from spinforce.data import read_dataset
    lattice, ref, _, _ = runs
    obs = ensemble_observables(ref)
    per_run = np.array([[_direct_bond_average(lattice, s) for s in read_dataset(p).spins] for p in ref])
    assert obs["runs"] == 6 and obs["time"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(obs["observables"]["bond"]["mean"], per_run.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(obs["observables"]["bond"]["stderr"], per_run.std(axis=0, ddof=1) / np.sqrt(6),
                               rtol=0, atol=1e-12)
    # C(r) at the last time: C(0) = 1 for unit spins, C(1) = the bond average of that frame
    c = obs["correlation"]
    assert c["r"][0] == 0.0 and c["r"][1] == 1.0
    np.testing.assert_allclose(c["mean"][0], 1.0, atol=1e-12)
    np.testing.assert_allclose(c["mean"][1], per_run[:, -1].mean(), atol=1e-12)


def test_same_physics_agrees_other_physics_does_not(runs, tmp_path):
    _, ref, same, colder = runs
    agree = compare_ensembles(ref, same, out=tmp_path / "agree")
    # independent ensembles of the same distribution: within 2 standard errors of the difference
    # at most times (each time misses with probability ~5 %)
    assert agree["agreement"]["bond"]["fraction_within"] >= 0.8, agree["agreement"]["bond"]
    assert agree["agreement"]["bond"]["max_deviation_in_stderr"] < 3.5
    assert (tmp_path / "agree.png").stat().st_size > 1000
    differ = compare_ensembles(ref, colder)
    # half the noise: a clearly higher bond average, many standard errors away once ordered
    assert differ["agreement"]["bond"]["max_deviation_in_stderr"] > 5
    assert not differ["agreement"]["bond"]["all_within"]
    json.dumps(agree)  # the result is plain JSON


def test_analyze_command_compares_with_a_reference_ensemble(runs, tmp_path, capsys):
    """`spinforce analyze RUNS --reference REFS` writes the comparison of compare_ensembles and says
    how many times agree; a reference of one run is refused before anything is written."""
    from spinforce.cli import main
    _, ref, same, colder = runs
    out = tmp_path / "cmp"
    args = ["analyze", *map(str, colder), "--reference", *map(str, ref), "--out", str(out), "--quiet"]
    assert main(args + ["--labels", "ML", "ED"]) == 0
    saved = json.loads((out / "ensembles.json").read_text())
    direct = compare_ensembles(ref, colder)
    assert saved["labels"] == ["ED", "ML"] and saved["reference_runs"] == [str(p) for p in ref]
    assert saved["agreement"]["bond"]["within"] == direct["agreement"]["bond"]["within"]
    assert (out / "ensembles.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    within = sum(direct["agreement"]["bond"]["within"])
    assert f"bond         {within} of 5 saved times" in printed
    lone = tmp_path / "lone"
    assert main(["analyze", *map(str, same), "--reference", str(ref[0]), "--out", str(lone), "--quiet"]) == 2
    assert "at least 2 runs" in capsys.readouterr().err and not lone.exists()
    # the same file twice (by another name) in one ensemble: refused, naming it
    alias = str(ref[0].parent / ".." / ref[0].parent.name / ref[0].name)
    assert main(["analyze", *map(str, same), "--reference", str(ref[0]), alias, "--out", str(lone), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{alias} is given twice in one ensemble (also as {ref[0]})" in err and not lone.exists()
    # --overwrite replaces the comparison with the rest of the analysis
    assert main(args + ["--overwrite"]) == 0 and json.loads((out / "ensembles.json").read_text())["labels"] == [
        "reference", "runs"]


def test_triangular_chirality_and_bad_input(tmp_path):
    lattice = Lattice("triangular", (6, 6))
    noise = np.full(3, 0.8)
    ref = [_write_run(tmp_path / f"t{k}.h5", lattice, _noisy_ferromagnets(lattice, noise, 3, k)) for k in range(3)]
    obs = ensemble_observables(ref)
    assert "chirality" in obs["observables"]
    assert all(0 < m < 1 for m in obs["observables"]["chirality"]["mean"])
    with pytest.raises(ValueError, match="at least 2 runs"):
        ensemble_observables(ref[:1])
    square = _write_run(tmp_path / "sq.h5", Lattice("square", (6, 6)),
                        _noisy_ferromagnets(Lattice("square", (6, 6)), noise, 3, 0))
    with pytest.raises(ValueError, match="one lattice"):
        ensemble_observables(ref + [square])


def test_values_equal_by_construction_agree_despite_rounding():
    """C(0) = 1 in every run of both ensembles, up to rounding, with a zero standard error: that
    point agrees and counts as zero standard errors (not 1e-16 / 0)."""
    from spinforce.analysis.ensemble import _agreement
    ref = {"mean": [1.0 - 2e-16, 0.50], "stderr": [0.0, 0.1]}
    model = {"mean": [1.0, 0.55], "stderr": [0.0, 0.1]}
    a = _agreement(model, ref, 2.0)
    assert a["within"] == [True, True] and a["all_within"]
    assert a["max_deviation_in_reference_stderr"] == pytest.approx(0.5)
    assert a["max_deviation_in_stderr"] == pytest.approx(0.05 / np.sqrt(0.02))
    far = _agreement({"mean": [1.0, 0.9], "stderr": [0.0, 0.1]}, ref, 2.0)
    assert far["within"] == [True, False]


def test_mean_stderr_along_an_axis_and_with_one_sample():
    from spinforce.analysis import mean_stderr
    v = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 0.0]])          # 2 samples of 3 values; and 3 samples of 2
    np.testing.assert_allclose(mean_stderr(v), [1.0, 0.0, 2.0], rtol=1e-14)  # |a - b| / 2 for two samples
    np.testing.assert_allclose(mean_stderr(v, axis=1), [np.std([1, 2, 4], ddof=1), np.std([3, 2, 0], ddof=1)]
                               / np.sqrt(3), rtol=1e-14)
    assert np.isnan(mean_stderr(v[:1])).all() and mean_stderr(v[:1]).shape == (3,)
