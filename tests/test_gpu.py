"""Everything that runs on a GPU, against the same computation on the CPU: Philox normals, KPM,
LLG, descriptors, the ML provider and `spinforce simulate`. All tests are marked `gpu` and
skipped (conftest.py) without a CUDA device or without this build's CUDA kernels. The CPU runs
are the references: the kernels share their per-element arithmetic with the CPU loops, so the
differences left are summation order and fused multiply-adds (round-off)."""
import warnings

import numpy as np
import pytest
import torch

import spinforce as sf
import spinforce.cli
from spinforce.data import read_dataset
from config_files import write_toml

pytestmark = pytest.mark.gpu


def on_gpu(spins):
    return torch.as_tensor(spins).cuda()


# --- Philox normals -------------------------------------------------------------------------------
def test_gpu_draws_the_cpu_normals():
    n = 4096
    for seed, step in [(0, 0), (7, 3), (2**40 + 1, 2**33 + 5)]:
        gpu = sf._core._philox_normals_cuda(seed, step, n).cpu().numpy()
        cpu = np.array([sf._core._philox_normals(seed, step, i) for i in range(n)])
        # Same Philox bits, double-precision Box-Muller: CUDA's log (1 ulp) and sin/cos (2 ulp)
        # against glibc's. Single precision differed by ~1e-7 in a fifth of the draws.
        assert np.abs(gpu - cpu).max() <= 4e-15


# --- KPM ------------------------------------------------------------------------------------------
KPM_CASES = {
    "square, filling, probing": ("square", (16, 16), dict(J=2.0, filling=0.3, kT=0.1),
                                 dict(moments=200, probing_distance=3)),
    "square, fixed mu": ("square", (12, 12), dict(J=2.0, mu=-0.5, kT=0.1), dict(moments=150, probing_distance=3)),
    "triangular, exact traces": ("triangular", (4, 4), dict(J=2.0, mu=0.5, kT=0.05), dict(moments=200)),
    "triangular, t2 t3": ("triangular", (12, 12), dict(J=3.0, t2=-0.2, t3=0.15, filling=0.25, kT=0.1),
                          dict(moments=150, probing_distance=3)),
    "cubic, t2 t3": ("cubic", (6, 6, 6), dict(J=1.5, t2=0.3, t3=-0.1, mu=-1.0, kT=0.1),
                     dict(moments=100, probing_distance=2)),
    "triangular, complex64": ("triangular", (12, 12), dict(J=2.0, filling=0.25, kT=0.1),
                              dict(moments=150, probing_distance=3, dtype="complex64")),
}


@pytest.mark.parametrize("case", list(KPM_CASES))
def test_kpm_on_gpu_matches_cpu(case):
    kind, shape, model_params, kpm_params = KPM_CASES[case]
    lat = sf.Lattice(kind, shape)
    kpm = sf.KPM(sf.SDModel(lat, **model_params), **kpm_params)
    spins = lat.random_spins(3)
    tol = 1e-4 if kpm_params.get("dtype") == "complex64" else 1e-10
    cpu, gpu = kpm.compute(torch.from_numpy(spins)), kpm.compute(on_gpu(spins))
    assert gpu.fields.is_cuda and gpu.density.is_cuda
    torch.testing.assert_close(gpu.fields.cpu(), cpu.fields, atol=tol, rtol=0)
    torch.testing.assert_close(gpu.density.cpu(), cpu.density, atol=tol, rtol=0)
    assert gpu.energy == pytest.approx(cpu.energy, abs=tol * lat.num_sites)
    assert gpu.mu == pytest.approx(cpu.mu, abs=tol)
    moments_cpu, moments_gpu = kpm.chebyshev_moments(spins), kpm._moments(on_gpu(spins)).numpy()
    np.testing.assert_allclose(moments_gpu, moments_cpu, atol=tol * moments_cpu[0], rtol=0)


