"""ML force evaluation vs the bare network cost, and vs exact diagonalisation.

    python bench/ml.py [--device cpu|cuda] [--hidden 1024 512 ...] [--repeats 5]

1. One full ML force evaluation through the C++ provider (``MLForceField.compute``: descriptor,
   network, autograd fields, transfers) at 10^4 and 10^5 sites, against the bare network cost on
   precomputed features (MLP forward plus the gradient with respect to its input) of the same
   size. Ratio = full / bare; the target is <= 1.3.
2. ML vs ED (``ExactDiagonalization.compute``) on a 30x30 square lattice.
Medians of `repeats` timings after a warm-up; JSON to bench/results/ml.json.
Weights are random: the cost does not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

import spinforce
from spinforce.ml.descriptors import default_descriptor_kind
from spinforce.ml.model import build_model, export_torchscript
from _common import median_time

PUBLISHED = [1024, 512, 256, 256, 128, 128, 64, 64]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--hidden", type=int, nargs="+", default=PUBLISHED)
    p.add_argument("--activation", default="relu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--descriptor", default=default_descriptor_kind())
    p.add_argument("--cutoff", type=float, default=3.0)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 316])   # L x L: 10^4 and 10^5 sites
    p.add_argument("--ed-size", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ml.json"))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    rows = []
    # bond_shells as in configs/sd_square.toml; other descriptors take just the cutoff.
    settings = ({"cutoff": a.cutoff, "powers": [1, 2], "pair_orbits": True} if a.descriptor == "bond_shells"
                else {"cutoff": a.cutoff})
    with tempfile.TemporaryDirectory() as tmp:
        ts_path = None
        for L in a.sizes + [a.ed_size]:
            lat = spinforce.Lattice("square", L)
            model = build_model(lat, a.descriptor, settings, a.hidden, a.activation, a.dtype)
            if ts_path is None:
                ts_path = export_torchscript(model, Path(tmp) / "bench.ts")
            provider = spinforce.MLForceField(ts_path, lat, device=str(device))
            spins = torch.from_numpy(lat.random_spins(0)).to(device)
            t_ml = median_time(lambda: provider.compute(spins), a.repeats, warmup=3, sync=sync)  # TorchScript specialises over its first calls
            # Bare network: precomputed normalised features, forward + input gradient.
            model = model.to(device)
            nb = lat.neighbor_table(model.neighbor_offsets).to(device)
            with torch.no_grad():
                x0 = model.descriptor.features(spins.to(model.feature_mean.dtype), nb)
                x0 = ((x0 - model.feature_mean) / model.feature_std).contiguous()

            def bare():
                x = x0.detach().requires_grad_(True)
                torch.autograd.grad(model.mlp(x).sum(), x)

            t_bare = median_time(bare, a.repeats, warmup=3, sync=sync)
            row = {"L": L, "sites": lat.num_sites, "ml_s": t_ml, "bare_network_s": t_bare, "ratio_ml_over_bare": t_ml / t_bare}
            if L == a.ed_size:
                ed = spinforce.ExactDiagonalization(spinforce.SDModel(lat, J=6.0, filling=0.485))
                t_ed = median_time(lambda: ed.compute(spins), max(1, a.repeats // 2), warmup=1, sync=sync)
                row.update(ed_s=t_ed, ratio_ed_over_ml=t_ed / t_ml)
            rows.append(row)
            msg = f"{lat.num_sites:>7} sites: ML {t_ml * 1e3:9.2f} ms, bare network {t_bare * 1e3:9.2f} ms, ratio {t_ml / t_bare:.3f}"
            if "ed_s" in row:
                msg += f"; ED {row['ed_s'] * 1e3:.1f} ms, ED/ML {row['ratio_ed_over_ml']:.1f}"
            print(msg, flush=True)
    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "hidden": a.hidden, "activation": a.activation, "dtype": a.dtype,
              "descriptor": a.descriptor, "descriptor_settings": settings, "repeats": a.repeats, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
