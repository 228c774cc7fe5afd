"""``python -m starcaster eval``: the synthetic benchmark, models and baselines in one run (issue #10).

Held-out identities (``EVAL_IDS``), held-out utterances and held-out camera trajectories (the eval split draws its
own clip seeds); the same K clips for every model given the same seed. Rows: ground truth (each evaluator's
ceiling), copy-the-reference, for orbit a warp of the reference through a head-sized ellipsoid, then each model.
Every number is a mean over clips with a 95% bootstrap interval; each clip's own value is kept beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from ..conditioning.audio import MelAudioEncoder, clip_audio_features
from ..conditioning.camera_path import CameraPath
from ..synthetic.dataset import SyntheticTalkingHeads
from ..synthetic.renderer import camera_rays
from . import metrics

TASKS = ("portrait", "identity", "orbit")
HEAD_PROXY = (np.array([0.0, 0.0, -0.02]), np.array([0.17, 0.22, 0.19]))  # world units: a head-sized ellipsoid


def eval_clips(task: str, count: int, seed: int, num_frames: int, size: int = 128, split: str = "eval",
               first: int = 0) -> list:
    """Clips ``first .. first + count - 1`` of the split (item i does not depend on how many are drawn)."""
    mode = "orbit" if task == "orbit" else "talk"
    data = SyntheticTalkingHeads(split, num_frames=num_frames, size=size, mode=mode, seed=seed, length=first + count)
    return [data.clip(i) for i in range(first, first + count)]


def warp_reference(reference: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """The frontal reference seen from other cameras through an ellipsoid proxy of the head (a geometric baseline)."""
    from ..autoregression import input_camera_vector

    size = reference.shape[0]
    front = input_camera_vector()
    front_ext, front_int = front[:16].reshape(4, 4), front[16:].reshape(3, 3)
    origin, directions = camera_rays(extrinsics, intrinsics, size)
    centre, radii = HEAD_PROXY
    o = (origin[:, None, :] - centre) / radii
    d = directions / radii
    a, b, c = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - 1
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    points = origin[:, None, :] + t[..., None] * directions  # (F, P, 3) on the proxy
    cam = points @ front_ext[:3, :3].T + front_ext[:3, 3]
    uv = cam @ front_int.T
    u, v = uv[..., 0] / uv[..., 2] * size - 0.5, uv[..., 1] / uv[..., 2] * size - 0.5
    grid = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for f in range(len(extrinsics)):
        hit = (disc[f] > 0).reshape(size, size)
        map_x = np.where(hit, u[f].reshape(size, size), grid[1]).astype(np.float32)
        map_y = np.where(hit, v[f].reshape(size, size), grid[0]).astype(np.float32)
        out.append(cv2.remap(reference, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def generate(pipe, task: str, clip, steps: int, guidance: float, seed: int, sampler: str = "quality",
             fast_steps: int | None = None) -> np.ndarray:
    """One clip's video. ``sampler="fast"`` runs ``fast_steps`` steps (default the model's ``settings.fast_steps``),
    guidance distilled in: ``steps`` and ``guidance`` are the quality sampler's."""
    kwargs = dict(task=task, image=clip.reference, already_aligned=True, seed=seed, num_frames=len(clip.frames),
                  sampler=sampler)
    if sampler == "quality":
        kwargs.update(steps=steps, guidance=guidance)
    elif fast_steps is not None:
        kwargs["steps"] = fast_steps
    if task == "orbit":
        kwargs["camera"] = CameraPath(clip.extrinsics, clip.intrinsics, fps=clip.fps)
    else:
        kwargs["audio"] = (clip.audio, clip.sample_rate)
    return pipe.generate(**kwargs).frames


