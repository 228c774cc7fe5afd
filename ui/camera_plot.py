"""The camera-path figure: a 3D view (head, path, cameras and their frusta) beside a draggable top view; both mark
the input view, the camera the portrait itself is seen from, where every preset starts.

Built as a plain Plotly JSON dict (no ``plotly`` import needed): the browser draws it with the pip package's own
``plotly.min.js``. Plotly 3D has no draggable points, so keyframes are editable circles (``layout.shapes``) in the 2D
top view, where dragging one moves the camera around the head (azimuth and distance).
"""

from __future__ import annotations

import json

import numpy as np

from starcaster.conditioning.camera import camera_center, input_camera

HEAD_RADII = (0.19, 0.25, 0.21)  # x, y, z: about the tiny world's heads, which fit the +-0.32 image at distance 2.7
HANDLE_RADIUS = 0.28  # world units: big enough to grab, and to hold its number
FRUSTUM_DEPTH = 0.45
MAX_FRUSTA = 8
PATH_COLOR = "#6c5ce7"
KEY_COLOR = "#e17055"
INPUT_COLOR = "#00b894"
INPUT_LABEL = "input view"  # the camera the portrait is seen from; presets start here
# Where the two views sit, as fractions of the plotting width; camera_editor's titles follow the same split.
VIEW_3D, VIEW_TOP = (0.0, 0.58), (0.64, 1.0)
PLOT_MARGIN = 10  # px left and right


def _head_surface() -> dict:
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 24), np.linspace(0, np.pi, 14))
    rx, ry, rz = HEAD_RADII
    return {
        "type": "surface", "name": "head", "showscale": False, "hoverinfo": "skip", "opacity": 0.9,
        "x": (rx * np.sin(v) * np.sin(u)).round(4).tolist(),
        "y": (ry * np.cos(v)).round(4).tolist(),
        "z": (rz * np.sin(v) * np.cos(u)).round(4).tolist(),
        "colorscale": [[0, "#f5cba7"], [1, "#e59866"]], "scene": "scene",
    }


def _face_marks() -> dict:
    # Eyes and nose on the +z side show which way the face looks.
    return {
        "type": "scatter3d", "mode": "markers", "name": "face (+z)", "hoverinfo": "name", "scene": "scene",
        "x": [-0.07, 0.07, 0.0], "y": [0.05, 0.05, -0.02], "z": [0.19, 0.19, 0.24],
        "marker": {"size": [4, 4, 5], "color": ["#2d3436", "#2d3436", "#d35400"]},
    }


def _input_view() -> list[dict]:
    """The input view, marked in both views: where the portrait's own camera sits (presets start there)."""
    centre = camera_center(input_camera()[0]).round(4)
    common = {"name": INPUT_LABEL, "mode": "markers+text", "text": [INPUT_LABEL], "hoverinfo": "name",
              "textposition": "top center", "textfont": {"color": INPUT_COLOR}}
    return [
        {"type": "scatter3d", "scene": "scene", **common, "x": [centre[0]], "y": [centre[1]], "z": [centre[2]],
         "marker": {"size": 7, "symbol": "diamond", "color": INPUT_COLOR}},
        {"type": "scatter", "xaxis": "x", "yaxis": "y", **common, "name": f"{INPUT_LABEL} (top view)",
         "x": [centre[0]], "y": [centre[2]], "marker": {"size": 14, "symbol": "star", "color": INPUT_COLOR}},
    ]


def frustum_lines(extrinsic: np.ndarray, intrinsic: np.ndarray, depth: float = FRUSTUM_DEPTH) -> np.ndarray:
    """(N, 3) world points tracing one camera's pyramid (None-separated segments are added by the caller)."""
    rotation, translation = extrinsic[:3, :3], extrinsic[:3, 3]
    centre = -rotation.T @ translation
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    corners = []
    for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):  # normalised image corners, v down
        cam = np.array([(u - cx) / fx * depth, (v - cy) / fy * depth, depth])
        corners.append(rotation.T @ (cam - translation))
    c = corners
    top = (c[0] + c[1]) / 2 + (rotation.T @ np.array([0, -0.08, 0]))  # a tick on the image's top edge: "up"
    return np.array([centre, c[0], c[1], centre, c[2], c[3], centre, c[0], c[3], c[2], c[1], top, c[0]])


def _frusta(path, highlight: list[int]) -> dict:
    xs, ys, zs = [], [], []
    for f in highlight:
        pts = frustum_lines(path.extrinsics[f], path.intrinsics[f])
        xs += pts[:, 0].round(4).tolist() + [None]
        ys += pts[:, 1].round(4).tolist() + [None]
        zs += pts[:, 2].round(4).tolist() + [None]
    return {"type": "scatter3d", "mode": "lines", "name": "frusta", "hoverinfo": "skip", "scene": "scene",
            "x": xs, "y": ys, "z": zs, "line": {"color": "#0984e3", "width": 3}}


