"""LoRA on the video UNet's spatial self-attention (paper §3.1 "Reference Network", Supp. B: rank 64).

The low-rank updates let the denoising UNet's self-attention adapt to the reference features concatenated to its
keys/values, while the 2D weights stay frozen. They must never touch the temporal blocks: peft matches a *list* of
target modules by suffix, so `attn1.to_q` would also hit `motion_modules.*.attn1.to_q`; a regex string (matched
against the whole module name) lets us exclude them.
"""

from __future__ import annotations

from peft import LoraConfig
from torch import nn

# Whole-name regex: any spatial `...attn1.to_q/k/v`, unless the name contains `motion_modules`.
SELF_ATTENTION_LORA_TARGETS = r"^(?!.*motion_modules).*\.attn1\.to_[qkv]$"
ADAPTER_NAME = "starcaster"


def add_self_attention_lora(unet: nn.Module, rank: int) -> None:
    """Injects LoRA (B initialised to zero, so the UNet is unchanged) into every spatial attn1 q/k/v of `unet`."""
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,  # scaling alpha / r = 1: the rank changes capacity, not the update's magnitude
        target_modules=SELF_ATTENTION_LORA_TARGETS,
        init_lora_weights=True,  # A random, B zero: identity at initialisation
    )
    unet.add_adapter(config, adapter_name=ADAPTER_NAME)
