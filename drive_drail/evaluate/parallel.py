"""Run independent evaluation tasks in order-preserving parallel: in-process, a process
pool, or Ray (one machine or a cluster).

Every backend returns ``[fn(t) for t in tasks]`` in the order of ``tasks``. Each task
seeds its own simulator and policy from its episode seed, and numeric libraries run one
thread per worker (no thread-count-dependent reductions), so the results do not depend
on the backend or the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from drive_drail.errors import UserError
from drive_drail.process import usable_cores

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("process", "ray")
RAY_VERSION = "2.60.0"
"""The Ray release the Ray backend is tested with (``pip install ray==2.60.0``)."""


class WorkerPoolError(UserError, RuntimeError):
    """The process pool broke: a worker died (killed for memory, or a script without a ``__main__`` guard)."""


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored afterwards)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def _init_worker() -> None:
    """Worker set-up: one thread per numeric library (torch reads OMP_NUM_THREADS when a
    policy first imports it), silent SDL audio. torch itself is not imported here: baselines
    and ONNX policies never need it, and it costs seconds per worker."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    torch = sys.modules.get("torch")
    if torch is not None:  # a reused Ray worker may have imported it already
        torch.set_num_threads(1)


def map_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int | None = None,
    backend: str = "process",
    ray_address: str | None = None,
    progress: bool = False,
    desc: str = "episodes",
    preload: Sequence[str] = (),
    size: Callable[[T], int] | None = None,
) -> list[R]:
    """``[fn(t) for t in tasks]``, in order, on ``workers`` processes or on Ray.

    Args:
        fn: a module-level function (pickled by reference to the workers).
        tasks: picklable task descriptions.
        workers: processes for the ``process`` backend (default: all cores); 1 runs in
            this process. Ignored by Ray, which schedules one task per CPU it has.
        backend: ``process`` or ``ray``.
        ray_address: Ray cluster address (``auto``, ``ray://host:10001``), or ``None`` /
            ``local`` for a local instance (an already initialised Ray is used as is).
        progress: show a progress bar.
        preload: modules the process pool's fork server imports once, before forking
            the workers (so each worker does not pay seconds of imports).
        size: what a task counts for on the bar (its episodes); default 1.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend '{backend}': expected one of {', '.join(BACKENDS)}")
    tasks = list(tasks)
    sizes = [1 if size is None else int(size(t)) for t in tasks]
    if backend == "ray":
        return _map_ray(fn, tasks, ray_address, progress, desc, sizes)
    workers = max(1, min(workers or usable_cores(), len(tasks) or 1))
    if workers == 1:
        with single_threaded():
            return _counted((fn(t) for t in tasks), sizes, desc, progress)
    # forkserver, not fork: forking this process after torch ran its OpenMP pool can
    # deadlock the child. The fork server is a fresh single-threaded process that imports
    # ``preload`` once; workers fork from it cheaply.
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            return _counted(pool.map(fn, tasks, chunksize=1), sizes, desc, progress)
    except BrokenProcessPool:
        main = sys.modules.get("__main__")
        script = getattr(main, "__file__", None)
        if script and _has_main_guard(script):  # the script is fine: something ended the worker from outside
            hint = "it was killed: by a signal, or by the system when memory ran out"
        elif script:
            hint = f"worker processes import your script {script}: put the call under `if __name__ == \"__main__\":`, or pass workers=1"
        else:
            hint = "pass workers=1 to run in this process"
        raise WorkerPoolError(f"a worker process of the {workers}-process pool died ({hint})") from None


def _counted(results: Iterable[R], sizes: list[int], desc: str, progress: bool) -> list[R]:
    """The results, in order, with a bar that advances by each task's size as its result arrives."""
    out = []
    with tqdm(total=sum(sizes), desc=desc, disable=None if progress else True) as bar:
        for result, n in zip(results, sizes):
            out.append(result)
            bar.update(n)
    return out


def _has_main_guard(script: str) -> bool:
    """Whether ``script`` has an ``if __name__ == "__main__":`` block (read as text, never run)."""
    import re

    try:
        text = Path(script).read_text(errors="ignore")
    except OSError:
        return False
    return re.search(r"^if\s+__name__\s*==\s*[\"']__main__[\"']\s*:", text, re.MULTILINE) is not None


def _ray_call(fn: Callable[[T], R], task: T) -> R:
    """A Ray task: the same single-threaded set-up as a pool worker, then ``fn(task)``."""
    _init_worker()
    return fn(task)


def _map_ray(fn: Callable[[T], R], tasks: list[T], address: str | None, progress: bool, desc: str, sizes: list[int]) -> list[R]:
    try:
        import ray
    except ImportError:
        raise RuntimeError(f"the Ray backend needs Ray: pip install 'drive-drail[ray]' (ray=={RAY_VERSION})") from None
    if not ray.is_initialized():
        ray.init(
            address=None if address in (None, "", "local") else address,
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
        )
    remote = ray.remote(num_cpus=1, max_retries=1)(_ray_call)
    refs = [remote.remote(fn, t) for t in tasks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list = [None] * len(refs)
    pending = list(refs)
    with tqdm(total=sum(sizes), desc=f"{desc} (ray)", disable=None if progress else True) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ray.get(ref)
                bar.update(sizes[index[ref]])
    return results
