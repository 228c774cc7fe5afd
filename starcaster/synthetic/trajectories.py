"""Camera trajectories for synthetic clips, built on `CameraPath` (conventions in `conditioning/camera.py`).

- "talk" clips use what talking-head videos have: a static camera near the front, sometimes slowly drifting.
- "orbit" clips use the paper's spatial data (Supp. A): smooth oscillatory trajectories spanning 140 deg azimuth x
  70 deg elevation at distance 2.7, 5 s long, of which a random window of the clip's length is taken (the paper
  trains on 16-frame sub-trajectories); plus whole sweeps and orbits so long camera moves are seen too.
"""

import numpy as np

from ..conditioning.camera import CameraPath

TRAJECTORY_KINDS = ("static", "drift", "oscillation", "sweep", "orbit")


def talk_camera(rng: np.random.Generator, num_frames: int, fps: float = 25.0) -> tuple:
    """A static or slowly drifting near-frontal camera; returns (path, kind)."""
    az, el = rng.normal(0, 10.0), rng.normal(0, 5.0)
    if rng.random() < 0.7:
        return CameraPath.static(num_frames, azimuth=az, elevation=el, fps=fps), "static"
    end = (az + rng.normal(0, 6.0), el + rng.normal(0, 3.0))
    return CameraPath.sweep(num_frames, start=(az, el), end=end, fps=fps), "drift"


def orbit_camera(rng: np.random.Generator, num_frames: int, fps: float = 25.0, kind: str | None = None) -> tuple:
    """A view-synthesis trajectory over the frontal hemisphere; returns (path, kind)."""
    kind = kind or str(rng.choice(["oscillation", "oscillation", "sweep", "orbit"]))
    if kind == "oscillation":
        full = max(num_frames, int(5 * fps))
        start = int(rng.integers(0, full - num_frames + 1))
        path = CameraPath.oscillation(full, seed=int(rng.integers(2**31)), fps=fps)
        return CameraPath(
            path.extrinsics[start : start + num_frames], path.intrinsics[start : start + num_frames], fps=fps
        ), kind
    if kind == "sweep":
        start = (rng.uniform(-70, 70), rng.uniform(-35, 35))
        end = (rng.uniform(-70, 70), rng.uniform(-35, 35))
        return CameraPath.sweep(num_frames, start=start, end=end, fps=fps), kind
    if kind == "orbit":
        half = rng.uniform(20, 70)
        path = CameraPath.orbit(
            num_frames,
            azimuth_range=(-half, half),
            elevation=rng.uniform(-20, 25),
            cycles=rng.uniform(0.3, 1.0),
            fps=fps,
        )
        return path, kind
    if kind == "static":
        return CameraPath.static(
            num_frames, azimuth=rng.uniform(-70, 70), elevation=rng.uniform(-35, 35), fps=fps
        ), kind
    raise ValueError(f"unknown trajectory kind {kind!r}; use one of {TRAJECTORY_KINDS}.")
