"""What every tab shares: sampling controls, the output panel, and the streaming run with progress and Stop."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import gradio as gr

from starcaster.pipeline_inputs import SAMPLING_LIMITS, check_sampling

from . import samplers
from .jobs import current_job
from .model import GPU, MODEL_CONCURRENCY_ID, get_pipeline
from .queue_eta import time_left
from .streaming import FALLBACK_NOTE, SamplerAhead, can_stream, new_output_dir, remove_output_dir, stream_segments

MAX_SEED = 2**31 - 1
# The sliders' starting values. An API call may leave any of them out (None): it then gets the same. ``steps`` is
# Quality's; Fast's steps start at the model's own ``settings.fast_steps``, and the sampler's default is
# ``samplers.default_sampler`` (Fast on a CPU, Quality on a GPU).
SAMPLING_DEFAULTS = dict(seed=0, randomize=False, steps=25, guidance=3.0, audio_strength=1.0, identity_strength=1.0,
                         camera_strength=1.0)

# Every event that runs the model (each tab's run button, each example that is not cached yet) queues on this one
# slot: the model runs one generation at a time, in the order visitors asked, and Stop can cancel any of them.
MODEL_SLOT = dict(concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1)


@dataclass
class RunState:
    """Where a run is, kept in the session (``gr.State``) so that Stop can say where it stopped."""

    segment: int = 0  # segments finished
    num_segments: int | None = None
    frames: int = 0
    finished: bool = False


def stopped_status(run: "RunState | None"):
    """Stop's own status line: where the generation stopped (a finished or idle run keeps its status)."""
    if run is None or run.finished:
        return gr.skip(), run
    if run.num_segments is None:
        status = "Stopped before the first segment was finished."
    else:
        status = (f"Stopped during segment {run.segment + 1} of {run.num_segments} "
                  f"({run.segment} finished, {run.frames} frames generated); the partial video was not saved.")
    return status, RunState(run.segment, run.num_segments, run.frames, finished=True)


@dataclass
class Controls:
    sampler: gr.Radio  # Quality / Fast (``samplers.py``)
    seed: gr.Number
    randomize: gr.Checkbox
    steps: gr.Slider
    guidance: gr.Slider
    audio_strength: gr.Slider
    identity_strength: gr.Slider
    camera_strength: gr.Slider
    fast_steps: gr.Slider  # Fast's own steps, shown instead of ``steps`` while Fast is chosen

    @classmethod
    def build(cls, elem_prefix: str) -> "Controls":
        d = SAMPLING_DEFAULTS
        pipe = get_pipeline()
        chosen = samplers.default_sampler(pipe)
        steps_now, fast_steps_now, guidance_now = samplers.slider_states(chosen)
        with gr.Accordion("Sampling", open=False):
            sampler = samplers.radio(pipe, chosen, elem_prefix, d["steps"])
            with gr.Row():
                seed = gr.Number(d["seed"], precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                 elem_id=f"{elem_prefix}-seed")
                randomize = gr.Checkbox(d["randomize"], label="Random seed (the one used is shown)")
            # The library's ranges (pipeline_inputs.SAMPLING_LIMITS): what the sliders allow, the API accepts.
            with gr.Row():
                steps = gr.Slider(*SAMPLING_LIMITS["steps"], value=d["steps"], step=1, label="Denoising steps",
                                  elem_id=f"{elem_prefix}-steps", **steps_now)
                fast_steps = samplers.fast_steps_slider(pipe, SAMPLING_LIMITS["steps"], elem_prefix, **fast_steps_now)
                guidance = gr.Slider(*SAMPLING_LIMITS["guidance"], value=d["guidance"], step=0.1,
                                     label="Guidance (CFG)", elem_id=f"{elem_prefix}-guidance", **guidance_now)
            strength = SAMPLING_LIMITS["strength"]
            with gr.Row():
                audio_s = gr.Slider(*strength, value=d["audio_strength"], step=0.05, label="Audio strength")
                identity_s = gr.Slider(*strength, value=d["identity_strength"], step=0.05, label="Identity strength")
                camera_s = gr.Slider(*strength, value=d["camera_strength"], step=0.05, label="Camera strength")
        sampler.change(samplers.switch, sampler, [steps, fast_steps, guidance], queue=False, show_progress="hidden",
                       api_visibility="private")
        return cls(sampler, seed, randomize, steps, guidance, audio_s, identity_s, camera_s, fast_steps)

    def inputs(self) -> list:
        """The sliders, in the API's order."""
        return [self.seed, self.randomize, self.steps, self.guidance,
                self.audio_strength, self.identity_strength, self.camera_strength]

    def sampler_inputs(self) -> list:
        """The sampler and Fast's steps: each tab appends them to its inputs (they came later: the API keeps its
        order for callers that pass values by position)."""
        return [self.sampler, self.fast_steps]


