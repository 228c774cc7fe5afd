"""Examples from ``assets/``: whatever portraits, speech and camera paths are there (any of them may be missing).

Clicking an example fills the inputs and shows its video: generated on the first click (by anyone) through the queue
like any run, then served from the cache (``example_cache.py``).
"""

from __future__ import annotations

import glob
import os

import gradio as gr

from .example_cache import ExampleRuns

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
MAX_EXAMPLES = 4


def _files(sub: str, *patterns: str) -> list[str]:
    found = []
    for pattern in patterns:
        found += glob.glob(os.path.join(ASSETS, sub, pattern))
    return sorted(found)


def portraits() -> list[str]:
    """Single portraits only: the folder also holds wide multi-view strips, which are not inputs."""
    from PIL import Image

    found = []
    for path in _files("portraits", "*.png", "*.jpg"):
        try:
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
        except OSError:
            continue
        if 0.75 <= w / h <= 1.34:
            found.append(path)
    return found


def speech() -> list[str]:
    return _files("audio", "*.wav")


def cameras() -> list[str]:
    return _files("cameras", "*.json")


def _pairs(with_audio: bool = True):
    images, sounds = portraits(), speech()
    if not images or (with_audio and not sounds):
        return []
    return [(img, sounds[i % len(sounds)] if sounds else None) for i, img in enumerate(images[:MAX_EXAMPLES])]


def _name(path) -> str:
    return os.path.splitext(os.path.basename(path))[0] if path else "silent"


def _show(rows, inputs, label, labels=None, *, fn=None, outputs=None, task=None, sampler=None):
    """Examples that fill ``inputs``; with ``fn`` (``row -> (pipeline inputs, note)``: the task is available) a click
    also shows the example's video for the tab's ``sampler`` choice, generated on the model slot the first time
    (``ExampleRuns``).

    Returns (gr.Examples, ExampleRuns or None), or (None, None) when there are no examples."""
    if not rows:
        return None, None
    labels = labels or [" + ".join(_name(v) for v in row if isinstance(v, str)) for row in rows]
    # Gradio's own example cache stays off (explicitly: Spaces set GRADIO_CACHE_EXAMPLES=true): it would generate
    # outside the queue, where nothing can be stopped and everyone waits.
    examples = gr.Examples(rows, inputs, cache_examples=False, label=label, examples_per_page=MAX_EXAMPLES,
                           example_labels=labels, elem_id=f"{task}-examples")
    if fn is None:  # the model cannot do this task: fill the inputs only, nothing to generate
        return examples, None
    return examples, ExampleRuns(task, rows, fn).wire(examples, outputs, sampler)


def portrait_examples(inputs, fn=None, outputs=None, sampler=None):
    """Rows of (portrait, speech, aligned). The bundled portraits are aligned renders: detection is skipped."""
    return _show([[img, snd, True] for img, snd in _pairs()], inputs, "Examples (bundled portraits and speech)",
                 fn=fn, outputs=outputs, task="portrait", sampler=sampler)


def identity_examples(inputs, fn=None, outputs=None, sampler=None):
    """Rows of (photo, speech, aligned)."""
    return _show([[img, snd, True] for img, snd in _pairs()], inputs, "Examples", fn=fn, outputs=outputs,
                 task="identity", sampler=sampler)


def orbit_examples(inputs, fn=None, outputs=None, load_camera=None, camera_outputs=None, sampler=None):
    """Rows of (portrait, speech or None, aligned, camera JSON); ``load_camera(json)`` redraws the editor on click."""
    paths = cameras()
    rows, labels = [], []
    for i, (img, snd) in enumerate(_pairs(with_audio=False)):
        if not paths:
            break
        camera = paths[i % len(paths)]
        with open(camera) as f:
            text = f.read()
        snd = None if i % 2 == 0 else snd  # silent and talking orbits
        rows.append([img, snd, True, text])
        labels.append(f"{_name(img)} + {_name(camera)} camera + {_name(snd)}")
    examples, runs = _show(rows, inputs, "Examples (bundled portraits and camera paths)", labels, fn=fn,
                           outputs=outputs, task="orbit", sampler=sampler)
    if examples is not None and load_camera is not None:
        # Its own listener on the click: the editor redraws at once, not after the example's video is generated.
        # Gradio's example dataset hands listeners (index, row), the row without all-empty columns.
        column = examples.inputs_with_examples.index(inputs[3])
        examples.dataset.click(lambda picked: load_camera(picked[1][column]), examples.dataset, camera_outputs,
                               queue=False, show_progress="hidden", api_visibility="private")
    return examples, runs
