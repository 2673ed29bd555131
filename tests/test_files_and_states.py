"""Files and starting states checked from the outside: OVF 2.0 files against the format's
layout by a reader written here, the named initial states of run configs built by hand,
reading slices of a dataset, and the ED sampler spinforce.ml.sample_ed."""
import numpy as np
import pytest

import spinforce as sf
from spinforce import cli
from spinforce.data import DatasetWriter, read_dataset
from spinforce.ml import sample_ed
from spinforce.ovf import write_ovf
from spinforce.simulate import simulate

# Header keys an OVF 2.0 rectangular-mesh segment must have (OOMMF User's Guide, "OVF 2.0 format").
OVF2_KEYS = {"title", "meshtype", "meshunit", "xmin", "ymin", "zmin", "xmax", "ymax", "zmax", "valuedim",
             "valuelabels", "valueunits", "xbase", "ybase", "zbase", "xnodes", "ynodes", "znodes",
             "xstepsize", "ystepsize", "zstepsize"}


def parse_ovf2_text(path):
    """A strict reader of one-segment OVF 2.0 text files: (header, values (nodes, valuedim))."""
    lines = path.read_text().splitlines()
    assert lines[0] == "# OOMMF OVF 2.0"
    expected = iter(["# Segment count: 1", "# Begin: Segment", "# Begin: Header"])
    k = 1
    for want in expected:
        while lines[k].startswith("##"):  # comment lines may appear anywhere
            k += 1
        assert lines[k].strip().lower() == want.lower(), (k, lines[k])
        k += 1
    header = {}
    while lines[k].strip().lower() != "# end: header":
        assert lines[k].startswith("#"), lines[k]
        if not lines[k].startswith("##"):
            key, sep, value = lines[k][1:].partition(":")
            assert sep, lines[k]
            key = key.strip().lower()
            assert key not in header, f"duplicate header key {key}"
            header[key] = value.strip()
        k += 1
    k += 1
    assert lines[k].strip().lower() == "# begin: data text"
    end = lines.index("# End: Data Text")
    assert [line.strip().lower() for line in lines[end + 1:]] == ["# end: segment"]
    values = np.array([[float(x) for x in line.split()] for line in lines[k + 1:end]])
    return header, values


@pytest.mark.parametrize("kind, shape", [("cubic", (4, 3, 2)), ("triangular", (5, 3))])
def test_ovf_file_follows_the_ovf2_layout(kind, shape, tmp_path):
    lat = sf.Lattice(kind, shape)
    spins = lat.random_spins(8)
    path = write_ovf(tmp_path / "f.ovf", spins, lat, title="frame 7", time=2.5)
    header, values = parse_ovf2_text(path)
    assert OVF2_KEYS <= set(header), OVF2_KEYS - set(header)
    nodes = [int(header[f"{a}nodes"]) for a in "xyz"]
    assert nodes == list(shape) + [1] * (3 - len(shape))
    assert header["meshtype"] == "rectangular" and int(header["valuedim"]) == 3
    assert len(header["valuelabels"].split()) == 3 and len(header["valueunits"].split()) == 3
    assert header["title"] == "frame 7" and "2.5" in header.get("desc", "")
    for a, n in zip("xyz", nodes):  # extent = nodes x step, node centres at base + i step
        step = float(header[f"{a}stepsize"])
        assert float(header[f"{a}max"]) - float(header[f"{a}min"]) == pytest.approx(n * step)
        assert float(header[f"{a}base"]) == pytest.approx(float(header[f"{a}min"]) + step / 2)
    assert values.shape == (np.prod(nodes), 3)
    # node order: x fastest, then y, then z; the value of node (x, y, z) is the spin of that site
    coords = np.zeros((lat.num_sites, 3), int)
    coords[:, :lat.dim] = lat.coordinates
    line = coords[:, 0] + nodes[0] * (coords[:, 1] + nodes[1] * coords[:, 2])
    np.testing.assert_array_equal(values[line], spins)  # 17 significant digits: exact


def test_ovf_frames_of_a_run_are_the_run_frames(tmp_path):
    cfg = {"output": str(tmp_path / "run.h5"), "ovf": True, "lattice": {"kind": "square", "shape": [5, 4]},
           "method": {"name": "heisenberg"}, "model": {"J1": -1.0},
           "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": 0.1, "steps": 4, "save_every": 2, "seed": 1}}
    data = read_dataset(simulate(cfg, progress=False).path)
    for k, step in enumerate((0, 2, 4)):
        header, values = parse_ovf2_text(tmp_path / "run_ovf" / f"frame_{step:09d}.ovf")
        np.testing.assert_array_equal(values, data.spins[k])
        assert str(step) in header["title"]


