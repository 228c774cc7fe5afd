"""Per-frame face state: the mouth, the eyelids and the rigid head pose.

Everything that changes from frame to frame lives here, so a clip is one `HeadIdentity` plus one `FaceState`.
All fields are arrays over frames, which lets the renderer draw a whole clip in one vectorised call.
"""

from dataclasses import dataclass, fields

import numpy as np

# Column order of the mouth ground truth in a dataset item.
MOUTH_KEYS = ("jaw_open", "rounding", "spreading", "closure")
# Column order of the pose ground truth: degrees, then world units.
POSE_KEYS = ("yaw", "pitch", "roll", "tx", "ty", "tz")


@dataclass
class FaceState:
    """State of a face over F frames.

    Mouth values are in [0, 1]: `jaw_open` (0 closed teeth, 1 wide open), `rounding` (lips pushed forward and narrowed,
    as in /u/), `spreading` (lips stretched sideways, as in /i/), `closure` (lips pressed together, as in /p b m/).
    `blink` is 0 for an open eye and 1 for a closed one. `pose` is (F, 6): yaw, pitch, roll in degrees (conventions in
    `head_rotation`) then the translation tx, ty, tz in world units. `gaze` is (F, 2): horizontal and vertical eye
    rotation in degrees.
    """

    jaw_open: np.ndarray
    rounding: np.ndarray
    spreading: np.ndarray
    closure: np.ndarray
    blink: np.ndarray
    pose: np.ndarray
    gaze: np.ndarray

    def __post_init__(self):
        n = len(self.jaw_open)
        for f in fields(self):
            value = np.asarray(getattr(self, f.name), dtype=np.float32)
            if len(value) != n:
                raise ValueError(
                    f"FaceState.{f.name} has {len(value)} frames but jaw_open has {n}; "
                    "give every field one row per frame."
                )
            setattr(self, f.name, value)
        if self.pose.shape != (n, 6):
            raise ValueError(
                f"FaceState.pose must be (frames, 6) = yaw, pitch, roll, tx, ty, tz; got {self.pose.shape}."
            )
        if self.gaze.shape != (n, 2):
            raise ValueError(f"FaceState.gaze must be (frames, 2); got {self.gaze.shape}.")

    def __len__(self) -> int:
        return len(self.jaw_open)

    @classmethod
    def neutral(cls, num_frames: int = 1) -> "FaceState":
        """A still, frontal face with the mouth relaxed-closed and the eyes open."""
        z = lambda *shape: np.zeros((num_frames,) + shape, np.float32)  # noqa: E731 - separate arrays, safe to edit
        return cls(z(), z(), z(), z(), z(), z(6), z(2))

    def mouth(self) -> np.ndarray:
        """(F, 4) mouth ground truth in `MOUTH_KEYS` order."""
        return np.stack([self.jaw_open, self.rounding, self.spreading, self.closure], axis=1)

    def frame(self, i: int) -> "FaceState":
        return FaceState(*(getattr(self, f.name)[i : i + 1] for f in fields(self)))


def head_rotation(pose: np.ndarray) -> np.ndarray:
    """(F, 3, 3) head rotations from (F, >=3) yaw/pitch/roll degrees, applied as R = R_yaw @ R_pitch @ R_roll.

    Positive yaw turns the face toward +x, positive pitch raises the chin (face toward +y), positive roll tilts the
    top of the head toward -x (the left edge of a frontal camera's image).
    """
    yaw, pitch, roll = (np.deg2rad(pose[:, i]).astype(np.float32) for i in range(3))
    return rot_y(yaw) @ rot_x(-pitch) @ rot_z(roll)


def rot_x(a) -> np.ndarray:
    a = np.atleast_1d(np.asarray(a, np.float32))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(-1, 3, 3)


def rot_y(a) -> np.ndarray:
    a = np.atleast_1d(np.asarray(a, np.float32))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(-1, 3, 3)


def rot_z(a) -> np.ndarray:
    a = np.atleast_1d(np.asarray(a, np.float32))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(-1, 3, 3)
