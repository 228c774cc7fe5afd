"""The sampler parts the trainer shares (autoregression.py): batches, condition dropout, x0, reference planning."""

import math
from dataclasses import replace

import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from fakes import tiny_starcaster
from starcaster.autoregression import (
    bank_references,
    cfg_conditions,
    denoise_segment,
    drop_streams,
    plan_segment,
    predict_x0,
    random_drop,
    segment_conditions,
    still_camera_tokens,
)
from starcaster.loading import SCHEDULER_CONFIG


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_starcaster()


def conditions_for(model, batch, frames, seed=0, rows=None):
    """Conditions of a random batch; with ``rows`` (a slice), those rows alone, bank included."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randn(batch, 5, 32, generator=g)
    features = torch.randn(batch, frames + 4, 16, generator=g)
    cameras = torch.randn(batch, frames + 4, 25, generator=g)
    refs = torch.randn(batch, 4, 2, 8, 8, generator=g)
    if rows is not None:
        ids, features, cameras, refs = ids[rows], features[rows], cameras[rows], refs[rows]
    with torch.no_grad():
        bank = model.encode_reference(refs, ids)
        return segment_conditions(model, ids, 0, frames, features, cameras, audio_radius=1, bank=bank), features


def test_a_batch_denoises_as_its_rows_do_alone(model):
    frames = 3
    conditions, _ = conditions_for(model, 2, frames + 1)
    null = torch.zeros(1, 5, 32)
    noise = torch.randn(2, 4, frames, 8, 8, generator=torch.Generator().manual_seed(3))
    context = torch.randn(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    scheduler = DPMSolverMultistepScheduler(**SCHEDULER_CONFIG)
    with torch.no_grad():
        both = denoise_segment(model, scheduler, noise, conditions, null, context, steps=3, guidance=2.0)
        for row in range(2):
            alone, _ = conditions_for(model, 2, frames + 1, rows=slice(row, row + 1))
            single = denoise_segment(model, scheduler, noise[row:row + 1], alone, null, context[row:row + 1],
                                     steps=3, guidance=2.0)
            torch.testing.assert_close(both[row:row + 1], single, rtol=1e-4, atol=1e-4)
    assert both.dtype == torch.float32 and not torch.allclose(both[0], both[1])


def test_one_dropout_function_for_cfg_and_training(model):
    conditions, _ = conditions_for(model, 3, 2)
    null = torch.full((1, 5, 32), 7.0)
    dropped = drop_streams(conditions, null, {"identity": torch.tensor([True, False, True]),
                                              "audio": torch.tensor([False, True, False])})
    assert torch.equal(dropped.id_tokens[0], null[0]) and torch.equal(dropped.id_tokens[1], conditions.id_tokens[1])
    assert dropped.audio_tokens[1].abs().max() == 0 and torch.equal(dropped.audio_tokens[0], conditions.audio_tokens[0])
    assert torch.equal(dropped.camera_tokens, conditions.camera_tokens) and dropped.bank is conditions.bank
    with pytest.raises(ValueError, match="droppable"):
        drop_streams(conditions, null, {"camera": torch.tensor([True, True, True])})

    rows = cfg_conditions(conditions, null)  # CFG = every droppable stream dropped in the first half
    everything = drop_streams(conditions, null, {s: torch.ones(3, dtype=torch.bool) for s in ("identity", "audio")})
    assert torch.equal(rows.id_tokens[:3], everything.id_tokens) and torch.equal(rows.id_tokens[3:], conditions.id_tokens)
    assert torch.equal(rows.audio_tokens[:3], everything.audio_tokens)
    assert torch.equal(rows.camera_tokens[:3], rows.camera_tokens[3:])

    drops = random_drop(20000, {"identity": 0.1, "audio": 0.3, "camera": 0.0}, torch.Generator().manual_seed(0))
    assert set(drops) == {"identity", "audio"}
    assert abs(drops["identity"].float().mean() - 0.1) < 0.01 and abs(drops["audio"].float().mean() - 0.3) < 0.01
    assert abs((drops["identity"] & drops["audio"]).float().mean() - 0.03) < 0.01  # independent streams


def test_camera_guidance_shows_the_unconditional_row_the_input_camera(model):
    conditions, _ = conditions_for(model, 3, 4)
    null = torch.full((1, 5, 32), 7.0)
    still = still_camera_tokens(model, conditions.camera_tokens)
    assert still.shape == conditions.camera_tokens.shape
    assert torch.equal(still, still[:1, :1].expand_as(still))  # one view, every row and frame
    plain, guided = cfg_conditions(conditions, null), cfg_conditions(conditions, null, still)
    assert torch.equal(guided.camera_tokens[:3], still) and torch.equal(guided.camera_tokens[3:], conditions.camera_tokens)
    assert not torch.equal(guided.camera_tokens[:3], plain.camera_tokens[:3])
    assert torch.equal(guided.id_tokens, plain.id_tokens) and torch.equal(guided.audio_tokens, plain.audio_tokens)
    without_path = cfg_conditions(replace(conditions, camera_tokens=None), null, still)
    assert without_path.camera_tokens is None  # a talking segment has no path to guide


def test_camera_guidance_changes_a_moving_path_only(model):
    """Denoising with camera guidance differs from without on a path that moves, and is the same computation when the
    path holds the input camera (the unconditional row then sees what the conditional one does) or CFG is off."""
    from starcaster.autoregression import input_camera_vector

    frames = 3
    conditions, _ = conditions_for(model, 1, frames)
    null = torch.zeros(1, 5, 32)
    noise = torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(3))
    scheduler = DPMSolverMultistepScheduler(**SCHEDULER_CONFIG)

    def sample(conditions, guide, guidance=2.0):
        return denoise_segment(model, scheduler, noise, conditions, null, None, steps=2, guidance=guidance,
                               guide_camera=guide)

    with torch.no_grad():
        assert not torch.allclose(sample(conditions, True), sample(conditions, False), atol=1e-4)
        assert torch.equal(sample(conditions, True, 1.0), sample(conditions, False, 1.0))
        held = model.project_camera(torch.from_numpy(input_camera_vector()).expand(1, frames, -1))
        still = replace(conditions, camera_tokens=held)
        torch.testing.assert_close(sample(still, True), sample(still, False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_predict_x0_inverts_the_forward_process(prediction_type):
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 4, 2, 8, 8, generator=g), torch.randn(4, 4, 2, 8, 8, generator=g)
    t = torch.tensor([0, 250, 600, 999])
    noisy = scheduler.add_noise(x0, noise, t)
    target = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t), "sample": x0}[prediction_type]
    torch.testing.assert_close(predict_x0(scheduler, target, noisy, t), x0, rtol=1e-3, atol=2e-3)


def test_reference_plans_per_task():
    portrait = torch.randn(1, 4, 1, 8, 8)
    previous = torch.randn(1, 4, 16, 8, 8)
    first = plan_segment("portrait", 0, portrait, None, 2)
    assert first.reference.shape[2] == 1 and math.isclose(float(first.log_weights[0]), math.log(3), rel_tol=1e-6)
    assert torch.equal(first.context, portrait.repeat(1, 1, 2, 1, 1))
    later = plan_segment("orbit", 3, portrait, previous, 2)
    assert torch.equal(later.reference, torch.cat([portrait, previous[:, :, -2:]], 2)) and later.log_weights is None
    narrow = plan_segment("orbit", 3, portrait, previous, 6, bank_context_frames=2)  # wide context, trained bank
    assert torch.equal(narrow.context, previous[:, :, -6:]) and torch.equal(narrow.reference, later.reference)
    assert plan_segment("identity", 0, None, None, 2).reference is None
    ident = plan_segment("identity", 1, None, previous, 2)
    assert torch.equal(ident.reference, previous[:, :, [15, 14]])  # last frame (twice) first, then the other
    frames, weights = bank_references([portrait, previous[:, :, :1], portrait.clone()])
    assert frames.shape[2] == 2 and torch.allclose(weights, torch.tensor([math.log(2), 0.0]))
