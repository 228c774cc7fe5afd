"""The *Quality / Fast* choice (issue #12): which of the pipeline's two samplers a generation runs.

Quality is the shipped model under DPM-Solver++ with classifier-free guidance. Fast is its consistency-distilled copy
under LCMScheduler in ``pipe.settings.fast_steps`` steps, one UNet row per step, decoded by the tiny decoder; its
guidance was folded in when it was distilled, so the guidance slider does not apply to it. Fast is the default where
the app runs on the CPU (there Quality streams far slower than real time) and Quality on a GPU. A checkpoint without
the distilled model offers Quality only and says why; an API call that asks it for Fast gets the same sentence.
"""

from __future__ import annotations

import gradio as gr

from .model import on_gpu

QUALITY, FAST = "quality", "fast"  # the library's own names (``pipe.stream(sampler=...)``), which the API takes
CHOICES = [("Quality", QUALITY), ("Fast", FAST)]
LABELS = dict((value, label) for label, value in CHOICES)

GUIDANCE_NOTE = "Fast has its guidance distilled in: this slider does not apply."
NO_FAST = ("This model has no fast sampler: its checkpoint has no fast_model/ folder (the distilled model, made by the "
           "training recipe's distill step). Use Quality.")


def fast_unavailable(pipe) -> str | None:
    """Why ``pipe`` cannot sample Fast, or None when it can."""
    return None if getattr(pipe, "has_fast_sampler", False) else NO_FAST


def default_sampler(pipe) -> str:
    """Fast on a CPU when the model has it; Quality on a GPU, and wherever Fast is missing."""
    return FAST if fast_unavailable(pipe) is None and not on_gpu() else QUALITY


def resolve(sampler, pipe) -> str:
    """The sampler a request asked for (None: the default), refused with a sentence when the model lacks it."""
    if sampler is None or sampler == "":
        return default_sampler(pipe)
    name = str(sampler).strip().lower()
    if name not in LABELS:
        raise ValueError(f"The sampler must be 'quality' or 'fast', got {sampler!r}.")
    if name == FAST and fast_unavailable(pipe):
        raise ValueError(NO_FAST)
    return name


def describe(sampler: str, steps: int) -> str:
    """For status lines: 'Fast sampler, 2 steps'."""
    return f"{LABELS.get(sampler, sampler)} sampler, {steps} step{'s' * (steps != 1)}"


# -- the controls ----------------------------------------------------------------------------------------------------
# Each sampler has its own steps slider, shown while it is chosen: 25 DPM-Solver++ steps and 2 LCM steps are not the
# same quantity, so a count chosen for one is kept for when the visitor comes back to it, never carried over to the
# other. It also gives each its own API default (a value left out is the slider's starting value): a Quality call that
# leaves ``steps`` out gets 25 steps, a Fast one that leaves ``fast_steps`` out gets the distilled model's own few.


def slider_states(sampler: str) -> tuple[dict, dict, dict]:
    """(Quality's steps slider, Fast's steps slider, the guidance slider) for ``sampler``, as Slider arguments."""
    fast = sampler == FAST
    return dict(visible=not fast), dict(visible=fast), dict(interactive=not fast, info=GUIDANCE_NOTE if fast else "")


def switch(sampler):
    """The visitor picked ``sampler``: show its steps slider, and grey out guidance for Fast."""
    return tuple(gr.Slider(**state) for state in slider_states(sampler))


def radio(pipe, value: str, elem_prefix: str, quality_steps: int) -> gr.Radio:
    """The choice itself; disabled, with the reason, where the model has no fast sampler."""
    why_not = fast_unavailable(pipe)
    info = why_not or (f"Quality: {quality_steps} steps with guidance. Fast: a distilled model in "
                       f"{pipe.settings.fast_steps} steps without a guidance pass, many times quicker.")
    # Both choices stay listed without Fast, so that an API call asking for it reaches the handler and gets the app's
    # sentence rather than Gradio's "not in the list of choices"; a visitor cannot pick it (the radio is disabled).
    return gr.Radio(CHOICES, value=value, label="Sampler", info=info, interactive=why_not is None,
                    elem_id=f"{elem_prefix}-sampler")


def fast_steps_slider(pipe, limits: tuple, elem_prefix: str, **state) -> gr.Slider:
    """Fast's steps: the library's range (``SAMPLING_LIMITS``), starting at the model's ``fast_steps``."""
    return gr.Slider(*limits, value=int(pipe.settings.fast_steps), step=1, label="Denoising steps (Fast)",
                     info="Each step is one pass of the distilled model.", elem_id=f"{elem_prefix}-fast-steps",
                     **state)
