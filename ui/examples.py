"""Examples from ``assets/``: whatever portraits, speech and camera paths are there (any of them may be missing)."""

from __future__ import annotations

import glob
import os

import gradio as gr

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


def _show(rows, inputs, label, labels=None, **kwargs):
    # The bundled portraits are already aligned renders of the synthetic world: detection is skipped for them.
    # Clicking an example fills the inputs; generations are not cached: they stream, and on Spaces a default eager
    # cache would run every example at start-up.
    if rows:
        gr.Examples(rows, inputs, label=label, examples_per_page=MAX_EXAMPLES, cache_examples=False,
                    example_labels=labels or [" + ".join(_name(v) for v in row if isinstance(v, str)) for row in rows],
                    **kwargs)


def portrait_examples(inputs):
    _show([[img, snd, True] for img, snd in _pairs()], inputs, "Examples (bundled portraits and speech)")


def identity_examples(inputs):
    _show([[img, snd, True] for img, snd in _pairs()], inputs, "Examples")


def orbit_examples(inputs, load_camera=None, camera_outputs=None):
    """Rows of (portrait, speech or None, aligned, camera JSON); ``load_camera`` redraws the editor on click."""
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
    extra = {}
    if load_camera is not None:
        extra = dict(fn=load_camera, outputs=camera_outputs, run_on_click=True)
    _show(rows, inputs, "Examples (bundled portraits and camera paths)", labels, **extra)
