"""OVF 2.0 text files of spin frames, for the viewers micromagnetics users already have (muview,
Mumax3-view, ParaView with the OVF reader, OOMMF's mmDisp).

OVF meshes are rectangular: site (x, y, z) of the spinforce lattice is node (x, y, z) with unit
step sizes, x running fastest like the site index i = x + Lx*y + Lx*Ly*z. On the triangular
lattice the viewer therefore shows the lattice sheared into a square grid; the neighbour
relations are those of the lattice, the geometry is not.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .outputs import atomic_write

__all__ = ["write_ovf", "read_ovf"]


def write_ovf(path, spins, lattice, *, title: str = "spinforce frame", time: float | None = None,
              overwrite: bool = False) -> Path:
    """Write one frame (N, 3) as an OVF 2.0 text file."""
    path = Path(path)
    s = np.asarray(spins, dtype=np.float64)
    if s.shape != (lattice.num_sites, 3):
        raise ValueError(f"spins must have shape ({lattice.num_sites}, 3) for {lattice!r}, got {s.shape}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; use --overwrite to replace it")
    nodes = list(lattice.shape) + [1] * (3 - lattice.dim)
    desc = f"# Desc: Total simulation time: {time!r} (hbar/t)\n" if time is not None else ""
    header = (
        "# OOMMF OVF 2.0\n# Segment count: 1\n# Begin: Segment\n# Begin: Header\n"
        f"# Title: {title}\n{desc}"
        f"# meshtype: rectangular\n# meshunit: 1\n"
        f"# xmin: 0\n# ymin: 0\n# zmin: 0\n# xmax: {nodes[0]}\n# ymax: {nodes[1]}\n# zmax: {nodes[2]}\n"
        "# valuedim: 3\n# valuelabels: S_x S_y S_z\n# valueunits: 1 1 1\n"
        "# xbase: 0.5\n# ybase: 0.5\n# zbase: 0.5\n"
        f"# xnodes: {nodes[0]}\n# ynodes: {nodes[1]}\n# znodes: {nodes[2]}\n"
        "# xstepsize: 1\n# ystepsize: 1\n# zstepsize: 1\n# End: Header\n# Begin: Data Text\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write(header)
        np.savetxt(f, s, fmt="%.17g")
        f.write("# End: Data Text\n# End: Segment\n")
    return path


def read_ovf(path) -> tuple[np.ndarray, dict]:
    """(values (nodes, 3), header dict) of an OVF 2.0 text file written by `write_ovf`."""
    header, rows, in_data = {}, [], False
    with open(path) as f:
        first = f.readline().strip()
        if first != "# OOMMF OVF 2.0":
            raise ValueError(f"{path} is not an OVF 2.0 file (first line {first!r})")
        for line in f:
            if line.startswith("# Begin: Data Text"):
                in_data = True
            elif line.startswith("# End: Data"):
                in_data = False
            elif line.startswith("#"):
                key, _, value = line[1:].partition(":")
                header[key.strip().lower()] = value.strip()
            elif in_data:
                rows.append(line)
    values = np.loadtxt(rows, ndmin=2)
    n = int(header["xnodes"]) * int(header["ynodes"]) * int(header["znodes"])
    if values.shape != (n, int(header["valuedim"])):
        raise ValueError(f"{path}: data has shape {values.shape}, the header announces {n} nodes")
    return values, header
