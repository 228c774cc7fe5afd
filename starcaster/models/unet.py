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
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from safetensors.torch import load_file, save_file
from torch import nn

from .attention import (
    AttentionConditions,
    MultiSourceCrossAttnProcessor,
    ReferenceAttnProcessor,
    StreamProjections,
    StreamScales,
)
from .config import STARCasterConfig
from .lora import add_self_attention_lora
from .projections import AudioProjection, CameraProjection
from .reference import ReferenceBank, encode_reference, make_reference_unet, self_attention_layers

CONFIG_FILE = "config.json"
GROUPS = ("motion", "audio", "camera", "lora")  # the trainable additions, each saved in GROUP.safetensors
GROUP_CONTENT = {
    "motion": "the temporal blocks",
    "audio": "the audio stream (K/V projections and the audio projection MLP)",
    "camera": "the camera stream (K/V projections and the camera projection MLP)",
    "lora": "the LoRA of the spatial self-attention",
}
# Shape facts of the 2D base that the additions depend on: checked on load for a readable error.
BASE_KEYS = ("block_out_channels", "layers_per_block", "cross_attention_dim")


def _plain(config) -> dict:
    """A diffusers config as constructor keyword arguments (no private `_class_name`-style keys)."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}

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
    if ".streams.to_k.audio." in name or ".streams.to_v.audio." in name:
        return "audio"
    if ".streams.to_k.camera." in name or ".streams.to_v.camera." in name:
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
    """Multi-source cross-attention on spatial attn2 (with the streams' K/V added to each attn2 module),
    reference-reading self-attention on spatial attn1."""
    processors = {}
    for name, processor in unet.attn_processors.items():
        layer = name.removesuffix(".processor")
        if "motion_modules" in name:
            processors[name] = processor  # temporal attention stays diffusers' SDPA processor
        elif layer.endswith("attn1"):
            processors[name] = ReferenceAttnProcessor(layer)
        elif layer.endswith("attn2"):
            attn = unet.get_submodule(layer)
            if not hasattr(attn, "streams"):  # reinstalling keeps the (maybe trained) stream weights
                attn.streams = StreamProjections.from_attention(attn)
            processors[name] = MultiSourceCrossAttnProcessor()
        else:
            raise ValueError(f"unexpected attention layer {layer} in the video UNet")
    unet.set_attn_processor(processors)


class STARCasterModel(ModelMixin, ConfigMixin):
    """Video UNet + reference UNet + audio/camera projections (diffusers ModelMixin + ConfigMixin).

    The config is the 2D base's UNet config (``unet_config``) plus the `STARCasterConfig` fields of the additions, so
    ``save_pretrained`` / ``from_pretrained`` round-trip the whole network. Checkpoint folders ship only the
    additions (`save_adapters`: one safetensors file per trainable group) next to the 2D base they extend.
    Build it with `from_unet2d` (copies a trained 2D UNet) or `from_adapters`.
    """

    ignore_for_config = ["unet2d", "motion_adapter"]
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        unet_config: dict | None = None,
        feature_dim: int = 9216,
        audio_window: int = 5,
        audio_tokens: int = 32,
        audio_hidden_dim: int = 1024,
        camera_dim: int = 25,
        camera_tokens: int = 4,
        camera_hidden_dim: int = 256,
        lora_rank: int = 64,
        motion_num_attention_heads: int = 8,
        motion_max_seq_length: int = 32,
        motion_transformer_layers_per_block: int = 1,
        use_motion_mid_block: bool = True,
        unet2d: UNet2DConditionModel | None = None,
        motion_adapter: MotionAdapter | None = None,
    ):
        """``unet2d`` (weights copied, left untouched) or a random 2D UNet built from ``unet_config``;
        ``motion_adapter`` (its weights become the temporal prior) or fresh temporal blocks with zeroed outputs."""
        super().__init__()
        additions = self.additions
        if unet2d is None:
            if unet_config is None:
                raise ValueError("STARCasterModel needs the 2D UNet (unet2d) or its config (unet_config)")
            unet2d = UNet2DConditionModel(**unet_config)
        base = dict(unet2d.config)
        if not isinstance(base["cross_attention_dim"], int):
            raise ValueError(f"per-block cross_attention_dim {base['cross_attention_dim']} is not supported")
        adapter = motion_adapter if motion_adapter is not None else build_motion_adapter(base, additions)
        if motion_adapter is not None:
            check_motion_adapter(base, adapter)
        with quiet_empty_float32_warning():
            unet = UNetMotionModel.from_unet2d(unet2d, adapter)
        if motion_adapter is None:
            zero_init_motion_outputs(unet)
        install_processors(unet)
        if additions.lora_rank > 0:
            add_self_attention_lora(unet, additions.lora_rank)
        cross = base["cross_attention_dim"]
        self.unet = unet
        self.reference_unet = make_reference_unet(unet2d)
        self.audio_proj = AudioProjection(feature_dim, audio_window, audio_tokens, cross, audio_hidden_dim)
        self.camera_proj = CameraProjection(camera_tokens, cross, camera_dim, camera_hidden_dim)
        # UNetMotionModel.from_unet2d builds on the CPU in the base's dtype; bring everything to the base's device.
        self.to(device=unet2d.device)
        for projection in (self.audio_proj, self.camera_proj):
            projection.to(dtype=unet2d.dtype)
        self.set_trainable(set(GROUPS))  # the 2D weights are frozen from the start

    @property
    def additions(self) -> STARCasterConfig:
        """The additions' settings, validated (`STARCasterConfig`)."""
        return STARCasterConfig.from_dict({k: v for k, v in self.config.items() if k != "unet_config"})

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
        adapter = motion_adapter
        if adapter is not None:
            if not isinstance(adapter, MotionAdapter):
                adapter = load_motion_adapter(adapter)
            check_motion_adapter(dict(unet2d.config), adapter)
            # Record the adapter's real shape so that save_adapters/from_adapters rebuild the same blocks.
            config = dataclasses.replace(
                config,
                motion_num_attention_heads=adapter.config["motion_num_attention_heads"],
                motion_max_seq_length=adapter.config["motion_max_seq_length"],
                motion_transformer_layers_per_block=adapter.config["motion_transformer_layers_per_block"],
                use_motion_mid_block=adapter.config["use_motion_mid_block"],
            )
        return cls(unet_config=_plain(unet2d.config), **config.to_dict(), unet2d=unet2d, motion_adapter=adapter)

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

    @apply_forward_hook  # model CPU offload moves the model to the accelerator for this call too
    def encode_reference(self, ref_latents: torch.Tensor, id_tokens: torch.Tensor,
                         log_weights: torch.Tensor | None = None) -> ReferenceBank:
        """Clean reference latents (B, C, R, H, W) + ID tokens (B, L, D) -> the bank for one whole segment.

        Runs the frozen reference UNet once at timestep 0; pass the result as `bank=` to every denoising step.
        ``log_weights`` (R,) counts a reference as that many copies (see `ReferenceBank`).
        """
        return encode_reference(self.reference_unet, ref_latents, id_tokens, log_weights)

    @apply_forward_hook
    def project_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """Audio feature windows (B, F, window, D) -> audio tokens (B, F, T, cross_attention_dim)."""
        param = next(self.audio_proj.parameters())
        return self.audio_proj(windows.to(param.device, param.dtype))

    @apply_forward_hook
    def project_camera(self, cameras: torch.Tensor) -> torch.Tensor:
        """Camera vectors (B, F, 25) -> camera tokens (B, F, T, cross_attention_dim)."""
        param = next(self.camera_proj.parameters())
        return self.camera_proj(cameras.to(param.device, param.dtype))

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

    def parameter_groups(self, groups) -> list[dict]:
        """Named optimizer parameter groups, one per trainable addition in ``groups`` (marks exactly them as
        trainable): ``[{"name": "motion", "params": [...]}, ...]``."""
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown parameter groups {sorted(unknown)}; the additions are {GROUPS}")
        self.set_trainable(set(groups))
        named = {g: [] for g in GROUPS if g in groups}
        for name, param in self.named_parameters():
            group = adapter_group(name)
            if group in named:
                named[group].append(param)
        return [{"name": g, "params": params} for g, params in named.items() if params]

    def adapter_state_dict(self, groups=GROUPS) -> dict[str, torch.Tensor]:
        """Only the STARCaster additions (temporal blocks, audio/camera K/V, projections, LoRA) in ``groups``."""
        return {name: t for name, t in self.state_dict().items() if adapter_group(name) in groups}

    def save_adapters(self, folder: str | Path, groups=GROUPS) -> None:
        """Writes config.json + one GROUP.safetensors per addition; the 2D base is stored (and loaded) separately."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_config(folder)
        for group in groups:
            tensors = {name: t.detach().contiguous().cpu() for name, t in self.adapter_state_dict([group]).items()}
            if tensors:
                save_file(tensors, folder / f"{group}.safetensors", metadata={"format": "pt"})

    @classmethod
    def from_adapters(
        cls, folder: str | Path, unet2d: UNet2DConditionModel, motion_adapter: MotionAdapter | str | Path | None = None
    ) -> "STARCasterModel":
        """Builds the network around `unet2d` and loads the additions saved by `save_adapters` in `folder`.

        `motion_adapter` only shapes the temporal blocks; their weights come from the adapters folder. Groups the
        folder does not hold keep their initial values (a stage-1 folder has no LoRA or camera stream yet).
        """
        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} is missing: a STARCaster adapters folder holds {CONFIG_FILE} (the model config) and "
                f"GROUP.safetensors files ({', '.join(GROUPS)}), written by STARCasterModel.save_adapters"
            )
        try:
            data = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{config_path} is not valid JSON ({error}); it should hold a STARCasterModel config") from None
        if not isinstance(data, dict):
            raise ValueError(f"{config_path} should hold a JSON object (a STARCasterModel config), not {type(data).__name__}")
        base = data.get("unet_config") or {}
        for key in BASE_KEYS:
            got = json.loads(json.dumps(unet2d.config[key]))  # tuples -> lists, as stored
            if key in base and base[key] != got:
                raise ValueError(f"the adapters in {folder} were made for a 2D UNet with {key}={base[key]}, got {got}")
        additions = STARCasterConfig.from_dict({k: v for k, v in data.items() if k != "unet_config"})
        if not any((folder / f"{g}.safetensors").is_file() for g in GROUPS):
            raise FileNotFoundError(f"{folder} holds no adapter weights: expected some of "
                                    f"{', '.join(g + '.safetensors' for g in GROUPS)}, written by save_adapters")
        model = cls.from_unet2d(unet2d, additions, motion_adapter)
        model.load_adapters(folder)
        return model

    def load_adapters(self, folder: str | Path, groups=GROUPS) -> list[str]:
        """Loads the GROUP.safetensors files present in ``folder``; returns the groups loaded. Each file must match
        this network exactly (missing, unexpected or misshaped keys are errors); absent groups are left alone."""
        loaded = []
        for group in groups:
            path = Path(folder) / f"{group}.safetensors"
            if not path.is_file():
                continue
            try:
                tensors = load_file(path)
            except Exception as error:  # safetensors raises its own error types for truncated/corrupt files
                raise ValueError(
                    f"{path} could not be read as safetensors ({error}); the file is truncated or corrupt. It should "
                    f"hold {GROUP_CONTENT[group]}, written by STARCasterModel.save_adapters"
                ) from None
            self.load_adapter_state_dict(tensors, groups=[group], source=path)
            loaded.append(group)
        return loaded

    def load_adapter_state_dict(self, tensors: dict[str, torch.Tensor], groups=GROUPS,
                                source: str | Path = "state dict") -> None:
        """Loads `adapter_state_dict(groups)`-style tensors; missing, unexpected or misshaped keys raise ValueError."""
        expected = self.adapter_state_dict(groups)
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
