"""Per-frame camera trajectories: presets, keyframes and JSON (conventions in ``camera.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation, Slerp

from .camera import (
    DEFAULT_DISTANCE,
    DEFAULT_FOV,
    INPUT_AZIMUTH,
    INPUT_ELEVATION,
    camera_center,
    camera_vector,
    intrinsics_from_fov,
    look_at,
    orbit_eye,
    validate_extrinsic,
    validate_intrinsic,
)

JSON_FORMAT = "starcaster.camera_path/1"
MAX_FRAMES = 25 * 60 * 10  # ten minutes at 25 fps: longer paths are almost surely a mistake (or an attack)
_KEYFRAME_KEYS = {"frame", "azimuth", "elevation", "distance", "fov"}
PRESETS = ("orbit", "sweep", "zoom", "oscillation", "static")  # what the app and the CLI offer (`CameraPath.preset`)
PRESET_EASE_IN = 1.0  # seconds the moving presets take to grow out of the input view (at most a quarter of the path)


def _smooth(t):
    """Cosine ease in/out on [0, 1]: presets start and stop without a jolt."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


def _grow(start, values, t, ease_in):
    """``values`` (per frame) grown out of ``start`` over the first ``ease_in`` seconds of ``t``: zero offset and zero
    slope at t = 0, so a path leaves its first camera at rest; unchanged from ``ease_in`` on (or when it is 0)."""
    if ease_in <= 0:
        return values
    return start + _smooth(t / ease_in) * (values - start)


