"""The second export format: `spinforce export --pt2` (torch.export + AOTInductor) run by the C++ provider.

Compiling a package takes ~20 s per model on CPU, so two packages are compiled once per module
(a committee through the command line, a single model through the API) and every check reads them.
"""
import json
from pathlib import Path
import shutil
import zipfile

import numpy as np
import pytest
import torch

import spinforce
import spinforce.cli
from spinforce.data import read_dataset
from spinforce.ml.committee import CommitteeModel
from spinforce.ml.model import build_model, compute_fields, export_torchscript, model_record, save_model
from spinforce.ml.pt2 import export_pt2, read_pt2_manifest
from spinforce.simulate import simulate
from test_committee import perturbed, random_member

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The same single model and committee as TorchScript and as .pt2 packages (float64)."""
    d = tmp_path_factory.mktemp("pt2")
    lat = spinforce.Lattice("square", 6)
    base = random_member(lat, 4)
    members = [base] + [perturbed(base, 0.3, k) for k in range(1, 3)]
    paths = []
    for k, m in enumerate(members):
        paths.append(d / f"member{k}.pt")
        save_model(paths[-1], model_record(m, [{"lattice_shape": [6, 6]}], {}))
    argv = ["export", *map(str, paths), "--pt2", str(d / "committee.pt2"), "--uncertainty-threshold", "0.25"]
    assert spinforce.cli.main(argv) == 0
    committee = CommitteeModel(members, uncertainty_threshold=0.25)
    return {"dir": d, "members": paths, "single": base, "committee": committee,
            "single.ts": export_torchscript(base, d / "single.ts"),
            "single.pt2": export_pt2(base, d / "single.pt2"),
            "committee.ts": export_torchscript(committee, d / "committee.ts"),
            "committee.pt2": d / "committee.pt2"}


@pytest.mark.parametrize("which", ["single", "committee"])
def test_pt2_package_equals_torchscript_in_float64(exported, which):
    # another lattice size than the graph was traced with: N is a dynamic dimension
    for shape in [(6, 6), (9, 7)]:
        lat = spinforce.Lattice("square", shape)
        pt2 = spinforce.MLForceField(exported[f"{which}.pt2"], lat)
        ts = spinforce.MLForceField(exported[f"{which}.ts"], lat)
        assert (pt2.format, ts.format) == ("pt2", "torchscript")
        assert pt2.dtype == "float64" and pt2.committee_size == ts.committee_size
        assert pt2.uncertainty_threshold == ts.uncertainty_threshold
        assert torch.equal(pt2.neighbor_offsets, ts.neighbor_offsets)
        s = lat.random_spins(7)
        a, b = pt2.compute(s), ts.compute(s)
        ref = compute_fields(exported[which], lat, s)
        scale = np.abs(b.fields).max()
        assert scale > 0.1  # fields of order one: the tolerance below is a relative one
        np.testing.assert_allclose(a.fields, b.fields, rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(a.fields, ref.fields, rtol=0, atol=1e-10 * scale)
        assert a.energy == pytest.approx(b.energy, rel=1e-10)
        if which == "committee":
            assert np.abs(b.uncertainty).max() > 1e-3
            np.testing.assert_allclose(a.uncertainty, b.uncertainty, rtol=0, atol=1e-10 * scale)
        else:
            assert a.uncertainty is None
        e = pt2.site_energies(s)
        np.testing.assert_allclose(e, ts.site_energies(s), rtol=0, atol=1e-10 * np.abs(e).max())
        assert e.sum() == pytest.approx(a.energy, rel=1e-12)
        rt = pt2.compute(torch.from_numpy(s))  # torch in, torch out
        assert torch.is_tensor(rt.fields) and rt.fields.dtype == torch.float64


def test_pt2_manifest(exported):
    meta = read_pt2_manifest(exported["committee.pt2"])
    assert meta["lattice_kind"] == "square" and meta["committee_size"] == "3" and meta["dtype"] == "float64"
    assert json.loads(meta["neighbor_offsets"]) == exported["committee"].neighbor_offsets.tolist()
    assert read_pt2_manifest(exported["committee.ts"]) is None  # a TorchScript file is no package
    lat = spinforce.Lattice("square", 6)
    with pytest.raises(ValueError, match="compiled for float64; it cannot run in float32"):
        spinforce.MLForceField(exported["single.pt2"], lat, dtype="float32")
    with pytest.raises(ValueError, match="trained on the 'square' lattice"):
        spinforce.MLForceField(exported["single.pt2"], spinforce.Lattice("triangular", 6))


def _edited(src, dst, **changes):
    """A copy of the package `src` whose manifest has `changes`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(".wrapper_metadata.json"):
                data = json.dumps({**json.loads(data), **changes}).encode()
            zout.writestr(item, data)
    return dst


