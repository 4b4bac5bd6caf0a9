"""Run one function over a stage's clips, in a pool of processes or in this one, results in clip order.

A clip's tracks, scores and kinematics depend on that clip alone, so the clips are spread over
`workers` processes (spawned: nothing of this process's state is shared) and the results put back
in the order of the jobs: the stage writes the same files whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from visem_pl.tasks.workspace.progress import Progress


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_size(workers: int, jobs: int) -> int:
    """Processes for `jobs` jobs: `workers` (0: one per core), never more than the jobs."""
    return max(1, min(workers or cores(), jobs))


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism: one thread per process


def map_clips(fn: Callable, jobs: Sequence, names: Sequence[str], workers: int, bar: Progress | None = None) -> list:
    """[fn(job) for job in jobs], each job one clip (`names`), in `pool_size(workers, ...)` processes;
    `bar` advances as each clip finishes. `fn` must be a module-level function and the jobs picklable.
    A clip's failure is raised as it was, with a note naming the clip (the other clips are cancelled)."""
    size = pool_size(workers, len(jobs))
    if size == 1:
        out = []
        for job, name in zip(jobs, names):
            try:
                out.append(fn(job))
            except Exception as exc:
                exc.add_note(f"(clip {name})")
                raise
            if bar is not None:
                bar.advance()
        return out
    results: list = [None] * len(jobs)
    with ProcessPoolExecutor(size, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
        pending = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=pending.get):
                i = pending.pop(fut)
                try:
                    results[i] = fut.result()
                except BrokenProcessPool as exc:
                    pool.shutdown(cancel_futures=True)
                    raise RuntimeError(f"clip {names[i]}: a worker process ended abruptly ({exc})") from exc
                except Exception as exc:
                    pool.shutdown(cancel_futures=True)
                    exc.add_note(f"(clip {names[i]})")
                    raise
                if bar is not None:
                    bar.advance()
    return results
