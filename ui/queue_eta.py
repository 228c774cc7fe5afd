"""What a visitor waiting for the model is told: their place in the queue, not a guessed time.

Gradio 6.31 estimates a queued job's wait (and, once it starts, its run time) from one number per event: the average
duration of all earlier runs of that event. A generation's duration is its segments times its denoising steps, which
differ a hundredfold between a 0.6 s clip at one step and a 74 s recording at 25, and on a shared machine the time per
step changes with the load as well. The average therefore says little about the job at hand: on 2 cores it showed
308 s to a visitor at rank 6 who started after 88 s. Gradio has no way to be given a per-job estimate, so on the
model slot it gives none: the page shows "queue: 3/6" and the time waited so far, and once a job runs its own status
line says how long is left, measured from its own finished segments (``time_left``).
"""

from __future__ import annotations

import time
import warnings
from collections import defaultdict


class _NoAverageFor(defaultdict):
    """Gradio's ``process_time_per_fn``, except that the events on one concurrency slot never have an average: its
    queue then sends no ``rank_eta`` (None) and no ``eta`` when the job starts. Durations are still recorded."""

    def __init__(self, concurrency_id: str, recorded: defaultdict):
        super().__init__(recorded.default_factory, recorded)
        self.concurrency_id = concurrency_id

    def __contains__(self, fn) -> bool:
        return getattr(fn, "concurrency_id", None) != self.concurrency_id and super().__contains__(fn)


def position_only(demo, concurrency_id: str) -> None:
    """Make the queue of ``demo`` (after ``demo.queue()``) report positions without times for ``concurrency_id``."""
    queue = getattr(demo, "_queue", None)
    recorded = getattr(queue, "process_time_per_fn", None)
    if not isinstance(recorded, defaultdict):  # another Gradio: its own estimates stay (tests/test_app_queue.py fails)
        warnings.warn("This Gradio's queue has no process_time_per_fn: it will show its own time estimates.",
                      stacklevel=2)
        return
    if not isinstance(recorded, _NoAverageFor):
        queue.process_time_per_fn = _NoAverageFor(concurrency_id, recorded)


def time_left(started: float, done: int, total: int, now: float | None = None) -> str:
    """The status line's ", about 40 s left" after ``done`` of ``total`` segments since ``started``
    (``time.monotonic()``): this job's own pace; "" before the first segment and after the last."""
    if done <= 0 or done >= total:
        return ""
    seconds = ((time.monotonic() if now is None else now) - started) / done * (total - done)
    if seconds < 90:
        return f", about {max(1, round(seconds))} s left"
    return f", about {round(seconds / 60)} min left"