def test_a_damaged_package_is_a_clear_error(exported, tmp_path):
    lat = spinforce.Lattice("square", 6)
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(exported["single.pt2"].read_bytes()[:5000])
    notes = tmp_path / "notes.pt2"
    notes.write_text("not a package")
    for path in (cut, notes):
        with pytest.raises(ValueError, match="is not a spinforce .pt2 package"):
            spinforce.MLForceField(path, lat)


@pytest.mark.parametrize("changes, message", [
    ({"descriptor_version": "99"}, "bond_shells descriptor version 99; this spinforce has version 1"),
    ({"format_version": "2"}, "format_version 2; this spinforce reads version 1"),
    ({"lattice_kind": "triangular"}, "trained on the 'triangular' lattice"),
    ({"device": "cuda"}, "compiled for the cuda device; it cannot run on 'cpu'"),
])
def test_cpp_provider_checks_the_package_manifest(exported, tmp_path, changes, message):
    path = _edited(exported["single.pt2"], tmp_path / "edited.pt2", **changes)
    with pytest.raises(ValueError, match=message):
        spinforce._core.MLForceField(str(path), spinforce.Lattice("square", 6))  # the C++ class itself


def test_export_pt2_refuses_before_compiling(exported, tmp_path):
    model = exported["single"]
    with pytest.raises(ValueError, match="must end in .pt2"):
        export_pt2(model, tmp_path / "model.ts")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_pt2(model, exported["single.pt2"])
    notes = tmp_path / "notes.pt2"
    notes.write_text("mine")
    with pytest.raises(FileExistsError, match="not a .pt2 package spinforce exported"):
        export_pt2(model, notes, overwrite=True)
    assert notes.read_text() == "mine"
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_pt2(model, tmp_path / "m.pt2", dtype="float16")
    group = build_model(spinforce.Lattice("triangular", 6), "group", {}, [4], "silu", "float64")
    with pytest.raises(ValueError, match="'group' descriptor cannot be exported as .pt2"):
        export_pt2(group, tmp_path / "g.pt2")  # its operators fix N: the package would run on one size only
    assert not (tmp_path / "g.pt2").exists()
    # the command line: --dtype/--device belong to --pt2, one output format at a time
    argv = ["export", str(exported["members"][0]), "--torchscript", str(tmp_path / "m.ts")]
    assert spinforce.cli.main(argv + ["--dtype", "float32"]) == 2
    with pytest.raises(SystemExit):
        spinforce.cli.main(argv + ["--pt2", str(tmp_path / "m.pt2")])
    assert spinforce.cli.main(["export", str(exported["members"][0]), "--pt2", str(exported["single.pt2"])]) == 2
    assert not (tmp_path / "m.ts").exists()


@pytest.mark.filterwarnings("ignore::spinforce.ml.committee.UncertaintyWarning")  # random members disagree
def test_simulate_runs_a_pt2_package_like_its_torchscript(exported, tmp_path):
    """The LLG loop with the compiled package: the same trajectory as with the TorchScript file."""
    frames = {}
    for fmt in ("ts", "pt2"):
        cfg = {"output": str(tmp_path / f"{fmt}.h5"), "lattice": {"kind": "square", "shape": [6, 6]},
               "method": {"name": "ml", "path": str(exported[f"committee.{fmt}"])}, "model": {},
               "dynamics": {"dt": 0.02, "alpha": 0.1, "kT": 0.05, "seed": 3, "steps": 20, "save_every": 10}}
        frames[fmt] = read_dataset(simulate(cfg, progress=False).path)
    assert frames["pt2"].num_frames == 3
    np.testing.assert_allclose(frames["pt2"].spins, frames["ts"].spins, rtol=0, atol=1e-10)
    np.testing.assert_allclose(frames["pt2"].scalars["uncertainty_max"], frames["ts"].scalars["uncertainty_max"],
                               rtol=1e-9)
    assert np.abs(frames["pt2"].spins[-1] - frames["pt2"].spins[0]).max() > 1e-3  # the spins moved


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_package_equals_torchscript_on_the_gpu(exported, tmp_path):
    path = export_pt2(exported["committee"], tmp_path / "committee_cuda.pt2", device="cuda")
    assert read_pt2_manifest(path)["device"] == "cuda"
    lat = spinforce.Lattice("square", (9, 7))
    s = torch.from_numpy(lat.random_spins(2)).cuda()
    a = spinforce.MLForceField(path, lat, device="cuda").compute(s)
    b = spinforce.MLForceField(exported["committee.ts"], lat, device="cuda").compute(s)
    assert a.fields.is_cuda
    scale = b.fields.abs().max().item()
    assert (a.fields - b.fields).abs().max().item() < 1e-10 * scale
    assert (a.uncertainty - b.uncertainty).abs().max().item() < 1e-10 * scale
    with pytest.raises(ValueError, match="compiled for the cuda device"):
        spinforce.MLForceField(path, lat)  # a CUDA package does not run on the CPU


