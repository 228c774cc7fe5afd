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

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from diffusers import DiffusionPipeline

from .autoregression import TASKS, denoise_segment, num_segments, plan_segment, segment_conditions
from .conditioning.camera import CameraPath
from .image_io import from_model_range, to_model_range
from .models import StreamScales
from .pipeline_inputs import PreparedInputs, check_sampling, prepare_inputs


def vae_scale_factor(vae) -> int:
    """How many pixels one latent covers along a side (SD's VAE: 8): one halving per encoder block but the last."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


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
    """Switches for the benchmark's naive baseline; the defaults are the streaming sampler's."""

    batch_cfg: bool = True  # conditional + unconditional rows in one UNet call
    cache_reference: bool = True  # reference features once per segment, not once per step


SAMPLERS = ("quality", "fast")


@dataclass
class _Parts:
    """What one sampler runs: ``quality`` is the shipped model with DPM-Solver++ and CFG; ``fast`` the distilled
    student with LCMScheduler (guidance folded in) and the tiny decoder."""

    model: torch.nn.Module
    scheduler: object
    decoder: torch.nn.Module
    options: SamplerOptions
    context_frames: int  # n: clean latents of the segment before, prepended to each segment
    bank_context_frames: int | None = None  # how many of them the reference bank holds (None: all n)


class STARCasterPipeline(DiffusionPipeline):
    """Holds the components and samples videos (a diffusers `DiffusionPipeline`, as AnimateDiffPipeline is).

    Build it with :func:`starcaster.load_pipeline` or ``STARCasterPipeline.from_pretrained(folder)``; ``.to()``,
    ``enable_model_cpu_offload()``, ``vae.enable_slicing()`` / ``enable_tiling()`` and
    ``set_progress_bar_config()`` behave as for diffusers' own pipelines. ``settings`` is the `PipelineConfig`
    (sizes and defaults); ``config`` is diffusers' record of the components (``model_index.json``).
    """

    model_cpu_offload_seq = "id_encoder->model->fast_model->vae->fast_decoder"
    _exclude_from_cpu_offload = ["face_embedder"]  # one small embedding per video; it stays where it is
    _optional_components = ["face_embedder", "audio_encoder", "fast_model", "fast_scheduler", "fast_decoder"]

    def __init__(self, model, vae, scheduler, id_encoder, face_embedder, audio_encoder, settings=None,
                 capabilities=None, trained=True, fast_model=None, fast_scheduler=None, fast_decoder=None):
        # `settings` has a default only so that diffusers counts it as a setting, not a component (`components`).
        if settings is None:
            raise ValueError("STARCasterPipeline needs its settings (a presets.PipelineConfig).")
        super().__init__()
        self.register_modules(model=model, vae=vae, scheduler=scheduler, id_encoder=id_encoder,
                              face_embedder=face_embedder, audio_encoder=audio_encoder, fast_model=fast_model,
                              fast_scheduler=fast_scheduler, fast_decoder=fast_decoder)
        self.settings = settings
        self.capabilities = capabilities or {task: None for task in TASKS}
        self.trained = trained

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, torch_dtype=None, device=None, **kwargs):
        """A checkpoint folder laid out as in checkpoints/README.md (or "tiny" / "sd15") -> a pipeline."""
        if kwargs:
            raise ValueError(f"unsupported arguments {sorted(kwargs)}: nothing is ever downloaded; give a local folder.")
        from .loading import load_pipeline

        return load_pipeline(pretrained_model_name_or_path, device=device, dtype=torch_dtype)

    def save_pretrained(self, save_directory, **kwargs):
        """Every component in its library's own format (safetensors), the settings and ``model_index.json``."""
        from .loading import save_pipeline

        save_pipeline(self, save_directory)

    # -- properties the app reads --------------------------------------------------------------------------------
    fps = property(lambda self: self.settings.fps)
    sample_rate = property(lambda self: self.settings.sample_rate)
    resolution = property(lambda self: self.settings.resolution)
    segment_frames = property(lambda self: self.settings.segment_frames)
    # The quality sampler's n: the trained n unless the folder sets another (PipelineConfig.sampling_context_frames)
    context_frames = property(lambda self: self.settings.sampling_context_frames or self.settings.context_frames)
    max_audio_seconds = property(lambda self: self.settings.max_audio_seconds)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.unet.parameters()).dtype

    def to(self, *args, **kwargs):
        from .models.unet import quiet_empty_float32_warning

        with quiet_empty_float32_warning():
            super().to(*args, **kwargs)
            # The face embedder runs once per video on one crop: it stays float32, whatever the UNet's dtype.
            if isinstance(self.face_embedder, torch.nn.Module):
                self.face_embedder.to(dtype=torch.float32)
        # A speech model (wav2vec2) sits next to the UNet but stays float32: its features are cheap and bf16 hurts them.
        speech_model = getattr(self.audio_encoder, "model", None)
        if isinstance(speech_model, torch.nn.Module):
            speech_model.to(device=self.device)
        return self

    def enable_low_memory(self, device: str = "cuda") -> "STARCasterPipeline":
        """For sd15 on a smaller GPU: each component visits the GPU only while it runs (model CPU offload), and the
        VAE decodes one frame at a time (slicing). On a machine without ``device`` only the slicing applies."""
        if device != "cpu" and torch.device(device).type == "cuda" and torch.cuda.is_available():
            self.enable_model_cpu_offload(device=device)
        self.vae.enable_slicing()
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
               sampler: str | SamplerOptions = "quality", cancel=None) -> Iterator[Segment]:
        """Yield the video segment by segment. Closing the generator between segments cancels the rest.

        ``image``: path, PIL image or array; ``audio``: path or (samples, rate); ``camera``: a CameraPath (orbit);
        ``identity``: an identity embedding array instead of a photo (identity task); ``strengths``: per-stream
        scales ``{"audio", "identity", "camera", "reference"}``. ``steps``, ``guidance`` and the strengths must lie
        in ``pipeline_inputs.SAMPLING_LIMITS``.

        ``sampler``: ``"quality"`` (DPM-Solver++, ``steps`` default 25, CFG ``guidance``) or ``"fast"`` (the
        consistency-distilled model in ``fast_model/``: LCMScheduler, ``steps`` default ``settings.fast_steps``,
        the tiny decoder in ``fast_decoder/`` when there is one). The fast model was distilled at the teacher's
        guidance, folded in: ``guidance`` does not apply to it and must be left out (or 1).

        ``cancel``: a ``threading.Event`` (or a function returning True) checked after every denoising step, from
        another thread if need be; once it is set the stream ends there, without the unfinished segment. This stops
        a segment in progress within one step, where closing the generator waits for the segment to end.
        """
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}.")
        reason = self.capabilities.get(task)
        if reason:
            raise ValueError(reason)
        parts = self._sampler_parts(sampler, guidance)
        fast = parts.model is self.fast_model
        default_steps, default_guidance = (self.settings.fast_steps, 1.0) if fast else (self.settings.steps,
                                                                                        self.settings.guidance)
        steps, guidance, strengths = check_sampling(default_steps if steps is None else steps,
                                                    default_guidance if guidance is None else guidance, strengths)
        scales = _scales(strengths)
        inputs = prepare_inputs(self, task, image=image, audio=audio, camera=camera, identity=identity,
                                num_frames=num_frames, already_aligned=already_aligned)
        cancelled = _cancel_check(cancel)
        try:
            yield from self._sample(inputs, task, steps, guidance, seed, scales, parts, cancelled)
        except _Cancelled:
            return

    @property
    def has_fast_sampler(self) -> bool:
        return self.fast_model is not None

    def _sampler_parts(self, sampler, guidance) -> _Parts:
        if isinstance(sampler, SamplerOptions):
            return _Parts(self.model, self.scheduler, self.vae, sampler, self.context_frames,
                          self.settings.sampling_bank_context_frames)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}.")
        if sampler == "quality":
            return _Parts(self.model, self.scheduler, self.vae, SamplerOptions(), self.context_frames,
                          self.settings.sampling_bank_context_frames)
        if self.fast_model is None:
            raise ValueError("This checkpoint has no fast sampler: fast_model/ (the distilled model, made by the "
                             "recipe's distill step) is missing. Use sampler='quality'.")
        if guidance is not None and float(guidance) != 1.0:
            raise ValueError(f"The fast sampler has its guidance distilled in; leave guidance out (got {guidance}).")
        # The student keeps the trained n: it was distilled with it, and each extra frame costs real-time speed.
        return _Parts(self.fast_model, self.fast_scheduler, self.fast_decoder or self.vae, SamplerOptions(),
                      self.settings.context_frames)

    def _sample(self, inputs: PreparedInputs, task, steps, guidance, seed, scales, parts: _Parts,
                cancelled=lambda: False) -> Iterator[Segment]:
        cfg = self.settings
        N, n = cfg.segment_frames, parts.context_frames
        model, options = parts.model, parts.options
        count = num_segments(inputs.num_frames, N)
        generator = torch.Generator("cpu").manual_seed(int(seed))  # noise drawn on CPU: same video on every device
        device = self._execution_device  # the accelerator under model CPU offload, else the model's device
        id_tokens = self.id_encoder(inputs.identity.to(device))
        unconditional_id = self.id_encoder.unconditional(1).to(id_tokens) if guidance != 1.0 else None
        features = None if inputs.audio_features is None else inputs.audio_features[None]
        cameras = None if inputs.camera is None else torch.from_numpy(inputs.camera)[None]
        latent_shape = (1, self.model.unet.config.in_channels, N, *self._latent_hw())
        previous = None
        with self.progress_bar(total=count * steps) as progress:  # closed too when the caller stops the stream
            for k in range(count):
                start = k * N
                valid = min(N, inputs.num_frames - start)
                plan = plan_segment(task, k, inputs.portrait_latent, previous, n, parts.bank_context_frames)
                first = start - (n if plan.context is not None else 0)

                def bank(plan=plan):
                    if plan.reference is None:
                        return None
                    return model.encode_reference(plan.reference.to(self.dtype), id_tokens,
                                                  None if plan.log_weights is None else plan.log_weights.to(device))

                conditions = segment_conditions(model, id_tokens, first, start + N, features, cameras,
                                                cfg.audio_radius, bank=bank() if options.cache_reference else None)
                noise = torch.randn(latent_shape, generator=generator).to(device)
                latents = denoise_segment(
                    model, parts.scheduler, noise, conditions, unconditional_id, plan.context, steps, guidance,
                    scales, batch_cfg=options.batch_cfg,
                    rebuild_bank=None if options.cache_reference or plan.reference is None else bank,
                    on_step=lambda i, total: _step_done(progress, cancelled), generator=generator,
                    guide_camera=cfg.camera_guidance,
                )
                previous = latents  # its last n clean latents seed the next segment (paper §3.2)
                yield Segment(
                    index=k, num_segments=count, start_frame=start,
                    frames=self._decode(latents[:, :, :valid], decoder=parts.decoder),
                    audio=inputs.audio_slice(start, valid), sample_rate=self.sample_rate, fps=self.fps,
                )

    def _latent_hw(self):
        factor = vae_scale_factor(self.vae)
        return self.resolution // factor, self.resolution // factor

    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> scaled latent (1, C, 1, h, w). Deterministic (the posterior mode)."""
        x = to_model_range(torch.from_numpy(image).permute(2, 0, 1)[None]).to(self._execution_device, self.vae.dtype)
        latent = self.vae.encode(x).latent_dist.mode().float() * self.vae.config.scaling_factor
        return latent[:, :, None]

    def _decode(self, latents, chunk: int = 8, decoder=None) -> np.ndarray:
        """(1, C, F, h, w) -> uint8 (F, H, W, 3), a few frames at a time to bound VAE memory. ``decoder``: the VAE
        (default) or the fast sampler's AutoencoderTiny, which reads the scaled latents as they are (factor 1)."""
        decoder = self.vae if decoder is None else decoder
        flat = (latents[0].permute(1, 0, 2, 3) / decoder.config.scaling_factor).to(decoder.dtype)
        out = []
        for i in range(0, flat.shape[0], chunk):
            images = decoder.decode(flat[i:i + chunk]).sample
            out.append(from_model_range(images).permute(0, 2, 3, 1).cpu())
        return torch.cat(out).numpy()


class _Cancelled(Exception):
    """Raised from the step callback once ``cancel`` is set: it leaves the segment at the current step."""


def _cancel_check(cancel):
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise ValueError("cancel must be a threading.Event or a function returning True to stop.")


def _step_done(progress, cancelled) -> None:
    progress.update(1)
    if cancelled():
        raise _Cancelled


def _scales(strengths) -> StreamScales:
    """Checked strengths (``check_sampling``) -> the model's per-stream scales."""
    scales = StreamScales()
    for name, value in (strengths or {}).items():
        scales = replace(scales, **{"id" if name == "identity" else name: value})
    return scales
