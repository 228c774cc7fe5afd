"""Build a :class:`STARCasterPipeline` from a preset name or a checkpoint folder, and save one back.

Nothing is ever downloaded: every component comes from a subfolder of the checkpoint folder (layout in
``checkpoints/README.md``), and a missing piece is an error that names the folder and what belongs in it.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DPMSolverMultistepScheduler, MotionAdapter, UNet2DConditionModel

from .conditioning.audio import MelAudioEncoder, Wav2Vec2AudioEncoder
from .conditioning.identity import Arc2FaceEncoder, ArcFaceEmbedder, TinyFaceEncoder, build_tiny_tokenizer
from .fast_sampler import fast_scheduler, load_fast_decoder, load_fast_model, save_fast_model, student_copy
from .models import STARCasterConfig, STARCasterModel
from .models.unet import quiet_empty_float32_warning
from .pipeline import STARCasterPipeline, vae_scale_factor
from .presets import PIPELINE_CONFIG_NAME, PipelineConfig, folder_settings, resolve

# Stable Diffusion 1.5's noise schedule with DPM-Solver++ (Supp. B: 25 steps).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2, steps_offset=1,
)

_WHAT_BELONGS = {
    "unet": "the Arc2Face UNet (diffusers UNet2DConditionModel: config.json + diffusion_pytorch_model.safetensors)",
    "vae": "the SD-1.5 VAE (diffusers AutoencoderKL)",
    "text_encoder": "the Arc2Face ID encoder (transformers CLIPTextModel)",
    "tokenizer": "the CLIP tokenizer (vocab.json, merges.txt)",
    "wav2vec2": "facebook/wav2vec2-base-960h",
    "antelopev2": "insightface's antelopev2 models with Arc2Face's arcface.onnx",
    "face_encoder": "the tiny face encoder (TinyFaceEncoder)",
}

# What each task needs beyond the public weights (paper §3.4: the streams are trained in stages 1-3).
_NEEDS_ADAPTERS = {
    "portrait": "Portrait animation needs the audio and reference streams",
    "orbit": "Free-viewpoint orbit needs the camera and reference streams",
}


def load_pipeline(name_or_folder: str | Path = "tiny", device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None, random_weights: bool = False) -> STARCasterPipeline:
    """``"tiny"``, ``"sd15"`` or a checkpoint folder -> a ready pipeline (on ``device``, default CPU).

    ``random_weights=True`` builds the preset's architecture with seeded random weights and reads no files: the
    same speed as the real model, for ``python -m starcaster bench`` where the weights are not at hand.
    """
    folder, config = resolve(name_or_folder)
    if random_weights:
        pipe = build_random_pipeline(config, device=device)  # built in place: seconds on a GPU, not minutes
    elif config.preset == "tiny" and not (folder / "starcaster").is_dir():
        # The tiny folder fills step by step (train --recipe tiny); until the stages' adapters are there it is not
        # a model yet, and the random build of the same shapes keeps every task (and every test) running.
        warnings.warn(
            f"No trained tiny checkpoint in {folder} (no starcaster/ adapters yet): building a seeded "
            "random-initialised tiny STARCaster. Its videos are noise until the recipe's stages have run.",
            stacklevel=2,
        )
        pipe = build_random_pipeline(config)
    else:
        pipe = _load_folder(folder, config)
    if device is not None or dtype is not None:
        with quiet_empty_float32_warning():
            pipe.to(device=device, dtype=dtype)
    return pipe


def build_random_pipeline(config: PipelineConfig, seed: int = 0, device: str | torch.device | None = None,
                          dtype: torch.dtype | None = None) -> STARCasterPipeline:
    """A pipeline of the preset's shapes with seeded random weights: the start of training, tests, and benchmarks.

    ``device`` builds the modules there directly (a full-size ``sd15`` initialises in seconds on a GPU instead of
    minutes on a CPU; ``"meta"`` allocates nothing, for counting parameters). The caller's RNG state is left alone.
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:  # tokenizer files are tiny; read back as a real CLIPTokenizer
        build_tiny_tokenizer(tmp)
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    device = torch.device(device) if device is not None else None
    rng_devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), (device if device is not None else nullcontext()):
        torch.manual_seed(seed)
        unet2d = UNet2DConditionModel(**config.unet)
        vae = AutoencoderKL(**config.vae)
        text_config = dict(vocab_size=len(tokenizer)) | config.text_encoder  # a preset may give CLIP-L's vocabulary
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config, bos_token_id=tokenizer.bos_token_id,
                                                    eos_token_id=tokenizer.eos_token_id,
                                                    pad_token_id=tokenizer.pad_token_id))
        face_encoder = TinyFaceEncoder(**config.face_encoder)
        audio_encoder = _random_audio_encoder(config)
        model = STARCasterModel.from_unet2d(unet2d, _starcaster_config(config, audio_encoder))
        # Speed stand-ins for the fast sampler: the student has the model's shape, the decoder the preset's.
        fast_decoder = AutoencoderTiny(**config.fast_decoder) if config.fast_decoder else None
        fast_model = student_copy(model)
    # Outside the device context: the ID encoder tokenises its prompt into CPU buffers (data-dependent lookups).
    pipe = STARCasterPipeline(
        model=model, vae=vae, scheduler=DPMSolverMultistepScheduler(**SCHEDULER_CONFIG),
        id_encoder=Arc2FaceEncoder(text_encoder, tokenizer), face_embedder=face_encoder,
        audio_encoder=audio_encoder, settings=config, trained=False, fast_model=fast_model,
        fast_scheduler=fast_scheduler(), fast_decoder=fast_decoder,
    )
    if dtype is not None and (device is None or device.type != "meta"):
        with quiet_empty_float32_warning():
            pipe.to(dtype=dtype)
    return _eval(pipe)


