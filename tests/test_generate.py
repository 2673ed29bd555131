"""`spinforce generate`: ED-LLG training data from shipped configs, resume and overwrite rules."""
import numpy as np
import pytest

import spinforce as sf
from spinforce import cli
from spinforce import generate as gen
from spinforce.data import DatasetWriter, read_dataset

pytestmark = pytest.mark.usefixtures("single_thread")

# The shipped ED example shrunk to seconds: 4x4 lattice, 40 steps, frames every 10, 2 + 2 samples.
SMALL = ["--set", "lattice.shape=[4, 4]", "--set", "dynamics.steps=40", "--set", "dynamics.save_every=10",
         "--set", "samples.random=2", "--set", "samples.perturbed=2", "--no-progress"]


def generate(path, *extra):
    return cli.main(["generate", "--example", "ed_quench_square", "-o", str(path), *SMALL, *extra])


def assert_same_file(a, b):
    """Same frames in two dataset files (or already read datasets)."""
    da, db = (x if hasattr(x, "spins") else read_dataset(x) for x in (a, b))
    for name in ("spins", "fields", "energy", "time", "step"):
        assert np.array_equal(getattr(da, name), getattr(db, name), equal_nan=True), name


def test_examples_are_shipped_and_valid():
    found = gen.examples()
    assert {"ed_quench_square", "kpm_quench_triangular"} <= set(found)
    ed = gen.load_config(found["ed_quench_square"])
    assert ed["method"]["name"] == "ed" and ed["dynamics"]["integrator"] == "sib"
    kpm = gen.load_config(found["kpm_quench_triangular"])
    assert kpm["method"]["name"] == "kpm" and kpm["method"]["moments"] > 0
    assert cli.main(["generate", "--list-examples"]) == 0


def test_ed_quench_from_shipped_config(tmp_path):
    path = tmp_path / "quench.h5"
    assert generate(path) == 0
    d = read_dataset(path)
    assert list(d.step) == [0, 10, 20, 30, 40, -1, -1, -1, -1]
    np.testing.assert_allclose(d.time[:5], d.step[:5] * 0.05)
    assert np.isnan(d.time[5:]).all()
    assert d.method == "ed" and d.lattice_shape == (4, 4) and d.seed == 1
    assert d.provenance["config"]["dynamics"]["steps"] == 40
    assert np.max(np.abs(np.linalg.norm(d.spins, axis=2) - 1)) < 1e-12
    # Stored fields and energies are the ED provider's for the stored spins.
    lat = d.lattice()
    ed = sf.ExactDiagonalization(sf.SDModel(lat, J=2.0, filling=0.25, kT=0.05))
    for k in (0, 4, 6):
        r = ed.compute(d.spins[k])
        np.testing.assert_allclose(d.fields[k], r.fields, atol=1e-12)
        assert d.energy[k] == pytest.approx(r.energy, abs=1e-10)
    # The trajectory is the library's LLG with the config's parameters, bit for bit.
    llg = sf.LLG(ed, dt=0.05, alpha=0.1, kT=0.01, integrator="sib", seed=1)
    assert np.array_equal(llg.run(d.spins[0], 40), d.spins[4])
    assert np.array_equal(d.spins[0], lat.random_spins(1))


@pytest.mark.parametrize("stop_after", [2, 7])  # inside the trajectory / inside the samples
def test_interrupted_run_resumes_bit_identically(tmp_path, monkeypatch, stop_after):
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert generate(whole) == 0
    original = DatasetWriter.append
    calls = {"n": 0}

    def interrupting_append(self, *args, **kwargs):
        if calls["n"] == stop_after:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(DatasetWriter, "append", interrupting_append)
    assert generate(part) == 130
    assert read_dataset(part).num_frames == stop_after
    monkeypatch.setattr(DatasetWriter, "append", original)
    assert generate(part) == 0
    assert_same_file(whole, part)


