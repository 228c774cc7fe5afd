"""ID-driven generation: a photo's identity (or a saved embedding) + speech -> a new talking video of that person."""

from __future__ import annotations

import gradio as gr

from . import examples
from .errors import user_errors
from .generation import Controls, Outputs, run_stream, sampling_args, wire
from .inputs import face_crop, read_audio, read_identity
from .model import get_pipeline
from .portrait_tab import preview


@user_errors
def generate(image, embedding, audio, already_aligned, seed, randomize, steps, guidance, audio_s, identity_s,
             camera_s, progress=gr.Progress()):
    pipe = get_pipeline()
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
    args = sampling_args(seed, randomize, steps, guidance, audio_s, identity_s, camera_s)
    yield from run_stream("identity", progress, notes=notes, image=image, identity=identity, audio=sound,
                          already_aligned=bool(already_aligned), **args)


def build() -> None:
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
                button = gr.Button("Generate", variant="primary", elem_id="identity-run")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column():
            outputs = Outputs.build(controls.seed, "identity")

    # One dependency for both triggers, always the last: a slow preview of the old settings never overwrites a new one.
    gr.on([image.change, aligned.change], preview, [image, aligned], [crop, crop_note], trigger_mode="always_last",
          api_visibility="undocumented")
    inputs = [image, embedding, audio, aligned] + controls.inputs()
    wire(button, stop, generate, inputs, outputs, api_name="identity")
    examples.identity_examples([image, audio, aligned])
