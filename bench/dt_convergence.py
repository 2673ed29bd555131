"""Time-step convergence of the LLG schemes on an exact (ED) s-d quench.

From one state (a frame of a run file, or random spins), integrate deterministic LLG (spin
temperature 0) over --time with every scheme and time step of --schemes and with the reference
(default RK4 at dt = 0.05, converged for these models), and print for each the rms per-spin
distance |S - S_ref| at the end, next to how far the spins moved, and the nearest-neighbour bond
average. A dt is fine for a quench when that distance is small against the displacement; the
exchange field along each spin (about J) is what the second-order schemes must not feel
(docs/dynamics.md, "The field along the spin").

    python bench/dt_convergence.py --kind square --size 20 --J 6 --filling 0.4925 \\
        --start tests/data/de_square_fixed_n_ed_llg_20x20.npz --frame 1 --alpha 0.1 --time 2 --schemes sib:0.2 sib:0.1 heun:0.2
    python bench/dt_convergence.py --kind triangular --size 12 --J 2 --kT-el 0.3 --mu -2.57 \\
        --alpha 0.3 --time 2 --schemes sib:0.05 heun:0.05 --reference rk4:0.0125

Writes bench/results/dt_convergence_NAME.json (--name, default KIND_SIZE_J).
"""
from __future__ import annotations

import argparse

import spinforce as sf  # before torch: it chooses how idle OpenMP threads wait
import numpy as np
from spinforce import analysis

from _common import write_json

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--kind", default="square", help="lattice kind")
parser.add_argument("--size", type=int, default=20, help="L of the L x L lattice")
parser.add_argument("--J", type=float, default=6.0, help="s-d exchange")
parser.add_argument("--kT-el", type=float, default=0.0, help="electron temperature")
electrons = parser.add_mutually_exclusive_group(required=True)
electrons.add_argument("--filling", type=float, help="fixed electron filling (ED at fixed N)")
electrons.add_argument("--mu", type=float, help="fixed chemical potential")
parser.add_argument("--start", help="run or dataset file (.h5), or .npz with spins (frames, N, 3), whose frame --frame is the start (default: random spins)")
parser.add_argument("--frame", type=int, default=0)
parser.add_argument("--seed", type=int, default=5, help="seed of the random start")
parser.add_argument("--alpha", type=float, default=0.1)
parser.add_argument("--time", type=float, default=2.0, help="integration time")
parser.add_argument("--schemes", nargs="+", default=["sib:0.2", "sib:0.1", "heun:0.2"], help="SCHEME:DT")
parser.add_argument("--reference", default="rk4:0.05", help="SCHEME:DT of the reference")
parser.add_argument("--name", help="name of the JSON")
args = parser.parse_args()

lattice = sf.Lattice(args.kind, (args.size, args.size))
count = {"filling": args.filling} if args.filling is not None else {"mu": args.mu}
ed = sf.ExactDiagonalization(sf.SDModel(lattice, t=1.0, J=args.J, kT=args.kT_el, **count))
if args.start and args.start.endswith(".npz"):
    start = np.array(np.load(args.start)["spins"][args.frame], dtype=np.float64)
elif args.start:
    from spinforce.data import read_dataset
    start = np.array(read_dataset(args.start).spins[args.frame], dtype=np.float64)
else:
    start = lattice.random_spins(args.seed)


def integrate(spec: str) -> np.ndarray:
    scheme, dt = spec.split(":")
    dt = float(dt)
    steps = int(round(args.time / dt))
    if abs(steps * dt - args.time) > 1e-9 * args.time:
        raise SystemExit(f"--time {args.time} is not a whole number of steps of {spec}")
    return sf.LLG(ed, dt=dt, alpha=args.alpha, kT=0.0, integrator=scheme, seed=1).run(start.copy(), steps)


def rms_distance(a, b) -> float:
    """Root mean square over sites of |a_i - b_i|."""
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))


def bond(spins) -> float:
    return float(analysis.bond_average(spins[None], lattice).mean())


reference = integrate(args.reference)
moved = rms_distance(reference, start)
print(f"{args.kind} {args.size}x{args.size}, J = {args.J}, {count}, T_el = {args.kT_el}, alpha = {args.alpha}, "
      f"t = {args.time}; reference {args.reference}: rms displacement {moved:.3e}, bond {bond(reference):.6f}")
rows = []
for spec in args.schemes:
    spins = integrate(spec)
    distance = rms_distance(spins, reference)
    rows.append({"scheme": spec, "rms_distance": distance, "bond": bond(spins)})
    print(f"  {spec:>12}: rms |S - S_ref| {distance:.3e} ({distance / moved:.1e} of the displacement), "
          f"bond {rows[-1]['bond']:.6f}", flush=True)
write_json(f"dt_convergence_{args.name or f'{args.kind}_{args.size}_J{args.J:g}'}",
           {"settings": vars(args), "reference": {"scheme": args.reference, "rms_displacement": moved,
                                                  "bond": bond(reference)}, "rows": rows})