def test_kpm_on_gpu_is_reproducible_and_follows_the_current_stream():
    lat = sf.Lattice("square", (32, 32))
    kpm = sf.KPM(sf.SDModel(lat, J=2.0, filling=0.3, kT=0.1), moments=100, probing_distance=3)
    spins = on_gpu(lat.random_spins(5))
    first = kpm.compute(spins)
    # Block reductions in a fixed order: the same bits on every run (atomics were not).
    for _ in range(3):
        again = kpm.compute(spins)
        assert torch.equal(again.fields, first.fields) and again.energy == first.energy
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        side = kpm.compute(spins)
    stream.synchronize()
    assert torch.equal(side.fields, first.fields)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_kernels_run_on_the_device_of_their_data():
    lat = sf.Lattice("square", (16, 16))
    spins = lat.random_spins(2)
    kpm = sf.KPM(sf.SDModel(lat, J=2.0, filling=0.3, kT=0.1), moments=100, probing_distance=3)
    llg = sf.LLG(sf.Heisenberg(lat, J1=1.0), dt=0.02, alpha=0.1, kT=0.5, seed=1)
    with torch.cuda.device(0):
        f0 = kpm.compute(torch.from_numpy(spins).to("cuda:1"))
        s0 = llg.run(torch.from_numpy(spins).to("cuda:1"), 10, start_step=0)
    assert f0.fields.device == torch.device("cuda:1") and s0.device == torch.device("cuda:1")
    torch.testing.assert_close(f0.fields.cpu(), kpm.compute(torch.from_numpy(spins)).fields, atol=1e-10, rtol=0)
    np.testing.assert_allclose(s0.cpu().numpy(), llg.run(spins, 10, start_step=0), atol=1e-12)


def test_kpm_llg_on_gpu_matches_cpu():
    lat = sf.Lattice("triangular", (8, 8))
    kpm = sf.KPM(sf.SDModel(lat, J=2.0, filling=0.25, kT=0.1), moments=120, probing_distance=2)
    spins = lat.random_spins(4)
    kw = dict(dt=0.05, alpha=0.2, kT=0.01, seed=9)
    cpu = sf.LLG(kpm, **kw).run(spins, 10)
    gpu = sf.LLG(kpm, **kw).run(on_gpu(spins), 10)
    assert np.abs(gpu.cpu().numpy() - cpu).max() < 1e-9


# --- LLG ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("integrator", ["sib", "heun"])
def test_llg_frames_callbacks_and_resume_on_gpu(integrator, tmp_path):
    lat = sf.Lattice("square", (16, 16))
    model = sf.Heisenberg(lat, J1=-1.0, anisotropy=0.2)
    spins = lat.random_spins(0)
    kw = dict(dt=0.02, alpha=0.1, kT=0.5, integrator=integrator, seed=5)

    def frames(start):
        out = []
        final = sf.LLG(model, **kw).run(start, 40, every=10, start_step=0,
                                        callback=lambda n, s, r: out.append((n, s, r)))
        return final, out

    cpu_final, cpu_frames = frames(spins)
    gpu_final, gpu_frames = frames(on_gpu(spins))
    assert [n for n, _, _ in gpu_frames] == [n for n, _, _ in cpu_frames] == [10, 20, 30, 40]
    for (_, s_cpu, r_cpu), (_, s_gpu, r_gpu) in zip(cpu_frames, gpu_frames):
        assert s_gpu.is_cuda and r_gpu.fields.is_cuda
        assert np.abs(s_gpu.cpu().numpy() - s_cpu).max() < 1e-11
        assert r_gpu.energy == pytest.approx(r_cpu.energy, abs=1e-9)
    assert np.abs(gpu_final.cpu().numpy() - cpu_final).max() < 1e-11
    # Resuming on the GPU from a frame continues bit-identically.
    llg = sf.LLG(model, **kw)
    half = llg.run(on_gpu(spins), 20, start_step=0)
    resumed = sf.LLG(model, **kw).run(half, 20, start_step=20)
    assert torch.equal(resumed, gpu_final)


def test_llg_with_heisenberg_on_gpu_makes_no_copies_or_syncs_per_step(capfd):
    lat = sf.Lattice("cubic", (8, 8, 8))
    model = sf.Heisenberg(lat, J1=1.0, J2=0.2, field=(0.0, 0.0, 0.3), anisotropy=0.1)
    spins = on_gpu(lat.random_spins(1))

    def syncs(work):
        """Synchronising CUDA operations (device-host copies, .item()) torch reports during work().
        torch reports them as Python warnings (which pytest would otherwise swallow), or on stderr
        where no Python warning handler is in place."""
        torch.cuda.synchronize()
        capfd.readouterr()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                work()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return (sum("synchroniz" in str(w.message) for w in caught)
                + capfd.readouterr().err.count("synchroniz"))

    assert syncs(lambda: spins.sum().item()) >= 1  # the counter sees a sync
    llg = sf.LLG(model, dt=0.02, alpha=0.1, kT=0.1, seed=2)
    llg.run(spins, 1, start_step=0)  # tables copied to the device once
    # Validating the input spins syncs once per run; the 30 steps (60 evaluations) add nothing.
    assert syncs(lambda: llg.run(spins, 30, start_step=0)) == syncs(lambda: llg.run(spins, 0, start_step=0))
    gpu, cpu = model.compute(spins), model.compute(spins.cpu())
    torch.testing.assert_close(gpu.fields.cpu(), cpu.fields, atol=1e-12, rtol=0)
    assert gpu.energy == pytest.approx(cpu.energy, abs=1e-10)


