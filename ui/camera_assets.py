"""The camera paths shipped in ``assets/cameras/`` and how each is made; ``python -m ui.camera_assets`` rewrites them.

Every one starts at the input view (the frontal camera the portrait is seen from, ``camera.input_camera``), like the
editor's presets, so an orbit example's first frame is the portrait as given. ``tests/test_app_camera.py`` checks the
files still equal these recipes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "cameras"

# A hand-made keyframe path: out to the left and up, across to the right and closer, back to the input view.
KEYFRAMES = {"num_frames": 100, "fps": 25, "keyframes": [
    {"frame": 0, "azimuth": 0, "elevation": 0},
    {"frame": 30, "azimuth": -45, "elevation": 10},
    {"frame": 65, "azimuth": 40, "elevation": -10, "distance": 2.5},
    {"frame": 99, "azimuth": 0, "elevation": 0},
]}


def recipes() -> dict:
    """``{file name: CameraPath}`` for every shipped camera file."""
    from starcaster.conditioning.camera_path import PRESET_EASE_IN, CameraPath

    return {
        "orbit.json": CameraPath.orbit(100, azimuth_range=(-50.0, 50.0), ease_in=PRESET_EASE_IN),
        "zoom.json": CameraPath.zoom(75, distance_range=(2.7, 2.1)),
        "oscillation.json": CameraPath.preset("oscillation", 125, seed=7),
        "keyframes.json": CameraPath.from_json(json.dumps(KEYFRAMES)),
    }


def text_of(name: str, path) -> str:
    """What the file holds: the keyframe file stays a readable keyframe list, the rest are per-frame matrices."""
    if name == "keyframes.json":
        return json.dumps(KEYFRAMES, indent=1)
    data = json.loads(path.to_json())
    data["fps"] = int(data["fps"]) if float(data["fps"]).is_integer() else data["fps"]  # 25, as the files always had
    return json.dumps(data)


def write(folder: Path = ASSET_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, path in recipes().items():
        (folder / name).write_text(text_of(name, path))
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for out in write(Path(sys.argv[1]) if len(sys.argv) > 1 else ASSET_DIR):
        print(f"wrote {out}")
