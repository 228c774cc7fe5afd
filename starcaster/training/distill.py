"""Latent consistency distillation of the shipped tiny model (issue #12): the fast sampler's 1-4 step student.

LCM's recipe (Luo et al. 2023, "Latent Consistency Models"; diffusers' ``train_lcm_distill_sd_wds.py``), on the
STARCaster segment. From a clean segment and its conditions:

1. noise it to ``t_{n+k}``, a step of the 50-step DDIM grid the LCMScheduler samples on (k = 20 timesteps);
2. the frozen teacher (the shipped model) predicts with classifier-free guidance at ``guidance``, and one DDIM step
   takes the noisy segment to ``t_n``: the teacher's ODE solver, so guidance is folded into the student;
3. the student maps ``x_{t_{n+k}}`` to its consistency output ``c_skip x + c_out x0``; the target network (an EMA of
   the student, decay 0.95) maps the teacher's ``x_{t_n}``; the loss is the pseudo-Huber distance between the two.

Segments come in the shapes inference runs: portrait (reference bank + context from ground truth, or segment 0's
portrait-as-context), identity segment 0 (no bank, no context) and orbit (camera stream, still heads). The pools are
the stages' own (`StageTask`), so nothing is rendered twice. The student starts as the teacher and trains all of its
video UNet path; the reference UNet stays frozen and shared.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from diffusers import DDPMScheduler
from torch import nn

from ..autoregression import bank_references, cfg_conditions, model_output, predict_x0
from ..fast_sampler import FAST_SCHEDULER_CONFIG, fast_scheduler, save_fast_model, student_copy
from .arc2face import scheduler_config
from .stages import StageTask
from .trainer import step_rng

KINDS = ("portrait", "identity", "orbit")


class DistillModule(nn.Module):
    """The student (trained), its EMA target and the teacher (frozen), with the ID encoder they read."""

    def __init__(self, teacher, id_encoder):
        super().__init__()
        teacher.requires_grad_(False).eval()
        self.teacher, self.id_encoder = teacher, id_encoder.requires_grad_(False).eval()
        self.student = student_copy(teacher)
        self.target = student_copy(teacher)
        self.student.requires_grad_(True)
        self.student.reference_unet.requires_grad_(False)  # shared with the teacher: frozen structure

    def trained(self) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]

    def forward(self, task: DistillTask, batch: dict, generator: torch.Generator):
        return task.compute_loss(self, batch, generator)


def boundary_scalings(timesteps: torch.Tensor, sigma_data: float = 0.5, scaling: float = 10.0):
    """LCM's c_skip, c_out (B,): the consistency function is the identity at t = 0 and the x0 estimate elsewhere."""
    t = timesteps.float() * scaling
    c_skip = sigma_data**2 / (t**2 + sigma_data**2)
    c_out = t / (t**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


class DistillTask:
    """See the module docstring. ``task_args``: pools, the task mix, guidance, the DDIM grid, target decay."""

    def __init__(self, config, pipeline_folder: Path, cache_dir: Path, clips: int = 600, eval_clips: int = 8,
                 window: int = 2, orbit_fraction: float = 0.3, identity_fraction: float = 0.15,
                 first_segment_probability: float = 0.25, guidance: float = 3.0, ddim_timesteps: int = 50,
                 target_decay: float = 0.95, huber_c: float = 0.001, preset: str = "tiny", data: str | None = None):
        self.config, self.folder = config, Path(pipeline_folder)
        shared = dict(clips=clips, eval_clips=eval_clips, window=window, first_segment_probability=first_segment_probability,
                      preset=preset, data=data)
        # The stages' pools and helpers (same cache names as stages 2 and 3: nothing is rendered again).
        self.talk = StageTask(config, pipeline_folder, cache_dir, stage=2, teacher_forcing=True, **shared)
        self.orbit = StageTask(config, pipeline_folder, cache_dir, stage=3, teacher_forcing=True, **shared) \
            if data is None and orbit_fraction > 0 else None
        self.mix = np.array([1 - orbit_fraction - identity_fraction, identity_fraction,
                             orbit_fraction if self.orbit is not None else 0.0])
        self.mix = self.mix / self.mix.sum()
        self.guidance, self.decay, self.huber_c = guidance, target_decay, huber_c
        self.noise = DDPMScheduler(**scheduler_config())
        self.scalings = FAST_SCHEDULER_CONFIG["timestep_scaling"]
        k = self.noise.config.num_train_timesteps // ddim_timesteps
        self.skip = k
        self.grid = torch.arange(1, ddim_timesteps + 1) * k - 1  # 19, 39, ..., 999: LCMScheduler's own grid
        self.N, self.n = self.talk.N, self.talk.n

    # -- what is trained ---------------------------------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        stage = self.talk.trainable()  # the shipped model, stage 3's additions loaded
        return DistillModule(stage.model, stage.id_encoder)

    def parameter_groups(self, module):
        return [{"name": "student", "params": module.trained()}]

    @torch.no_grad()
    def after_step(self, module: DistillModule) -> None:
        """The target network follows the student (LCM's EMA with decay 0.95)."""
        for target, student in zip(module.target.parameters(), module.student.parameters()):
            if student.requires_grad:
                target.lerp_(student, 1 - self.decay)

    def batch(self, step, micro, device):
        rng = step_rng(self.config.seed + 1, step, micro)  # its own stream: the stage's batch() draws the clips
        kind = KINDS[int(rng.choice(len(KINDS), p=self.mix))]
        source = self.orbit if kind == "orbit" else self.talk
        batch = source.batch(step, micro, device)
        batch["kind"] = kind
        batch["segment"] = int(rng.integers(0, source.window))  # which ground-truth segment is distilled
        batch["first_segment"] = batch["first_segment"] and kind != "identity"
        return batch

    def loss(self, module, batch, generator):
        return module(self, batch, generator)

    # -- the consistency loss ------------------------------------------------------------------------------------------
    def _segment(self, batch):
        """(context, start frame, first conditioned frame) of the distilled segment, as `StageTask` builds them."""
        latents, N, n = batch["latents"], self.N, self.n
        if batch["kind"] == "identity":  # identity segment 0: no reference, no context (stage 1's shape)
            return None, 0, 0
        if batch["first_segment"]:  # the portrait as context, before frame 0
            return batch["reference_latent"].repeat(1, 1, n, 1, 1), 0, -n
        start = n + batch["segment"] * N  # ground-truth context: the n frames before the segment
        return latents[:, :, start - n:start], start, start - n

    def _conditions(self, model, source, batch, first, end, id_tokens, context):
        """``model``'s own conditions (its projections; a bank with its own K/V cache)."""
        bank = None
        if context is not None:
            reference, weights = bank_references([batch["reference_latent"]] + list(context.split(1, dim=2)))
            with torch.no_grad():  # the reference UNet is frozen
                bank = model.encode_reference(reference, id_tokens,
                                              None if weights is None else weights.to(reference.device))
        return source._conditions(SimpleNamespace(model=model), batch, first, end, id_tokens, bank)

    def compute_loss(self, module, batch, generator):
        latents, N = batch["latents"], self.N
        B = len(latents)
        source = self.orbit if batch["kind"] == "orbit" else self.talk
        context, start, first = self._segment(batch)
        clean = latents[:, :, start:start + N]
        id_tokens = module.id_encoder(batch["identity"])
        null = module.id_encoder.unconditional(1)
        with torch.no_grad():
            cond = self._conditions(module.teacher, source, batch, first, start + N, id_tokens, context)

        index = torch.randint(0, len(self.grid), (B,), generator=generator, device=generator.device).cpu()
        t_start = self.grid[index].to(clean.device)
        t_end = (t_start - self.skip).clamp_min(0)
        noise = torch.randn(clean.shape, generator=generator, device=generator.device).to(clean)
        noisy = self.noise.add_noise(clean, noise, t_start)

        def run(model, x, t, conditions):
            if context is not None:  # the CFG batch stacks [uncond; cond] rows: the context for each
                x = torch.cat([context.to(x).repeat(len(x) // len(context), 1, 1, 1, 1), x], dim=2)
            return model_output(model, x, t, conditions)[:, :, -N:].float()

        def consistency(output, x, t):
            c_skip, c_out = (s.view(-1, 1, 1, 1, 1) for s in boundary_scalings(t, scaling=self.scalings))
            return c_skip * x + c_out * predict_x0(self.noise, output, x, t)

        student_cond = self._conditions(module.student, source, batch, first, start + N, id_tokens, context)
        prediction = consistency(run(module.student, noisy, t_start, student_cond), noisy, t_start)
        with torch.no_grad():
            rows = cfg_conditions(cond, null)  # [unconditional; conditional]
            uncond, conditional = run(module.teacher, torch.cat([noisy, noisy]), t_start.repeat(2), rows).chunk(2)
            eps = uncond + self.guidance * (conditional - uncond)  # the sampler's CFG, on the teacher
            x0 = predict_x0(self.noise, eps, noisy, t_start)
            alpha = self.noise.alphas_cumprod.to(clean.device)[t_end].view(-1, 1, 1, 1, 1).float()
            previous = alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps  # one DDIM step, t_{n+k} -> t_n
            target_cond = self._conditions(module.target, source, batch, first, start + N, id_tokens, context)
            target = consistency(run(module.target, previous, t_end, target_cond), previous, t_end)
        c = self.huber_c
        loss = (torch.sqrt((prediction - target) ** 2 + c**2) - c).mean()
        return loss, {"huber": loss.detach()}

    # -- held-out numbers and export -------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, module, step, folder) -> dict:
        """Held-out one- and two-step x0 error against the clean segment (fixed noise), student and teacher."""
        out = {}
        for steps in (1, 2):
            errors = []
            for i in range(len(self.talk.eval_pool)):
                batch = {k: v.to(module.student.device) for k, v in self.talk.eval_pool.take(torch.tensor([i])).items()
                         if k != "frames"}
                batch.update(kind="portrait", segment=0, first_segment=False, step=-1, talk=True)
                errors.append(self._sample_error(module.student, module, batch, steps, seed=i))
            out[f"heldout_x0_mse_{steps}step"] = float(np.mean(errors))
        return out

    def _sample_error(self, model, module, batch, steps, seed):
        from ..autoregression import denoise_segment

        context, start, first = self._segment(batch)
        id_tokens = module.id_encoder(batch["identity"])
        cond = self._conditions(model, self.talk, batch, first, start + self.N, id_tokens, context)
        generator = torch.Generator("cpu").manual_seed(seed)
        clean = batch["latents"][:, :, start:start + self.N]
        noise = torch.randn(clean.shape, generator=generator).to(clean)
        x0 = denoise_segment(model, fast_scheduler(), noise, cond, None, context, steps, 1.0, generator=generator)
        return float((x0 - clean).square().mean())

    def export(self, module, folder: Path) -> dict:
        """The target network (LCM ships the EMA) as ``fast_model/``, and the LCMScheduler as ``fast_scheduler/``."""
        folder = Path(folder)
        about = {"teacher_guidance": self.guidance, "ddim_timesteps": len(self.grid), "target_decay": self.decay}
        save_fast_model(module.target, folder / "fast_model", about)
        fast_scheduler().save_pretrained(folder / "fast_scheduler")
        return about
