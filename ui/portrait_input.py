"""The photo input every tab shares: the photo, a live preview of the crop the model will see, the "already an
aligned portrait" switch, and a note saying what detection did."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .errors import user_errors
from .inputs import face_crop
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


@dataclass
class PortraitInput:
    image: gr.Image
    crop: gr.Image
    aligned: gr.Checkbox
    note: gr.Markdown

    @classmethod
    def build(cls, tab: str, image_label: str = "Portrait photo", crop_label: str = "Face crop used") -> "PortraitInput":
        with gr.Row():
            image = gr.Image(type="filepath", label=image_label, sources=["upload", "clipboard"],
                             elem_id=f"{tab}-image", height=256)
            crop = gr.Image(label=crop_label, interactive=False, height=256, elem_id=f"{tab}-crop")
        aligned = gr.Checkbox(False, label="Already an aligned portrait (skip face detection)", elem_id=f"{tab}-aligned")
        note = gr.Markdown("")
        # One dependency for both triggers, always the last: a slow preview of old settings never overwrites a new one.
        gr.on([image.change, aligned.change], preview, [image, aligned], [crop, note], trigger_mode="always_last",
              api_visibility="undocumented")
        return cls(image, crop, aligned, note)