@dataclass
class CameraPath:
    """A camera per video frame: world-to-camera ``extrinsics`` (F, 4, 4) and normalised ``intrinsics`` (F, 3, 3).

    ``keyframes`` is kept when the path was drawn from keyframes, so editors can show and edit them again.
    """

    extrinsics: np.ndarray
    intrinsics: np.ndarray
    fps: float = 25.0
    keyframes: list[dict] | None = field(default=None)

    def __post_init__(self):
        self.extrinsics = np.asarray(self.extrinsics, dtype=np.float64)
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float64)
        if self.extrinsics.ndim != 3 or self.extrinsics.shape[1:] != (4, 4):
            raise ValueError(f"Camera path extrinsics must have shape (F, 4, 4), got {self.extrinsics.shape}.")
        if self.intrinsics.shape != (len(self.extrinsics), 3, 3):
            raise ValueError(
                f"Camera path needs one 3x3 intrinsic per frame: {len(self.extrinsics)} extrinsics but intrinsics "
                f"of shape {self.intrinsics.shape}."
            )
        if not 1 <= len(self.extrinsics) <= MAX_FRAMES:
            raise ValueError(f"A camera path needs between 1 and {MAX_FRAMES} frames, got {len(self.extrinsics)}.")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"Camera path fps must be positive, got {self.fps}.")
        for i, (m, k) in enumerate(zip(self.extrinsics, self.intrinsics)):
            validate_extrinsic(m, name=f"frame {i} extrinsic")
            validate_intrinsic(k, name=f"frame {i} intrinsic")

    def __len__(self) -> int:
        return len(self.extrinsics)

    # -- what the model and the editors read ---------------------------------------------------------------------

    def vectors(self) -> np.ndarray:
        """(F, 25) camera conditions c_c, float32."""
        return camera_vector(self.extrinsics, self.intrinsics)

    def positions(self) -> np.ndarray:
        """(F, 3) camera centres in world coordinates."""
        return camera_center(self.extrinsics)

    def resample(self, num_frames: int) -> "CameraPath":
        """The same trajectory timed over ``num_frames`` frames (e.g. to match the audio's length)."""
        if num_frames == len(self):
            return self
        if self.keyframes is not None:
            scale = (num_frames - 1) / max(len(self) - 1, 1)
            keys = [{**k, "frame": round(k["frame"] * scale)} for k in self.keyframes]
            return CameraPath.from_keyframes(_dedupe_frames(keys), num_frames, fps=self.fps)
        t_old = np.linspace(0.0, 1.0, len(self))
        t_new = np.linspace(0.0, 1.0, num_frames)
        return _interpolate_matrices(t_old, self.extrinsics, self.intrinsics, t_new, self.fps)

    # -- constructors ----------------------------------------------------------------------------------------------

    @classmethod
    def from_spherical(cls, azimuth, elevation, distance=DEFAULT_DISTANCE, fov=DEFAULT_FOV, fps=25.0, keyframes=None):
        """Cameras looking at the head from per-frame spherical coordinates (degrees)."""
        azimuth = np.atleast_1d(np.asarray(azimuth, dtype=np.float64))
        n = len(azimuth)
        elevation, distance, fov = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in (elevation, distance, fov))
        for name, values in (("azimuth", azimuth), ("elevation", elevation), ("distance", distance), ("fov", fov)):
            if not np.all(np.isfinite(values)):
                raise ValueError(f"Camera {name} contains NaN or infinite values.")
        if np.any(np.abs(elevation) >= 89.0):
            raise ValueError("Camera elevation must stay within (-89, 89) degrees: straight above/below is undefined.")
        if np.any(distance <= 0.3):
            raise ValueError("Camera distance must be larger than 0.3 (the head's radius); the default is 2.7.")
        extrinsics = np.stack([look_at(orbit_eye(a, e, d)) for a, e, d in zip(azimuth, elevation, distance)])
        intrinsics = np.stack([intrinsics_from_fov(f) for f in fov])
        return cls(extrinsics, intrinsics, fps=fps, keyframes=keyframes)

    @classmethod
    def preset(cls, name: str, num_frames: int, fps: float = 25.0, seed: int = 0) -> "CameraPath":
        """One of the named ``PRESETS`` as a user is offered it. Every preset starts at the input view
        (``camera.input_camera``: the portrait as given) and moves away from it smoothly, as the paper's trajectories
        run between the input and target viewpoints; ``seed`` picks the oscillation."""
        ease_in = min(PRESET_EASE_IN, 0.25 * num_frames / fps)
        if name == "orbit":
            return cls.orbit(num_frames, fps=fps, ease_in=ease_in)
        if name == "sweep":
            return cls.sweep(num_frames, fps=fps)
        if name == "zoom":
            return cls.zoom(num_frames, fps=fps)
        if name == "oscillation":
            return cls.oscillation(num_frames, seed=int(seed), fps=fps, ease_in=ease_in)
        if name == "static":
            return cls.static(num_frames, fps=fps)
        raise ValueError(f"Unknown camera preset {name!r}; choose one of {', '.join(PRESETS)}.")

    @classmethod
    def static(cls, num_frames, azimuth=INPUT_AZIMUTH, elevation=INPUT_ELEVATION, distance=DEFAULT_DISTANCE, fov=DEFAULT_FOV, fps=25.0):
        return cls.from_spherical(np.full(num_frames, float(azimuth)), elevation, distance, fov, fps)

    @classmethod
    def orbit(cls, num_frames, azimuth_range=(-60.0, 60.0), elevation=0.0, cycles=1.0,
              distance=DEFAULT_DISTANCE, fov=DEFAULT_FOV, fps=25.0, ease_in=0.0):
        """Swing around the head and back: a sine in azimuth (a smooth loop) starting at the centre of
        ``azimuth_range`` (with the defaults, the input view). With ``ease_in`` > 0 (seconds) the swing grows from
        zero over that time, so the camera starts at rest instead of at full speed."""
        t = np.arange(num_frames) / max(num_frames, 1)
        lo, hi = azimuth_range
        centre = 0.5 * (lo + hi)
        azimuth = _grow(centre, centre + 0.5 * (hi - lo) * np.sin(2 * np.pi * cycles * t), np.arange(num_frames) / fps,
                        ease_in)
        return cls.from_spherical(azimuth, elevation, distance, fov, fps)

    @classmethod
    def sweep(cls, num_frames, start=(INPUT_AZIMUTH, INPUT_ELEVATION), end=(60.0, 10.0), distance=DEFAULT_DISTANCE,
              fov=DEFAULT_FOV, fps=25.0):
        """Move once from ``start`` (by default the input view) to ``end`` (each (azimuth, elevation) in degrees),
        easing in and out."""
        s = _smooth(np.linspace(0.0, 1.0, num_frames))
        azimuth = start[0] + (end[0] - start[0]) * s
        elevation = start[1] + (end[1] - start[1]) * s
        return cls.from_spherical(azimuth, elevation, distance, fov, fps)

    @classmethod
    def zoom(cls, num_frames, distance_range=(DEFAULT_DISTANCE, 2.0), azimuth=INPUT_AZIMUTH, elevation=INPUT_ELEVATION,
             fov=DEFAULT_FOV, fps=25.0):
        """Dolly from ``distance_range[0]`` toward (or away from) the head and back, easing in and out."""
        s = np.sin(np.pi * np.linspace(0.0, 1.0, num_frames)) ** 2
        distance = distance_range[0] + (distance_range[1] - distance_range[0]) * s
        return cls.from_spherical(np.full(num_frames, float(azimuth)), elevation, distance, fov, fps)

    @classmethod
    def oscillation(cls, num_frames, seed=0, azimuth_span=140.0, elevation_span=70.0,
                    distance=DEFAULT_DISTANCE, fov=DEFAULT_FOV, fps=25.0, ease_in=0.0):
        """The paper's pseudo multi-view trajectories (Supp. A): smooth random oscillations over the frontal
        hemisphere, spanning ``azimuth_span`` x ``elevation_span`` degrees at a fixed distance.

        Each angle is a sum of two sinusoids of random low frequency and phase (one or two swings per 5 s clip),
        normalised so the path stays inside the span. With ``ease_in`` > 0 (seconds) the swings grow smoothly from
        zero over that time, so the path leaves the input view at rest (the training data uses raw windows: 0).
        """
        rng = np.random.default_rng(seed)
        t = np.arange(num_frames) / fps

        def wave(half_span):
            freqs = rng.uniform(0.1, 0.45, size=2)
            phases = rng.uniform(0, 2 * np.pi, size=2)
            weights = np.array([1.0, rng.uniform(0.2, 0.5)])
            w = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
            return half_span * w / weights.sum()

        azimuth = _grow(INPUT_AZIMUTH, wave(azimuth_span / 2), t, ease_in)
        elevation = _grow(INPUT_ELEVATION, wave(elevation_span / 2), t, ease_in)
        return cls.from_spherical(azimuth, elevation, distance, fov, fps)

    @classmethod
    def from_keyframes(cls, keyframes, num_frames, fps=25.0):
        """Interpolate spherical keyframes ``{"frame", "azimuth", "elevation", "distance"?, "fov"?}``.

        Angles, distance and field of view follow a monotone cubic (PCHIP: smooth, never overshoots a keyframe);
        every frame looks at the head, so the rotation follows the position.
        """
        keys = _check_keyframes(keyframes, num_frames)
        frames = np.array([k["frame"] for k in keys], dtype=np.float64)
        t = np.arange(num_frames, dtype=np.float64)

        def curve(name, default):
            values = np.array([k.get(name, default) for k in keys], dtype=np.float64)
            if len(keys) == 1:
                return np.full(num_frames, values[0])
            return PchipInterpolator(frames, values, extrapolate=False)(np.clip(t, frames[0], frames[-1]))

        return cls.from_spherical(
            curve("azimuth", 0.0), curve("elevation", 0.0), curve("distance", DEFAULT_DISTANCE),
            curve("fov", DEFAULT_FOV), fps=fps, keyframes=keys,
        )

    @classmethod
    def from_matrix_keyframes(cls, frames, extrinsics, intrinsics, num_frames, fps=25.0):
        """Interpolate keyframes given as matrices: rotations by slerp, centres and intrinsics linearly."""
        frames = np.asarray(frames, dtype=np.float64)
        if len(frames) < 1 or np.any(np.diff(frames) <= 0):
            raise ValueError("Keyframe frames must be strictly increasing.")
        for i, (m, k) in enumerate(zip(extrinsics, intrinsics)):
            validate_extrinsic(m, name=f"keyframe {i} extrinsic")
            validate_intrinsic(k, name=f"keyframe {i} intrinsic")
        t = np.clip(np.arange(num_frames, dtype=np.float64), frames[0], frames[-1])
        return _interpolate_matrices(frames, np.asarray(extrinsics), np.asarray(intrinsics), t, fps)

    # -- JSON ------------------------------------------------------------------------------------------------------

    def to_json(self) -> str:
        data = {
            "format": JSON_FORMAT,
            "fps": self.fps,
            "num_frames": len(self),
            "extrinsics": np.round(self.extrinsics, 8).tolist(),
            "intrinsics": np.round(self.intrinsics, 8).tolist(),
        }
        if self.keyframes is not None:
            data["keyframes"] = self.keyframes
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> "CameraPath":
        """Read a path written by :meth:`to_json`, or a keyframe-only file ``{"num_frames": N, "keyframes": [...]}``."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"The camera path is not valid JSON ({e}).") from None
        if not isinstance(data, dict):
            raise ValueError("A camera path JSON must be an object with 'extrinsics'/'intrinsics' or 'keyframes'.")
        fps = _number(data.get("fps", 25.0), "fps")
        if "extrinsics" in data:
            try:
                extrinsics = np.asarray(data["extrinsics"], dtype=np.float64)
                intrinsics = np.asarray(data.get("intrinsics"), dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError("Camera path 'extrinsics'/'intrinsics' must be lists of numeric matrices.") from None
            path = cls(extrinsics, intrinsics, fps=fps)
            if "keyframes" in data:
                path.keyframes = _check_keyframes(data["keyframes"], len(path))
            return path
        if "keyframes" in data:
            _check_keyframes(data["keyframes"], None)  # the keyframes' own mistakes (NaN...) first
            if "num_frames" not in data:
                raise ValueError("A keyframe camera path needs 'num_frames': how many frames the path lasts.")
            num_frames = int(_number(data["num_frames"], "num_frames"))
            return cls.from_keyframes(data["keyframes"], num_frames, fps=fps)
        raise ValueError("A camera path JSON needs either 'extrinsics' and 'intrinsics', or 'keyframes' and 'num_frames'.")


def _number(value, name) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        shown = "NaN (not a number)" if isinstance(value, float) and np.isnan(value) else repr(value)
        raise ValueError(f"Camera path '{name}' must be a finite number, got {shown}.")
    return float(value)


def _check_keyframes(keyframes, num_frames) -> list[dict]:
    """Checked, sorted keyframes; ``num_frames`` None checks the keyframes alone (not their frames' range)."""
    if num_frames is not None and (not isinstance(num_frames, (int, np.integer)) or not 1 <= num_frames <= MAX_FRAMES):
        raise ValueError(f"A camera path needs between 1 and {MAX_FRAMES} frames, got {num_frames!r}.")
    if not isinstance(keyframes, (list, tuple)) or not keyframes:
        raise ValueError("Keyframes must be a non-empty list of {frame, azimuth, elevation, distance, fov} objects.")
    keys = []
    for i, k in enumerate(keyframes):
        if not isinstance(k, dict) or not {"frame", "azimuth", "elevation"} <= set(k):
            raise ValueError(f"Keyframe {i} needs at least 'frame', 'azimuth' and 'elevation'.")
        unknown = set(k) - _KEYFRAME_KEYS
        if unknown:
            raise ValueError(f"Keyframe {i} has unknown fields {sorted(unknown)}; allowed: {sorted(_KEYFRAME_KEYS)}.")
        clean = {name: _number(v, f"keyframes[{i}].{name}") for name, v in k.items()}
        clean["frame"] = int(round(clean["frame"]))
        if num_frames is not None and not 0 <= clean["frame"] < num_frames:
            raise ValueError(f"Keyframe {i} is at frame {clean['frame']}, outside the path's 0..{num_frames - 1}.")
        keys.append(clean)
    keys.sort(key=lambda k: k["frame"])
    if len({k["frame"] for k in keys}) != len(keys):
        raise ValueError("Two keyframes share the same frame; give each keyframe its own frame number.")
    return keys


def _dedupe_frames(keys):
    seen, out = set(), []
    for k in keys:
        if k["frame"] not in seen:
            seen.add(k["frame"])
            out.append(k)
    return out


def _interpolate_matrices(t_keys, extrinsics, intrinsics, t, fps) -> CameraPath:
    """Rotations by slerp (never matrix lerp, which leaves SO(3)); centres and intrinsics linearly."""
    if len(t_keys) == 1:
        return CameraPath(np.repeat(extrinsics[:1], len(t), 0), np.repeat(intrinsics[:1], len(t), 0), fps=fps)
    rotations = Slerp(t_keys, Rotation.from_matrix(extrinsics[:, :3, :3]))(t).as_matrix()
    centres = np.stack([np.interp(t, t_keys, camera_center(extrinsics)[:, j]) for j in range(3)], axis=-1)
    out = np.tile(np.eye(4), (len(t), 1, 1))
    out[:, :3, :3] = rotations
    out[:, :3, 3] = -np.einsum("fij,fj->fi", rotations, centres)
    k = np.stack([np.interp(t, t_keys, intrinsics[:, i, j]) for i in range(3) for j in range(3)], -1)
    return CameraPath(out, k.reshape(-1, 3, 3), fps=fps)
