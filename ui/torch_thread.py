"""On a CPU, ``python app.py`` samples on its main thread, which does nothing else once Gradio serves from its own.

Why the main thread: torch's CPU kernels run on OpenMP (libgomp), and each Python thread that enters an OpenMP region
gets a team of helper threads of its own, which outlives the region. The main thread has one from the model's
loading on, so a sampler in any other thread adds a second team. The likely cost: libgomp counts the threads of
every team, and once they outnumber the cores its threads stop spin-waiting between regions and sleep, so the sampler
(thousands of small ops per segment) pays a wake-up for each. Measured with the Fast sampler on the 2-core box
(``bench --fast --app-threads 2 1``, docs/bench/tiny_cpu_fast_app_threads.json): 0.52 s per segment on the main
thread, 0.82 s in a worker thread on one torch thread, 1.07 s on two.

`claim` (before the model loads) marks the main thread as the one that will sample; `serve` then runs the jobs that
`start` queues, one at a time, until the app stops. Where nothing claimed the main thread of this process (tests,
notebooks, a GPU, a ZeroGPU worker process), `start` runs the job in a thread of its own, as the app did before.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Callable

logger = logging.getLogger("starcaster.ui.torch_thread")

_jobs: "queue.Queue[Job]" = queue.Queue()
_claimed_by: int | None = None  # the pid whose main thread samples (a forked child's main thread does not)


class Job:
    """``fn(*args)`` to run once, on the main thread or a thread of its own; ``join()`` waits for it to finish."""

    def __init__(self, fn: Callable, args: tuple, name: str):
        self.fn, self.args, self.name = fn, args, name
        self._done = threading.Event()

    def run(self) -> None:
        try:
            self.fn(*self.args)
        finally:
            self._done.set()

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()


def claim() -> None:
    """Make the main thread of this process the one that samples (call it there, before any torch work)."""
    global _claimed_by
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("only the main thread can be claimed for sampling")
    _claimed_by = os.getpid()


def on_main_thread() -> bool:
    """Whether jobs started in this process run on its main thread (`claim` was called here)."""
    return _claimed_by == os.getpid()


def release() -> None:
    global _claimed_by
    _claimed_by = None


def start(fn: Callable, *args, name: str = "starcaster-sampler") -> Job:
    """Run ``fn(*args)`` on the claimed main thread (queued behind any job before it), else in a new daemon thread.

    ``fn`` should not raise: the caller hears nothing of an exception but the log line (``SamplerAhead`` hands its
    errors over itself)."""
    job = Job(fn, args, name)
    if on_main_thread() and threading.current_thread() is not threading.main_thread():
        _jobs.put(job)
    else:
        threading.Thread(target=_run_logged, args=(job,), name=name, daemon=True).start()
    return job


def serve(stop: Callable[[], bool] = lambda: False, poll: float = 0.2) -> None:
    """Run queued jobs on this (the claimed main) thread until ``stop()`` is true or Ctrl+C (which is raised here)."""
    if not on_main_thread() or threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve() runs on the main thread, after claim()")
    while not stop():
        try:
            job = _jobs.get(timeout=poll)
        except queue.Empty:
            continue
        _run_logged(job)


def _run_logged(job: Job) -> None:
    try:
        job.run()
    except Exception:  # noqa: BLE001  (one visitor's failure must not stop the thread every visitor samples on)
        logger.exception("job %s failed", job.name)