def figure(path, keyframes: list[dict], revision: int = 0) -> dict:
    """The Plotly figure (``data`` + ``layout``) for ``path`` with its editable ``keyframes``."""
    pos = path.positions()
    frames = np.arange(len(path))
    step = max(1, len(path) // MAX_FRUSTA)
    highlight = sorted(set(frames[::step].tolist()) | {len(path) - 1})
    key_frames = [min(int(k["frame"]), len(path) - 1) for k in keyframes]
    key_pos = pos[key_frames] if key_frames else np.zeros((0, 3))
    r = lambda a: np.asarray(a).round(4).tolist()  # noqa: E731  (short JSON)

    data = [
        _head_surface(),
        _face_marks(),
        {"type": "scatter3d", "mode": "lines", "name": "camera path", "scene": "scene",
         "x": r(pos[:, 0]), "y": r(pos[:, 1]), "z": r(pos[:, 2]), "text": [f"frame {f}" for f in frames],
         "line": {"color": frames.tolist(), "colorscale": "Viridis", "width": 5}},
        {"type": "scatter3d", "mode": "markers", "name": "cameras", "scene": "scene",
         "x": r(pos[highlight, 0]), "y": r(pos[highlight, 1]), "z": r(pos[highlight, 2]),
         "text": [f"frame {f}" for f in highlight], "marker": {"size": 3, "color": PATH_COLOR}},
        _frusta(path, highlight),
        {"type": "scatter3d", "mode": "markers+text", "name": "keyframes", "scene": "scene",
         "x": r(key_pos[:, 0]), "y": r(key_pos[:, 1]), "z": r(key_pos[:, 2]),
         "text": [str(i + 1) for i in range(len(key_frames))], "marker": {"size": 6, "color": KEY_COLOR}},
        # Top view: x to the right, world z upward (the frontal camera sits at the top).
        {"type": "scatter", "mode": "lines", "name": "path (top view)", "xaxis": "x", "yaxis": "y",
         "x": r(pos[:, 0]), "y": r(pos[:, 2]), "line": {"color": PATH_COLOR, "width": 2}, "hoverinfo": "skip"},
        {"type": "scatter", "mode": "lines", "name": "head (top view)", "xaxis": "x", "yaxis": "y", "fill": "toself",
         "x": r(HEAD_RADII[0] * np.sin(np.linspace(0, 2 * np.pi, 40))),
         "y": r(HEAD_RADII[2] * np.cos(np.linspace(0, 2 * np.pi, 40))),
         "line": {"color": "#e59866"}, "hoverinfo": "skip"},
        *_input_view(),
    ]
    shapes = [
        {"type": "circle", "xref": "x", "yref": "y", "name": f"keyframe-{i}",
         "x0": float(p[0] - HANDLE_RADIUS), "x1": float(p[0] + HANDLE_RADIUS),
         "y0": float(p[2] - HANDLE_RADIUS), "y1": float(p[2] + HANDLE_RADIUS),
         "fillcolor": KEY_COLOR, "opacity": 0.85, "line": {"color": "white"},
         # The number is the shape's own label: drawn on top of the circle and dragged with it (a text trace lay
         # under the circles, hidden).
         "label": {"text": str(i + 1), "font": {"color": "white", "size": 13}, "textposition": "middle center"}}
        for i, p in enumerate(key_pos)
    ]
    extent = max(3.2, float(np.abs(pos).max()) + 0.4)
    layout = {
        "height": 420, "margin": {"l": PLOT_MARGIN, "r": PLOT_MARGIN, "t": 10, "b": 10}, "showlegend": False,
        "uirevision": "camera-editor",  # keep the user's 3D rotation/zoom across updates
        "meta": {"revision": revision, "num_frames": len(path), "num_keyframes": len(key_frames)},
        "scene": {"domain": {"x": list(VIEW_3D), "y": [0, 1]}, "aspectmode": "cube",
                  "xaxis": {"title": {"text": "x"}, "range": [-extent, extent]},
                  "yaxis": {"title": {"text": "y (up)"}, "range": [-extent, extent]},
                  "zaxis": {"title": {"text": "z (face)"}, "range": [-extent, extent]},
                  "camera": {"eye": {"x": 1.4, "y": 0.9, "z": 1.4}, "up": {"x": 0, "y": 1, "z": 0}}},
        "xaxis": {"domain": list(VIEW_TOP), "range": [-extent, extent], "zeroline": False, "title": {"text": "x"}},
        "yaxis": {"domain": [0.05, 0.95], "range": [-extent, extent], "scaleanchor": "x", "zeroline": False,
                  "title": {"text": "z (toward the face)"}},
        "shapes": shapes,  # the two views' titles are HTML above the figure (camera_editor.PLOT_TEMPLATE)
    }
    return {"data": data, "layout": layout}


def figure_json(path, keyframes: list[dict], revision: int = 0) -> str:
    return json.dumps(figure(path, keyframes, revision), separators=(",", ":"))
