"""Free-viewpoint orbit: a photo + a camera path (+ optional speech) -> the portrait seen from moving viewpoints."""

from __future__ import annotations

import gradio as gr

from . import camera_keyframes as ck
from . import capabilities, examples
from .camera_editor import CameraEditor, on_json
from .errors import user_errors
from .generation import Controls, Outputs, require, run_stream, sampling_args, stop_button, wire
from .inputs import face_crop, max_seconds, read_audio
from .model import get_pipeline
from .portrait_input import PortraitInput

TASK = "orbit"


def request(image, audio, camera_json, seconds, already_aligned) -> dict:
    """The pipeline's inputs, checked; ``seconds`` None means the camera path's own length (silent examples)."""
    pipe = get_pipeline()
    require(TASK, pipe)
    face_crop(pipe, image, already_aligned)
    camera = ck.path_from_json(camera_json)
    sound = read_audio(pipe, audio, required=False, allow_silent=True)
    if sound is not None:
        num_frames = max(1, round(len(sound[0]) / sound[1] * pipe.fps))  # the audio sets the length
    else:
        seconds = len(camera) / camera.fps if seconds is None else float(seconds)
        if not 0 < seconds <= max_seconds(pipe):
            raise ValueError(f"The length must be between 0 and {max_seconds(pipe):g} seconds.")
        num_frames = max(1, round(seconds * pipe.fps))
    camera = camera.resample(num_frames)  # the drawn path is stretched over the whole video
    return dict(image=image, audio=sound, camera=camera, num_frames=num_frames, already_aligned=bool(already_aligned))


@user_errors
def generate(image, audio=None, camera_json=None, seconds=None, already_aligned=False, seed=None, randomize=None,
             steps=None, guidance=None, audio_s=None, identity_s=None, camera_s=None, sampler=None, fast_steps=None,
             progress=gr.Progress()):
    """The portrait seen from a moving camera (camera_json: a camera path, as the editor exports it). With speech it
    also talks and the speech sets the length; without, a silent orbit of `seconds` (None: the camera path's own
    length). Sampling values left out take the sliders' defaults. `sampler` is "quality" (`steps`, `guidance`) or
    "fast" (`fast_steps`; guidance is distilled in)."""
    args = sampling_args(seed, randomize, steps, guidance, audio_s, identity_s, camera_s, sampler, fast_steps)
    inputs = request(image, audio, camera_json, seconds, already_aligned)
    yield from run_stream(TASK, progress, **inputs, **args)


def example(row):
    """An example row (portrait, speech or None, aligned, camera JSON) -> (the pipeline's inputs, a note)."""
    image, audio, already_aligned, camera_json = row
    return request(image, audio, camera_json, None, already_aligned), ""


def build() -> None:
    available = capabilities.tab_notice(TASK)
    with gr.Row():
        with gr.Column():
            photo = PortraitInput.build("orbit")
            image, aligned = photo.image, photo.aligned
            audio = gr.Audio(type="filepath", label="Speech audio (optional: silent orbit without)",
                             sources=["upload", "microphone"], elem_id="orbit-audio")
            seconds = gr.Slider(0.5, 10.0, value=3.0, step=0.1, label="Length in seconds (silent orbit; "
                                "with audio the audio's length is used)", elem_id="orbit-seconds")
            controls = Controls.build("orbit")
            with gr.Row():
                button = capabilities.run_button("Render orbit", available, elem_id="orbit-run")
                stop = stop_button("orbit")
        with gr.Column():  # the result beside the inputs, in view while a run streams, not below the editor
            outputs = Outputs.build(controls.seed, "orbit")
    editor = CameraEditor(seconds)  # full width below both

    inputs = [image, audio, editor.json, seconds, aligned] + controls.inputs() + controls.sampler_inputs()
    _, runs = examples.orbit_examples([image, audio, aligned, editor.json], example if available else None, outputs,
                                      load_camera=_example_camera, camera_outputs=[editor.table, editor.plot],
                                      sampler=controls.sampler)
    wire(button, stop, generate, inputs, outputs, api_name="orbit", examples=runs)


def _example_camera(camera_json):
    """An example's camera path goes into the editor's table and figure too."""
    _, rows, fig = on_json(camera_json)
    return rows, fig
