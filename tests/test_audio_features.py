import numpy as np
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Model

from fakes import tiny_wav2vec2_config
from starcaster.conditioning.audio import MelAudioEncoder, Wav2Vec2AudioEncoder, audio_windows

SR, FPS = 16000, 25.0


def tone_burst(num_frames, first, last, amplitude=0.5, freq=1000.0):
    """Silence with a sine in video frames first..last (inclusive)."""
    t = np.arange(int(num_frames / FPS * SR)) / SR
    samples = np.zeros_like(t, dtype=np.float32)
    on = (t >= first / FPS) & (t < (last + 1) / FPS)
    samples[on] = amplitude * np.sin(2 * np.pi * freq * t[on])
    return samples




def feature_extractor():
    return Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True, return_attention_mask=False)


# --------------------------------------------------------------------------------------------------------------------
# log-mel (tiny)


def test_mel_features_are_frame_aligned():
    encoder = MelAudioEncoder()
    features = encoder(tone_burst(30, 10, 12), num_frames=30, fps=FPS)
    assert features.shape == (30, encoder.feature_dim) == (30, 32 * 4)
    assert features.dtype == torch.float32
    loudness = features.max(dim=1).values
    assert (loudness[10:13] > 0).all()  # the tone
    silent = torch.cat([loudness[:9], loudness[14:]])
    torch.testing.assert_close(silent, torch.full_like(silent, -1.0))  # silence is the floor, exactly
    # The neighbours only see the STFT window's overlap with the burst edge: in their last / first slice.
    sub = features.reshape(30, encoder.sub_frames, encoder.n_mels).max(-1).values
    assert sub[9, -1] > -1 and (sub[9, :2] == -1).all() and sub[13, 0] > -1 and (sub[13, -2:] == -1).all()
    assert loudness[9] < loudness[10] and loudness[13] < loudness[12]


def test_mel_features_follow_fps_and_pad_short_audio():
    encoder = MelAudioEncoder()
    burst = tone_burst(30, 10, 12)  # 1.2 s of audio
    at_50 = encoder(burst, num_frames=60, fps=50.0)  # the same audio at twice the frame rate
    loud = (at_50.max(dim=1).values > 0).nonzero().flatten().tolist()
    assert loud == list(range(20, 26))
    # A video longer than its audio: the extra frames hear silence, not the last sound stretched.
    long = encoder(burst, num_frames=50, fps=FPS)
    assert long.shape == (50, encoder.feature_dim) and (long[31:] == -1).all()


def test_bad_audio_is_refused():
    encoder = MelAudioEncoder()
    with pytest.raises(ValueError, match="mono"):
        encoder(np.zeros((2, 16000), np.float32), 10, FPS)
    with pytest.raises(ValueError, match="NaN"):
        encoder(np.full(16000, np.nan, np.float32), 10, FPS)
    with pytest.raises(ValueError, match="num_frames > 0"):
        encoder(np.zeros(16000, np.float32), 0, FPS)


# --------------------------------------------------------------------------------------------------------------------
# windows


def test_audio_windows_clamp_at_the_edges():
    features = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3)  # frame i holds the value i
    windows = audio_windows(features, start=0, length=10, radius=2)
    assert windows.shape == (10, 5, 3)
    assert windows[0, :, 0].tolist() == [0, 0, 0, 1, 2]
    assert windows[5, :, 0].tolist() == [3, 4, 5, 6, 7]
    assert windows[9, :, 0].tolist() == [7, 8, 9, 9, 9]
    later = audio_windows(features, start=8, length=4, radius=1)  # a segment running past the audio
    assert later[:, :, 0].tolist() == [[7, 8, 9], [8, 9, 9], [9, 9, 9], [9, 9, 9]]
    with pytest.raises(ValueError):
        audio_windows(features, start=0, length=0)


# --------------------------------------------------------------------------------------------------------------------
# wav2vec2 (sd15)


