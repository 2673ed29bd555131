"""ML force evaluation vs the bare network cost, vs exact diagonalisation, and vs KPM at equal accuracy.

    python bench/ml.py [--device cpu|cuda] [--hidden 1024 512 ...] [--repeats 5]
    python bench/ml.py --pt2 --descriptor bond_shells --dtype float64 [--out bench/results/ml_pt2.json]
    python bench/ml.py --model model.ts [--states quench.h5] [--model-error 0.3] [--out ...]

1. One full ML force evaluation through the C++ provider (``MLForceField.compute``: descriptor,
   network, autograd fields, transfers) at 10^4 and 10^5 sites, against the bare network cost on
   precomputed features (MLP forward plus the gradient with respect to its input) of the same
   size. Ratio = full / bare; the target is <= 1.3. Weights are random: the cost does not depend
   on their values.
   With ``--pt2`` the same random model is also compiled into a .pt2 package (``spinforce
   export --pt2``: forward and backward as one AOTInductor graph) and timed against its
   TorchScript file, interleaved, at each size (bond_shells descriptor: ``--descriptor
   bond_shells``). Ratio = TorchScript / .pt2.
2. ML vs ED (``ExactDiagonalization.compute``) per force evaluation at ``--ed-size`` (30x30).
   The network is the random one of 1., or the exported model or committee ``--model`` (its
   file names its lattice kind).
3. With ``--model`` (or ``--model-error``): ML vs KPM at ``--kpm-size`` (96x96), KPM set to the
   model's torque accuracy. The model's relative torque error (RMS |S x (H - H_exact)| / RMS
   |S x H_exact|) is ``--model-error``, else measured on the frames of ``--states``. KPM settings
   (Chebyshev moments x probing distance) are scanned on reference states on a lattice ED can
   handle (the lattice of ``--states``, else ``--kpm-ref-size``): random spins plus dataset
   frames; the cheapest (moments x probe vectors at the timed size) whose error against ED is
   at most the model's is timed against the ML model, interleaved. KPM works at T_el = 0: the
   expansion of the step-shaped grand-potential density is Jackson-damped (docs/kpm.md).
   The probing error is measured on the reference lattice, whose colouring may differ from the
   timed one: the JSON records the probe counts of both (settings that probe every reference
   site alone, i.e. exact traces there, are not eligible).
The exact methods use the s-d model at fixed mu (as the ML labels): square t = 1, J = 6,
T_el = 0, mu = -4.69 (de_square) or triangular J = 2, T_el = 0.05, mu for filling 1/4 on the
reference states (tetra_triangular), unless --t/--J/--kT/--mu say otherwise.
Medians of `repeats` timings after a warm-up; JSON to bench/results/ml.json (--out).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import spinforce  # before torch: it chooses how idle OpenMP threads wait

import numpy as np
import torch
from tqdm.auto import tqdm

from spinforce.data import read_dataset
from spinforce.electrons import mu_for_filling
from spinforce.locality import pick_frames
from spinforce.descriptors.registry import DEFAULT_KIND
from spinforce.ml.model import TORCHSCRIPT_FORMAT, build_model, export_torchscript, quiet_torchscript
from spinforce.ml.pt2 import export_pt2
from _common import interleaved_medians, median_time

PUBLISHED = [1024, 512, 256, 256, 128, 128, 64, 64]
# Exact-model defaults per lattice kind: the de_square and tetra_triangular examples at fixed mu.
EXACT_DEFAULTS = {"square": {"t": 1.0, "J": 6.0, "kT": 0.0, "mu": -4.69},
                  "triangular": {"t": 1.0, "J": 2.0, "kT": 0.05, "filling": 0.25}}


def model_file_lattice_kind(path) -> str:
    """The lattice kind an exported model or committee file was trained on."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--model {path} does not exist")
    try:
        with quiet_torchscript():
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception:
        module = None
    if getattr(module, "format", None) != TORCHSCRIPT_FORMAT:
        raise ValueError(f"--model {path} is not a TorchScript file written by `spinforce export`")
    kind = module.lattice_kind
    if kind not in EXACT_DEFAULTS:
        raise ValueError(f"--model {path} is for the {kind!r} lattice; this benchmark knows {sorted(EXACT_DEFAULTS)}")
    return kind


def relative_torque_error(states, fields, reference) -> float:
    """RMS |S x (H - H_ref)| / RMS |S x H_ref| pooled over all states and sites."""
    err = ref = 0.0
    for s, h, h_ref in zip(states, fields, reference):
        t, t_ref = np.cross(s, h), np.cross(s, h_ref)
        err += float(((t - t_ref) ** 2).sum())
        ref += float((t_ref ** 2).sum())
    return float(np.sqrt(err / ref))