def test_existing_output_is_never_overwritten_without_asking(tmp_path, capsys):
    path = tmp_path / "run.h5"
    assert generate(path) == 0
    before = read_dataset(path)
    assert generate(path) == 0  # finished: left alone
    assert_same_file(before, path)
    assert generate(path, "--set", "dynamics.alpha=0.3") == 2
    assert "different config" in capsys.readouterr().err
    assert np.array_equal(read_dataset(path).spins, before.spins)
    assert generate(path, "--no-resume") == 2
    assert generate(path, "--set", "dynamics.alpha=0.3", "--overwrite") == 0
    assert read_dataset(path).provenance["config"]["dynamics"]["alpha"] == 0.3


def test_trajectory_can_be_extended(tmp_path):
    short, direct = tmp_path / "short.h5", tmp_path / "direct.h5"
    extra = ["--set", "samples.random=0", "--set", "samples.perturbed=0"]
    assert generate(short, *extra) == 0
    assert generate(short, *extra, "--set", "dynamics.steps=60") == 0
    assert generate(direct, *extra, "--set", "dynamics.steps=60") == 0
    assert_same_file(short, direct)


def test_initial_state_from_file_and_kpm_by_name(tmp_path, monkeypatch):
    lat = sf.Lattice("square", (4, 4))
    np.save(tmp_path / "start.npy", lat.neel())
    seen = {}

    def fake_kpm(model, **settings):  # stands in for spinforce.KPM: same call, ED underneath
        seen.update(settings)
        return sf.ExactDiagonalization(model)

    monkeypatch.setattr(sf, "KPM", fake_kpm, raising=False)
    path = tmp_path / "kpm.h5"
    rc = cli.main(["generate", "--example", "kpm_quench_triangular", "-o", str(path), *SMALL,
                   "--set", "lattice.kind=\"square\"", "--set", f"dynamics.initial=\"{tmp_path / 'start.npy'}\""])
    assert rc == 0
    assert seen == {"moments": 400, "probing_distance": 4, "seed": 0}
    d = read_dataset(path)
    assert d.method == "kpm" and d.method_settings == seen
    assert np.array_equal(d.spins[0], lat.neel())


def test_config_errors_name_the_key(tmp_path):
    base = gen.load_config(gen.example_path("ed_quench_square"))

    def broken(**changes):
        cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        for key, value in changes.items():
            section, name = key.split("__")
            if value is None:
                cfg[section].pop(name)
            else:
                cfg[section][name] = value
        return cfg

    for changes, word in ((dict(dynamics__dtt=0.1), "dtt"), (dict(dynamics__dt=None), "dt"),
                          (dict(dynamics__steps=45), "multiple"), (dict(model__mu=0.0), "exactly one"),
                          (dict(method__name="qmc"), "method.name"), (dict(dynamics__initial="spiral"), "initial"),
                          (dict(samples__random=-1), "samples.random"), (dict(method__moments=10), "ed")):
        with pytest.raises(ValueError, match=word):
            gen.check_config(broken(**changes))
    with pytest.raises(FileNotFoundError):
        gen.load_config(tmp_path / "missing.toml")
    assert cli.main(["generate", "--example", "nonexistent"]) == 2
    assert cli.main(["generate", "--example", "ed_quench_square", "--set", "dynamics.dt=-1", "-o",
                     str(tmp_path / "x.h5"), "--no-progress"]) == 2
    assert not (tmp_path / "x.h5").exists() or read_dataset(tmp_path / "x.h5").num_frames == 0


def test_ensemble_overwrite_never_removes_a_user_file_named_as_the_output(tmp_path, capsys):
    user = tmp_path / "notes.txt"
    user.write_text("the user's own file\n")
    assert generate(user, "--set", "ensemble.seeds=[1, 2]", "--set", "dynamics.steps=10", "--overwrite") == 2
    assert "holds notes.txt, which spinforce generate did not write" in capsys.readouterr().err
    assert user.read_text() == "the user's own file\n" and not (tmp_path / "notes.runs").exists()
