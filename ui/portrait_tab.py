"""Portrait animation: a photo + speech -> a talking video of that photo."""

from __future__ import annotations

import gradio as gr

from . import capabilities, examples
from .errors import user_errors
from .generation import Controls, Outputs, require, run_stream, sampling_args, stop_button, wire
from .inputs import face_crop, read_audio
from .model import get_pipeline
from .portrait_input import PortraitInput

TASK = "portrait"


def request(image, audio, already_aligned) -> dict:
    """The pipeline's inputs, checked: a clear message before any sampling starts."""
    pipe = get_pipeline()
    require(TASK, pipe)
    face_crop(pipe, image, already_aligned)
    sound = read_audio(pipe, audio, required=True)
    return dict(image=image, audio=sound, already_aligned=bool(already_aligned))


@user_errors
def generate(image, audio, already_aligned=False, seed=None, randomize=None, steps=None, guidance=None, audio_s=None,
             identity_s=None, camera_s=None, sampler=None, fast_steps=None, progress=gr.Progress()):
    """A talking video of the portrait photo, driven by the speech audio. Sampling values left out take the sliders'
    defaults. `sampler` is "quality" (`steps`, `guidance`) or "fast" (`fast_steps`; guidance is distilled in)."""
    args = sampling_args(seed, randomize, steps, guidance, audio_s, identity_s, camera_s, sampler, fast_steps)
    inputs = request(image, audio, already_aligned)
    yield from run_stream(TASK, progress, **inputs, **args)


def example(row):
    """An example row (portrait, speech, aligned) -> (the pipeline's inputs, a note)."""
    image, audio, already_aligned = row
    return request(image, audio, already_aligned), ""


def build() -> None:
    available = capabilities.tab_notice(TASK)
    with gr.Row():
        with gr.Column():
            photo = PortraitInput.build("portrait")
            image, aligned = photo.image, photo.aligned
            audio = gr.Audio(type="filepath", label="Speech audio", sources=["upload", "microphone"],
                             elem_id="portrait-audio")
            controls = Controls.build("portrait")
            with gr.Row():
                button = capabilities.run_button("Animate", available, elem_id="portrait-run")
                stop = stop_button("portrait")
        with gr.Column():
            outputs = Outputs.build(controls.seed, "portrait")

    inputs = [image, audio, aligned] + controls.inputs() + controls.sampler_inputs()
    _, runs = examples.portrait_examples([image, audio, aligned], example if available else None, outputs,
                                         sampler=controls.sampler)
    wire(button, stop, generate, inputs, outputs, api_name="portrait", examples=runs)
