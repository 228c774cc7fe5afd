"""STARCasterModel: the identity-aware spatio-temporal denoising network (paper §3.1, Fig. 3).

A 2D ID-aware UNet (Arc2Face for `sd15`) is inflated with AnimateDiff-shaped temporal transformers through diffusers'
`UNetMotionModel`, its spatial cross-attention becomes decoupled multi-source cross-attention (ID + audio + camera,
eq. 2), its spatial self-attention reads a reference bank written by a frozen copy of the 2D UNet (eq. 3) and carries
LoRA. Every addition starts at a value that leaves the 2D UNet's output unchanged frame by frame.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from safetensors.torch import load_file, save_file
from torch import nn

from .attention import AttentionConditions, MultiSourceCrossAttnProcessor, ReferenceAttnProcessor, StreamScales
from .config import STARCasterConfig
from .lora import add_self_attention_lora
from .projections import AudioProjection, CameraProjection
from .reference import ReferenceBank, encode_reference, make_reference_unet, self_attention_layers

CONFIG_FILE = "config.json"
ADAPTERS_FILE = "adapters.safetensors"
ADAPTERS_CONTENT = "the STARCaster additions (temporal blocks, audio/camera K/V, projections, LoRA)"
# Shape facts of the 2D base that the additions depend on: checked on load for a readable error.
BASE_KEYS = ("block_out_channels", "layers_per_block", "cross_attention_dim")

# Which additions each training stage optimises (paper §3.4, Supp. B). The 2D weights are never trained. Stage 3
# optimises "the same model weights, with camera attention layers replacing the audio-specific ones".
STAGE_GROUPS = {
    1: {"motion", "audio"},
    2: {"motion", "audio", "lora"},
    3: {"motion", "camera", "lora"},
}


def adapter_group(name: str) -> str | None:
    """Which STARCaster addition a parameter/state-dict name belongs to, or None for the 2D base."""
    if name.startswith("audio_proj."):
        return "audio"
    if name.startswith("camera_proj."):
        return "camera"
    if not name.startswith("unet."):
        return None  # the reference UNet is a frozen copy of the base
    if ".motion_modules." in name:
        return "motion"
    if ".lora_" in name:
        return "lora"
    if ".processor.to_k_audio." in name or ".processor.to_v_audio." in name:
        return "audio"
    if ".processor.to_k_camera." in name or ".processor.to_v_camera." in name:
        return "camera"
    return None


def build_motion_adapter(unet2d_config: dict, config: STARCasterConfig) -> MotionAdapter:
    """A fresh AnimateDiff-shaped MotionAdapter matching a 2D UNet config (for SD-1.5 shapes: ~0.45 B parameters)."""
    return MotionAdapter(
        block_out_channels=tuple(unet2d_config["block_out_channels"]),
        motion_layers_per_block=unet2d_config["layers_per_block"],
        motion_transformer_layers_per_block=config.motion_transformer_layers_per_block,
        motion_mid_block_layers_per_block=1,
        motion_transformer_layers_per_mid_block=config.motion_transformer_layers_per_block,
        motion_num_attention_heads=config.motion_num_attention_heads,
        motion_norm_num_groups=unet2d_config["norm_num_groups"],
        motion_max_seq_length=config.motion_max_seq_length,
        use_motion_mid_block=config.use_motion_mid_block,
    )


def load_motion_adapter(folder: str | Path) -> MotionAdapter:
    """A MotionAdapter saved with `save_pretrained` (safetensors), e.g. AnimateDiff's SD-1.5 motion adapter."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no motion adapter in {folder}: expected config.json and diffusion_pytorch_model.safetensors written by "
            "diffusers' MotionAdapter.save_pretrained (e.g. an AnimateDiff SD-1.5 motion adapter)"
        )
    return MotionAdapter.from_pretrained(folder, use_safetensors=True)


def check_motion_adapter(unet2d_config: dict, adapter: MotionAdapter) -> None:
    got, want = tuple(adapter.config["block_out_channels"]), tuple(unet2d_config["block_out_channels"])
    if got != want:
        raise ValueError(f"the motion adapter was built for block_out_channels {got}, the 2D UNet has {want}")
    for key in ("motion_num_attention_heads", "motion_transformer_layers_per_block"):
        if not isinstance(adapter.config[key], int):
            raise ValueError(f"motion adapters with per-block {key} ({adapter.config[key]}) are not supported")