def reference_states(a, kind):
    """(lattice, states (M, N, 3), kinds ['random' | 'frame k']) for the KPM accuracy scan."""
    if a.states:
        ds = read_dataset(a.states)
        lattice = ds.lattice()
        if lattice.kind != kind:
            raise ValueError(f"--states {a.states} is on the {lattice.kind!r} lattice; the model is for {kind!r}")
        if a.kpm_ref_size is not None and tuple(lattice.shape) != (a.kpm_ref_size,) * len(lattice.shape):
            raise ValueError(f"--kpm-ref-size {a.kpm_ref_size} differs from the lattice of --states "
                             f"{tuple(lattice.shape)}; the reference states are on the dataset's lattice (omit it)")
        frames = pick_frames(ds.num_frames, a.ref_frames)
        states = [ds.spins[k] for k in frames]
        labels = [f"frame {int(k)}" for k in frames]
    else:
        lattice = spinforce.Lattice(kind, a.kpm_ref_size or 16)
        states, labels = [], []
    states += [lattice.random_spins(1000 + k) for k in range(a.ref_random)]
    labels += ["random"] * a.ref_random
    return lattice, np.asarray(states, dtype=np.float64), labels


def exact_model(a, kind, ref_lattice=None, ref_states=None) -> tuple[dict, str]:
    """(t, J, kT, mu) of the s-d model for ED and KPM, and where mu came from."""
    d = EXACT_DEFAULTS[kind]
    p = {"t": a.t if a.t is not None else d["t"], "J": a.J if a.J is not None else d["J"],
         "kT": a.kT if a.kT is not None else d["kT"]}
    if a.mu is not None:
        return {**p, "mu": a.mu}, "--mu"
    if "mu" in d:
        return {**p, "mu": d["mu"]}, "default"
    if ref_states is None:
        raise ValueError(f"give --mu for the {kind} lattice (or --model with --states/--model-error, whose "
                         f"reference states then fix mu at filling {d['filling']})")
    fixed = mu_for_filling(spinforce.SDModel(ref_lattice, filling=d["filling"], **p), ref_states)
    return {**p, "mu": fixed.mu}, f"filling {d['filling']} on the reference states"


def kpm_scan(lattice, states, labels, params, a, target_lattice) -> tuple[list[dict], list]:
    """Relative torque error against ED of every (moments, probing distance) on the states,
    and the ED fields of the states."""
    sd = spinforce.SDModel(lattice, **params)
    exact = [spinforce.ExactDiagonalization(sd).compute(s).fields for s in states]
    kinds = sorted(set(lbl.split()[0] for lbl in labels))
    target = spinforce.SDModel(target_lattice, **params)
    rows = []
    grid = [(m, d) for m in a.kpm_moments for d in a.kpm_distances]
    for moments, distance in tqdm(grid, desc="KPM scan", unit="setting", dynamic_ncols=True):
        kpm = spinforce.KPM(sd, moments=moments, probing_distance=distance, seed=a.kpm_seed)
        fields = [kpm.compute(s).fields for s in states]
        probes = spinforce.KPM(target, moments=2, probing_distance=distance).num_probes
        row = {"moments": moments, "probing_distance": distance, "num_probes_reference": kpm.num_probes,
               "num_probes_timed": probes, "cost": moments * probes,
               # one site per colour: no probing error on the reference lattice, but there is on the timed one
               "exact_traces_on_reference": kpm.num_colours == lattice.num_sites,
               "error": relative_torque_error(states, fields, exact)}
        for k in kinds:
            sel = [i for i, lbl in enumerate(labels) if lbl.split()[0] == k]
            row[f"error_{k}"] = relative_torque_error(states[sel], [fields[i] for i in sel], [exact[i] for i in sel])
        rows.append(row)
    return rows, exact


