"""One training loop for every step of every recipe, on 🤗 Accelerate: one CPU, one GPU or many.

A *task* says what is trained and how a batch is scored; this loop owns everything else: the optimizer and its
schedule, gradient accumulation, mixed precision, EMA, the progress bar, the metrics log, and saved state.

Resuming continues *identically*: batch k is a pure function of (seed, k) (tasks draw data and noise from
`step_rng` / `step_generator`, never from global RNG state), and `accelerator.save_state` restores the weights, the
optimizer and the LR schedule. N steps straight and N/2 + resume + N/2 give the same parameters (tested).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from .config import TrainConfig

STATE_DIR = "states"
DONE_FILE = "done.json"


def step_rng(seed: int, step: int, micro: int = 0) -> np.random.Generator:
    """The numpy RNG for one micro-batch: data choice, crops, augmentations."""
    return np.random.default_rng([int(seed), int(step), int(micro), 0x5EED])


def step_generator(seed: int, step: int, micro: int = 0, device="cpu") -> torch.Generator:
    """The torch RNG for one micro-batch: diffusion noise, timesteps, posterior samples, condition dropout."""
    return torch.Generator(device).manual_seed(int(step_rng(seed, step, micro).integers(2**62)))


class Task(Protocol):
    """What a training step of a recipe provides (see `tasks.py` for the registry)."""

    def trainable(self) -> nn.Module:
        """The module whose trainable parameters are optimised and checkpointed (its forward computes the loss)."""

    def parameter_groups(self, module: nn.Module) -> list[dict]:
        """Optimizer parameter groups, each with a "name"."""

    def batch(self, step: int, micro: int, device) -> dict:
        """Micro-batch ``micro`` of optimizer step ``step``: deterministic in (seed, step, micro)."""

    def loss(self, module: nn.Module, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """(scalar loss to minimise, numbers to log)."""

    def validate(self, module: nn.Module, step: int, folder: Path) -> dict:
        """Held-out numbers (and sample files under ``folder``)."""

    def export(self, module: nn.Module, folder: Path) -> dict:
        """Write the trained component where the pipeline folder expects it; returns a report."""


def finished(folder: Path, config: TrainConfig) -> bool:
    """Whether ``folder`` holds a run of ``config`` that completed all its steps (and exported)."""
    done = Path(folder) / DONE_FILE
    return done.is_file() and json.loads(done.read_text()).get("steps") == config.steps


def latest_state(folder: Path) -> Path | None:
    # trainer_state.json is written last (_save): a state without it is a save cut short (a session's end), skipped.
    states = sorted(s for s in (folder / STATE_DIR).glob("step-*") if (s / "trainer_state.json").is_file())
    return states[-1] if states else None


def train(task: Task, config: TrainConfig, folder: str | Path, resume: bool = True, export_to: Path | None = None,
          progress: bool = True) -> dict:
    """Runs ``config.steps`` optimizer steps of ``task``, keeping its state in ``folder``; returns the final report.

    ``folder`` holds ``states/step-*`` (the last ``keep_states``), ``metrics.jsonl`` and, once finished,
    ``done.json``. With ``resume`` the latest state is loaded first; a finished step only re-exports.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_to = Path(export_to) if export_to is not None else folder / "export"
    if config.threads:
        torch.set_num_threads(config.threads)
    done = folder / DONE_FILE
    if resume and finished(folder, config):
        return json.loads(done.read_text())  # finished before: nothing to do

    accelerator = Accelerator(
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision=config.mixed_precision,
        log_with=config.trackers or None,
        project_dir=str(folder),
    )
    set_seed(config.seed)  # module initialisation only; every batch draws from its own step RNG
    module = task.trainable()
    if config.gradient_checkpointing:
        for sub in module.modules():
            if hasattr(sub, "enable_gradient_checkpointing") and sub is not module:
                sub.enable_gradient_checkpointing()
                break
    groups = task.parameter_groups(module)
    optimizer = torch.optim.AdamW(
        [{"params": g["params"], **{k: v for k, v in g.items() if k not in ("params", "name")}} for g in groups],
        lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay,
    )
    # A prepared scheduler steps once per process per optimizer step, hence the scaling (as diffusers' scripts do).
    schedule = get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=config.warmup_steps * accelerator.num_processes,
                             num_training_steps=config.steps * accelerator.num_processes)
    module, optimizer, schedule = accelerator.prepare(module, optimizer, schedule)
    ema = None
    if config.ema_decay > 0:
        ema = EMAModel([p for g in groups for p in g["params"]], decay=config.ema_decay)
        accelerator.register_for_checkpointing(ema)
    if config.trackers:
        accelerator.init_trackers(config.name, config={"lr": config.lr, "steps": config.steps})

    step = 0
    state = latest_state(folder) if resume else None
    if state is not None:
        accelerator.load_state(str(state))
        step = json.loads((state / "trainer_state.json").read_text())["step"]
    metrics = folder / "metrics.jsonl"
    _truncate_metrics(metrics, step)

    bar = tqdm(total=config.steps, initial=step, desc=config.name, disable=not (progress and
                                                                                accelerator.is_main_process))
    module.train()
    trained = [p for g in groups for p in g["params"]]
    started, since = time.perf_counter(), step
    while step < config.steps:
        logs: dict = {}
        for micro in range(config.grad_accum):
            shard = micro * accelerator.num_processes + accelerator.process_index  # each process its own data
            batch = task.batch(step, shard, accelerator.device)
            generator = step_generator(config.seed, step, shard, device=accelerator.device)
            with accelerator.accumulate(module):
                loss, logs = task.loss(module, batch, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(trained, config.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                if accelerator.sync_gradients and hasattr(task, "after_step"):  # e.g. distillation's target network
                    task.after_step(accelerator.unwrap_model(module))
        if ema is not None:
            ema.step(trained)
        step += 1
        logs = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}
        bar.update(1)
        bar.set_postfix(loss=f"{logs['loss']:.4f}")
        if step % config.log_every == 0 or step == config.steps:
            rate = (step - since) / max(time.perf_counter() - started, 1e-9)
            _log(accelerator, metrics, {"step": step, "lr": schedule.get_last_lr()[0], "it_per_s": rate, **logs})
        if config.validate_every and step % config.validate_every == 0 and step < config.steps:
            _validate(task, accelerator, module, ema, step, folder, metrics)
        if step % config.save_every == 0 or step == config.steps:
            _save(accelerator, folder, step, config.keep_states)
    bar.close()

    report = _validate(task, accelerator, module, ema, step, folder, metrics)
    if accelerator.is_main_process:
        with _ema_weights(ema, trained):
            report |= task.export(accelerator.unwrap_model(module), export_to)
        report |= {"steps": config.steps, "config": config.to_dict()}
        done.write_text(json.dumps(report, indent=2) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return report


class _ema_weights:
    """Swaps the EMA weights in for validation/export, and the trained ones back afterwards."""

    def __init__(self, ema, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def _validate(task, accelerator, module, ema, step, folder, metrics) -> dict:
    if not accelerator.is_main_process:
        return {}
    trained = [p for p in module.parameters() if p.requires_grad]
    module.eval()
    with _ema_weights(ema, trained), torch.no_grad():
        report = task.validate(accelerator.unwrap_model(module), step, folder / "validation")
    module.train()
    _log(accelerator, metrics, {"step": step, **{f"val/{k}": v for k, v in report.items()}})
    return report


def _save(accelerator, folder: Path, step: int, keep: int) -> None:
    target = folder / STATE_DIR / f"step-{step:08d}"
    accelerator.save_state(str(target))
    if accelerator.is_main_process:
        (target / "trainer_state.json").write_text(json.dumps({"step": step}) + "\n")
        for old in sorted((folder / STATE_DIR).glob("step-*"))[:-max(keep, 1)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _log(accelerator, path: Path, row: dict) -> None:
    if not accelerator.is_main_process:
        return
    row = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in row.items()}
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    if accelerator.trackers:
        accelerator.log({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))},
                        step=row["step"])


def _truncate_metrics(path: Path, step: int) -> None:
    """After a resume, drop the lines an interrupted run wrote past the state it resumes from."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))
