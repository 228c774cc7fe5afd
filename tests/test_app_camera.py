"""The camera-path editor's logic, without a browser: presets <-> keyframe table <-> JSON, dragging, the figure."""

import json
import math

import numpy as np
import pytest

from starcaster import CameraPath
from ui import camera_keyframes as ck
from ui.camera_plot import figure, frustum_lines


@pytest.mark.parametrize("preset", ck.PRESETS)
def test_presets_become_editable_tables_that_reproduce_them(preset):
    path = ck.preset_path(preset, 40)
    rows = ck.keyframes_to_rows(ck.keyframes_of(path))
    assert [r[0] for r in rows] == sorted({r[0] for r in rows}) and rows[0][0] == 0 and rows[-1][0] == 39
    rebuilt = ck.path_from_rows(rows, len(path))
    # At the sampled keyframes the rebuilt path puts the camera where the preset did.
    for row in rows:
        np.testing.assert_allclose(rebuilt.positions()[row[0]], path.positions()[row[0]], atol=2e-2)


def test_spherical_inverts_orbit_eye():
    path = CameraPath.from_keyframes([{"frame": 0, "azimuth": 35.0, "elevation": -20.0, "distance": 3.1,
                                       "fov": 18.0}], 1)
    s = ck.spherical(path.extrinsics[0], path.intrinsics[0])
    assert s == pytest.approx({"azimuth": 35.0, "elevation": -20.0, "distance": 3.1, "fov": 18.0}, abs=1e-6)


def test_dragging_in_top_view_sets_azimuth_and_distance_keeps_elevation():
    rows = [[0, 0.0, 30.0, 2.7, 13.4], [10, 10.0, 0.0, 2.7, 13.4]]
    moved = ck.move_keyframe(rows, 0, x=2.0, z=2.0)
    assert moved[0][1] == pytest.approx(45.0, abs=1e-3)  # atan2(x, z): positive x is positive azimuth
    assert moved[0][2] == pytest.approx(30.0)
    assert moved[0][3] == pytest.approx(math.hypot(2, 2) / math.cos(math.radians(30)), abs=1e-3)
    assert moved[1] == rows[1]
    path = ck.path_from_rows(moved, 11)
    assert path.positions()[0][0] > 0 and path.positions()[0][1] > 0  # to the +x side, above the head


@pytest.mark.parametrize("rows, message", [
    ([], "empty"),
    ([[0, "left", 0, 2.7, 13]], "number"),
    ([[0, 0, 0, 2.7, 13], [0, 10, 0, 2.7, 13]], "same frame"),
    ([[0, 0, 0, 2.7, 13], [50, 10, 0, 2.7, 13]], "past the path"),
    ([[None, 0, 0, 2.7, 13]], "no frame"),
])
def test_bad_tables_give_readable_errors(rows, message):
    with pytest.raises(ValueError, match=message):
        ck.path_from_rows(rows, 20)


def test_blank_cells_take_defaults():
    path = ck.path_from_rows([[0, 20, None, "", None]], 5)
    assert path.keyframes[0]["distance"] == pytest.approx(2.7)
    assert np.linalg.norm(path.positions()[0]) == pytest.approx(2.7)


@pytest.mark.parametrize("text, message", [("", "empty"), ("{nope", "JSON"), ("[1, 2]", "object")])
def test_broken_json_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        ck.path_from_json(text)


def test_json_round_trip_keeps_keyframes():
    path = ck.path_from_rows([[0, -30, 5, 2.7, 13.4], [24, 30, -5, 2.5, 15]], 25)
    again = ck.path_from_json(path.to_json())
    np.testing.assert_allclose(again.extrinsics, path.extrinsics, atol=1e-6)
    assert ck.keyframes_to_rows(ck.keyframes_of(again)) == ck.keyframes_to_rows(path.keyframes)