# --- lattice tables -------------------------------------------------------------------------------
def test_neighbour_tables_from_offsets_on_the_gpu_equal_the_cpu_ones():
    # A model moved to the GPU carries its neighbour offsets there (bench/ml.py crashed on this).
    lat = sf.Lattice("triangular", 6)
    offsets = lat.shell_offsets(2)
    assert torch.equal(lat.neighbor_table(offsets.cuda()), lat.neighbor_table(offsets))
    assert torch.equal(lat._permutations(offsets.cuda()), lat._permutations(offsets))


# --- descriptors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, L", [("square", 8), ("triangular", 8), ("cubic", 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_descriptor_on_gpu_matches_cpu(kind, L, dtype):
    lat = sf.Lattice(kind, L)
    desc = sf.Descriptor(lat).to(dtype)
    spins = torch.as_tensor(lat.random_spins(13), dtype=dtype).requires_grad_(True)
    f_cpu = desc(spins)
    (g_cpu,) = torch.autograd.grad(f_cpu.sum(), spins, create_graph=True)
    (h_cpu,) = torch.autograd.grad((g_cpu ** 2).sum(), spins)
    gpu = sf.Descriptor(lat).to(dtype).cuda()
    s = spins.detach().cuda().requires_grad_(True)
    f = gpu(s)
    (g,) = torch.autograd.grad(f.sum(), s, create_graph=True)
    (h,) = torch.autograd.grad((g ** 2).sum(), s)
    eps = torch.finfo(dtype).eps
    for a, b in ((f, f_cpu), (g, g_cpu), (h, h_cpu)):
        scale = float(b.detach().abs().max())
        torch.testing.assert_close(a.detach().cpu(), b.detach(), atol=200 * eps * scale, rtol=0)


# --- ML provider and `simulate` -------------------------------------------------------------------
@pytest.fixture(scope="module")
def group_model_file(tmp_path_factory):
    """An untrained (randomly initialised) group-descriptor model exported to TorchScript: the
    provider's arithmetic is what is compared, not the quality of a fit."""
    from spinforce.ml.model import build_model, export_torchscript
    torch.manual_seed(0)
    lat = sf.Lattice("square", 8)
    model = build_model(lat, "group", {}, [16, 16], "silu", "float64")
    return export_torchscript(model, tmp_path_factory.mktemp("gpu-ml") / "group.ts")


def test_group_descriptor_ml_provider_on_gpu_matches_cpu(group_model_file):
    lat = sf.Lattice("square", 12)
    spins = torch.from_numpy(lat.random_spins(4))
    cpu = sf.MLForceField(group_model_file, lat).compute(spins)
    gpu = sf.MLForceField(group_model_file, lat, device="cuda").compute(spins.cuda())
    assert gpu.fields.device.type == "cuda"
    torch.testing.assert_close(gpu.fields.cpu(), cpu.fields, rtol=0, atol=1e-10)
    assert gpu.energy == pytest.approx(cpu.energy, abs=1e-9)


def test_simulate_command_on_gpu_matches_cpu(group_model_file, tmp_path):
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = {
            "output": str(tmp_path / f"{device}.h5"),
            "lattice": {"kind": "square", "shape": [12, 12]},
            "method": {"name": "ml", "path": str(group_model_file), "device": device},
            "dynamics": {"dt": 0.05, "alpha": 0.1, "kT": 0.05, "seed": 3, "steps": 10, "save_every": 5},
        }
        toml = write_toml(cfg, tmp_path / f"{device}.toml")
        assert spinforce.cli.main(["simulate", str(toml)]) == 0
        runs[device] = read_dataset(tmp_path / f"{device}.h5")
    assert runs["cuda"].num_frames == runs["cpu"].num_frames == 3
    np.testing.assert_allclose(runs["cuda"].spins, runs["cpu"].spins, atol=1e-10)
    np.testing.assert_allclose(runs["cuda"].fields, runs["cpu"].fields, atol=1e-9)
