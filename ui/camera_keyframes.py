"""Camera paths as the editor shows them: presets, a keyframe table, JSON text. No widgets here.

The editor always holds one ``CameraPath``, written as its JSON (that text is what the orbit endpoint takes, so API
users and the browser feed the pipeline the same way). The table shows the path's keyframes; a preset has none, so
the table shows it sampled at a few frames, and editing the table turns the path into a keyframe path.
"""

from __future__ import annotations

import math

import numpy as np

from starcaster.conditioning.camera import DEFAULT_DISTANCE, INPUT_AZIMUTH, INPUT_ELEVATION
from starcaster.conditioning.camera_path import PRESETS as _LIBRARY_PRESETS

KEYFRAME_COLUMNS = ["frame", "azimuth", "elevation", "distance", "fov"]
PRESETS = list(_LIBRARY_PRESETS)
DEFAULT_PRESET = "orbit"
EDITOR_FPS = 25.0  # the pipeline's rate; generation resamples the path to the video's frame count anyway
SAMPLED_KEYFRAMES = 5
INPUT_VIEW_NOTE = ("The **input view** (★ in the figures) is the camera your portrait is seen from: in front of the "
                   f"face, azimuth {INPUT_AZIMUTH:g}°, elevation {INPUT_ELEVATION:g}°, distance {DEFAULT_DISTANCE:g}. "
                   "Every preset starts there and moves away smoothly; start your own keyframes with frame 0 at "
                   "azimuth 0 and elevation 0 to do the same.")


def preset_path(name: str, num_frames: int, fps: float = EDITOR_FPS, seed: int = 0):
    """One of the editor's presets over ``num_frames`` frames; each starts at the input view (``CameraPath.preset``)."""
    from starcaster import CameraPath

    return CameraPath.preset(name, max(int(num_frames), 2), fps=fps, seed=int(seed))


def spherical(extrinsic: np.ndarray, intrinsic: np.ndarray) -> dict:
    """Azimuth/elevation (deg), distance and field of view (deg) of one camera (the inverse of ``orbit_eye``)."""
    rotation, translation = extrinsic[:3, :3], extrinsic[:3, 3]
    centre = -rotation.T @ translation
    distance = float(np.linalg.norm(centre))
    return {
        "azimuth": math.degrees(math.atan2(centre[0], centre[2])),
        "elevation": math.degrees(math.asin(np.clip(centre[1] / max(distance, 1e-9), -1.0, 1.0))),
        "distance": distance,
        "fov": math.degrees(2.0 * math.atan(0.5 / intrinsic[0, 0])),
    }


def keyframes_of(path) -> list[dict]:
    """The path's own keyframes, or the path sampled at a few evenly spaced frames."""
    if path.keyframes:
        return [dict(k) for k in path.keyframes]
    frames = np.unique(np.linspace(0, len(path) - 1, min(SAMPLED_KEYFRAMES, len(path))).round().astype(int))
    return [{"frame": int(f), **spherical(path.extrinsics[f], path.intrinsics[f])} for f in frames]


def keyframes_to_rows(keyframes: list[dict]) -> list[list[float]]:
    return [[int(k["frame"])] + [round(float(k.get(c, _DEFAULTS[c])), 3) for c in KEYFRAME_COLUMNS[1:]] for k in keyframes]


def rows_to_keyframes(rows) -> list[dict]:
    """Table rows (list of lists or a pandas DataFrame) to keyframe dicts; empty cells take defaults."""
    if hasattr(rows, "values"):  # pandas DataFrame from gr.Dataframe
        rows = rows.values.tolist()
    keyframes = []
    for i, row in enumerate(rows or []):
        row = list(row) + [None] * (len(KEYFRAME_COLUMNS) - len(row))
        if all(_blank(v) for v in row):
            continue
        key = {}
        for name, value in zip(KEYFRAME_COLUMNS, row):
            if _blank(value):
                if name == "frame":
                    raise ValueError(f"Keyframe row {i + 1} has no frame number.")
                value = _DEFAULTS[name]
            try:
                key[name] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"Keyframe row {i + 1}: {name} must be a number, got {value!r}.") from None
        key["frame"] = int(round(key["frame"]))
        keyframes.append(key)
    if not keyframes:
        raise ValueError("The keyframe table is empty: add at least one row (frame, azimuth, elevation).")
    keyframes.sort(key=lambda k: k["frame"])
    frames = [k["frame"] for k in keyframes]
    if len(set(frames)) != len(frames):
        raise ValueError("Two keyframes share the same frame number; give each its own frame.")
    return keyframes


def path_from_rows(rows, num_frames: int, fps: float = EDITOR_FPS):
    from starcaster import CameraPath

    keyframes = rows_to_keyframes(rows)
    if keyframes[-1]["frame"] >= num_frames:
        raise ValueError(f"Keyframe frame {keyframes[-1]['frame']} is past the path's end (it has {num_frames} frames).")
    return CameraPath.from_keyframes(keyframes, int(num_frames), fps=fps)


def move_keyframe(rows, index: int, x: float, z: float) -> list[list[float]]:
    """Rows after dragging keyframe ``index`` to (x, z) in the top view: azimuth and distance change, elevation stays."""
    keyframes = rows_to_keyframes(rows)
    if not 0 <= index < len(keyframes):
        raise ValueError(f"There is no keyframe {index + 1} to move.")
    key = keyframes[index]
    ground = math.hypot(x, z)  # the top view shows the camera's distance projected on the ground plane
    if not math.isfinite(ground) or ground < 1e-6:
        raise ValueError("A camera cannot sit inside the head: drag it further out.")
    key["azimuth"] = math.degrees(math.atan2(x, z))
    key["distance"] = ground / max(math.cos(math.radians(key["elevation"])), 1e-3)
    return keyframes_to_rows(keyframes)


def path_from_json(text: str):
    """Parse camera JSON typed, uploaded or sent to the API; ``ValueError`` with a readable message when broken."""
    from starcaster import CameraPath

    if text is None or not str(text).strip():
        raise ValueError("The camera path is empty: pick a preset or import a camera JSON file.")
    return CameraPath.from_json(text)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and math.isnan(value))


_DEFAULTS = {"frame": 0, "azimuth": 0.0, "elevation": 0.0, "distance": 2.7, "fov": 13.371}
