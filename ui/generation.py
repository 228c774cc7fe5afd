"""What every tab shares: sampling controls, the output panel, and the streaming run with progress and Stop."""

from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr

from .model import GPU, MODEL_CONCURRENCY_ID, get_pipeline
from .streaming import FALLBACK_NOTE, can_stream, new_output_dir, stream_segments

MAX_SEED = 2**31 - 1


@dataclass
class Controls:
    seed: gr.Number
    randomize: gr.Checkbox
    steps: gr.Slider
    guidance: gr.Slider
    audio_strength: gr.Slider
    identity_strength: gr.Slider
    camera_strength: gr.Slider

    @classmethod
    def build(cls, elem_prefix: str, default_steps: int = 25) -> "Controls":
        with gr.Accordion("Sampling", open=False):
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id=f"{elem_prefix}-seed")
                randomize = gr.Checkbox(False, label="Random seed (the one used is shown)")
            with gr.Row():
                steps = gr.Slider(1, 50, value=default_steps, step=1, label="Denoising steps", elem_id=f"{elem_prefix}-steps")
                guidance = gr.Slider(1.0, 8.0, value=3.0, step=0.1, label="Guidance (CFG)")
            with gr.Row():
                audio_s = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Audio strength")
                identity_s = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Identity strength")
                camera_s = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Camera strength")
        return cls(seed, randomize, steps, guidance, audio_s, identity_s, camera_s)

    def inputs(self) -> list:
        return [self.seed, self.randomize, self.steps, self.guidance,
                self.audio_strength, self.identity_strength, self.camera_strength]


@dataclass
class Outputs:
    video: gr.Video
    download: gr.File
    status: gr.Markdown
    seed: gr.Number  # the tab's seed box: it shows the seed actually used

    @classmethod
    def build(cls, seed: gr.Number, elem_prefix: str) -> "Outputs":
        streaming = can_stream()
        video = gr.Video(label="Result", streaming=streaming, autoplay=True, interactive=False, height=384,
                         elem_id=f"{elem_prefix}-video")
        if not streaming:
            gr.Markdown(f"*{FALLBACK_NOTE}*")
        download = gr.File(label="Download the complete mp4", interactive=False, elem_id=f"{elem_prefix}-mp4", height=90)
        status = gr.Markdown("", elem_id=f"{elem_prefix}-status")
        return cls(video, download, status, seed)

    def components(self) -> list:
        return [self.video, self.download, self.seed, self.status]


def sampling_args(seed, randomize, steps, guidance, audio_strength, identity_strength, camera_strength) -> dict:
    if randomize:
        seed = random.randint(0, MAX_SEED)
    if seed is None or not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"The seed must be a whole number between 0 and {MAX_SEED}.")
    return dict(seed=int(seed), steps=int(steps), guidance=float(guidance),
                strengths=dict(audio=float(audio_strength), identity=float(identity_strength),
                               camera=float(camera_strength)))


@GPU(duration=180)
def run_stream(task: str, progress: gr.Progress, notes: str = "", **kwargs):
    """Run the sampler and yield the tab's outputs (video chunk, mp4, seed, status) once per finished segment."""
    pipe = get_pipeline()
    reason = (getattr(pipe, "capabilities", None) or {}).get(task)
    if reason:
        raise ValueError(reason)
    streaming = can_stream()
    seed = kwargs["seed"]
    progress(0.0, desc="Starting")
    segments = pipe.stream(task=task, **kwargs)
    for update in stream_segments(segments, new_output_dir(), streaming=streaming):
        k, total = update.segment, update.num_segments
        progress((k, total), desc=f"Segment {k} of {total}", unit="segments")
        status = f"Segment {k} of {total} done ({update.frames_done} frames, seed {seed})."
        if update.final:
            status = f"Done: {update.frames_done} frames at {pipe.fps:g} fps, seed {seed}. {notes}".strip()
        if streaming:
            video = update.chunk if update.chunk else gr.skip()
        else:
            video = update.final if update.final else gr.skip()
        yield video, update.final or gr.skip(), seed, status


def wire(button: gr.Button, stop: gr.Button, fn, inputs: list, outputs: Outputs, api_name: str):
    """Generation events of every tab go through one queue slot (the model), and Stop cancels them."""
    event = button.click(fn, inputs, outputs.components(), api_name=api_name,
                         concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1)
    stop.click(None, None, None, cancels=[event], api_visibility="private")
    return event