def save_pipeline(pipe: STARCasterPipeline, folder: str | Path) -> Path:
    """Write every component in its library's own format (safetensors weights) plus the pipeline config."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PIPELINE_CONFIG_NAME).write_text(pipe.settings.to_json())
    pipe.model.reference_unet.save_pretrained(folder / "unet")  # the frozen 2D base, bank processors hold no weights
    pipe.vae.save_pretrained(folder / "vae")
    pipe.id_encoder.text_encoder.save_pretrained(folder / "text_encoder")
    pipe.id_encoder.tokenizer.save_pretrained(folder / "tokenizer")
    if isinstance(pipe.face_embedder, TinyFaceEncoder):
        pipe.face_embedder.save_pretrained(folder / "face_encoder")
    pipe.scheduler.save_pretrained(folder / "scheduler")
    pipe.model.save_adapters(folder / "starcaster")
    if pipe.fast_model is not None:
        save_fast_model(pipe.fast_model, folder / "fast_model")
        pipe.fast_scheduler.save_pretrained(folder / "fast_scheduler")
    if pipe.fast_decoder is not None:
        pipe.fast_decoder.save_pretrained(folder / "fast_decoder")
    pipe.save_config(folder)  # model_index.json: which class each component is, as diffusers pipelines record
    return folder


def _load_folder(folder: Path, config: PipelineConfig) -> STARCasterPipeline:
    missing = [name for name in _required(config) if not (folder / name).is_dir()]
    if missing:
        lines = "\n".join(f"  {folder / name}/  <- {_WHAT_BELONGS[name]}" for name in missing)
        raise FileNotFoundError(
            f"The {config.preset} checkpoint folder {folder} is incomplete. Missing:\n{lines}\n"
            "See checkpoints/README.md for where each comes from."
        )
    unet2d = _from_pretrained(UNet2DConditionModel, folder / "unet")
    vae = _from_pretrained(AutoencoderKL, folder / "vae")
    id_encoder = Arc2FaceEncoder.from_pretrained(folder)
    if config.face_embedder == "tiny":
        face_embedder = _from_pretrained(TinyFaceEncoder, folder / "face_encoder")
    else:
        face_embedder = ArcFaceEmbedder(folder / "antelopev2")
    audio_encoder = _audio_encoder(folder, config)
    motion_adapter = None
    if (folder / "motion_adapter").is_dir():
        motion_adapter = _from_pretrained(MotionAdapter, folder / "motion_adapter")
    scheduler = DPMSolverMultistepScheduler(**SCHEDULER_CONFIG)
    if (folder / "scheduler").is_dir():
        scheduler = DPMSolverMultistepScheduler.from_pretrained(folder / "scheduler")

    if "resolution" not in folder_settings(folder):
        config = replace(config, resolution=_native_resolution(unet2d, vae, config.resolution))

    capabilities = {"portrait": None, "identity": None, "orbit": None}
    if (folder / "starcaster").is_dir():
        model = STARCasterModel.from_adapters(folder / "starcaster", unet2d, motion_adapter)
    else:
        model = STARCasterModel.from_unet2d(unet2d, _starcaster_config(config, audio_encoder), motion_adapter)
        capabilities.update({task: _missing_adapters(folder, need) for task, need in _NEEDS_ADAPTERS.items()})
        if motion_adapter is None:
            warnings.warn(f"No motion adapter in {folder / 'motion_adapter'}: frames will not move coherently.")
    pipe = STARCasterPipeline(model, vae, scheduler, id_encoder, face_embedder, audio_encoder, config,
                              capabilities=capabilities, **_fast_parts(folder, model))
    return _eval(pipe)


def _fast_parts(folder: Path, model: STARCasterModel) -> dict:
    """The fast sampler's components, where the folder has them (issue #12; layout in checkpoints/README.md)."""
    parts = {}
    if (folder / "fast_model").is_dir():
        parts["fast_model"] = load_fast_model(model, folder / "fast_model")
        parts["fast_scheduler"] = fast_scheduler(folder / "fast_scheduler")
    if (folder / "fast_decoder").is_dir():
        parts["fast_decoder"] = load_fast_decoder(folder / "fast_decoder")
    return parts


