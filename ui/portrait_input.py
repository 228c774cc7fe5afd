"""The photo input every tab shares: the photo, a live preview of the crop the model will see, the "already an
aligned portrait" switch, and a note saying what detection did."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .errors import user_errors
from .inputs import face_crop
from .model import get_pipeline


class PhotoUpload(gr.Image):
    """``gr.Image`` that hands the handler the uploaded file's path without decoding it.

    Gradio's own preprocessing opens the file with Pillow (and converts it to RGB) before any handler runs, so a
    corrupt or enormous upload failed there with a raw "Could not preprocess input component" error. Here the library
    decodes it (``image_io.load_image``: size checked from the header, then decoded), and its message reaches the
    visitor. Pasted images arrive as data URLs and still go through Gradio's decoder (the browser made them).
    """

    def get_block_name(self) -> str:
        return "image"  # the same component in the browser

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


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
            image = PhotoUpload(type="filepath", label=image_label, sources=["upload", "clipboard"],
                             elem_id=f"{tab}-image", height=256)
            crop = gr.Image(label=crop_label, interactive=False, height=256, elem_id=f"{tab}-crop")
        aligned = gr.Checkbox(False, label="Already an aligned portrait (skip face detection)", elem_id=f"{tab}-aligned")
        note = gr.Markdown("")
        # One dependency for both triggers, always the last: a slow preview of old settings never overwrites a new one.
        gr.on([image.change, aligned.change], preview, [image, aligned], [crop, note], trigger_mode="always_last",
              api_visibility="undocumented")
        return cls(image, crop, aligned, note)
