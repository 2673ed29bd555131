"""Force evaluation of a committee on point-group images: every image's row vs the site's one row.

    python bench/image_rows.py [--model spinforce/models/tetra_triangular_kT03.ts] [--sizes 48 96]
                               [--threads 1 2] [--repeats 7]

A descriptor with point-group images (ordered_bonds: 12 on the triangular lattice) gives every
site |G| rows of features, the network is averaged over them and the fields are its gradient.
Two ways to evaluate the same committee (its members, weights and normalisation) in TorchScript:
- rows:   gather every image's row (descriptor.features, N |G| rows of F), normalise them, run each
          member's network on them and let autograd differentiate it (the plain way);
- site:   what SiteEnergyModel.evaluate / CommitteeModel do: the first layer runs on each site's
          one row (site_features, N rows) with its weights' columns permuted into every image
          (image_columns: one product (N, F) x (F, |G| H)), and the network's backward pass is
          written out (energies_and_gradient); autograd only takes the gradient from the
          features to the spins.
Both are scripted with the plain executor (as the C++ provider and MLForceField run them) and
timed interleaved on the same random spins; the fields are compared. Ratio = rows / site.
Medians; JSON to bench/results/image_rows.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from spinforce.lattice import Lattice
from spinforce.ml.committee import load_exported, torque_spread
from spinforce.ml.model import quiet_torchscript
from _common import interleaved_medians, write_json

SHIPPED = Path(__file__).resolve().parents[1] / "python" / "spinforce" / "models" / "tetra_triangular_kT03.ts"


class EveryImageRow(nn.Module):
    """The committee's mean fields and per-site uncertainty from every image's row, by autograd."""

    def __init__(self, committee):
        super().__init__()
        self.descriptor = committee.descriptor
        self.members = committee.members
        self.images: int = int(committee.images)

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor):
        s = spins.detach().requires_grad_(True)
        rows = self.descriptor.features(s, neighbors)
        fields: List[torch.Tensor] = []
        for member in self.members:
            x = (rows - member.feature_mean) / member.feature_std
            e = member.energy_shift + member.energy_scale * member.mlp(x).view(-1, self.images).mean(1)
            grad: Optional[torch.Tensor] = torch.autograd.grad([e.sum()], [s], retain_graph=True)[0]
            assert grad is not None
            fields.append(-grad)
        h = torch.stack(fields)
        return h.mean(0), torque_spread(s.detach(), h)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(SHIPPED), help="exported committee on a descriptor with images")
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 96])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--name", default="image_rows")
    a = p.parse_args()
    committee = load_exported(a.model).eval().requires_grad_(False)
    if committee.images < 2 or not hasattr(committee, "members"):
        raise SystemExit(f"{a.model} is not a committee on a descriptor with point-group images")
    with quiet_torchscript():
        site = torch.jit.script(committee)
        rows = torch.jit.script(EveryImageRow(committee))
    out = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        for side in a.sizes:
            lattice = Lattice(committee.lattice_kind, (side, side))
            nb = lattice.neighbor_table(committee.neighbor_offsets)
            spins = torch.from_numpy(lattice.random_spins(side)).to(committee.dtype_reference.dtype)
            with torch.jit.optimized_execution(False):
                h_rows, u_rows = rows(spins, nb)
                _, h_site, u_site = site(spins, nb)
                t = interleaved_medians({"rows": lambda: rows(spins, nb), "site": lambda: site(spins, nb)},
                                        repeats=a.repeats, warmup=2)
            scale = float(h_rows.pow(2).sum(1).mean().sqrt())
            row = {"L": side, "sites": lattice.num_sites, "threads": threads, "rows_s": t["rows"], "site_s": t["site"],
                   "ratio_rows_over_site": t["rows"] / t["site"],
                   "site_us_per_site": t["site"] / lattice.num_sites * 1e6,
                   "rows_us_per_site": t["rows"] / lattice.num_sites * 1e6,
                   "max_field_difference_over_rms_field": float((h_rows - h_site).abs().max()) / scale,
                   "max_uncertainty_difference_over_rms_field": float((u_rows - u_site).abs().max()) / scale}
            out.append(row)
            print(f"{side}x{side}, {threads} thread(s): every image's row {row['rows_us_per_site']:.1f} us/site, "
                  f"site row {row['site_us_per_site']:.1f} us/site, ratio {row['ratio_rows_over_site']:.2f}; "
                  f"largest field difference {row['max_field_difference_over_rms_field']:.1e} of the RMS field")
    write_json(a.name, {"model": str(a.model), "descriptor": committee.descriptor_kind, "images": committee.images,
                        "members": committee.committee_size, "dtype": committee.dtype_name, "repeats": a.repeats,
                        "rows": out})


if __name__ == "__main__":
    main()
