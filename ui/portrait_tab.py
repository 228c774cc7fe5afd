"""Portrait animation: a photo + speech -> a talking video of that photo."""

from __future__ import annotations

import gradio as gr

from . import examples
from .errors import user_errors
from .generation import Controls, Outputs, run_stream, sampling_args, wire
from .inputs import face_crop, read_audio
from .model import get_pipeline


@user_errors
def preview(image, already_aligned):
    """Show the crop the model will see as soon as a photo is chosen; a failed detection says what to do."""
    if image is None:
        return None, ""
    try:
        crop, note = face_crop(get_pipeline(), image, already_aligned)
    except ValueError as exc:
        gr.Warning(str(exc))
        return None, f"**{exc}**"
    return crop, note


@user_errors
def generate(image, audio, already_aligned, seed, randomize, steps, guidance, audio_s, identity_s, camera_s,
             progress=gr.Progress()):
    pipe = get_pipeline()
    face_crop(pipe, image, already_aligned)  # a clear message before any sampling starts
    sound = read_audio(pipe, audio, required=True)
    args = sampling_args(seed, randomize, steps, guidance, audio_s, identity_s, camera_s)
    yield from run_stream("portrait", progress, image=image, audio=sound, already_aligned=bool(already_aligned), **args)


def build() -> None:
    with gr.Row():
        with gr.Column():
            with gr.Row():
                image = gr.Image(type="filepath", label="Portrait photo", sources=["upload", "clipboard"],
                                 elem_id="portrait-image", height=256)
                crop = gr.Image(label="Face crop used", interactive=False, height=256, elem_id="portrait-crop")
            aligned = gr.Checkbox(False, label="Already an aligned portrait (skip face detection)",
                                  elem_id="portrait-aligned")
            crop_note = gr.Markdown("")
            audio = gr.Audio(type="filepath", label="Speech audio", sources=["upload", "microphone"],
                             elem_id="portrait-audio")
            controls = Controls.build("portrait")
            with gr.Row():
                button = gr.Button("Animate", variant="primary", elem_id="portrait-run")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column():
            outputs = Outputs.build(controls.seed, "portrait")

    # One dependency for both triggers, always the last: a slow preview of the old settings never overwrites a new one.
    gr.on([image.change, aligned.change], preview, [image, aligned], [crop, crop_note], trigger_mode="always_last",
          api_visibility="undocumented")
    inputs = [image, audio, aligned] + controls.inputs()
    wire(button, stop, generate, inputs, outputs, api_name="portrait")
    examples.portrait_examples([image, audio, aligned])
