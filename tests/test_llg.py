"""Stochastic LLG integrators, Philox noise and the classical Heisenberg provider."""
import numpy as np
import pytest
import torch

import spinforce as sf
from spinforce.data import DatasetWriter, read_dataset

INTEGRATORS = list(sf.dynamics.INTEGRATORS)  # every registered scheme

pytestmark = pytest.mark.usefixtures("single_thread")


def single_spin(field=(0.0, 0.0, 1.0)):
    return sf.Heisenberg(sf.Lattice("square", (1, 1)), J1=0.0, field=field)


def frames_of(llg, spins, steps, every, **kw):
    out = []
    final = llg.run(spins, steps, every=every, callback=lambda n, s, r: out.append((n, s, r)), **kw)
    return final, out


# --- Philox ------------------------------------------------------------------------------------
def test_philox_known_answers():
    # Known-answer vectors of Random123 (kat_vectors, philox4x32_10).
    assert sf._core._philox4x32_10([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    f = 0xFFFFFFFF
    assert sf._core._philox4x32_10([f, f, f, f], [f, f]) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert sf._core._philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_philox_normals_are_standard_and_keyed():
    g = np.array([sf._core._philox_normals(7, 3, site) for site in range(25000)]).ravel()
    n = g.size
    assert abs(g.mean()) < 4 / np.sqrt(n)
    assert abs(g.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(np.mean(g ** 4) - 3) < 0.1
    assert sf._core._philox_normals(7, 3, 11) == sf._core._philox_normals(7, 3, 11)
    assert sf._core._philox_normals(7, 3, 11) != sf._core._philox_normals(7, 4, 11)
    assert sf._core._philox_normals(7, 3, 11) != sf._core._philox_normals(8, 3, 11)


def philox4x32_10_numpy(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (Salmon et al., SC'11) on arrays of 32-bit words held in uint64."""
    mask = np.uint64(0xFFFFFFFF)
    words = [np.asarray(w, dtype=np.uint64) for w in (c0, c1, c2, c3, k0, k1)]
    c0, c1, c2, c3, k0, k1 = np.broadcast_arrays(*words)
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
        p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


def box_muller_numpy(seed, step, sites):
    """Independent reference of the noise: (len(sites), 4) normals of (seed, step, site), counter
    (site, step) and key seed as 64-bit pairs, Box-Muller in double precision."""
    lo, hi = lambda x: np.uint64(x) & np.uint64(0xFFFFFFFF), lambda x: np.uint64(x) >> np.uint64(32)
    sites = np.asarray(sites, dtype=np.uint64)
    words = philox4x32_10_numpy(lo(sites), hi(sites), lo(step), hi(step), lo(seed), hi(seed))
    u = [(w.astype(np.float64) + 1.0) * 2.0 ** -32 for w in words]
    out = []
    for a, b in ((u[0], u[1]), (u[2], u[3])):
        r, phi = np.sqrt(-2.0 * np.log(a)), 2.0 * np.pi * b
        out += [r * np.cos(phi), r * np.sin(phi)]
    return np.stack(out, axis=1)


def test_numpy_philox_reference_reproduces_the_known_answers():
    f = 0xFFFFFFFF
    for counter, key, expected in [([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
                                   ([f, f, f, f], [f, f], [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD])]:
        assert [int(w) for w in philox4x32_10_numpy(*counter, *key)] == expected


def test_normals_are_double_precision_box_muller_of_the_philox_bits():
    """The noise the CPU loop and the CUDA kernel draw (the shared __host__ __device__ function,
    compiled here for the host) against the numpy reference over a grid of (seed, step, site).
    Single-precision Box-Muller differed from it by ~1e-7 in a fifth of the draws; double
    precision leaves the last-ulp differences of two math libraries (numpy's and glibc's)."""
    sites = list(range(0, 3000, 7)) + [2**32 - 1, 2**32, 2**33 + 12345]
    worst = 0.0
    for seed in (0, 1, 2**32 + 5, 2**63 + 99):
        for step in (0, 1, 977, 2**32 + 3):
            ours = np.array([sf._core._philox_normals(seed, step, site) for site in sites])
            ref = box_muller_numpy(seed, step, sites)
            worst = max(worst, float(np.max(np.abs(ours - ref) / np.maximum(1.0, np.abs(ref)))))
    assert worst < 4e-15, worst


# --- Heisenberg provider -----------------------------------------------------------------------
@pytest.mark.parametrize("kind,shape", [("square", (6, 6)), ("triangular", (6, 6)), ("cubic", (5, 5, 5))])
def test_heisenberg_fields_are_minus_gradient(kind, shape):
    lat = sf.Lattice(kind, shape)
    model = sf.Heisenberg(lat, J1=0.7, J2=-0.3, field=(0.2, -0.1, 0.4), anisotropy=0.35, axis=(1, 2, 2))
    S = lat.random_spins(3)
    r = model.compute(S)
    eps = 1e-5
    rng = np.random.default_rng(0)
    for i in rng.choice(lat.num_sites, 5, replace=False):
        for a in range(3):
            Sp, Sm = S.copy(), S.copy()
            Sp[i, a] += eps
            Sm[i, a] -= eps
            Ep = _energy(model, Sp)
            Em = _energy(model, Sm)
            assert abs(-(Ep - Em) / (2 * eps) - r.fields[i, a]) < 1e-7


def _energy(model, S):
    """Classical energy from the documented formula, independent of the C++ code."""
    lat = model.lattice
    n = np.asarray(model.axis)
    E = -S.sum(0) @ np.asarray(model.field) - model.anisotropy * np.sum((S @ n) ** 2)
    for k, J in ((1, model.J1), (2, model.J2)):
        nb = lat.neighbors(k)
        E += 0.5 * J * np.einsum("ia,ima->", S, S[nb])  # every bond seen from both ends
    return E


def test_heisenberg_ferromagnet_energy_and_tensor_path():
    for kind, bonds in (("square", 2), ("triangular", 3), ("cubic", 3)):
        lat = sf.Lattice(kind, 5)
        model = sf.Heisenberg(lat, J1=1.3, J2=0.4, field=(0, 0, 0.5), anisotropy=0.2)
        S = lat.ferromagnetic()
        r = model.compute(S)
        nnn_bonds = {"square": 2, "triangular": 3, "cubic": 6}[kind]
        expected = lat.num_sites * (1.3 * bonds + 0.4 * nnn_bonds - 0.5 - 0.2)
        assert r.energy == pytest.approx(expected, rel=1e-13)
        S = lat.random_spins(1)
        r, t = model.compute(S), model._compute_tensor(torch.from_numpy(S))
        assert t.energy == pytest.approx(r.energy, rel=1e-12)
        np.testing.assert_allclose(t.fields.numpy(), r.fields, atol=1e-13)
        assert r.energy == pytest.approx(_energy(model, S), rel=1e-12)


def test_heisenberg_rejects_bad_input():
    lat = sf.Lattice("square", (4, 4))
    with pytest.raises(ValueError, match="axis"):
        sf.Heisenberg(lat, J1=1.0, axis=(0, 0, 0))
    with pytest.raises(ValueError, match="field"):
        sf.Heisenberg(lat, J1=1.0, field=(0, 1))
    with pytest.raises(ValueError, match="J1"):
        sf.Heisenberg(lat, J1=float("nan"))
    with pytest.raises(ValueError, match="lattice"):
        sf.Heisenberg("square", J1=1.0)
    with pytest.raises(ValueError, match="too small"):
        sf.Heisenberg(sf.Lattice("square", (2, 2)), J1=1.0)


# --- deterministic dynamics --------------------------------------------------------------------
@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_larmor_precession_phase(integrator, gamma):
    B, dt = 1.5, 1e-3
    llg = sf.LLG(single_spin((0, 0, B)), dt=dt, alpha=0.0, gamma=gamma, integrator=integrator)
    _, frames = frames_of(llg, np.array([[1.0, 0.0, 0.0]]), 4000, 400)
    for n, s, _ in frames:
        phi = gamma * B * n * dt  # dS/dt = -gamma S x B turns S counter-clockwise about B
        np.testing.assert_allclose(s[0], [np.cos(phi), np.sin(phi), 0.0], atol=1e-5)


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("alpha,gamma", [(0.1, 1.0), (0.5, 2.0)])
def test_damped_relaxation_tanh(integrator, alpha, gamma):
    B, dt = 1.0, 1e-3
    llg = sf.LLG(single_spin((0, 0, B)), dt=dt, alpha=alpha, gamma=gamma, integrator=integrator)
    _, frames = frames_of(llg, np.array([[1.0, 0.0, 0.0]]), 6000, 300)
    for n, s, _ in frames:
        expected = np.tanh(alpha * gamma * B * n * dt / (1 + alpha ** 2))
        assert abs(s[0, 2] - expected) < 1e-5


def heisenberg_lattice(shape=(16, 16)):
    lat = sf.Lattice("square", shape)
    return lat, sf.Heisenberg(lat, J1=1.0, J2=0.2, field=(0.1, 0.0, 0.3), anisotropy=0.15)


@pytest.mark.parametrize("integrator,bound", [("sib", 1e-4), ("heun", 2e-4)])
def test_energy_conservation_without_damping(integrator, bound):
    # alpha = 0, kT = 0 from random spins over t = 20: the energy per spin stays within `bound`
    # of its start at dt = 0.01 (measured 5.3e-5 for SIB, 9.9e-5 for Heun; 1.7e-5 and 2.3e-6 with
    # the field along the spin kept, which costs the s-d model four orders of magnitude: the test
    # below), and the deviation is a discretisation error: it shrinks by more than 4x when dt is
    # halved.
    lat, model = heisenberg_lattice()
    S0 = lat.random_spins(5)
    E0 = model.compute(S0).energy

    def deviation(dt):
        _, frames = frames_of(sf.LLG(model, dt=dt, alpha=0.0, integrator=integrator), S0, round(20 / dt),
                              round(0.5 / dt))
        return max(abs(r.energy - E0) for _, _, r in frames) / lat.num_sites

    coarse = deviation(0.01)
    assert coarse < bound
    assert deviation(0.005) < coarse / 4


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_unit_length_preserved(integrator):
    lat, model = heisenberg_lattice()
    llg = sf.LLG(model, dt=0.05, alpha=0.2, kT=2.0, integrator=integrator, seed=3)
    S = llg.run(lat.random_spins(1), 1000)
    assert np.max(np.abs(np.linalg.norm(S, axis=1) - 1)) < 1e-12


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_integrators_agree_at_small_dt(integrator):
    lat, model = heisenberg_lattice((8, 8))
    S0 = lat.random_spins(2)
    ref = sf.LLG(model, dt=5e-4, alpha=0.1, integrator="sib").run(S0, 2000)
    out = sf.LLG(model, dt=1e-3, alpha=0.1, integrator=integrator).run(S0, 1000)
    assert np.max(np.abs(out - ref)) < 1e-5


@pytest.mark.parametrize("integrator", ["sib", "heun"])
def test_second_order_schemes_ignore_the_exchange_field_along_the_spin(integrator):
    """The s-d model's exchange field is about J along each spin (here 50x the torque-making part):
    it drops out of dS/dt, and the midpoint and Heun schemes must not feel it. At the dt of the
    studies (0.05, J = 6) they stay within 1e-4 of converged RK4 over t = 2 (measured 4-5e-6; with
    that part kept in the precession vector SIB was off by 7e-3 and ordered ~5 % too fast)."""
    lat = sf.Lattice("square", (6, 6))
    ed = sf.ExactDiagonalization(sf.SDModel(lat, t=1.0, J=6.0, kT=0.0, mu=-3.9))
    S0 = lat.random_spins(3)
    ref = sf.LLG(ed, dt=0.025, alpha=0.1, integrator="rk4").run(S0, 80)
    out = sf.LLG(ed, dt=0.05, alpha=0.1, integrator=integrator).run(S0, 40)
    assert np.max(np.abs(out - ref)) < 1e-4
    # without damping the energy per spin stays within 1e-6 of its start over t = 5 (measured
    # 1.6e-8 SIB, 2.7e-8 Heun on 8x8; 2.4e-4 with the field along the spin kept)
    lat = sf.Lattice("square", (8, 8))
    ed = sf.ExactDiagonalization(sf.SDModel(lat, t=1.0, J=6.0, kT=0.0, mu=-3.9))
    S0 = lat.random_spins(3)
    _, frames = frames_of(sf.LLG(ed, dt=0.05, alpha=0.0, integrator=integrator), S0, 100, 1)
    E0 = ed.compute(S0).energy
    assert max(abs(r.energy - E0) for _, _, r in frames) / lat.num_sites < 1e-6


# --- reproducibility ---------------------------------------------------------------------------
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_same_seed_same_trajectory(integrator):
    lat, model = heisenberg_lattice((8, 8))
    S0 = lat.random_spins(4)
    kw = dict(dt=0.02, alpha=0.1, kT=0.5, integrator=integrator)
    a = sf.LLG(model, seed=11, **kw).run(S0, 200)
    b = sf.LLG(model, seed=11, **kw).run(S0, 200)
    c = sf.LLG(model, seed=12, **kw).run(S0, 200)
    assert np.array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.1


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_resumed_run_is_bit_identical(integrator, tmp_path):
    lat, model = heisenberg_lattice((8, 8))
    S0 = lat.random_spins(4)
    kw = dict(dt=0.02, alpha=0.1, kT=0.5, integrator=integrator, seed=5)
    whole_final, whole = frames_of(sf.LLG(model, **kw), S0, 100, 10)
    first = sf.LLG(model, **kw)
    mid, part1 = frames_of(first, S0, 60, 10)
    assert first.step == 60
    again = sf.LLG(model, **kw)  # a new process would start from the stored spins and step
    final, part2 = frames_of(again, mid, 40, 10, start_step=60)
    assert np.array_equal(final, whole_final)
    assert [n for n, _, _ in part1 + part2] == [n for n, _, _ in whole] == list(range(10, 101, 10))
    for (_, s, r), (_, s2, r2) in zip(part1 + part2, whole):
        assert np.array_equal(s, s2) and np.array_equal(r.fields, r2.fields) and r.energy == r2.energy
    # Continuing the same object without start_step continues its own counter.
    assert np.array_equal(first.run(mid, 40), whole_final)


def test_run_writes_frames_to_a_dataset(tmp_path):
    lat, model = heisenberg_lattice((8, 8))
    llg = sf.LLG(model, dt=0.02, alpha=0.1, kT=0.1, seed=1)
    path = tmp_path / "traj.h5"
    with DatasetWriter(path, lattice_kind="square", lattice_shape=(8, 8), num_sites=64, method="heisenberg",
                       model=model.parameters(), seed=1) as w:
        final = llg.run(lat.random_spins(0), 50, every=10, writer=w)
    d = read_dataset(path)
    assert list(d.step) == [10, 20, 30, 40, 50]
    np.testing.assert_allclose(d.time, d.step * 0.02)
    assert np.array_equal(d.spins[-1], final)
    r = model.compute(final)
    assert np.array_equal(d.fields[-1], r.fields) and d.energy[-1] == r.energy


def test_torch_in_torch_out():
    lat, model = heisenberg_lattice((8, 8))
    S0 = lat.random_spins(0)
    out = sf.LLG(model, dt=0.02, alpha=0.1, kT=0.2, seed=2).run(torch.from_numpy(S0), 20)
    assert isinstance(out, torch.Tensor)
    assert np.array_equal(out.numpy(), sf.LLG(model, dt=0.02, alpha=0.1, kT=0.2, seed=2).run(S0, 20))


# --- thermal equilibrium -----------------------------------------------------------------------
@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("h,kT", [(1.0, 0.5), (2.0, 0.5)])
def test_paramagnet_langevin_function(integrator, h, kT):
    # 1024 independent spins (J = 0) in a field: <S_z> = coth(h/T) - T/h. About 30 correlation
    # times of sampling give a statistical error near 0.5% (h/T >= 2 keeps <S_z> well above 0).
    lat = sf.Lattice("square", (32, 32))
    model = sf.Heisenberg(lat, J1=0.0, field=(0, 0, h))
    llg = sf.LLG(model, dt=0.01, alpha=0.5, kT=kT, integrator=integrator, seed=9)
    S = llg.run(lat.ferromagnetic(), 1500)
    samples = []
    llg.run(S, 3000, every=10, callback=lambda n, s, r: samples.append(s[:, 2].mean()))
    expected = 1 / np.tanh(h / kT) - kT / h
    assert np.mean(samples) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_gamma_rescales_time_including_the_noise(integrator):
    # gamma enters only through gamma*t: with the same seed, (gamma, dt) and (2 gamma, dt/2)
    # give the same trajectory, thermal field (variance 2 alpha kT/(gamma dt)) included.
    lat, model = heisenberg_lattice((8, 8))
    S0 = lat.random_spins(3)
    a = sf.LLG(model, dt=0.02, alpha=0.3, kT=0.7, gamma=1.0, integrator=integrator, seed=4).run(S0, 100)
    b = sf.LLG(model, dt=0.01, alpha=0.3, kT=0.7, gamma=2.0, integrator=integrator, seed=4).run(S0, 100)
    assert np.max(np.abs(a - b)) < 1e-12


def test_spin_temperature_matches_bath():
    lat, model = heisenberg_lattice((16, 16))
    kT = 0.4
    llg = sf.LLG(model, dt=0.01, alpha=0.5, kT=kT, seed=21)
    S = llg.run(lat.random_spins(0), 1500)
    temps = []
    llg.run(S, 2000, every=20, callback=lambda n, s, r: temps.append(sf.spin_temperature(s, r.fields)))
    assert np.mean(temps) == pytest.approx(kT, rel=0.03)


def test_spin_temperature_of_aligned_spins_is_zero_and_validates():
    lat, model = heisenberg_lattice((8, 8))
    S = lat.ferromagnetic()
    H = np.tile([0.0, 0.0, 2.0], (lat.num_sites, 1))
    assert sf.spin_temperature(S, H) == 0.0
    with pytest.raises(ValueError, match="shape"):
        sf.spin_temperature(S, H[:, :2])
    with pytest.raises(ValueError, match="undefined"):
        sf.spin_temperature(S, -H)


# --- input validation --------------------------------------------------------------------------
def test_llg_rejects_bad_parameters():
    lat, model = heisenberg_lattice((4, 4))
    for kw, word in ((dict(dt=0.0), "dt"), (dict(dt=float("nan")), "dt"), (dict(alpha=-0.1), "alpha"),
                     (dict(kT=-1.0), "kT"), (dict(gamma=0.0), "gamma"), (dict(integrator="euler"), "integrator"),
                     (dict(seed=-1), "seed"), (dict(seed=1.5), "seed")):
        args = dict(dt=0.01, alpha=0.1) | kw
        with pytest.raises(ValueError, match=word):
            sf.LLG(model, **args)
    with pytest.raises(ValueError, match="provider"):
        sf.LLG("heisenberg", dt=0.01, alpha=0.1)
    llg = sf.LLG(model, dt=0.01, alpha=0.1)
    S = lat.random_spins(0)
    with pytest.raises(ValueError, match="shape"):
        llg.run(S[:5], 10)
    with pytest.raises(ValueError, match="unit"):
        llg.run(2 * S, 10)
    with pytest.raises(ValueError, match="NaN"):
        llg.run(np.full_like(S, np.nan), 10)
    with pytest.raises(ValueError, match="steps"):
        llg.run(S, -1)
    with pytest.raises(ValueError, match="start_step"):
        llg.run(S, 1, start_step=-3)
    with pytest.raises(ValueError, match="every"):
        llg.run(S, 10, callback=lambda *a: None)


# --- GPU ---------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_cuda_matches_cpu(integrator):
    lat, model = heisenberg_lattice((16, 16))
    S0 = lat.random_spins(0)
    kw = dict(dt=0.02, alpha=0.1, kT=0.5, integrator=integrator, seed=5)
    cpu = sf.LLG(model, **kw).run(S0, 50)
    gpu = sf.LLG(model, **kw).run(torch.from_numpy(S0).cuda(), 50)
    # Same Philox integers and double-precision normals: round-off only (6e-8 with float normals).
    assert np.max(np.abs(gpu.cpu().numpy() - cpu)) < 1e-11
