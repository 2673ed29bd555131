"""The integrator registry: chunked runs, and the fourth-order Runge-Kutta scheme against exact results."""
import numpy as np
import pytest

import spinforce as sf
from spinforce.dynamics import INTEGRATORS

pytestmark = pytest.mark.usefixtures("single_thread")


def test_registry_names_the_schemes():
    assert INTEGRATORS[0] == "sib" and {"sib", "heun", "rk4"} <= set(INTEGRATORS)
    with pytest.raises(ValueError, match="integrator must be one of"):
        sf._core.LLG(sf.Heisenberg(sf.Lattice("square", (1, 1)), J1=0.0), dt=0.1, alpha=0.1, integrator="euler")


@pytest.mark.parametrize("integrator", ["sib", "heun", "rk4"])
def test_chunked_runs_reuse_the_last_frame_fields(integrator):
    # A chunk that ends on a frame leaves its fields to the next chunk: two runs of 50 steps
    # evaluate the provider as often as one run of 100 (stages x steps + frames - reused
    # frame fields), and give the same spins bit for bit.
    lat = sf.Lattice("square", (6, 6))
    model = sf.Heisenberg(lat, J1=1.0, field=(0.0, 0.0, 0.3))
    S0 = lat.random_spins(2)
    kw = dict(dt=0.02, alpha=0.1, kT=0.2, integrator=integrator, seed=3)
    one = sf._core._CountingProvider(model)
    whole = sf.LLG(one, **kw).run(S0, 100, every=10, callback=lambda *a: None)
    two = sf._core._CountingProvider(model)
    llg = sf.LLG(two, **kw)
    mid = llg.run(S0, 50, every=10, callback=lambda *a: None)
    final = llg.run(mid, 50, every=10, callback=lambda *a: None)
    stages = {"sib": 2, "heun": 2, "rk4": 4}[integrator]
    assert one.evaluations == stages * 100 + 10 - 9
    assert two.evaluations == one.evaluations
    assert np.array_equal(final, whole)
    # Other spins than the last frame's are evaluated afresh.
    three = sf._core._CountingProvider(model)
    llg = sf.LLG(three, **kw)
    llg.run(S0, 10, every=10, callback=lambda *a: None)
    llg.run(lat.random_spins(7), 1)
    assert three.evaluations == stages * 10 + 1 + stages


def larmor(S0, B, alpha, gamma, t):
    """Exact damped precession of one spin about B z: tan(theta/2) decays as exp(-alpha gamma B t
    /(1 + alpha^2)) while phi turns at gamma B/(1 + alpha^2)."""
    theta0, phi0 = np.arccos(S0[2]), np.arctan2(S0[1], S0[0])
    rate = gamma * B / (1 + alpha ** 2)
    theta = 2 * np.arctan(np.tan(theta0 / 2) * np.exp(-alpha * rate * t))
    phi = phi0 + rate * t
    return np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])


def test_rk4_damped_larmor_precession_is_fourth_order():
    B, alpha, gamma, T = 2.0, 0.3, 1.5, 3.0
    S0 = np.array([0.6, 0.0, -0.8])
    model = sf.Heisenberg(sf.Lattice("square", (1, 1)), J1=0.0, field=(0.0, 0.0, B))

    def error(dt):
        S = sf.LLG(model, dt=dt, alpha=alpha, gamma=gamma, integrator="rk4").run(S0[None], round(T / dt))
        return np.max(np.abs(S[0] - larmor(S0, B, alpha, gamma, T)))

    coarse, fine = error(0.02), error(0.01)
    assert coarse < 2e-7
    assert 12 < coarse / fine < 20  # 2^4 = 16 for a fourth-order scheme


def test_rk4_conserves_energy_without_damping():
    # alpha = 0, kT = 0 from random spins over t = 20: the energy per spin stays within 1e-7 of
    # its start at dt = 0.01, far below SIB and Heun (test_llg.py: 5e-5 and 1e-5).
    lat = sf.Lattice("square", (16, 16))
    model = sf.Heisenberg(lat, J1=1.0, J2=0.2, field=(0.1, 0.0, 0.3), anisotropy=0.15)
    S0 = lat.random_spins(5)
    E0 = model.compute(S0).energy
    energies = []
    sf.LLG(model, dt=0.01, alpha=0.0, integrator="rk4").run(S0, 2000, every=50,
                                                           callback=lambda n, s, r: energies.append(r.energy))
    assert max(abs(np.array(energies) - E0)) / lat.num_sites < 1e-7
