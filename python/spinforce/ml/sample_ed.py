"""Independent training snapshots with exact-diagonalisation fields, without dynamics.

    python -m spinforce.ml.sample_ed OUT.h5 --kind square --shape 12 --J 6 --filling 0.485 --frames 600
    python -m spinforce.ml.sample_ed OUT.h5 --kind square --shape 12 --J 6 --mu -5.2 -4.9 -4.6 --frames 200
    python -m spinforce.ml.sample_ed OUT.h5 --relabel QUENCH.h5 --mu -5.2 -4.9 -4.6

Each snapshot is an ordered state (ferromagnet, Neel state, or a coplanar spiral of random wave
vector, in a random global orientation) with Gaussian noise of random amplitude added to every
spin and renormalised, or a fully random state. This covers ordered, weakly and strongly
disordered configurations; datasets from LLG trajectories (``spinforce generate``) sample the
states that dynamics visits instead. The file is written in the spinforce dataset schema and an
interrupted run resumes where it stopped (``--resume``).

With ``--mu MU MU ...`` every snapshot is labelled at each of these chemical potentials from one
diagonalisation (energy Omega(mu), fields, per-site densities, mu), for a model with mu input
(docs/ml.md, "Fixed electron count"); the labels of one snapshot share a trajectory id, so that
training holds them out together. ``--relabel`` (``relabel_at_mus``) does the same for the
states of any dataset, e.g. the frames of a quench at fixed filling from ``spinforce generate``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["perturbed_configuration", "write_ed_samples", "relabel_at_mus", "check_mus", "multi_mu_model"]


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


def check_mus(mus) -> list[float] | None:
    """None, or a list of at least two distinct finite chemical potentials."""
    if mus is None:
        return None
    values = [float(m) for m in np.atleast_1d(np.asarray(mus, dtype=np.float64))]
    if len(set(values)) < 2 or not np.isfinite(values).all():
        raise ValueError(f"mus (--mu) must be at least two distinct finite chemical potentials, got {mus!r}")
    return values


def multi_mu_model(model, mus: list[float]) -> dict:
    """The model record of labels at several mu: neither a single mu nor a filling."""
    return {**model.parameters(), "mu": None, "filling": None, "mus": mus}


def write_ed_samples(out, lattice, *, J: float, filling: float | None = None, kT: float = 0.0, t2: float = 0.0,
                     frames: int, seed: int = 0, overwrite: bool = False, resume: bool = False,
                     progress: bool = True, mus=None) -> int:
    """Write `frames` ED snapshots to `out`; returns the number of frames in the file. With `mus`
    (at least two chemical potentials) each snapshot is labelled at every one of them, which
    makes frames * len(mus) frames, with densities and mu stored; `filling` is then not used."""
    from tqdm.auto import tqdm

    from ..data import DatasetWriter
    from ..run_setup import PROVIDERS

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    mus = check_mus(mus)
    if (filling is None) == (mus is None):
        raise ValueError("give exactly one of filling (labels at fixed electron count) and mus (labels at "
                         "several chemical potentials)")
    params = {"J": J, "kT": kT, "t2": t2, **({"filling": filling} if mus is None else {"mu": mus[0]})}
    model, ed = PROVIDERS["ed"].build(lattice, params, {}, "cpu")
    per_state = 1 if mus is None else len(mus)
    rng = np.random.default_rng(seed)
    with DatasetWriter(out, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="ed", model=model.parameters() if mus is None else multi_mu_model(model, mus),
                       method_settings={"sampler": "perturbed_ordered"}, seed=seed,
                       provenance={"command": " ".join(sys.argv)}, overwrite=overwrite, resume=resume,
                       density=mus is not None) as w:
        # resume from the last snapshot with all its labels
        done = w.num_frames // per_state
        w.truncate(done * per_state)
        # Draw the skipped snapshots too, so a resumed file equals an uninterrupted one.
        for _ in range(done):
            perturbed_configuration(lattice, rng)
        for k in tqdm(range(done, frames), initial=done, total=frames, desc="ED samples", unit="state",
                      disable=not progress):
            s = perturbed_configuration(lattice, rng)
            if mus is None:
                r = ed.compute(s)
                w.append(s, r.fields, r.energy)
                continue
            for r in ed.compute_at_mus(s, mus):
                w.append(s, r.fields, r.energy, trajectory=k, mu=r.mu, density=r.density)
        return w.num_frames


def relabel_at_mus(dataset, out, mus, *, J: float | None = None, kT: float | None = None, t2: float | None = None,
                   overwrite: bool = False, progress: bool = True) -> int:
    """Label the states of `dataset` (a spinforce dataset of the s-d model) by ED at each
    chemical potential in `mus` (with densities and mu) into `out`; the s-d parameters are the
    dataset's unless given. Frames keep their trajectory ids, so a trajectory stays in one split.
    Returns the number of frames written."""
    from tqdm.auto import tqdm

    from ..data import DatasetWriter, read_dataset
    from ..electrons import ExactDiagonalization, SDModel

    mus = check_mus(mus)
    ds = read_dataset(dataset)
    given = {"J": J, "kT": kT, "t2": t2}
    params = {key: float(ds.model[key]) if value is None else float(value) for key, value in given.items()
              if value is not None or key in ds.model}
    if "J" not in params:
        raise ValueError(f"{ds.path} has no s-d model parameters; give J (and kT, t2)")
    lattice = ds.lattice()
    model = SDModel(lattice, mu=mus[0], t=float(ds.model.get("t", 1.0)), t3=float(ds.model.get("t3", 0.0)), **params)
    ed = ExactDiagonalization(model)
    with DatasetWriter(out, lattice_kind=lattice.kind, lattice_shape=lattice.shape, num_sites=lattice.num_sites,
                       method="ed", model=multi_mu_model(model, mus), method_settings={"relabelled": ds.path},
                       seed=ds.seed, provenance={"source": ds.path, "source_provenance": ds.provenance},
                       overwrite=overwrite, density=True) as w:
        for i in tqdm(range(ds.num_frames), desc="ED at several mu", unit="state", disable=not progress):
            for r in ed.compute_at_mus(ds.spins[i], mus):
                w.append(ds.spins[i], r.fields, r.energy, time=float(ds.time[i]), step=int(ds.step[i]),
                         trajectory=int(ds.trajectory[i]), mu=r.mu, density=r.density)
        return w.num_frames


def main(argv=None) -> int:
    from ..lattice import LATTICE_KINDS
    p = argparse.ArgumentParser(prog="python -m spinforce.ml.sample_ed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--relabel", metavar="DATASET",
                   help="label the states of this dataset at every --mu instead of sampling states (its s-d "
                        "parameters unless --J, --kT, --t2 are given)")
    p.add_argument("--kind", default="square", choices=list(LATTICE_KINDS))
    p.add_argument("--shape", type=int, nargs="+", default=[12])
    p.add_argument("--J", type=float)
    fixed = p.add_mutually_exclusive_group(required=True)
    fixed.add_argument("--filling", type=float, help="labels at this fixed filling N_e / 2N")
    fixed.add_argument("--mu", type=float, nargs="+",
                       help="labels at each of these chemical potentials (with densities; for models with mu input)")
    p.add_argument("--kT", type=float)
    p.add_argument("--t2", type=float)
    p.add_argument("--frames", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    try:
        n = _run(p, a)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        p.error(str(err))
    print(f"{a.out}: {n} frames")
    return 0


def _run(p, a) -> int:
    from ..lattice import Lattice
    if a.relabel is not None:
        if a.mu is None or a.frames is not None or a.resume:
            p.error("--relabel labels every state of DATASET at every --mu; it takes neither --filling, --frames "
                    "nor --resume")
        n = relabel_at_mus(a.relabel, a.out, a.mu, J=a.J, kT=a.kT, t2=a.t2, overwrite=a.overwrite)
    else:
        if a.J is None or a.frames is None:
            p.error("sampling states needs --J and --frames")
        lattice = Lattice(a.kind, a.shape[0] if len(a.shape) == 1 else tuple(a.shape))
        n = write_ed_samples(a.out, lattice, J=a.J, filling=a.filling, kT=a.kT or 0.0, t2=a.t2 or 0.0,
                             frames=a.frames, seed=a.seed, overwrite=a.overwrite, resume=a.resume, mus=a.mu)
    return n


if __name__ == "__main__":
    sys.exit(main())
