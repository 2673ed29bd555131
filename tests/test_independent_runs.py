"""Independent runs side by side in worker processes (spinforce.runtime.run_independent): the
same results as one after another, a job's error raised in the caller, a worker that dies
reported instead of waited for."""
import math
import operator
import os
import time

import numpy as np
import pytest
import torch

from spinforce.data import read_dataset
from spinforce.runtime import run_independent


def slow_negative(x):
    """-x after x seconds (a module-level function: the workers import it)."""
    time.sleep(x)
    return -x


def test_results_come_back_in_the_order_of_the_jobs():
    # the first job ends last: the other worker does the rest meanwhile
    assert run_independent(slow_negative, [1.0, 0.0, 0.2, 0.0], cores=2, progress=False) == [-1.0, -0.0, -0.2, -0.0]
    # one core: in this process, as a loop would
    assert run_independent(operator.neg, [2, 7], cores=1, progress=False) == [-2, -7]


def test_a_job_that_raises_raises_its_error_here():
    with pytest.raises(ValueError, match="math domain error"):
        run_independent(math.sqrt, [4.0, -1.0, 9.0], cores=2, progress=False)


def test_a_worker_that_dies_is_reported_not_waited_for():
    # os._exit ends the worker without a word back, as a kill or a crash would
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_independent(os._exit, [3, 3], cores=2, progress=False)


def test_an_ensemble_on_two_processes_equals_the_same_ensemble_run_one_after_another(tmp_path):
    from test_trajectories import ensemble_config

    import spinforce.generate as gen
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same bits
    try:
        (tmp_path / "seq").mkdir()
        (tmp_path / "par").mkdir()
        gen.generate_ensemble(ensemble_config(tmp_path / "seq"), progress=False, cores=1)
        gen.generate_ensemble(ensemble_config(tmp_path / "par"), progress=False, cores=2)
    finally:
        torch.set_num_threads(threads)
    one, two = read_dataset(tmp_path / "seq" / "merged.h5"), read_dataset(tmp_path / "par" / "merged.h5")
    assert one.num_frames == two.num_frames == 16
    for name in ("spins", "fields", "energy", "step", "trajectory"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
