"""Spatio-temporal autoregression (paper §3.2, §3.4): the parts that the sampler and the trainer share.

A clip is made of segments of N frames. Each segment is denoised with n clean context latents prepended on the frame
axis (the temporal layers see N + n frames; the context outputs are discarded) while a reference bank, written once
per segment by the frozen reference UNet, is read by every denoising step. The parts, each used by both
`STARCasterPipeline.stream` and the training stages (self-forcing rolls segments out with `denoise_segment`):

* `bank_references` / `plan_segment`: which latents form the reference and the context, per task and segment;
* `segment_conditions`: a segment's ID, audio and camera tokens for a batch;
* `drop_streams`: THE condition dropout, used for the unconditional CFG row and for training's condition dropout,
  so that both drop the same streams the same way;
* `guided_noise`, `denoise_segment`: one segment, for a batch, with any diffusers scheduler and step count, with or
  without gradient (whatever the caller's grad mode is);
* `predict_x0`: the clean-latent estimate from a model output.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from .conditioning.audio import audio_windows
from .conditioning.camera import camera_vector, input_camera
from .models import StreamScales
from .models.reference import ReferenceBank

TASKS = ("portrait", "identity", "orbit")
# Classifier-free guidance drops the identity and audio streams (empty-prompt identity tokens, zero audio tokens);
# the reference bank and the camera stream stay on, because they are structure, not content to amplify. Camera
# guidance (`cfg_conditions(..., still_camera=...)`, off in the paper's set-up) is the one exception: its
# unconditional row sees the input camera on every frame, so CFG pushes the view along the path.
DROPPABLE_STREAMS = ("identity", "audio")


def input_camera_vector() -> np.ndarray:
    """(25,) the camera the input portrait is seen from: frontal, distance 2.7, default intrinsics."""
    extrinsic, intrinsic = input_camera()
    return camera_vector(extrinsic[None], intrinsic[None])[0].astype(np.float32)


# -- reference and context ---------------------------------------------------------------------------------------

def bank_references(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latent frames (B, C, 1, h, w) to bank -> (B, C, R, h, w) distinct frames and their log-count weights.

    Identical frames are banked once with logit bias log(count): attention then equals that of the copies
    (softmax over duplicated keys), for a fraction of the reference UNet's and the attention's cost.
    """
    distinct, counts = [], []
    for frame in frames:
        for i, seen in enumerate(distinct):
            if seen.shape == frame.shape and torch.equal(seen, frame):
                counts[i] += 1
                break
        else:
            distinct.append(frame)
            counts.append(1)
    weights = None if all(c == 1 for c in counts) else torch.tensor(counts, dtype=torch.float32).log()
    return torch.cat(distinct, dim=2), weights


@dataclass
class SegmentPlan:
    reference: torch.Tensor | None  # (B, C, R, h, w) distinct reference latents for the bank
    log_weights: torch.Tensor | None  # (R,)
    context: torch.Tensor | None  # (B, C, n, h, w) clean latents prepended on the frame axis


def plan_segment(task: str, index: int, portrait_latent: torch.Tensor | None, previous: torch.Tensor | None,
                 context_frames: int, bank_context_frames: int | None = None) -> SegmentPlan:
    """Reference and context of segment ``index`` (paper §3.4, Inference).

    portrait / orbit: the reference is the input portrait throughout; segment 0's context is that portrait, later
    segments' the last n latents of the previous segment. identity: segment 0 has neither (ID and audio only, as in
    stage 1); later, the last generated frame is the reference and the last n latents the context, the bank shape
    stage 2 trains with (one reference plus n context frames).

    ``bank_context_frames``: the bank holds only the last that many context frames (None: all n). A sampler that
    widens the temporal context past the trained n can keep the bank in its trained shape, so that the reference
    keeps its trained share of the bank's attention.
    """
    n = context_frames
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}.")
    if index == 0:
        if task == "identity":
            return SegmentPlan(None, None, None)
        context = portrait_latent.repeat(1, 1, n, 1, 1)
    else:
        context = previous[:, :, -n:]
    anchor = portrait_latent if task != "identity" else previous[:, :, -1:]
    banked = context if bank_context_frames is None else context[:, :, -bank_context_frames:]
    frames = [anchor] + list(banked.split(1, dim=2))
    reference, weights = bank_references(frames)
    return SegmentPlan(reference, weights, context)


# -- conditions --------------------------------------------------------------------------------------------------

@dataclass
class SegmentConditions:
    """What the video UNet reads for one segment, for a batch of B rows (N + n frames each)."""

    id_tokens: torch.Tensor  # (B, L, D)
    audio_tokens: torch.Tensor | None = None  # (B, F, T, D) projected, per frame
    camera_tokens: torch.Tensor | None = None  # (B, F, T, D)
    bank: ReferenceBank | None = None

    @property
    def batch_size(self) -> int:
        return self.id_tokens.shape[0]


