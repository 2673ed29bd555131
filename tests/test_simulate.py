"""spinforce simulate: config checks, frames, checkpoint/resume, OVF export."""
import numpy as np
import pytest

import spinforce as sf
from spinforce.data import read_dataset
from spinforce.ovf import read_ovf, write_ovf
from spinforce.simulate import load_config, simulate


def _config(tmp_path, **changes):
    cfg = {
        "output": str(tmp_path / "run.h5"),
        "lattice": {"kind": "triangular", "shape": [12, 12]},
        "method": {"name": "heisenberg"},
        "model": {"J1": -1.0, "anisotropy": 0.1},
        "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": 0.05, "seed": 3, "steps": 40, "save_every": 10,
                     "checkpoint_every": 15},
    }
    for key, value in changes.items():
        if "__" in key:
            section, name = key.split("__")
            cfg[section][name] = value
        else:
            cfg[key] = value
    return cfg


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    whole = simulate(_config(tmp_path / "a"), progress=False)
    assert whole.frames == 5  # steps 0, 10, 20, 30, 40
    cfg = _config(tmp_path / "b")
    part = simulate(cfg, steps=27, progress=False)  # stops between frames: the last frame is step 27
    assert part.frames == 4
    rest = simulate(cfg, resume=True, progress=False)
    assert rest.resumed_from == 27 and rest.frames == 6
    a = read_dataset(tmp_path / "a" / "run.h5")
    b = read_dataset(tmp_path / "b" / "run.h5")
    np.testing.assert_array_equal(a.step, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(b.step, [0, 10, 20, 27, 30, 40])
    b = read_dataset(tmp_path / "b" / "run.h5", frames=[0, 1, 2, 4, 5])
    np.testing.assert_allclose(a.time, 0.05 * a.step, rtol=1e-14)
    # the noise of step n depends only on (seed, n, site): bit-identical continuation
    np.testing.assert_array_equal(b.spins, a.spins)
    np.testing.assert_array_equal(b.energy, a.energy)
    np.testing.assert_array_equal(rest.spins, whole.spins)
    assert np.allclose(np.linalg.norm(a.spins, axis=-1), 1.0, atol=1e-12)
    # an unchanged run file is never replaced without asking
    with pytest.raises(FileExistsError):
        simulate(cfg, progress=False)


def test_zero_temperature_quench_lowers_the_energy_and_writes_ovf(tmp_path):
    cfg = _config(tmp_path, dynamics__kT=0.0, dynamics__steps=30, ovf=True, dynamics__checkpoint_every=0)
    result = simulate(cfg, progress=False)
    data = read_dataset(result.path)
    assert np.all(np.diff(data.energy) < 0)  # Gilbert damping only dissipates at kT = 0
    # the stored fields are the provider's fields of the stored spins
    lat = sf.Lattice("triangular", (12, 12))
    ref = sf.Heisenberg(lat, J1=-1.0, anisotropy=0.1).compute(data.spins[-1])
    np.testing.assert_allclose(data.fields[-1], ref.fields, atol=1e-12)
    files = sorted((tmp_path / "run_ovf").glob("*.ovf"))
    assert [f.name for f in files] == [f"frame_{k:09d}.ovf" for k in (0, 10, 20, 30)]
    values, header = read_ovf(files[-1])
    np.testing.assert_array_equal(values, data.spins[-1])
    assert header["xnodes"] == "12" and header["valuedim"] == "3"


def test_ovf_roundtrip_and_no_overwrite(tmp_path):
    lat = sf.Lattice("cubic", (3, 2, 2))
    spins = lat.random_spins(4)
    path = write_ovf(tmp_path / "f.ovf", spins, lat, time=1.5)
    values, header = read_ovf(path)
    np.testing.assert_array_equal(values, spins)
    assert (header["xnodes"], header["ynodes"], header["znodes"]) == ("3", "2", "2")
    assert path.read_text().startswith("# OOMMF OVF 2.0\n")
    with pytest.raises(FileExistsError):
        write_ovf(path, spins, lat)
    with pytest.raises(ValueError, match="shape"):
        write_ovf(tmp_path / "g.ovf", spins[:-1], lat)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        load_config(_config(tmp_path, dynamics__dtt=0.1))
    with pytest.raises(ValueError, match="method.name"):
        load_config(_config(tmp_path, method__name="dft"))
    cfg = _config(tmp_path)
    del cfg["dynamics"]["dt"]
    with pytest.raises(ValueError, match=r"\[dynamics\] needs the key 'dt'"):
        load_config(cfg)
    with pytest.raises(ValueError, match="dynamics.save_every"):
        load_config(_config(tmp_path, dynamics__save_every=0))
    with pytest.raises(ValueError, match="dynamics.initial"):
        load_config(_config(tmp_path, dynamics__initial="spiral"))
    with pytest.raises(ValueError, match="unknown key"):
        load_config(_config(tmp_path, model__J=2.0))  # an electron-model key for the Heisenberg method
    ed = _config(tmp_path, method={"name": "ed"}, model={"J": 2.0})
    with pytest.raises(ValueError, match="exactly one of mu and filling"):
        load_config(ed)
    with pytest.raises(ValueError, match="alpha"):
        simulate(_config(tmp_path, dynamics__alpha=-1.0), progress=False)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_simulate_and_analyze_commands(tmp_path, capsys):
    from spinforce.cli import main
    (tmp_path / "quench.toml").write_text(
        'output = "quench.h5"\n'
        '[lattice]\nkind = "square"\nshape = [16, 16]\n'
        '[method]\nname = "heisenberg"\n[model]\nJ1 = -1.0\n'
        '[dynamics]\ndt = 0.05\nalpha = 0.2\nkT = 0.02\nsteps = 40\nsave_every = 10\ncheckpoint_every = 20\n')
    assert main(["simulate", str(tmp_path / "quench.toml"), "--quiet"]) == 0
    assert "spin-steps/s" in capsys.readouterr().out
    assert main(["simulate", str(tmp_path / "quench.toml"), "--quiet"]) == 2  # exists: no silent overwrite
    assert main(["simulate", str(tmp_path / "quench.toml"), "--resume", "--set", "dynamics.steps=60", "--quiet"]) == 0
    data = read_dataset(tmp_path / "quench.h5")
    assert data.num_frames == 7
    # the frames are the library's LLG from the default random start (seed 0), config values applied
    lat = sf.Lattice("square", (16, 16))
    heis = sf.Heisenberg(lat, J1=-1.0)
    np.testing.assert_array_equal(data.spins[0], lat.random_spins(0))
    llg = sf.LLG(heis, dt=0.05, alpha=0.2, kT=0.02, seed=0)
    spins = data.spins[0]
    for k in range(1, 7):
        spins = llg.run(spins, 10)
        np.testing.assert_allclose(data.spins[k], spins, rtol=0, atol=1e-13)
        assert data.energy[k] == pytest.approx(heis.compute(spins).energy, rel=1e-12)
    np.testing.assert_allclose(data.time, 0.05 * np.arange(0, 70, 10), rtol=1e-14)
    assert main(["analyze", str(tmp_path / "quench.h5"), "--quiet"]) == 0
    assert (tmp_path / "quench_analysis" / "length_scales.png").exists()
    rows = np.genfromtxt(tmp_path / "quench_analysis" / "timeseries.csv", delimiter=",", names=True)
    np.testing.assert_allclose(rows["energy"], data.energy, rtol=1e-12)
    bond = [np.mean([s[i] @ s[j] for i in range(lat.num_sites) for j in lat.neighbors(1)[i]]) for s in data.spins]
    np.testing.assert_allclose(rows["bond_mean"], bond, rtol=0, atol=1e-12)


def test_simulate_with_exact_diagonalisation_fields(tmp_path):
    cfg = _config(tmp_path, lattice={"kind": "triangular", "shape": [4, 4]}, method={"name": "ed"},
                  model={"J": 2.0, "filling": 0.25, "kT": 0.05},
                  dynamics={"dt": 0.05, "alpha": 0.3, "kT": 0.002, "steps": 10, "save_every": 5, "seed": 2})
    result = simulate(cfg, progress=False)
    data = read_dataset(result.path)
    assert data.method == "ed" and data.num_frames == 3
    lat = sf.Lattice("triangular", (4, 4))
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=2.0, filling=0.25, kT=0.05))
    ref = ed.compute(data.spins[-1])
    np.testing.assert_allclose(data.fields[-1], ref.fields, atol=1e-10)
    assert data.energy[-1] == pytest.approx(ref.energy, abs=1e-10)
    # the random start is that of `spinforce generate` with the same seed
    np.testing.assert_array_equal(data.spins[0], lat.random_spins(2))
    # the frames are the library's LLG with the config's values, from that start and noise seed
    llg = sf.LLG(ed, dt=0.05, alpha=0.3, kT=0.002, seed=2)
    np.testing.assert_allclose(data.spins[1], llg.run(data.spins[0], 5), rtol=0, atol=1e-12)
    np.testing.assert_allclose(data.spins[2], llg.run(data.spins[1], 5), rtol=0, atol=1e-12)
    assert np.max(np.abs(data.spins[2] - data.spins[0])) > 0.01  # the spins moved


