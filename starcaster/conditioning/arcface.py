"""ArcFace identity embeddings for the `sd15` preset, through insightface and ONNX Runtime.

Arc2Face was trained with an ArcFace model trained on WebFace42M (`arcface.onnx` in FoivosPar/Arc2Face), which replaces
`glintr100.onnx` in insightface's antelopev2 package; either file is accepted, `arcface.onnx` first. ArcFace reads a
112 x 112 crop in which the five landmarks sit on its fixed template (`starcaster.face.ARCFACE_TEMPLATE`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..face import arcface_crop

RECOGNITION_FILES = ("arcface.onnx", "glintr100.onnx")


class ArcFaceEmbedder:
    """An aligned face crop (or any image plus its five landmarks) -> (512,) L2-normalised ArcFace embedding."""

    def __init__(self, antelopev2_folder):
        folder = Path(antelopev2_folder)
        if not folder.is_dir():
            raise ValueError(
                f"The antelopev2 folder '{folder}' does not exist. It should hold insightface's antelopev2 models with "
                f"{RECOGNITION_FILES[0]} from FoivosPar/Arc2Face; see checkpoints/README.md."
            )
        model_file = next((folder / n for n in RECOGNITION_FILES if (folder / n).is_file()), None)
        if model_file is None:
            raise ValueError(
                f"No face recognition model in '{folder}': expected {RECOGNITION_FILES[0]} (Arc2Face's ArcFace, from "
                f"FoivosPar/Arc2Face) or {RECOGNITION_FILES[1]} (insightface's antelopev2); see checkpoints/README.md."
            )
        from insightface.model_zoo import get_model  # imported here: only the sd15 preset needs insightface

        from ..face import _onnx_providers

        self.model = get_model(str(model_file), providers=_onnx_providers())
        if self.model is None or getattr(self.model, "taskname", None) != "recognition":
            raise ValueError(
                f"'{model_file}' is not a face recognition model (expected input 1x3x112x112, one output of 512)."
            )
        self.model_file = model_file
        # The pipeline detects faces with this: SCRFD from the same folder when antelopev2's detector is there.
        has_scrfd = any((folder / n).is_file() for n in ("scrfd_10g_bnkps.onnx", "det_10g.onnx"))
        self.detector = str(folder) if has_scrfd else "auto"
        self.input_size = int(self.model.input_size[0])

    def __call__(self, image_rgb_uint8: np.ndarray, landmarks5: np.ndarray | None = None) -> np.ndarray:
        """`landmarks5`: the face's (5, 2) landmarks in `image_rgb_uint8`; None when the image is already an
        ArcFace-aligned crop (it is then only resized to the model's input size)."""
        image = np.asarray(image_rgb_uint8)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"ArcFaceEmbedder needs a uint8 (H, W, 3) RGB image; got {image.dtype} {image.shape}.")
        size = self.input_size
        if landmarks5 is not None:
            crop = arcface_crop(image, landmarks5, size)
        elif image.shape[:2] != (size, size):
            crop = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        else:
            crop = image
        # insightface's get_feat takes BGR (it swaps to RGB itself) and applies the model's own mean/std.
        embedding = self.model.get_feat(np.ascontiguousarray(crop[..., ::-1]))[0].astype(np.float32)
        norm = float(np.linalg.norm(embedding))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("ArcFace returned an empty embedding; is the crop a face?")
        return embedding / norm
