"""The paper's three training stages (§3.4, Supp. B) on the tiny world, with the sampler's own parts.

* Stage 1, audio-driven motion: ID + audio streams, no reference; temporal blocks + audio K/V and projection train.
  Diffusion loss, plus the lip-reading loss (weight 1) from ``lip_loss_from`` on.
* Stage 2, autoregressive self-forcing: reference bank + context frames on, LoRA trains too. A training sequence is
  ``window`` segments; only the first takes its context from ground truth, each later one the last n clean latents
  of the model's OWN rollout of the previous segment (`autoregression.denoise_segment`, the sampler's function).
  ``teacher_forcing`` gives every segment ground-truth context instead (the ablation). The lip loss may stay on
  (Fig. 3: lip reading and self-forcing are both "audiovisual training"): without it the tiny stage 2 forgot the
  sync stage 1 had learnt, since the reference portrait's closed mouth satisfies most of the diffusion loss.
  ``lip_window`` decodes, for the lip loss, only that many latents square around the mouth (`mouth_window`) instead
  of whole frames: a 64 px patch holds the 48 px crop, at a fifth of the decoder's forward and backward cost.
  ``lip_alpha_weighting`` weights each clip's lip term by its noise level's alpha-bar: the predicted clean frames
  are x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar), so at high noise a feature loss on them pulls on the noise
  prediction 1/sqrt(abar) times harder (15x at t = 999) about frames that are mostly guesswork. Unweighted, the
  term dominated the clipped gradient and stage 2's samples filled with speckle by step 500.
* Stage 3, temporal-to-spatial: camera stream replaces audio, on orbit clips of still heads, autoregressive as 2.
  ``talk_fraction`` of its batches are stage 2's talking clips instead (audio on, camera off, lip loss as in 2): the
  paper's model keeps its sync through 10K steps of stage 3 on 200K steps of pre-training; the tiny one, after 4.5K
  steps of talking, did not (at step 600 of orbits alone, val lip r 0.83 -> 0.59 and pose std 2.8 -> 5.2, the
  motion layers learning orbit-sized head turns), so it rehearses the task it must not forget.

Every stage drops conditions for CFG through `autoregression.drop_streams`, the function the sampler uses for the
unconditional row, and reads audio features made by `clip_audio_features`, the function inference uses. With
``first_segment_probability`` a sequence starts as inference does: the reference portrait as context (seen from the
input camera), the portrait banked once with its log-count. In stage 3 that is where the camera is needed most: a
continued segment can read the view off its context frames, a first one has only the camera to turn the portrait
by. ``orbit_first_segment_probability`` sets it for orbit batches alone (default: ``first_segment_probability``), and
validation logs the first segment's held-out loss with the clip's own cameras and with another clip's: a gap of zero
means the camera stream is not steering. ``orbit_timestep_power`` p > 1 draws orbit batches' timesteps from
t = T u^(1/p) instead of T u: with epsilon prediction the loss hardly changes with the layout of the head at low
noise, where the view is already in x_t, so a camera that must decide the layout is asked for at high noise more
often (p = 2: 3 in 4 orbit timesteps above T/2 instead of 1 in 2). Validation adds the first
segment's loss at t = 800, where a steering camera shows most.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_snr
from torch import nn

from ..autoregression import (
    bank_references,
    denoise_segment,
    drop_streams,
    model_output,
    predict_x0,
    random_drop,
    segment_conditions,
)
from ..conditioning.audio import MelAudioEncoder
from ..conditioning.identity import Arc2FaceEncoder, TinyFaceEncoder
from ..loading import SCHEDULER_CONFIG, _starcaster_config
from ..models import STAGE_GROUPS, STARCasterModel
from ..pipeline import vae_scale_factor
from ..presets import PIPELINE_CONFIG_NAME, PRESETS
from .arc2face import _load, scheduler_config
from .clip_pool import clip_pool, sample_index
from .lip_reading import LipReader, lip_features, lip_loss, mouth_window
from .preprocess import load_preprocessed
from .trainer import step_rng

MODES = {1: "talk", 2: "talk", 3: "orbit"}
HIGH_NOISE_T = 800  # stage 3 validation's second look at the camera: a noise level where the layout is still open


def high_noise_timesteps(t: torch.Tensor, num_train_timesteps: int, power: float) -> torch.Tensor:
    """Uniform timesteps mapped to T u^(1/power): power > 1 leans towards high noise, order and draws unchanged."""
    u = (t.double() + 0.5) / num_train_timesteps
    return (u.pow(1.0 / power) * num_train_timesteps).long().clamp_(0, num_train_timesteps - 1).to(t.dtype)


def _split(clips, eval_clips: int, frames: int, stage: int, data):
    """A preprocess output's training and held-out pools (its last ``eval_clips`` clips held out)."""
    if clips.latents.shape[2] < frames or len(clips) <= eval_clips:
        raise ValueError(f"{data} holds {len(clips)} clips of {clips.latents.shape[2]} frames; stage {stage} needs "
                         f"more than {eval_clips} clips of {frames}.")
    return (clips.slice(slice(0, len(clips) - eval_clips), frames),
            clips.slice(slice(len(clips) - eval_clips, None), frames))