def zero_init_motion_outputs(unet: UNetMotionModel) -> None:
    """Zeroes every temporal transformer's output projection: each then adds exactly 0 to its residual stream."""
    for name, module in unet.named_modules():
        if name.endswith("proj_out") and ".motion_modules." in f".{name}" and isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)


@contextmanager
def quiet_empty_float32_warning():
    """diffusers' from_unet2d casts with `.to(dtype)`, which warns that an *empty* list of modules "should be kept in
    float32"; nothing is wrong, so hide exactly that message (only while inflating)."""
    logger = logging.getLogger("diffusers.models.modeling_utils")

    def keep(record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def install_processors(unet: UNetMotionModel) -> None:
    """Multi-source cross-attention on spatial attn2, reference-reading self-attention on spatial attn1."""
    processors = {}
    for name, processor in unet.attn_processors.items():
        layer = name.removesuffix(".processor")
        if "motion_modules" in name:
            processors[name] = processor  # temporal attention stays diffusers' SDPA processor
        elif layer.endswith("attn1"):
            processors[name] = ReferenceAttnProcessor(layer)
        elif layer.endswith("attn2"):
            processors[name] = MultiSourceCrossAttnProcessor.from_attention(unet.get_submodule(layer))
        else:
            raise ValueError(f"unexpected attention layer {layer} in the video UNet")
    unet.set_attn_processor(processors)


class STARCasterModel(nn.Module):
    """Video UNet + reference UNet + audio/camera projections. Build it with `from_unet2d` or `from_pretrained`."""

    def __init__(
        self,
        config: STARCasterConfig,
        unet: UNetMotionModel,
        reference_unet: UNet2DConditionModel,
        audio_proj: AudioProjection,
        camera_proj: CameraProjection,
    ):
        super().__init__()
        self.config = config
        self.unet = unet
        self.reference_unet = reference_unet
        self.audio_proj = audio_proj
        self.camera_proj = camera_proj

    @classmethod
    def from_unet2d(
        cls,
        unet2d: UNet2DConditionModel,
        config: STARCasterConfig | None = None,
        motion_adapter: MotionAdapter | str | Path | None = None,
    ) -> "STARCasterModel":
        """Inflates `unet2d` (left untouched; its weights are copied) into the STARCaster network.

        Without `motion_adapter`, fresh temporal blocks are built to match the UNet, with zeroed output projections;
        with one (a MotionAdapter or a folder saved by `save_pretrained`), its weights become the temporal prior.
        """
        if not isinstance(unet2d, UNet2DConditionModel):
            raise ValueError(f"from_unet2d needs a diffusers UNet2DConditionModel, got {type(unet2d).__name__}")
        config = config or STARCasterConfig()
        base = dict(unet2d.config)
        cross_attention_dim = base["cross_attention_dim"]
        if not isinstance(cross_attention_dim, int):
            raise ValueError(f"per-block cross_attention_dim {cross_attention_dim} is not supported")

        if motion_adapter is None:
            adapter, fresh = build_motion_adapter(base, config), True
        else:
            adapter = motion_adapter
            if not isinstance(adapter, MotionAdapter):
                adapter = load_motion_adapter(adapter)
            check_motion_adapter(base, adapter)
            fresh = False
            # Record the adapter's real shape so that save_adapters/from_pretrained rebuild the same blocks.
            config = dataclasses.replace(
                config,
                motion_num_attention_heads=adapter.config["motion_num_attention_heads"],
                motion_max_seq_length=adapter.config["motion_max_seq_length"],
                motion_transformer_layers_per_block=adapter.config["motion_transformer_layers_per_block"],
                use_motion_mid_block=adapter.config["use_motion_mid_block"],
            )

        with quiet_empty_float32_warning():
            unet = UNetMotionModel.from_unet2d(unet2d, adapter)
        if fresh:
            zero_init_motion_outputs(unet)
        install_processors(unet)
        if config.lora_rank > 0:
            add_self_attention_lora(unet, config.lora_rank)

        model = cls(
            config,
            unet,
            make_reference_unet(unet2d),
            AudioProjection(
                config.feature_dim,
                config.audio_window,
                config.audio_tokens,
                cross_attention_dim,
                config.audio_hidden_dim,
            ),
            CameraProjection(config.camera_tokens, cross_attention_dim, config.camera_dim, config.camera_hidden_dim),
        )
        # UNetMotionModel.from_unet2d builds on the CPU in the base's dtype; bring everything to the base's device.
        model.to(device=unet2d.device)
        for projection in (model.audio_proj, model.camera_proj):
            projection.to(dtype=unet2d.dtype)
        model.set_trainable(set().union(*STAGE_GROUPS.values()))  # the 2D weights are frozen from the start
        return model

    # ----------------------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def cross_attention_dim(self) -> int:
        return self.unet.config.cross_attention_dim

    def encode_reference(self, ref_latents: torch.Tensor, id_tokens: torch.Tensor,
                         log_weights: torch.Tensor | None = None) -> ReferenceBank:
        """Clean reference latents (B, C, R, H, W) + ID tokens (B, L, D) -> the bank for one whole segment.

        Runs the frozen reference UNet once at timestep 0; pass the result as `bank=` to every denoising step.
        ``log_weights`` (R,) counts a reference as that many copies (see `ReferenceBank`).
        """
        return encode_reference(self.reference_unet, ref_latents, id_tokens, log_weights)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        id_tokens: torch.Tensor,
        audio_tokens: torch.Tensor | None = None,
        camera_tokens: torch.Tensor | None = None,
        bank: ReferenceBank | None = None,
        scales: StreamScales = StreamScales(),
    ) -> torch.Tensor:
        """Noise prediction (B, C, F, H, W) for noisy latents `sample` (B, C, F, H, W).

        id_tokens (B, L, D) are global and shared by all frames; audio_tokens / camera_tokens (B, F, T, D) are
        per frame, already projected (None = stream absent); `bank` comes from `encode_reference`.
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be (batch, channels, frames, height, width), got {tuple(sample.shape)}")
        batch, _, frames = sample.shape[:3]
        if frames > self.unet.config.motion_max_seq_length:
            raise ValueError(
                f"{frames} frames exceed the temporal blocks' max sequence length "
                f"{self.unet.config.motion_max_seq_length}; generate in shorter segments"
            )
        if id_tokens.ndim != 3 or id_tokens.shape[0] != batch or id_tokens.shape[-1] != self.cross_attention_dim:
            raise ValueError(
                f"id_tokens must be (batch={batch}, tokens, {self.cross_attention_dim}), got {tuple(id_tokens.shape)}"
            )
        if bank is not None and not isinstance(bank, ReferenceBank):
            raise ValueError(f"bank must be a ReferenceBank from encode_reference, got {type(bank).__name__}")
        conditions = AttentionConditions(
            num_frames=frames,
            audio=self._per_frame("audio_tokens", audio_tokens, batch, frames),
            camera=self._per_frame("camera_tokens", camera_tokens, batch, frames),
            bank=bank,
            scales=scales,
        )
        # UNetMotionModel folds frames into the batch (B*F, ...) but does not repeat the text/ID tokens.
        encoder_hidden_states = id_tokens.repeat_interleave(frames, dim=0)
        return self.unet(
            sample, timestep, encoder_hidden_states, cross_attention_kwargs={"conditions": conditions}
        ).sample

    def _per_frame(self, name: str, tokens: torch.Tensor | None, batch: int, frames: int) -> torch.Tensor | None:
        if tokens is None:
            return None
        if tokens.ndim != 4 or tokens.shape[:2] != (batch, frames) or tokens.shape[-1] != self.cross_attention_dim:
            raise ValueError(
                f"{name} must be (batch={batch}, frames={frames}, tokens, {self.cross_attention_dim}) "
                f"(already projected, one set per frame), got {tuple(tokens.shape)}"
            )
        return tokens.reshape(batch * frames, *tokens.shape[2:])  # frame-major rows, as the UNet folds them

    # ----------------------------------------------------------------------------------------------------------------
    def set_trainable(self, groups: set[str]) -> list[nn.Parameter]:
        """Sets requires_grad on exactly the additions in `groups` ("motion", "audio", "camera", "lora")."""
        params = []
        for name, param in self.named_parameters():
            train = adapter_group(name) in groups
            param.requires_grad_(train)
            if train:
                params.append(param)
        return params

    def trainable_parameters(self, stage: int) -> list[nn.Parameter]:
        """The parameters training stage 1, 2 or 3 optimises; marks them (and only them) as requiring grad.

        1: temporal blocks + audio K/V + audio projection; 2: + LoRA; 3: temporal blocks + camera K/V + camera
        projection + LoRA. The 2D UNet and the reference UNet are never trained.
        """
        if stage not in STAGE_GROUPS:
            raise ValueError(f"training stage must be one of {sorted(STAGE_GROUPS)}, got {stage!r}")
        return self.set_trainable(STAGE_GROUPS[stage])

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the STARCaster additions (temporal blocks, audio/camera K/V, projections, LoRA)."""
        return {name: t for name, t in self.state_dict().items() if adapter_group(name) is not None}

    def save_adapters(self, folder: str | Path) -> None:
        """Writes config.json + adapters.safetensors; the 2D base is stored (and loaded) separately."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"_base_unet": {key: self.unet.config[key] for key in BASE_KEYS}}
        (folder / CONFIG_FILE).write_text(json.dumps({**self.config.to_dict(), **meta}, indent=2) + "\n")
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.adapter_state_dict().items()}
        save_file(tensors, folder / ADAPTERS_FILE, metadata={"format": "pt"})

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, unet2d: UNet2DConditionModel, motion_adapter: MotionAdapter | str | Path | None = None
    ) -> "STARCasterModel":
        """Builds the network around `unet2d` and loads the additions saved by `save_adapters` in `folder`.

        `motion_adapter` only shapes the temporal blocks; their weights come from the adapters file.
        """
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_FILE, folder / ADAPTERS_FILE
        for path, content in ((config_path, "the STARCasterConfig"), (weights_path, ADAPTERS_CONTENT)):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: a STARCaster adapters folder holds {CONFIG_FILE} and {ADAPTERS_FILE} "
                    f"({content} belongs in {path.name}), written by STARCasterModel.save_adapters"
                )
        try:
            data = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{config_path} is not valid JSON ({error}); it should hold a STARCasterConfig") from None
        if not isinstance(data, dict):
            raise ValueError(f"{config_path} should hold a JSON object (a STARCasterConfig), not {type(data).__name__}")
        base = data.get("_base_unet", {})
        for key in BASE_KEYS:
            got = json.loads(json.dumps(unet2d.config[key]))  # tuples -> lists, as stored
            if key in base and base[key] != got:
                raise ValueError(f"the adapters in {folder} were made for a 2D UNet with {key}={base[key]}, got {got}")
        try:
            tensors = load_file(weights_path)
        except Exception as error:  # safetensors raises its own error types for truncated/corrupt files
            raise ValueError(
                f"{weights_path} could not be read as safetensors ({error}); the file is truncated or corrupt. "
                f"It should hold {ADAPTERS_CONTENT}, written by STARCasterModel.save_adapters"
            ) from None
        model = cls.from_unet2d(unet2d, STARCasterConfig.from_dict(data), motion_adapter)
        model.load_adapter_state_dict(tensors, source=weights_path)
        return model

    def load_adapter_state_dict(self, tensors: dict[str, torch.Tensor], source: str | Path = "state dict") -> None:
        """Loads `adapter_state_dict()`-style tensors; missing, unexpected or misshaped keys raise ValueError."""
        expected = self.adapter_state_dict()
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{source} does not match this network: {len(missing)} missing keys {missing[:3]}, "
                f"{len(unexpected)} unexpected keys {unexpected[:3]} (was it saved with another config?)"
            )
        misshaped = [k for k, t in tensors.items() if t.shape != expected[k].shape]
        if misshaped:
            k = misshaped[0]
            raise ValueError(
                f"{source}: {len(misshaped)} tensors have the wrong shape, e.g. {k}: "
                f"{tuple(tensors[k].shape)} instead of {tuple(expected[k].shape)}"
            )
        self.load_state_dict(tensors, strict=False)

    def spatial_self_attention_layers(self) -> list[str]:
        return self_attention_layers(self.unet)