def test_simulate_with_kpm_fields(tmp_path):
    cfg = _config(tmp_path, lattice={"kind": "triangular", "shape": [6, 6]},
                  method={"name": "kpm", "moments": 100, "probing_distance": 2},
                  model={"J": 2.0, "filling": 0.25, "kT": 0.1},
                  dynamics={"dt": 0.05, "alpha": 0.3, "kT": 0.002, "steps": 4, "save_every": 2, "seed": 2})
    data = read_dataset(simulate(cfg, progress=False).path)
    assert data.method == "kpm" and data.num_frames == 3
    lat = sf.Lattice("triangular", (6, 6))
    kpm = sf.KPM(sf.SDModel(lat, J=2.0, filling=0.25, kT=0.1), moments=100, probing_distance=2)
    np.testing.assert_allclose(data.fields[-1], kpm.compute(data.spins[-1]).fields, atol=1e-10)
    np.testing.assert_array_equal(data.spins[0], lat.random_spins(2))
    llg = sf.LLG(kpm, dt=0.05, alpha=0.3, kT=0.002, seed=2)
    np.testing.assert_allclose(data.spins[2], llg.run(data.spins[0], 4), rtol=0, atol=1e-12)
    assert np.max(np.abs(data.spins[2] - data.spins[0])) > 0.005  # the spins moved


def test_overwrite_never_removes_a_user_file_named_as_the_output(tmp_path):
    for name in ("notes.txt", "data.h5"):  # a run file may have any name; --overwrite replaces only a run file
        user = tmp_path / name
        user.write_text("the user's own file\n")
        for flags in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(FileExistsError, match=f"holds {name}, which spinforce simulate did not write"):
                simulate(_config(tmp_path, output=str(user)), progress=False, **flags)
            assert user.read_text() == "the user's own file\n"
    run = _config(tmp_path, output=str(tmp_path / "run.txt"))  # its own file of any name it does replace
    simulate(run, progress=False)
    assert simulate(run, overwrite=True, progress=False).frames == 5
