"""The locality floor against a direct computation, and the `spinforce locality` command."""
import itertools
import json

import numpy as np
import pytest

import spinforce as sf
from spinforce import cli
from spinforce.data import DatasetWriter
from spinforce.locality import locality_floor, site_distances

pytestmark = pytest.mark.usefixtures("single_thread")


def brute_distances(lattice, i):
    """Shortest periodic distance by trying every image of every site."""
    A = lattice.primitive_vectors.numpy()
    L = np.asarray(lattice.shape)
    c = lattice.coordinates
    best = np.full(len(c), np.inf)
    for shift in itertools.product((-1, 0, 1), repeat=lattice.dim):
        r = (c - c[i] + np.asarray(shift) * L) @ A
        best = np.minimum(best, np.linalg.norm(r, axis=1))
    return best


@pytest.mark.parametrize("kind,shape", [("square", (6, 5)), ("triangular", (6, 6))])
def test_site_distances(kind, shape):
    lat = sf.Lattice(kind, shape)
    for i in (0, 7, lat.num_sites - 1):
        np.testing.assert_allclose(site_distances(lat, i), brute_distances(lat, i), atol=1e-12)


def noisy_ferromagnets(lattice, count, seed):
    rng = np.random.default_rng(seed)
    s = lattice.ferromagnetic() + 0.8 * rng.normal(size=(count, lattice.num_sites, 3))
    return s / np.linalg.norm(s, axis=2, keepdims=True)


def test_floor_matches_direct_computation():
    lat = sf.Lattice("square", (6, 6))
    S = noisy_ferromagnets(lat, 3, seed=1)
    J, kT, filling = 3.0, 0.1, 0.4
    cutoffs = [1.0, 2.0, 10.0]  # 10 covers the whole lattice
    res = locality_floor(lat, S, cutoffs, J=J, kT=kT, filling=filling, sites=2, replacements=2, seed=5,
                         progress=False)
    mu = res["mu"]
    models = {"mu": sf.SDModel(lat, J=J, kT=kT, mu=mu), "filling": sf.SDModel(lat, J=J, kT=kT, filling=filling)}
    for ens, model in models.items():
        ed = sf.ExactDiagonalization(model)
        rms = np.sqrt(np.mean([np.sum(np.cross(s, ed.compute(s).fields) ** 2, axis=1) for s in S]))
        expected = []
        for rc in cutoffs:
            variances = []
            for smp in res["samples"]:
                s, i = S[smp["state"]], smp["site"]
                far = brute_distances(lat, i) > rc
                torques = [np.cross(s[i], ed.compute(s).fields[i])]
                for d in smp["donors"]:
                    mixed = np.where(far[:, None], S[d], s)
                    torques.append(np.cross(mixed[i], ed.compute(mixed).fields[i]))
                torques = np.asarray(torques)
                variances.append(np.sum((torques - torques.mean(0)) ** 2) / (len(torques) - 1))
            expected.append(np.sqrt(np.mean(variances)) / rms)
        got = res["ensembles"][ens]
        assert got["torque_rms"] == pytest.approx(rms, rel=1e-10)
        np.testing.assert_allclose(got["floor"], expected, rtol=1e-9, atol=1e-14)
        assert got["floor"][2] < 1e-12           # nothing beyond rc: nothing a local model misses
        assert got["floor"][0] > got["floor"][1] > 0.0
    assert len(res["samples"]) == 3 * 2 and all(s["donors"] and s["state"] not in s["donors"] for s in res["samples"])


def test_command_writes_json_and_png(tmp_path):
    lat = sf.Lattice("square", (4, 4))
    S = noisy_ferromagnets(lat, 3, seed=2)
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=3.0, filling=0.4, kT=0.1))
    with DatasetWriter(tmp_path / "states.h5", lattice_kind="square", lattice_shape=(4, 4), num_sites=16,
                       method="ed", model={}) as w:
        for s in S:
            r = ed.compute(s)
            w.append(s, r.fields, r.energy)
    (tmp_path / "loc.toml").write_text(
        'data = "states.h5"\noutput = "loc"\n[model]\nJ = 3.0\nkT = 0.1\nfilling = 0.4\n'
        '[analysis]\ncutoffs = [1.0, 5.0]\nsites = 1\nreplacements = 2\n')
    argv = ["locality", str(tmp_path / "loc.toml"), "--no-progress"]
    assert cli.main(argv) == 0
    out = json.loads((tmp_path / "loc" / "locality.json").read_text())
    assert (tmp_path / "loc" / "locality.png").stat().st_size > 0
    assert out["ensembles"]["mu"]["floor"][1] < 1e-12 and out["ensembles"]["filling"]["floor"][0] > 0
    assert out["fixed_mu"]["filling"] == 0.4
    assert cli.main(argv) == 2                    # results are not replaced without --overwrite
    assert cli.main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize("override,match", [("analysis.cutoffs=[]", "cutoffs"), ("analysis.sites=0", "sites"),
                                            ("analysis.ensembles=['x']", "ensembles"), ("model.bogus=1", "bogus"),
                                            ("analysis.from_time='late'", "from_time")])
def test_bad_config(tmp_path, override, match):
    (tmp_path / "loc.toml").write_text('data = "x.h5"\noutput = "loc"\n[model]\nJ = 3.0\nfilling = 0.4\n')
    from spinforce.locality import load_config
    with pytest.raises(ValueError, match=match):
        load_config(tmp_path / "loc.toml", [override])
