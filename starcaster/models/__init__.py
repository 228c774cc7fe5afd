"""The STARCaster denoising network (paper §3.1): inflated video UNet, multi-source cross-attention, reference
network, LoRA, and the audio/camera projections."""

from .attention import AttentionConditions, MultiSourceCrossAttnProcessor, ReferenceAttnProcessor, StreamScales
from .config import STARCasterConfig
from .projections import AudioProjection, CameraProjection
from .reference import ReferenceBank, ReferenceWriterAttnProcessor
from .unet import STAGE_GROUPS, STARCasterModel, build_motion_adapter

__all__ = [
    "AttentionConditions",
    "AudioProjection",
    "CameraProjection",
    "MultiSourceCrossAttnProcessor",
    "ReferenceAttnProcessor",
    "ReferenceBank",
    "ReferenceWriterAttnProcessor",
    "STAGE_GROUPS",
    "STARCasterConfig",
    "STARCasterModel",
    "StreamScales",
    "build_motion_adapter",
]
