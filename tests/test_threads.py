"""Determinism with the default thread count (the other determinism tests pin one thread):
the same run twice, and an interrupted run resumed, are bit-identical; across thread counts,
where parallel reductions add in another order, results agree to round-off (docs/dynamics.md)."""
import numpy as np
import pytest
import torch

import spinforce as sf
from spinforce.data import DatasetWriter, read_dataset
from spinforce.ml.model import build_model, export_torchscript

# Relative agreement across thread counts (docs/dynamics.md; 1 and 2 threads gave identical bits here).
ACROSS_THREADS = 1e-12


def providers(tmp_path):
    """Each engine on a lattice large enough for its parallel loops."""
    tri = sf.Lattice("triangular", (4, 4))
    sq = sf.Lattice("square", (16, 16))
    big = sf.Lattice("square", (96, 96))
    model = build_model(sq, "bond_shells", {"cutoff": 1.5, "powers": [1, 2]}, [16], "silu", "float64")
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ts = export_torchscript(model, tmp_path / "m.ts")
    return {"ed": (tri, sf.ExactDiagonalization(sf.SDModel(tri, J=2.0, filling=0.3, kT=0.05))),
            "kpm": (sq, sf.KPM(sf.SDModel(sq, J=2.0, filling=0.3, kT=0.1), moments=32, probing_distance=3)),
            "heisenberg": (big, sf.Heisenberg(big, J1=-1.0, J2=0.3, anisotropy=0.2)),
            "ml": (sq, sf.MLForceField(ts, sq))}


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    return providers(tmp_path_factory.mktemp("threads"))


@pytest.fixture
def default_threads():
    """torch's own default thread count, whatever an earlier test set."""
    n = torch.get_num_threads()
    torch.set_num_threads(max(2, torch.get_num_threads()))
    yield torch.get_num_threads()
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["ed", pytest.param("kpm", marks=pytest.mark.slow), "heisenberg", "ml"])
def test_runs_are_bit_identical_with_several_threads(engines, name, tmp_path, default_threads):
    assert default_threads >= 2
    lat, provider = engines[name]
    start = lat.random_spins(1)
    kw = dict(dt=0.05, alpha=0.2, kT=0.05, seed=4)
    a = provider.compute(start)
    b = provider.compute(start)
    np.testing.assert_array_equal(a.fields, b.fields)
    assert a.energy == b.energy
    whole = sf.LLG(provider, **kw).run(start, 4)
    np.testing.assert_array_equal(sf.LLG(provider, **kw).run(start, 4), whole)
    # interrupted after 2 steps, frames in a file, resumed from the last frame by a new integrator
    with DatasetWriter(tmp_path / "r.h5", lattice_kind=lat.kind, lattice_shape=lat.shape, num_sites=lat.num_sites,
                       method=name, model={}) as w:
        sf.LLG(provider, **kw).run(start, 2, every=1, writer=w)
        last = w.last_frame()
        resumed = sf.LLG(provider, **kw).run(last["spins"], 2, start_step=int(last["step"]))
    np.testing.assert_array_equal(resumed, whole)
    assert read_dataset(tmp_path / "r.h5").num_frames == 2


@pytest.mark.parametrize("name", ["ed", pytest.param("kpm", marks=pytest.mark.slow), "heisenberg", "ml"])
def test_one_thread_and_several_threads_agree_to_round_off(engines, name, default_threads):
    lat, provider = engines[name]
    start = lat.random_spins(2)
    kw = dict(dt=0.05, alpha=0.2, kT=0.05, seed=4)
    many = sf.LLG(provider, **kw).run(start, 3)
    result_many = provider.compute(many)
    torch.set_num_threads(1)
    one = sf.LLG(provider, **kw).run(start, 3)
    result_one = provider.compute(one)
    np.testing.assert_allclose(one, many, rtol=0, atol=ACROSS_THREADS)
    scale = np.abs(result_one.fields).max()
    np.testing.assert_allclose(result_many.fields, result_one.fields, rtol=0, atol=ACROSS_THREADS * scale)
    # energies are sums over sites: per-thread partial sums reorder them
    assert result_many.energy == pytest.approx(result_one.energy, rel=ACROSS_THREADS)
