"""The synthetic heads and renderer: identity, camera agreement with camera.py, occlusion, expression locality."""

import numpy as np
import pytest

from starcaster.conditioning.camera import default_intrinsics, look_at, orbit_eye, project
from starcaster.synthetic.expression import FaceState
from starcaster.synthetic.head import PIVOT, HeadIdentity, build_scene, identity_vector
from starcaster.synthetic.renderer import render

SIZE = 64
K = default_intrinsics()


def _cams(*views):
    return np.stack([look_at(orbit_eye(az, el)) for az, el in views])


def _render(identity_id=7, state=None, views=((0, 0),), **kw):
    state = state or FaceState.neutral(len(views))
    return render(build_scene(HeadIdentity.from_id(identity_id), state), _cams(*views), K, size=SIZE, **kw)


def test_identity_vector_is_deterministic_and_distinct():
    assert np.array_equal(identity_vector(12), identity_vector(12))
    assert np.abs(identity_vector(12) - identity_vector(13)).mean() > 0.1
    with pytest.raises(ValueError):
        HeadIdentity.from_vector(np.full(5, 0.5))


def test_different_identities_look_different():
    a, b = _render(1)[0].astype(float), _render(2)[0].astype(float)
    assert np.abs(a - b).mean() > 8.0  # pixel distance
    pa, pb = HeadIdentity.from_id(1), HeadIdentity.from_id(2)
    assert abs(pa.width - pb.width) + np.abs(pa.skin - pb.skin).sum() + np.abs(pa.hair - pb.hair).sum() > 0.05


def test_same_camera_twice_identical_two_cameras_differ():
    img = _render(views=((0, 0), (0, 0), (40, 10)))
    assert np.array_equal(img[0], img[1])
    assert np.abs(img[0].astype(float) - img[2].astype(float)).mean() > 5.0


def test_renderer_agrees_with_camera_projection():
    """The nose tip's centre, moved by the head pose, lands where camera.project says, at the depth it says."""
    state = FaceState.neutral(3)
    state.pose[:] = [[0, 0, 0, 0, 0, 0], [12, -5, 4, 0.02, -0.01, 0.0], [-8, 6, 0, 0, 0.01, 0.02]]
    views = ((0, 0), (35, 15), (-50, -20))
    scene = build_scene(HeadIdentity.from_id(3), state)
    rgb, depth, part = render(scene, _cams(*views), K, size=128, buffers=True)
    names = [p.name for p in scene.parts]
    nose = scene.parts[names.index("nose_tip")]
    for f, ext in enumerate(_cams(*views)):
        front = nose.center + np.array([0, 0, nose.radii[2]], np.float32)  # frontmost point, head coordinates
        world = scene.head_rotation[f] @ (front - PIVOT) + PIVOT + scene.head_translation[f]
        uv, z = project(world[None], ext, K)
        col, row = (uv[0] * 128).astype(int)
        assert names[part[f, row, col]] in ("nose_tip", "nose_wing_0", "nose_wing_1")
        assert depth[f, row, col] == pytest.approx(z[0], abs=0.02)


def test_occlusion_from_behind_sides():
    """From every side of the frontal hemisphere the nearest surface wins: ears hide behind the head when seen from
    the other side, the face hides the mouth interior."""
    views = ((70, 0), (-70, 0), (0, 35), (0, -35))
    scene = build_scene(HeadIdentity.from_id(4), FaceState.neutral(4))
    _, _, part = render(scene, _cams(*views), K, size=SIZE, buffers=True)
    names = [p.name for p in scene.parts]
    seen = [{names[i] for i in np.unique(p) if i >= 0} for p in part]
    # camera at +x sees the +x ear (ear_1) but not the -x one, and vice versa
    assert "ear_0" not in seen[0] and "ear_1" not in seen[1]
    assert all("cavity" not in s and "teeth_upper" not in s for s in seen)  # closed mouth: interior hidden
    assert all("eye_0" in s or "eye_1" in s for s in seen[2:])


def _regions(identity_id=5):
    """Boolean masks (at SIZE) of the eye and mouth regions of a frontal render."""
    scene = build_scene(HeadIdentity.from_id(identity_id), FaceState.neutral(1))
    _, _, part = render(scene, _cams((0, 0)), K, size=SIZE, buffers=True)
    names = [p.name for p in scene.parts]
    pick = lambda prefixes: np.isin(part[0], [i for i, n in enumerate(names) if n.startswith(prefixes)])  # noqa: E731
    eyes, mouth = pick(("eye", "lid", "brow")), pick(("lip", "jaw"))
    grow = lambda m: np.pad(m, 2)[:-4, 2:-2] | np.pad(m, 2)[4:, 2:-2] | m  # noqa: E731 - a little vertical slack
    return grow(eyes), grow(mouth)


def test_mouth_opening_changes_mouth_not_eyes():
    eyes, mouth = _regions()
    state = FaceState.neutral(2)
    state.jaw_open[1] = 0.9
    img = _render(5, state, views=((0, 0), (0, 0))).astype(float)
    diff = np.abs(img[1] - img[0]).sum(-1) > 0
    assert diff[mouth].mean() > 0.1
    assert not diff[eyes & ~mouth].any()


def test_blink_changes_eyes_not_mouth():
    eyes, mouth = _regions()
    state = FaceState.neutral(2)
    state.blink[1] = 1.0
    img = _render(5, state, views=((0, 0), (0, 0))).astype(float)
    diff = np.abs(img[1] - img[0]).sum(-1) > 0
    assert diff[eyes].mean() > 0.05
    assert not diff[mouth & ~eyes].any()


def test_open_mouth_shows_teeth_or_cavity():
    state = FaceState.neutral(1)
    state.jaw_open[:] = 1.0
    scene = build_scene(HeadIdentity.from_id(6), state)
    _, _, part = render(scene, _cams((0, 0)), K, size=SIZE, buffers=True)
    seen = {scene.parts[i].name for i in np.unique(part) if i >= 0}
    assert seen & {"cavity", "teeth_upper", "teeth_lower", "tongue"}


def test_bad_input_raises():
    scene = build_scene(HeadIdentity.from_id(1), FaceState.neutral(2))
    with pytest.raises(ValueError):
        render(scene, _cams((0, 0)), K, size=SIZE)  # one camera for two frames
