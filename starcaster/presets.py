"""Presets as data: what differs between the full-size ``sd15`` model and the CPU-sized ``tiny`` one.

Both run the same classes and the same sampler; a preset only names sizes and defaults. A checkpoint folder stores
its preset in ``starcaster_pipeline.json`` so a folder is self-describing. That file may hold only some fields
(``{"preset": "sd15", "resolution": 384}``): the rest come from the named preset. A folder without it (public weights
laid out as in checkpoints/README.md) is read with the sd15 preset.

The component configs (``unet``, ``vae``, ...) are only used to build a model with random weights (the start of
training, tests, and the speed benchmark); a folder's own ``config.json`` files always win over them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

PIPELINE_CONFIG_NAME = "starcaster_pipeline.json"
REPO_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


@dataclass
class PipelineConfig:
    preset: str
    resolution: int  # square output frames
    fps: float = 25.0
    sample_rate: int = 16_000
    segment_frames: int = 16  # N (paper §3.4)
    context_frames: int = 2  # n
    audio_encoder: str = "mel"  # "mel" (tiny) or "wav2vec2" (sd15)
    audio_radius: int = 2  # each frame sees +-2 neighbouring frames of audio (Hallo's practice)
    steps: int = 25  # DPM-Solver++ steps (Supp. B)
    guidance: float = 3.0  # CFG scale (Supp. B)
    max_audio_seconds: float = 300.0
    face_embedder: str = "tiny"  # "tiny" (TinyFaceEncoder) or "arcface" (insightface antelopev2)
    fast_steps: int = 2  # the fast sampler (issue #12): a consistency-distilled model, LCMScheduler, no CFG batch
    # CFG on the camera path too (orbits): the unconditional row sees the input camera on every frame. Not in the
    # paper, so off by default; the tiny model turns it on (chosen on validation orbits, README).
    camera_guidance: bool = False
    # n when the quality sampler samples (None: the trained n above, which training and the fast sampler read). More
    # context than training gave steadies the head across segment seams on the tiny model, which sets 6 (chosen on
    # validation: docs/eval/dev/pose_trace_val6.md, guidance_val10.md); not in the paper, so off by default.
    sampling_context_frames: int | None = None
    # How many of those context frames the quality sampler's reference bank holds (None: all of them). The bank was
    # trained as the reference plus `context_frames` frames; a wider bank dilutes the reference's share, and over
    # long videos the face drifts (the tiny model sets 2: docs/eval/dev/bank2_val_long4.md).
    sampling_bank_context_frames: int | None = None
    # Components built when a tiny folder has no trained weights yet (random initialisation, seeded).
    unet: dict = field(default_factory=dict)
    vae: dict = field(default_factory=dict)
    text_encoder: dict = field(default_factory=dict)
    face_encoder: dict = field(default_factory=dict)
    wav2vec2: dict = field(default_factory=dict)  # Wav2Vec2Config values (audio_encoder "wav2vec2"; empty = base)
    starcaster: dict = field(default_factory=dict)  # STARCasterConfig values (audio/camera tokens, LoRA rank, ...)
    fast_decoder: dict = field(default_factory=dict)  # AutoencoderTiny values of the fast sampler's decoder

    def __post_init__(self):
        for name in ("sampling_context_frames", "sampling_bank_context_frames"):
            n = getattr(self, name)
            if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= self.segment_frames):
                raise ValueError(f"{name} must be a whole number from 1 to segment_frames "
                                 f"({self.segment_frames}): the last frames of the segment before; got {n!r}.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "PipelineConfig":
        """A full config, or some fields over the preset named by ``data["preset"]`` (tiny or sd15)."""
        if not isinstance(data, dict):
            raise ValueError(f"{PIPELINE_CONFIG_NAME} must hold a JSON object, not {type(data).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown fields {sorted(unknown)} in {PIPELINE_CONFIG_NAME}.")
        base = PRESETS.get(data["preset"]) if isinstance(data.get("preset"), str) else None
        if base is None and not {"preset", "resolution"} <= set(data):
            raise ValueError(
                f"{PIPELINE_CONFIG_NAME} names no known preset ({', '.join(PRESETS)}) to fill in the fields it leaves "
                f"out; give \"preset\" (and \"resolution\" for a new preset)."
            )
        return replace(base, **data) if base is not None else cls(**data)

    @classmethod
    def from_folder(cls, folder: Path) -> "PipelineConfig":
        return cls.from_dict(folder_settings(folder))


def folder_settings(folder: Path) -> dict:
    """The fields a folder's ``starcaster_pipeline.json`` sets ({} when it has none)."""
    path = Path(folder) / PIPELINE_CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it from the repository.") from None


