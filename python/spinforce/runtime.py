"""Process-level settings: how idle OpenMP threads wait.

OpenMP threads that wait by spinning collapse throughput on a busy machine. torch and the
core share one OpenMP runtime (libgomp on Linux), whose idle threads by default spin for
milliseconds at every barrier and between parallel regions before they sleep. When other
processes hold the cores, the thread a parallel region waits for is not running while its
partner spins on the core it could use, so each of the hundreds of regions of an ML step
waits for a scheduler time slice: ML-LLG (48 x 48, 2 threads) on 2 cores shared with other
jobs ran at 1.2e3 spin-steps/s with spinning threads and 1.6e4 with sleeping ones
(bench/contention.py). Idle threads that sleep at once (OMP_WAIT_POLICY=PASSIVE) hand the core
to the thread that needs it. The runtime reads the policy once, when it loads with torch, so
`import spinforce` sets it only when torch is not imported yet and the user has not chosen a
policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment); the command line always
imports spinforce first. Scripts should import spinforce before torch (spinforce warns when
they do not) or set OMP_WAIT_POLICY=PASSIVE.

Independent runs (the quenches of an ensemble, the explore and check runs of `spinforce learn`)
go to worker processes, one per core, each with its share of the threads (run_independent): a
small lattice keeps one thread busy but not two (a 12 x 12 ML-LLG run: 2.0e3 spin-steps/s on
one thread, 2.2e3 on two, 3.9e3 for two runs side by side on one thread each).
"""
from __future__ import annotations

import os
import queue
import sys
import warnings

__all__ = ["sleep_idle_openmp_threads", "run_independent", "worker_processes"]


def sleep_idle_openmp_threads() -> bool:
    """Ask the OpenMP runtime for passive waiting (idle threads sleep instead of spinning).

    Effective only before torch is imported; a policy the user set in the environment is kept.
    When torch came first with several threads and no policy, warns once how to fix it.
    Returns True when passive waiting is what the runtime will use (or already uses).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    if "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return True
    if sys.modules["torch"].get_num_threads() > 1:
        warnings.warn("torch was imported before spinforce, so idle OpenMP threads spin and steal the cores that "
                      "other threads wait for: on a busy machine runs slow down many times over. Import spinforce "
                      "before torch, or set OMP_WAIT_POLICY=PASSIVE in the environment.", RuntimeWarning,
                      stacklevel=3)
    return False


def run_independent(function, jobs, *, cores: int = 0, devices=(), progress: bool = True,
                    desc: str = "runs") -> list:
    """function(job) for every job, in worker processes: the results, in the order of the jobs.

    The jobs must not depend on each other (each writes files of its own) and, with the function,
    must pickle (a module-level function, configs of plain values). `cores` is the number of
    cores to use (0: torch's number of threads): min(len(jobs), cores) processes of cores //
    processes torch threads each. `devices` are the torch devices the jobs run on: with any
    other than the CPU (a GPU runs one job at a time) there is one process. With one process
    the jobs run here, one after another, as function(job) would. A job that raises stops the
    others (each is interrupted as by Ctrl-C: resumable runs keep their checkpoints) and its
    exception is raised here; so is Ctrl-C. The workers' own progress bars are shown below a bar
    of finished jobs.
    """
    import torch
    from tqdm.auto import tqdm
    jobs = list(jobs)
    cores = int(cores) if cores else torch.get_num_threads()
    processes = worker_processes(len(jobs), cores, devices)
    if processes == 1:
        return [function(job) for job in tqdm(jobs, desc=desc, unit="run", disable=not progress or len(jobs) < 2,
                                              dynamic_ncols=True)]
    import multiprocessing
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds OpenMP threads
    todo, done = context.Queue(), context.Queue()
    for item in enumerate(jobs):
        todo.put(item)
    workers = []
    position = os.environ.get("TQDM_POSITION")
    try:
        for slot in range(processes):
            todo.put(None)
            os.environ["TQDM_POSITION"] = str(slot + 1)  # tqdm reads it when a worker imports it
            worker = context.Process(target=_worker, args=(function, todo, done, max(1, cores // processes)),
                                     daemon=True)
            worker.start()
            workers.append(worker)
    finally:
        if position is None:
            os.environ.pop("TQDM_POSITION", None)
        else:
            os.environ["TQDM_POSITION"] = position
    results, failure = [None] * len(jobs), None
    bar = tqdm(total=len(jobs), desc=f"{desc} on {processes} processes", unit="run", disable=not progress,
               position=0)
    try:
        finished = 0
        while finished < len(jobs):
            try:
                index, ok, value = done.get(timeout=1.0)
            except queue.Empty:
                # a worker that dies without a word (killed, out of memory, a crash) ends the wait
                dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if dead or not any(w.is_alive() for w in workers):
                    failure = RuntimeError(f"a worker process of {desc} ended with exit code {dead[0] if dead else 0} "
                                           f"before {len(jobs) - finished} of {len(jobs)} jobs were done")
                    break
                continue
            if not ok:
                failure = value
                break
            results[index] = value
            finished += 1
            bar.update(1)
    except BaseException:
        _stop(workers)
        raise
    finally:
        bar.close()
    if failure is not None:
        _stop(workers)
        raise failure
    for worker in workers:
        worker.join()
    return results


def worker_processes(jobs: int, cores: int, devices=()) -> int:
    """How many processes run_independent uses for `jobs` jobs on `cores` cores (0: torch's
    threads) on `devices` (one when any is not the CPU); 1 means in the calling process."""
    import torch
    if any(torch.device(d).type != "cpu" for d in devices):
        return 1
    return max(1, min(int(jobs), int(cores or torch.get_num_threads())))


def _worker(function, todo, done, threads: int) -> None:
    """A worker process of run_independent: jobs from `todo` until None, results to `done`."""
    import signal

    import torch
    torch.set_num_threads(threads)
    # Ctrl-C at a terminal reaches every process of the group: only the parent's word (SIGUSR1,
    # raised here as KeyboardInterrupt once) interrupts a job, so that it is interrupted once
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def interrupt(*_):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        raise KeyboardInterrupt
    signal.signal(signal.SIGUSR1, interrupt)
    while (item := todo.get()) is not None:
        index, job = item
        try:
            done.put((index, True, function(job)))
        except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
            import pickle
            try:
                pickle.dumps(exc)
            except Exception:  # noqa: BLE001
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            done.put((index, False, exc))
            return


def _stop(workers) -> None:
    """Interrupt the workers' jobs (their runs keep what they reached) and wait for them."""
    import signal
    for worker in workers:
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGUSR1)
    for worker in workers:
        worker.join(timeout=120)
        if worker.is_alive():
            worker.terminate()
