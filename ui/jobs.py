"""Knowing, inside a running generation, that its visitor cancelled it (Stop, or ``gradio_client``'s ``job.cancel()``).

Gradio 6.31 cancels a queued job by cancelling the asyncio task that runs it (named ``<session>_<fn><gradio-sep><event
id>``) and then waits for the handler's thread to come back: a generator cannot be interrupted inside ``next()``. Left
alone, the sampler would finish its segment (seconds at 25 steps) while the visitor's cancel request, the model slot and
the next visitor all wait. So the handler takes a :class:`JobCancel` for its own job and hands it to the pipeline, which
checks it after every denoising step: the segment in progress ends within one step of the cancel.
"""

from __future__ import annotations

import asyncio
import threading


class JobCancel:
    """A ``threading.Event`` that is also set once Gradio has been asked to cancel the job it belongs to."""

    def __init__(self, event_id: str | None = None, loop: asyncio.AbstractEventLoop | None = None):
        self._event = threading.Event()
        self._event_id = event_id
        self._loop = loop
        self._task = None

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        if not self._event.is_set() and self._job_cancelled():
            self._event.set()
        return self._event.is_set()

    def _job_cancelled(self) -> bool:
        if self._event_id is None or self._loop is None:
            return False
        if self._task is None:
            suffix = f"<gradio-sep>{self._event_id}"
            try:
                tasks = asyncio.all_tasks(self._loop)  # read from this thread: a copy of the loop's task set
            except RuntimeError:
                return False
            self._task = next((t for t in tasks if t.get_name().endswith(suffix)), None)
            if self._task is None:
                return False
        return self._task.cancelling() > 0 or self._task.done()


def current_job() -> JobCancel:
    """The cancel flag of the Gradio job this handler runs in (a plain, never-set flag outside a queued job)."""
    try:
        from gradio.context import LocalContext

        event_id = LocalContext.event_id.get(None)
    except ImportError:
        event_id = None
    loop = None
    if event_id is not None:
        try:
            import anyio.from_thread

            loop = anyio.from_thread.run_sync(asyncio.get_running_loop)  # handlers run in anyio worker threads
        except Exception:  # noqa: BLE001  (not in a worker thread: no job to watch)
            loop = None
    return JobCancel(event_id, loop)
