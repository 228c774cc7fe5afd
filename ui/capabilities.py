"""Saying what the loaded model cannot do, where a visitor looks: at the top of the page and on the affected tab.

``pipe.capabilities`` maps each task to None (available) or a sentence saying why not: an ``sd15`` folder without
trained STARCaster adapters, for instance, has untrained audio, camera and reference streams. An unavailable tab
stays visible (its examples and controls show what the task is) but its run button says it is unavailable, and
pressing it shows the reason instead of an obscure failure halfway through sampling.
"""

from __future__ import annotations

import html

import gradio as gr

from .generation import unavailable
from .model import get_pipeline

# Inline style: Gradio 6 takes page CSS only at launch(), and the notice must look the same however the Blocks is served.
NOTICE_STYLE = ("border-left: 4px solid #f59e0b; background: rgba(245, 158, 11, 0.10); padding: 8px 14px; "
                "border-radius: 4px; margin: 4px 0;")
TASK_TITLES = {"portrait": "Portrait animation", "identity": "ID-driven generation", "orbit": "Free-viewpoint orbit"}


def missing() -> dict:
    """``{task: why}`` for the tasks the shared pipeline cannot do."""
    return unavailable(get_pipeline())


def _notice(body: str, elem_id: str) -> gr.HTML:
    return gr.HTML(f'<div style="{NOTICE_STYLE}">⚠️ {body}</div>', elem_id=elem_id, padding=False)


UNTRAINED = ("<b>This model has random weights</b> (no trained checkpoint in its folder yet), so every video is "
             "noise. The demo's controls, streaming and camera editor all work; the pictures will once a trained "
             "checkpoint is in place.")


INFO_STYLE = NOTICE_STYLE.replace("#f59e0b", "#3b82f6").replace("245, 158, 11", "59, 130, 246")
TINY_WORLD = ("<b>The built-in model is tiny and has only ever seen a synthetic world</b>: this project's rendered "
              "talking heads at 128 px, trained on two CPU cores. Its own example portraits talk in sync; under a "
              "moving camera they turn only part of the way, and faces blur (most with <i>Fast</i>). A real photo is "
              "accepted (the face is found and aligned), but the model redraws it as one of its synthetic heads, "
              "with the photo's rough colours and no likeness; the README shows what that looks like. Real people "
              "need the full-size model: run the app with <code>STARCASTER_MODEL=sd15</code> and Arc2Face-family "
              "weights.")


def capability_notice(pipe) -> str | None:
    """Plain text for the top of a page or a log: which tasks ``pipe`` cannot run and why (None when it runs all)."""
    gaps = unavailable(pipe)
    if not gaps:
        return None
    lines = [f"- {why}" for why in gaps.values()]
    if (getattr(pipe, "capabilities", None) or {}).get("identity") is None and {"portrait", "orbit"} <= set(gaps):
        lines.append("- ID-driven generation runs; audio given to it goes into the file but does not move the lips "
                     "until the adapters are trained.")
    return "Some tasks are unavailable with this model:\n" + "\n".join(lines)


def page_notice() -> gr.HTML | None:
    """Notices above the tabs: untrained weights or what the tiny world is, and every unavailable task."""
    pipe = get_pipeline()
    if not getattr(pipe, "trained", True):
        _notice(UNTRAINED, "untrained-notice")
    elif pipe.settings.preset == "tiny":  # what the default can and cannot do, said before the first real photo
        gr.HTML(f'<div style="{INFO_STYLE}">ℹ️ {TINY_WORLD}</div>', elem_id="tiny-world-notice", padding=False)
    gaps = missing()
    if not gaps:
        return None
    items = "".join(f"<li><b>{TASK_TITLES.get(t, t)}</b>: {html.escape(why)}</li>" for t, why in gaps.items())
    return _notice(f"<b>This model cannot do everything the demo offers.</b><ul>{items}</ul>", "capabilities-notice")


def tab_notice(task: str) -> bool:
    """Inside a tab: a notice when ``task`` is unavailable. Returns whether it is available."""
    why = missing().get(task)
    if why:
        _notice(f"<b>{TASK_TITLES.get(task, task)} is not available with this model.</b> {html.escape(why)}",
                f"{task}-unavailable")
    return why is None


def run_button(label: str, available: bool, elem_id: str) -> gr.Button:
    """The tab's run button; when unavailable it says so (and its handler answers with the reason)."""
    if available:
        return gr.Button(label, variant="primary", elem_id=elem_id)
    return gr.Button(f"{label} (unavailable)", variant="secondary", elem_id=elem_id)
