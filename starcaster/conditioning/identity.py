"""Identity tokens (paper §3.1, "Preliminary"): an ArcFace-like face embedding -> Arc2Face's CLIP token sequence.

Arc2Face repurposes SD-1.5's CLIP text encoder as a face encoder: the embedding v (512-d, L2-normalised, zero-padded to
the encoder width) replaces the token embedding of the word "id" in the fixed prompt "photo of a id person", and the
fine-tuned encoder maps the prompt to c_id (77 x 768), which the UNet reads through cross-attention. The empty prompt
through the same encoder is the unconditional c_id used for classifier-free guidance.

`TinyFaceEncoder` is the `tiny` preset's stand-in for ArcFace (trained on the synthetic world); `ArcFaceEmbedder`
(in `arcface.py`) runs the real ArcFace ONNX model for `sd15`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from .arcface import ArcFaceEmbedder  # noqa: F401  (part of this module's public API)
from .tokenizer import build_tiny_tokenizer  # noqa: F401  (part of this module's public API)

ARC2FACE_PROMPT = "photo of a id person"
ID_PLACEHOLDER = "id"

__all__ = [
    "ARC2FACE_PROMPT", "Arc2FaceEncoder", "ArcFaceEmbedder", "TinyFaceEncoder", "build_tiny_tokenizer",
    "load_identity_embedding",
]


def load_identity_embedding(identity, expected_dim: int) -> np.ndarray:
    """A saved identity embedding -> float32 ``(expected_dim,)``, checked; ``ValueError`` saying what is wrong.

    ``identity`` is a path to a ``.npy`` file written by ``numpy.save`` (never unpickled) or an array-like of shape
    ``(expected_dim,)``, ``(1, expected_dim)`` or ``(expected_dim, 1)``. The values are returned as they are: the
    encoders normalise them.
    """
    name = "The identity embedding"
    if isinstance(identity, (str, os.PathLike)):
        path = Path(identity)
        name = f"The identity embedding '{path.name}'"
        if not path.is_file():
            raise ValueError(f"The identity embedding file '{path}' does not exist.")
        try:
            identity = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            # numpy's own message here talks about allow_pickle, which would be the wrong advice.
            raise ValueError(f"{name} is not a valid .npy array: save the embedding with numpy.save.") from None
        if not isinstance(identity, np.ndarray):  # an .npz archive holds several arrays
            raise ValueError(f"{name} is an .npz archive, not a .npy array: save one array with numpy.save.")
    try:
        array = np.asarray(identity)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of {expected_dim} numbers.") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold numbers, got an array of {array.dtype}.")
    shape = array.shape
    if array.ndim == 2 and 1 in shape:
        array = array.reshape(-1)
    if array.shape != (expected_dim,):
        raise ValueError(
            f"{name} must hold {expected_dim} numbers (shape ({expected_dim},) or (1, {expected_dim})), "
            f"got shape {shape}."
        )
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if float(np.linalg.norm(array)) < 1e-6:
        raise ValueError(f"{name} is all zeros: it names no identity.")
    return array


class Arc2FaceEncoder(nn.Module):
    """Arc2Face's ID encoder: (B, E) face embeddings -> (B, 77, hidden) identity tokens c_id."""

    def __init__(self, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer):
        super().__init__()
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        placeholder = tokenizer.encode(ID_PLACEHOLDER, add_special_tokens=False)
        if len(placeholder) != 1:
            raise ValueError(
                f"The tokenizer splits '{ID_PLACEHOLDER}' into {len(placeholder)} tokens; Arc2Face needs it to be one "
                "token. Use SD-1.5's CLIP tokenizer (or build_tiny_tokenizer for the tiny preset)."
            )
        prompt_ids = self._tokenize(ARC2FACE_PROMPT)
        positions = (prompt_ids[0] == placeholder[0]).nonzero().flatten()
        if len(positions) != 1:
            raise ValueError(f"'{ID_PLACEHOLDER}' must occur exactly once in '{ARC2FACE_PROMPT}' once tokenised.")
        self.placeholder_index = int(positions[0])
        self.register_buffer("prompt_ids", prompt_ids, persistent=False)
        self.register_buffer("empty_ids", self._tokenize(""), persistent=False)

    @classmethod
    def from_pretrained(cls, folder, dtype: torch.dtype | None = None) -> "Arc2FaceEncoder":
        """Load `folder/text_encoder` (safetensors) and `folder/tokenizer`."""
        folder = Path(folder)
        encoder_dir, tokenizer_dir = folder / "text_encoder", folder / "tokenizer"
        missing = [] if (encoder_dir / "config.json").is_file() else [str(encoder_dir / "config.json")]
        if not any((tokenizer_dir / name).is_file() for name in ("vocab.json", "tokenizer.json")):
            missing.append(str(tokenizer_dir / "vocab.json"))
        if not any(encoder_dir.glob("*.safetensors")):
            missing.append(str(encoder_dir / "model.safetensors"))
        if missing:
            hint = ""
            if (encoder_dir / "pytorch_model.bin").is_file():
                hint = (
                    " Arc2Face publishes the encoder as pytorch_model.bin; weights are read from safetensors only, so "
                    "convert it once as shown in checkpoints/README.md."
                )
            raise ValueError(
                f"The Arc2Face ID encoder is incomplete in '{folder}': missing {', '.join(missing)}. text_encoder/ "
                "holds Arc2Face's encoder (FoivosPar/Arc2Face, encoder/) and tokenizer/ SD-1.5's CLIP tokenizer; see "
                f"checkpoints/README.md.{hint}"
            )
        text_encoder = CLIPTextModel.from_pretrained(encoder_dir, use_safetensors=True, dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
        return cls(text_encoder.eval(), tokenizer)

    @property
    def hidden_size(self) -> int:
        return self.text_encoder.config.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return self.text_encoder.get_input_embeddings().weight.dtype

    def _tokenize(self, text: str) -> torch.Tensor:
        length = self.tokenizer.model_max_length
        if length > self.text_encoder.config.max_position_embeddings:
            raise ValueError(
                f"The tokenizer pads to {length} tokens but the text encoder has only "
                f"{self.text_encoder.config.max_position_embeddings} positions; set model_max_length in "
                "tokenizer_config.json to match."
            )
        ids = self.tokenizer(text, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        return ids.input_ids

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) or (E,) face embedding(s), E <= hidden_size -> (B, 77, hidden_size) identity tokens."""
        embedding = torch.as_tensor(embedding)
        if embedding.ndim == 1:
            embedding = embedding[None]
        if embedding.ndim != 2 or embedding.shape[-1] > self.hidden_size:
            raise ValueError(
                f"An identity embedding must be (batch, E) with E <= {self.hidden_size}; got {tuple(embedding.shape)}."
            )
        embedding = embedding.to(self.prompt_ids.device, torch.float32)
        norm = embedding.norm(dim=-1, keepdim=True)
        if not torch.isfinite(embedding).all() or (norm < 1e-8).any():
            raise ValueError("An identity embedding is all zeros or not finite; extract it again from a face photo.")
        id_tokens = F.pad(embedding / norm, (0, self.hidden_size - embedding.shape[-1])).to(self.dtype)
        return self.encode(self.prompt_ids.expand(len(embedding), -1), id_tokens)

    @apply_forward_hook  # model CPU offload moves the encoder to the accelerator for this call too
    def unconditional(self, batch_size: int = 1) -> torch.Tensor:
        """The empty prompt through the same encoder -> (B, 77, hidden_size)."""
        return self.encode(self.empty_ids.expand(batch_size, -1))

    def encode(self, input_ids: torch.Tensor, id_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """CLIP's last_hidden_state (after the final layer norm), with the placeholder's embedding replaced by
        `id_tokens` (B, hidden) when given."""
        if id_tokens is None:
            return self.text_encoder(input_ids=input_ids).last_hidden_state
        index = self.placeholder_index

        # CLIPTextModel.forward takes token ids, not embeddings. Rewriting the token-embedding layer's output for this
        # one call leaves every later step (positions, causal mask, attention backend, final norm) CLIP's own.
        def write_identity(module, args, token_embeds):
            token_embeds = token_embeds.clone()
            token_embeds[:, index] = id_tokens.to(token_embeds.dtype)
            return token_embeds

        hook = self.text_encoder.get_input_embeddings().register_forward_hook(write_identity)
        try:
            return self.text_encoder(input_ids=input_ids).last_hidden_state
        finally:
            hook.remove()


class TinyFaceEncoder(ModelMixin, ConfigMixin):
    """A small CNN standing in for ArcFace in the `tiny` preset: aligned face (B, 3, H, W) in [-1, 1] -> (B, E) unit
    vectors. Trained on the synthetic world's identities; the face is resized to `input_size` first, as ArcFace's
    112 x 112 crop is."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        embedding_dim: int = 512,
        block_out_channels: tuple[int, ...] = (32, 64, 128, 256),
        input_size: int = 112,
        norm_num_groups: int = 8,
    ):
        super().__init__()
        layers, channels = [nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)], block_out_channels[0]
        for out in block_out_channels:
            layers += [
                nn.GroupNorm(norm_num_groups, channels),
                nn.SiLU(),
                nn.Conv2d(channels, out, 3, stride=2, padding=1),  # halve the resolution each block
                nn.GroupNorm(norm_num_groups, out),
                nn.SiLU(),
                nn.Conv2d(out, out, 3, padding=1),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        # Pool to 4x4, not 1x1: where a feature is (eyes vs mouth) is part of who someone is.
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.proj = nn.Linear(channels * 16, embedding_dim)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.ndim != 4 or faces.shape[1] != self.config.in_channels:
            raise ValueError(f"TinyFaceEncoder expects (B, {self.config.in_channels}, H, W); got {tuple(faces.shape)}.")
        size = self.config.input_size
        if faces.shape[-2:] != (size, size):
            faces = F.interpolate(faces, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        features = self.pool(self.features(faces.to(self.dtype)))
        return F.normalize(self.proj(features.flatten(1)), dim=-1)
