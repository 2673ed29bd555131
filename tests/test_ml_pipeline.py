"""The whole ML path with the default (group-theoretical) descriptor on every lattice kind:
train -> export -> the C++ MLForceField equals the Python model, and an ML-LLG run of
`spinforce simulate` equals stochastic LLG integrated here, in Python, on the Python model."""
import numpy as np
import pytest
import torch

import spinforce as sf
from spinforce import cli
from spinforce.data import DatasetWriter, read_dataset
from spinforce.ml.model import load_model, read_model_record

pytestmark = pytest.mark.usefixtures("single_thread")

LATTICES = {"square": (6, 6), "triangular": (6, 6), "cubic": (5, 5, 5)}


def write_heisenberg_data(path, lattice, frames, seed):
    heis = sf.Heisenberg(lattice, J1=1.0, J2=-0.2)
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="heisenberg", model=heis.parameters(), seed=seed) as w:
        for _ in range(frames):
            s = rng.normal(size=(lattice.num_sites, 3)) + np.array([0.0, 0.0, 1.0])
            s /= np.linalg.norm(s, axis=1, keepdims=True)
            r = heis.compute(s)
            w.append(s, r.fields, r.energy)


def cayley(a, s):
    """Rotation of s by the Cayley map of a (rows), as in Mentink et al. (2010)."""
    aa = (a * a).sum(1, keepdims=True)
    return ((1 - aa) * s + 2 * np.cross(a, s) + 2 * (a * s).sum(1, keepdims=True) * a) / (1 + aa)


def sib_reference(fields_of, spins, steps, start_step, *, dt, alpha, kT, gamma, seed):
    """Semi-implicit SIB written out from the scheme, noise from the library's Philox stream."""
    n = spins.shape[0]
    sigma = np.sqrt(2 * alpha * kT / (gamma * dt))
    s = spins.copy()
    for step in range(start_step, start_step + steps):
        xi = sigma * np.array([sf._core._philox_normals(seed, step, i)[:3] for i in range(n)])

        def A(x):  # with the part of the field along the spin removed (it drops out of dS/dt)
            h = fields_of(x) + xi
            h_perp = h - (h * x).sum(1, keepdims=True) * x
            return gamma / (1 + alpha ** 2) * (h_perp + alpha * np.cross(x, h))

        predictor = cayley(0.5 * dt * A(s), s)
        mid = 0.5 * (s + predictor)
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        s = cayley(0.5 * dt * A(mid), s)
    return s


def test_python_sib_reference_equals_the_library_llg():
    """The reference integrator above is itself checked against spinforce.LLG on Heisenberg spins."""
    lat = sf.Lattice("triangular", (5, 4))
    heis = sf.Heisenberg(lat, J1=-1.0, anisotropy=0.3, field=(0.1, 0.0, 0.2))
    start = lat.random_spins(3)
    kw = dict(dt=0.04, alpha=0.2, kT=0.3, gamma=1.3, seed=11)
    ref = sib_reference(lambda x: heis.compute(x).fields, start, 8, 5, **kw)
    out = sf.LLG(heis, **kw).run(start, 8, start_step=5)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)


@pytest.fixture(scope="module", params=["square", "triangular", pytest.param("cubic", marks=pytest.mark.slow)])
def trained_model(request, tmp_path_factory):
    kind = request.param
    lat = sf.Lattice(kind, LATTICES[kind])
    d = tmp_path_factory.mktemp(f"ml_{kind}")
    write_heisenberg_data(d / "data.h5", lat, 4, seed=1)
    (d / "train.toml").write_text(
        '[data]\npaths = ["data.h5"]\nvalidation_fraction = 0.25\n'
        '[model]\nhidden = [8]\n'
        '[training]\nepochs = 1\nbatch_size = 2\nthreads = 1\n'
        '[output]\ndir = "run"\nplots = false\n')  # no [descriptor]: the default
    assert cli.main(["train", str(d / "train.toml"), "--no-progress"]) == 0
    assert cli.main(["export", str(d / "run" / "model.pt"), "--torchscript", str(d / "model.ts")]) == 0
    return kind, d


def test_default_descriptor_is_the_group_descriptor(trained_model):
    kind, d = trained_model
    rec = read_model_record(d / "run" / "model.pt")
    assert rec["descriptor"]["kind"] == "group" and rec["lattice_kind"] == kind
    assert isinstance(load_model(d / "run" / "model.pt").descriptor, sf.Descriptor)


def test_exported_group_model_in_cpp_equals_the_python_model(trained_model):
    kind, d = trained_model
    bigger = tuple(L + 1 for L in LATTICES[kind])  # the model runs on any size of its lattice kind
    for shape in (LATTICES[kind], bigger):
        lat = sf.Lattice(kind, shape)
        model = load_model(d / "run" / "model.pt", lat)
        spins = lat.random_spins(7)
        e_py, h_py = model(torch.from_numpy(spins), lat.neighbor_table(model.neighbor_offsets))
        r = sf.MLForceField(d / "model.ts", lat).compute(spins)
        assert np.abs(h_py.detach().numpy()).max() > 1e-3  # fields that are not trivially zero
        np.testing.assert_allclose(r.fields, h_py.detach().numpy(), rtol=0, atol=1e-10)
        assert r.energy == pytest.approx(float(e_py), rel=1e-12, abs=1e-10)


def test_ml_llg_from_simulate_equals_python_llg_on_the_python_model(trained_model, tmp_path):
    kind, d = trained_model
    shape = LATTICES[kind]
    (tmp_path / "run.toml").write_text(
        f'output = "ml.h5"\n[lattice]\nkind = "{kind}"\nshape = {list(shape)}\n'
        f'[method]\nname = "ml"\npath = "{d / "model.ts"}"\n'
        '[dynamics]\ndt = 0.05\nalpha = 0.2\nkT = 0.05\nseed = 9\nsteps = 6\nsave_every = 3\n')
    assert cli.main(["simulate", str(tmp_path / "run.toml"), "--quiet"]) == 0
    data = read_dataset(tmp_path / "ml.h5")
    lat = sf.Lattice(kind, shape)
    np.testing.assert_array_equal(data.spins[0], lat.random_spins(9))
    model = load_model(d / "run" / "model.pt", lat)
    nb = lat.neighbor_table(model.neighbor_offsets)

    def fields_of(s):
        return model(torch.from_numpy(np.ascontiguousarray(s)), nb)[1].detach().numpy()

    spins = data.spins[0]
    for k in (1, 2):
        spins = sib_reference(fields_of, spins, 3, 3 * (k - 1), dt=0.05, alpha=0.2, kT=0.05, gamma=1.0, seed=9)
        np.testing.assert_allclose(data.spins[k], spins, rtol=0, atol=1e-10)
        np.testing.assert_allclose(data.fields[k], fields_of(spins), rtol=0, atol=1e-10)
    assert np.abs(data.spins[2] - data.spins[0]).max() > 1e-3  # the spins moved
