"""Cameras for view-conditioned generation (paper §3.1 "Camera Encoder", Supp. A).

Convention — every module in the project (model, renderer, UI) uses exactly this:

* World: the head sits at the origin, +y is up and the face looks toward +z, so the frontal camera is at
  (0, 0, 2.7). 2.7 is the camera distance of the paper's pseudo multi-view data (EG3D-style generators).
* Camera axes are OpenCV's: x right, y down, z forward into the scene.
* Extrinsics are 4x4 **world-to-camera** matrices [R | t]: ``x_cam = R @ x_world + t``.
* Intrinsics are **normalised** 3x3 matrices [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]: ``u = fx * x / z + cx`` with
  u in [0, 1] across the image width (pixel column = u * W), v likewise down the height. Normalising by the image
  size makes the same camera valid at every resolution. The default focal length 4.2647 is EG3D's.
* The model's camera condition c_c is the 25-d vector: 16 extrinsic values then 9 intrinsic values, row-major.
* The **input view** is the camera the input portrait is seen from: frontal (azimuth 0, elevation 0), distance 2.7,
  default intrinsics (``input_camera``). Orbit presets start there and move away from it (the paper's trajectories run
  "between the input and target viewpoints"), so the first frame shows the portrait as given.
"""

from __future__ import annotations

import numpy as np

DEFAULT_DISTANCE = 2.7
DEFAULT_FOCAL = 4.2647
DEFAULT_FOV = float(np.degrees(2.0 * np.arctan(0.5 / DEFAULT_FOCAL)))  # ~13.37 degrees
CAMERA_VECTOR_DIM = 25
INPUT_AZIMUTH, INPUT_ELEVATION = 0.0, 0.0  # the input view, in degrees (see ``input_camera``)

# A proper rotation satisfies R R^T = I and det R = +1; this is the slack allowed for float32 round trips.
_ROTATION_TOL = 1e-3


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World-to-camera extrinsics of a camera at ``eye`` looking at ``target`` with world ``up`` pointing up."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    if np.linalg.norm(forward) < 1e-9:
        raise ValueError("look_at: the camera sits on its target; move it away from the head.")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("look_at: the viewing direction is parallel to 'up' (camera straight above or below).")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)  # OpenCV's y axis points down the image: x = right, y = down, z = forward
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = rotation
    extrinsic[:3, 3] = -rotation @ eye
    return extrinsic


def orbit_eye(azimuth_deg, elevation_deg, distance=DEFAULT_DISTANCE) -> np.ndarray:
    """Camera centre on a sphere around the head. Azimuth turns about +y (0 = frontal, positive toward +x);
    positive elevation puts the camera above the head."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return distance * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])


def intrinsics_from_fov(fov_deg: float = DEFAULT_FOV) -> np.ndarray:
    """Normalised intrinsics of a square pinhole camera with the given full field of view."""
    if not np.isfinite(fov_deg) or not 1.0 <= fov_deg <= 120.0:
        raise ValueError(f"Field of view must be between 1 and 120 degrees, got {fov_deg}.")
    focal = 0.5 / np.tan(np.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]])


def default_intrinsics() -> np.ndarray:
    return np.array([[DEFAULT_FOCAL, 0.0, 0.5], [0.0, DEFAULT_FOCAL, 0.5], [0.0, 0.0, 1.0]])


def input_camera() -> tuple[np.ndarray, np.ndarray]:
    """(extrinsic 4x4, intrinsic 3x3) of the input view: the frontal camera the input portrait is seen from."""
    return look_at(orbit_eye(INPUT_AZIMUTH, INPUT_ELEVATION, DEFAULT_DISTANCE)), default_intrinsics()


def validate_extrinsic(extrinsic, name: str = "extrinsic") -> np.ndarray:
    """Check a 4x4 world-to-camera matrix: finite, bottom row (0, 0, 0, 1), a proper rotation block."""
    m = np.asarray(extrinsic, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=_ROTATION_TOL):
        raise ValueError(f"{name} must have (0, 0, 0, 1) as its last row, got {m[3].tolist()}.")
    r = m[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=_ROTATION_TOL) or abs(np.linalg.det(r) - 1.0) > _ROTATION_TOL:
        raise ValueError(f"{name}'s upper-left 3x3 block is not a rotation (orthonormal with determinant +1).")
    return m


def validate_intrinsic(intrinsic, name: str = "intrinsic") -> np.ndarray:
    """Check a normalised 3x3 intrinsic matrix: finite, positive focal lengths, bottom row (0, 0, 1)."""
    k = np.asarray(intrinsic, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"{name} must be a 3x3 matrix, got shape {k.shape}.")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if not np.allclose(k[2], [0.0, 0.0, 1.0], atol=1e-6) or k[1, 0] != 0.0:
        raise ValueError(f"{name} must look like [[fx, s, cx], [0, fy, cy], [0, 0, 1]].")
    if k[0, 0] <= 0.0 or k[1, 1] <= 0.0:
        raise ValueError(f"{name} needs positive focal lengths, got fx={k[0, 0]}, fy={k[1, 1]}.")
    return k


def camera_center(extrinsic) -> np.ndarray:
    """World position of the camera: C = -R^T t."""
    m = np.asarray(extrinsic, dtype=np.float64)
    return -np.einsum("...ji,...j->...i", m[..., :3, :3], m[..., :3, 3])


def project(points, extrinsic, intrinsic):
    """Project world points (N, 3) to normalised image coordinates (N, 2) and camera depth (N,)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    m, k = np.asarray(extrinsic, dtype=np.float64), np.asarray(intrinsic, dtype=np.float64)
    cam = points @ m[:3, :3].T + m[:3, 3]
    depth = cam[:, 2]
    uv = (cam @ k.T)[:, :2] / depth[:, None]
    return uv, depth


def camera_vector(extrinsic, intrinsic) -> np.ndarray:
    """The 25-d camera condition c_c: flattened 4x4 extrinsics followed by flattened 3x3 intrinsics."""
    m, k = np.asarray(extrinsic, dtype=np.float32), np.asarray(intrinsic, dtype=np.float32)
    return np.concatenate([m.reshape(*m.shape[:-2], 16), k.reshape(*k.shape[:-2], 9)], axis=-1)


def __getattr__(name):
    # CameraPath lives in its own file (one idea each) but belongs to this module's public surface. It is resolved
    # lazily (PEP 562) because camera_path.py imports the helpers above: an eager import here would be a cycle that
    # fails whenever camera_path is imported first.
    if name == "CameraPath":
        from .camera_path import CameraPath

        return CameraPath
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