def test_the_backward_gathers_instead_of_scattering(exported):
    """The gather's backward is rewritten from a scatter-add (atomic adds when compiled) to a
    gather over the inverse neighbour table; the rewritten graph gives the same fields."""
    from torch.fx.experimental.proxy_tensor import make_fx
    from spinforce.ml.pt2 import _gathers_for_scatters, _Program
    model = exported["single"]
    lat = spinforce.Lattice("square", (9, 7))
    offsets = model.neighbor_offsets
    inputs = (torch.from_numpy(lat.random_spins(1)), lat.neighbor_table(offsets), lat.neighbor_table(-offsets))
    graph = make_fx(_Program(model), tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    before = graph(*inputs)
    assert _gathers_for_scatters(graph) == 1
    assert not [n for n in graph.graph.nodes if n.target is torch.ops.aten.index_put.default]
    after = graph(*inputs)
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=1e-12)


def test_export_pt2_without_a_compiler_says_so(exported, tmp_path):
    import torch._inductor.config as inductor_config
    with inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}):
        with pytest.raises(FileNotFoundError, match="needs a C\\+\\+ compiler"):
            export_pt2(exported["single"], tmp_path / "m.pt2")
    assert not (tmp_path / "m.pt2").exists()


def test_a_package_runs_domain_decomposed(exported):
    """What `torchrun -m spinforce simulate` needs of a provider: slab fields with a halo of twice
    the neighbourhood equal the whole lattice's, and the site energies sum to the energy."""
    from spinforce.distributed import reach
    from spinforce.ml.provider import exported_neighbor_offsets
    from test_distributed_simulate import random_spins, slab_fields
    path = exported["committee.pt2"]
    offsets = exported_neighbor_offsets(path)
    assert torch.equal(offsets, exported["committee"].neighbor_offsets)
    shape = (6, 16)
    spins = random_spins(96, 3)
    whole = spinforce.MLForceField(path, spinforce.Lattice("square", shape))
    make = lambda s: spinforce.MLForceField(path, spinforce.Lattice("square", s))  # noqa: E731
    got = slab_fields(make, spins, shape, 2, 2 * reach(offsets))
    np.testing.assert_allclose(got, whole.compute(spins).fields, rtol=0, atol=1e-12)
    assert whole.site_energies(spins).sum() == pytest.approx(whole.compute(spins).energy, rel=1e-12)


def test_an_exported_file_is_rebuilt_for_another_format(exported, tmp_path):
    """`spinforce export MODEL.ts --pt2 OUT`: a TorchScript file (a shipped committee has no
    model.pt files) rebuilt as the Python model it was exported from."""
    from spinforce.ml.committee import load_exported
    lat = spinforce.Lattice("square", (9, 7))
    s = lat.random_spins(4)
    for which in ("single", "committee"):
        rebuilt = load_exported(exported[f"{which}.ts"])
        assert type(rebuilt) is type(exported[which])
        a, b = compute_fields(rebuilt, lat, s), compute_fields(exported[which], lat, s)
        np.testing.assert_array_equal(a.fields, b.fields)
        assert a.energy == b.energy
    assert load_exported(exported["committee.ts"]).threshold == pytest.approx(0.25)
    shipped = load_exported(Path(spinforce.__file__).parent / "models" / "de_square.ts")
    assert shipped.committee_size == 3 and shipped.descriptor.settings()["cutoff"] == 3.0
    # the command line: TorchScript in, TorchScript out (the --pt2 path is the same model into export_pt2)
    out = tmp_path / "again.ts"
    assert spinforce.cli.main(["export", str(exported["committee.ts"]), "--torchscript", str(out)]) == 0
    np.testing.assert_array_equal(spinforce.MLForceField(out, lat).compute(s).fields,
                                  spinforce.MLForceField(exported["committee.ts"], lat).compute(s).fields)
    with pytest.raises(ValueError, match="not a TorchScript force field"):
        load_exported(exported["members"][0])