TINY = PipelineConfig(
    preset="tiny",
    resolution=128,
    fps=25.0,
    audio_encoder="mel",
    face_embedder="tiny",
    steps=25,
    camera_guidance=True,
    sampling_context_frames=6,
    sampling_bank_context_frames=2,
    unet=dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=128,
        attention_head_dim=4,
        norm_num_groups=8,
    ),
    vae=dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64, 128, 128),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=128,
    ),
    text_encoder=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      max_position_embeddings=77),
    face_encoder=dict(embedding_dim=64),
    starcaster=dict(audio_tokens=4, camera_tokens=2, lora_rank=8),
    # TAESD's shape at half its width, and no block at 128 px where a block costs as much as all the others: a
    # 16-frame segment decodes ~4x faster than with the KL VAE's decoder on two cores (issue #12).
    fast_decoder=dict(latent_channels=4, decoder_block_out_channels=(32,) * 4, num_decoder_blocks=(3, 3, 3, 0),
                      encoder_block_out_channels=(32,) * 4, num_encoder_blocks=(1, 1, 1, 1)),
)

# The paper's full size. The component configs are the public models' own: Arc2Face's UNet is SD-1.5's
# (0.86 B parameters), the VAE is SD's (84 M), Arc2Face's ID encoder is CLIP ViT-L/14's text model (123 M) and the
# audio model is wav2vec2-base (94 M). Loading a folder reads its config.json files instead; these only shape a
# random-weights build, which is as fast as the real model (``python -m starcaster bench --random-weights``).
SD15 = PipelineConfig(
    preset="sd15",
    resolution=512,
    fps=25.0,
    audio_encoder="wav2vec2",
    face_embedder="arcface",
    unet=dict(
        sample_size=64,  # 64 latents x 8 = 512 px
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    vae=dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    ),
    # CLIP-L's vocabulary size keeps the parameter count honest; a random build pairs it with the tiny tokenizer.
    text_encoder=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"),
    # A random build has no ArcFace ONNX model: the tiny CNN with ArcFace's 512-d output stands in. It runs once per
    # video on one 112 x 112 crop, nothing next to 25 steps of the UNet, so the speed benchmark does not miss it.
    face_encoder=dict(embedding_dim=512),
    wav2vec2=dict(),  # transformers' Wav2Vec2Config defaults are wav2vec2-base: 12 layers x 768
    starcaster=dict(audio_tokens=4, camera_tokens=4, lora_rank=64),
    fast_decoder=dict(latent_channels=4),  # TAESD's own shape (diffusers' AutoencoderTiny defaults)
)

PRESETS = {"tiny": TINY, "sd15": SD15}


def resolve(name_or_folder: str | Path) -> tuple[Path, PipelineConfig]:
    """Map ``"tiny"``, ``"sd15"`` or a folder to (folder, config). A folder's ``starcaster_pipeline.json`` (all or
    some fields) wins; a folder without one (public weights laid out as in checkpoints/README.md) is read with the
    sd15 preset."""
    name = str(name_or_folder)
    if name in PRESETS:
        folder = REPO_CHECKPOINTS / name
        config = PRESETS[name]
    else:
        folder = Path(name_or_folder).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"'{name}' is neither a preset ({', '.join(PRESETS)}) nor a checkpoint folder. "
                f"See checkpoints/README.md for the layout."
            )
        config = SD15
    if (folder / PIPELINE_CONFIG_NAME).is_file():
        config = PipelineConfig.from_folder(folder)
    return folder, config
