import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from fakes import write_fake_scrfd
from starcaster.face import (
    ARCFACE_TEMPLATE,
    Portrait,
    ScrfdFaceDetector,
    align_face,
    arcface_crop,
    detect_faces,
    ffhq_template,
    load_image,
    prepare_portrait,
    similarity_transform,
)


def draw_face(size=256, center=(128, 128), scale=1.0, background=60):
    """A cartoon frontal face: skin oval, dark eyes and brows, nose line, dark mouth. Returns (image, eye centres)."""
    image = np.full((size, size, 3), background, np.uint8)
    cx, cy = center

    def at(x, y):
        return int(cx + x * scale), int(cy + y * scale)

    cv2.ellipse(image, at(0, 0), (int(60 * scale), int(80 * scale)), 0, 0, 360, (225, 190, 160), -1)
    for ex in (-25, 25):
        cv2.ellipse(image, at(ex, -20), (int(14 * scale), int(6 * scale)), 0, 0, 360, (30, 30, 30), -1)
        cv2.rectangle(image, at(ex - 16, -38), at(ex + 16, -33), (50, 40, 30), -1)
    cv2.line(image, at(0, -10), at(0, 20), (170, 130, 110), max(1, int(4 * scale)))
    cv2.ellipse(image, at(0, 38), (int(22 * scale), int(7 * scale)), 0, 0, 360, (90, 30, 40), -1)
    return image, np.array([at(-25, -20), at(25, -20)], dtype=np.float64)


