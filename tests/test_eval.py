"""The synthetic benchmark's plumbing: metrics on inputs with known answers, the warp baseline, the runner.

Whether the evaluators are good (mouth r >= 0.9 on ground truth, sync far better than shifted audio, ...) is
checked by their held-out numbers once trained (`configs/evaluators/`); these tests check the code that uses them.
"""

import json

import numpy as np
import pytest
import torch

from starcaster.eval import metrics
from starcaster.eval.evaluators import MouthRegressor, PoseRegressor, SyncNetwork, apparent_pose, load_evaluators
from starcaster.eval.run import evaluate, format_markdown, warp_reference
from starcaster.synthetic.dataset import make_clip


pytestmark = pytest.mark.usefixtures("one_thread")


def test_lagged_correlation_finds_the_offset():
    rng = np.random.default_rng(0)
    truth = np.convolve(rng.standard_normal(200), np.ones(5) / 5, mode="same")
    late = np.roll(truth, 3)  # the video lags the audio by 3 frames
    r0, offset = metrics.lagged_correlation(late, truth)
    assert offset == 3 and r0 < 0.9
    assert metrics.lagged_correlation(truth, truth) == (pytest.approx(1.0), 0)
    assert np.isnan(metrics.lagged_correlation(np.zeros(50), truth)[0])  # a frozen mouth has no correlation


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_clips():
    rng = np.random.default_rng(1)
    few, many = metrics.bootstrap(rng.normal(5, 1, 10)), metrics.bootstrap(rng.normal(5, 1, 400))
    assert few["low"] < few["mean"] < few["high"] and many["n"] == 400
    assert many["high"] - many["low"] < few["high"] - few["low"]
    assert metrics.bootstrap([float("inf"), None])["mean"] is None