def kpm_row(a, kind, ml_path, params, mu_source, ref, device, sync) -> dict:
    """ML vs KPM at --kpm-size with KPM at the model's torque accuracy (item 3 of the docstring)."""
    ref_lattice, states, labels = ref
    n_random = labels.count("random")
    print(f"KPM accuracy scan on {ref_lattice!r}: {len(states) - n_random} dataset frames and {n_random} random "
          f"states, ED labels at mu = {params['mu']:.4g}", flush=True)
    target_lattice = spinforce.Lattice(kind, a.kpm_size)
    scan, exact = kpm_scan(ref_lattice, states, labels, params, a, target_lattice)
    ml_ref = spinforce.MLForceField(ml_path, ref_lattice)
    ml_fields = [ml_ref.compute(s).fields for s in states]
    frames = [i for i, lbl in enumerate(labels) if lbl != "random"]
    measured = {"all": relative_torque_error(states, ml_fields, exact)}
    for name, sel in (("frame", frames), ("random", [i for i in range(len(labels)) if i not in frames])):
        if sel:
            measured[name] = relative_torque_error(states[sel], [ml_fields[i] for i in sel], [exact[i] for i in sel])
    if a.model_error is not None:
        target_error, source = a.model_error, "--model-error"
    elif frames:
        target_error, source = measured["frame"], f"measured on the frames of {a.states}"
    else:
        raise ValueError("give --model-error (the model's relative torque error) or --states (frames to measure it on)")
    usable = [r for r in scan if not r["exact_traces_on_reference"]]
    if not usable:
        raise ValueError(f"every probing distance colours each site of {ref_lattice!r} alone (exact traces): the scan "
                         "cannot measure the probing error; give smaller --kpm-distances or a larger reference lattice")
    passing = [r for r in usable if r["error"] <= target_error]
    chosen = min(passing, key=lambda r: (r["cost"], r["error"])) if passing else min(usable, key=lambda r: r["error"])
    for r in scan:
        print(f"  M = {r['moments']:4d}, d = {r['probing_distance']:g} ({r['num_probes_reference']} / "
              f"{r['num_probes_timed']} probes): error {r['error']:.3f}" + ("  <- chosen" if r is chosen else "")
              + ("  (exact traces on the reference lattice: not eligible)" if r["exact_traces_on_reference"] else ""))
    if not passing:
        print(f"  no KPM setting of the scan reaches the model's error {target_error:.3f}: timing the most accurate")
    kpm = spinforce.KPM(spinforce.SDModel(target_lattice, **params), moments=chosen["moments"],
                        probing_distance=chosen["probing_distance"], seed=a.kpm_seed)
    ml = spinforce.MLForceField(ml_path, target_lattice, device=str(device))
    spins = torch.from_numpy(target_lattice.random_spins(0)).to(device)

    def timed(provider):
        def run():
            provider.compute(spins)
            sync()
        return run

    print(f"timing KPM (M = {chosen['moments']}, d = {chosen['probing_distance']:g}) and ML on {target_lattice!r}",
          flush=True)
    t = interleaved_medians({"kpm": timed(kpm), "ml": timed(ml)}, a.repeats, warmup=2)
    print(f"{target_lattice.num_sites:>7} sites: KPM {t['kpm'] * 1e3:.1f} ms (error {chosen['error']:.3f}), "
          f"ML {t['ml'] * 1e3:.1f} ms (error {target_error:.3f}, {source}); KPM/ML {t['kpm'] / t['ml']:.2f}")
    return {"L": a.kpm_size, "sites": target_lattice.num_sites, "kpm_s": t["kpm"], "ml_s": t["ml"],
            "ratio_kpm_over_ml": t["kpm"] / t["ml"], "model_error": target_error, "model_error_source": source,
            "model_error_measured_on_reference": measured, "kpm_error": chosen["error"],
            "accuracy_matched": bool(passing), "chosen": {**chosen, "seed": a.kpm_seed, "dtype": kpm.dtype},
            "exact_model": {**params, "mu_source": mu_source},
            "reference": {"lattice": {"kind": ref_lattice.kind, "shape": list(ref_lattice.shape)},
                          "states": labels, "dataset": a.states}, "scan": scan}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--hidden", type=int, nargs="+", default=PUBLISHED)
    p.add_argument("--activation", default="relu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--descriptor", default=DEFAULT_KIND)
    p.add_argument("--cutoff", type=float, default=3.0)
    p.add_argument("--sizes", type=int, nargs="*", default=[100, 316],   # L x L: 10^4 and 10^5 sites
                   help="sides for ML vs bare network (random weights); none to skip")
    p.add_argument("--ed-size", type=int, default=30)
    p.add_argument("--model", help="exported model or committee (TorchScript) for the ED and KPM rows")
    p.add_argument("--t", type=float, help="hopping of the exact model (default 1)")
    p.add_argument("--J", type=float, help="s-d coupling (default: 6 square, 2 triangular)")
    p.add_argument("--kT", type=float, help="electron temperature (default: 0 square, 0.05 triangular)")
    p.add_argument("--mu", type=float, help="fixed chemical potential (default: -4.69 square; triangular: "
                                            "filling 1/4 on the reference states)")
    p.add_argument("--model-error", type=float, help="the model's relative torque error (fraction); "
                                                     "default: measured on the frames of --states")
    p.add_argument("--states", help="dataset whose frames are reference states for the KPM scan (ED-labellable)")
    p.add_argument("--ref-frames", type=int, default=4, help="frames taken from --states, evenly spaced")
    p.add_argument("--ref-random", type=int, default=2, help="random-spin reference states")
    p.add_argument("--kpm-size", type=int, default=96)
    p.add_argument("--kpm-ref-size", type=int, help="side of the reference lattice without --states (default 16)")
    p.add_argument("--kpm-moments", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--kpm-distances", type=float, nargs="+", default=[2.0, 3.0, 4.0, 5.0])
    p.add_argument("--kpm-seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pt2", action="store_true", help="also time the random model compiled as a .pt2 package")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ml.json"))
    a = p.parse_args()
    for name in ("ed_size", "kpm_size", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.threads < 0 or a.ref_frames < 0 or a.ref_random < 0:
        p.error("--threads, --ref-frames and --ref-random must be >= 0")
    if a.model_error is not None and not a.model_error > 0:
        p.error(f"--model-error must be a fraction > 0, got {a.model_error}")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.pt2 and a.descriptor != "bond_shells":
        p.error("--pt2 needs --descriptor bond_shells (the group descriptor's operators do not export as .pt2)")
    kind = model_file_lattice_kind(a.model) if a.model else "square"
    with_kpm = a.model is not None or a.model_error is not None
    ref = reference_states(a, kind) if with_kpm else None
    if ref is not None and len(ref[1]) == 0:
        p.error("no reference states: --ref-frames and --ref-random are both 0")
    params, mu_source = exact_model(a, kind, *(ref[:2] if ref else ()))
    device = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    rows = []
    # bond_shells as in configs/sd_square.toml; other descriptors take just the cutoff.
    settings = ({"cutoff": a.cutoff, "powers": [1, 2], "pair_orbits": True} if a.descriptor == "bond_shells"
                else {"cutoff": a.cutoff})
    with tempfile.TemporaryDirectory() as tmp:
        ts_path = pt2_path = None
        # The last row (ED size) runs the model file when there is one, the others the random network.
        for L, with_ed in [(L, False) for L in a.sizes] + [(a.ed_size, True)]:
            lat = spinforce.Lattice(kind, L)
            from_file = with_ed and a.model is not None
            if not from_file:
                model = build_model(lat, a.descriptor, settings, a.hidden, a.activation, a.dtype)
                if ts_path is None:
                    ts_path = export_torchscript(model, Path(tmp) / "bench.ts")
                    if a.pt2:
                        print("compiling the .pt2 package ...", flush=True)
                        pt2_path = export_pt2(model, Path(tmp) / "bench.pt2", device=device.type)
            provider = spinforce.MLForceField(a.model if from_file else ts_path, lat, device=str(device))
            spins = torch.from_numpy(lat.random_spins(0)).to(device)
            t_ml = median_time(lambda: provider.compute(spins), a.repeats, warmup=3, sync=sync)  # TorchScript specialises over its first calls
            row = {"L": L, "sites": lat.num_sites, "ml_s": t_ml}
            msg = f"{lat.num_sites:>7} sites: ML {t_ml * 1e3:9.2f} ms"
            if not from_file:
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
                row.update(bare_network_s=t_bare, ratio_ml_over_bare=t_ml / t_bare)
                msg += f", bare network {t_bare * 1e3:9.2f} ms, ratio {t_ml / t_bare:.3f}"
            if with_ed:
                ed = spinforce.ExactDiagonalization(spinforce.SDModel(lat, **params))
                t_ed = median_time(lambda: ed.compute(spins), max(1, a.repeats // 2), warmup=1, sync=sync)
                row.update(ed_s=t_ed, ratio_ed_over_ml=t_ed / t_ml, ml_network="model file" if from_file else "random")
                msg += f"; ED {t_ed * 1e3:.1f} ms, ED/ML {t_ed / t_ml:.1f}"
            if pt2_path is not None and not from_file:
                compiled = spinforce.MLForceField(pt2_path, lat, device=str(device))

                def synced(f):
                    return lambda: (f.compute(spins), sync())
                t = interleaved_medians({"ts": synced(provider), "pt2": synced(compiled)}, a.repeats, warmup=3)
                row.update(torchscript_s=t["ts"], pt2_s=t["pt2"], ratio_torchscript_over_pt2=t["ts"] / t["pt2"])
                msg += f"; TorchScript {t['ts'] * 1e3:.2f} ms vs .pt2 {t['pt2'] * 1e3:.2f} ms, ratio {t['ts'] / t['pt2']:.3f}"
            rows.append(row)
            print(msg, flush=True)
        kpm = kpm_row(a, kind, a.model or ts_path, params, mu_source, ref, device, sync) if with_kpm else None
    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "hidden": a.hidden, "activation": a.activation, "dtype": a.dtype,
              "descriptor": a.descriptor, "descriptor_settings": settings, "repeats": a.repeats, "rows": rows,
              "model": a.model, "lattice_kind": kind, "exact_model": {**params, "mu_source": mu_source}, "kpm": kpm}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
