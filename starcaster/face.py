"""Reading portraits, finding the face and FFHQ-style alignment (paper Supp. A: "aligning faces to an FFHQ-style
template", 512x512).

Both presets use this file. Detection is insightface's SCRFD when an antelopev2 folder is given (the `sd15` world),
otherwise the LBP frontal-face cascade bundled with scikit-image, which needs no weight download (OpenCV 5 wheels no
longer carry Haar cascades): it is weaker, so it only has to find one roughly frontal face, and the five landmarks are
estimated from the face box and the eyes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .image_io import load_image

# The five ArcFace landmarks (left eye, right eye, nose tip, left and right mouth corner) in the 112x112 crop that
# insightface's `norm_crop` and every ArcFace model expect. The same numbers as insightface's `arcface_dst` (a test
# checks), written out so the weight-free tiny path does not import insightface.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


# ---------------------------------------------------------------------------------------------------------------------
# Alignment


@dataclass
class Face:
    bbox: np.ndarray  # (4,) x0, y0, x1, y1 in image pixels
    landmarks: np.ndarray  # (5, 2) left eye, right eye, nose tip, left and right mouth corner (image left/right)
    score: float


@dataclass
class Portrait:
    image: np.ndarray  # (size, size, 3) uint8, FFHQ-style aligned
    face: Face | None  # the detected face in the original image; None when the input was already aligned

    @property
    def landmarks(self) -> np.ndarray:
        """The five landmarks in `image` (the aligned crop): the template they were aligned to. Use these, not
        `face.landmarks` (original image coordinates), to embed the crop with ArcFace."""
        return ffhq_template(self.image.shape[0])


def ffhq_template(size: int) -> np.ndarray:
    """The five landmarks in an FFHQ-style `size` crop.

    FFHQ's recipe (Karras et al.) centres the square on the eyes' midpoint moved 10 % towards the mouth and makes its
    side 2 * max(2 * eye distance, 1.8 * eye-to-mouth distance): the whole head with hair and some shoulders. Applied to
    the ArcFace template it keeps the template's proportions, only smaller and centred in a larger frame.
    """
    eyes = ARCFACE_TEMPLATE[:2].mean(0)
    mouth = ARCFACE_TEMPLATE[3:].mean(0)
    eye_to_eye = ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]
    eye_to_mouth = mouth - eyes
    half_side = max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    center = eyes + 0.1 * eye_to_mouth
    return (ARCFACE_TEMPLATE - center) * (size / (2.0 * half_side)) + size / 2.0


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking `src` points onto `dst` -> (2, 3) matrix.

    scikit-image's Umeyama estimate (never a reflection), the one insightface's own alignment uses.
    """
    from skimage.transform import SimilarityTransform

    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform needs two matching (N>=2, 2) point sets; got {src.shape} and {dst.shape}.")
    transform = SimilarityTransform.from_estimate(src, dst)
    if not transform:  # a failed estimate (e.g. all points on top of each other) is falsy
        raise ValueError("The face landmarks are degenerate (all in one place); no alignment can be computed.")
    return transform.params[:2].copy()


