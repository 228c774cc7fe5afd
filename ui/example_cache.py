"""Examples that run like any generation: queued on the model slot, streamed with progress, stoppable; then cached.

Clicking an example fills the inputs (``gr.Examples``, no caching of its own) and asks :meth:`ExampleRuns.show`
(queued, but on no slot: it only reads a file) whether that example's video is stored. If it is, the video, the mp4 and the
status appear at once, for anyone, and the model is not involved. If not, ``show`` bumps a per-session trigger
(``gr.State``), whose change event runs :meth:`ExampleRuns.generate` on the model slot shared with the tabs' run
buttons: it waits its turn like any generation, streams its segments, and the tab's Stop cancels it. A finished
example video is copied into the cache, so the next click on it, anyone's, shows it at once.

Why not Gradio's own lazy example cache: it computes the first click inside the example-loading event, outside the
queue, without progress, and Stop cannot reach it; that one click held up every visitor for a whole generation.

An example follows the tab's *Quality / Fast* choice, and each sampler's videos are cached apart:
``$TMPDIR/starcaster-ui/examples/<task>-<sampler>-<fingerprint>/``, the fingerprint naming the model, its weights'
dates, the example settings and the example files' contents: a different model or changed assets start afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from . import samplers
from .errors import user_errors
from .generation import MODEL_SLOT, RunState, require, run_stream
from .model import get_pipeline, model_name
from .streaming import OUTPUT_ROOT, can_stream

CACHE_ROOT = os.path.join(OUTPUT_ROOT, "examples")

# Examples are made once for everybody, so they use the model's own defaults (None) rather than a visitor's settings;
# only the sampler is the visitor's (the tab's choice).
EXAMPLE_SAMPLING = dict(seed=0, steps=None, guidance=None)


def example_settings(pipe, sampler: str = samplers.QUALITY) -> dict:
    """The sampling arguments every example is generated with by ``sampler`` (Fast: its own steps, no guidance)."""
    fast = sampler == samplers.FAST
    steps = EXAMPLE_SAMPLING["steps"] or (pipe.settings.fast_steps if fast else pipe.settings.steps)
    guidance = None if fast else float(EXAMPLE_SAMPLING["guidance"] or pipe.settings.guidance)
    strengths = dict(audio=1.0, identity=1.0, camera=1.0)
    return dict(seed=int(EXAMPLE_SAMPLING["seed"]), steps=int(steps), guidance=guidance, strengths=strengths,
                sampler=sampler)


def fingerprint(rows, pipe, sampler: str = samplers.QUALITY) -> str:
    """Names a cache folder: the model, its weights' dates, the example settings and the example files' contents."""
    h = hashlib.sha1()
    settings = example_settings(pipe, sampler)
    h.update(json.dumps([model_name(), _weights_stamp(model_name()), settings], sort_keys=True).encode())
    for row in rows:
        for value in row:
            h.update(repr(value).encode())
            if isinstance(value, str) and os.path.isfile(value):
                with open(value, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:16]


def _weights_stamp(name: str) -> float:
    """Newest modification time under the model's checkpoint folder (0 when it is a preset without a folder here)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = next((p for p in (name, os.path.join(here, "checkpoints", name)) if os.path.isdir(p)), None)
    if folder is None:
        return 0.0
    return max((os.path.getmtime(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files), default=0.0)


class ExampleRuns:
    """One tab's examples: ``request(row) -> (pipeline inputs, note)`` turns an example row into a generation."""

    def __init__(self, task: str, rows: list, request):
        self.task, self.rows, self.request = task, rows, request
        pipe = get_pipeline()
        self.folders = {sampler: Path(CACHE_ROOT) / f"{task}-{sampler}-{fingerprint(rows, pipe, sampler)}"
                        for _, sampler in samplers.CHOICES}
        self.event = None  # the model-slot run (Stop cancels it)
        self.trigger = None  # the per-session State whose change starts it

    # -- the cache ------------------------------------------------------------------------------------------------
    def _paths(self, index: int, sampler: str) -> tuple[Path, Path]:
        folder = self.folders[sampler]
        return folder / f"{index}.mp4", folder / f"{index}.json"

    def cached(self, index: int, sampler: str = samplers.QUALITY) -> dict | None:
        """``{"mp4", "seed", "status"}`` of a stored example video made by ``sampler``, or None."""
        mp4, meta = self._paths(index, sampler)
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        return {**info, "mp4": str(mp4)} if mp4.is_file() else None

    def _store(self, index: int, settings: dict):
        def keep(final: str, frames: int):
            mp4, meta = self._paths(index, settings["sampler"])
            mp4.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(final, mp4)
            sampled = samplers.describe(settings["sampler"], settings["steps"])
            status = (f"Example: {frames} frames at {get_pipeline().fps:g} fps, seed {settings['seed']}, {sampled}. "
                      "It is cached: the next click on it shows this video at once.")
            meta.write_text(json.dumps({"seed": settings["seed"], "status": status}))
            return str(mp4), status

        return keep

    def _show_cached(self, entry: dict, queued_stream: bool = False) -> tuple:
        # Outside the queue a streaming gr.Video passes its value through unprocessed: a FileData plays as an
        # ordinary (whole) video. Inside a streaming (generator) event every value goes through Gradio's chunk
        # encoder, which wants an .mp4 path, and so does a Video that is not streaming (no ffmpeg/ffprobe).
        video = FileData(path=entry["mp4"]) if can_stream() and not queued_stream else entry["mp4"]
        return video, entry["mp4"], entry["seed"], entry["status"], RunState(finished=True)

    def _index(self, index) -> int:
        try:
            k = int(index)
        except (TypeError, ValueError):
            k = -1
        if not 0 <= k < len(self.rows):
            raise ValueError(f"There is no example {index!r}: pick one of the {len(self.rows)} examples.")
        return k

    # -- the events -------------------------------------------------------------------------------------------------
    def show(self, picked, trigger, sampler=None):
        """On a click (outside the queue): the stored video at once, or a request to generate it on the model slot."""
        index = picked[0] if isinstance(picked, (list, tuple)) else picked
        entry = self.cached(self._index(index), samplers.resolve(sampler, get_pipeline()))
        if entry is not None:
            return (*self._show_cached(entry), gr.skip(), gr.skip())
        status = "Example: waiting for the model (it is generated once, then cached)..."
        return gr.skip(), None, gr.skip(), status, RunState(), index, (trigger or 0) + 1

    def generate(self, index, sampler=None, progress=gr.Progress()):
        """Example `index` (0-based, in the page's order) made by `sampler` ("quality" or "fast"; None: Fast on a
        CPU, Quality on a GPU): its stored video, or else generated like a tab's run (queued on the model, streamed)
        and then stored for everyone."""
        k = self._index(index)
        pipe = get_pipeline()
        sampler = samplers.resolve(sampler, pipe)
        entry = self.cached(k, sampler)
        if entry is not None:
            yield self._show_cached(entry, queued_stream=True)
            return
        require(self.task, pipe)
        inputs, notes = self.request(self.rows[k])
        settings = example_settings(pipe, sampler)
        yield from run_stream(self.task, progress, notes, keep=self._store(k, settings), **inputs, **settings)

    def wire(self, examples: gr.Examples, outputs, sampler: gr.Radio | None = None) -> "ExampleRuns":
        index = gr.Number(None, visible="hidden", precision=0, label="Example index",  # the label names it in view_api()
                          elem_id=f"{self.task}-example-index")
        trigger = self.trigger = gr.State(0)
        # Queued (Gradio's browser client acts on a State's change only for queued events) but never waiting: it
        # reads a file, so it has no concurrency limit and does not share the model's slot.
        chosen = [sampler] if sampler is not None else []  # the tab's Quality / Fast choice
        examples.dataset.click(user_errors(self.show), [examples.dataset, trigger, *chosen],
                               [*outputs.components(), index, trigger], concurrency_limit=None,
                               show_progress="hidden", api_visibility="private")
        self.event = trigger.change(user_errors(self.generate), [index, *chosen], outputs.components(),
                                    api_name=f"{self.task}_example", **MODEL_SLOT)
        return self
