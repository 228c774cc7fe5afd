import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from starcaster.conditioning.camera import (
    CameraPath,
    camera_center,
    camera_vector,
    default_intrinsics,
    input_camera,
    intrinsics_from_fov,
    look_at,
    orbit_eye,
    project,
    validate_extrinsic,
)
from starcaster.conditioning.camera_path import PRESET_EASE_IN, PRESETS


@pytest.mark.parametrize("first", ["starcaster.conditioning.camera_path", "starcaster.conditioning.camera", "starcaster"])
def test_camera_modules_import_in_any_order(first):
    # A fresh interpreter, so nothing is imported yet: camera.py re-exports CameraPath from camera_path.py, which
    # imports camera.py's helpers, and neither order may hit the half-initialised other module.
    code = (f"import {first}\n"
            "from starcaster import CameraPath as A\n"
            "from starcaster.conditioning.camera import CameraPath as B\n"
            "from starcaster.conditioning.camera_path import CameraPath as C\n"
            "assert A is B is C and len(C.orbit(3)) == 3\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_input_camera_is_the_frontal_default_camera():
    extrinsic, intrinsic = input_camera()
    np.testing.assert_allclose(camera_center(extrinsic), [0, 0, 2.7], atol=1e-12)
    np.testing.assert_allclose(extrinsic, look_at(orbit_eye(0, 0, 2.7)), atol=1e-12)
    np.testing.assert_allclose(intrinsic, default_intrinsics(), atol=1e-12)


@pytest.mark.parametrize("num_frames", [2, 16, 75, 250])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_starts_at_the_input_view(preset, num_frames):
    extrinsic, intrinsic = input_camera()
    for seed in (0, 5):
        path = CameraPath.preset(preset, num_frames, fps=25.0, seed=seed)
        assert len(path) == num_frames
        np.testing.assert_allclose(path.extrinsics[0], extrinsic, atol=1e-5)
        np.testing.assert_allclose(path.intrinsics[0], intrinsic, atol=1e-5)


@pytest.mark.parametrize("num_frames", [16, 50, 125, 250])
@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "static"])
def test_presets_leave_the_input_view_without_a_jump(preset, num_frames):
    path = CameraPath.preset(preset, num_frames, seed=5)
    steps = np.linalg.norm(np.diff(path.positions(), axis=0), axis=1)
    assert steps.max() > 1e-3  # it does move
    # No jump out of the input view: the first step is no bigger than the next one.
    assert steps[0] <= 1.01 * steps[1]
    if num_frames >= 50:  # two seconds or more: step sizes change gradually and the eased presets start slowly
        assert np.abs(np.diff(steps)).max() <= 0.35 * steps.max()
        assert steps[0] <= 0.25 * steps.max()  # it leaves the input view at rest, not at full speed


def test_oscillation_ease_in_only_changes_the_start():
    raw = CameraPath.oscillation(125, seed=3)  # the paper's trajectories, as the training data uses them
    eased = CameraPath.oscillation(125, seed=3, ease_in=PRESET_EASE_IN)
    settled = int(PRESET_EASE_IN * 25)
    np.testing.assert_allclose(eased.extrinsics[settled:], raw.extrinsics[settled:], atol=1e-12)
    assert not np.allclose(raw.extrinsics[0], input_camera()[0], atol=1e-3)
    np.testing.assert_allclose(eased.extrinsics[0], input_camera()[0], atol=1e-12)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="orbit, sweep, zoom, oscillation, static"):
        CameraPath.preset("spiral", 10)


def test_look_at_frontal_camera_follows_opencv_convention():
    m = look_at(orbit_eye(0, 0))
    np.testing.assert_allclose(camera_center(m), [0, 0, 2.7], atol=1e-12)
    # The head (origin) is straight ahead at depth 2.7 and lands in the image centre.
    uv, depth = project([[0, 0, 0]], m, default_intrinsics())
    np.testing.assert_allclose(uv, [[0.5, 0.5]], atol=1e-12)
    np.testing.assert_allclose(depth, [2.7])
    # World +y (up) appears above the centre (smaller v); the face's right (-x world) is on the image left.
    uv, _ = project([[0, 0.1, 0], [-0.1, 0, 0]], m, default_intrinsics())
    assert uv[0, 1] < 0.5 and uv[1, 0] < 0.5


@pytest.mark.parametrize("az,el", [(0, 0), (70, 0), (-70, 35), (30, -35), (120, 10)])
def test_look_at_rotation_round_trip(az, el):
    eye = orbit_eye(az, el)
    m = validate_extrinsic(look_at(eye))
    np.testing.assert_allclose(camera_center(m), eye, atol=1e-9)
    r = m[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    # The optical axis points at the head.
    np.testing.assert_allclose(r[2], -eye / np.linalg.norm(eye), atol=1e-12)
    # Rotation -> quaternion -> rotation is lossless.
    np.testing.assert_allclose(Rotation.from_matrix(r).as_matrix(), r, atol=1e-12)


def test_intrinsics_from_fov_matches_default_focal():
    k = intrinsics_from_fov(np.degrees(2 * np.arctan(0.5 / 4.2647)))
    np.testing.assert_allclose(k, default_intrinsics(), atol=1e-9)
    with pytest.raises(ValueError, match="Field of view"):
        intrinsics_from_fov(float("nan"))


def test_camera_vector_layout():
    m, k = look_at(orbit_eye(20, 10)), default_intrinsics()
    v = camera_vector(m, k)
    assert v.shape == (25,)
    np.testing.assert_allclose(v[:16].reshape(4, 4), m, atol=1e-6)
    np.testing.assert_allclose(v[16:].reshape(3, 3), k, atol=1e-6)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.full((4, 4), np.nan), "NaN"),
        (np.diag([2.0, 1.0, 1.0, 1.0]), "not a rotation"),
        (np.diag([1.0, 1.0, -1.0, 1.0]), "not a rotation"),  # a reflection: orthonormal, det -1
        (np.eye(3), "4x4"),
    ],
)
def test_bad_extrinsics_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_extrinsic(bad)
    if bad.shape == (4, 4):
        with pytest.raises(ValueError, match=match):
            CameraPath(bad[None], default_intrinsics()[None])


