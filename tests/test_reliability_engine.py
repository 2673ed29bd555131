"""The engine refuses what it cannot do well: non-finite results, sizes it cannot hold, work
that would never end, silently coerced arguments; and it keeps its speed on a busy machine."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import spinforce as sf
from spinforce.data import DatasetWriter

PYTHON_PATH = str(Path(sf.__file__).resolve().parents[1])


def run_python(code: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter; a hang fails the test at `timeout` seconds."""
    full_env = {**os.environ, "PYTHONPATH": PYTHON_PATH, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def heisenberg(shape=(4, 4), **couplings):
    lat = sf.Lattice("square", shape)
    return lat, sf.Heisenberg(lat, **({"J1": 1.0} | couplings))


# --- 6: non-finite values ------------------------------------------------------------------

def test_llg_names_the_step_where_a_huge_time_step_makes_spins_non_finite():
    lat, provider = heisenberg()
    llg = sf.LLG(provider, dt=1e160, alpha=0.1)
    with pytest.raises(ValueError, match=r"LLG step 1 .*non-finite spins.*dt = 1e\+160.*reduce dt"):
        llg.run(lat.random_spins(0), 3)
    # Five ordinary steps first: the message counts from where the run started.
    sf.LLG(provider, dt=0.05, alpha=0.1).run(lat.random_spins(0), 5)
    with pytest.raises(ValueError, match=r"LLG step 6 "):
        sf.LLG(provider, dt=1e160, alpha=0.1).run(lat.random_spins(0), 3, start_step=5)


def test_providers_refuse_non_finite_fields():
    # J1 = 1e308: four aligned neighbours give a field of -4e308, beyond the largest double.
    lat, provider = heisenberg(J1=1e308)
    spins = lat.ferromagnetic()
    with pytest.raises(ValueError, match="Heisenberg provider returned a non-finite"):
        provider.compute(spins)
    with pytest.raises(ValueError, match="LLG step 1 .*Heisenberg provider returned non-finite fields"):
        sf.LLG(provider, dt=0.01, alpha=0.1).run(spins, 2)
    # The same model with a representable coupling is exact: H_i = -J1 * 4 S for the ferromagnet.
    _, finite = heisenberg(J1=1e300)
    np.testing.assert_allclose(finite.compute(spins).fields, -4e300 * spins, rtol=1e-15)


def test_kpm_refuses_bounds_narrower_than_the_spectrum():
    lat = sf.Lattice("triangular", (4, 4))
    model = sf.SDModel(lat, J=2.0, mu=0.5, kT=0.05)
    # Ferromagnetic spins reach both ends of the spectrum of every configuration (ED, independent).
    levels = np.linalg.eigvalsh(sf.ExactDiagonalization(model).hamiltonian(lat.ferromagnetic()).numpy())
    lo, hi = levels[0], levels[-1]
    for bounds in ((lo + 0.05, hi), (lo, hi - 0.05), (-1.0, 1.0)):
        with pytest.raises(ValueError, match=r"bounds .* are narrower than the spectrum of the model"):
            sf.KPM(model, moments=50, bounds=bounds)
    # Bounds that contain the spectrum converge to ED like the default ones.
    spins = lat.random_spins(3)
    ed = sf.ExactDiagonalization(model).compute(spins)
    wide = sf.KPM(model, moments=400, bounds=(lo - 0.5, hi + 0.5)).compute(spins)
    assert abs(wide.energy - ed.energy) / lat.num_sites < 1e-3
    assert np.abs(wide.fields - ed.fields).max() < 2e-2


def test_dataset_writer_refuses_non_finite_frames(tmp_path):
    lat, provider = heisenberg()
    spins = lat.random_spins(0)
    fields = provider.compute(spins).fields
    with DatasetWriter(tmp_path / "d.h5", lattice_kind="square", lattice_shape=(4, 4), num_sites=16,
                       method="heisenberg", model={}) as writer:
        writer.append(spins, fields, 1.0, time=0.5, step=10)
        bad = spins.copy()
        bad[3, 1] = np.nan
        with pytest.raises(ValueError, match=r"frame 1 \(step 20\) has non-finite spins"):
            writer.append(bad, fields, 1.0, time=1.0, step=20)
        with pytest.raises(ValueError, match=r"frame 1 \(an independent sample\) has non-finite energy"):
            writer.append(spins, fields, float("inf"))
        assert writer.num_frames == 1


# --- 8: sizes that cannot be represented -------------------------------------------------------

def test_lattice_refuses_a_site_count_beyond_the_limit():
    with pytest.raises(ValueError, match=r"lattice shape \(4294967296, 4294967296\) has 1\.8.*e\+19 sites"):
        sf.Lattice("square", (2**32, 2**32))
    with pytest.raises(ValueError, match="2\\^40"):
        sf.Lattice("cubic", (2**14, 2**14, 2**13))
    assert sf.Lattice("cubic", (2**14, 2**14, 2**12)).num_sites == 2**40  # the limit itself is fine


def test_providers_refuse_lattices_too_large_for_memory_before_allocating():
    huge = sf.Lattice("square", (10**6, 10**6))  # 10^12 sites: a 32 TB neighbour table
    with pytest.raises(ValueError, match=r"neighbour table .* square lattice of shape \(1000000, 1000000\) needs"):
        sf.Heisenberg(huge, J1=1.0)
    big = sf.Lattice("square", (400, 400))
    with pytest.raises(ValueError, match=r"exact diagonalisation of the square lattice of shape \(400, 400\)"):
        sf.ExactDiagonalization(sf.SDModel(big, J=1.0, mu=0.0))
    with pytest.raises(ValueError, match=r"KPM with 320000 probe vectors .* \(400, 400\) .*reduce probing_distance"):
        sf.KPM(sf.SDModel(big, J=1.0, mu=0.0), moments=10)


# --- 9: no hangs -------------------------------------------------------------------------------

def test_sizes_are_checked_before_distances_are_enumerated(tmp_path):
    # Each of these ran for minutes (or forever) before any check; now each returns at once.
    code = f"""
import time, numpy as np, spinforce as sf
from spinforce.data import DatasetWriter
from spinforce.descriptors.registry import DESCRIPTOR_KINDS, make_descriptor
from spinforce.ml.training import train

def refused(call, pattern):
    t0 = time.perf_counter()
    try:
        call()
    except ValueError as e:
        assert pattern in str(e), str(e)
        return time.perf_counter() - t0
    raise AssertionError("no ValueError")

lat = sf.Lattice("triangular", (4, 4))
seconds = [refused(lambda: sf.Descriptor(lat, cutoff=3000), "too large for the triangular lattice of shape (4, 4)"),
           refused(lambda: make_descriptor("bond_shells", lat, {{"cutoff": 1e6}}), "cutoff radius 1e+06 is too large"),
           refused(lambda: lat.shell_offsets(10**9), "k must lie in [1, 10000]")]
# A probing distance beyond the lattice gives every site its own colour: exact traces.
model = sf.SDModel(lat, J=2.0, mu=0.5, kT=0.05)
spins = lat.random_spins(0)
exact = sf.KPM(model, moments=60).compute(spins)
for distance in (1e4, 1e9):
    t0 = time.perf_counter()
    far = sf.KPM(model, moments=60, probing_distance=distance)
    seconds.append(time.perf_counter() - t0)
    assert far.num_colours == 16
    assert abs(far.compute(spins).energy - exact.energy) < 1e-10
# A training config with an absurd descriptor cutoff.
path = {str(tmp_path / 'd.h5')!r}
with DatasetWriter(path, lattice_kind="triangular", lattice_shape=(4, 4), num_sites=16, method="heisenberg",
                   model={{}}) as w:
    for k in range(4):
        s = lat.random_spins(k)
        w.append(s, -s, 0.0)
for kind in DESCRIPTOR_KINDS:
    config = {{"data": {{"paths": [path]}}, "descriptor": {{"kind": kind, "cutoff": 1e6}},
              "training": {{"epochs": 1}}, "output": {{"dir": {str(tmp_path / 'run')!r} + kind}}}}
    seconds.append(refused(lambda: train(config, overwrite=True, progress=False), "is too large"))
print(max(seconds))
"""
    result = run_python(code, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) < 10.0  # the old code took 59 s for the first and never ended others


def test_ctrl_c_interrupts_a_long_kpm_evaluation():
    # 10^6 Chebyshev moments on 64 x 64 sites: minutes of work inside one C++ call.
    # The child raises KeyboardInterrupt on SIGINT even where it inherits SIGINT ignored (a job
    # started in the background by a non-interactive shell), where Python would not install it.
    code = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
import spinforce as sf
lat = sf.Lattice("square", 64)
kpm = sf.KPM(sf.SDModel(lat, J=1.0, mu=0.0), moments=1000000, probing_distance=2.0)
print("computing", flush=True)
try:
    kpm.compute(lat.random_spins(0))
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    env = {**os.environ, "PYTHONPATH": PYTHON_PATH}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == "computing", proc.stderr.read()
        time.sleep(1.0)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        waited = time.perf_counter() - sent
    finally:
        proc.kill()
        proc.wait()
    assert "interrupted" in out, err[-2000:]
    assert waited < 10.0


# --- 12: no silent coercion of arguments ------------------------------------------------------

@pytest.mark.parametrize("shape", ["44", (6.5, 6), (6.0, 6), (True, 4), (4, "4"), 4.0, None])
def test_lattice_refuses_shapes_that_are_not_integers(shape):
    with pytest.raises(ValueError, match="shape"):
        sf.Lattice("square", shape)


def test_lattice_accepts_integer_shapes_of_any_integer_type():
    assert sf.Lattice("square", (np.int64(6), 5)).shape == (6, 5)
    assert sf.Lattice("cubic", np.int32(3)).shape == (3, 3, 3)


@pytest.mark.parametrize("name", ["dt", "alpha", "kT", "gamma"])
def test_llg_refuses_booleans_and_strings_for_its_numbers(name):
    _, provider = heisenberg()
    for value in (True, "0.1", 0.1 + 0j):
        with pytest.raises(ValueError, match=f"{name} must be a real number"):
            sf.LLG(provider, **({"dt": 0.05, "alpha": 0.1} | {name: value}))


def test_models_refuse_booleans_for_their_parameters():
    lat = sf.Lattice("square", 4)
    with pytest.raises(ValueError, match="J must be a real number"):
        sf.SDModel(lat, J=True, mu=0.0)
    with pytest.raises(ValueError, match="filling must be a real number"):
        sf.SDModel(lat, J=1.0, filling="0.25")
    with pytest.raises(ValueError, match="J1 must be a real number"):
        sf.Heisenberg(lat, J1=True)
    with pytest.raises(ValueError, match="field must be a finite 3-vector of real numbers"):
        sf.Heisenberg(lat, J1=1.0, field=(0, 0, 1j))
    with pytest.raises(ValueError, match=r"bounds\[1\] \(upper\) must be a real number"):
        sf.KPM(sf.SDModel(lat, J=1.0, mu=0.0), bounds=(-10.0, True))


def test_complex_spins_are_refused_not_truncated():
    lat, provider = heisenberg()
    spins = lat.random_spins(0).astype(complex)
    spins[0, 0] += 1e-3j
    with pytest.raises(ValueError, match="spins must be a real .* complex128"):
        provider.compute(spins)
    with pytest.raises(ValueError, match="spins must be a real"):
        sf.LLG(provider, dt=0.05, alpha=0.1).run(spins, 1)
    with pytest.raises(ValueError, match="spins must be a real"):
        provider.compute(lat.random_spins(0) > 0)  # booleans are no spins either


# --- 13: a busy machine ------------------------------------------------------------------------

@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores for two OpenMP threads")
def test_idle_openmp_threads_sleep_instead_of_spinning():
    # Between parallel regions a spinning runtime burns about a core for milliseconds per region;
    # with spinforce imported first the idle thread sleeps, so CPU time stays near the work done.
    code = """
import resource, time
import spinforce, torch
torch.set_num_threads(2)
x = torch.ones(2_000_000)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
x.sum()
c0 = cpu()
for _ in range(100):
    x.sum()          # one parallel region, then an idle pause
    time.sleep(0.01)
print(cpu() - c0)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = PYTHON_PATH
    cpu_seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                       timeout=120, check=True).stdout)
    # Measured: 0.11 s sleeping, 1.2 s spinning, for 1 s of pauses.
    assert cpu_seconds < 0.5


def test_a_wait_policy_chosen_by_the_user_is_kept_and_a_late_import_warns():
    code = "import os, spinforce; print(os.environ['OMP_WAIT_POLICY'])"
    assert run_python(code, 60, {"OMP_WAIT_POLICY": "ACTIVE"}).stdout.strip() == "ACTIVE"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = PYTHON_PATH
    late = subprocess.run([sys.executable, "-c", "import torch; torch.set_num_threads(2); import spinforce"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert "RuntimeWarning" in late.stderr and "OMP_WAIT_POLICY=PASSIVE" in late.stderr
