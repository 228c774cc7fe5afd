"""Ground-truth landmarks: where a part of the head lands in the image, for every frame.

The lip-reading loss and the mouth-region metrics crop around the mouth. On real data a face-landmark detector
places the crop; in the synthetic world the true mouth centre is projected through the true camera, which is exact.
"""

from __future__ import annotations

import numpy as np

from .renderer import Scene


def part_centre_world(scene: Scene, name: str) -> np.ndarray:
    """(F, 3) world position of the centre of the part called ``name``, posed as the renderer poses it."""
    part = next((p for p in scene.parts if p.name == name), None)
    if part is None:
        raise ValueError(f"the scene has no part named {name!r}.")
    frames = len(scene)
    centre = np.broadcast_to(np.asarray(part.center, np.float32), (frames, 3)) if np.ndim(part.center) == 1 else (
        np.asarray(part.center, np.float32))
    if not part.attached:
        return centre.copy()
    pivot = np.asarray(scene.pivot, np.float32)
    return np.einsum("fij,fj->fi", scene.head_rotation, centre - pivot) + pivot + scene.head_translation


def project(points: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray, size: int) -> np.ndarray:
    """World points (F, 3) -> pixel coordinates (F, 2) as (column, row), in the `camera.py` convention."""
    ext = np.asarray(extrinsics, np.float32).reshape(-1, 4, 4)
    intr = np.broadcast_to(np.asarray(intrinsics, np.float32).reshape(-1, 3, 3), (len(ext), 3, 3))
    cam = np.einsum("fij,fj->fi", ext[:, :3, :3], points) + ext[:, :3, 3]
    uv = np.einsum("fij,fj->fi", intr, cam / cam[:, 2:3])[:, :2]
    return (uv * size).astype(np.float32)


def mouth_pixels(scene: Scene, extrinsics: np.ndarray, intrinsics: np.ndarray, size: int) -> np.ndarray:
    """(F, 2) pixel position (column, row) of the mouth centre in each frame."""
    return project(part_centre_world(scene, "mouth"), extrinsics, intrinsics, size)
