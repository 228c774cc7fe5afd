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
    return _files("portraits", "*.png", "*.jpg")


def speech() -> list[str]:
    return _files("audio", "*.wav")


def cameras() -> list[str]:
    return _files("cameras", "*.json")


def _pairs(with_audio: bool = True):
    images, sounds = portraits(), speech()
    if not images or (with_audio and not sounds):
        return []
    return [(img, sounds[i % len(sounds)] if sounds else None) for i, img in enumerate(images[:MAX_EXAMPLES])]


def _show(rows, inputs, label):
    # The bundled portraits are already aligned renders of the synthetic world: detection is skipped for them.
    if rows:
        gr.Examples(rows, inputs, label=label, examples_per_page=MAX_EXAMPLES)


def portrait_examples(inputs):
    _show([[img, snd, True] for img, snd in _pairs()], inputs, "Examples (bundled portraits and speech)")


def identity_examples(inputs):
    _show([[img, snd, True] for img, snd in _pairs()], inputs, "Examples")


def orbit_examples(inputs):
    paths = cameras()
    rows = []
    for i, (img, snd) in enumerate(_pairs(with_audio=False)):
        if not paths:
            break
        with open(paths[i % len(paths)]) as f:
            text = f.read()
        rows.append([img, None if i % 2 == 0 else snd, True, text])  # silent and talking orbits
    _show(rows, inputs, "Examples (bundled portraits and camera paths)")