@pytest.mark.parametrize("preset", ["orbit", "sweep", "zoom", "oscillation"])
def test_presets_are_continuous_and_look_at_the_head(preset):
    path = getattr(CameraPath, preset)(100)
    assert len(path) == 100
    centres = path.positions()
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    # Continuity: no jumps; consecutive steps change smoothly (bounded second difference).
    assert steps.max() < 0.25
    assert np.abs(np.diff(steps)).max() < 0.1 * steps.max() + 1e-6
    uv, _ = project([[0, 0, 0]], path.extrinsics[37], path.intrinsics[37])
    np.testing.assert_allclose(uv, [[0.5, 0.5]], atol=1e-9)


def test_oscillation_spans_the_papers_range_and_is_seeded():
    a, b = CameraPath.oscillation(125, seed=3), CameraPath.oscillation(125, seed=3)
    np.testing.assert_array_equal(a.extrinsics, b.extrinsics)
    assert not np.allclose(a.extrinsics, CameraPath.oscillation(125, seed=4).extrinsics)
    c = CameraPath.oscillation(2000, seed=1).positions()
    azimuth = np.degrees(np.arctan2(c[:, 0], c[:, 2]))
    elevation = np.degrees(np.arcsin(c[:, 1] / np.linalg.norm(c, axis=1)))
    assert np.abs(azimuth).max() <= 70.0 + 1e-6 and np.abs(elevation).max() <= 35.0 + 1e-6
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 2.7)


def test_keyframes_pass_through_keys_and_json_round_trip():
    keys = [
        {"frame": 0, "azimuth": -40, "elevation": 0},
        {"frame": 20, "azimuth": 10, "elevation": 20, "distance": 2.4},
        {"frame": 49, "azimuth": 50, "elevation": -10, "fov": 15},
    ]
    path = CameraPath.from_keyframes(keys, 50)
    np.testing.assert_allclose(camera_center(path.extrinsics[20]), orbit_eye(10, 20, 2.4), atol=1e-9)
    np.testing.assert_allclose(path.intrinsics[49], intrinsics_from_fov(15), atol=1e-9)
    back = CameraPath.from_json(path.to_json())
    np.testing.assert_allclose(back.extrinsics, path.extrinsics, atol=1e-7)
    np.testing.assert_allclose(back.intrinsics, path.intrinsics, atol=1e-7)
    assert back.keyframes == path.keyframes and back.fps == path.fps
    # A keyframe-only file is accepted too.
    only = CameraPath.from_json(json.dumps({"num_frames": 50, "keyframes": keys}))
    np.testing.assert_allclose(only.extrinsics, path.extrinsics, atol=1e-12)


def test_matrix_keyframes_slerp_stays_on_so3():
    a, b = look_at(orbit_eye(-60, 0)), look_at(orbit_eye(60, 30))
    path = CameraPath.from_matrix_keyframes([0, 10], [a, b], [default_intrinsics()] * 2, 11)
    mid = path.extrinsics[5][:3, :3]
    np.testing.assert_allclose(mid @ mid.T, np.eye(3), atol=1e-9)
    # Slerp halfway: the relative rotation from a to mid is half the angle from a to b.
    full = Rotation.from_matrix(b[:3, :3] @ a[:3, :3].T).magnitude()
    half = Rotation.from_matrix(mid @ a[:3, :3].T).magnitude()
    np.testing.assert_allclose(half, full / 2, atol=1e-9)


def test_resample_keeps_the_trajectory():
    path = CameraPath.orbit(40)
    longer = path.resample(79)
    assert len(longer) == 79
    np.testing.assert_allclose(longer.extrinsics[0], path.extrinsics[0], atol=1e-9)
    np.testing.assert_allclose(longer.extrinsics[-1], path.extrinsics[-1], atol=1e-9)
    np.testing.assert_allclose(longer.extrinsics[2], path.extrinsics[1], atol=1e-9)


@pytest.mark.parametrize(
    "text,match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be an object"),
        ('{"extrinsics": [[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]], "intrinsics": "x"}', "numeric"),
        ('{"num_frames": 10, "keyframes": [{"frame": 0, "azimuth": NaN, "elevation": 0}]}', "finite"),
        ('{"num_frames": 10, "keyframes": [{"frame": 30, "azimuth": 0, "elevation": 0}]}', "outside"),
        ('{"num_frames": 10, "keyframes": [{"frame": 0, "azimuth": 0, "elevation": 95}]}', "elevation"),
        ('{"num_frames": 10000000, "keyframes": [{"frame": 0, "azimuth": 0, "elevation": 0}]}', "between 1 and"),
        ('{"fps": 25}', "needs either"),
    ],
)
def test_broken_json_gives_clear_errors(text, match):
    with pytest.raises(ValueError, match=match):
        CameraPath.from_json(text)
