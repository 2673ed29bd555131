"""The second export format: a compiled AOTInductor package (``.pt2``) run by C++ without Python.

    spinforce export MODEL --pt2 OUT.pt2 [--dtype float32] [--device cuda]

TorchScript, the first format, is deprecated in torch; ``torch.export`` is its successor. A
force field's forward differentiates its energy (``torch.autograd.grad``), which
``torch.export`` cannot capture directly. So the model's forward *and* backward are first traced
into one plain ATen graph (``make_fx`` with symbolic shapes: the number of sites N stays free),
that graph is exported with N as a dynamic dimension, and AOTInductor compiles it into a shared
library packed in a ``.pt2`` zip. ``spinforce.MLForceField`` (the C++ provider) loads either
format; a ``.pt2`` runs as compiled C++/OpenMP code with no interpreter and no autograd.

The package's program: forward(spins (N,3), neighbors (N,m), inverse_neighbors (N,m)) ->
(energy, fields (N,3)[, uncertainty (N,)], site energies (N,)), the uncertainty for a committee;
inverse_neighbors = lattice.neighbor_table(-neighbor_offsets) lets the backward gather where
autograd would scatter (_gathers_for_scatters).
Its manifest is AOTInductor metadata (strings): the keys of the TorchScript attributes
(format "spinforce-pt2", format_version, lattice_kind, descriptor_kind, descriptor_version,
neighbor_offsets as JSON, committee_size, uncertainty_threshold) plus dtype and device.

A package is fixed to what it was compiled for: one dtype, one device type (cpu or cuda) and
the CPU instruction set of the machine that compiled it (AOTI_CPU_ISA in the manifest); the
same torch release must run it. Compiling needs a C++ compiler (the one torch.compile uses)
and takes ~0.5-2 min per model on CPU. Models with the bond-shell descriptor export; the
"group" descriptor's C++ operators fix the number of sites when traced, so those models are
refused (TorchScript runs them).
"""
from __future__ import annotations

import copy
import io
import json
import math
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..outputs import atomic_write
from .model import DTYPES, check_export_target, quiet_torchscript

__all__ = ["export_pt2", "read_pt2_manifest", "PT2_FORMAT", "PT2_FORMAT_VERSION"]

PT2_FORMAT = "spinforce-pt2"
PT2_FORMAT_VERSION = 1  # cpp/ml/manifest.hpp kPt2FormatVersion


class _Program(nn.Module):
    """What the package computes: the model's energy and fields (and committee uncertainty),
    plus its site energies (the distributed energy sums them over a slab)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, spins, neighbors, inverse_neighbors):
        # inverse_neighbors is read only by the backward that _gathers_for_scatters writes
        site_energies, *rest = self.model.site_energies_and_fields(spins, neighbors)
        return (site_energies.sum(), *rest, site_energies)


def _gathers_for_scatters(graph: torch.fx.GraphModule) -> int:
    """Rewrite the backward of the neighbour gather ``spins[neighbors]`` as a gather.

    Autograd's backward of the gather is a scatter-add, out[neighbors[j, k]] += g[j, k], which
    Inductor compiles into atomic adds. On a periodic lattice each column of the neighbour table
    is a translation, j -> j + d_k, so the scatter is a gather over the inverse table
    inverse_neighbors[i, k] = i - d_k: out[i] = sum_k g[inverse_neighbors[i, k], k]. Returns the
    number of scatters rewritten."""
    g = graph.graph
    _, neighbors, inverse = [n for n in g.nodes if n.op == "placeholder"]
    rewritten = 0
    for node in list(g.nodes):
        if node.target is not torch.ops.aten.index_put.default:
            continue
        base, indices, values = node.args[:3]
        accumulate = node.args[3] if len(node.args) > 3 else node.kwargs.get("accumulate", False)
        if not (accumulate and list(indices) == [neighbors] and base.target is torch.ops.aten.new_zeros.default):
            continue
        with g.inserting_before(node):
            width = int(neighbors.meta["val"].shape[1])  # m: only N stays symbolic
            columns = g.call_function(torch.ops.aten.arange.start_step, (0, width, 1),
                                      {"dtype": torch.int64, "device": neighbors.meta["val"].device})
            picked = g.call_function(torch.ops.aten.index.Tensor, (values, [inverse, columns]))
            summed = g.call_function(torch.ops.aten.sum.dim_IntList, (picked, [1]))
        node.replace_all_uses_with(summed)
        g.erase_node(node)
        rewritten += 1
    g.eliminate_dead_code()
    graph.recompile()
    return rewritten


def read_pt2_manifest(path) -> dict | None:
    """The manifest (metadata strings) of a spinforce .pt2 package, or None if `path` is not one."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".wrapper_metadata.json")]
            if len(names) != 1:
                return None
            meta = json.loads(z.read(names[0]))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == PT2_FORMAT else None