def arcface_crop(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The `size` x `size` crop ArcFace reads: insightface's own `norm_crop` (its template, its interpolation)."""
    import warnings

    from insightface.utils.face_align import norm_crop

    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"arcface_crop needs (5, 2) finite landmarks; got shape {landmarks.shape}.")
    if size % 112 and size % 128:
        raise ValueError(f"ArcFace crops are 112 or 128 pixels (or multiples); got {size}.")
    with warnings.catch_warnings():
        # insightface 2.1 calls SimilarityTransform.estimate, which scikit-image 0.26 deprecates (same result).
        warnings.filterwarnings("ignore", message=".*estimate.*deprecated", category=FutureWarning)
        return norm_crop(np.ascontiguousarray(image), landmarks, image_size=size)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """Warp `image` so that the five `landmarks` land on the FFHQ-style template of a `size` x `size` crop."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"align_face needs (5, 2) finite landmarks; got shape {landmarks.shape}.")
    matrix = similarity_transform(landmarks, ffhq_template(size))
    scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < 0.5:
        # Bilinear warping skips pixels when shrinking a lot (aliasing); shrink with area averaging first.
        factor = 0.5 / scale
        height, width = image.shape[:2]
        small = (max(1, round(width / factor)), max(1, round(height / factor)))
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.diag([width / small[0], height / small[1], 1.0])
    # Replicate, not reflect: a mirrored border can show a ghost second face.
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------------------------------------------------------------
# Detection


def detect_faces(image, detector="auto") -> list[Face]:
    """Faces in an RGB image, largest first.

    `detector`: "auto" (or "cascade") for the built-in cascade detector, which needs no weights; a path to an
    insightface antelopev2 folder (or to its SCRFD .onnx file) for SCRFD; or any object with a
    `detect(image_rgb) -> list[Face]` method.
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
        image = load_image(image)
    if detector in ("auto", "cascade", "haar", None):
        found = _cascade_detector().detect(image)
    elif isinstance(detector, (str, os.PathLike)):
        found = _scrfd_detector(str(detector)).detect(image)
    else:
        found = detector.detect(image)
    return sorted(found, key=lambda f: -(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))


