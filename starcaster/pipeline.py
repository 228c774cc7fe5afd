"""The streaming sampler (paper §3.4 "Inference"): a thin loop over the parts in `autoregression.py`.

The three tasks differ only in which conditioning streams are on:

=========  =========================  ==============================  =====================================
task       identity tokens            reference + first context        per-frame streams
=========  =========================  ==============================  =====================================
portrait   from the photo             the photo, throughout            audio
identity   from the photo or a .npy   none for segment 0, then the     audio
                                      last generated frames
orbit      from the photo             the photo, throughout            camera (+ audio when given)
=========  =========================  ==============================  =====================================

Classifier-free guidance drops the identity and audio streams (`autoregression.drop_streams`); conditional and
unconditional rows run as one batch, and the reference bank (with its projected keys and values) is built once per
segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from .autoregression import TASKS, denoise_segment, num_segments, plan_segment, segment_conditions
from .conditioning.camera import CameraPath
from .image_io import from_model_range, to_model_range
from .models import StreamScales
from .pipeline_inputs import PreparedInputs, prepare_inputs


@dataclass
class Segment:
    """One finished segment, yielded as soon as it is decoded."""

    index: int
    num_segments: int
    start_frame: int
    frames: np.ndarray  # uint8 (F, H, W, 3)
    audio: np.ndarray  # float32 samples covering exactly these frames (zeros when silent)
    sample_rate: int
    fps: float


@dataclass
class Video:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    audio: np.ndarray
    sample_rate: int
    fps: float

    def save(self, path):
        from .video import write_mp4

        return write_mp4(path, self.frames, self.fps, audio=self.audio, sample_rate=self.sample_rate)


@dataclass
class SamplerOptions:
    """Switches for the benchmark's naive baseline; the defaults are the fast sampler."""

    batch_cfg: bool = True  # conditional + unconditional rows in one UNet call
    cache_reference: bool = True  # reference features once per segment, not once per step