def clip_metrics(task: str, frames: np.ndarray, clip, evaluators: dict, features: torch.Tensor | None,
                 segment_frames: int = 16) -> dict:
    """Every metric of one clip (generated or baseline ``frames`` against the clip's ground truth)."""
    out = {}
    similarity = metrics.identity_similarity(evaluators["identity"], frames, clip.reference)
    out["identity"] = float(similarity.mean())
    segments = [similarity[i:i + segment_frames].mean() for i in range(0, len(similarity), segment_frames)]
    out["identity_first_segment"], out["identity_last_segment"] = float(segments[0]), float(segments[-1])
    if task == "orbit":
        out |= metrics.view_scores(frames, clip.frames, clip.mouth_xy)
        out["view_error"] = metrics.view_error(evaluators["pose"], frames, clip.frames)
        return out
    opening = metrics.mouth_opening(evaluators["mouth"], frames, clip.mouth_xy)
    out["lip_r"], out["lip_offset"] = metrics.lagged_correlation(opening, clip.mouth[:, 0])
    out["lse_d"], out["lse_c"] = metrics.sync_scores(evaluators["sync"], frames, clip.mouth_xy, features)
    out["pose_std"] = metrics.pose_std(evaluators["pose"], frames)
    if len(frames) >= 10 * segment_frames:  # long clips: motion early vs late (freezing shows as a collapse)
        five = 5 * segment_frames
        out["pose_std_first5"] = metrics.pose_std(evaluators["pose"], frames[:five])
        out["pose_std_last5"] = metrics.pose_std(evaluators["pose"], frames[-five:])
        # The long floors are per clip, so they are taken per clip (paired), not as a ratio of two means.
        out["identity_drift"] = out["identity_last_segment"] - out["identity_first_segment"]
        # Below a thousandth of a degree the head is still (a copied portrait reads ~1e-6): no ratio, not 0/0 noise.
        still = out["pose_std_first5"] < 1e-3
        out["pose_std_ratio"] = None if still else out["pose_std_last5"] / out["pose_std_first5"]
    return out


def evaluate(models: dict, evaluators: dict, tasks=TASKS, clips: int = 20, seed: int = 0, steps: int = 25,
             guidance: float = 3.0, segments: int = 2, strips: Path | None = None, progress=None,
             samplers: dict | None = None, split: str = "eval", first_clip: int = 0) -> dict:
    """{row: {task: {metric: bootstrap}}} for the baselines and every pipeline in ``models`` (name -> pipeline),
    each sampled with ``samplers[name]``: "quality" (the default), "fast", or ("fast", steps) for the fast sampler
    at other than its default steps. ``split="val"`` draws the clips from the
    development identities instead: choices made while building a model are made there, never on "eval"."""
    samplers = samplers or {}
    encoder = MelAudioEncoder()
    results: dict = {}
    for task in tasks:
        items = eval_clips(task, clips, seed, segments * 16, split=split, first=first_clip)
        per_row: dict = {}
        for index, clip in enumerate(items, start=first_clip):
            features = None if task == "orbit" else clip_audio_features(encoder, clip.audio, len(clip.frames), clip.fps)
            rows = {"ground truth": clip.frames, "copy reference": np.repeat(clip.reference[None], len(clip.frames), 0)}
            if task == "orbit":
                rows["warp (ellipsoid proxy)"] = warp_reference(clip.reference, clip.extrinsics, clip.intrinsics)
            for name, pipe in models.items():
                spec = samplers.get(name, "quality")
                sampler, fast_steps = (spec, None) if isinstance(spec, str) else spec
                rows[name] = generate(pipe, task, clip, steps, guidance, seed + index, sampler, fast_steps)
                if strips is not None and index == first_clip:
                    _strip(strips / f"{task}-{_slug(name)}.png", clip.frames, rows[name])
            for name, frames in rows.items():
                per_row.setdefault(name, []).append(clip_metrics(task, frames, clip, evaluators, features))
            if progress is not None:
                progress(task, index + 1 - first_clip, clips)
        for name, values in per_row.items():
            keys = values[0].keys()
            # Each clip's value is kept beside the interval: rows are sampled on the same clips, so two rows can be
            # compared clip by clip (a paired difference is much tighter than two overlapping intervals).
            results.setdefault(name, {})[task] = {
                k: metrics.bootstrap([v[k] for v in values], seed=seed) | {"clips": [_plain(v[k]) for v in values]}
                for k in keys
            }
    return results


def format_markdown(results: dict) -> str:
    lines = []
    for task in TASKS:
        rows = [(name, r[task]) for name, r in results.items() if task in r]
        if not rows:
            continue
        keys = list(rows[0][1].keys())
        lines += [f"**{task}**", "", "| row | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for name, values in rows:
            cells = [_cell(values[k]) for k in keys]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plain(value):
    """A per-clip value as JSON keeps it: a float, or None where the metric is undefined (NaN, no motion)."""
    return None if value is None or not np.isfinite(value) else float(value)


def _cell(ci: dict) -> str:
    if ci["mean"] is None:
        return "-"
    return f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _strip(path: Path, truth: np.ndarray, generated: np.ndarray, every: int = 4) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    top, bottom = np.concatenate(list(truth[::every]), 1), np.concatenate(list(generated[::every]), 1)
    Image.fromarray(np.concatenate([top, bottom], 0)).save(path)


def save(results: dict, json_path: str | None, markdown_path: str | None, meta: dict) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    if markdown_path:
        Path(markdown_path).write_text(format_markdown(results) + "\n")
