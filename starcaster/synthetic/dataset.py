"""Seeded synthetic talking-head clips and a PyTorch dataset over them.

A clip is fully determined by (identity id, clip seed); a dataset item by (split, seed, index). Train and held-out
evaluation identities come from disjoint id ranges, so no evaluation head is ever trained on. Clips are rendered on
the fly (a few hundred frames per second at 128 px on one core) and can be cached to disk as .npz.
"""

import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..conditioning.camera import camera_vector, default_intrinsics, look_at, orbit_eye
from . import espeak
from .expression import FaceState
from .head import HeadIdentity, build_scene, identity_vector
from .landmarks import mouth_pixels
from .motion import blinks, gaze, head_motion
from .phonemes import VISEMES, Utterance, frame_average, frame_visemes, mouth_control, random_utterance
from .renderer import render
from .speech import SAMPLE_RATE, Voice, synthesize
from .trajectories import orbit_camera, talk_camera

TRAIN_IDS = range(0, 100_000)
EVAL_IDS = range(1_000_000, 1_001_000)
# A third identity range for development decisions (recipe settings, which checkpoint), so that the eval split's
# numbers stay untouched by any choice made while building the model.
VAL_IDS = range(2_000_000, 2_001_000)
SPLIT_IDS = {"train": TRAIN_IDS, "eval": EVAL_IDS, "val": VAL_IDS}
SPLIT_TAG = {"train": 0, "eval": 1, "val": 2}  # the clip-seed stream of each split: held-out utterances and cameras
MODES = ("talk", "orbit", "mixed")
SPEECH = ("formant", "espeak", "auto")
FPS = 25.0


