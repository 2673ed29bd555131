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

from spinforce import cli
from spinforce.data import read_dataset
from spinforce.runtime import run_independent, worker_processes
from config_files import write_toml
from test_trajectories import ensemble_settings


def slow_negative(x):
    """-x after x seconds (a module-level function: the workers import it)."""
    time.sleep(x)
    return -x


def process_id(_):
    """The id of the process that runs the job."""
    return os.getpid()


def test_results_come_back_in_the_order_of_the_jobs():
    # the first job ends last: the other worker does the rest meanwhile
    assert run_independent(slow_negative, [1.0, 0.0, 0.2, 0.0], cores=2, progress=False) == [-1.0, -0.0, -0.2, -0.0]
    # one core: in this process, as a loop would
    assert run_independent(operator.neg, [2, 7], cores=1, progress=False) == [-2, -7]


def test_jobs_on_a_gpu_run_in_this_process_one_after_another():
    # a GPU runs one job at a time: whatever the cores, one process (the caller's)
    assert worker_processes(4, 2, ["cuda"]) == worker_processes(4, 2, ["cpu", "cuda:0"]) == 1
    assert worker_processes(4, 2, ["cpu"]) == worker_processes(4, 2) == 2
    assert run_independent(process_id, [0, 1], cores=2, devices=["cuda"], progress=False) == [os.getpid()] * 2


def test_a_job_that_raises_raises_its_error_here():
    with pytest.raises(ValueError, match="math domain error"):
        run_independent(math.sqrt, [4.0, -1.0, 9.0], cores=2, progress=False)


def test_a_worker_that_dies_is_reported_not_waited_for():
    # os._exit ends the worker without a word back, as a kill or a crash would
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_independent(os._exit, [3, 3], cores=2, progress=False)


def test_an_ensemble_on_two_processes_equals_the_same_ensemble_run_one_after_another(tmp_path, monkeypatch):
    import spinforce.runtime as runtime
    processes = []
    real = runtime.run_independent

    def counted(function, jobs, **kwargs):
        processes.append(runtime.worker_processes(len(jobs), kwargs["cores"], kwargs["devices"]))
        return real(function, jobs, **kwargs)
    monkeypatch.setattr(runtime, "run_independent", counted)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same bits
    try:
        (tmp_path / "seq").mkdir()
        (tmp_path / "par").mkdir()
        # one config file for both: the command line without --cores, then with --cores 2
        for folder, cores in (("seq", []), ("par", ["--cores", "2"])):
            write_toml(ensemble_settings(tmp_path / folder / "merged.h5"), tmp_path / folder / "ensemble.toml")
            assert cli.main(["generate", str(tmp_path / folder / "ensemble.toml"), *cores, "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert processes == [1, 2]
    one, two = read_dataset(tmp_path / "seq" / "merged.h5"), read_dataset(tmp_path / "par" / "merged.h5")
    assert one.num_frames == two.num_frames == 16
    for name in ("spins", "fields", "energy", "step", "trajectory"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))


def test_generate_refuses_a_negative_number_of_cores(tmp_path, capsys):
    from test_reliability_cli import user_error
    write_toml(ensemble_settings(tmp_path / "merged.h5"), tmp_path / "ensemble.toml")
    user_error(capsys, "generate", tmp_path / "ensemble.toml", "--cores", "-1", contains=("--cores", ">= 0"))
    assert not (tmp_path / "merged.h5").exists()