@dataclass
class Outputs:
    video: gr.Video
    download: gr.File
    status: gr.Markdown
    seed: gr.Number  # the tab's seed box: it shows the seed actually used
    run: gr.State  # a RunState: how far the current generation got (for Stop's message)

    @classmethod
    def build(cls, seed: gr.Number, elem_prefix: str) -> "Outputs":
        streaming = can_stream()
        video = gr.Video(label="Result", streaming=streaming, autoplay=True, interactive=False, height=384,
                         elem_id=f"{elem_prefix}-video")
        if not streaming:
            gr.Markdown(f"*{FALLBACK_NOTE}*")
        download = gr.File(label="Download the complete mp4", interactive=False, elem_id=f"{elem_prefix}-mp4", height=90)
        status = gr.Markdown("", label="status", elem_id=f"{elem_prefix}-status")  # the label names it in view_api()
        return cls(video, download, status, seed, gr.State(None))

    def components(self) -> list:
        return [self.video, self.download, self.seed, self.status, self.run]


def sampling_args(seed=None, randomize=None, steps=None, guidance=None, audio_strength=None, identity_strength=None,
                  camera_strength=None, sampler=None, fast_steps=None) -> dict:
    """The pipeline's sampling arguments, checked by the library's own rules (the API can send anything); a value
    the API left out (None) is the slider's default. Quality uses ``steps`` and ``guidance``; Fast uses
    ``fast_steps`` and ignores the other two, as its greyed-out guidance slider says."""
    pipe = get_pipeline()
    sampler = samplers.resolve(sampler, pipe)
    fast = sampler == samplers.FAST
    if fast:
        steps = pipe.settings.fast_steps if fast_steps is None else fast_steps

    def given(name, value):
        return SAMPLING_DEFAULTS[name] if value is None else value

    seed = random.randint(0, MAX_SEED) if given("randomize", randomize) else given("seed", seed)
    try:
        number = float(seed)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number) and 0 <= number <= MAX_SEED):
        raise ValueError(f"The seed must be a whole number between 0 and {MAX_SEED}, got {seed!r}.")
    strengths = dict(audio=given("audio_strength", audio_strength),
                     identity=given("identity_strength", identity_strength),
                     camera=given("camera_strength", camera_strength))
    # Fast has no guidance to check: whatever the (disabled) slider sent is not used, so it cannot be wrong.
    steps, guidance, strengths = check_sampling(given("steps", steps), 1.0 if fast else given("guidance", guidance),
                                                strengths)
    return dict(seed=int(number), steps=steps, guidance=None if fast else guidance, strengths=strengths,
                sampler=sampler)


def require(task: str, pipe=None) -> None:
    """Refuse a task the loaded model cannot do, with the loader's reason, before looking at any input."""
    reason = unavailable(pipe or get_pipeline()).get(task)
    if reason:
        raise gr.Error(reason, title="Not available with this model", print_exception=False)


def unavailable(pipe) -> dict:
    """``{task: why}`` for each task the pipeline cannot do (``pipe.capabilities`` maps a task to None when it can)."""
    return {task: why for task, why in (getattr(pipe, "capabilities", None) or {}).items() if why}