def test_wav2vec2_loads_a_ctc_checkpoint_and_gives_all_layers(tmp_path):
    torch.manual_seed(0)
    ctc = Wav2Vec2ForCTC(tiny_wav2vec2_config()).eval()  # wav2vec2-base-960h is a CTC checkpoint
    ctc.save_pretrained(tmp_path / "wav2vec2")
    feature_extractor().save_pretrained(tmp_path / "wav2vec2")
    assert (tmp_path / "wav2vec2" / "model.safetensors").is_file()

    encoder = Wav2Vec2AudioEncoder.from_pretrained(tmp_path)
    assert (encoder.stride, encoder.receptive_field) == (320, 400)  # wav2vec2-base's 20 ms grid
    audio = (np.random.default_rng(0).standard_normal(SR) * 0.1).astype(np.float32)  # 1 s
    features = encoder(audio, num_frames=25, fps=FPS)
    assert features.shape == (25, 3 * 32) == (25, encoder.feature_dim)

    # Reference: the CTC model's own encoder on the normalised clip, layers concatenated, read at the frame centres.
    normalised = feature_extractor()(audio, sampling_rate=SR, return_tensors="pt").input_values
    with torch.no_grad():
        hidden = ctc.wav2vec2(normalised, output_hidden_states=True).hidden_states[1:]
    steps = torch.cat(hidden, -1)[0]
    assert len(steps) == 49
    # Frame f's centre, sample 640 f + 320, falls between steps 2f and 2f + 1 (step k covers samples
    # 320 k .. 320 k + 399, centre 320 k + 199.5).
    w = (320 - 199.5) / 320
    expected = torch.stack([steps[2 * f] * (1 - w) + steps[2 * f + 1] * w for f in range(24)])
    torch.testing.assert_close(features[:24], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm,tolerance", [("layer", 0.005), ("group", 0.01)])
def test_windowed_matches_one_shot(norm, tolerance):
    torch.manual_seed(0)
    model = Wav2Vec2Model(tiny_wav2vec2_config(norm))
    audio = (np.random.default_rng(1).standard_normal(3 * SR) * 0.1).astype(np.float32)
    one_shot = Wav2Vec2AudioEncoder(model, feature_extractor(), window_seconds=60)(audio, 75, FPS)

    lengths = []
    hook = model.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[-1]))
    windowed = Wav2Vec2AudioEncoder(model, feature_extractor(), window_seconds=1.0, context_seconds=0.5)
    features = windowed(audio, 75, FPS)
    hook.remove()

    # Computation is per window: 3 windows, none longer than 1 s plus 0.5 s of context on each side.
    assert len(lengths) == 3 and max(lengths) <= 2 * SR + windowed.receptive_field
    # Transformer attention sees only the window, so windows differ slightly from one pass; context keeps it small.
    # wav2vec2-base's first conv layer is group-normalised over time: windows use the whole clip's statistics.
    error = ((features - one_shot).norm(dim=1) / one_shot.norm(dim=1)).max()
    assert error < tolerance
    without_context = Wav2Vec2AudioEncoder(model, feature_extractor(), window_seconds=1.0, context_seconds=0.0)
    assert ((without_context(audio, 75, FPS) - one_shot).norm(dim=1) / one_shot.norm(dim=1)).max() > 2 * error


def test_wav2vec2_missing_files_are_named(tmp_path):
    (tmp_path / "wav2vec2").mkdir()
    (tmp_path / "wav2vec2" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="preprocessor_config.json, model.safetensors.*checkpoints/README.md"):
        Wav2Vec2AudioEncoder.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------------------------------
# the sampler's features are the whole clip's (they must not depend on where the clip is cut into segments)


def loud_then_quiet(seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(int(seconds * SR)).astype(np.float32) * 0.3
    samples[len(samples) // 2:] *= 0.01  # a loud half, then a quiet one: per-slice normalisation would differ
    return samples


@pytest.mark.parametrize("encoder_name", ["mel", "wav2vec2"])
def test_sampler_features_equal_whole_clip_features(encoder_name):
    from types import SimpleNamespace

    from starcaster.autoregression import frame_audio_tokens
    from starcaster.pipeline_inputs import prepare_inputs
    from starcaster.presets import TINY

    if encoder_name == "mel":
        encoder = MelAudioEncoder()
    else:
        torch.manual_seed(0)
        encoder = Wav2Vec2AudioEncoder(Wav2Vec2Model(tiny_wav2vec2_config("group")).eval(), feature_extractor())
    samples = loud_then_quiet()
    pipe = SimpleNamespace(settings=TINY, audio_encoder=encoder)
    dim = TINY.face_encoder["embedding_dim"]
    inputs = prepare_inputs(pipe, "identity", audio=(samples, SR), identity=np.ones(dim, np.float32))
    whole = encoder(inputs.samples, inputs.num_frames, FPS).float()  # the loaded (level-checked) audio, whole
    # The sampler reads segment k's frames [16k - 2, 16k + 16) as windows of the prepared features.
    identity_proj = SimpleNamespace(project_audio=lambda windows: windows)  # the windows themselves
    for first in range(-2, inputs.num_frames, 16):
        got = frame_audio_tokens(identity_proj, inputs.audio_features[None].float(), first, first + 18, 2)
        want = audio_windows(whole, first, 18, 2)[None]
        assert ((got - want).norm() / want.norm()) < 1e-3
    assert inputs.audio_features.shape == whole.shape


def test_windows_normalise_with_the_whole_clips_statistics():
    """Loud then quiet audio: per-window group-norm statistics would differ wildly between the halves."""
    torch.manual_seed(0)
    model = Wav2Vec2Model(tiny_wav2vec2_config("group"))
    audio = loud_then_quiet(4.0)
    one_shot = Wav2Vec2AudioEncoder(model, feature_extractor(), window_seconds=60)(audio, 100, FPS)
    windowed = Wav2Vec2AudioEncoder(model, feature_extractor(), window_seconds=1.0, context_seconds=0.5)
    error = ((windowed(audio, 100, FPS) - one_shot).norm(dim=1) / one_shot.norm(dim=1)).max()
    windowed._clip_statistics = lambda samples: None  # what per-window statistics would give
    unfixed = ((windowed(audio, 100, FPS) - one_shot).norm(dim=1) / one_shot.norm(dim=1)).max()
    assert error < 0.02 and unfixed > 5 * error