# --- named initial states -------------------------------------------------------------------------
def by_hand(name, kind, shape):
    lat = sf.Lattice(kind, shape)
    x = lat.coordinates
    if name == "ferromagnetic":
        return np.tile([0.0, 0.0, 1.0], (lat.num_sites, 1))
    if name == "neel":
        return np.outer((-1.0) ** x.sum(axis=1), [0.0, 0.0, 1.0])
    return None


@pytest.mark.parametrize("name, kind", [("ferromagnetic", "triangular"), ("neel", "square"), ("neel", "cubic"),
                                        ("tetrahedral", "triangular")])
def test_named_initial_states_of_simulate_configs(name, kind, tmp_path):
    shape = [4, 4, 6] if kind == "cubic" else [4, 6]
    cfg = {"output": str(tmp_path / "run.h5"), "lattice": {"kind": kind, "shape": shape},
           "method": {"name": "heisenberg"}, "model": {"J1": 1.0},
           "dynamics": {"dt": 0.05, "alpha": 0.1, "steps": 0, "save_every": 1, "initial": name}}
    s = read_dataset(simulate(cfg, progress=False).path).spins[0]
    expected = by_hand(name, kind, shape)
    if expected is not None:
        np.testing.assert_array_equal(s, expected)
        return
    # tetrahedral: four sublattices (x mod 2, y mod 2) on the corners of a regular tetrahedron,
    # every elementary triangle with the same scalar chirality 4 / (3 sqrt 3)
    grid = s.reshape(shape[1], shape[0], 3)  # [y, x]
    corners = np.array([grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1]])
    np.testing.assert_allclose(corners @ corners.T, (4 * np.eye(4) - 1) / 3, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(grid, np.tile(grid[:2, :2], (shape[1] // 2, shape[0] // 2, 1)))
    up = np.einsum("yxa,yxa->yx", grid, np.cross(np.roll(grid, -1, axis=1), np.roll(grid, -1, axis=0)))
    down = np.einsum("yxa,yxa->yx", np.roll(grid, -1, axis=1),
                     np.cross(np.roll(grid, (-1, -1), axis=(0, 1)), np.roll(grid, -1, axis=0)))
    np.testing.assert_allclose(np.concatenate([up, down]), 4 / (3 * np.sqrt(3)), rtol=0, atol=1e-14)


def test_named_initial_state_of_generate_configs(tmp_path, capsys):
    small = ["--set", "lattice.shape=[4, 4]", "--set", "dynamics.steps=0", "--set", "dynamics.save_every=1",
             "--set", "samples.random=0", "--set", "samples.perturbed=0", "--no-progress"]
    rc = cli.main(["generate", "--example", "ed_quench_square", "-o", str(tmp_path / "neel.h5"), *small,
                   "--set", 'dynamics.initial="neel"'])
    assert rc == 0
    d = read_dataset(tmp_path / "neel.h5")
    np.testing.assert_array_equal(d.spins[0], by_hand("neel", "square", (4, 4)))
    # a Neel state has no net exchange torque: the stored ED fields are parallel to the spins
    np.testing.assert_allclose(np.cross(d.spins[0], d.fields[0]), 0, atol=1e-12)
    rc = cli.main(["generate", "--example", "ed_quench_square", "-o", str(tmp_path / "t.h5"), *small,
                   "--set", 'dynamics.initial="tetrahedral"'])
    assert rc == 2 and "tetrahedral" in capsys.readouterr().err  # a triangular-lattice state on a square lattice


# --- reading slices -------------------------------------------------------------------------------
def test_read_dataset_frames(tmp_path):
    rng = np.random.default_rng(0)
    spins = rng.normal(size=(7, 6, 3))
    with DatasetWriter(tmp_path / "d.h5", lattice_kind="square", lattice_shape=(3, 2), num_sites=6, method="test",
                       model={"J": 1}, seed=4) as w:
        for k in range(7):
            w.append(spins[k], -spins[k], float(k), time=0.5 * k, step=10 * k)
    for sel in (slice(2, 5), slice(None, None, 3), slice(-2, None), slice(4, 4)):
        d = read_dataset(tmp_path / "d.h5", frames=sel)
        np.testing.assert_array_equal(d.spins, spins[sel])
        np.testing.assert_array_equal(d.fields, -spins[sel])
        np.testing.assert_array_equal(d.energy, np.arange(7.0)[sel])
        np.testing.assert_array_equal(d.time, 0.5 * np.arange(7)[sel])
        np.testing.assert_array_equal(d.step, 10 * np.arange(7)[sel])
        assert d.num_frames == len(range(7)[sel]) and d.num_sites == 6
        assert (d.lattice_shape, d.model, d.seed) == ((3, 2), {"J": 1}, 4)
    assert read_dataset(tmp_path / "d.h5").num_frames == 7
    with pytest.raises(ValueError, match="frames"):
        read_dataset(tmp_path / "d.h5", frames=2)  # one frame is slice(2, 3): an index would drop the frame axis


def test_read_dataset_returns_only_complete_frames_of_a_stopped_writer(tmp_path):
    import h5py
    lat = sf.Lattice("square", 4)
    path = tmp_path / "d.h5"
    with DatasetWriter(path, lattice_kind="square", lattice_shape=(4, 4), num_sites=16, method="test", model={}) as w:
        for k in range(3):
            w.append(lat.random_spins(k), np.zeros((16, 3)), float(k), time=float(k), step=k)
    with h5py.File(path, "a") as f:  # a writer killed inside append: every array but energy has grown
        for name in ("spins", "fields", "time", "step", "trajectory"):
            f[name].resize(4, axis=0)
    d = read_dataset(path)
    assert d.spins.shape == (3, 16, 3) and d.fields.shape == (3, 16, 3) and d.num_frames == 3
    np.testing.assert_array_equal(d.step, [0, 1, 2])
    assert read_dataset(path, frames=slice(1, None)).num_frames == 2
    with pytest.raises(ValueError, match="holds 3 frames; frame 3 does not exist"):
        read_dataset(path, frames=[0, 3])


# --- spinforce.ml.sample_ed -----------------------------------------------------------------------
def test_sample_ed_writes_exact_fields_of_ordered_and_random_states(tmp_path):
    lat = sf.Lattice("square", (4, 4))
    assert sample_ed.main([str(tmp_path / "s.h5"), "--kind", "square", "--shape", "4", "--J", "3",
                           "--filling", "0.3", "--kT", "0.1", "--t2", "0.2", "--frames", "12", "--seed", "5"]) == 0
    d = read_dataset(tmp_path / "s.h5")
    assert d.num_frames == 12 and d.method == "ed" and d.seed == 5
    assert d.model["J"] == 3 and d.model["t2"] == 0.2 and d.model["filling"] == 0.3 and d.model["kT"] == 0.1
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=3.0, filling=0.3, kT=0.1, t2=0.2))
    for k in range(12):
        assert np.max(np.abs(np.linalg.norm(d.spins[k], axis=1) - 1)) < 1e-14
        r = ed.compute(d.spins[k])
        np.testing.assert_allclose(d.fields[k], r.fields, rtol=0, atol=1e-12)
        assert d.energy[k] == pytest.approx(r.energy, abs=1e-10)
    # ordered states with noise and random states: the spread of |m| covers both
    m = np.linalg.norm(d.spins.mean(axis=1), axis=1)
    assert m.max() > 0.5 and m.min() < 0.3
    # the same seed gives the same samples; an interrupted file resumes to the same frames
    sample_ed.write_ed_samples(tmp_path / "part.h5", lat, J=3.0, filling=0.3, kT=0.1, t2=0.2, frames=5, seed=5,
                               progress=False)
    assert sample_ed.write_ed_samples(tmp_path / "part.h5", lat, J=3.0, filling=0.3, kT=0.1, t2=0.2, frames=12,
                                      seed=5, resume=True, progress=False) == 12
    np.testing.assert_array_equal(read_dataset(tmp_path / "part.h5").spins, d.spins)
    with pytest.raises(ValueError, match="frames"):
        sample_ed.write_ed_samples(tmp_path / "x.h5", lat, J=3.0, filling=0.3, frames=0)
    with pytest.raises(FileExistsError):
        sample_ed.write_ed_samples(tmp_path / "s.h5", lat, J=3.0, filling=0.3, frames=3)


def test_perturbed_configurations_are_ordered_states_with_noise():
    lat = sf.Lattice("square", (6, 6))
    rng = np.random.default_rng(3)
    bonds = []
    for _ in range(40):
        s = sample_ed.perturbed_configuration(lat, rng)
        assert np.allclose(np.linalg.norm(s, axis=1), 1, atol=1e-14, rtol=0)
        nb = lat.neighbors(1)
        bonds.append(np.einsum("ia,ija->", s, s[nb]) / (4 * lat.num_sites))
    bonds = np.array(bonds)
    # weakly perturbed ferromagnets (bonds near +1), Neel states (near -1) and random states (near 0)
    assert bonds.max() > 0.8 and bonds.min() < -0.8 and np.any(np.abs(bonds) < 0.2)


def test_atomic_write_replaces_in_one_step_and_cleans_up(tmp_path):
    from spinforce.outputs import atomic_write, partial_path

    path = tmp_path / "frame.ovf"
    assert partial_path(path) == tmp_path / "frame.ovf.partial"
    with atomic_write(path) as tmp:
        assert tmp == partial_path(path)
        tmp.write_text("first")
        assert not path.exists()  # nobody sees the file before it is complete
    assert path.read_text() == "first" and not tmp.exists()
    with pytest.raises(RuntimeError):
        with atomic_write(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "first" and not tmp.exists()
