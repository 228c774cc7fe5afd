"""`python -m starcaster.synthetic {preview,bench,assets}`: look at the synthetic world, time it, make demo assets.

preview --out preview.mp4   several identities talking, each seen from a static, an oscillating and an orbiting
                            camera (a grid video with the first speaker's audio, plus a PNG contact sheet)
bench                       renderer frames/s and dataset clips/s on this machine (markdown table)
assets --dir assets         portraits (PNG, several views) and speech clips (WAV) for the demo
"""

import argparse
import time
import wave
from pathlib import Path

import numpy as np

from ..conditioning.camera import CameraPath, default_intrinsics, look_at, orbit_eye
from .dataset import EVAL_IDS, FPS, SyntheticTalkingHeads, render_reference
from .expression import FaceState
from .head import HeadIdentity, build_scene, identity_vector
from .motion import blinks, gaze, head_motion
from .phonemes import frame_average, mouth_control, random_utterance
from .renderer import render
from .speech import SAMPLE_RATE, Voice, synthesize


def _talking_state(rng, utt, num_frames):
    mouth = frame_average(mouth_control(utt), num_frames, FPS)
    return FaceState(
        *mouth.T,
        blink=blinks(rng, num_frames, FPS),
        pose=head_motion(rng, num_frames, FPS),
        gaze=gaze(rng, num_frames, FPS),
    )


def preview(out: str, identities: int = 4, seconds: float = 4.0, size: int = 128, seed: int = 0, supersample: int = 1):
    """Render the preview grid; rows are identities (held-out ones), columns static / oscillation / orbit."""
    from ..video import write_mp4

    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    utt = random_utterance(rng, seconds, pause=0.2)
    paths = [
        CameraPath.static(n, azimuth=0.0),
        CameraPath.oscillation(n, seed=seed),
        CameraPath.orbit(n, azimuth_range=(-70, 70), elevation=10.0),
    ]
    rows, audio = [], None
    for r in range(identities):
        identity_id = EVAL_IDS[r * 37 % len(EVAL_IDS)]
        ident = HeadIdentity.from_id(identity_id)
        if audio is None:
            audio = synthesize(utt, Voice.from_identity(identity_vector(identity_id)), seed=seed)
        scene = build_scene(ident, _talking_state(rng, utt, n))
        rows.append(
            np.concatenate(
                [render(scene, p.extrinsics, p.intrinsics, size=size, supersample=supersample) for p in paths], axis=2
            )
        )
    grid = np.concatenate(rows, axis=1)  # (F, rows*H, 3*W, 3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(out, grid, FPS, audio=audio, sample_rate=SAMPLE_RATE)
    sheet = np.concatenate(list(grid[:: max(n // 4, 1)][:4]), axis=1)
    _save_png(out.with_suffix(".png"), sheet)
    print(f"wrote {out} ({grid.shape[2]}x{grid.shape[1]}, {n} frames) and {out.with_suffix('.png')}; said: {utt.text}")


def bench(frames: int = 18, size: int = 128, clips: int = 8, repeats: int = 3):
    """Time the renderer alone and the whole dataset item (speech + motion + render + reference)."""
    rng = np.random.default_rng(0)
    utt = random_utterance(rng, frames / FPS)
    scene = build_scene(HeadIdentity.from_id(1), _talking_state(rng, utt, frames))
    path = CameraPath.oscillation(frames, seed=0)
    render(scene, path.extrinsics, path.intrinsics, size=size)  # warm-up
    rows = []
    for ss in (1, 2):
        t = time.perf_counter()
        for _ in range(repeats):
            render(scene, path.extrinsics, path.intrinsics, size=size, supersample=ss)
        fps = repeats * frames / (time.perf_counter() - t)
        rows.append((f"renderer, {size}x{size}, supersample {ss}", f"{fps:.0f} frames/s"))
    for mode in ("talk", "orbit", "mixed"):
        ds = SyntheticTalkingHeads("train", num_frames=frames, size=size, mode=mode, seed=1)
        t = time.perf_counter()
        for i in range(clips):
            ds[i]
        dt = (time.perf_counter() - t) / clips
        rows.append(
            (
                f"dataset item, mode {mode}, {frames} frames {size}x{size}",
                f"{1 / dt:.2f} clips/s = {frames / dt:.0f} frames/s",
            )
        )
    print("| what (1 process) | throughput |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")


def assets(directory: str = "assets", count: int = 4, size: int = 256, seconds: float = 4.0):
    """Demo portraits (frontal, plus a three-view strip) and speech clips of held-out identities."""
    root = Path(directory)
    for k in range(count):
        identity_id = EVAL_IDS[k * 101 % len(EVAL_IDS)]
        ident = HeadIdentity.from_id(identity_id)
        _save_png(root / "portraits" / f"synthetic_{identity_id}.png", render_reference(ident, size, supersample=2))
        views = np.stack([look_at(orbit_eye(az, el)) for az, el in ((-60, 10), (0, 0), (60, -10))])
        strip = render(
            build_scene(ident, FaceState.neutral(3)), views, default_intrinsics(), size=size // 2, supersample=2
        )
        _save_png(root / "portraits" / f"synthetic_{identity_id}_views.png", np.concatenate(list(strip), axis=1))
        utt = random_utterance(np.random.default_rng(k), seconds, pause=0.25)
        audio = synthesize(utt, Voice.from_identity(identity_vector(identity_id)), seed=k)
        _save_wav(root / "audio" / f"synthetic_speech_{k}.wav", audio)
        print(f"identity {identity_id}: portrait + views; speech {k}: {utt.text}")


def _save_png(path: Path, image: np.ndarray):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, optimize=True)


def _save_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m starcaster.synthetic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="render a grid video of identities x cameras")
    p.add_argument("--out", default="preview.mp4")
    p.add_argument("--identities", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--supersample", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bench", help="renderer fps and dataset throughput")
    b.add_argument("--frames", type=int, default=18)
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--clips", type=int, default=8)
    a = sub.add_parser("assets", help="write demo portraits and speech clips")
    a.add_argument("--dir", default="assets")
    a.add_argument("--count", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "preview":
        if args.identities < 1 or args.seconds <= 0:
            parser.error("--identities must be >= 1 and --seconds > 0")
        preview(args.out, args.identities, args.seconds, args.size, args.seed, args.supersample)
    elif args.command == "bench":
        bench(args.frames, args.size, args.clips)
    else:
        assets(args.dir, args.count)


if __name__ == "__main__":
    main()
