"""ID-driven generation: a photo's identity (or a saved embedding) + speech -> a new talking video of that person.

Speech is optional: without it the clip is a silent video from the motion prior, which is all an ``sd15`` folder
without trained STARCaster adapters can do; its length then comes from the slider.
"""

from __future__ import annotations

import gradio as gr

from . import capabilities, examples
from .errors import user_errors
from .generation import Controls, Outputs, require, run_stream, sampling_args, stop_button, wire
from .inputs import face_crop, max_seconds, read_audio, read_identity
from .model import get_pipeline
from .portrait_input import PortraitInput

TASK = "identity"


def request(image, embedding, audio, already_aligned, seconds=3.0) -> tuple[dict, str]:
    """(the pipeline's inputs, a note for the status line), checked before any sampling starts."""
    pipe = get_pipeline()
    require(TASK, pipe)
    identity = read_identity(pipe, embedding)
    notes = ""
    if identity is None:
        if image is None:
            raise ValueError("Give a photo of the person, or an identity embedding (.npy).")
        face_crop(pipe, image, already_aligned)
    elif image is not None:
        notes = "The uploaded embedding was used; the photo was ignored."
        image = None
    sound = read_audio(pipe, audio, required=False)
    num_frames = None  # with speech, the audio sets the length
    if sound is None:
        seconds = 3.0 if seconds is None else float(seconds)
        if not 0 < seconds <= max_seconds(pipe):
            raise ValueError(f"The length must be between 0 and {max_seconds(pipe):g} seconds.")
        num_frames = max(1, round(seconds * pipe.fps))
        notes = (notes + " " if notes else "") + "No speech: a silent clip from the motion prior."
    return dict(image=image, identity=identity, audio=sound, num_frames=num_frames,
                already_aligned=bool(already_aligned)), notes


@user_errors
def generate(image=None, embedding=None, audio=None, already_aligned=False, seed=None, randomize=None, steps=None,
             guidance=None, audio_s=None, identity_s=None, camera_s=None, seconds=None, sampler=None, fast_steps=None,
             progress=gr.Progress()):
    """A new talking video of the person in the photo, or of a saved identity embedding (.npy): give one of the two.
    Speech is optional: without it, a silent clip of `seconds` (None: 3 s). Sampling values left out take the sliders'
    defaults. `sampler` is "quality" (`steps`, `guidance`) or "fast" (`fast_steps`; guidance is distilled in)."""
    args = sampling_args(seed, randomize, steps, guidance, audio_s, identity_s, camera_s, sampler, fast_steps)
    inputs, notes = request(image, embedding, audio, already_aligned, seconds)
    yield from run_stream(TASK, progress, notes=notes, **inputs, **args)


def example(row):
    """An example row (photo, speech, aligned) -> (the pipeline's inputs, a note)."""
    image, audio, already_aligned = row
    return request(image, None, audio, already_aligned)


def build() -> None:
    available = capabilities.tab_notice(TASK)
    gr.Markdown("The video shows a **new** clip of the person (not a copy of the photo): only their identity is kept.")
    with gr.Row():
        with gr.Column():
            photo = PortraitInput.build("identity", "Photo of the person", "Face crop used for the identity")
            image, aligned = photo.image, photo.aligned
            embedding = gr.File(label="...or an identity embedding (.npy)", file_types=[".npy"],
                                elem_id="identity-embedding")
            audio = gr.Audio(type="filepath", label="Speech audio (optional: without it, a silent clip)",
                             sources=["upload", "microphone"], elem_id="identity-audio")
            seconds = gr.Slider(0.5, 10.0, value=3.0, step=0.1, label="Length in seconds (silent clip; with audio "
                                "the audio's length is used)", elem_id="identity-seconds")
            controls = Controls.build("identity")
            with gr.Row():
                button = capabilities.run_button("Generate", available, elem_id="identity-run")
                stop = stop_button("identity")
        with gr.Column():
            outputs = Outputs.build(controls.seed, "identity")

    inputs = [image, embedding, audio, aligned] + controls.inputs() + [seconds] + controls.sampler_inputs()
    _, runs = examples.identity_examples([image, audio, aligned], example if available else None, outputs,
                                         sampler=controls.sampler)
    wire(button, stop, generate, inputs, outputs, api_name="identity", examples=runs)