@dataclass
class SyntheticClip:
    """One rendered clip with its ground truth. F frames of H x W pixels, S = F / fps * sample_rate samples."""

    frames: np.ndarray  # uint8 (F, H, W, 3)
    audio: np.ndarray  # float32 (S,)
    sample_rate: int
    fps: float
    cameras: np.ndarray  # float32 (F, 25), `camera_vector`
    extrinsics: np.ndarray  # float32 (F, 4, 4) world-to-camera
    intrinsics: np.ndarray  # float32 (F, 3, 3) normalised
    identity: np.ndarray  # float32 (IDENTITY_DIM,)
    identity_id: int
    mouth: np.ndarray  # float32 (F, 4): jaw_open, rounding, spreading, closure
    pose: np.ndarray  # float32 (F, 6): yaw, pitch, roll (deg), tx, ty, tz
    blink: np.ndarray  # float32 (F,)
    visemes: np.ndarray  # int64 (F,), indices into `phonemes.VISEMES`
    reference: np.ndarray  # uint8 (H, W, 3): frontal neutral portrait, same identity and light
    mouth_xy: np.ndarray  # float32 (F, 2): the true mouth centre in pixels (column, row), for mouth crops
    text: str
    phonemes: list  # phoneme names, timed by `phoneme_durations`
    phoneme_durations: np.ndarray  # float32 seconds
    mode: str = "talk"
    trajectory: str = "static"

    def to_tensors(self) -> dict:
        """A dict that `torch.utils.data.default_collate` batches (strings become lists)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and f.name != "phoneme_durations":
                out[f.name] = torch.from_numpy(np.ascontiguousarray(value))
            elif f.name == "phonemes":
                out[f.name] = " ".join(value)
            elif f.name != "phoneme_durations":
                out[f.name] = value
        return out


def _light(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(-0.7, 0.7), rng.uniform(0.15, 0.8), rng.uniform(0.5, 1.0)], np.float32)


def render_reference(
    ident: HeadIdentity, size: int = 128, light=(-0.45, 0.55, 0.75), supersample: int = 1
) -> np.ndarray:
    """The frontal, neutral portrait of a head: what the model gets as its reference image."""
    scene = build_scene(ident, FaceState.neutral(1), light=light)
    return render(scene, look_at(orbit_eye(0.0, 0.0))[None], default_intrinsics(), size=size, supersample=supersample)[
        0
    ]


def make_clip(
    identity_id: int,
    seed: int = 0,
    num_frames: int = 18,
    size: int = 128,
    mode: str = "talk",
    fps: float = FPS,
    sample_rate: int = SAMPLE_RATE,
    supersample: int = 1,
    utterance: Utterance | None = None,
    speech: str = "formant",
) -> SyntheticClip:
    """Render one clip. Deterministic in (identity_id, seed, and the other arguments).

    mode "talk": speech-driven mouth, head motion, blinks and a near-frontal camera. "orbit": a still, silent head seen
    along a view-synthesis trajectory (the paper's spatial data). "mixed": talk, orbit, or talking under a moving
    camera.
    speech "formant" uses the built-in synthesiser; "espeak" real eSpeak NG speech (must be installed); "auto" uses
    eSpeak for about a third of talking clips when it is installed.
    """
    if speech not in SPEECH:
        raise ValueError(f"speech must be one of {SPEECH}, got {speech!r}.")
    if speech == "espeak" and not espeak.available():
        raise ValueError("speech='espeak' needs eSpeak NG: `apt-get install espeak-ng`, or use speech='formant'.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if num_frames < 1 or size < 8:
        raise ValueError(f"need num_frames >= 1 and size >= 8 (got {num_frames}, {size}).")
    rng = np.random.default_rng([int(identity_id), int(seed), 0xC11F])
    vector = identity_vector(identity_id)
    ident = HeadIdentity.from_vector(vector)
    seconds = num_frames / fps
    if mode == "mixed":
        mode = str(rng.choice(["talk", "orbit", "talk_orbit"], p=[0.4, 0.4, 0.2]))
    talking = mode in ("talk", "talk_orbit")
    light = _light(rng)

    if talking:
        use_espeak = utterance is None and (
            speech == "espeak" or (speech == "auto" and rng.random() < 1 / 3 and espeak.available())
        )
        if use_espeak:
            audio, utt = espeak.speak_identity(rng, vector, seconds, sample_rate)
        else:
            utt = (
                utterance.fit(seconds)
                if utterance is not None
                else random_utterance(rng, seconds, pause=rng.uniform(0.0, 0.3))
            )
            audio = synthesize(utt, Voice.from_identity(vector), sample_rate=sample_rate, seed=int(rng.integers(2**31)))
        mouth = frame_average(mouth_control(utt), num_frames, fps)
        energy = np.sqrt(np.square(audio[: len(audio) // num_frames * num_frames]).reshape(num_frames, -1).mean(1))
        pose = head_motion(rng, num_frames, fps, speech_energy=energy)
        state = FaceState(*mouth.T, blink=blinks(rng, num_frames, fps), pose=pose, gaze=gaze(rng, num_frames, fps))
    else:  # a still head, as the paper's static 3D heads
        utt = Utterance(["sil"], [seconds], "")
        audio = np.zeros(int(round(seconds * sample_rate)), np.float32)
        state = FaceState.neutral(num_frames)
        state.pose[:] = np.concatenate([rng.normal(0, 3.0, 3), np.zeros(3)])
    path, trajectory = talk_camera(rng, num_frames, fps) if mode == "talk" else orbit_camera(rng, num_frames, fps)

    extrinsics, intrinsics = path.extrinsics.astype(np.float32), path.intrinsics.astype(np.float32)
    scene = build_scene(ident, state, light=light)
    frames = render(scene, extrinsics, intrinsics, size=size, supersample=supersample)
    return SyntheticClip(
        frames=frames,
        audio=audio,
        sample_rate=sample_rate,
        fps=fps,
        cameras=camera_vector(extrinsics, intrinsics),
        extrinsics=extrinsics,
        intrinsics=intrinsics,
        identity=vector,
        identity_id=int(identity_id),
        mouth=state.mouth().astype(np.float32),
        pose=state.pose,
        blink=state.blink,
        visemes=frame_visemes(utt, num_frames, fps),
        reference=render_reference(ident, size, light, supersample),
        mouth_xy=mouth_pixels(scene, extrinsics, intrinsics, size),
        text=utt.text,
        phonemes=list(utt.phonemes),
        phoneme_durations=utt.durations.astype(np.float32),
        mode="talk" if mode == "talk" else ("orbit" if mode == "orbit" else "talk+orbit"),
        trajectory=trajectory,
    )


def save_clip(clip: SyntheticClip, path) -> None:
    """Write a clip as an uncompressed .npz atomically (safe with several data-loader workers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: np.asarray(v) for k, v in asdict(clip).items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **data)
    os.replace(tmp, path)


def load_clip(path) -> SyntheticClip:
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    scalars = {"sample_rate": int, "fps": float, "identity_id": int, "text": str, "mode": str, "trajectory": str}
    for k, cast in scalars.items():
        d[k] = cast(d[k])
    d["phonemes"] = [str(p) for p in d["phonemes"]]
    return SyntheticClip(**d)


class SyntheticTalkingHeads(torch.utils.data.Dataset):
    """Clips from the synthetic world. Item i is deterministic given (split, seed, i).

    split "train" draws identities from `TRAIN_IDS`, "eval" cycles through `EVAL_IDS` and "val" (for development
    decisions) through `VAL_IDS`, all disjoint. Items are dicts
    from `SyntheticClip.to_tensors`; `clip(i)` gives the dataclass. With `cache_dir`, rendered clips are stored there
    and read back on the next epoch.
    """

    def __init__(
        self,
        split: str = "train",
        num_frames: int = 18,
        size: int = 128,
        mode: str = "talk",
        seed: int = 0,
        cache_dir=None,
        length: int | None = None,
        supersample: int = 1,
        speech: str = "formant",
    ):
        if split not in SPLIT_IDS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_IDS)}, got {split!r}.")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        self.split, self.num_frames, self.size, self.mode, self.seed = split, num_frames, size, mode, seed
        self.ids = SPLIT_IDS[split]
        self.length = int(length if length is not None else (1_000_000 if split == "train" else 10 * len(self.ids)))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.supersample = supersample
        if speech not in SPEECH:
            raise ValueError(f"speech must be one of {SPEECH}, got {speech!r}.")
        self.speech = speech

    def __len__(self) -> int:
        return self.length

    def identity_of(self, index: int) -> int:
        """The identity id item `index` shows (cheap: no rendering)."""
        if self.split != "train":  # held-out splits cycle through their identities
            return self.ids[index % len(self.ids)]
        rng = np.random.default_rng([SPLIT_TAG["train"], self.seed, int(index)])
        return self.ids[int(rng.integers(len(self.ids)))]

    def clip(self, index: int) -> SyntheticClip:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} clips.")
        config = f"v2-{self.mode}-{self.speech}-f{self.num_frames}-p{self.size}x{self.supersample}"
        key = f"{self.split}-s{self.seed}-{config}-{index}.npz"
        if self.cache_dir is not None and (self.cache_dir / key).exists():
            return load_clip(self.cache_dir / key)
        clip_seed = int(
            np.random.default_rng([self.seed, int(index), SPLIT_TAG[self.split]]).integers(2**31)
        )
        clip = make_clip(
            self.identity_of(index),
            clip_seed,
            num_frames=self.num_frames,
            size=self.size,
            mode=self.mode,
            supersample=self.supersample,
            speech=self.speech,
        )
        if self.cache_dir is not None:
            save_clip(clip, self.cache_dir / key)
        return clip

    def __getitem__(self, index: int) -> dict:
        return self.clip(index).to_tensors()


__all__ = [
    "SyntheticClip",
    "SyntheticTalkingHeads",
    "make_clip",
    "render_reference",
    "TRAIN_IDS",
    "EVAL_IDS",
    "VAL_IDS",
    "VISEMES",
]