def test_figure_shows_path_frusta_and_one_handle_per_keyframe():
    path = ck.preset_path("orbit", 30)
    keys = ck.keyframes_of(path)
    fig = figure(path, keys, revision=7)
    json.dumps(fig)  # plain JSON for the browser
    names = [t["name"] for t in fig["data"]]
    assert {"head", "camera path", "frusta", "keyframes", "path (top view)"} <= set(names)
    assert len(fig["layout"]["shapes"]) == len(keys)
    path_trace = fig["data"][names.index("camera path")]
    np.testing.assert_allclose(path_trace["x"], path.positions()[:, 0], atol=1e-3)
    # Top view: the handles sit on the cameras' (x, z).
    shape = fig["layout"]["shapes"][1]
    centre = ((shape["x0"] + shape["x1"]) / 2, (shape["y0"] + shape["y1"]) / 2)
    np.testing.assert_allclose(centre, path.positions()[keys[1]["frame"]][[0, 2]], atol=1e-6)
    assert fig["layout"]["meta"] == {"revision": 7, "num_frames": 30, "num_keyframes": len(keys)}
    # Each handle carries its number (drawn on it and dragged with it); the views' titles are the page's, not Plotly's.
    assert [s["label"]["text"] for s in fig["layout"]["shapes"]] == [str(i + 1) for i in range(len(keys))]
    assert not fig["layout"].get("annotations")


def test_frustum_points_toward_the_head_and_opens_with_the_fov():
    path = CameraPath.from_keyframes([{"frame": 0, "azimuth": 0, "elevation": 0, "fov": 20}], 1)
    pts = frustum_lines(path.extrinsics[0], path.intrinsics[0], depth=0.5)
    centre, corners = pts[0], pts[[1, 2, 4, 5]]
    np.testing.assert_allclose(centre, [0, 0, 2.7], atol=1e-9)
    assert np.allclose(corners[:, 2], 2.2)  # 0.5 in front of the camera, toward the head at the origin
    half_width = np.abs(corners[:, 0]).max()
    assert half_width == pytest.approx(0.5 * math.tan(math.radians(10)), rel=1e-6)


# --------------------------------------------------------------------------------------------------------------------
# The input view: where presets, shipped paths and the editor's figures start


def test_shipped_camera_files_are_their_recipes_and_start_at_the_input_view():
    from starcaster.conditioning.camera import input_camera
    from ui import camera_assets

    recipes = camera_assets.recipes()
    assert {p.name for p in camera_assets.ASSET_DIR.glob("*.json")} == set(recipes)
    extrinsic, intrinsic = input_camera()
    for name, recipe in recipes.items():
        shipped = CameraPath.from_json((camera_assets.ASSET_DIR / name).read_text())
        assert len(shipped) == len(recipe), name
        np.testing.assert_allclose(shipped.extrinsics, recipe.extrinsics, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(shipped.extrinsics[0], extrinsic, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(shipped.intrinsics[0], intrinsic, atol=1e-5, err_msg=name)


def test_camera_assets_script_writes_files_that_load(tmp_path):
    from ui import camera_assets

    written = camera_assets.write(tmp_path)
    assert sorted(p.name for p in written) == sorted(camera_assets.recipes())
    for p in written:
        assert len(CameraPath.from_json(p.read_text())) > 1


@pytest.mark.parametrize("preset", ck.PRESETS)
def test_editor_presets_start_at_the_input_view(preset):
    from starcaster.conditioning.camera import input_camera

    for frames in (2, 40, 75):
        path = ck.preset_path(preset, frames, seed=3)
        np.testing.assert_allclose(path.extrinsics[0], input_camera()[0], atol=1e-5)
        row = ck.keyframes_to_rows(ck.keyframes_of(path))[0]
        assert row[:4] == [0, 0.0, 0.0, 2.7]  # the table's first row reads as the input view too


def test_figure_marks_the_input_view_in_both_views():
    path = ck.preset_path("oscillation", 50, seed=1)
    fig = figure(path, ck.keyframes_of(path))
    by_name = {t["name"]: t for t in fig["data"]}
    marker_3d, marker_top = by_name["input view"], by_name["input view (top view)"]
    assert (marker_3d["x"], marker_3d["y"], marker_3d["z"]) == ([0.0], [0.0], [2.7])
    assert marker_3d["scene"] == "scene" and marker_3d["text"] == ["input view"]
    assert (marker_top["x"], marker_top["y"]) == ([0.0], [2.7]) and marker_top["xaxis"] == "x"
    # ... and it is where the path begins.
    np.testing.assert_allclose(by_name["camera path"]["x"][0], 0.0, atol=1e-4)
    np.testing.assert_allclose(by_name["camera path"]["z"][0], 2.7, atol=1e-4)


def test_editor_says_where_the_input_view_is():
    import gradio as gr

    from ui.camera_editor import CameraEditor

    with gr.Blocks() as demo:
        CameraEditor(gr.Slider(0.5, 10.0, value=2.0))
    notes = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "camera-input-view"]
    assert len(notes) == 1
    text = notes[0].value
    assert "input view" in text and "azimuth 0°" in text and "elevation 0°" in text and "2.7" in text
