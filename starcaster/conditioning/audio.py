"""Per-video-frame audio features (paper §3.1, "Audio Encoder"; windows as in Hallo).

`sd15`: wav2vec2's hidden states from all 12 transformer layers, concatenated (12 x 768 = 9216 per frame), resampled
to the video frame times. `tiny`: log-mel features, since no speech model is available offline.

Both encoders have the same call: mono float32 samples at `sample_rate` -> (num_frames, feature_dim) float32 on the
CPU, where frame f describes the audio around its centre time (f + 0.5) / fps. Audio shorter than the video is padded
with silence. `audio_windows` then gives each frame its neighbours, which the audio projection turns into tokens.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank


class AudioEncoder(Protocol):
    sample_rate: int
    feature_dim: int

    def __call__(self, samples: np.ndarray, num_frames: int, fps: float) -> torch.Tensor: ...


def audio_windows(features: torch.Tensor, start: int, length: int, radius: int = 2) -> torch.Tensor:
    """(T, D) -> (length, 2 * radius + 1, D): frames start..start+length-1, each with its +-radius neighbours; indices
    past either end repeat the edge frame."""
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"audio features must be a non-empty (T, D) tensor; got {tuple(features.shape)}.")
    if length <= 0 or radius < 0:
        raise ValueError(f"audio_windows needs length > 0 and radius >= 0; got length={length}, radius={radius}.")
    frames = torch.arange(start, start + length, device=features.device)[:, None]
    offsets = torch.arange(-radius, radius + 1, device=features.device)[None, :]
    return features[(frames + offsets).clamp(0, len(features) - 1)]


def clip_audio_features(encoder: AudioEncoder, samples: np.ndarray, num_frames: int, fps: float) -> torch.Tensor:
    """(num_frames, D) features of a whole clip, encoded ONCE, on the CPU.

    Training and inference both call this, so a frame's features are the same function of the audio in both: they
    never depend on where a long clip is cut into segments (wav2vec2 normalises its input and its first layer over
    what it is given). Large features are kept in float16: five minutes of wav2vec2-base's 9216-d frames are 138 MB.
    """
    features = encoder(samples, num_frames, fps)
    return features.half() if features.shape[-1] > 1024 else features.float()


def _prepare_samples(samples, num_frames: int, fps: float, sample_rate: int, min_samples: int = 1) -> np.ndarray:
    """Validate, make mono float32, and pad with silence to cover every video frame (and the model's minimum)."""
    if num_frames <= 0 or not fps > 0:
        raise ValueError(f"Need num_frames > 0 and fps > 0; got num_frames={num_frames}, fps={fps}.")
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise ValueError(f"Audio must be mono (one channel of samples); got an array of shape {samples.shape}.")
    if not np.isfinite(samples).all():
        raise ValueError("The audio contains NaN or infinite samples; re-export it as 16-bit PCM WAV.")
    needed = max(math.ceil(num_frames / fps * sample_rate), min_samples)
    if len(samples) < needed:
        samples = np.pad(samples, (0, needed - len(samples)))
    return samples


def _interpolate_rows(rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of (T, D) `rows` at fractional row `positions` (clamped to the ends)."""
    positions = positions.clamp(0, len(rows) - 1)
    lower = positions.floor().long()
    upper = (lower + 1).clamp(max=len(rows) - 1)
    weight = (positions - lower).unsqueeze(-1).to(rows.dtype)
    return rows[lower] * (1 - weight) + rows[upper] * weight


class MelAudioEncoder:
    """Log-mel features per video frame for the `tiny` preset.

    Each video frame is split into `sub_frames` equal slices and the log-mel spectrum is read at each slice's centre,
    so feature_dim = n_mels * sub_frames and the features keep the within-frame timing that lip motion needs.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 32,
        sub_frames: int = 4,
        n_fft: int = 400,
        hop_length: int = 160,
        f_min: float = 40.0,
        f_max: float | None = None,
    ):
        self.sample_rate, self.n_mels, self.sub_frames = sample_rate, n_mels, sub_frames
        self.n_fft, self.hop_length = n_fft, hop_length
        self.feature_dim = n_mels * sub_frames
        self.window = torch.hann_window(n_fft)
        filters = mel_filter_bank(
            n_fft // 2 + 1, n_mels, f_min, f_max or sample_rate / 2, sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.filters = torch.from_numpy(filters).float().T  # (n_mels, frequencies)

    @property
    def config(self) -> dict:
        """What must match between training and inference."""
        return dict(
            sample_rate=self.sample_rate, n_mels=self.n_mels, sub_frames=self.sub_frames,
            n_fft=self.n_fft, hop_length=self.hop_length,
        )  # fmt: skip

    def log_mel(self, samples: np.ndarray) -> torch.Tensor:
        """(n,) samples -> (columns, n_mels), column i centred on sample i * hop_length, values about [-1, 1]."""
        spectrum = torch.stft(
            torch.from_numpy(samples),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",  # beyond the clip is silence, not a mirror image of it
            return_complex=True,
        )
        # Scaled so a full-scale sine peaks near power 0.25 whatever n_fft is.
        power = spectrum.abs().square() / self.window.sum().square()
        mel = self.filters @ power
        return ((mel.clamp_min(1e-8).log10() + 4.0) / 4.0).T  # silence -> -1, a loud tone -> about +0.85

    def __call__(self, samples: np.ndarray, num_frames: int, fps: float) -> torch.Tensor:
        samples = _prepare_samples(samples, num_frames, fps, self.sample_rate)
        columns = self.log_mel(samples)
        slices = (torch.arange(num_frames * self.sub_frames, dtype=torch.float64) + 0.5) / self.sub_frames
        positions = slices / fps * self.sample_rate / self.hop_length
        return _interpolate_rows(columns, positions).reshape(num_frames, self.feature_dim).float()


class Wav2Vec2AudioEncoder:
    """wav2vec2 hidden states of every transformer layer per video frame, for the `sd15` preset.

    wav2vec2-base emits one vector every 20 ms (a 320-sample stride, 400-sample receptive field). Long audio runs in
    windows of `window_seconds` plus `context_seconds` of real audio on each side, whose outputs are dropped; the
    windows sit on the model's own 20 ms grid, so they stitch without a seam and memory is bounded by the window.
    """

    def __init__(self, model, feature_extractor, window_seconds: float = 20.0, context_seconds: float = 2.0):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        config = model.config
        self.num_layers, self.hidden_size = config.num_hidden_layers, config.hidden_size
        self.feature_dim = self.num_layers * self.hidden_size
        self.stride, self.receptive_field = 1, 1
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            self.receptive_field += (kernel - 1) * self.stride
            self.stride *= stride
        self.window_steps = max(1, int(window_seconds * self.sample_rate) // self.stride)
        self.context_steps = max(1, int(context_seconds * self.sample_rate) // self.stride)

    @classmethod
    def from_pretrained(cls, folder, device="cpu", dtype=torch.float32, **kwargs) -> "Wav2Vec2AudioEncoder":
        """Load from `folder/wav2vec2` (or `folder` itself): config.json, preprocessor_config.json, *.safetensors."""
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        folder = Path(folder)
        path = folder / "wav2vec2" if (folder / "wav2vec2").is_dir() else folder
        missing = [n for n in ("config.json", "preprocessor_config.json") if not (path / n).is_file()]
        if not any(path.glob("*.safetensors")):
            missing.append("model.safetensors")
        if missing:
            raise ValueError(
                f"wav2vec2 is incomplete in '{path}': missing {', '.join(missing)}. Put facebook/wav2vec2-base-960h's "
                "config.json, preprocessor_config.json and model.safetensors there; see checkpoints/README.md."
            )
        # A CTC checkpoint (wav2vec2-base-960h) loads into the bare model; its lm_head is simply not used.
        model = Wav2Vec2Model.from_pretrained(path, use_safetensors=True, dtype=dtype).to(device)
        return cls(model, Wav2Vec2FeatureExtractor.from_pretrained(path), **kwargs)

    def _num_steps(self, num_samples: int) -> int:
        return (num_samples - self.receptive_field) // self.stride + 1

    def _group_norm(self):
        """wav2vec2-base's first conv layer normalises each channel over the time of whatever it is given; None for
        the layer-norm variants (wav2vec2-large-lv60 and friends), which are local."""
        first = self.model.feature_extractor.conv_layers[0]
        return getattr(first, "layer_norm", None) if isinstance(getattr(first, "layer_norm", None),
                                                                    torch.nn.GroupNorm) else None

    @torch.inference_mode()
    def _clip_statistics(self, samples: np.ndarray, chunk_steps: int = 50_000):
        """Mean and variance per channel of the first conv layer's output over the WHOLE clip, accumulated in chunks
        (the conv is local, so chunks on its stride grid reproduce it exactly) with memory bounded for long audio."""
        conv = self.model.feature_extractor.conv_layers[0].conv
        stride, kernel = conv.stride[0], conv.kernel_size[0]
        parameter = next(self.model.parameters())
        total = (len(samples) - kernel) // stride + 1
        s1 = s2 = 0.0
        for first in range(0, total, chunk_steps):
            last = min(first + chunk_steps, total)
            piece = torch.from_numpy(samples[first * stride:(last - 1) * stride + kernel])[None, None]
            out = conv(piece.to(parameter.device, parameter.dtype)).double()[0]
            s1, s2 = s1 + out.sum(1), s2 + out.square().sum(1)
        mean = s1 / total
        return mean, s2 / total - mean.square()

    @torch.inference_mode()
    def _hidden_states(self, samples: np.ndarray, statistics=None) -> torch.Tensor:
        """(n,) samples -> (steps, layers * hidden) on the CPU, layer-major (layer 1's 768 values first)."""
        parameter = next(self.model.parameters())
        inputs = torch.from_numpy(samples)[None].to(parameter.device, parameter.dtype)
        norm, hook = self._group_norm(), None
        if norm is not None and statistics is not None:
            mean, var = statistics

            def fixed(module, args, output):  # the clip's statistics instead of this window's
                x = args[0].double()
                y = (x - mean.to(x.device)[None, :, None]) / torch.sqrt(var.to(x.device)[None, :, None] + module.eps)
                return (y * module.weight.double()[None, :, None] + module.bias.double()[None, :, None]).to(output)

            hook = norm.register_forward_hook(fixed)
        try:
            output = self.model(inputs, output_hidden_states=True)
        finally:
            if hook is not None:
                hook.remove()
        # hidden_states[0] is the input to the first transformer layer; [1:] are the layers' outputs.
        layers = output.hidden_states[1 : self.num_layers + 1]
        return torch.cat(layers, dim=-1)[0].float().cpu()

    def __call__(self, samples: np.ndarray, num_frames: int, fps: float) -> torch.Tensor:
        samples = _prepare_samples(samples, num_frames, fps, self.sample_rate, min_samples=self.receptive_field)
        if self.feature_extractor.do_normalize:
            # What the feature extractor does, over the whole clip: every window then sees the same scaling.
            samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
        total = self._num_steps(len(samples))
        # Step k covers samples [k * stride, k * stride + receptive_field); its centre is the time it describes.
        centres = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps * self.sample_rate
        positions = ((centres - (self.receptive_field - 1) / 2) / self.stride).clamp(0, total - 1)
        owner = positions.floor().long()  # the window whose core holds a frame's lower neighbour computes it

        # Windows normalise with the whole clip's statistics, so cutting the clip changes no normalisation (only
        # what attention can see, which the context margins keep small).
        statistics = self._clip_statistics(samples) if total > self.window_steps and self._group_norm() else None
        features = torch.empty(num_frames, self.feature_dim)
        for first in range(0, total, self.window_steps):
            last = min(first + self.window_steps, total)
            frames = ((owner >= first) & (owner < last)).nonzero().flatten()
            if len(frames) == 0:
                continue
            lo, hi = max(0, first - self.context_steps), min(total, last + self.context_steps)
            # The last window takes the clip to its very end, so a clip in one window is exactly one pass.
            end = len(samples) if hi == total else (hi - 1) * self.stride + self.receptive_field
            hidden = self._hidden_states(samples[lo * self.stride : end], statistics)
            features[frames] = _interpolate_rows(hidden, positions[frames] - lo).float()
        return features
