"""ID-driven generation: a photo's identity (or a saved embedding) + speech -> a new talking video of that person."""

from __future__ import annotations

import gradio as gr

from . import capabilities, examples
from .errors import user_errors
from .example_cache import run_example
from .generation import Controls, Outputs, require, run_stream, sampling_args, wire
from .inputs import face_crop, read_audio, read_identity
from .model import get_pipeline
from .portrait_tab import preview

TASK = "identity"


def request(image, embedding, audio, already_aligned) -> tuple[dict, str]:
    """(the pipeline's inputs, a note for the status line), checked before any sampling starts."""
    pipe = get_pipeline()
    require(TASK, pipe)
    identity = read_identity(embedding)
    notes = ""
    if identity is None:
        if image is None:
            raise ValueError("Give a photo of the person, or an identity embedding (.npy).")
        face_crop(pipe, image, already_aligned)
    elif image is not None:
        notes = "The uploaded embedding was used; the photo was ignored."
        image = None
    sound = read_audio(pipe, audio, required=True)
    return dict(image=image, identity=identity, audio=sound, already_aligned=bool(already_aligned)), notes


@user_errors
def generate(image, embedding, audio, already_aligned, seed, randomize, steps, guidance, audio_s, identity_s,
             camera_s, progress=gr.Progress()):
    inputs, notes = request(image, embedding, audio, already_aligned)
    args = sampling_args(seed, randomize, steps, guidance, audio_s, identity_s, camera_s)
    yield from run_stream(TASK, progress, notes=notes, **inputs, **args)


@user_errors
def example(image, audio, already_aligned):
    inputs, _ = request(image, None, audio, already_aligned)
    return run_example(TASK, **inputs)


def build() -> None:
    available = capabilities.tab_notice(TASK)
    gr.Markdown("The video shows a **new** clip of the person (not a copy of the photo): only their identity is kept.")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                image = gr.Image(type="filepath", label="Photo of the person", sources=["upload", "clipboard"],
                                 elem_id="identity-image", height=256)
                crop = gr.Image(label="Face crop used for the identity", interactive=False, height=256,
                                elem_id="identity-crop")
            aligned = gr.Checkbox(False, label="Already an aligned portrait (skip face detection)",
                                  elem_id="identity-aligned")
            crop_note = gr.Markdown("")
            embedding = gr.File(label="...or an identity embedding (.npy)", file_types=[".npy"],
                                elem_id="identity-embedding")
            audio = gr.Audio(type="filepath", label="Speech audio", sources=["upload", "microphone"],
                             elem_id="identity-audio")
            controls = Controls.build("identity")
            with gr.Row():
                button = capabilities.run_button("Generate", available, elem_id="identity-run")
                stop = gr.Button("Stop", variant="stop", elem_id="identity-stop")
        with gr.Column():
            outputs = Outputs.build(controls.seed, "identity")

    # One dependency for both triggers, always the last: a slow preview of the old settings never overwrites a new one.
    gr.on([image.change, aligned.change], preview, [image, aligned], [crop, crop_note], trigger_mode="always_last",
          api_visibility="undocumented")
    inputs = [image, embedding, audio, aligned] + controls.inputs()
    wire(button, stop, generate, inputs, outputs, api_name="identity")
    examples.identity_examples([image, audio, aligned], example if available else None, outputs.example_components())
