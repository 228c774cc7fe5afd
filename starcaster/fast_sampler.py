"""The fast sampler's parts (issue #12): a consistency-distilled copy of the video model, LCMScheduler, a tiny decoder.

The distilled model ("student") differs from the shipped model only in its video UNet path: the reference UNet is the
same frozen 2D UNet (its bank is structure, shared by both), so a folder stores only the student's other weights,
``fast_model/student.safetensors``, and loading shares the reference UNet with the shipped model instead of holding
a second copy. Guidance is folded in at distillation (the student predicts what the teacher did at CFG
``guidance``), so the fast sampler runs one UNet row per step, no unconditional batch.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from diffusers import AutoencoderTiny, LCMScheduler
from safetensors.torch import load_file, save_file

# SD-1.5's noise schedule (the one the shipped model was trained on) sampled the LCM way: timesteps of a 50-step
# DDIM grid (the grid distillation trains on), boundary-condition scalings with timestep_scaling 10.
FAST_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", original_inference_steps=50, timestep_scaling=10.0, clip_sample=False,
)
STUDENT_FILE = "student.safetensors"
SHARED_PREFIX = "reference_unet."  # frozen, identical in teacher and student


def student_state_dict(model) -> dict[str, torch.Tensor]:
    """The weights of ``model`` that a student owns (everything but the shared reference UNet)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(SHARED_PREFIX)}


def student_copy(model):
    """A copy of ``model`` that shares its (frozen) reference UNet: the start of distillation, or a random-weights
    stand-in of the same speed."""
    reference, model.reference_unet = model.reference_unet, None
    try:
        twin = copy.deepcopy(model)
    finally:
        model.reference_unet = reference
    twin.reference_unet = reference
    return twin


def save_fast_model(model, folder: str | Path, about: dict | None = None) -> Path:
    """``folder/student.safetensors`` (fp16: the tiny student is ~9 MB) and what it was distilled with."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in student_state_dict(model).items()}
    save_file(tensors, str(folder / STUDENT_FILE))
    (folder / "distillation.json").write_text(json.dumps(about or {}, indent=2) + "\n")
    return folder


def load_fast_model(model, folder: str | Path):
    """The shipped ``model`` with the student's weights from ``folder``, sharing ``model``'s reference UNet."""
    path = Path(folder) / STUDENT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {STUDENT_FILE} (the distilled fast model, written by the "
                                "distill training step).")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated or corrupt files
        raise ValueError(f"Could not read {path}: {e}. Is the file truncated?") from None
    student = student_copy(model)
    expected = student_state_dict(student).keys()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this model: {len(missing)} weights missing (e.g. {missing[:2]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}). Was it distilled from another one?")
    dtype = next(model.parameters()).dtype
    student.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=False)
    return student.eval().requires_grad_(False)


def fast_scheduler(folder: str | Path | None = None) -> LCMScheduler:
    if folder is not None and Path(folder).is_dir():
        return LCMScheduler.from_pretrained(folder)
    return LCMScheduler(**FAST_SCHEDULER_CONFIG)


def load_fast_decoder(folder: str | Path) -> AutoencoderTiny:
    """The tiny decoder saved by ``save_pretrained`` (``config.json`` + ``diffusion_pytorch_model.safetensors``).

    Read by hand rather than with ``from_pretrained``: AutoencoderTiny writes ``block_out_channels`` into its own
    config (a copy of the decoder's) but does not take it back, so ``from_pretrained`` warns on every start that the
    folder's config.json has an unexpected entry."""
    folder = Path(folder)
    try:
        config = {k: v for k, v in AutoencoderTiny.load_config(folder).items() if k != "block_out_channels"}
        decoder = AutoencoderTiny.from_config(config)
        decoder.load_state_dict(load_file(str(folder / "diffusion_pytorch_model.safetensors")))
    except Exception as e:  # diffusers, safetensors and torch each raise their own types for a bad folder
        raise ValueError(f"Could not load the fast decoder (AutoencoderTiny) from {folder}: {str(e).rstrip('.')}. "
                         "Is a file missing or truncated?") from None
    return decoder.eval().requires_grad_(False)
