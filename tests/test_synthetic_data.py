"""The synthetic clips: determinism, identity splits, audio/mouth alignment, caching and collation."""

import numpy as np
import pytest
import torch
from scipy.signal import butter, sosfilt

from starcaster.conditioning.camera import camera_vector
from starcaster.synthetic.dataset import EVAL_IDS, TRAIN_IDS, VAL_IDS, SyntheticTalkingHeads, make_clip
from starcaster.synthetic.motion import blinks, head_motion
from starcaster.synthetic.phonemes import (
    VISEMES,
    Utterance,
    frame_average,
    frame_visemes,
    mouth_control,
    random_utterance,
)
from starcaster.synthetic.speech import Voice, synthesize

TINY = dict(num_frames=4, size=32)


def _same(a, b):
    for k in a:
        va, vb = a[k], b[k]
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, k


def test_same_seed_same_clip_other_seed_differs():
    a, b = make_clip(11, seed=3, **TINY).to_tensors(), make_clip(11, seed=3, **TINY).to_tensors()
    _same(a, b)
    c = make_clip(11, seed=4, **TINY)
    assert not np.array_equal(c.frames, a["frames"].numpy())


def test_clip_contents_are_consistent():
    clip = make_clip(21, seed=0, num_frames=6, size=32, mode="talk")
    assert clip.frames.shape == (6, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and len(clip.audio) == 6 * clip.sample_rate // 25
    np.testing.assert_allclose(clip.cameras, camera_vector(clip.extrinsics, clip.intrinsics), atol=1e-6)
    assert clip.mouth.shape == (6, 4) and clip.pose.shape == (6, 6) and clip.blink.shape == (6,)
    assert clip.visemes.shape == (6,) and clip.visemes.max() < len(VISEMES)
    assert clip.reference.shape == (32, 32, 3)
    assert abs(clip.phoneme_durations.sum() - 6 / 25) < 1e-4


def test_orbit_clips_move_the_camera_and_keep_the_head_still():
    clip = make_clip(8, seed=1, num_frames=6, size=32, mode="orbit")
    centres = -np.einsum("fji,fj->fi", clip.extrinsics[:, :3, :3], clip.extrinsics[:, :3, 3])
    assert np.linalg.norm(centres[0] - centres[-1]) > 1e-3
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 2.7, atol=1e-3)
    assert np.all(clip.mouth[:, 0] == 0) and np.all(clip.audio == 0)


def test_held_out_identities_never_in_training():
    assert set(TRAIN_IDS).isdisjoint(EVAL_IDS)
    train = SyntheticTalkingHeads("train", seed=0, **TINY)
    evals = SyntheticTalkingHeads("eval", seed=0, **TINY)
    train_ids = {train.identity_of(i) for i in range(2000)}
    eval_ids = {evals.identity_of(i) for i in range(2000)}
    assert train_ids <= set(TRAIN_IDS) and eval_ids <= set(EVAL_IDS) and train_ids.isdisjoint(eval_ids)
    assert len(eval_ids) == len(EVAL_IDS)  # every held-out head is evaluated


def test_the_development_split_is_disjoint_from_both_and_has_its_own_clips():
    assert set(VAL_IDS).isdisjoint(TRAIN_IDS) and set(VAL_IDS).isdisjoint(EVAL_IDS)
    val = SyntheticTalkingHeads("val", seed=0, **TINY)
    assert {val.identity_of(i) for i in range(len(VAL_IDS))} == set(VAL_IDS)
    a, b = val.clip(0), SyntheticTalkingHeads("eval", seed=0, **TINY).clip(0)
    assert not np.array_equal(a.audio, b.audio) and not np.array_equal(a.reference, b.reference)
    with pytest.raises(ValueError, match="split must be one of train, eval, val"):
        SyntheticTalkingHeads("test")