class STARCasterPipeline:
    """Holds the components and samples videos. Build it with :func:`starcaster.load_pipeline`."""

    def __init__(self, model, vae, scheduler, id_encoder, face_embedder, audio_encoder, config, capabilities=None,
                 trained=True):
        self.model, self.vae, self.scheduler = model, vae, scheduler
        self.id_encoder, self.face_embedder, self.audio_encoder = id_encoder, face_embedder, audio_encoder
        self.config = config
        self.capabilities = capabilities or {task: None for task in TASKS}
        self.trained = trained

    # -- properties the app reads --------------------------------------------------------------------------------
    fps = property(lambda self: self.config.fps)
    sample_rate = property(lambda self: self.config.sample_rate)
    resolution = property(lambda self: self.config.resolution)
    segment_frames = property(lambda self: self.config.segment_frames)
    context_frames = property(lambda self: self.config.context_frames)
    max_audio_seconds = property(lambda self: self.config.max_audio_seconds)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.unet.parameters()).dtype

    def to(self, device=None, dtype=None):
        for module in (self.model, self.vae, self.id_encoder):
            module.to(device=device, dtype=dtype)
        if isinstance(self.face_embedder, torch.nn.Module):
            self.face_embedder.to(device=device)
        # A speech model (wav2vec2) sits next to the UNet but stays float32: its features are cheap and bf16 hurts them.
        speech_model = getattr(self.audio_encoder, "model", None)
        if isinstance(speech_model, torch.nn.Module) and device is not None:
            speech_model.to(device=device)
        return self

    def prepare_portrait(self, image, already_aligned: bool = False):
        """The FFHQ-style crop the model sees (``.image``) and the detected face (``.face``, None if skipped)."""
        from .face import prepare_portrait

        return prepare_portrait(image, self.resolution, already_aligned=already_aligned,
                                detector=getattr(self.face_embedder, "detector", "auto"))

    # -- sampling ------------------------------------------------------------------------------------------------

    def generate(self, **kwargs) -> Video:
        """All segments of :meth:`stream` joined into one :class:`Video`."""
        segments = list(self.stream(**kwargs))
        return Video(
            frames=np.concatenate([s.frames for s in segments]),
            audio=np.concatenate([s.audio for s in segments]),
            sample_rate=self.sample_rate,
            fps=self.fps,
        )

    @torch.no_grad()
    def stream(self, task: str = "portrait", image=None, audio=None, camera: CameraPath | None = None, identity=None,
               num_frames: int | None = None, steps: int | None = None, guidance: float | None = None, seed: int = 0,
               strengths: dict | None = None, already_aligned: bool = False,
               sampler: SamplerOptions = SamplerOptions()) -> Iterator[Segment]:
        """Yield the video segment by segment. Closing the generator between segments cancels the rest.

        ``image``: path, PIL image or array; ``audio``: path or (samples, rate); ``camera``: a CameraPath (orbit);
        ``identity``: an identity embedding array instead of a photo (identity task); ``strengths``: per-stream
        scales ``{"audio", "identity", "camera", "reference"}``.
        """
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}.")
        reason = self.capabilities.get(task)
        if reason:
            raise ValueError(reason)
        steps = int(steps if steps is not None else self.config.steps)
        guidance = float(guidance if guidance is not None else self.config.guidance)
        if not 1 <= steps <= 200:
            raise ValueError(f"steps must be between 1 and 200, got {steps}.")
        if not (math.isfinite(guidance) and 0.0 <= guidance <= 20.0):
            raise ValueError(f"guidance must be between 0 and 20, got {guidance}.")
        scales = _scales(strengths)
        inputs = prepare_inputs(self, task, image=image, audio=audio, camera=camera, identity=identity,
                                num_frames=num_frames, already_aligned=already_aligned)
        yield from self._sample(inputs, task, steps, guidance, seed, scales, sampler)

    def _sample(self, inputs: PreparedInputs, task, steps, guidance, seed, scales, sampler) -> Iterator[Segment]:
        cfg = self.config
        N, n = cfg.segment_frames, cfg.context_frames
        count = num_segments(inputs.num_frames, N)
        generator = torch.Generator("cpu").manual_seed(int(seed))  # noise drawn on CPU: same video on every device
        id_tokens = self.id_encoder(inputs.identity.to(self.device))
        unconditional_id = self.id_encoder.unconditional(1).to(id_tokens) if guidance != 1.0 else None
        features = None if inputs.audio_features is None else inputs.audio_features[None]
        cameras = None if inputs.camera is None else torch.from_numpy(inputs.camera)[None]
        latent_shape = (1, self.model.unet.config.in_channels, N, *self._latent_hw())

        previous = None
        for k in range(count):
            start = k * N
            valid = min(N, inputs.num_frames - start)
            plan = plan_segment(task, k, inputs.portrait_latent, previous, n)
            first = start - (n if plan.context is not None else 0)

            def bank(plan=plan):
                if plan.reference is None:
                    return None
                return self.model.encode_reference(plan.reference.to(self.dtype), id_tokens,
                                                   None if plan.log_weights is None else plan.log_weights.to(self.device))

            conditions = segment_conditions(self.model, id_tokens, first, start + N, features, cameras,
                                            cfg.audio_radius, bank=bank() if sampler.cache_reference else None)
            noise = torch.randn(latent_shape, generator=generator).to(self.device)
            latents = denoise_segment(
                self.model, self.scheduler, noise, conditions, unconditional_id, plan.context, steps, guidance,
                scales, batch_cfg=sampler.batch_cfg,
                rebuild_bank=None if sampler.cache_reference or plan.reference is None else bank,
            )
            previous = latents  # its last n clean latents seed the next segment (paper §3.2)
            yield Segment(
                index=k, num_segments=count, start_frame=start, frames=self._decode(latents[:, :, :valid]),
                audio=inputs.audio_slice(start, valid), sample_rate=self.sample_rate, fps=self.fps,
            )

    def _latent_hw(self):
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return self.resolution // factor, self.resolution // factor

    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> scaled latent (1, C, 1, h, w). Deterministic (the posterior mode)."""
        x = to_model_range(torch.from_numpy(image).permute(2, 0, 1)[None]).to(self.device, self.dtype)
        latent = self.vae.encode(x).latent_dist.mode().float() * self.vae.config.scaling_factor
        return latent[:, :, None]

    def _decode(self, latents, chunk: int = 8) -> np.ndarray:
        """(1, C, F, h, w) -> uint8 (F, H, W, 3), a few frames at a time to bound VAE memory."""
        flat = (latents[0].permute(1, 0, 2, 3) / self.vae.config.scaling_factor).to(self.vae.dtype)
        out = []
        for i in range(0, flat.shape[0], chunk):
            images = self.vae.decode(flat[i:i + chunk]).sample
            out.append(from_model_range(images).permute(0, 2, 3, 1).cpu())
        return torch.cat(out).numpy()


def _scales(strengths) -> StreamScales:
    scales = StreamScales()
    if not strengths:
        return scales
    for name, value in strengths.items():
        if name not in ("id", "identity", "audio", "camera", "reference"):
            raise ValueError(f"Unknown stream '{name}' in strengths; use audio, identity, camera or reference.")
        value = float(value)
        if not (math.isfinite(value) and 0.0 <= value <= 3.0):
            raise ValueError(f"Stream strength '{name}' must be between 0 and 3, got {value}.")
        scales = replace(scales, **{"id" if name == "identity" else name: value})
    return scales
