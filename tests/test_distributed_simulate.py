"""Domain-decomposed LLG (`torchrun -m spinforce simulate`, gloo): the lattice cut into slabs with
halos gives the fields and the trajectory of the undivided lattice, resumes like one process,
works for the ML and the Heisenberg provider, and bad splits are clear errors."""
from pathlib import Path

import numpy as np
import pytest
import spinforce as sf  # before torch (also in the spawned ranks)
import torch
import torch.multiprocessing as mp

from spinforce.data import read_dataset
from spinforce.distributed import reach
from spinforce.simulate import simulate
from test_distributed_training import torchrun

pytestmark = pytest.mark.usefixtures("single_thread")
MODEL = str(Path(sf.__file__).parent / "models" / "de_square.ts")
# ML fields of a padded slab against the whole lattice: the same site energies and derivatives,
# but the network's matrix products and the gradient sums run over another number of rows and
# may round differently; a trajectory of a few dozen steps stays far inside this.
TOL = 1e-12


def random_spins(n, seed):
    s = np.random.default_rng(seed).normal(size=(n, 3))
    return s / np.linalg.norm(s, axis=1, keepdims=True)


def slab_fields(make_provider, spins, shape, slabs, halo):
    """The fields of every slab from its halo provider, its halo cut here from the whole lattice's
    spins (what the exchange between ranks delivers)."""
    rows, row_sites = shape[-1] // slabs, int(np.prod(shape[:-1]))
    grid = spins.reshape(shape[::-1] + (3,))
    out = []
    for r in range(slabs):
        take = [(r * rows - halo + k) % shape[-1] for k in range(rows + 2 * halo)]
        padded = torch.from_numpy(np.ascontiguousarray(grid[take].reshape(-1, 3)))
        provider = sf._core._HaloProvider(make_provider(shape[:-1] + (rows + 2 * halo,)), rows * row_sites,
                                          halo * row_sites, lambda s: padded)
        mine = torch.from_numpy(spins[r * rows * row_sites:(r + 1) * rows * row_sites].copy())
        out.append(provider._compute(mine).fields.numpy())
    return np.concatenate(out)


def test_ml_slab_fields_need_a_halo_of_twice_the_neighbourhood():
    shape = (8, 24)
    offsets = sf.MLForceField(MODEL, sf.Lattice("square", (8, 8))).neighbor_offsets
    r = reach(offsets)
    assert r >= 1
    spins = random_spins(int(np.prod(shape)), 1)
    whole = sf.MLForceField(MODEL, sf.Lattice("square", shape)).compute(spins).fields
    make = lambda s: sf.MLForceField(MODEL, sf.Lattice("square", s))  # noqa: E731
    for slabs in (2, 4):
        got = slab_fields(make, spins, shape, slabs, 2 * r)
        np.testing.assert_allclose(got, whole, rtol=0, atol=TOL)
        print(f"{slabs} slabs: max |H(slabs) - H(whole)| = {np.abs(got - whole).max():.1e}, "
              f"bitwise: {np.array_equal(got, whole)}")
    # a field is the derivative of its neighbours' site energies, each reading its own
    # neighbourhood: a halo of one neighbourhood is not enough
    assert np.abs(slab_fields(make, spins, shape, 2, r) - whole).max() > 1e-6


def test_heisenberg_slab_fields_are_bitwise_with_a_halo_of_the_couplings_reach():
    shape = (5, 12)
    model = {"J1": -1.0, "J2": 0.3, "field": (0.1, 0.0, 0.2), "anisotropy": 0.2}
    lattice = sf.Lattice("triangular", shape)
    halo = max(reach(lattice.shell_offsets(k)) for k in (1, 2))
    assert halo == 2  # the second shell of the triangular lattice reaches two rows
    spins = random_spins(lattice.num_sites, 2)
    whole = sf.Heisenberg(lattice, **model).compute(spins)
    make = lambda s: sf.Heisenberg(sf.Lattice("triangular", s), **model)  # noqa: E731
    np.testing.assert_array_equal(slab_fields(make, spins, shape, 3, halo), whole.fields)
    assert not np.array_equal(slab_fields(make, spins, shape, 3, 1), whole.fields)


def test_site_energies_sum_to_the_energy():
    lattice = sf.Lattice("square", (8, 8))
    spins = random_spins(lattice.num_sites, 3)
    for provider in (sf.MLForceField(MODEL, lattice),
                     sf.Heisenberg(lattice, J1=1.0, J2=-0.4, field=(0.2, 0.1, -0.3), anisotropy=0.5, axis=(1, 1, 0))):
        e = provider.site_energies(spins)
        assert e.shape == (lattice.num_sites,)
        assert e.sum() == pytest.approx(provider.compute(spins).energy, rel=1e-13, abs=1e-13)
        assert np.ptp(e) > 1e-3  # per site, not the mean repeated
        t = provider.site_energies(torch.from_numpy(spins))
        np.testing.assert_array_equal(t.numpy(), e)


# --- runs on two processes ---------------------------------------------------------------------
def ml_config(out, **dynamics):
    return {"output": str(out), "lattice": {"kind": "square", "shape": [8, 12]},
            "method": {"name": "ml", "path": MODEL},
            "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": 0.05, "seed": 5, "steps": 24, "save_every": 4,
                         "initial": "random", **dynamics}}


def heisenberg_config(out):
    return {"output": str(out), "lattice": {"kind": "triangular", "shape": [5, 12]},
            "method": {"name": "heisenberg"},
            "model": {"J1": -1.0, "J2": 0.3, "field": [0.1, 0.0, 0.2], "anisotropy": 0.2},
            "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": 0.1, "seed": 7, "steps": 20, "save_every": 5,
                         "integrator": "heun", "initial": "random", "checkpoint_every": 0}}