def frame_audio_tokens(model, features: torch.Tensor, first: int, end: int, radius: int) -> torch.Tensor:
    """Audio tokens (B, end - first, T, D) of frames [first, end) from whole-clip features (B, T_clip, D_feat).

    Frames outside the clip (segment 0's context) repeat the nearest real frame's features.
    """
    return model.project_audio(torch.stack([audio_windows(f, first, end - first, radius) for f in features]))


def frame_camera_tokens(model, cameras: torch.Tensor, first: int, end: int) -> torch.Tensor:
    """Camera tokens (B, end - first, T, D) for frames [first, end) of per-frame camera vectors (B, T_clip, 25).

    Frames before 0 are the input portrait, seen from the input camera; frames past the end hold the last camera.
    """
    index = torch.arange(first, end)
    picked = cameras[:, index.clamp(0, cameras.shape[1] - 1)]
    before = index < 0
    if before.any():
        picked = picked.clone()
        picked[:, before] = torch.from_numpy(input_camera_vector()).to(picked)
    return model.project_camera(picked)


def segment_conditions(model, id_tokens: torch.Tensor, first: int, end: int, audio_features=None, cameras=None,
                       audio_radius: int = 2, bank: ReferenceBank | None = None) -> SegmentConditions:
    """The tokens of frames [first, end) (context included) for a batch."""
    return SegmentConditions(
        id_tokens=id_tokens,
        audio_tokens=None if audio_features is None else frame_audio_tokens(model, audio_features, first, end,
                                                                           audio_radius),
        camera_tokens=None if cameras is None else frame_camera_tokens(model, cameras, first, end),
        bank=bank,
    )


def drop_streams(conditions: SegmentConditions, unconditional_id: torch.Tensor,
                 drop: dict[str, torch.Tensor]) -> SegmentConditions:
    """Rows where ``drop[stream]`` (a (B,) bool tensor) is set get that stream's null value: the empty-prompt ID tokens
    for "identity", zero tokens for "audio". CFG drops every droppable stream of its unconditional row; training
    drops each at random (`random_drop`). Nothing else drops conditions."""
    unknown = set(drop) - set(DROPPABLE_STREAMS)
    if unknown:
        raise ValueError(f"cannot drop {sorted(unknown)}; droppable streams are {DROPPABLE_STREAMS}.")
    id_tokens, audio = conditions.id_tokens, conditions.audio_tokens
    if "identity" in drop:
        mask = drop["identity"].to(id_tokens.device).view(-1, 1, 1)
        id_tokens = torch.where(mask, unconditional_id.to(id_tokens).expand_as(id_tokens), id_tokens)
    if "audio" in drop and audio is not None:
        mask = drop["audio"].to(audio.device).view(-1, 1, 1, 1)
        audio = torch.where(mask, torch.zeros_like(audio), audio)
    return replace(conditions, id_tokens=id_tokens, audio_tokens=audio)


