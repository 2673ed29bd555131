"""Independent training snapshots with exact-diagonalisation fields, without dynamics.

    python -m spinforce.ml.sample_ed OUT.h5 --kind square --shape 12 --J 6 --filling 0.485 --frames 600

Each snapshot is an ordered state (ferromagnet, Neel state, or a coplanar spiral of random wave
vector, in a random global orientation) with Gaussian noise of random amplitude added to every
spin and renormalised, or a fully random state. This covers ordered, weakly and strongly
disordered configurations; datasets from LLG trajectories (``spinforce generate``) sample the
states that dynamics visits instead. The file is written in the spinforce dataset schema and an
interrupted run resumes where it stopped (``--resume``).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["perturbed_configuration", "write_ed_samples"]


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# The families a snapshot is drawn from, equally often; "neel" falls back to a spiral on
# lattices without a Neel state.
STATE_FAMILIES = ("ferromagnet", "neel", "spiral", "random")


def perturbed_configuration(lattice, rng) -> np.ndarray:
    """One snapshot: a randomly oriented ordered state plus noise of random amplitude, or random."""
    family = STATE_FAMILIES[rng.integers(len(STATE_FAMILIES))]
    if family == "ferromagnet":
        base = lattice.ferromagnetic()
    elif family == "neel" and lattice.kind_info["bipartite"] and not any(L % 2 for L in lattice.shape):
        base = lattice.neel()
    elif family in ("neel", "spiral"):
        q = 2 * np.pi * rng.integers(0, lattice.shape[0], size=lattice.dim) / lattice.shape[0]
        base = lattice.spiral(q)
    else:
        base = None
    if base is None:
        s = rng.normal(size=(lattice.num_sites, 3))
    else:
        s = base @ _random_rotation(rng).T + rng.uniform(0.05, 1.5) * rng.normal(size=(lattice.num_sites, 3))
    return s / np.linalg.norm(s, axis=1, keepdims=True)


def write_ed_samples(out, lattice, *, J: float, filling: float, kT: float = 0.0, t2: float = 0.0,
                     frames: int, seed: int = 0, overwrite: bool = False, resume: bool = False,
                     progress: bool = True) -> int:
    """Write `frames` ED snapshots to `out`; returns the number of frames in the file."""
    from tqdm.auto import tqdm

    from ..data import DatasetWriter
    from ..run_setup import PROVIDERS

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    model, ed = PROVIDERS["ed"].build(lattice, {"J": J, "filling": filling, "kT": kT, "t2": t2}, {}, "cpu")
    rng = np.random.default_rng(seed)
    with DatasetWriter(out, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="ed", model=model.parameters(), method_settings={"sampler": "perturbed_ordered"},
                       seed=seed, provenance={"command": " ".join(sys.argv)}, overwrite=overwrite,
                       resume=resume) as w:
        done = w.num_frames
        # Draw the skipped snapshots too, so a resumed file equals an uninterrupted one.
        for _ in range(done):
            perturbed_configuration(lattice, rng)
        for _ in tqdm(range(done, frames), initial=done, total=frames, desc="ED samples", unit="frame",
                      disable=not progress):
            s = perturbed_configuration(lattice, rng)
            r = ed.compute(s)
            w.append(s, r.fields, r.energy)
        return w.num_frames


def main(argv=None) -> int:
    from ..lattice import LATTICE_KINDS, Lattice
    p = argparse.ArgumentParser(prog="python -m spinforce.ml.sample_ed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--kind", default="square", choices=list(LATTICE_KINDS))
    p.add_argument("--shape", type=int, nargs="+", default=[12])
    p.add_argument("--J", type=float, required=True)
    p.add_argument("--filling", type=float, required=True)
    p.add_argument("--kT", type=float, default=0.0)
    p.add_argument("--t2", type=float, default=0.0)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    lattice = Lattice(a.kind, a.shape[0] if len(a.shape) == 1 else tuple(a.shape))
    n = write_ed_samples(a.out, lattice, J=a.J, filling=a.filling, kT=a.kT, t2=a.t2, frames=a.frames, seed=a.seed,
                         overwrite=a.overwrite, resume=a.resume)
    print(f"{a.out}: {n} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