def _missing_adapters(folder: Path, need: str) -> str:
    return (f"{need}, which are untrained: {folder / 'starcaster'}/ has no STARCaster adapters (config.json + motion.safetensors, "
            "audio.safetensors, ..., written by STARCasterModel.save_adapters after training). ID-driven generation works without them "
            "(a silent video from the motion prior).")


def _native_resolution(unet2d: UNet2DConditionModel, vae: AutoencoderKL, default: int) -> int:
    """The frame size the UNet was trained at: latent sample_size x the VAE's downsampling (SD-1.5: 64 x 8 = 512),
    the default diffusers' own pipelines use. Folders may set another in starcaster_pipeline.json."""
    size = unet2d.config.sample_size
    if not isinstance(size, int):
        return default
    return size * vae_scale_factor(vae)


def _required(config: PipelineConfig) -> list[str]:
    names = ["unet", "vae", "text_encoder", "tokenizer"]
    names.append("face_encoder" if config.face_embedder == "tiny" else "antelopev2")
    if config.audio_encoder == "wav2vec2":
        names.append("wav2vec2")
    return names


def _from_pretrained(cls, path: Path):
    """Load a diffusers model from safetensors only; a truncated or corrupt file is a clear error naming it."""
    try:
        return cls.from_pretrained(path, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        raise ValueError(f"Could not load {cls.__name__} from {path}: {e}. Is a file missing or truncated?") from None


def _audio_encoder(folder: Path, config: PipelineConfig):
    if config.audio_encoder == "mel":
        return MelAudioEncoder(sample_rate=config.sample_rate)
    if config.audio_encoder == "wav2vec2":
        return Wav2Vec2AudioEncoder.from_pretrained(folder / "wav2vec2")
    raise ValueError(f"Unknown audio encoder {config.audio_encoder!r} in the pipeline config (mel or wav2vec2).")


def _random_audio_encoder(config: PipelineConfig):
    if config.audio_encoder != "wav2vec2":
        return _audio_encoder(None, config)
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    # facebook/wav2vec2-base-960h's preprocessor: 16 kHz, per-clip normalisation.
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=config.sample_rate, do_normalize=True,
                                         return_attention_mask=False)
    return Wav2Vec2AudioEncoder(Wav2Vec2Model(Wav2Vec2Config(**config.wav2vec2)), extractor)


def _starcaster_config(config: PipelineConfig, audio_encoder) -> STARCasterConfig:
    return STARCasterConfig(feature_dim=audio_encoder.feature_dim, audio_window=2 * config.audio_radius + 1,
                            **config.starcaster)


def _eval(pipe: STARCasterPipeline) -> STARCasterPipeline:
    for module in (pipe.model, pipe.vae, pipe.id_encoder, pipe.face_embedder, pipe.fast_model, pipe.fast_decoder):
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)
    return pipe