def test_dataset_items_deterministic_collate_and_cache(tmp_path):
    ds = SyntheticTalkingHeads("eval", mode="mixed", seed=5, cache_dir=tmp_path, length=10, **TINY)
    assert len(ds) == 10
    first = ds[2]
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = ds[2]  # read back from the cache
    fresh = SyntheticTalkingHeads("eval", mode="mixed", seed=5, length=10, **TINY)[2]  # rendered again
    _same(first, again)
    _same(first, fresh)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["frames"].shape == (2, 4, 32, 32, 3) and batch["cameras"].shape == (2, 4, 25)
    with pytest.raises(IndexError):
        ds[10]
    with pytest.raises(ValueError):
        SyntheticTalkingHeads("test")


def test_mouth_opening_tracks_vowel_energy_with_zero_lag():
    rng = np.random.default_rng(0)
    frames, fps = 125, 25
    utt = random_utterance(rng, frames / fps)
    audio = synthesize(utt, Voice(f0=140.0), seed=1)
    jaw = frame_average(mouth_control(utt), frames, fps)[:, 0]
    low = sosfilt(butter(4, 1000, fs=16000, output="sos"), audio)  # vowel energy lives below ~1 kHz
    energy = np.sqrt(np.square(low).reshape(frames, -1).mean(1))
    corr = {
        lag: np.corrcoef(jaw[max(lag, 0) : frames + min(lag, 0)], energy[max(-lag, 0) : frames - max(lag, 0)])[0, 1]
        for lag in range(-3, 4)
    }
    assert corr[0] > 0.5
    assert max(corr, key=corr.get) == 0


def test_visemes_drive_the_mouth():
    utt = Utterance(["sil", "m", "aa", "m", "uw", "sil"], [0.2, 0.12, 0.2, 0.12, 0.2, 0.2])
    n = int(utt.duration * 25)
    mouth, vis = frame_average(mouth_control(utt), n, 25), frame_visemes(utt, n, 25)
    assert mouth[vis == VISEMES.index("PP"), 3].min() > 0.5  # lips closed on /m/
    assert mouth[vis == VISEMES.index("aa"), 0].max() > 0.7  # jaw open on /aa/
    assert mouth[vis == VISEMES.index("ou"), 1].max() > 0.7  # lips rounded on /uw/
    with pytest.raises(ValueError):
        Utterance(["xx"], [0.1])


def test_head_motion_is_smooth_and_blinks_happen():
    rng = np.random.default_rng(2)
    pose = head_motion(rng, 250, 25.0)
    assert pose[:, 0].std() > 0.5  # not static
    assert np.abs(np.diff(pose[:, 0])).mean() < 0.25 * np.abs(pose[:, 0] - pose[:, 0].mean()).mean()  # not jitter
    closed = blinks(rng, 1000, 25.0) > 0.9
    starts = np.flatnonzero(np.diff(closed.astype(int)) == 1)
    assert 4 <= len(starts) <= 25 and np.diff(starts).min() >= 25  # one blink every few seconds, never twice in 1 s


def test_espeak_speech_is_timed_and_aligned():
    from starcaster.synthetic import espeak

    if not espeak.available():
        pytest.skip("eSpeak NG is not installed (apt-get install espeak-ng)")
    audio, utt = espeak.speak("hello world, a bright morning today.", voice="en-us")
    assert abs(utt.duration - len(audio) / 16000) < 1e-3
    assert {"hh", "l", "ow", "w", "er"} <= set(utt.phonemes)  # "hello world" read as phonemes
    frames = len(audio) // 640
    jaw = frame_average(mouth_control(utt.fit(frames / 25)), frames, 25)[:, 0]
    low = sosfilt(butter(4, 1000, fs=16000, output="sos"), audio[: frames * 640])
    energy = np.sqrt(np.square(low).reshape(frames, -1).mean(1))
    corr = {
        lag: np.corrcoef(jaw[max(lag, 0) : frames + min(lag, 0)], energy[max(-lag, 0) : frames - max(lag, 0)])[0, 1]
        for lag in range(-3, 4)
    }
    assert corr[0] > 0.35 and abs(max(corr, key=corr.get)) <= 1  # real speech: aligned to within a frame
    clip = make_clip(3, seed=1, num_frames=5, size=16, speech="espeak")
    assert np.abs(clip.audio).max() > 0.01 and len(clip.phonemes) >= 1