def _manifest(model: nn.Module, dtype: str, device: str) -> dict:
    from .._version import __version__
    threshold = getattr(model, "uncertainty_threshold", math.nan)
    return {"format": PT2_FORMAT, "format_version": str(PT2_FORMAT_VERSION), "spinforce_version": __version__,
            "torch_version": torch.__version__, "lattice_kind": model.lattice_kind,
            "descriptor_kind": model.descriptor_kind, "descriptor_version": str(model.descriptor_version),
            "neighbor_offsets": json.dumps(model.neighbor_offsets.cpu().tolist()),
            "committee_size": str(getattr(model, "committee_size", 1)),
            "uncertainty_threshold": "nan" if math.isnan(threshold) else repr(float(threshold)),
            "dtype": dtype, "device": device}


def export_pt2(model: nn.Module, out, *, dtype: str | None = None, device: str = "cpu",
               overwrite: bool = False, num_sites: int = 64) -> Path:
    """Compile `model` (a SiteEnergyModel or a committee.CommitteeModel) into the AOTInductor
    package `out` (a path ending in .pt2) for spinforce.MLForceField.

    dtype: "float32" or "float64" (default: the model's own); the package runs only in it.
    device: "cpu" or "cuda", the device type the package runs on. num_sites: the size of the
    example input the graph is traced with (any size runs; it must not be 0 or 1, which torch
    specialises).
    """
    from torch.fx.experimental.proxy_tensor import make_fx
    if getattr(model, "mu_input", False):
        raise ValueError("a model with the chemical potential as input (fixed filling or fixed mu) is exported as "
                         "TorchScript only (--torchscript OUT); .pt2 packages hold models at one fixed mu")
    out = Path(out)
    if out.suffix != ".pt2":
        raise ValueError(f"the package path must end in .pt2 (AOTInductor's convention), got {out}")
    check_export_target(out, overwrite, lambda p: read_pt2_manifest(p) is not None, ".pt2 package")
    dtype = dtype or model.dtype_name
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (the device type the package runs on), got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but this torch has no CUDA device: compile a CUDA package "
                         "on a machine with a GPU")
    if num_sites < 2:
        raise ValueError(f"num_sites must be >= 2, got {num_sites}")
    model = copy.deepcopy(model).to(device=device, dtype=DTYPES[dtype]).eval()
    model.requires_grad_(False)  # only d(energy)/d(spins) belongs in the graph
    model.dtype_name = dtype  # the record of it: the cast above moved the weights and dtype buffers
    program = _Program(model)
    m = model.neighbor_offsets.shape[0]
    generator = torch.Generator().manual_seed(0)
    spins = torch.randn(num_sites, 3, dtype=DTYPES[dtype], generator=generator)
    spins = (spins / spins.norm(dim=1, keepdim=True)).to(device)
    neighbors = torch.randint(0, num_sites, (num_sites, m), generator=generator).to(device)
    inverse = torch.randint(0, num_sites, (num_sites, m), generator=generator).to(device)
    with quiet_torchscript(), warnings.catch_warnings():
        # torch.export's and Inductor's internals warn about their own deprecations (importing
        # Inductor touches torch.jit); nothing a user can act on
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\..*")
        # Forward and backward as one ATen graph with N symbolic; the model's weights are real
        # tensors (constants of the graph), the inputs fake.
        graph = make_fx(program, tracing_mode="symbolic", _allow_non_fake_inputs=True)(spins, neighbors, inverse)
        _gathers_for_scatters(graph)
        N = torch.export.Dim("N", min=2)
        try:
            exported = torch.export.export(graph, (spins, neighbors, inverse), dynamic_shapes=({0: N},) * 3,
                                           strict=False)
        except torch._dynamo.exc.UserError as e:
            if "specialized it to be a constant" not in str(e):
                raise
            # the package would run on one lattice size only
            raise ValueError(f"the {model.descriptor_kind!r} descriptor cannot be exported as .pt2: its operators fix "
                             "the number of sites of the traced graph; export this model with --torchscript") from None
        buffer = io.BytesIO()
        _compile(exported, buffer, model, dtype, device)
    with atomic_write(out) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return out


def _compile(exported, buffer, model, dtype: str, device: str) -> None:
    """AOTInductor: the exported graph -> a package in `buffer`."""
    try:
        torch._inductor.aoti_compile_and_package(
            exported, package_path=buffer,
            inductor_configs={"aot_inductor.metadata": _manifest(model, dtype, device),
                              # serial generated kernels; the matrix products still run on
                              # torch's threads. spinforce's idle OpenMP threads sleep at once
                              # (runtime.py), which makes each of the ~30 parallel regions of a
                              # threaded package cost a wake-up: 4.8x slower on 2 threads.
                              "cpp.threads": 1})
    except torch._inductor.exc.InductorError as e:
        if "InvalidCxxCompiler" not in str(e):
            raise
        raise FileNotFoundError("compiling a .pt2 package needs a C++ compiler (g++ or clang++, or the one the CXX "
                                "environment variable names) and none works here: install one, or export with "
                                "--torchscript") from None