class CascadeFaceDetector:
    """The LBP frontal-face cascade that scikit-image ships (OpenCV 5 no longer bundles cascades), then the eyes.

    The eyes are the darkest spots of the blurred upper face in each half (pupils and lashes); when that looks wrong
    they fall back to where eyes sit in the cascade's box. Nose and mouth come from the ArcFace template.
    """

    EYE_X, EYE_Y = (0.29, 0.71), 0.36  # eye centres as fractions of the cascade box (measured on a photo)
    WORK_SIDE = 640  # detect on a copy at most this large: speed, and the cascade's scale range

    def __init__(self, min_neighbors: int = 8, keep_ratio: float = 0.5):
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade

        self.cascade = Cascade(lbp_frontal_face_cascade_filename())
        # Fewer neighbouring hits than this are mostly texture that looks like a face.
        self.min_neighbors = min_neighbors
        # Faces under `keep_ratio` of the largest one's width are background faces or false hits; the subject of a
        # portrait is what matters (Arc2Face also takes the largest face).
        self.keep_ratio = keep_ratio

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.WORK_SIDE / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        side = min(small.shape)
        hits = self.cascade.detect_multi_scale(
            small.astype(np.float32) / 255.0,
            scale_factor=1.1,
            step_ratio=1,
            min_size=(max(24, side // 12),) * 2,
            max_size=(side, side),
            min_neighbor_number=self.min_neighbors,
        )
        boxes = _merge_overlapping([(d["c"], d["r"], d["width"], d["height"]) for d in hits])
        if not boxes:
            return []
        largest = max(w for _, _, w, _ in boxes)
        faces = []
        for x, y, w, h in boxes:
            if w < self.keep_ratio * largest:
                continue
            eyes = self._eyes(small[y : y + h, x : x + w]) + [x, y]
            faces.append(
                Face(
                    bbox=np.array([x, y, x + w, y + h], dtype=np.float64) / scale,
                    landmarks=_landmarks_from_eyes(eyes) / scale,
                    score=1.0,  # the cascade gives no calibrated confidence
                )
            )
        return faces

    def _eyes(self, face_gray: np.ndarray) -> np.ndarray:
        h, w = face_gray.shape
        blurred = cv2.GaussianBlur(face_gray.astype(np.float32), (0, 0), max(1.0, w / 40))
        default = np.array([[self.EYE_X[0] * w, self.EYE_Y * h], [self.EYE_X[1] * w, self.EYE_Y * h]])
        eyes = []
        for ex, ey in default:  # search near the expected place only: hair and brows are dark too
            x0, x1 = int(ex - 0.13 * w), int(ex + 0.13 * w)
            y0, y1 = int(ey - 0.1 * h), int(ey + 0.1 * h)
            window = blurred[y0:y1, x0:x1]
            iy, ix = np.unravel_index(np.argmin(window), window.shape)
            eyes.append((x0 + ix, y0 + iy))
        eyes = np.array(eyes, dtype=np.float64)
        distance, tilt = eyes[1] - eyes[0]
        if 0.3 * w < distance < 0.6 * w and abs(tilt) < 0.25 * distance:
            return eyes
        return default


def _merge_overlapping(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """One box per face: the cascade can report the same face twice at nearby scales."""
    merged: list[list[tuple[int, int, int, int]]] = []
    for box in sorted(boxes, key=lambda b: -b[2]):
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        for group in merged:
            x, y, w, h = group[0]
            if x <= cx <= x + w and y <= cy <= y + h:
                group.append(box)
                break
        else:
            merged.append([box])
    return [tuple(int(round(v)) for v in np.mean(group, axis=0)) for group in merged]


def _landmarks_from_eyes(eyes: np.ndarray) -> np.ndarray:
    """Nose and mouth corners placed where the ArcFace template has them relative to the two eyes."""
    matrix = similarity_transform(ARCFACE_TEMPLATE[:2], eyes)
    return ARCFACE_TEMPLATE @ matrix[:, :2].T + matrix[:, 2]


class ScrfdFaceDetector:
    """insightface's SCRFD detector (with 5-point landmarks) from an antelopev2 folder; ONNX Runtime on CPU or GPU."""

    NAMES = ("scrfd_10g_bnkps.onnx", "det_10g.onnx")

    def __init__(self, path: str, det_size: int = 640, threshold: float = 0.5):
        path = Path(path)
        candidates = [path] if path.suffix == ".onnx" else [path / n for n in self.NAMES]
        candidates += sorted(path.glob("scrfd*.onnx")) if path.is_dir() else []
        model_file = next((p for p in candidates if p.is_file()), None)
        if model_file is None:
            raise ValueError(
                f"No face detector in '{path}': expected {' or '.join(self.NAMES)} from insightface's antelopev2 "
                "package (see checkpoints/README.md), or use detector='auto' for OpenCV's built-in detector."
            )
        from insightface.model_zoo import get_model  # imported here: insightface is only needed for this detector

        self.model = get_model(str(model_file), providers=_onnx_providers())
        if self.model is None or not hasattr(self.model, "detect"):
            raise ValueError(f"'{model_file}' is not an insightface detection model.")
        self.model.prepare(ctx_id=0, input_size=(det_size, det_size), det_thresh=threshold)

    def detect(self, image: np.ndarray) -> list[Face]:
        boxes, points = self.model.detect(image[..., ::-1].copy(), max_num=0)  # insightface works in BGR
        return [
            Face(bbox=box[:4].astype(np.float64), landmarks=kps.astype(np.float64), score=float(box[4]))
            for box, kps in zip(boxes, points)
        ]


def _onnx_providers() -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


@functools.lru_cache(maxsize=1)
def _cascade_detector() -> CascadeFaceDetector:
    return CascadeFaceDetector()


@functools.lru_cache(maxsize=4)
def _scrfd_detector(path: str) -> ScrfdFaceDetector:
    return ScrfdFaceDetector(path)


# ---------------------------------------------------------------------------------------------------------------------
# The portrait the pipeline animates


def prepare_portrait(src, size: int, already_aligned: bool = False, detector="auto") -> Portrait:
    """Load a photo and return the FFHQ-style aligned `size` x `size` portrait of its one face."""
    image = load_image(src)
    if already_aligned:
        # Keep the user's framing: centre-crop to a square, then resize.
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = image[top : top + side, left : left + side]
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        return Portrait(image=cv2.resize(square, (size, size), interpolation=interpolation), face=None)
    faces = detect_faces(image, detector)
    if not faces:
        raise ValueError(
            "No face found in the image. Use a photo with one clearly visible, roughly frontal face, or tick "
            "'already an aligned portrait' if the image is already a centred face crop."
        )
    if len(faces) > 1:
        raise ValueError(f"Found {len(faces)} faces in the image; crop it to one person and try again.")
    face = faces[0]
    return Portrait(image=align_face(image, face.landmarks, size), face=face)