def random_drop(batch_size: int, probabilities: dict[str, float], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Training's condition dropout for CFG: each stream of each row dropped independently with its probability."""
    return {stream: torch.rand(batch_size, generator=generator, device=generator.device) < p
            for stream, p in probabilities.items() if p > 0}


def still_camera_tokens(model, camera_tokens: torch.Tensor) -> torch.Tensor:
    """Camera tokens shaped like ``camera_tokens`` (B, F, T, D) that hold the input camera on every frame: the view
    the model keeps when no path moves it, and so the unconditional row of camera guidance."""
    batch, frames = camera_tokens.shape[:2]
    vector = torch.from_numpy(input_camera_vector()).to(camera_tokens.device, torch.float32)
    return model.project_camera(vector.expand(batch, frames, -1)).to(camera_tokens)


def cfg_conditions(conditions: SegmentConditions, unconditional_id: torch.Tensor,
                   still_camera: torch.Tensor | None = None) -> SegmentConditions:
    """Rows [unconditional; conditional] for one batched UNet call; the bank serves both halves.

    ``still_camera`` (`still_camera_tokens`) replaces the unconditional row's camera: camera guidance. Without it
    both rows see the path, and CFG amplifies identity and audio only."""
    everything = {s: torch.ones(conditions.batch_size, dtype=torch.bool) for s in DROPPABLE_STREAMS}
    null = drop_streams(conditions, unconditional_id, everything)
    if still_camera is not None and conditions.camera_tokens is not None:
        null = replace(null, camera_tokens=still_camera)

    def both(a, b):
        return None if a is None else torch.cat([a, b])

    return SegmentConditions(both(null.id_tokens, conditions.id_tokens), both(null.audio_tokens, conditions.audio_tokens),
                             both(null.camera_tokens, conditions.camera_tokens), conditions.bank)


# -- denoising ---------------------------------------------------------------------------------------------------

def model_output(model, x: torch.Tensor, t, conditions: SegmentConditions, scales: StreamScales = StreamScales()):
    return model(x, t, conditions.id_tokens, conditions.audio_tokens, conditions.camera_tokens,
                 bank=conditions.bank, scales=scales)


def guided_noise(model, x, t, conditions: SegmentConditions, guidance: float, guided: SegmentConditions | None = None,
                 scales: StreamScales = StreamScales(), batch_cfg: bool = True, unconditional_id=None):
    """The model output at ``x``, with classifier-free guidance when ``guidance != 1``: uncond + g (cond - uncond).

    ``guided`` are the stacked CFG rows (`cfg_conditions`), built once per segment rather than per step.
    """
    if guidance == 1.0:
        return model_output(model, x, t, conditions, scales)
    if guided is None:
        guided = cfg_conditions(conditions, unconditional_id)
    if batch_cfg:
        uncond, cond = model_output(model, torch.cat([x, x]), t, guided, scales).chunk(2)
    else:  # the benchmark's naive baseline: two UNet calls per step
        rows = conditions.batch_size

        def half(part):
            pick = (lambda z: None if z is None else z[part])
            return model_output(model, x, t, SegmentConditions(pick(guided.id_tokens), pick(guided.audio_tokens),
                                                              pick(guided.camera_tokens), guided.bank), scales)

        uncond, cond = half(slice(0, rows)), half(slice(rows, 2 * rows))
    return uncond + guidance * (cond - uncond)


def denoise_segment(model, scheduler, noise: torch.Tensor, conditions: SegmentConditions,
                    unconditional_id: torch.Tensor | None = None, context: torch.Tensor | None = None,
                    steps: int = 25, guidance: float = 3.0, scales: StreamScales = StreamScales(),
                    batch_cfg: bool = True, rebuild_bank: Callable[[], ReferenceBank] | None = None,
                    on_step: Callable[[int, int], None] | None = None,
                    generator: torch.Generator | None = None, guide_camera: bool = False) -> torch.Tensor:
    """Noise (B, C, N, h, w) -> clean latents (B, C, N, h, w), float32.

    ``scheduler`` is copied (schedulers keep per-run state), so one instance serves every segment. Latents stay
    float32 between solver steps (the scheduler's state) and are cast to the model's dtype at its input. Gradients
    follow the caller's grad mode. ``rebuild_bank`` (benchmark's naive baseline) re-encodes the reference at every
    step. ``on_step(i, steps)`` runs after each step; raising from it cancels the segment. ``generator`` feeds
    schedulers that add noise between steps (LCMScheduler, the fast sampler's), so a seed fixes the whole video.
    ``guide_camera`` turns on camera guidance (`cfg_conditions`) when there is CFG and a camera path.
    """
    scheduler = scheduler.__class__.from_config(scheduler.config)
    scheduler.set_timesteps(steps, device=noise.device)
    dtype = next(model.parameters()).dtype
    latents = noise.float() * scheduler.init_noise_sigma
    frames = latents.shape[2]
    guided = None
    if guidance != 1.0:
        still = None
        if guide_camera and conditions.camera_tokens is not None:
            still = still_camera_tokens(model, conditions.camera_tokens)
        guided = cfg_conditions(conditions, unconditional_id, still)
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    noise_kwargs = {"generator": generator} if generator is not None and takes_generator else {}
    for i, t in enumerate(scheduler.timesteps):
        if rebuild_bank is not None:
            bank = rebuild_bank()
            conditions = replace(conditions, bank=bank)
            guided = replace(guided, bank=bank) if guided is not None else None
        x = scheduler.scale_model_input(latents, t)
        if context is not None:
            x = torch.cat([context.to(x), x], dim=2)
        out = guided_noise(model, x.to(dtype), t, conditions, guidance, guided, scales, batch_cfg)
        latents = scheduler.step(out[:, :, -frames:].float(), t, latents, **noise_kwargs).prev_sample
        if on_step is not None:
            on_step(i + 1, steps)
    return latents


def predict_x0(scheduler, output: torch.Tensor, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The clean latents a model output implies at noisy ``sample`` (B, C, F, h, w) and ``timesteps`` (B,)."""
    alpha = scheduler.alphas_cumprod.to(sample.device)[timesteps.to(sample.device).long()].float()
    alpha = alpha.view(-1, *([1] * (sample.ndim - 1)))
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (sample - (1 - alpha).sqrt() * output) / alpha.sqrt()
    if kind == "v_prediction":
        return alpha.sqrt() * sample - (1 - alpha).sqrt() * output
    if kind == "sample":
        return output
    raise ValueError(f"unsupported prediction_type {kind!r}.")


def num_segments(num_frames: int, segment_frames: int) -> int:
    return math.ceil(num_frames / segment_frames)
