"""How far `spinforce export --point-group one` breaks the lattice's point-group symmetry.

    python bench/point_group.py MODEL.ts --states DATASET.h5 [--frames 4] [--name NAME]

MODEL.ts: an exported file whose networks average the point-group images of an ordered-bond
descriptor (every shipped ordered-bond committee). It is exported again with `--point-group one`
(member k reads image k alone: 1/|G| of the networks' cost; docs/ml.md, "One point-group image
per member") and both files run, through spinforce.MLForceField, on --frames frames of DATASET
(spins on a lattice of the model's kind with equal sides, so that every point-group operation maps
it onto itself). For each file and each operation g of the point group, the configuration moved
by g (the spin of site r goes to site g r) against the fields moved by g:

    symmetry error = sqrt(sum_i |S_i x (H_i(gS) - (gH)_i)|^2 / sum_i |S_i x H_i|^2)

mean and largest over g != identity, over the frames; and the relative torque difference between
the two files on the frames themselves. The average is exact (float32 rounding); one image is
not. Accuracy against the electrons: bench/large_lattice_error.py; cost: bench/model_cost.py.
Writes bench/results/NAME.json (--name, default point_group).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import spinforce  # before torch: the OpenMP settings
import numpy as np

from _common import write_json


def moved_sites(lattice) -> list:
    """For every point-group operation g (in lattice.point_group_matrices order): (N,) the site
    that site r goes to, g r, from the integer coordinates."""
    coords = lattice.coordinates
    shape = np.array(lattice.shape)
    flat = np.cumprod(np.r_[1, shape[:-1]])  # site index = x + Lx * y (+ Lx Ly z)
    return [((coords @ g.T) % shape) @ flat for g in lattice.point_group_matrices.numpy()]


def relative_torque(spins, fields, reference) -> float:
    """sqrt(sum |S x (H - H_ref)|^2 / sum |S x H_ref|^2)."""
    diff = np.cross(spins, fields - reference)
    ref = np.cross(spins, reference)
    return float(np.sqrt((diff * diff).sum() / (ref * ref).sum()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="exported ordered-bond file that averages its images")
    p.add_argument("--states", type=Path, required=True, help="dataset whose frames are measured")
    p.add_argument("--frames", type=int, default=4, help="frames of --states, spread over the file")
    p.add_argument("--name", default="point_group")
    a = p.parse_args()
    from spinforce.ml.committee import load_exported
    from spinforce.ml.model import export_torchscript, point_group_mode, set_point_group
    from spinforce.data import read_dataset
    if a.frames < 1:
        p.error("--frames must be >= 1")
    data = read_dataset(a.states)
    kind, shape = data.lattice_kind, tuple(data.lattice_shape)
    if len(set(shape)) != 1:
        p.error(f"--states: a lattice with equal sides is needed (every point-group operation maps it onto "
                f"itself), got {shape}")
    model = load_exported(a.model)
    if point_group_mode(model) != "average":
        p.error(f"{a.model} already runs one point-group image per member; give the file that averages them")
    lattice = spinforce.Lattice(kind, shape)
    picks = np.unique(np.linspace(0, len(data.spins) - 1, a.frames).round().astype(int))
    maps = moved_sites(lattice)[1:]  # operation 0 is the identity
    with tempfile.TemporaryDirectory() as tmp:
        one = export_torchscript(set_point_group(model, "one"), Path(tmp) / "one.ts")
        files = {"average": spinforce.MLForceField(a.model, lattice), "one": spinforce.MLForceField(one, lattice)}
        symmetry = {name: [] for name in files}
        between = []
        for k in picks:
            spins = np.asarray(data.spins[k], dtype=float)
            fields = {}
            for name, provider in files.items():
                fields[name] = provider.compute(spins).fields
                for image in maps:
                    moved, moved_fields = np.empty_like(spins), np.empty_like(spins)
                    moved[image], moved_fields[image] = spins, fields[name]
                    symmetry[name].append(relative_torque(moved, provider.compute(moved).fields, moved_fields))
            between.append(relative_torque(spins, fields["one"], fields["average"]))
    result = {"model": str(a.model), "states": str(a.states), "lattice": [kind, list(shape)],
              "frames": [int(k) for k in picks], "operations": len(maps),
              "one_vs_average": float(np.sqrt(np.mean(np.square(between)))),
              "symmetry_error": {name: {"mean": float(np.mean(v)), "max": float(np.max(v))}
                                 for name, v in symmetry.items()}}
    for name, v in result["symmetry_error"].items():
        print(f"{name:8s} symmetry error: mean {v['mean']:.2e}, max {v['max']:.2e} of the RMS torque "
              f"({len(maps)} operations x {len(picks)} frames)")
    print(f"one image against the average: {result['one_vs_average']:.2e} of the RMS torque")
    write_json(a.name, result)


if __name__ == "__main__":
    main()