class StageModule(nn.Module):
    """What one stage step runs: the video model (trainable groups) and the frozen helpers it reads through."""

    def __init__(self, model: STARCasterModel, id_encoder: Arc2FaceEncoder, vae: AutoencoderKL,
                 lip_reader: LipReader | None):
        super().__init__()
        self.model, self.id_encoder, self.vae, self.lip_reader = model, id_encoder, vae, lip_reader
        for frozen in (id_encoder, vae, lip_reader):
            if frozen is not None:
                frozen.requires_grad_(False).eval()

    def forward(self, task: "StageTask", batch: dict, generator: torch.Generator):
        return task.compute_loss(self, batch, generator)


class StageTask:
    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, stage: int = 1, clips: int = 800,
                 eval_clips: int = 8, window: int = 2, teacher_forcing: bool = False, rollout_steps: int = 4,
                 rollout_guidance: float = 1.0, first_segment_probability: float = 0.25,
                 dropout: float = 0.1, snr_gamma: float = 5.0, lip_loss_from: int | None = None,
                 lip_loss_weight: float = 1.0, lip_frames: int = 8, lip_window: int | None = None,
                 lip_alpha_weighting: bool = False, talk_fraction: float = 0.0, preset: str = "tiny",
                 data: str | None = None, talk_data: str | None = None, group_lr_scale: dict | None = None,
                 orbit_first_segment_probability: float | None = None, train_groups: list | None = None,
                 orbit_timestep_power: float = 1.0):
        if stage not in STAGE_GROUPS:
            raise ValueError(f"stage must be one of {sorted(STAGE_GROUPS)}, got {stage}")
        self.config, self.folder, self.stage = config, Path(pipeline_folder), stage
        # train_groups: a subset of the stage's additions, the rest frozen (e.g. the camera stream alone, so that only
        # it can lower the loss); None trains them all, as the paper's stage does.
        self.train_groups = set(STAGE_GROUPS[stage] if train_groups is None else train_groups)
        for arg, names in (("train_groups", self.train_groups), ("group_lr_scale", set(group_lr_scale or {}))):
            unknown = names - set(STAGE_GROUPS[stage])
            if unknown:
                raise ValueError(f"{arg} names {sorted(unknown)}, which stage {stage} does not train "
                                 f"(it trains {sorted(STAGE_GROUPS[stage])}).")
        if not self.train_groups:
            raise ValueError("train_groups is empty: name at least one of the stage's groups.")
        self.group_lr_scale = dict(group_lr_scale or {})
        self.window, self.teacher_forcing = window if stage > 1 else 1, teacher_forcing
        self.rollout_steps, self.rollout_guidance = rollout_steps, rollout_guidance
        self.first_probability = first_segment_probability if stage > 1 else 0.0
        if orbit_first_segment_probability is not None and stage != 3:
            raise ValueError(f"orbit_first_segment_probability is for stage 3's orbits; stage {stage} has none.")
        self.orbit_first_probability = (self.first_probability if orbit_first_segment_probability is None
                                        else orbit_first_segment_probability)
        if orbit_timestep_power != 1.0 and stage != 3:
            raise ValueError(f"orbit_timestep_power is for stage 3's orbits; stage {stage} has none.")
        if orbit_timestep_power <= 0:
            raise ValueError(f"orbit_timestep_power must be > 0 (1: uniform), got {orbit_timestep_power}.")
        self.orbit_timestep_power = float(orbit_timestep_power)
        self.dropout, self.snr_gamma = dropout, snr_gamma
        if talk_fraction and stage != 3:
            raise ValueError(f"talk_fraction mixes talking clips into stage 3's orbits; stage {stage} only talks.")
        self.talk_fraction = talk_fraction
        # stage 3's orbits read no audio, so without talking clips there is no speech to supervise
        self.lip_from = lip_loss_from if stage < 3 or talk_fraction else None
        self.lip_window, self.lip_alpha_weighting = lip_window, lip_alpha_weighting
        self.lip_weight, self.lip_frames = lip_loss_weight, lip_frames
        self.settings = PRESETS[preset]  # the folder being trained carries no settings until a stage exports them
        self.N, self.n = self.settings.segment_frames, self.settings.context_frames
        self.noise = DDPMScheduler(**scheduler_config())
        self.vae = _load(AutoencoderKL, self.folder / "vae", "the VAE step")
        self.lip_reader = (_load(LipReader, self.folder / "lip_reader", "the lip_reader step")
                           if self.lip_from is not None else None)
        frames = self.N if stage == 1 else self.n + self.window * self.N
        self.synthetic, self.face_encoder = data is None, None
        if data is not None:  # real videos, made by `python -m starcaster preprocess` (the last clips held out)
            clips_on_disk = load_preprocessed(data)
            self.pool, self.eval_pool = _split(clips_on_disk, eval_clips, frames, stage, data)
            if talk_fraction:
                if talk_data is None:
                    raise ValueError("talk_fraction on real videos needs task_args.talk_data (talking videos).")
                self.talk_pool, self.talk_eval_pool = _split(load_preprocessed(talk_data), eval_clips, frames,
                                                             stage, talk_data)
        elif preset != "tiny":
            raise ValueError(f"the {preset} preset trains on real videos: give task_args.data (a preprocess output).")
        else:  # the synthetic world
            audio_encoder = MelAudioEncoder(sample_rate=self.settings.sample_rate)
            self.face_encoder = _load(TinyFaceEncoder, self.folder / "face_encoder", "the face_encoder step")
            pools = dict(num_frames=frames, mode=MODES[stage], size=self.settings.resolution, cache_dir=cache_dir,
                         vae=self.vae, face_encoder=self.face_encoder, audio_encoder=audio_encoder if stage < 3 else None,
                         name="stage")
            self.pool = clip_pool("train", clips, seed=config.seed, **pools)
            self.eval_pool = clip_pool("eval", eval_clips, seed=0, **pools)
            if talk_fraction:  # the same clips stage 2 trained on (and cached)
                pools.update(mode="talk", audio_encoder=audio_encoder)
                self.talk_pool = clip_pool("train", clips, seed=config.seed, **pools)
                self.talk_eval_pool = clip_pool("eval", eval_clips, seed=0, **pools)
        if stage == 3:
            self.pool.audio_features = self.eval_pool.audio_features = None  # stage 3: camera replaces audio
        if self.lip_reader is not None:
            talking = self.pool if stage < 3 else self.talk_pool
            talking.lip_truth = torch.cat([lip_features(self.lip_reader, talking.frames[i:i + 16],
                                                        talking.mouth_xy[i:i + 16])
                                           for i in range(0, len(talking), 16)])

    # -- what is trained --------------------------------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        unet2d = _load(UNet2DConditionModel, self.folder / "unet", "the arc2face step")
        feature_dim = self.pool.audio_features.shape[-1] if self.pool.audio_features is not None else None
        model = STARCasterModel.from_unet2d(unet2d, _starcaster_config(self.settings, self._audio_dim(feature_dim)))
        if (self.folder / "starcaster").is_dir():  # the previous stage's additions (stage 1 has none to load)
            model.load_adapters(self.folder / "starcaster")
        id_encoder = Arc2FaceEncoder.from_pretrained(self.folder)
        return StageModule(model, id_encoder, self.vae, self.lip_reader)

    def _audio_dim(self, feature_dim):
        """Something with the audio encoder's ``feature_dim``, which the additions' config is built from."""
        from types import SimpleNamespace

        if feature_dim is None:  # stage 3 reads no audio, but the audio stream it inherits keeps its shape
            feature_dim = (MelAudioEncoder(sample_rate=self.settings.sample_rate).feature_dim
                           if self.settings.audio_encoder == "mel" else 9216)
        return SimpleNamespace(feature_dim=feature_dim)

    def parameter_groups(self, module):
        # A new stream starts from zero-initialised V projections (its additions are identities at first), so at the
        # shared learning rate it can stay nearly silent through a short stage: ``group_lr_scale`` lets it learn
        # faster than the groups it joins, which are already trained.
        groups = module.model.parameter_groups(self.train_groups)
        for group in groups:
            if group["name"] in self.group_lr_scale:
                group["lr"] = self.config.lr * float(self.group_lr_scale[group["name"]])
        return groups

    def batch(self, step, micro, device):
        rng = step_rng(self.config.seed, step, micro)
        talk = self.stage < 3 or (self.talk_fraction > 0 and rng.random() < self.talk_fraction)
        pool = self.pool if self.stage < 3 or not talk else self.talk_pool
        index = sample_index(rng, pool, self.config.batch_size)
        batch = {k: v.to(device) for k, v in pool.take(index).items() if k != "frames"}
        batch["talk"] = talk  # a talking batch (audio on) or, in stage 3, an orbit (camera on)
        if self.lip_reader is not None and talk:
            batch["lip_truth"] = pool.lip_truth[index].to(device)
            batch["lip_start"] = int(rng.integers(0, self.N - self.lip_frames + 1))
        # One draw either way, so a different probability keeps every other random number of the recipe's run.
        first = self.first_probability if talk else self.orbit_first_probability
        batch["first_segment"] = bool(rng.random() < first)
        batch["step"] = step
        return batch

    def loss(self, module, batch, generator):
        return module(self, batch, generator)

    # -- the losses ----------------------------------------------------------------------------------------------
    def _conditions(self, module, batch, first, end, id_tokens, bank=None):
        audio = batch.get("audio_features") if batch["talk"] else None
        cameras = None if batch["talk"] else batch["cameras"]
        return segment_conditions(module.model, id_tokens, first, end, audio, cameras, self.settings.audio_radius,
                                  bank)

    def _bank(self, module, batch, context, id_tokens):
        if self.stage == 1:
            return None  # stage 1: no reference network (paper §3.4)
        frames = [batch["reference_latent"]] + list(context.split(1, dim=2))
        reference, weights = bank_references(frames)
        with torch.no_grad():  # the reference UNet is frozen: its features need no gradient
            return module.model.encode_reference(reference, id_tokens,
                                                 None if weights is None else weights.to(reference.device))

    def compute_loss(self, module, batch, generator, training: bool = True):
        """The stage's loss on one batch; ``training=False`` (validation) drops no condition and skips the lip loss."""
        latents = batch["latents"]
        B, N, n = len(latents), self.N, self.n
        id_tokens = module.id_encoder(batch["identity"])
        null = module.id_encoder.unconditional(1)

        if self.stage == 1:  # one segment, no context, no reference
            context, start, first = None, 0, 0
        elif batch["first_segment"]:  # as inference begins: the portrait is the context, before frame 0
            context, start, first = batch["reference_latent"].repeat(1, 1, n, 1, 1), 0, -n
        else:
            context, start = latents[:, :, :n], n  # only the first segment's context is ground truth
            # Roll out all segments but the last. Gradients are truncated here: the rollout runs without grad and
            # only its last n clean latents (detached) reach the trained segment, as Self-Forcing detaches its
            # context and Resampling Forcing makes its history without grad; only the last segment is in the loss.
            for _ in range(self.window - 1):
                # Drawn either way: the ablation discards it, so that the trained segment's noise and timestep are
                # the ones the full recipe draws for the same step (same seeds, same random numbers).
                noise = torch.randn(latents[:, :, start:start + N].shape, generator=generator,
                                    device=generator.device).to(latents)
                if self.teacher_forcing:
                    context = latents[:, :, start + N - n:start + N]  # the ablation: ground-truth context
                else:
                    with torch.no_grad():
                        cond = self._conditions(module, batch, start - n, start + N, id_tokens,
                                                self._bank(module, batch, context, id_tokens))
                        rolled = denoise_segment(module.model, self.rollout_scheduler(), noise, cond, null, context,
                                                 self.rollout_steps, self.rollout_guidance)
                    context = rolled[:, :, -n:].detach()
                start += N
            first = start - n
        target = latents[:, :, start:start + N]
        bank = None if context is None else self._bank(module, batch, context, id_tokens)
        cond = self._conditions(module, batch, first, start + N, id_tokens, bank)
        if training:
            probabilities = {"identity": self.dropout, "audio": self.dropout if batch["talk"] else 0.0}
            cond = drop_streams(cond, null, random_drop(B, probabilities, generator))

        noise = torch.randn(target.shape, generator=generator, device=generator.device).to(target)
        T = self.noise.config.num_train_timesteps
        t = torch.randint(0, T, (B,), generator=generator, device=generator.device).to(target.device)
        if training and not batch["talk"] and self.orbit_timestep_power != 1.0:
            t = high_noise_timesteps(t, T, self.orbit_timestep_power)  # the same draw, mapped: other numbers unchanged
        if "timestep" in batch:  # validation at one fixed noise level
            t = torch.full_like(t, int(batch["timestep"]))
        noisy = self.noise.add_noise(target, noise, t)
        x = noisy if context is None else torch.cat([context, noisy], dim=2)
        pred = model_output(module.model, x, t, cond)[:, :, -N:].float()
        per_sample = F.mse_loss(pred, noise.float(), reduction="none").mean(dim=(1, 2, 3, 4))
        snr = compute_snr(self.noise, t)
        diffusion = (per_sample * torch.clamp(snr, max=self.snr_gamma) / snr).mean()  # min-SNR, per sample
        logs, loss = {"diffusion": diffusion.detach()}, diffusion
        if (training and batch["talk"] and self.lip_from is not None and self.lip_weight > 0
                and batch["step"] >= self.lip_from):
            lips = self._lip_loss(module, batch, pred, noisy, t, start)  # (B,)
            weights = self.noise.alphas_cumprod.to(t.device)[t].float() if self.lip_alpha_weighting else 1.0
            loss = loss + self.lip_weight * (weights * lips).mean()
            logs["lip"] = lips.mean().detach()  # unweighted: comparable across stages and settings
        return loss, logs

    def _lip_loss(self, module, batch, pred, noisy, t, first_frame):
        """Lip-reading loss on ``lip_frames`` consecutive frames of the predicted clean segment, decoded with grad."""
        a = batch["lip_start"]
        b = a + self.lip_frames
        x0 = predict_x0(self.noise, pred, noisy.float(), t)[:, :, a:b]
        B, C, L, h, w = x0.shape
        flat = x0.permute(0, 2, 1, 3, 4).reshape(B * L, C, h, w) / module.vae.config.scaling_factor
        span = slice(first_frame + a, first_frame + b)
        mouth = batch["mouth_xy"][:, span].reshape(B * L, 2)
        if self.lip_window is not None:
            flat, mouth = mouth_window(flat, mouth, self.lip_window, vae_scale_factor(module.vae))
        frames = module.vae.decode(flat.to(module.vae.dtype)).sample.float()
        frames = frames.reshape(B, L, *frames.shape[1:])
        return lip_loss(module.lip_reader, frames, batch["lip_truth"][:, span], mouth.reshape(B, L, 2),
                        reduction="none")

    def rollout_scheduler(self):
        return DPMSolverMultistepScheduler(**SCHEDULER_CONFIG)

    # -- held-out numbers and export ---------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, module, step, folder) -> dict:
        """Held-out diffusion loss at fixed noise and timesteps (comparable from one validation to the next)."""
        logs = {"heldout_diffusion": self._heldout(module, self.eval_pool, talk=self.stage < 3)}
        if self.stage == 3:  # does the camera stream steer? the first segment's loss, true cameras vs another clip's
            logs["heldout_first_segment"] = self._heldout(module, self.eval_pool, talk=False, first=True)
            logs["heldout_first_segment_other_camera"] = self._heldout(module, self.eval_pool, talk=False, first=True,
                                                                       camera_shift=1)
            for shift, key in ((0, ""), (1, "_other_camera")):  # where the head's layout is decided
                logs[f"heldout_first_segment_t{HIGH_NOISE_T}{key}"] = self._heldout(
                    module, self.eval_pool, talk=False, first=True, camera_shift=shift, timestep=HIGH_NOISE_T)
        if self.talk_fraction:  # what stage 3 must not forget, on stage 2's held-out clips
            logs["heldout_diffusion_talk"] = self._heldout(module, self.talk_eval_pool, talk=True)
        if self.synthetic:
            self.sample_video(module, Path(folder), step)
        return logs

    def _heldout(self, module, pool, talk: bool, first: bool = False, camera_shift: int = 0,
                 timestep: int | None = None) -> float:
        """Mean held-out loss; ``first``: each clip begins as inference does (the portrait as context), so its view
        comes from the camera alone; ``camera_shift``: clip i gets clip i + shift's cameras (a camera-blind model
        scores the same with them); ``timestep``: every clip at that noise level instead of its own fixed draw."""
        losses = []
        for i in range(len(pool)):
            batch = {k: v.to(module.model.device) for k, v in pool.take(torch.tensor([i])).items() if k != "frames"}
            if camera_shift:
                batch["cameras"] = pool.take(torch.tensor([(i + camera_shift) % len(pool)]))["cameras"].to(
                    module.model.device)
            batch.update(first_segment=first, step=-1, talk=talk)
            if timestep is not None:
                batch["timestep"] = timestep
            generator = torch.Generator(module.model.device).manual_seed(i)
            losses.append(float(self.compute_loss(module, batch, generator, training=False)[0]))
        return sum(losses) / len(losses)

    @torch.no_grad()
    def sample_video(self, module, folder: Path, step: int, steps: int = 25):
        """One held-out clip through the real pipeline (the model as it is now), as mp4 + a truth-over-sample strip."""
        import numpy as np
        from PIL import Image

        from ..conditioning.camera_path import CameraPath
        from ..pipeline import STARCasterPipeline
        from ..synthetic.dataset import SyntheticTalkingHeads

        clip = SyntheticTalkingHeads("eval", num_frames=self.N, size=self.settings.resolution, mode=MODES[self.stage],
                                     length=1).clip(0)
        pipe = STARCasterPipeline(module.model, module.vae, DPMSolverMultistepScheduler(**SCHEDULER_CONFIG),
                                  module.id_encoder, self.face_encoder, MelAudioEncoder(self.settings.sample_rate),
                                  settings=self.settings)
        pipe.set_progress_bar_config(disable=True)
        task = {1: "identity", 2: "portrait", 3: "orbit"}[self.stage]
        kwargs = dict(camera=CameraPath(clip.extrinsics, clip.intrinsics)) if self.stage == 3 else \
            dict(audio=(clip.audio, clip.sample_rate))
        video = pipe.generate(task=task, image=clip.reference, already_aligned=True, steps=steps, seed=0,
                              num_frames=self.N, **kwargs)
        folder.mkdir(parents=True, exist_ok=True)
        video.save(folder / f"stage{self.stage}-{step:08d}.mp4")
        strip = np.concatenate([np.concatenate(list(clip.frames[::4]), 1), np.concatenate(list(video.frames[::4]), 1)])
        Image.fromarray(strip).save(folder / f"stage{self.stage}-{step:08d}.png")

    def export(self, module, folder: Path) -> dict:
        """The stage's additions into FOLDER/starcaster, and the files that make FOLDER a loadable pipeline."""
        folder = Path(folder)
        groups = set().union(*(STAGE_GROUPS[s] for s in range(1, self.stage + 1)))
        module.model.save_adapters(folder / "starcaster", groups=sorted(groups))
        DPMSolverMultistepScheduler(**SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")
        (folder / PIPELINE_CONFIG_NAME).write_text(self.settings.to_json())
        return {"groups": sorted(groups)}