def test_apparent_pose_composes_head_and_camera():
    from starcaster.conditioning.camera import look_at, orbit_eye

    pose = np.array([[20.0, 10.0, -5.0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(apparent_pose(pose, look_at(orbit_eye(0, 0))[None]), pose[:, :3], atol=1e-4)
    turned = np.array([[20.0, 0, 0, 0, 0, 0]], np.float32)  # the head turns toward a camera that moved the same way
    np.testing.assert_allclose(apparent_pose(turned, look_at(orbit_eye(20, 0))[None]), [[0, 0, 0]], atol=1e-4)


def test_view_scores_and_warp_baseline_on_true_renders():
    clip = make_clip(1000001, 3, num_frames=6, size=64, mode="orbit")
    perfect = metrics.view_scores(clip.frames, clip.frames, clip.mouth_xy)
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["face_ssim"] == pytest.approx(1.0)
    copy = np.repeat(clip.reference[None], 6, 0)
    warp = warp_reference(clip.reference, clip.extrinsics, clip.intrinsics)
    assert warp.shape == copy.shape and warp.dtype == np.uint8
    copied, warped = (metrics.view_scores(x, clip.frames, clip.mouth_xy) for x in (copy, warp))
    assert warped["psnr"] > copied["psnr"]  # moving the reference with the camera beats not moving it
    front = np.tile(__import__("starcaster.autoregression", fromlist=["x"]).input_camera_vector(), (1, 1))
    same = warp_reference(clip.reference, front[:, :16].reshape(1, 4, 4), front[:, 16:].reshape(1, 3, 3))
    assert np.abs(same[0].astype(int) - clip.reference).mean() < 1.0  # from the input camera the warp is identity


def test_view_error_is_the_mean_absolute_pose_difference():
    """A hand-made 'pose regressor' reading yaw from brightness: the error is the brightness gap, in its degrees."""

    class Brightness(torch.nn.Module):
        def forward(self, x):  # x in [-1, 1]: yaw = 10 x mean brightness, pitch = roll = 0
            return torch.stack([10 * x.mean((1, 2, 3)), 0 * x[:, 0, 0, 0], 0 * x[:, 0, 0, 0]], 1)

    truth = np.zeros((4, 16, 16, 3), np.uint8)
    turned = truth.copy()
    turned[2:] = 255  # two of four frames at the other extreme of [-1, 1]: yaw 20 apart there, 0 elsewhere
    assert metrics.view_error(Brightness(), truth, truth) == 0.0
    assert metrics.view_error(Brightness(), turned, truth) == pytest.approx(2 * 20 / (4 * 3), rel=1e-4)


def test_sync_scores_prefer_aligned_audio_for_a_network_that_reads_it():
    """A hand-made 'sync network' that embeds mouth brightness and audio loudness the same way: aligned audio is
    closest at offset 0, so LSE-D is lower and LSE-C higher than for shuffled audio."""
    torch.manual_seed(0)
    frames = np.zeros((40, 64, 64, 3), np.uint8)
    loud = (np.sin(np.arange(40) * 0.9) > 0).astype(np.float32)
    frames[:, 20:44, 20:44] = (loud * 200 + 20)[:, None, None, None].astype(np.uint8)
    mouth = np.full((40, 2), 32.0, np.float32)
    features = torch.from_numpy(np.repeat(loud[:, None], 8, 1))

    class Toy(SyncNetwork):
        def embed_video(self, crops):
            return torch.nn.functional.normalize(crops.mean((1, 3, 4)) - crops.mean(), dim=-1)

        def embed_audio(self, feats):
            f = feats.mean(-1)
            return torch.nn.functional.normalize((f - 0.5) * 2, dim=-1)

    net = Toy(audio_dim=8)
    aligned = metrics.sync_scores(net, frames, mouth, features)
    shuffled = metrics.sync_scores(net, frames, mouth, features[torch.randperm(40, generator=torch.Generator().manual_seed(1))])
    assert aligned[0] < shuffled[0] and aligned[1] > shuffled[1]


def test_runner_gives_baselines_and_models_the_same_clips(tmp_path):
    """Two clips, untrained evaluators and a stand-in 'model' that returns the ground truth: it must score exactly
    as the ground-truth row, on every metric."""
    evaluators = {"mouth": MouthRegressor(), "pose": PoseRegressor(), "sync": SyncNetwork(),
                  "identity": __import__("starcaster.conditioning.identity", fromlist=["x"]).TinyFaceEncoder(
                      embedding_dim=16, block_out_channels=(8, 16), norm_num_groups=4)}
    for net in evaluators.values():
        net.eval()

    class Oracle:
        def generate(self, task, image, num_frames, seed, **kwargs):
            from starcaster.eval.run import eval_clips

            clip = next(c for c in eval_clips(task, 2, 0, num_frames) if np.array_equal(c.reference, image))
            return type("Video", (), {"frames": clip.frames})()

    with torch.no_grad():
        results = evaluate({"oracle": Oracle()}, evaluators, tasks=("portrait", "orbit"), clips=2, segments=1,
                           strips=tmp_path)
    assert set(results) == {"ground truth", "copy reference", "warp (ellipsoid proxy)", "oracle"}
    for task in ("portrait", "orbit"):
        assert results["oracle"][task] == results["ground truth"][task]
    assert "warp (ellipsoid proxy)" in format_markdown(results) and (tmp_path / "orbit-oracle.png").is_file()
    assert results["copy reference"]["portrait"]["pose_std"]["mean"] == pytest.approx(0.0, abs=1e-4)
    # Each clip's value is kept (for paired comparisons between rows), and the interval is their mean's.
    for row in results.values():
        for task, scores in row.items():
            for name, ci in scores.items():
                assert len(ci["clips"]) == 2, (row, task, name)
                kept = [v for v in ci["clips"] if v is not None]
                assert ci["n"] == len(kept) and (not kept or ci["mean"] == pytest.approx(np.mean(kept)))


def test_a_run_split_in_clip_ranges_scores_each_clip_as_one_run_does():
    """``first_clip`` (eval --first-clip): clip 1 scored alone has clip 1's values and sampler seed in a 2-clip run,
    so a long benchmark can be run in parts over sessions and joined clip by clip."""
    evaluators = {"mouth": MouthRegressor(), "pose": PoseRegressor(), "sync": SyncNetwork(),
                  "identity": __import__("starcaster.conditioning.identity", fromlist=["x"]).TinyFaceEncoder(
                      embedding_dim=16, block_out_channels=(8, 16), norm_num_groups=4)}
    for net in evaluators.values():
        net.eval()
    seeds = []

    class Noisy:  # a different video per sampler seed, so a wrong seed changes the scores
        def generate(self, task, image, num_frames, seed, **kwargs):
            seeds.append(seed)
            rng = np.random.default_rng(seed)
            frames = np.clip(image[None].astype(int) + rng.integers(-40, 40, (num_frames, *image.shape)), 0, 255)
            return type("Video", (), {"frames": frames.astype(np.uint8)})()

    with torch.no_grad():
        both = evaluate({"m": Noisy()}, evaluators, tasks=("portrait",), clips=2, seed=3, segments=1)
        second = evaluate({"m": Noisy()}, evaluators, tasks=("portrait",), clips=1, seed=3, segments=1, first_clip=1)
    assert seeds == [3, 4, 4]
    for row in ("ground truth", "m"):
        for name, ci in second[row]["portrait"].items():
            assert ci["clips"] == both[row]["portrait"][name]["clips"][1:], (row, name)
    assert second["m"]["portrait"]["pose_std"]["clips"] != both["m"]["portrait"]["pose_std"]["clips"][:1]


def test_long_clip_metrics_are_paired_per_clip():
    """A clip whose second half freezes on the reference: the long test's per-clip ratio of late to early head
    motion is 0 and its identity drift is the clip's own last-minus-first segment."""
    from starcaster.conditioning.audio import MelAudioEncoder, clip_audio_features
    from starcaster.eval.run import clip_metrics, eval_clips

    evaluators = {"mouth": MouthRegressor(), "pose": PoseRegressor(), "sync": SyncNetwork(),
                  "identity": __import__("starcaster.conditioning.identity", fromlist=["x"]).TinyFaceEncoder(
                      embedding_dim=16, block_out_channels=(8, 16), norm_num_groups=4)}
    for net in evaluators.values():
        net.eval()
    clip = eval_clips("portrait", 1, 0, 20)[0]
    frozen = clip.frames.copy()
    frozen[10:] = clip.reference
    with torch.no_grad():
        features = clip_audio_features(MelAudioEncoder(), clip.audio, len(clip.frames), clip.fps)
        scores = clip_metrics("portrait", frozen, clip, evaluators, features, segment_frames=2)
    assert scores["pose_std_first5"] > 0 and scores["pose_std_ratio"] == pytest.approx(0.0, abs=1e-4)
    assert scores["identity_drift"] == pytest.approx(scores["identity_last_segment"] - scores["identity_first_segment"])
    assert scores["identity_last_segment"] == pytest.approx(1.0, abs=1e-5)  # the reference itself
    with torch.no_grad():
        still = clip_metrics("portrait", np.repeat(clip.reference[None], 20, 0), clip, evaluators, features,
                             segment_frames=2)
    assert still["pose_std_ratio"] is None  # a still head has no late/early ratio (not noise over noise)


def test_missing_evaluators_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe evaluators"):
        load_evaluators(tmp_path)


def test_evaluator_recipe_smoke_runs_and_loads(tmp_path):
    from starcaster.training import run_recipe

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "recipe_report.json").write_text('{"stage3": {"steps": 1500}}')  # the model's own steps
    reports = run_recipe("evaluators", tmp_path, max_steps=2, progress=False)
    merged = json.loads((tmp_path / "train" / "recipe_report.json").read_text())
    assert merged["stage3"] == {"steps": 1500} and set(reports) <= set(merged)  # added to, not overwritten
    assert {"mouth_r", "pose_mae_deg", "offset_accuracy", "verification_accuracy"} <= set().union(*reports.values())
    loaded = load_evaluators(tmp_path / "evaluators")
    assert set(loaded) == {"sync", "mouth", "pose", "identity"}
    assert loaded["identity"].config.block_out_channels != (32, 64, 128, 256)  # not the training face encoder's