def _rank(rank, world, store, jobs, out):
    """One rank: runs `jobs` [(name, config, keyword arguments)] in a gloo process group and
    records each outcome (its result, or its error)."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        results = {}
        for name, cfg, kwargs in jobs:
            try:
                r = simulate(cfg, progress=False, **kwargs)
                results[name] = {"rank": r.rank, "frames": r.frames, "spins": r.spins, "halo_bytes": r.halo_bytes}
            except (ValueError, FileExistsError) as err:
                results[name] = {"error": f"{type(err).__name__}: {err}"}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def on_two_ranks(tmp_path, jobs):
    mp.spawn(_rank, args=(2, tmp_path / "store", jobs, tmp_path), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


def assert_same_run(path, reference, bitwise):
    got, want = read_dataset(path), read_dataset(reference)
    np.testing.assert_array_equal(got.step, want.step)
    if bitwise:
        np.testing.assert_array_equal(got.spins, want.spins)
        np.testing.assert_array_equal(got.fields, want.fields)
    else:
        np.testing.assert_allclose(got.spins, want.spins, rtol=0, atol=TOL)
        np.testing.assert_allclose(got.fields, want.fields, rtol=0, atol=TOL)
    # the energy: the ranks' sums of their sites' energies, added up (another order of the sum)
    np.testing.assert_allclose(got.energy, want.energy, rtol=1e-13)
    assert np.abs(want.spins[-1] - want.spins[0]).max() > 0.05  # the spins moved
    return np.abs(got.spins - want.spins).max()


@pytest.mark.slow  # starts 2 processes that import torch (~15 s)
def test_two_ranks_follow_one_process_resume_and_reject_bad_splits(tmp_path):
    ml, hb = tmp_path / "ml", tmp_path / "hb"
    for d in (ml, hb):
        d.mkdir()
    # uninterrupted runs on one process
    simulate(ml_config(ml / "one.h5"), progress=False)
    simulate(heisenberg_config(hb / "one.h5"), progress=False)
    # interrupted at step 14 (between frames; checkpoint at 10) on two ranks, resumed on two;
    # interrupted on two ranks, resumed on one
    interrupted = ml_config(ml / "resumed.h5", checkpoint_every=5)
    too_thin = dict(ml_config(ml / "thin.h5"), lattice={"kind": "square", "shape": [8, 10]})
    odd = dict(heisenberg_config(hb / "odd.h5"), lattice={"kind": "triangular", "shape": [5, 9]})
    ed = dict(heisenberg_config(hb / "ed.h5"), method={"name": "ed"}, model={"J": 1.0, "filling": 0.25})
    jobs = [("ml", ml_config(ml / "two.h5"), {}),
            ("heisenberg", heisenberg_config(hb / "two.h5"), {}),
            ("first part", interrupted, {"steps": 14}),
            ("rest", interrupted, {"resume": True}),
            ("two then one", ml_config(ml / "two_then_one.h5"), {"steps": 12}),
            ("existing", ml_config(ml / "two.h5"), {}),
            ("too thin", too_thin, {}), ("odd", odd, {}), ("ed", ed, {})]
    ranks = on_two_ranks(tmp_path, jobs)
    for r, got in enumerate(ranks):
        assert got["ml"]["rank"] == r and got["ml"]["frames"] == 7
        assert (got["ml"]["spins"] is None) == (r == 1)  # the whole lattice on rank 0 alone
        # exchanges: 2 SIB stages x 24 steps, less the 5 first stages whose fields a frame had
        # just computed, plus the fields of 6 frames, their energies and the first frame's: 56,
        # each sending 2 x 6 rows (twice the model's 3) of 8 sites, 3 float64 each
        assert got["ml"]["halo_bytes"] == 56 * 2 * 6 * 8 * 3 * 8
        assert "FileExistsError" in got["existing"]["error"]
        assert "lattice.shape = (8, 10) on 2 processes gives slabs of 5 rows" in got["too thin"]["error"]
        assert "halo of 6 rows" in got["too thin"]["error"]
        assert "lattice.shape = (5, 9): its last side 9 must be divisible by the number of processes, 2" \
            in got["odd"]["error"]
        assert "method.name = 'ed' cannot run on several processes" in got["ed"]["error"]
    assert not (ml / "thin.h5").exists() and not (hb / "odd.h5").exists()
    deviation = assert_same_run(ml / "two.h5", ml / "one.h5", bitwise=False)
    print(f"ML, 2 ranks vs 1 process: max |dS| = {deviation:.1e}")
    assert_same_run(hb / "two.h5", hb / "one.h5", bitwise=True)
    assert ranks[0]["rest"]["frames"] == 8  # steps 0, 4, ..., 12, 14, 16, 20, 24
    resumed = read_dataset(ml / "resumed.h5")
    np.testing.assert_array_equal(resumed.step, [0, 4, 8, 12, 14, 16, 20, 24])
    np.testing.assert_array_equal(resumed.spins[[0, 1, 2, 3, 5, 6, 7]], read_dataset(ml / "two.h5").spins)
    rest = simulate(ml_config(ml / "two_then_one.h5"), resume=True, progress=False)
    assert rest.resumed_from == 12
    assert_same_run(ml / "two_then_one.h5", ml / "one.h5", bitwise=False)


@pytest.mark.slow  # starts 2 processes that import torch
def test_torchrun_simulate_on_two_processes(tmp_path):
    run = torchrun("simulate", heisenberg_config(tmp_path / "two.h5"), tmp_path / "run.toml")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("frames, step 20") == 1  # rank 0 alone reports
    simulate(heisenberg_config(tmp_path / "one.h5"), progress=False)
    assert_same_run(tmp_path / "two.h5", tmp_path / "one.h5", bitwise=True)
