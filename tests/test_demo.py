"""spinforce demo in a reduced form: the whole pipeline end to end in seconds."""
import itertools
import json

import numpy as np
import pytest

from spinforce.data import read_dataset
from spinforce.demo import run_demo

TINY = dict(small=6, large=12, ed_runs=1, ed_steps=20, save_every=5, random_samples=2, perturbed_samples=2,
            epochs=2, validation_steps=10, ml_steps=20, ml_every=5)


def direct_radial_correlation(spins, lattice):
    """C(r) = <S_i . S_j> over all pairs at minimum-image distance r <= L/2, by direct sums."""
    A, shape = lattice.primitive_vectors.numpy(), np.array(lattice.shape)
    sums = {}
    for i in range(lattice.num_sites):
        for j in range(lattice.num_sites):
            d = lattice.coordinates[j] - lattice.coordinates[i]
            r = min(np.linalg.norm((d + np.array(k) * shape) @ A)
                    for k in itertools.product((-1, 0, 1), repeat=lattice.dim))
            if r <= 0.5 * shape.min() + 1e-9:
                sums.setdefault(round(r, 6), []).append(spins[i] @ spins[j])
    return np.array([np.mean(sums[r]) for r in sorted(sums)])


def test_demo_runs_end_to_end_in_reduced_form(tmp_path):
    out = tmp_path / "demo"
    figures = run_demo(out, progress=False, quiet=True, **TINY)
    report = (out / "report.md").read_text()
    for name in ("validation/analysis/correlation.png", "quench/analysis/chirality_snapshot.png",
                 "quench/analysis/length_scales.png", "model/model.ts", "figures.json"):
        assert (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert f"]({name})" in report
    stored = json.loads((out / "figures.json").read_text())
    assert stored["quench"]["sites"] == 144 and stored["quench"]["steps"] == 20
    assert figures["ed"]["snapshots"] == 20 // 5 + 1 + 2 + 2
    assert figures["quench"]["spin_steps_per_second"] > 0
    # the ML model sees the same random start as ED
    ml, ed = read_dataset(out / "validation" / "ml.h5"), read_dataset(out / "validation" / "ed.h5")
    np.testing.assert_array_equal(ml.spins[0], ed.spins[0])
    assert ml.num_frames == ed.num_frames == 10 // 5 + 1
    # the reported C(r) difference is that of the two final frames, computed here by direct sums
    lat = ml.lattice()
    difference = direct_radial_correlation(ml.spins[-1], lat) - direct_radial_correlation(ed.spins[-1], lat)
    assert figures["validation"]["max_abs_difference_C"] == pytest.approx(np.abs(difference).max(), abs=1e-12)
    assert "spin-steps per second" in report and "| L_chirality_sf |" in report
    with pytest.raises(FileExistsError):
        run_demo(out, progress=False, quiet=True, **TINY)


def test_demo_rejects_bad_settings(tmp_path, capsys):
    from spinforce.cli import main
    for argv in (["--small", "5"], ["--ed-steps", "25", "--save-every", "10"]):  # refused before it announces itself
        assert main(["demo", "--out", str(tmp_path / "cli"), *argv]) == 2
        printed = capsys.readouterr()
        assert printed.out == "" and "ten minutes" not in printed.err, printed
    with pytest.raises(ValueError, match="unknown key 'lattice' in the demo settings"):
        run_demo(tmp_path, quiet=True, lattice=3)
    with pytest.raises(ValueError, match="small must be an even integer"):
        run_demo(tmp_path, quiet=True, small=5)
    with pytest.raises(ValueError, match="must be a multiple of save_every"):
        run_demo(tmp_path, quiet=True, ed_steps=25, save_every=10)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        run_demo(tmp_path, quiet=True, epochs=0)