@GPU(duration=180)
def run_stream(task: str, progress: gr.Progress, notes: str = "", keep=None, **kwargs):
    """Run the sampler and yield the tab's outputs (video chunk, mp4, seed, status, run) once per finished segment.

    ``keep(mp4, frames) -> (mp4, status)`` may move the finished video elsewhere (the example cache) and word its
    status. The run's folder is deleted when the run ends, however it ends: Gradio serves its own copies.
    """
    pipe = get_pipeline()
    require(task, pipe)
    streaming = can_stream()
    seed = kwargs["seed"]
    sampled = samplers.describe(kwargs.get("sampler", samplers.QUALITY), kwargs.get("steps"))
    run = RunState()
    cancel = current_job()  # set when the visitor stops: the sampler then ends within one denoising step
    progress(0.0, desc="Starting")
    yield gr.skip(), gr.skip(), seed, "Starting...", run
    out_dir = new_output_dir()
    started = time.monotonic()
    try:
        # The sampler runs ahead in its own thread, stopped by the visitor's cancel or by this run ending early.
        segments = SamplerAhead(lambda stopped: pipe.stream(task=task, cancel=lambda: cancel.is_set() or stopped(),
                                                            **kwargs))
        for update in stream_segments(segments, out_dir, streaming=streaming):
            k, total = update.segment, update.num_segments
            run = RunState(k, total, update.frames_done, finished=bool(update.final))
            progress((k, total), desc=f"Segment {k} of {total}", unit="segments")
            left = time_left(started, k, total)  # this run's own pace (the queue shows no time: queue_eta.py)
            status = f"Segment {k} of {total} done ({update.frames_done} frames, seed {seed}){left}."
            final = update.final
            if final:
                status = (f"Done: {update.frames_done} frames at {pipe.fps:g} fps, seed {seed}, {sampled}. "
                          f"{notes}").strip()
                if keep is not None:
                    final, status = keep(final, update.frames_done)
            if streaming:
                video = update.chunk if update.chunk else gr.skip()
            else:
                video = final if final else gr.skip()
            yield video, final or gr.skip(), seed, status, run
    except ValueError:
        if cancel.is_set():  # stopped before the first segment was finished: nothing to show, nothing wrong
            return
        raise
    finally:
        remove_output_dir(out_dir)


def stop_button(elem_prefix: str) -> gr.Button:
    """The tab's Stop: disabled until a generation of this page starts (``wire`` switches it)."""
    return gr.Button("Stop", variant="stop", interactive=False, elem_id=f"{elem_prefix}-stop")


def _running(on: bool):
    """(Run, Stop) while a generation of the page runs or waits in the queue (``on``), and after."""
    return gr.Button(interactive=not on), gr.Button(interactive=on)


def wire(button: gr.Button, stop: gr.Button, fn, inputs: list, outputs: Outputs, api_name: str, examples=None):
    """Generation events of every tab go through one queue slot (the model), and Stop cancels them (and the runs of
    the tab's ``examples``, an ``example_cache.ExampleRuns``).

    From the click until the run has ended (its queued time included: a queued job can be stopped too) Stop is
    enabled and the run button disabled, so a page runs one job at a time. After Stop, the run button comes back only
    once the cancel is confirmed: the browser confirms it with the run's ``.then``, which would otherwise land in the
    next run and switch its Stop off (and, while it waits, Gradio drops a click on the run button).
    """
    quick = dict(queue=False, show_progress="hidden", api_visibility="private")
    switches = [button, stop]
    button.click(lambda: _running(True), None, switches, **quick)
    event = button.click(fn, inputs, outputs.components(), api_name=api_name, **MODEL_SLOT)
    runs = [event]
    if examples is not None:  # an example's first click generates on the model slot: stoppable likewise
        # Queued (the browser acts on a State's change only for queued events), on no slot: it never waits.
        examples.trigger.change(lambda: _running(True), None, switches, concurrency_limit=None,
                                show_progress="hidden", api_visibility="private")
        runs.append(examples.event)
    for run in runs:
        run.then(lambda: _running(False), None, switches, **quick)  # finished, failed, or its cancel confirmed
    # Stop cancels the run (the sampler stops within a denoising step) and says where.
    stop.click(stopped_status, outputs.run, [outputs.status, outputs.run], cancels=runs, queue=False,
               api_visibility="private")
    stop.click(lambda: gr.Button(interactive=False), None, stop, **quick)
    return event