def png_header_only(width, height):
    """A PNG whose header claims width x height, with no pixel data at all."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------------------------------------
# load_image


def test_load_image_rejects_tiny_huge_corrupt_and_missing(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(ValueError, match="at least 32 pixels"):
        load_image(tiny)

    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header_only(20000, 20000))
    assert huge.stat().st_size < 100  # nothing to decode: the check must come from the header alone
    with pytest.raises(ValueError, match="400,000,000 pixels.*Downscale"):
        load_image(huge)
    big = tmp_path / "big.png"  # under Pillow's own bomb limit, over ours
    big.write_bytes(png_header_only(8000, 8000))
    with pytest.raises(ValueError, match="8000x8000.*Downscale"):
        load_image(big)

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(range(256)))
    with pytest.raises(ValueError, match="corrupt"):
        load_image(corrupt)

    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt"):
        load_image(truncated)

    with pytest.raises(ValueError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_load_image_rejects_non_image_arrays():
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((64, 64, 7), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        load_image(np.zeros((64, 64, 3), np.int64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(np.full((64, 64, 3), 3.0))
    with pytest.raises(ValueError, match="at least 32"):
        load_image(np.zeros((16, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="more than"):
        load_image(np.zeros((64, 64, 3), np.uint8), max_pixels=1000)


def test_load_image_converts_gray_rgba_float_and_exif(tmp_path):
    gray = load_image(np.full((40, 50), 7, np.uint8))
    assert gray.shape == (40, 50, 3) and gray.dtype == np.uint8 and (gray == 7).all()

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half fully transparent -> white
    out = load_image(Image.fromarray(rgba, "RGBA"))
    assert (out[:20] == [200, 0, 0]).all() and (out[20:] == 255).all()

    assert (load_image(np.full((40, 40, 3), 0.5)) == 128).all()

    # A camera JPEG stored landscape with "rotate 90 degrees" in its EXIF must come back portrait.
    path = tmp_path / "rotated.jpg"
    stored = Image.new("RGB", (64, 40), (0, 255, 0))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(path, exif=exif)
    assert load_image(path).shape == (64, 40, 3)
    assert load_image(path.read_bytes()).shape == (64, 40, 3)


# --------------------------------------------------------------------------------------------------------------------
# Alignment


def test_similarity_transform_recovers_known_transform():
    angle, scale, shift = np.deg2rad(25.0), 1.7, np.array([13.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = ARCFACE_TEMPLATE @ (scale * rotation).T + shift
    matrix = similarity_transform(ARCFACE_TEMPLATE, moved)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_similarity_transform_is_never_a_reflection_and_refuses_degenerate_points():
    mirrored = ARCFACE_TEMPLATE * [-1.0, 1.0]
    matrix = similarity_transform(ARCFACE_TEMPLATE, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0  # the best rotation, not the exact mirror
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)
    with pytest.raises(ValueError, match="matching"):
        similarity_transform(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE[:3])


def test_arcface_template_is_insightfaces():
    face_align = pytest.importorskip("insightface.utils.face_align")
    np.testing.assert_allclose(ARCFACE_TEMPLATE, face_align.arcface_dst, atol=1e-4)


def test_arcface_crop_undoes_a_rotation_and_scale():
    pytest.importorskip("insightface")
    rng = np.random.default_rng(0)
    crop = cv2.resize(rng.integers(0, 256, (14, 14, 3)).astype(np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    angle, scale = np.deg2rad(-30.0), 1.8
    to_photo = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    matrix = np.concatenate([to_photo, [[120.0], [90.0]]], axis=1)
    photo = cv2.warpAffine(crop, matrix, (420, 420), flags=cv2.INTER_CUBIC)
    landmarks = ARCFACE_TEMPLATE @ matrix[:, :2].T + matrix[:, 2]
    back = arcface_crop(photo, landmarks)
    assert back.shape == (112, 112, 3) and back.dtype == np.uint8
    inner = (slice(8, -8), slice(8, -8))  # the border mixes in the photo's black outside
    assert np.abs(back[inner].astype(int) - crop[inner]).mean() < 6
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        arcface_crop(photo, landmarks[:4])


def test_template_landmarks_align_to_themselves():
    size = 128
    template = ffhq_template(size)
    # FFHQ framing: eyes above the centre, mouth below, the face well inside the crop.
    assert template[:2, 1].max() < size / 2 < template[3:, 1].min()
    assert 0.2 * size < template[1, 0] - template[0, 0] < 0.3 * size
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align_face(image, template, size), image)


def _dot_centroids(image, colors):
    out = []
    for color in colors:
        mask = np.all(np.abs(image.astype(int) - color) < 60, axis=-1)
        ys, xs = np.nonzero(mask)
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


@pytest.mark.parametrize("angle,scale", [(30.0, 0.6), (-50.0, 2.5)])
def test_rotated_scaled_face_comes_back_upright(angle, scale):
    size = 256
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    landmarks = (ffhq_template(size) - size / 2) @ (scale * rotation).T + [400, 300]
    canvas = np.zeros((600, 800, 3), np.uint8)
    for (x, y), color in zip(landmarks, colors):
        cv2.circle(canvas, (int(round(x)), int(round(y))), max(3, int(4 * scale)), color, -1, lineType=cv2.LINE_AA)
    aligned = align_face(canvas, landmarks, size)
    assert aligned.shape == (size, size, 3)
    np.testing.assert_allclose(_dot_centroids(aligned, colors), ffhq_template(size), atol=1.5)


def test_align_face_rejects_bad_landmarks():
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        align_face(np.zeros((64, 64, 3), np.uint8), np.zeros((68, 2)))


# --------------------------------------------------------------------------------------------------------------------
# Detection and the portrait


def test_detects_one_drawn_face_with_landmarks_on_the_eyes():
    image, eyes = draw_face()
    faces = detect_faces(image)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.bbox
    assert x0 < eyes[:, 0].min() and eyes[:, 0].max() < x1 and y0 < eyes[:, 1].min() < y1
    np.testing.assert_allclose(face.landmarks[:2], eyes, atol=6)
    # nose below the eyes, mouth below the nose
    assert face.landmarks[:2, 1].max() < face.landmarks[2, 1] < face.landmarks[3:, 1].min()


def test_detects_the_real_face_in_a_photo():
    data = pytest.importorskip("skimage.data")
    faces = detect_faces(data.astronaut())  # a NASA portrait bundled with scikit-image
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].landmarks[:2], [[203, 100], [247, 102]], atol=6)


def test_prepare_portrait_errors_and_alignment():
    with pytest.raises(ValueError, match="No face found.*already an aligned portrait"):
        prepare_portrait(np.full((256, 256, 3), 60, np.uint8), 128)

    two = np.concatenate([draw_face()[0], draw_face()[0]], axis=1)
    with pytest.raises(ValueError, match="Found 2 faces.*crop"):
        prepare_portrait(two, 128)

    image, _ = draw_face(size=400, center=(230, 180), scale=1.3)
    portrait = prepare_portrait(image, 128)
    assert isinstance(portrait, Portrait) and portrait.image.shape == (128, 128, 3) and portrait.face is not None
    np.testing.assert_allclose(portrait.landmarks, ffhq_template(128))
    # The face now sits where the template wants it: its eyes are the darkest spots near the template eyes.
    gray = cv2.GaussianBlur(portrait.image.mean(-1), (0, 0), 1.5)
    for ex, ey in ffhq_template(128)[:2]:
        window = gray[int(ey) - 6 : int(ey) + 7, int(ex) - 6 : int(ex) + 7]
        assert window.min() < 80 < window.max()


def test_already_aligned_keeps_the_framing():
    image = np.zeros((300, 200, 3), np.uint8)
    image[:, :, 1] = np.arange(200, dtype=np.uint8)[None, :]
    portrait = prepare_portrait(image, 64, already_aligned=True)
    assert portrait.face is None and portrait.image.shape == (64, 64, 3)
    assert abs(int(portrait.image[32, 32, 1]) - 100) <= 4  # centre crop, not a squash


def test_scrfd_detector_names_the_missing_file(tmp_path):
    with pytest.raises(ValueError, match="scrfd_10g_bnkps.onnx.*checkpoints/README.md"):
        ScrfdFaceDetector(tmp_path)




def test_scrfd_detector_through_insightface(tmp_path):
    pytest.importorskip("insightface")
    write_fake_scrfd(tmp_path / "scrfd_10g_bnkps.onnx")
    bright = np.full((320, 320, 3), 250, np.uint8)  # twice the model's input size: coordinates come back doubled
    faces = detect_faces(bright, detector=tmp_path)
    assert len(faces) == 1
    face = faces[0]
    np.testing.assert_allclose(face.bbox, [96, 80, 224, 256], atol=0.5)
    np.testing.assert_allclose(face.landmarks, [[128, 136], [192, 136], [160, 168], [136, 200], [184, 200]], atol=0.5)
    assert face.score > 0.9
    assert detect_faces(np.zeros((320, 320, 3), np.uint8), detector=tmp_path) == []
    with pytest.raises(ValueError, match="No face found"):
        prepare_portrait(np.zeros((320, 320, 3), np.uint8), 64, detector=str(tmp_path))
