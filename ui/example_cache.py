"""Lazily cached examples: an example's first click generates its video once; every later click, anyone's, shows it.

How this sits on Gradio 6.31's ``gr.Examples`` (``gradio/helpers.py``), and why:

* ``cache_examples=True, cache_mode="lazy"``: the outputs are computed inside the example-loading event of the first
  click and stored; later clicks read the store and call nothing. Both are passed explicitly, because on Spaces
  ``GRADIO_CACHE_EXAMPLES=true`` would otherwise turn caching on with ``GRADIO_CACHE_MODE`` defaulting to *eager*:
  every example generated at start-up.
* That computation runs outside the queue's model slot and without ``gr.Progress``. So the example function takes
  ``SAMPLER_LOCK``, which the tabs' streaming runs hold while they sample: the model still runs one generation at a
  time. It is a plain function returning the finished mp4 (a generator's chunks would be what got cached); the tabs'
  Generate buttons still stream.
* Gradio's store is ``./.gradio/cached_examples/<component id>``: it outlives restarts and knows nothing of the model
  that made the videos. Each example set is moved to a folder named by a fingerprint of the model, the sampling
  settings and the example files, so a different model or changed assets start a fresh cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from .generation import SAMPLER_LOCK, SAMPLER_WAIT_SECONDS, require
from .model import GPU, get_pipeline, model_name
from .streaming import OUTPUT_ROOT, can_stream, new_output_dir, stream_segments

CACHE_ROOT = os.path.join(OUTPUT_ROOT, "examples")

# Examples are made once for everybody, so they use the model's own defaults (None) rather than a visitor's settings.
EXAMPLE_SAMPLING = dict(seed=0, steps=None, guidance=None)


def example_settings(pipe) -> dict:
    """The sampling arguments every example is generated with."""
    steps = EXAMPLE_SAMPLING["steps"] or pipe.settings.steps
    guidance = EXAMPLE_SAMPLING["guidance"] or pipe.settings.guidance
    strengths = dict(audio=1.0, identity=1.0, camera=1.0)
    return dict(seed=int(EXAMPLE_SAMPLING["seed"]), steps=int(steps), guidance=float(guidance), strengths=strengths)


@GPU(duration=300)
def run_example(task: str, **inputs):
    """Generate one example to the end (no streaming) and return (video, mp4, seed, status) for the cache."""
    pipe = get_pipeline()
    require(task, pipe)
    settings = example_settings(pipe)
    if not SAMPLER_LOCK.acquire(timeout=SAMPLER_WAIT_SECONDS):
        raise gr.Error("The model has been busy for a long time: please try the example again later.")
    try:
        final, frames = None, 0
        for update in stream_segments(pipe.stream(task=task, **inputs, **settings), new_output_dir(),
                                      streaming=False):
            final, frames = update.final or final, update.frames_done
    finally:
        SAMPLER_LOCK.release()
    steps = settings["steps"]
    status = (f"Example: {frames} frames at {pipe.fps:g} fps, seed {settings['seed']}, {steps} step{'s' * (steps != 1)}."
              " It is cached: the next click on it shows this video at once.")
    # A streaming gr.Video passes its value through unprocessed: a FileData plays as an ordinary (whole) video. Without
    # ffmpeg/ffprobe the Video is not streaming and wants the plain path (it cannot postprocess a FileData).
    video = FileData(path=final) if can_stream() else final
    return video, final, settings["seed"], status


def fingerprint(rows, pipe) -> str:
    """Names a cache folder: the model, its weights' dates, the example settings and the example files' contents."""
    h = hashlib.sha1()
    h.update(json.dumps([model_name(), _weights_stamp(model_name()), example_settings(pipe)], sort_keys=True).encode())
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


def cached_examples(rows, inputs, outputs, fn, *, task: str, api_name: str, **kwargs) -> gr.Examples:
    """``gr.Examples`` that fill ``inputs`` and, through the lazy cache, ``outputs`` with ``fn``'s finished video."""
    keep = [any(row[i] is not None for row in rows) for i in range(len(inputs))]
    if not all(keep):
        # Gradio 6.31 fills a cached example's inputs without its all-empty columns but expects a value for every
        # input ("didn't return enough output values"): leave those inputs out, and give fn None in their place.
        rows = [[value for value, k in zip(row, keep) if k] for row in rows]
        inputs = [component for component, k in zip(inputs, keep) if k]
        fn = _blanks_for_missing(fn, keep)
    examples = gr.Examples(rows, inputs, outputs, fn=fn, cache_examples=True, cache_mode="lazy", api_name=api_name,
                           api_visibility="undocumented", **kwargs)
    folder = Path(CACHE_ROOT) / f"{task}-{fingerprint(rows, get_pipeline())}"
    # Gradio reads these three attributes whenever it caches or loads (helpers.Examples.cache/load_from_cache).
    examples.cached_folder = folder
    examples.cached_file = folder / "log.csv"
    examples.cached_indices_file = folder / "indices.csv"
    return examples


def _blanks_for_missing(fn, keep):
    def call(*values):
        given = iter(values)
        return fn(*(next(given) if k else None for k in keep))

    return call
